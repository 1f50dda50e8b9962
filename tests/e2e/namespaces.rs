//! Namespaces as the payload sees them: pid, uts, mount, network, user, and joining existing
//! namespaces by path.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use capsa_tests::cleanup::unique_name;
use capsa_tests::context::{TestContext, skip};
use capsa_tests::mountinfo;
use capsa_tests::probe::Probe;
use capsa_tests::rootfs::MARKER_CONTENT;
use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceType};

#[test]
fn pid_namespace_makes_the_payload_pid_1_and_hides_host_processes() -> Result<()> {
    let ctx = TestContext::new("pidns")?;
    let mut b = ctx.bundle()?;
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("self", "echo $$")
            .fact("pid1", "cat /proc/1/cmdline | tr '\\0' ' '")
            .fact("procs", "ls /proc | grep '^[0-9]*$'"),
    )?;
    ensure!(facts.ok("self")? == "1", "payload pid: {facts:?}");
    ensure!(
        facts.ok("pid1")?.starts_with("/bin/sh -c"),
        "pid 1: {facts:?}"
    );
    let pids: Vec<u32> = facts
        .ok("procs")?
        .lines()
        .map(|l| l.parse().context("pid"))
        .collect::<Result<_>>()?;
    // pid 1 (sh), the fact's subshell, ls and grep: nothing from the host.
    ensure!(pids.contains(&1), "pid 1 missing from /proc: {pids:?}");
    ensure!(
        pids.len() <= 4 && pids.iter().all(|&p| p < 100),
        "/proc shows processes other than the payload's: {pids:?}"
    );
    Ok(())
}

#[test]
fn uts_namespace_sets_the_hostname() -> Result<()> {
    let ctx = TestContext::new("utsns")?;
    let host_name = nix::unistd::gethostname()?;
    let mut b = ctx.bundle()?;
    b.spec.set_hostname(Some("capsa-box".into()));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("hostname", "hostname")
            .fact("uname", "uname -n"),
    )?;
    ensure!(facts.ok("hostname")? == "capsa-box", "{facts:?}");
    ensure!(facts.ok("uname")? == "capsa-box", "{facts:?}");
    ensure!(
        nix::unistd::gethostname()? == host_name,
        "the host's hostname changed"
    );
    Ok(())
}

#[test]
fn uts_namespace_sets_the_domainname() -> Result<()> {
    let ctx = TestContext::new("utsns-domain")?;
    if ctx.runtime.is_runc() {
        // OCI runtime spec, config.md "Domainname": the runtime sets it in the uts namespace.
        // runc 1.1 ignores the field and leaves "(none)".
        return skip(
            "uts_namespace_sets_the_domainname",
            "runc 1.1 ignores `domainname`",
        );
    }
    let mut b = ctx.bundle()?;
    b.spec.set_domainname(Some("capsa.example".into()));
    let facts = ctx.probe(
        &mut b,
        &Probe::new().fact("domainname", "cat /proc/sys/kernel/domainname"),
    )?;
    ensure!(facts.ok("domainname")? == "capsa.example", "{facts:?}");
    Ok(())
}

#[test]
fn mount_namespace_gives_the_payload_its_own_mount_table() -> Result<()> {
    let ctx = TestContext::new("mntns")?;
    let mut b = ctx.bundle()?;
    b.payload(
        &Probe::new()
            .fact("mountinfo", "cat /proc/self/mountinfo")
            .fact("marker", "cat /capsa-rootfs-marker")
            .fact("work", "ls /work")
            .script(),
    );
    // Detached, so that the test can look at the host's mount table while the payload runs.
    let b_payload = b.process().args().clone();
    b.payload(&format!(
        "{}\necho probe-done; sleep 1000",
        b_payload.context("args")?[2]
    ));
    let (id, out) = ctx.run_detached(&b)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !out.stdout_now().contains("probe-done") {
        ensure!(std::time::Instant::now() < deadline, "probe never finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let host_leaks = capsa_tests::cleanup::mounts_below(ctx.dir());
    ensure!(
        host_leaks.is_empty(),
        "container mounts visible on the host: {host_leaks:?}"
    );
    ctx.rt(&["delete", "--force", &id])?.ok()?;

    let facts = capsa_tests::probe::Facts::parse(&out.stdout_now())?;
    ensure!(
        facts.ok("marker")? == MARKER_CONTENT.trim_end(),
        "{facts:?}"
    );
    ensure!(
        facts.get("work")?.status != 0,
        "host /work visible: {facts:?}"
    );
    let mounts = mountinfo::parse(facts.ok("mountinfo")?)?;
    let root = mounts
        .iter()
        .find(|m| m.mount_point == "/")
        .context("no / in the payload's mountinfo")?;
    ensure!(
        root.root.ends_with("/rootfs"),
        "/ should be the bundle's rootfs, is {root:?}"
    );
    let allowed = ["/", "/proc", "/dev", "/sys"];
    for m in &mounts {
        ensure!(
            allowed
                .iter()
                .any(|a| m.mount_point == *a || m.mount_point.starts_with(&format!("{a}/"))),
            "unexpected mount point {} in the container",
            m.mount_point
        );
    }
    for host in mountinfo::own()? {
        if host.mount_point.starts_with("/run") || host.mount_point.starts_with("/tmp/") {
            ensure!(
                !mounts.iter().any(|m| m.mount_point == host.mount_point),
                "host mount {} visible in the container",
                host.mount_point
            );
        }
    }
    Ok(())
}

#[test]
fn network_namespace_has_only_loopback() -> Result<()> {
    let ctx = TestContext::new("netns")?;
    let mut b = ctx.bundle()?;
    let facts = ctx.probe(
        &mut b,
        &Probe::new().fact(
            "ifaces",
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
        ),
    )?;
    ensure!(facts.ok("ifaces")? == "lo", "interfaces: {facts:?}");
    Ok(())
}

#[test]
fn user_namespace_maps_ids_and_keeps_the_rootfs_usable() -> Result<()> {
    let ctx = TestContext::new("userns")?;
    let mut b = ctx.bundle()?;
    let map = |host: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(65536u32)
            .build()
            .expect("a complete id mapping")
    };
    b.namespace(LinuxNamespaceType::User, None);
    b.linux().set_uid_mappings(Some(vec![map(100000)]));
    b.linux().set_gid_mappings(Some(vec![map(100000)]));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("uid_map", "cat /proc/self/uid_map")
            .fact("gid_map", "cat /proc/self/gid_map")
            .fact("id", "id -u; id -g")
            .fact("marker", "cat /capsa-rootfs-marker")
            .fact("owner", "stat -c %u /capsa-rootfs-marker")
            .fact("tmpfs", "echo x > /dev/shm/x && cat /dev/shm/x"),
    )?;
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    ensure!(words(facts.ok("uid_map")?) == "0 100000 65536", "{facts:?}");
    ensure!(words(facts.ok("gid_map")?) == "0 100000 65536", "{facts:?}");
    ensure!(facts.ok("id")? == "0\n0", "{facts:?}");
    ensure!(
        facts.ok("marker")? == MARKER_CONTENT.trim_end(),
        "{facts:?}"
    );
    // Host root is not mapped: the rootfs shows up as owned by the overflow uid.
    ensure!(facts.ok("owner")? == "65534", "{facts:?}");
    ensure!(facts.ok("tmpfs")? == "x", "{facts:?}");
    Ok(())
}

/// `readlink /proc/self/ns/net` for a namespace file: `net:[<inode>]`.
fn ns_link(path: &Path) -> Result<String> {
    let ino = std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .ino();
    Ok(format!("net:[{ino}]"))
}

#[test]
fn joining_a_network_namespace_by_path_uses_it() -> Result<()> {
    let ctx = TestContext::new("join-netns")?;
    let name = unique_name("netns");
    let status = Command::new("ip").args(["netns", "add", &name]).status()?;
    ensure!(status.success(), "ip netns add {name} failed");
    ctx.guard().netns(&name);
    let path = Path::new("/run/netns").join(&name);
    let expected = ns_link(&path)?;

    let mut b = ctx.bundle()?;
    b.namespace(LinuxNamespaceType::Network, Some(&path));
    let facts = ctx.probe(
        &mut b,
        &Probe::new().fact("net", "readlink /proc/self/ns/net"),
    )?;
    ensure!(
        facts.ok("net")? == expected,
        "{facts:?}, expected {expected}"
    );
    Ok(())
}

#[test]
fn joining_another_containers_network_namespace_shares_it() -> Result<()> {
    let ctx = TestContext::new("join-ctr-netns")?;
    let mut first = ctx.bundle()?;
    first.payload("sleep 1000");
    let (id, _) = ctx.run_detached(&first)?;
    let pid = ctx.pid_of(&id)?;
    let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    let expected = ns_link(&path)?;
    ensure!(
        expected != ns_link(Path::new("/proc/self/ns/net"))?,
        "the first container has its own netns"
    );

    let mut second = ctx.bundle()?;
    second.namespace(LinuxNamespaceType::Network, Some(&path));
    let facts = ctx.probe(
        &mut second,
        &Probe::new().fact("net", "readlink /proc/self/ns/net"),
    )?;
    ensure!(
        facts.ok("net")? == expected,
        "{facts:?}, expected {expected}"
    );
    Ok(())
}

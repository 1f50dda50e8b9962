//! The filesystem the payload sees: default mounts, bind mounts and their flags, a read-only
//! root, masked and read-only paths, devices, sysctls, and mount destinations that try to escape
//! the rootfs.

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use capsa_tests::context::TestContext;
use capsa_tests::mountinfo::{self, MountEntry};
use capsa_tests::probe::Probe;
use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceType, MountBuilder, Root};

fn mount_table(text: &str) -> Result<HashMap<String, MountEntry>> {
    // Later mounts on the same point hide earlier ones: keep the last.
    Ok(mountinfo::parse(text)?
        .into_iter()
        .map(|m| (m.mount_point.clone(), m))
        .collect())
}

#[test]
fn default_mounts_are_present_with_their_types() -> Result<()> {
    let ctx = TestContext::new("default-mounts")?;
    let mut b = ctx.bundle()?;
    let facts = ctx.probe(
        &mut b,
        &Probe::new().fact("mountinfo", "cat /proc/self/mountinfo"),
    )?;
    let table = mount_table(facts.ok("mountinfo")?)?;
    for (point, fs_type) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let m = table
            .get(point)
            .with_context(|| format!("{point} is not mounted: {table:#?}"))?;
        ensure!(
            m.fs_type == fs_type,
            "{point} is {} not {fs_type}",
            m.fs_type
        );
    }
    ensure!(
        table["/sys"].has_option("ro"),
        "/sys is mounted ro: {:?}",
        table["/sys"]
    );
    ensure!(
        table.keys().any(|p| p.starts_with("/sys/fs/cgroup")),
        "cgroups are mounted under /sys/fs/cgroup"
    );
    let shm = &table["/dev/shm"];
    for flag in ["nosuid", "nodev", "noexec"] {
        ensure!(shm.has_option(flag), "/dev/shm lacks {flag}: {shm:?}");
    }
    ensure!(
        table["/dev/pts"]
            .super_options
            .iter()
            .any(|o| o == "ptmxmode=666" || o == "ptmxmode=0666"),
        "devpts options: {:?}",
        table["/dev/pts"]
    );
    Ok(())
}

#[test]
fn bind_mount_ro_is_read_only_and_rw_is_writable() -> Result<()> {
    let ctx = TestContext::new("bind-ro-rw")?;
    let ro = ctx.subdir("host-ro")?;
    let rw = ctx.subdir("host-rw")?;
    std::fs::write(ro.join("file"), "from-host-ro")?;
    std::fs::write(rw.join("file"), "from-host-rw")?;
    let mut b = ctx.bundle()?;
    b.bind(&ro, "/mnt/ro", &["ro"]);
    b.bind(&rw, "/mnt/rw", &["rw"]);
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("read-ro", "cat /mnt/ro/file")
            .fact("write-ro", "echo x > /mnt/ro/new")
            .fact("read-rw", "cat /mnt/rw/file")
            .fact("write-rw", "echo from-container > /mnt/rw/new")
            .fact("mountinfo", "cat /proc/self/mountinfo"),
    )?;
    ensure!(facts.ok("read-ro")? == "from-host-ro", "{facts:?}");
    ensure!(
        facts.get("write-ro")?.status != 0,
        "wrote to a ro bind: {facts:?}"
    );
    ensure!(
        !ro.join("new").exists(),
        "the ro bind's host dir was written"
    );
    ensure!(facts.ok("read-rw")? == "from-host-rw", "{facts:?}");
    facts.ok("write-rw")?;
    ensure!(
        std::fs::read_to_string(rw.join("new"))?.trim() == "from-container",
        "the rw bind's write is visible on the host"
    );
    let table = mount_table(facts.ok("mountinfo")?)?;
    ensure!(table["/mnt/ro"].has_option("ro"), "{:?}", table["/mnt/ro"]);
    ensure!(table["/mnt/rw"].has_option("rw"), "{:?}", table["/mnt/rw"]);
    Ok(())
}

#[test]
fn mount_flags_nosuid_nodev_noexec_show_in_mountinfo_and_apply() -> Result<()> {
    let ctx = TestContext::new("mount-flags")?;
    let mut b = ctx.bundle()?;
    let tmpfs = |dest: &str, opts: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ("tmpfs")
            .source("tmpfs")
            .options(opts.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
            .build()
            .expect("a complete tmpfs mount")
    };
    b.mount(tmpfs(
        "/mnt/flags",
        &["nosuid", "nodev", "noexec", "mode=755"],
    ));
    b.mount(tmpfs("/mnt/exec", &["mode=755"]));
    let copy_and_run = |dir: &str| {
        format!(
            "cat /bin/busybox > {dir}/busybox && chmod 755 {dir}/busybox && {dir}/busybox echo ran"
        )
    };
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("mountinfo", "cat /proc/self/mountinfo")
            .fact("exec-noexec", &copy_and_run("/mnt/flags"))
            .fact("exec-exec", &copy_and_run("/mnt/exec")),
    )?;
    let table = mount_table(facts.ok("mountinfo")?)?;
    let flags = table.get("/mnt/flags").context("/mnt/flags not mounted")?;
    for flag in ["nosuid", "nodev", "noexec"] {
        ensure!(flags.has_option(flag), "/mnt/flags lacks {flag}: {flags:?}");
    }
    let exec = table.get("/mnt/exec").context("/mnt/exec not mounted")?;
    ensure!(!exec.has_option("noexec"), "/mnt/exec: {exec:?}");
    ensure!(
        facts.get("exec-noexec")?.status != 0,
        "ran from noexec: {facts:?}"
    );
    ensure!(facts.ok("exec-exec")? == "ran", "{facts:?}");
    Ok(())
}

#[test]
fn readonly_root_makes_slash_unwritable() -> Result<()> {
    let ctx = TestContext::new("ro-root")?;
    let mut b = ctx.bundle()?;
    let mut root = Root::default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(true));
    b.spec.set_root(Some(root));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("write-root", "touch /new-file")
            .fact("write-tmp", "touch /tmp/new-file")
            .fact("write-shm", "touch /dev/shm/new-file")
            .fact("mountinfo", "cat /proc/self/mountinfo"),
    )?;
    ensure!(
        facts.get("write-root")?.status != 0,
        "/ is writable: {facts:?}"
    );
    ensure!(
        facts.get("write-tmp")?.status != 0,
        "/tmp is writable: {facts:?}"
    );
    facts.ok("write-shm")?;
    ensure!(
        !b.rootfs().join("new-file").exists(),
        "the rootfs was written"
    );
    let table = mount_table(facts.ok("mountinfo")?)?;
    ensure!(
        table["/"].has_option("ro"),
        "/ is not mounted ro: {:?}",
        table["/"]
    );
    Ok(())
}

#[test]
fn masked_paths_are_unreadable() -> Result<()> {
    let ctx = TestContext::new("masked")?;
    let mut b = ctx.bundle()?;
    std::fs::create_dir(b.rootfs().join("mnt/secret-dir"))?;
    std::fs::write(b.rootfs().join("mnt/secret-dir/secret"), "hidden")?;
    std::fs::write(b.rootfs().join("etc/secret-file"), "hidden")?;
    let mut masked = b.linux().masked_paths().clone().unwrap_or_default();
    masked.extend(["/mnt/secret-dir".to_owned(), "/etc/secret-file".to_owned()]);
    b.linux().set_masked_paths(Some(masked));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            // Default masked files that exist on every kernel this runs on (kcore may not).
            .fact("timer_list", "cat /proc/timer_list | wc -c")
            .fact("keys", "cat /proc/keys | wc -c")
            .fact("dir", "ls -A /mnt/secret-dir")
            .fact("file", "cat /etc/secret-file")
            .fact("write-dir", "touch /mnt/secret-dir/x"),
    )?;
    ensure!(
        facts.ok("timer_list")? == "0",
        "/proc/timer_list readable: {facts:?}"
    );
    ensure!(facts.ok("keys")? == "0", "/proc/keys readable: {facts:?}");
    ensure!(
        facts.out("dir")?.is_empty(),
        "masked dir shows files: {facts:?}"
    );
    ensure!(
        !facts.out("file")?.contains("hidden"),
        "masked file readable: {facts:?}"
    );
    ensure!(
        facts.get("write-dir")?.status != 0,
        "masked dir writable: {facts:?}"
    );
    Ok(())
}

#[test]
fn readonly_paths_are_unwritable() -> Result<()> {
    let ctx = TestContext::new("ro-paths")?;
    let mut b = ctx.bundle()?;
    std::fs::create_dir(b.rootfs().join("mnt/ro-dir"))?;
    std::fs::write(b.rootfs().join("mnt/ro-dir/file"), "readable")?;
    let mut ro = b.linux().readonly_paths().clone().unwrap_or_default();
    ro.push("/mnt/ro-dir".to_owned());
    b.linux().set_readonly_paths(Some(ro));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("read", "cat /mnt/ro-dir/file")
            .fact("write", "touch /mnt/ro-dir/new")
            .fact("proc-sys", "echo capsa > /proc/sys/kernel/hostname")
            .fact("sysrq", "echo h > /proc/sysrq-trigger")
            .fact("writable-elsewhere", "touch /mnt/new"),
    )?;
    ensure!(facts.ok("read")? == "readable", "{facts:?}");
    ensure!(
        facts.get("write")?.status != 0,
        "readonly path writable: {facts:?}"
    );
    ensure!(
        facts.get("proc-sys")?.status != 0,
        "/proc/sys writable: {facts:?}"
    );
    ensure!(
        facts.get("sysrq")?.status != 0,
        "sysrq-trigger writable: {facts:?}"
    );
    facts.ok("writable-elsewhere")?;
    Ok(())
}

#[test]
fn default_devices_and_dev_symlinks_exist() -> Result<()> {
    let ctx = TestContext::new("devices")?;
    let mut b = ctx.bundle()?;
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact(
                "devices",
                "for d in null zero full random urandom tty; do \
                 echo $d $(stat -c '%F %t:%T %a' /dev/$d); done",
            )
            .fact(
                "links",
                "for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done",
            )
            .fact("null", "echo x > /dev/null && cat /dev/null | wc -c")
            .fact("zero", "head -c 16 /dev/zero | wc -c")
            .fact("full", "echo x > /dev/full")
            .fact("urandom", "head -c 16 /dev/urandom | wc -c"),
    )?;
    let devices = facts.ok("devices")?;
    for (name, numbers) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        let line = format!("{name} character special file {numbers} 666");
        ensure!(
            devices.lines().any(|l| l == line),
            "want {line:?} in:\n{devices}"
        );
    }
    let links = facts.ok("links")?;
    for line in [
        "fd /proc/self/fd",
        "stdin /proc/self/fd/0",
        "stdout /proc/self/fd/1",
        "stderr /proc/self/fd/2",
        "ptmx pts/ptmx",
    ] {
        ensure!(
            links.lines().any(|l| l == line),
            "want {line:?} in:\n{links}"
        );
    }
    ensure!(facts.ok("null")? == "0", "{facts:?}");
    ensure!(facts.ok("zero")? == "16", "{facts:?}");
    ensure!(
        facts.get("full")?.status != 0,
        "writing /dev/full succeeds: {facts:?}"
    );
    ensure!(facts.ok("urandom")? == "16", "{facts:?}");
    Ok(())
}

#[test]
fn linux_devices_entry_is_created() -> Result<()> {
    let ctx = TestContext::new("linux-devices")?;
    let mut b = ctx.bundle()?;
    let dev = LinuxDeviceBuilder::default()
        .path("/dev/capsa-zero")
        .typ(LinuxDeviceType::C)
        .major(1i64)
        .minor(5i64)
        .file_mode(0o640u32)
        .uid(0u32)
        .gid(0u32)
        .build()
        .context("device entry")?;
    b.linux().set_devices(Some(vec![dev]));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("stat", "stat -c '%F %t:%T %a %u:%g' /dev/capsa-zero")
            .fact("read", "head -c 8 /dev/capsa-zero | wc -c"),
    )?;
    ensure!(
        facts.ok("stat")? == "character special file 1:5 640 0:0",
        "{facts:?}"
    );
    ensure!(facts.ok("read")? == "8", "{facts:?}");
    Ok(())
}

#[test]
fn sysctl_is_applied_in_the_container_namespaces_only() -> Result<()> {
    let ctx = TestContext::new("sysctl")?;
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax")?;
    let mut b = ctx.bundle()?;
    let forward = if host_forward.trim() == "1" { "0" } else { "1" };
    b.linux().set_sysctl(Some(HashMap::from([
        ("net.ipv4.ip_forward".to_owned(), forward.to_owned()),
        ("kernel.shmmax".to_owned(), "123456789".to_owned()),
    ])));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("forward", "cat /proc/sys/net/ipv4/ip_forward")
            .fact("shmmax", "cat /proc/sys/kernel/shmmax"),
    )?;
    ensure!(facts.ok("forward")? == forward, "{facts:?}");
    ensure!(facts.ok("shmmax")? == "123456789", "{facts:?}");
    ensure!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")? == host_forward,
        "the host's ip_forward changed"
    );
    ensure!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax")? == host_shmmax,
        "the host's shmmax changed"
    );
    Ok(())
}

#[test]
fn mount_destination_symlink_to_outside_the_rootfs_is_contained() -> Result<()> {
    let ctx = TestContext::new("mount-escape")?;
    let target = ctx.subdir("host-target")?;
    std::fs::write(target.join("precious"), "host data")?;
    let mut b = ctx.bundle()?;
    // /mnt/escape in the rootfs points at the host directory by absolute path.
    std::os::unix::fs::symlink(&target, b.rootfs().join("mnt/escape"))?;
    let mount = MountBuilder::default()
        .destination("/mnt/escape")
        .typ("tmpfs")
        .source("tmpfs")
        .options(vec!["mode=755".to_owned()])
        .build()
        .context("tmpfs mount")?;
    b.mount(mount);
    b.payload("echo pwned > /mnt/escape/written; ls /mnt/escape");
    let out = ctx.run(&b)?;
    // Refusing the mount or mounting inside the rootfs are both fine; touching the host is not.
    ensure!(
        !target.join("written").exists(),
        "the payload wrote through the symlink to the host: {out}"
    );
    ensure!(
        std::fs::read_to_string(target.join("precious"))? == "host data",
        "host file changed"
    );
    let leaked: Vec<_> = mountinfo::own()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&*target.to_string_lossy()))
        .collect();
    ensure!(leaked.is_empty(), "mounted on the host path: {leaked:?}");
    if out.success() {
        ensure!(
            !out.stdout.contains("precious"),
            "the payload saw the host directory: {out}"
        );
    }
    Ok(())
}

#[test]
fn id_mapped_bind_mounts_show_the_mapped_owners() -> Result<()> {
    let ctx = TestContext::new("idmap-bind")?;
    if ctx.runtime.kind != capsa_tests::runtime::RuntimeKind::Capsa {
        return capsa_tests::context::skip(
            "id_mapped_bind_mounts_show_the_mapped_owners",
            "runc 1.1 has no id-mapped mounts",
        );
    }
    let dir = ctx.subdir("owned-by-root")?;
    std::fs::write(dir.join("file"), "x")?;
    std::fs::create_dir(dir.join("sub"))?;
    std::os::unix::fs::chown(dir.join("sub"), Some(7), Some(8))?;
    let mut b = ctx.bundle()?;
    b.payload(
        "stat -c '%u:%g' /mnt/mapped/file /mnt/mapped/sub; grep ' /mnt/mapped ' /proc/self/mountinfo",
    );
    let mut json = b.to_json()?;
    json["mounts"]
        .as_array_mut()
        .context("mounts")?
        .push(serde_json::json!({
            "destination": "/mnt/mapped", "type": "bind", "source": dir,
            "options": ["rbind", "ro"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 100}],
            "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 100}]
        }));
    b.write_json(&json)?;
    let out = ctx.run_written(&b)?.ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines.first() == Some(&"1000:2000") && lines.get(1) == Some(&"1007:2008"),
        "disk ids seen through the mapping: {out}"
    );
    ensure!(
        lines
            .get(2)
            .is_some_and(|l| l.contains("idmapped") && l.contains(" ro")),
        "an id-mapped, read-only mount: {out}"
    );
    // One mapping without the other, or on a non-bind mount: refused at create.
    for (mount, says) in [
        (
            serde_json::json!({"destination": "/mnt/x", "type": "bind", "source": dir,
                "options": ["rbind"], "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}),
            "go together",
        ),
        (
            serde_json::json!({"destination": "/mnt/x", "type": "tmpfs", "source": "tmpfs",
                "options": ["idmap"]}),
            "bind mounts only",
        ),
    ] {
        let bad = ctx.bundle()?;
        let mut json = bad.to_json()?;
        json["mounts"].as_array_mut().context("mounts")?.push(mount);
        bad.write_json(&json)?;
        let out = ctx.run_written(&bad)?;
        ensure!(out.code() != 0 && out.stderr.contains(says), "{out}");
    }
    Ok(())
}

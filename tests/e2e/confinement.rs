//! Confinement as Docker users expect it, through `capsa run`: the default seccomp profile
//! (syscall by syscall against dockerd's), `--privileged`, `seccomp=unconfined`,
//! `no-new-privileges`, `--device` and `--device-cgroup-rule`, and what bad values say.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use capsa_tests::context::skip;
use capsa_tests::dockerd::Dockerd;
use capsa_tests::engine::{EngineContext, tar_dir};
use libseccomp::{ScmpArch, ScmpSyscall};

const SYSPROBE_C: &str = include_str!("probes/sysprobe.c");

/// Calls dockerd 20.10 (Debian's, the peer here) refuses and current Docker allows, so capsa
/// does: the ptrace-like process_vm_* from kernel 4.8 and the memory protection keys (Docker 23),
/// and calls of kernels 6.5–6.7 that 20.10's profile predates (Docker 25).
const ALLOWED_SINCE_DOCKERD_20_10: &[&str] = &[
    "process_vm_readv",
    "process_vm_writev",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "cachestat",
    "fchmodat2",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
];

/// Calls dockerd 20.10 allows and current Docker refuses (io_uring, since Docker 25), and one
/// 20.10 does not know (it answers ENOSYS; Docker allows it only with CAP_SYS_NICE).
const REFUSED_SINCE_DOCKERD_20_10: &[&str] = &[
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "set_mempolicy_home_node",
];

/// What the probe printed: `(abi, nr) → result` and `argument filter → result`.
#[derive(Debug, Default)]
struct Report {
    calls: BTreeMap<(String, u32), String>,
    args: BTreeMap<String, String>,
}

impl Report {
    fn parse(text: &str) -> Result<Report> {
        let mut r = Report::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(3, ' ').collect();
            match fields.as_slice() {
                ["arg", name, result] => {
                    r.args.insert(name.to_string(), result.to_string());
                }
                [abi, nr, result] => {
                    let nr = nr.parse().with_context(|| format!("probe line {line:?}"))?;
                    r.calls.insert((abi.to_string(), nr), result.to_string());
                }
                _ => bail!("probe line {line:?}"),
            }
        }
        ensure!(r.calls.len() > 1400, "the probe ran to its end: {text}");
        ensure!(
            r.args.len() >= 10,
            "the probe ran its argument checks: {text}"
        );
        Ok(r)
    }

    fn call(&self, abi: &str, nr: u32) -> &str {
        self.calls
            .get(&(abi.to_string(), nr))
            .map_or("missing", String::as_str)
    }
}

/// libseccomp's name for a probed number.
fn name_of(abi: &str, nr: u32) -> Option<String> {
    let (arch, nr) = match abi {
        "x86_64" => (ScmpArch::X8664, nr),
        "x86" => (ScmpArch::X86, nr),
        "x32" => (ScmpArch::X32, nr | 0x4000_0000),
        _ => return None,
    };
    ScmpSyscall::from(i32::try_from(nr).ok()?)
        .get_name_by_arch(arch)
        .ok()
}

/// Builds the probe (gcc -static) into a rootfs tarball with a /tmp.
fn sysprobe_tar(dir: &Path) -> Result<Option<PathBuf>> {
    if std::env::consts::ARCH != "x86_64" {
        return Ok(None);
    }
    let rootfs = dir.join("sysprobe-rootfs");
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    let source = dir.join("sysprobe.c");
    std::fs::write(&source, SYSPROBE_C)?;
    let status = std::process::Command::new("gcc")
        .args(["-O1", "-mno-red-zone", "-static", "-o"])
        .arg(rootfs.join("sysprobe"))
        .arg(&source)
        .status()
        .context("gcc (build-essential)")?;
    ensure!(status.success(), "gcc failed to build the probe");
    let tar = dir.join("sysprobe.tar");
    tar_dir(&rootfs, &tar)?;
    Ok(Some(tar))
}

/// The differences between capsa's and dockerd's reports that are not the known version
/// differences; each known one is checked to go the way current Docker goes.
fn differences(capsa: &Report, docker: &Report) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for ((abi, nr), theirs) in &docker.calls {
        let ours = capsa.call(abi, *nr);
        let name = name_of(abi, *nr);
        let known = |list: &[&str]| name.as_deref().is_some_and(|n| list.contains(&n));
        if known(ALLOWED_SINCE_DOCKERD_20_10) {
            ensure!(ours != "1", "{abi} {name:?} is allowed by capsa: {ours}");
            continue;
        }
        if known(REFUSED_SINCE_DOCKERD_20_10) {
            ensure!(ours == "1", "{abi} {name:?} is refused by capsa: {ours}");
            continue;
        }
        if ours != theirs {
            out.push(format!(
                "{abi} {nr} ({}): capsa {ours}, dockerd {theirs}",
                name.as_deref().unwrap_or("?")
            ));
        }
    }
    for (arg, theirs) in &docker.args {
        let ours = capsa.args.get(arg).map_or("missing", String::as_str);
        // Current Docker refuses AF_VSOCK sockets; 20.10 did not.
        if arg == "socket(AF_VSOCK)" {
            ensure!(ours == "EPERM", "AF_VSOCK is refused: {ours}");
            continue;
        }
        if ours != theirs {
            out.push(format!("{arg}: capsa {ours}, dockerd {theirs}"));
        }
    }
    Ok(out)
}

#[test]
fn the_default_seccomp_profile_has_dockerds_effect_syscall_by_syscall() -> Result<()> {
    let ctx = EngineContext::new("seccomp-default")?;
    let Some(tar) = sysprobe_tar(ctx.dir())? else {
        return skip("the_default_seccomp_profile…", "the probe is x86_64 only");
    };
    let tar_arg = tar.to_str().context("path")?;
    ctx.capsa(&["import", tar_arg, "sysprobe:1"])?.ok()?;
    let probe = |extra: &[&str]| -> Result<Report> {
        let mut args = extra.to_vec();
        args.extend(["sysprobe:1", "/sysprobe"]);
        Report::parse(&ctx.run_rm(&args)?.ok()?.stdout)
    };
    let default = probe(&[])?;
    // What Docker's default refuses, whatever the peer says.
    for (nr, call) in [
        (250, "keyctl"),
        (248, "add_key"),
        (321, "bpf"),
        (298, "perf_event_open"),
        (272, "unshare"),
        (165, "mount"),
        (308, "setns"),
        (169, "reboot"),
        (246, "kexec_load"),
        (425, "io_uring_setup"),
    ] {
        ensure!(
            default.call("x86_64", nr) == "1",
            "{call} is refused with EPERM: {}",
            default.call("x86_64", nr)
        );
    }
    for (nr, call) in [(0, "read"), (1, "write"), (257, "openat"), (61, "wait4")] {
        ensure!(
            default.call("x86_64", nr) != "1",
            "{call} is allowed: {}",
            default.call("x86_64", nr)
        );
    }
    ensure!(
        default.args["clone3"] == "Function not implemented",
        "clone3 answers ENOSYS so libc falls back to clone: {:?}",
        default.args
    );
    ensure!(default.args["clone(plain)"] == "ok", "{:?}", default.args);
    ensure!(
        default.args["clone(CLONE_NEWUTS)"] == "EPERM",
        "{:?}",
        default.args
    );
    ensure!(
        default.args["personality(ADDR_NO_RANDOMIZE)"] == "EPERM",
        "{:?}",
        default.args
    );
    // Numbers above every call the profile names answer ENOSYS (runc's stub), on every ABI.
    for abi in ["x86_64", "x86"] {
        ensure!(
            default.call(abi, 479) == "38",
            "{abi} 479: {}",
            default.call(abi, 479)
        );
    }
    // seccomp=unconfined lifts the filter only: the kernel answers what the filter refused.
    let unconfined = probe(&["--security-opt", "seccomp=unconfined"])?;
    ensure!(
        unconfined.args["personality(ADDR_NO_RANDOMIZE)"] == "ok"
            && unconfined.args["clone3"] != "Function not implemented"
            && unconfined.call("x86_64", 250) != "1",
        "unconfined: {:?}",
        unconfined.args
    );
    let Some(dockerd) = Dockerd::start("seccomp-dockerd")? else {
        return skip(
            "the_default_seccomp_profile… (the dockerd half)",
            "dockerd (docker.io) is not installed",
        );
    };
    dockerd.docker(&["import", tar_arg, "sysprobe:1"])?.ok()?;
    for extra in [
        &[][..],
        &["--cap-add", "SYS_ADMIN"][..],
        &["--cap-add", "SYS_PTRACE"][..],
    ] {
        let with_caps;
        let ours = if extra.is_empty() {
            &default
        } else {
            with_caps = probe(extra)?;
            &with_caps
        };
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(extra);
        args.extend(["sysprobe:1", "/sysprobe"]);
        let theirs = Report::parse(&dockerd.docker(&args)?.ok()?.stdout)?;
        let diff = differences(ours, &theirs)?;
        ensure!(
            diff.is_empty(),
            "capsa and dockerd differ with {extra:?} on {} calls:\n{}",
            diff.len(),
            diff.join("\n")
        );
    }
    Ok(())
}

/// `Name:\tvalue` of /proc/self/status as the container printed it.
fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map_or("", str::trim)
}

#[test]
fn privileged_lifts_everything_and_unconfined_only_the_filter() -> Result<()> {
    let ctx = EngineContext::new("privileged")?;
    ctx.import_busybox("bb:1")?;
    let status = |extra: &[&str]| -> Result<String> {
        let mut args = extra.to_vec();
        args.extend(["bb:1", "cat", "/proc/self/status"]);
        Ok(ctx.run_rm(&args)?.ok()?.stdout)
    };
    let default = status(&[])?;
    ensure!(
        status_field(&default, "Seccomp") == "2",
        "filtered: {default}"
    );
    ensure!(
        status_field(&default, "CapEff") == "00000000a80425fb",
        "Docker's capabilities: {default}"
    );
    ensure!(status_field(&default, "NoNewPrivs") == "0", "{default}");
    let unconfined = status(&["--security-opt", "seccomp=unconfined"])?;
    ensure!(
        status_field(&unconfined, "Seccomp") == "0"
            && status_field(&unconfined, "CapEff") == "00000000a80425fb",
        "no filter, the same capabilities: {unconfined}"
    );
    let nnp = status(&["--security-opt", "no-new-privileges"])?;
    ensure!(status_field(&nnp, "NoNewPrivs") == "1", "{nnp}");
    // --privileged: every capability this host can grant, no filter.
    let host = std::fs::read_to_string("/proc/self/status")?;
    let privileged = status(&["--privileged", "--cap-drop", "ALL"])?;
    ensure!(
        status_field(&privileged, "Seccomp") == "0"
            && status_field(&privileged, "CapEff") == status_field(&host, "CapBnd"),
        "privileged (cap flags ignored, as dockerd does): {privileged}\nhost: {host}"
    );
    // ... writable /sys and cgroups, nothing masked, the host's devices.
    let mut host_devices: Vec<String> = std::fs::read_dir("/dev")?
        .filter_map(|e| e.ok())
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "console")
        .collect();
    host_devices.sort();
    let script = "grep -E ' /sys | /sys/fs/cgroup ' /proc/self/mounts; \
                  echo timer_list=$(wc -c < /proc/timer_list); \
                  echo proc_sys_mounts=$(grep -c ' /proc/sys ' /proc/self/mounts); ls /dev";
    let out = ctx
        .run_rm(&["--privileged", "bb:1", "sh", "-c", script])?
        .ok()?;
    let sys: Vec<&str> = out.stdout.lines().filter(|l| l.contains(" /sys")).collect();
    ensure!(
        sys.len() >= 2 && sys.iter().all(|l| l.contains(" rw,")),
        "/sys and /sys/fs/cgroup are mounted writable: {}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("proc_sys_mounts=0\n"),
        "/proc/sys is not made read-only: {}",
        out.stdout
    );
    ensure!(
        !out.stdout.contains("timer_list=0\n"),
        "unmasked: {}",
        out.stdout
    );
    for name in &host_devices {
        ensure!(
            out.stdout.lines().any(|l| l == name),
            "the host's /dev/{name} is in the container: {}",
            out.stdout
        );
    }
    let plain = ctx
        .run_rm(&[
            "bb:1",
            "sh",
            "-c",
            "grep ' /sys ' /proc/self/mounts; echo timer_list=$(wc -c < /proc/timer_list)",
        ])?
        .ok()?;
    ensure!(
        plain.stdout.contains(" ro,") && plain.stdout.contains("timer_list=0\n"),
        "the default keeps /sys read-only and /proc masked: {plain}"
    );
    // The mount family comes back with CAP_SYS_ADMIN, as Docker's profile has it.
    let mount = "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted";
    let admin = ctx.run_rm(&["--cap-add", "SYS_ADMIN", "bb:1", "sh", "-c", mount])?;
    ensure!(admin.stdout.contains("mounted"), "{admin}");
    let refused = ctx.run_rm(&["bb:1", "sh", "-c", mount])?;
    ensure!(!refused.stdout.contains("mounted"), "{refused}");
    // A process exec'd into the container is filtered too.
    ctx.run(&[
        "-d",
        "--name",
        "capsa-test-filtered",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "60",
    ])?
    .ok()?;
    let exec = ctx
        .capsa(&[
            "exec",
            "capsa-test-filtered",
            "grep",
            "Seccomp:",
            "/proc/self/status",
        ])?
        .ok()?;
    ensure!(exec.stdout.trim() == "Seccomp:\t2", "{exec}");
    let inspect = ctx.capsa(&["inspect", "capsa-test-filtered"])?.ok()?;
    let value: serde_json::Value = serde_json::from_str(&inspect.stdout)?;
    ensure!(value[0]["HostConfig"]["Privileged"] == false, "{inspect}");
    ctx.capsa(&["rm", "-f", "capsa-test-filtered"])?.ok()?;
    Ok(())
}

#[test]
fn devices_and_device_cgroup_rules_reach_the_container() -> Result<()> {
    let ctx = EngineContext::new("devices")?;
    ctx.import_busybox("bb:1")?;
    let out = ctx
        .run_rm(&[
            "--device",
            "/dev/null:/dev/capsa-null",
            "bb:1",
            "sh",
            "-c",
            "ls -l /dev/capsa-null; echo x > /dev/capsa-null && echo written",
        ])?
        .ok()?;
    ensure!(
        out.stdout.contains("1,   3") && out.stdout.contains("written"),
        "{out}"
    );
    // Permissions are the device cgroup's: r only, so no writes.
    if Path::new("/dev/loop-control").exists() {
        let out = ctx
            .run_rm(&[
                "--device",
                "/dev/loop-control:/dev/capsa-lc:r",
                "bb:1",
                "sh",
                "-c",
                "ls -l /dev/capsa-lc; head -c0 /dev/capsa-lc && echo read; echo > /dev/capsa-lc || echo write-refused",
            ])?
            .ok()?;
        ensure!(
            out.stdout.contains("10, 237")
                && out.stdout.contains("read")
                && out.stdout.contains("write-refused")
                && out.stderr.contains("Operation not permitted"),
            "{out}"
        );
    }
    // Any node may be created (as under Docker); opening one needs a rule.
    let mknod = "mknod /tmp/capsa-loop b 7 0 && echo made; head -c1 /tmp/capsa-loop; echo head=$?";
    let without = ctx.run_rm(&["bb:1", "sh", "-c", mknod])?;
    ensure!(
        without.stdout.contains("made") && without.stderr.contains("Operation not permitted"),
        "{without}"
    );
    let with = ctx.run_rm(&["--device-cgroup-rule", "b 7:* r", "bb:1", "sh", "-c", mknod])?;
    ensure!(
        with.stdout.contains("made") && !with.stderr.contains("Operation not permitted"),
        "{with}"
    );
    // inspect shows them as dockerd does.
    ctx.create(&[
        "--name",
        "capsa-test-dev",
        "--network",
        "none",
        "--device",
        "/dev/null:/dev/capsa-null:rw",
        "--device-cgroup-rule",
        "c 1:3 r",
        "bb:1",
        "true",
    ])?
    .ok()?;
    let inspect = ctx.capsa(&["inspect", "capsa-test-dev"])?.ok()?;
    let value: serde_json::Value = serde_json::from_str(&inspect.stdout)?;
    let host = &value[0]["HostConfig"];
    ensure!(
        host["Devices"][0]["PathOnHost"] == "/dev/null"
            && host["Devices"][0]["PathInContainer"] == "/dev/capsa-null"
            && host["Devices"][0]["CgroupPermissions"] == "rw"
            && host["DeviceCgroupRules"][0] == "c 1:3 r",
        "{host}"
    );
    ctx.capsa(&["rm", "capsa-test-dev"])?.ok()?;
    // Bad values: one line naming the flag, exit 125, nothing created.
    for (flag, value, says) in [
        ("--device", "/nonexistent/capsa-dev", "No such file"),
        ("--device", "/etc/hostname", "not a device node"),
        ("--device", "dev/null", "absolute"),
        ("--device", "/dev/null:/dev/x:rwx", "r, w and m"),
        ("--device-cgroup-rule", "x 1:3 r", "TYPE MAJOR:MINOR ACCESS"),
        ("--device-cgroup-rule", "c 1:3", "TYPE MAJOR:MINOR ACCESS"),
        ("--cap-add", "NOPE", "unknown capability"),
    ] {
        let out = ctx.run(&["--network", "none", flag, value, "bb:1", "true"])?;
        ensure!(
            out.code() == 125 && out.stderr.contains(says) && out.stderr.lines().count() == 1,
            "{flag} {value}: {out}"
        );
    }
    ctx.ensure_no_containers()?;
    Ok(())
}

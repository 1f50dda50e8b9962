//! Resources and control of a running container through its cgroup: memory, pids, cpu and device
//! limits hold; pause freezes and resume thaws; update changes limits live; events reports usage
//! and OOM kills; impossible values fail clearly and leave the container running. Every test reads
//! the cgroup files through the layout it finds (v1, hybrid or pure v2), so the same tests run on
//! this host and in the pure-v2 VM lane.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use capsa_tests::cleanup::cgroup_dirs;
use capsa_tests::context::{TestContext, path_str, skip};
use oci_spec::runtime::{Capability, LinuxResources};

/// The first of `files` (in that order of preference) that exists in one of the cgroup's
/// directories.
fn cgroup_file(cgroup: &str, files: &[&str]) -> Result<PathBuf> {
    let dirs = cgroup_dirs(cgroup)?;
    for file in files {
        for dir in &dirs {
            let path = dir.join(file);
            if path.exists() {
                return Ok(path);
            }
        }
    }
    bail!("none of {files:?} exists for cgroup {cgroup}")
}

fn read_trimmed(path: &PathBuf) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("read {}", path.display()))?
        .trim()
        .to_string())
}

fn resources(json: serde_json::Value) -> Result<LinuxResources> {
    serde_json::from_value(json).context("resources JSON")
}

/// Total CPU time the cgroup has used, in microseconds (v1 cpuacct.usage is in ns; v2 cpu.stat's
/// usage_usec in µs).
fn cpu_usage_us(cgroup: &str) -> Result<u64> {
    let path = cgroup_file(cgroup, &["cpuacct.usage", "cpu.stat"])?;
    let text = read_trimmed(&path)?;
    if path.ends_with("cpuacct.usage") {
        return Ok(text.parse::<u64>()? / 1000);
    }
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .context("cpu.stat has no usage_usec")?
        .trim()
        .parse()
        .context("usage_usec")
}

#[test]
fn cgroup_memory_limit_oom_kills_the_payload_and_run_exits_137() -> Result<()> {
    let ctx = TestContext::new("cg-oom")?;
    let mut b = ctx.bundle()?;
    b.linux().set_resources(Some(resources(
        serde_json::json!({"memory": {"limit": 33554432}}),
    )?));
    // dd's 64 MiB buffer is filled from /dev/zero: past the 32 MiB limit.
    b.process().set_args(Some(vec![
        "dd".into(),
        "if=/dev/zero".into(),
        "of=/dev/null".into(),
        "bs=64M".into(),
        "count=1".into(),
    ]));
    let out = ctx.run(&b)?;
    ensure!(
        out.code() == 137,
        "expected exit 137 (SIGKILL by the OOM killer): {out}"
    );
    Ok(())
}

#[test]
fn cgroup_events_stream_reports_the_oom_kill() -> Result<()> {
    let ctx = TestContext::new("cg-oom-events")?;
    let mut b = ctx.bundle()?;
    b.linux().set_resources(Some(resources(
        serde_json::json!({"memory": {"limit": 33554432}}),
    )?));
    b.payload("sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 1");
    let (id, _) = ctx.create(&b, &[])?;
    let events = ctx.runtime.spawn(&["events", "--interval", "200ms", &id])?;
    ctx.rt(&["start", &id])?.ok()?;
    // capsa's stream ends when the container stops; runc's goes on, so poll what it printed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events.stdout_so_far().contains(r#""type":"oom""#) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = events.signal(nix::sys::signal::Signal::SIGTERM);
    let out = events.wait(Duration::from_secs(5))?;
    ensure!(
        out.stdout.lines().any(|l| l.contains(r#""type":"oom""#)),
        "no oom event in the stream: {out}"
    );
    ensure!(
        out.stdout.lines().any(|l| l.contains(r#""type":"stats""#)),
        "no stats event in the stream: {out}"
    );
    Ok(())
}

#[test]
fn cgroup_events_stats_prints_usage_once() -> Result<()> {
    let ctx = TestContext::new("cg-stats")?;
    let mut b = ctx.bundle()?;
    b.linux().set_resources(Some(resources(
        serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 32}}),
    )?));
    b.payload("sleep 30");
    let (id, _) = ctx.run_detached(&b)?;
    let out = ctx.rt(&["events", "--stats", &id])?.ok()?;
    let event: serde_json::Value = serde_json::from_str(out.stdout.trim()).context("event JSON")?;
    ensure!(
        event["type"] == "stats" && event["id"] == id.as_str(),
        "{event}"
    );
    ensure!(
        event["data"]["memory"]["usage"]["limit"] == 67108864,
        "{event}"
    );
    ensure!(event["data"]["pids"]["limit"] == 32, "{event}");
    ensure!(
        event["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{event}"
    );
    Ok(())
}

#[test]
fn cgroup_pids_limit_stops_a_fork_loop() -> Result<()> {
    let ctx = TestContext::new("cg-pids")?;
    let mut b = ctx.bundle()?;
    b.linux()
        .set_resources(Some(resources(serde_json::json!({"pids": {"limit": 10}}))?));
    // busybox sh exits when a fork fails: the fork loop runs in a child shell, and pid 1 then
    // becomes a sleep with exec (no fork) to keep the container up.
    b.payload("sh -c 'for i in $(seq 1 40); do sleep 30 & done' 2>/dev/null; exec sleep 30");
    let (id, _) = ctx.run_detached(&b)?;
    // Wait for the loop to hit the limit: the kernel counts refused forks in pids.events.
    let events = cgroup_file(&b.cgroup, &["pids.events"])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_trimmed(&events)?
        .lines()
        .any(|l| l.starts_with("max ") && l != "max 0")
    {
        ensure!(
            Instant::now() < deadline,
            "no fork was refused: {}",
            read_trimmed(&events)?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids: Vec<i32> =
        serde_json::from_str(&ctx.rt(&["ps", "--format", "json", &id])?.ok()?.stdout)?;
    ensure!(
        pids.len() <= 10,
        "{} processes under a limit of 10",
        pids.len()
    );
    ensure!(
        pids.len() >= 9,
        "the fork loop stopped early: {} processes",
        pids.len()
    );
    // The host is unharmed: it can still start processes.
    ensure!(std::process::Command::new("true").status()?.success());
    Ok(())
}

#[test]
fn cgroup_cpu_quota_holds_a_busy_loop_to_half_a_cpu() -> Result<()> {
    let ctx = TestContext::new("cg-cpu")?;
    let mut b = ctx.bundle()?;
    b.linux().set_resources(Some(resources(
        serde_json::json!({"cpu": {"quota": 50000, "period": 100000}}),
    )?));
    b.payload("while :; do :; done");
    let (id, _) = ctx.run_detached(&b)?;
    std::thread::sleep(Duration::from_millis(300));
    let (t0, u0) = (Instant::now(), cpu_usage_us(&b.cgroup)?);
    std::thread::sleep(Duration::from_secs(3));
    let (wall, used) = (t0.elapsed(), cpu_usage_us(&b.cgroup)? - u0);
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    let ratio = used as f64 / wall.as_micros() as f64;
    ensure!(
        (0.3..=0.7).contains(&ratio),
        "the cgroup used {ratio:.2} CPU over {wall:?} under a 0.5 CPU quota"
    );
    Ok(())
}

#[test]
fn cgroup_devices_allow_dev_null_and_deny_mknod_of_other_devices() -> Result<()> {
    let ctx = TestContext::new("cg-devices")?;
    let mut b = ctx.bundle()?;
    // CAP_MKNOD, so that only the device cgroup can refuse the mknod.
    let mut caps = b
        .process()
        .capabilities()
        .clone()
        .context("default spec has capabilities")?;
    let with_mknod = |s: &Option<std::collections::HashSet<Capability>>| {
        let mut s = s.clone().unwrap_or_default();
        s.insert(Capability::Mknod);
        Some(s)
    };
    caps.set_bounding(with_mknod(caps.bounding()));
    caps.set_effective(with_mknod(caps.effective()));
    caps.set_permitted(with_mknod(caps.permitted()));
    b.process().set_capabilities(Some(caps));
    b.linux().set_resources(Some(resources(
        serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}),
    )?));
    b.payload(
        "echo hi > /dev/null && echo null=ok; \
         mknod /tmp/null2 c 1 3 && echo allowed-mknod=ok; \
         mknod /tmp/port c 1 4 2>&1; echo denied-mknod=$?",
    );
    let out = ctx.run(&b)?.ok()?;
    ensure!(
        out.stdout.contains("null=ok"),
        "writing /dev/null failed: {out}"
    );
    ensure!(
        out.stdout.contains("allowed-mknod=ok"),
        "mknod of an allowed device failed: {out}"
    );
    if ctx.runtime.is_runc() {
        // runc allows mknod of every device (`c *:* m`); capsa denies what the rules deny.
        return skip("cgroup devices mknod", "runc allows mknod of any device");
    }
    ensure!(
        out.stdout.contains("denied-mknod=1") && out.stdout.contains("not permitted"),
        "mknod of a denied device did not fail with EPERM: {out}"
    );
    Ok(())
}

#[test]
fn cgroup_pause_freezes_every_process_and_resume_thaws_them() -> Result<()> {
    let ctx = TestContext::new("cg-pause")?;
    let mut b = ctx.bundle()?;
    b.payload(
        "(while :; do echo . >> /tmp/child; sleep 0.05; done) & \
         while :; do echo . >> /tmp/count; sleep 0.05; done",
    );
    let (id, _) = ctx.run_detached(&b)?;
    let rootfs = b.rootfs();
    // Each process appends a line per tick: the line count only grows while it runs.
    let read = |name: &str| -> Result<usize> {
        let text = std::fs::read_to_string(rootfs.join("tmp").join(name)).unwrap_or_default();
        Ok(text.lines().count())
    };
    std::thread::sleep(Duration::from_millis(400));
    ctx.rt(&["pause", &id])?.ok()?;
    ensure!(ctx.state(&id)?["status"] == "paused", "state after pause");
    let frozen = cgroup_file(&b.cgroup, &["freezer.state", "cgroup.events"])?;
    let text = read_trimmed(&frozen)?;
    ensure!(
        text == "FROZEN" || text.lines().any(|l| l == "frozen 1"),
        "{} says {text:?}",
        frozen.display()
    );
    let (count, child) = (read("count")?, read("child")?);
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        read("count")? == count && read("child")? == child,
        "processes ran while paused"
    );
    ctx.rt(&["resume", &id])?.ok()?;
    ensure!(ctx.state(&id)?["status"] == "running", "state after resume");
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        read("count")? > count && read("child")? > child,
        "processes did not run after resume"
    );
    Ok(())
}

#[test]
fn cgroup_delete_force_of_a_paused_container_leaves_no_cgroup() -> Result<()> {
    let ctx = TestContext::new("cg-del-paused")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 30 & sleep 30");
    let (id, _) = ctx.run_detached(&b)?;
    ctx.rt(&["pause", &id])?.ok()?;
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    ctx.assert_nothing_left(&id, &b)
}

#[test]
fn cgroup_update_changes_limits_of_a_running_container() -> Result<()> {
    let ctx = TestContext::new("cg-update")?;
    let mut b = ctx.bundle()?;
    b.linux().set_resources(Some(resources(
        serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 20}}),
    )?));
    b.payload("sleep 30");
    let (id, _) = ctx.run_detached(&b)?;
    ctx.rt(&["update", "--memory", "100m", "--pids-limit", "42", &id])?
        .ok()?;
    let memory = cgroup_file(&b.cgroup, &["memory.limit_in_bytes", "memory.max"])?;
    ensure!(
        read_trimmed(&memory)? == "104857600",
        "{}",
        memory.display()
    );
    let pids = cgroup_file(&b.cgroup, &["pids.max"])?;
    ensure!(read_trimmed(&pids)? == "42", "{}", pids.display());
    // --resources takes runc's JSON.
    let doc = ctx.dir().join("resources.json");
    std::fs::write(&doc, r#"{"pids": {"limit": 55}}"#)?;
    ctx.rt(&["update", "--resources", path_str(&doc)?, &id])?
        .ok()?;
    ensure!(read_trimmed(&pids)? == "55", "after --resources");
    Ok(())
}

#[test]
fn cgroup_update_with_impossible_values_fails_and_leaves_the_container_running() -> Result<()> {
    let ctx = TestContext::new("cg-update-bad")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 30");
    let (id, _) = ctx.run_detached(&b)?;
    let out = ctx
        .rt(&["update", "--cpuset-cpus", "60-63", &id])?
        .failed()?;
    ensure!(
        out.stderr.contains("cpuset") || out.stderr.contains("cpus"),
        "the error does not name the cpuset: {out}"
    );
    let out = ctx.rt(&["update", "--memory", "4k", &id])?.failed()?;
    ensure!(
        out.stderr.contains("memory"),
        "the error does not name memory: {out}"
    );
    ensure!(
        ctx.state(&id)?["status"] == "running",
        "the container was harmed"
    );
    Ok(())
}

#[test]
fn cgroup_create_with_an_impossible_cpuset_fails_and_leaves_nothing() -> Result<()> {
    let ctx = TestContext::new("cg-bad-cpuset")?;
    let mut b = ctx.bundle()?;
    b.linux().set_resources(Some(resources(
        serde_json::json!({"cpu": {"cpus": "60-63"}}),
    )?));
    b.write()?;
    let id = ctx.new_id();
    let out = ctx
        .rt(&["create", "--bundle", path_str(&b.dir)?, &id])?
        .failed()?;
    ensure!(
        out.stderr.contains("cpu"),
        "the error does not name the cpu field: {out}"
    );
    ctx.assert_nothing_left(&id, &b)
}

/// Whether `pid` is listed in `cgroup.procs` of every directory (one per hierarchy: each v1
/// controller and the v2 hierarchy) of the test cgroup `cgroup`.
fn in_every_hierarchy(cgroup: &str, pid: i32) -> Result<()> {
    let dirs = cgroup_dirs(cgroup)?;
    ensure!(!dirs.is_empty(), "no cgroup hierarchy found for {cgroup}");
    for dir in dirs {
        let procs = read_trimmed(&dir.join("cgroup.procs"))?;
        ensure!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "process {pid} is not in {} (it holds {procs:?})",
            dir.display()
        );
    }
    Ok(())
}

/// The init joins its v1 directories itself (writing 0 to `tasks`, which spares the kernel's
/// global migration lock) and is born in the v2 one; an exec'd process does the same; an init in
/// a new user namespace cannot write the host's cgroup files and is placed by the runtime. Each
/// way must leave the process in the container's cgroup of every hierarchy, and a cgroup
/// namespace rooted there.
#[test]
fn cgroup_init_and_exec_are_placed_in_every_hierarchy_with_and_without_a_user_namespace()
-> Result<()> {
    use oci_spec::runtime::LinuxNamespaceType;
    let ctx = TestContext::new("cg-placed")?;
    for user_namespace in [false, true] {
        let mut b = ctx.bundle()?;
        b.payload("sleep 1000");
        b.namespace(LinuxNamespaceType::Cgroup, None);
        if user_namespace {
            b.user_namespace(0);
        }
        let (id, _) = ctx.run_detached(&b)?;
        let init = ctx.pid_of(&id)?;
        in_every_hierarchy(&b.cgroup, init).with_context(|| format!("userns {user_namespace}"))?;
        // Inside, every hierarchy's cgroup is the namespace's root.
        let inside = ctx
            .rt(&["exec", &id, "cat", "/proc/self/cgroup"])?
            .ok()?
            .stdout;
        for line in inside.lines() {
            ensure!(
                line.ends_with(":/"),
                "userns {user_namespace}: the cgroup namespace is not rooted at the container's \
                 cgroup: {line:?} in\n{inside}"
            );
        }
        let pid_file = ctx.dir().join(format!("exec-{user_namespace}.pid"));
        ctx.rt(&[
            "exec",
            "--detach",
            "--pid-file",
            path_str(&pid_file)?,
            &id,
            "sleep",
            "1000",
        ])?
        .ok()?;
        let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
        ctx.guard().pid(pid);
        in_every_hierarchy(&b.cgroup, pid)
            .with_context(|| format!("exec'd process, userns {user_namespace}"))?;
        ctx.rt(&["delete", "--force", &id])?.ok()?;
    }
    Ok(())
}

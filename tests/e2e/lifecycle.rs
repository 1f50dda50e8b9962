//! The container lifecycle as a user drives it: create, start, state, kill, delete, list, ps,
//! spec, features, run -d.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use capsa_tests::context::{TestContext, path_str};
use capsa_tests::probe::Probe;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn create_start_state_delete_walks_through_created_running_stopped() -> Result<()> {
    let ctx = TestContext::new("lifecycle")?;
    let mut b = ctx.bundle()?;
    // Runs until /tmp/go exists in the container, so the test sees `running` for sure.
    b.payload("echo started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done");
    let pid_file = ctx.dir().join("container.pid");
    let (id, create) = ctx.create(&b, &["--pid-file", path_str(&pid_file)?])?;

    let state = ctx.state(&id)?;
    ensure!(state["status"] == "created", "after create: {state}");
    ensure!(state["id"] == id.as_str(), "state id: {state}");
    let bundle_dir = b.dir.canonicalize()?;
    ensure!(
        state["bundle"].as_str().map(std::path::PathBuf::from) == Some(bundle_dir.clone()),
        "state bundle should be {}: {state}",
        bundle_dir.display()
    );
    ensure!(
        state["ociVersion"].is_string(),
        "state has no ociVersion: {state}"
    );
    let pid = state["pid"].as_i64().context("created state has a pid")?;
    ensure!(pid > 0, "created state pid: {state}");
    let pid_text = std::fs::read_to_string(&pid_file).context("reading --pid-file")?;
    ensure!(
        pid_text.trim() == pid.to_string(),
        "pid file {pid_text:?} != state pid {pid}"
    );
    ensure!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "created container pid {pid} does not exist"
    );
    ensure!(
        !create.stdout_now().contains("started"),
        "the payload ran before start: {}",
        create.stdout_now()
    );

    ctx.rt(&["start", &id])?.ok()?;
    let state = ctx.wait_status(&id, "running", WAIT)?;
    ensure!(state["pid"] == pid, "running pid changed: {state}");
    std::fs::write(b.rootfs().join("tmp/go"), "").context("releasing the payload")?;

    let state = ctx.wait_status(&id, "stopped", WAIT)?;
    ensure!(
        state["pid"].as_i64().unwrap_or(0) == 0,
        "a stopped container reports pid 0: {state}"
    );
    let out = create.stdout_now();
    ensure!(
        out.contains("started") && out.contains("done"),
        "payload output: {out:?}"
    );

    ctx.rt(&["delete", &id])?.ok()?;
    let gone = ctx.rt(&["state", &id])?.failed()?;
    ensure!(
        gone.stderr.contains(&id) || gone.stderr.to_lowercase().contains("not exist"),
        "state of a deleted container should say it does not exist: {gone}"
    );
    Ok(())
}

#[test]
fn start_of_a_running_container_fails() -> Result<()> {
    let ctx = TestContext::new("start-twice")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    ctx.rt(&["start", &id])?.failed()?;
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    Ok(())
}

/// The payload reports each signal it receives on stdout, then keeps running.
const SIGNAL_REPORTER: &str = "for s in TERM USR1 USR2 HUP; do trap \"echo got-$s\" $s; done; \
     echo ready; while true; do sleep 0.05; done";

fn wait_for_output(out: &capsa_tests::runtime::CmdOutput, needle: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + WAIT;
    while !out.stdout_now().contains(needle) {
        ensure!(
            std::time::Instant::now() < deadline,
            "payload never printed {needle:?}; output so far: {:?}",
            out.stdout_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn kill_delivers_signals_given_by_name_and_number() -> Result<()> {
    let ctx = TestContext::new("kill")?;
    let mut b = ctx.bundle()?;
    b.payload(SIGNAL_REPORTER);
    let (id, create) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    wait_for_output(&create, "ready")?;
    ctx.rt(&["kill", &id, "TERM"])?.ok()?;
    wait_for_output(&create, "got-TERM")?;
    ctx.rt(&["kill", &id, "SIGUSR1"])?.ok()?;
    wait_for_output(&create, "got-USR1")?;
    ctx.rt(&["kill", &id, "12"])?.ok()?; // SIGUSR2
    wait_for_output(&create, "got-USR2")?;
    ctx.rt(&["kill", &id, "1"])?.ok()?; // SIGHUP
    wait_for_output(&create, "got-HUP")?;
    ensure!(
        ctx.state(&id)?["status"] == "running",
        "handled signals do not stop it"
    );
    ctx.rt(&["kill", &id, "KILL"])?.ok()?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    Ok(())
}

#[test]
fn kill_without_signal_sends_term() -> Result<()> {
    let ctx = TestContext::new("kill-default")?;
    let mut b = ctx.bundle()?;
    b.payload(SIGNAL_REPORTER);
    let (id, create) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    wait_for_output(&create, "ready")?;
    ctx.rt(&["kill", &id])?.ok()?;
    wait_for_output(&create, "got-TERM")?;
    Ok(())
}

#[test]
fn kill_with_an_unknown_signal_fails_and_names_it() -> Result<()> {
    let ctx = TestContext::new("kill-bad")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    let out = ctx.rt(&["kill", &id, "SIGNOPE"])?.failed()?;
    ensure!(
        out.stderr.contains("NOPE"),
        "stderr should name the signal: {out}"
    );
    ensure!(ctx.state(&id)?["status"] == "running", "still running");
    Ok(())
}

#[test]
fn kill_all_signals_every_process_of_the_container() -> Result<()> {
    let ctx = TestContext::new("kill-all")?;
    let mut b = ctx.bundle()?;
    // pid 1 traps TERM and then waits for its children: it only exits if the children got the
    // signal too.
    b.payload(
        "sleep 1000 & sleep 1001 & trap 'wait; echo children-gone; exit 0' TERM; \
         echo ready; wait",
    );
    let (id, create) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    wait_for_output(&create, "ready")?;
    let ps = ctx.rt(&["ps", "--format", "json", &id])?.ok()?.json()?;
    let pids = ps.as_array().context("ps json is an array")?;
    ensure!(
        pids.len() == 3,
        "pid 1 and two sleeps expected, ps says {ps}"
    );
    ctx.rt(&["kill", "--all", &id, "TERM"])?.ok()?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    wait_for_output(&create, "children-gone")?;
    Ok(())
}

#[test]
fn delete_of_a_running_container_needs_force() -> Result<()> {
    let ctx = TestContext::new("delete-force")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    let pid = ctx.pid_of(&id)?;
    let out = ctx.rt(&["delete", &id])?.failed()?;
    ensure!(
        out.stderr.contains("running") || out.stderr.contains("stopped"),
        "delete should say the container is running: {out}"
    );
    ensure!(
        ctx.state(&id)?["status"] == "running",
        "failed delete kept it"
    );
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    ctx.rt(&["state", &id])?.failed()?;
    let deadline = std::time::Instant::now() + WAIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie is gone for the user; its parent (the runtime's) reaps it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z") {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "payload {pid} survived delete --force"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(
        capsa_tests::cleanup::cgroup_exists(&b.cgroup)?.is_empty(),
        "delete --force removes the cgroup"
    );
    Ok(())
}

#[test]
fn delete_of_a_created_container_works_with_force() -> Result<()> {
    let ctx = TestContext::new("delete-created")?;
    let mut b = ctx.bundle()?;
    b.payload("echo never");
    let (id, create) = ctx.create(&b, &[])?;
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    ctx.rt(&["state", &id])?.failed()?;
    ensure!(
        !create.stdout_now().contains("never"),
        "the payload never ran"
    );
    ctx.assert_nothing_left(&id, &b)
}

#[test]
fn list_shows_containers_as_table_and_json() -> Result<()> {
    let ctx = TestContext::new("list")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    let pid = ctx.pid_of(&id)?;

    let table = ctx.rt(&["list"])?.ok()?;
    let header = table
        .stdout
        .lines()
        .next()
        .context("list prints a header")?;
    for col in ["ID", "PID", "STATUS", "BUNDLE"] {
        ensure!(header.contains(col), "table header lacks {col}: {table}");
    }
    let row = table
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()))
        .with_context(|| format!("no row for {id}: {table}"))?;
    ensure!(
        row.contains(&pid.to_string()) && row.contains("running"),
        "row: {row}"
    );

    let json = ctx.rt(&["list", "--format", "json"])?.ok()?.json()?;
    let entry = json
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
        .with_context(|| format!("no {id} in {json}"))?;
    ensure!(
        entry["status"] == "running" && entry["pid"] == pid,
        "entry: {entry}"
    );
    Ok(())
}

#[test]
fn ps_lists_the_container_processes() -> Result<()> {
    let ctx = TestContext::new("ps")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000 & echo ready; wait");
    let (id, create) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    wait_for_output(&create, "ready")?;
    let pid = ctx.pid_of(&id)?;
    let ps = ctx.rt(&["ps", "--format", "json", &id])?.ok()?.json()?;
    let pids: Vec<i64> = ps
        .as_array()
        .context("ps json is an array")?
        .iter()
        .filter_map(|p| p.as_i64())
        .collect();
    ensure!(pids.len() == 2, "two processes expected: {ps}");
    ensure!(
        pids.contains(&i64::from(pid)),
        "ps lacks the init pid {pid}: {ps}"
    );
    let table = ctx.rt(&["ps", &id])?.ok()?;
    ensure!(
        table.stdout.contains("PID") && table.stdout.contains("sleep"),
        "{table}"
    );
    Ok(())
}

#[test]
fn spec_writes_a_config_that_run_accepts() -> Result<()> {
    let ctx = TestContext::new("spec")?;
    let b = ctx.bundle()?;
    std::fs::remove_file(b.config_path()).ok();
    ctx.rt(&["spec", "--bundle", path_str(&b.dir)?])?.ok()?;
    let text = std::fs::read_to_string(b.config_path()).context("spec wrote no config.json")?;
    let mut spec: serde_json::Value = serde_json::from_str(&text).context("spec's config.json")?;
    ensure!(
        spec["root"]["path"] == "rootfs",
        "spec root: {}",
        spec["root"]
    );
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "echo from-spec"]);
    spec["linux"]["cgroupsPath"] = b.cgroup.clone().into();
    b.write_json(&spec)?;
    let out = ctx.run_written(&b)?.ok()?;
    ensure!(out.stdout.contains("from-spec"), "{out}");
    Ok(())
}

#[test]
fn features_prints_json() -> Result<()> {
    let ctx = TestContext::new("features")?;
    let json = ctx.rt(&["features"])?.ok()?.json()?;
    ensure!(json["ociVersionMax"].is_string(), "features: {json}");
    let hooks = json["hooks"].as_array().context("features lists hooks")?;
    ensure!(
        hooks.iter().any(|h| h == "createRuntime"),
        "features hooks: {json}"
    );
    Ok(())
}

#[test]
fn run_detached_returns_while_the_container_runs() -> Result<()> {
    let ctx = TestContext::new("run-detached")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    let (id, _) = ctx.run_detached(&b)?;
    let state = ctx.state(&id)?;
    ensure!(state["status"] == "running", "after run -d: {state}");
    ctx.rt(&["kill", &id, "KILL"])?.ok()?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    ctx.rt(&["delete", &id])?.ok()?;
    Ok(())
}

#[test]
fn run_prints_the_payload_output_and_leaves_no_container() -> Result<()> {
    let ctx = TestContext::new("run-fg")?;
    let mut b = ctx.bundle()?;
    let facts = ctx.probe(
        &mut b,
        &Probe::new().fact("marker", "cat /capsa-rootfs-marker"),
    )?;
    ensure!(
        facts.ok("marker")? == "capsa test rootfs",
        "marker: {facts:?}"
    );
    let list = ctx.rt(&["list", "--format", "json"])?.ok()?;
    ensure!(
        !list.stdout.contains("capsa-test-"),
        "a foreground run deletes its container: {list}"
    );
    Ok(())
}

#[test]
fn concurrent_creates_of_one_id_make_exactly_one_container() -> Result<()> {
    let ctx = TestContext::new("concurrent-create")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 30");
    b.write()?;
    let id = ctx.new_id();
    let bundle = path_str(&b.dir)?;
    let spawned = (0..6)
        .map(|_| ctx.runtime.spawn(&["create", "--bundle", bundle, &id]))
        .collect::<Result<Vec<_>>>()?;
    let outs = spawned
        .into_iter()
        .map(|s| s.wait(Duration::from_secs(30)))
        .collect::<Result<Vec<_>>>()?;
    let winners = outs.iter().filter(|o| o.success()).count();
    ensure!(winners == 1, "{winners} of 6 concurrent creates succeeded");
    for out in outs.iter().filter(|o| !o.success()) {
        ensure!(
            out.stderr.contains("exists"),
            "a losing create does not say why: {out}"
        );
    }
    ensure!(
        ctx.state(&id)?["status"] == "created",
        "the winner's container is not created"
    );
    Ok(())
}

#[test]
fn concurrent_force_deletes_all_succeed_and_leave_nothing() -> Result<()> {
    let ctx = TestContext::new("concurrent-delete")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 30 & sleep 30");
    let (id, _) = ctx.run_detached(&b)?;
    let spawned = (0..6)
        .map(|_| ctx.runtime.spawn(&["delete", "--force", &id]))
        .collect::<Result<Vec<_>>>()?;
    for s in spawned {
        let out = s.wait(Duration::from_secs(30))?;
        ensure!(out.success(), "a concurrent delete --force failed: {out}");
    }
    ctx.assert_nothing_left(&id, &b)
}

#[test]
fn preserve_fds_passes_extra_descriptors_to_the_payload() -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let ctx = TestContext::new("preserve-fds")?;
    let mut b = ctx.bundle()?;
    b.payload("cat <&3; ls /proc/self/fd/4 >/dev/null 2>&1 && echo fd4-leaked || echo fd4-closed");
    b.write()?;
    let id = ctx.new_id();
    let secret = ctx.dir().join("secret");
    std::fs::write(&secret, "through-fd-3\n")?;
    let file = std::fs::File::open(&secret)?;
    let extra = std::fs::File::open(&secret)?;
    let (fd, extra_fd) = (file.as_raw_fd(), extra.as_raw_fd());
    let mut cmd = std::process::Command::new(&ctx.runtime.bin);
    cmd.arg("--root")
        .arg(&ctx.runtime.root)
        .args([
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            path_str(&b.dir)?,
            &id,
        ])
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only dup2 and close are called (async-signal-safe). The fds
    // go through 100/101 first: dup2 onto itself would keep close-on-exec set.
    unsafe {
        cmd.pre_exec(move || {
            for (from, via) in [(fd, 100), (extra_fd, 101)] {
                if libc::dup2(from, via) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (via, to) in [(100, 3), (101, 4)] {
                if libc::dup2(via, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(via);
            }
            Ok(())
        });
    }
    let out = cmd.output().context("run with --preserve-fds")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.contains("through-fd-3"),
        "fd 3 did not reach the payload: {stdout}"
    );
    ensure!(
        stdout.contains("fd4-closed"),
        "an fd past --preserve-fds leaked: {stdout}"
    );
    Ok(())
}

#[test]
fn each_container_gets_its_own_session_keyring_unless_told_not_to() -> Result<()> {
    let ctx = TestContext::new("keyring")?;
    // Whether the container's /proc/keys lists a keyring named after the container.
    let has_own_keyring = |extra: &[&str]| -> Result<bool> {
        let mut b = ctx.bundle()?;
        // /proc/keys is masked by default; this test needs to read it.
        b.linux().set_masked_paths(Some(vec![]));
        let id = ctx.new_id();
        b.payload(&format!("grep -c '_ses.{id}' /proc/keys || true"));
        b.write()?;
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", path_str(&b.dir)?, &id]);
        let count: u32 = ctx.rt(&args)?.ok()?.stdout.trim().parse().unwrap_or(0);
        Ok(count > 0)
    };
    ensure!(
        has_own_keyring(&[])?,
        "no session keyring named after the container"
    );
    ensure!(
        !has_own_keyring(&["--no-new-keyring"])?,
        "--no-new-keyring still made a keyring"
    );
    Ok(())
}

#[test]
fn errors_callers_match_on_keep_runc_s_words() -> Result<()> {
    // containerd's runc shim treats a kill error as "the process already exited" only when it
    // says `container not running`, and a missing container only when it says `does not exist`;
    // podman matches the same words. Both runtimes must say them.
    let ctx = TestContext::new("caller-words")?;
    let mut b = ctx.bundle()?;
    b.payload("true");
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    for args in [vec!["kill", &id, "KILL"], vec!["pause", &id]] {
        let out = ctx.rt(&args)?.failed()?;
        ensure!(
            out.stderr.contains("container not running"),
            "{args:?} on a stopped container: {out}"
        );
    }
    ctx.rt(&["delete", &id])?.ok()?;
    for args in [
        vec!["kill", &id, "KILL"],
        vec!["state", &id],
        vec!["delete", &id],
    ] {
        let out = ctx.rt(&args)?.failed()?;
        ensure!(
            out.stderr.contains("does not exist"),
            "{args:?} on a deleted container: {out}"
        );
    }
    Ok(())
}

//! `exec`: a new process in a running container. It must share every namespace and the cgroup of
//! the container's pid 1, take the container's process config with the command line's changes (or
//! a `--process` file), report its exit code, detach with a pid file, get a pty through
//! `--console-socket`, and fail clearly on a stopped container or a missing binary.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use capsa_tests::bundle::Bundle;
use capsa_tests::console::{ConsoleSocket, read_until_contains, read_until_hangup};
use capsa_tests::context::{TestContext, path_str, skip};
use capsa_tests::probe::{cap_mask, parse_cap_hex, status_field};
use capsa_tests::rootfs::{USER_GID, USER_UID};
use capsa_tests::runtime::CmdOutput;
use nix::sys::signal::Signal;
use oci_spec::runtime::{Capability, LinuxNamespaceType};

const WAIT: Duration = Duration::from_secs(10);

/// A container whose pid 1 sleeps, started with `run -d`.
fn running(ctx: &TestContext) -> Result<(String, Bundle)> {
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    let (id, _) = ctx.run_detached(&b)?;
    Ok((id, b))
}

/// `exec [flags] ID ARGS...`, waited for.
fn exec(ctx: &TestContext, flags: &[&str], id: &str, args: &[&str]) -> Result<CmdOutput> {
    let mut all = vec!["exec"];
    all.extend_from_slice(flags);
    all.push(id);
    all.extend_from_slice(args);
    ctx.rt(&all)
}

/// `exec ID sh -c SCRIPT`, which must succeed; returns its stdout.
fn exec_sh(ctx: &TestContext, id: &str, script: &str) -> Result<String> {
    Ok(exec(ctx, &[], id, &["sh", "-c", script])?.ok()?.stdout)
}

/// Prints `NAME SELF PID1` for every entry of /proc/self/ns, read from inside the container.
const COMPARE_NAMESPACES: &str = "for n in $(ls /proc/self/ns); do \
     echo \"$n $(readlink /proc/self/ns/$n) $(readlink /proc/1/ns/$n)\"; done";

fn assert_same_namespaces(out: &str) -> Result<()> {
    let mut seen = 0;
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            fields.len() == 3,
            "unreadable namespace line {line:?} in {out:?}"
        );
        ensure!(
            fields[1] == fields[2],
            "the exec'd process is in {} but pid 1 in {}",
            fields[1],
            fields[2]
        );
        seen += 1;
    }
    ensure!(seen >= 7, "too few namespaces listed: {out:?}");
    Ok(())
}

#[test]
fn exec_process_shares_every_namespace_of_pid_1() -> Result<()> {
    let ctx = TestContext::new("exec-ns")?;
    let (id, _) = running(&ctx)?;
    assert_same_namespaces(&exec_sh(&ctx, &id, COMPARE_NAMESPACES)?)
}

#[test]
fn exec_enters_a_user_and_a_cgroup_namespace_too() -> Result<()> {
    let ctx = TestContext::new("exec-userns")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    b.user_namespace(0);
    b.namespace(LinuxNamespaceType::Cgroup, None);
    let (id, _) = ctx.run_detached(&b)?;
    let out = exec_sh(&ctx, &id, COMPARE_NAMESPACES)?;
    assert_same_namespaces(&out)?;
    let user = out
        .lines()
        .find(|l| l.starts_with("user "))
        .context("no user namespace line")?;
    let host_user = std::fs::read_link("/proc/self/ns/user")?;
    ensure!(
        !user.contains(&host_user.display().to_string()),
        "the container should have its own user namespace: {user}"
    );
    Ok(())
}

#[test]
fn exec_process_is_in_the_cgroup_of_pid_1() -> Result<()> {
    let ctx = TestContext::new("exec-cgroup")?;
    let (id, b) = running(&ctx)?;
    let out = exec_sh(
        &ctx,
        &id,
        "cat /proc/self/cgroup; echo @@; cat /proc/1/cgroup",
    )?;
    let (own, pid1) = out.split_once("@@").context("no separator")?;
    ensure!(
        own.trim() == pid1.trim(),
        "cgroups differ:\nexec'd process:\n{own}\npid 1:\n{pid1}"
    );
    ensure!(
        own.contains(&b.cgroup),
        "the exec'd process should be in the container's cgroup: {own}"
    );
    Ok(())
}

#[test]
fn exec_exit_code_comes_back() -> Result<()> {
    let ctx = TestContext::new("exec-code")?;
    let (id, _) = running(&ctx)?;
    let out = exec(&ctx, &[], &id, &["sh", "-c", "exit 5"])?;
    ensure!(out.code() == 5, "exit 5 should give 5: {out}");
    let out = exec(&ctx, &[], &id, &["sh", "-c", "kill -9 $$"])?;
    ensure!(
        out.code() == 128 + 9,
        "death by SIGKILL should give 137: {out}"
    );
    ensure!(
        ctx.state(&id)?["status"] == "running",
        "the container keeps running"
    );
    Ok(())
}

#[test]
fn exec_env_cwd_user_and_groups_flags_apply() -> Result<()> {
    let ctx = TestContext::new("exec-flags")?;
    let (id, _) = running(&ctx)?;
    let user = format!("{USER_UID}:{USER_GID}");
    let out = exec(
        &ctx,
        &[
            "--env",
            "FOO=bar",
            "--env",
            "TERM=dumb",
            "--cwd",
            "/tmp",
            "--user",
            &user,
            "--additional-gids",
            "2000",
        ],
        &id,
        &[
            "sh",
            "-c",
            "echo \"foo=$FOO term=$TERM path=$PATH\"; pwd; id -u; id -g; id -G",
        ],
    )?
    .ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("foo=bar term=dumb path=/")),
        "--env adds to and overrides the container's env: {out}"
    );
    ensure!(lines.get(1) == Some(&"/tmp"), "--cwd: {out}");
    ensure!(
        lines.get(2) == Some(&USER_UID.to_string().as_str()),
        "--user uid: {out}"
    );
    ensure!(
        lines.get(3) == Some(&USER_GID.to_string().as_str()),
        "--user gid: {out}"
    );
    ensure!(
        lines
            .get(4)
            .is_some_and(|l| l.split_whitespace().any(|g| g == "2000")),
        "--additional-gids: {out}"
    );
    Ok(())
}

#[test]
fn exec_without_flags_runs_as_the_containers_process() -> Result<()> {
    let ctx = TestContext::new("exec-defaults")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    b.env("FROM_CONFIG=yes");
    b.process().set_cwd("/home/capsa".into());
    let (id, _) = ctx.run_detached(&b)?;
    let out = exec_sh(
        &ctx,
        &id,
        "echo $FROM_CONFIG; pwd; id -u; [ -t 0 ] || echo no-tty",
    )?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines == ["yes", "/home/capsa", "0", "no-tty"],
        "the container's env, cwd and user, no terminal: {out:?}"
    );
    Ok(())
}

#[test]
fn exec_cap_flag_adds_a_capability() -> Result<()> {
    let ctx = TestContext::new("exec-cap")?;
    let (id, _) = running(&ctx)?;
    let out = exec(
        &ctx,
        &["--cap", "CAP_NET_ADMIN"],
        &id,
        &["cat", "/proc/self/status"],
    )?
    .ok()?;
    let eff = parse_cap_hex(status_field(&out.stdout, "CapEff").context("CapEff")?)?;
    let want = cap_mask(&[Capability::NetAdmin])?;
    ensure!(
        eff & want == want,
        "CapEff {eff:016x} lacks CAP_NET_ADMIN: {out}"
    );
    Ok(())
}

#[test]
fn exec_refuses_an_unknown_capability() -> Result<()> {
    let ctx = TestContext::new("exec-cap-bad")?;
    if ctx.runtime.is_runc() {
        return skip(
            "exec_refuses_an_unknown_capability",
            "runc accepts an unknown capability with a warning; the spec says reject it",
        );
    }
    let (id, _) = running(&ctx)?;
    let out = exec(&ctx, &["--cap", "CAP_NOPE"], &id, &["true"])?.failed()?;
    ensure!(
        out.stderr.contains("CAP_NOPE"),
        "name the capability: {out}"
    );
    Ok(())
}

#[test]
fn exec_process_file_is_run_as_given() -> Result<()> {
    let ctx = TestContext::new("exec-process")?;
    let (id, _) = running(&ctx)?;
    let process = serde_json::json!({
        "terminal": false,
        "user": { "uid": USER_UID, "gid": USER_GID },
        "args": ["sh", "-c", "echo $X; pwd; id -u"],
        "env": ["PATH=/bin:/sbin", "X=from-json"],
        "cwd": "/tmp",
    });
    let path = ctx.dir().join("process.json");
    std::fs::write(&path, process.to_string())?;
    let out = exec(&ctx, &["--process", path_str(&path)?], &id, &[])?.ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines == ["from-json", "/tmp", &USER_UID.to_string()],
        "--process: {out}"
    );
    Ok(())
}

#[test]
fn exec_detached_writes_the_pid_file_of_a_process_in_the_container() -> Result<()> {
    let ctx = TestContext::new("exec-detach")?;
    let (id, _) = running(&ctx)?;
    let pid_file = ctx.dir().join("exec.pid");
    let out = exec(
        &ctx,
        &["--detach", "--pid-file", path_str(&pid_file)?],
        &id,
        &["sleep", "1000"],
    )?
    .ok()?;
    let text = std::fs::read_to_string(&pid_file).context("reading --pid-file")?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file {text:?}"))?;
    ctx.guard().pid(pid);
    let init = ctx.pid_of(&id)?;
    let read = |pid: i32, what: &str| std::fs::read_to_string(format!("/proc/{pid}/{what}"));
    ensure!(
        read(pid, "cmdline")?.starts_with("sleep\0"),
        "pid {pid} from {out} is not the exec'd sleep"
    );
    ensure!(
        read(pid, "cgroup")? == read(init, "cgroup")?,
        "pid {pid} is not in the cgroup of the container's init {init}"
    );
    for ns in ["mnt", "pid", "net", "ipc", "uts"] {
        let link = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/{ns}"));
        ensure!(link(pid)? == link(init)?, "{ns} namespace differs");
    }
    let ps = ctx.rt(&["ps", "--format", "json", &id])?.ok()?.json()?;
    ensure!(
        ps.as_array()
            .is_some_and(|a| a.iter().any(|p| p.as_i64() == Some(i64::from(pid)))),
        "ps should list the exec'd process {pid}: {ps}"
    );
    let state = ctx.state(&id)?;
    ensure!(
        state["status"] == "running" && state["pid"] == init,
        "exec leaves the container's state alone: {state}"
    );
    Ok(())
}

#[test]
fn exec_with_tty_sends_a_pty_master_to_the_console_socket() -> Result<()> {
    let ctx = TestContext::new("exec-tty")?;
    let (id, _) = running(&ctx)?;
    let socket = ConsoleSocket::bind(&ctx.dir().join("console.sock"))?;
    // runc only takes --console-socket for a detached process.
    exec(
        &ctx,
        &["-t", "-d", "--console-socket", path_str(socket.path())?],
        &id,
        &[
            "sh",
            "-c",
            "tty; [ -t 0 ] && echo stdin-is-a-tty; [ -t 1 ] && echo stdout-is-a-tty; \
             read line; echo got-$line",
        ],
    )?
    .ok()?;
    let master = socket.receive_master(WAIT)?;
    // Typed once the payload is about to read it, so the tty's echo cannot land in its output.
    let before = read_until_contains(&master, "stdout-is-a-tty\r\n", WAIT)?;
    nix::unistd::write(&master, b"hello\n")?;
    let out = before + &read_until_hangup(&master, WAIT)?;
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    ensure!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "tty output: {out:?}"
    );
    for want in ["stdin-is-a-tty", "stdout-is-a-tty", "got-hello"] {
        ensure!(lines.contains(&want), "{want} missing from {out:?}");
    }
    Ok(())
}

#[test]
fn exec_into_a_stopped_container_fails_clearly() -> Result<()> {
    let ctx = TestContext::new("exec-stopped")?;
    let mut b = ctx.bundle()?;
    b.payload("true");
    let (id, _) = ctx.run_detached(&b)?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    let out = exec(&ctx, &[], &id, &["true"])?.failed()?;
    ensure!(
        out.stderr.contains("stopped"),
        "the error should say the container is stopped: {out}"
    );
    Ok(())
}

#[test]
fn exec_of_a_missing_binary_fails_naming_it() -> Result<()> {
    let ctx = TestContext::new("exec-missing")?;
    let (id, _) = running(&ctx)?;
    let out = exec(&ctx, &[], &id, &["no-such-binary"])?.failed()?;
    ensure!(
        out.stderr.contains("no-such-binary") && out.stderr.contains("not found"),
        "the error should name the binary: {out}"
    );
    ensure!(
        ctx.state(&id)?["status"] == "running",
        "a failed exec leaves the container running"
    );
    Ok(())
}

#[test]
fn exec_in_the_foreground_forwards_signals() -> Result<()> {
    let ctx = TestContext::new("exec-signal")?;
    let (id, _) = running(&ctx)?;
    let spawned = ctx.runtime.spawn(&[
        "exec",
        &id,
        "sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.05; done",
    ])?;
    let deadline = Instant::now() + WAIT;
    while !spawned.stdout_so_far().contains("ready") {
        if Instant::now() > deadline {
            bail!("the exec'd process never printed ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    spawned.signal(Signal::SIGTERM)?;
    let out = spawned.wait(WAIT)?;
    ensure!(
        out.code() == 3 && out.stdout.contains("got-term"),
        "SIGTERM should reach the process, which exits 3: {out}"
    );
    Ok(())
}

#[test]
fn exec_process_gets_the_containers_seccomp_filter() -> Result<()> {
    let ctx = TestContext::new("exec-seccomp")?;
    let mut b = ctx.bundle()?;
    b.payload("sleep 1000");
    let seccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }
        ]
    }))
    .context("seccomp profile")?;
    b.linux().set_seccomp(Some(seccomp));
    let (id, _) = ctx.run_detached(&b)?;
    let out = exec_sh(
        &ctx,
        &id,
        "grep '^Seccomp:' /proc/self/status; mkdir /tmp/blocked 2>/dev/null || echo mkdir-refused",
    )?;
    ensure!(
        out.contains("Seccomp:\t2") && out.contains("mkdir-refused"),
        "the exec'd process should be filtered like pid 1: {out:?}"
    );
    Ok(())
}

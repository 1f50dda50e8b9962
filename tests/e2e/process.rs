//! The payload process: capabilities, rlimits, cwd, env, user and groups, umask,
//! noNewPrivileges, oomScoreAdj, args, exit codes and signals.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use capsa_tests::context::{TestContext, path_str};
use capsa_tests::probe::{Probe, cap_mask, parse_cap_hex, parse_limits, status_field};
use capsa_tests::rootfs::{EXTRA_GIDS, USER_GID, USER_UID};
use nix::sys::signal::Signal;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxNamespaceType, PosixRlimitBuilder, PosixRlimitType, User,
};

fn caps(list: &[Capability]) -> HashSet<Capability> {
    list.iter().copied().collect()
}

/// Runs a probe of /proc/self/status with `capabilities` and `user` and checks each Cap* line
/// against the expected set.
fn check_caps(
    label: &str,
    capabilities: LinuxCapabilities,
    user: User,
    expected: [(&str, &HashSet<Capability>); 5],
) -> Result<()> {
    let ctx = TestContext::new(label)?;
    let mut b = ctx.bundle()?;
    b.process().set_capabilities(Some(capabilities));
    b.process().set_user(user);
    let facts = ctx.probe(
        &mut b,
        &Probe::new().fact("status", "cat /proc/self/status"),
    )?;
    let status = facts.ok("status")?;
    for (field, set) in expected {
        let seen = parse_cap_hex(status_field(status, field).context(field.to_owned())?)?;
        let want = cap_mask(set)?;
        ensure!(
            seen == want,
            "{field}: payload has {seen:016x}, config says {want:016x} ({set:?})"
        );
    }
    Ok(())
}

#[test]
fn capabilities_of_a_root_payload_equal_the_config_sets() -> Result<()> {
    let set = caps(&[
        Capability::Chown,
        Capability::Kill,
        Capability::NetRaw,
        Capability::Setuid,
        Capability::SysChroot,
    ]);
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(set.clone()));
    c.set_effective(Some(set.clone()));
    c.set_permitted(Some(set.clone()));
    c.set_inheritable(Some(set.clone()));
    c.set_ambient(Some(set.clone()));
    check_caps(
        "caps-root",
        c,
        User::default(),
        [
            ("CapBnd", &set),
            ("CapEff", &set),
            ("CapPrm", &set),
            ("CapInh", &set),
            ("CapAmb", &set),
        ],
    )
}

#[test]
fn capabilities_of_a_non_root_payload_equal_the_config_sets() -> Result<()> {
    // For a non-root execve the kernel keeps only the ambient set in effective/permitted, so
    // the config uses one set for those four and a larger bounding set.
    let bounding = caps(&[
        Capability::Chown,
        Capability::Kill,
        Capability::NetBindService,
        Capability::AuditWrite,
    ]);
    let set = caps(&[Capability::Kill, Capability::NetBindService]);
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(bounding.clone()));
    c.set_effective(Some(set.clone()));
    c.set_permitted(Some(set.clone()));
    c.set_inheritable(Some(set.clone()));
    c.set_ambient(Some(set.clone()));
    let mut user = User::default();
    user.set_uid(USER_UID);
    user.set_gid(USER_GID);
    check_caps(
        "caps-user",
        c,
        user,
        [
            ("CapBnd", &bounding),
            ("CapEff", &set),
            ("CapPrm", &set),
            ("CapInh", &set),
            ("CapAmb", &set),
        ],
    )
}

#[test]
fn rlimits_are_applied() -> Result<()> {
    let ctx = TestContext::new("rlimits")?;
    let mut b = ctx.bundle()?;
    let limit = |typ, soft: u64, hard: u64| {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .expect("a complete rlimit")
    };
    b.process().set_rlimits(Some(vec![
        limit(PosixRlimitType::RlimitNofile, 1024, 1024),
        limit(PosixRlimitType::RlimitNproc, 321, 654),
        limit(PosixRlimitType::RlimitCore, 0, 4096),
    ]));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("limits", "cat /proc/self/limits")
            .fact("ulimit-n", "ulimit -n")
            .fact("ulimit-Hn", "ulimit -Hn")
            .fact("ulimit-u", "ulimit -u"),
    )?;
    let limits = parse_limits(facts.ok("limits")?);
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    ensure!(
        limits["Max open files"] == pair("1024", "1024"),
        "{limits:?}"
    );
    ensure!(limits["Max processes"] == pair("321", "654"), "{limits:?}");
    ensure!(
        limits["Max core file size"] == pair("0", "4096"),
        "{limits:?}"
    );
    ensure!(facts.ok("ulimit-n")? == "1024", "{facts:?}");
    ensure!(facts.ok("ulimit-Hn")? == "1024", "{facts:?}");
    ensure!(facts.ok("ulimit-u")? == "321", "{facts:?}");
    Ok(())
}

#[test]
fn cwd_env_and_args_are_the_configured_ones() -> Result<()> {
    let ctx = TestContext::new("cwd-env")?;
    let mut b = ctx.bundle()?;
    b.process().set_cwd("/home/capsa".into());
    b.process().set_env(Some(vec![
        "PATH=/bin".to_owned(),
        "CAPSA_GREETING=hello world".to_owned(),
        "EMPTY=".to_owned(),
        "HOME=/home/capsa".to_owned(),
    ]));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("pwd", "pwd")
            .fact("env", "env | grep -v -e '^PWD=' -e '^SHLVL=' | sort"),
    )?;
    ensure!(facts.ok("pwd")? == "/home/capsa", "{facts:?}");
    ensure!(
        facts.ok("env")? == "CAPSA_GREETING=hello world\nEMPTY=\nHOME=/home/capsa\nPATH=/bin",
        "{facts:?}"
    );

    // Args are passed as given, without a shell.
    b.process().set_args(Some(vec![
        "/bin/echo".to_owned(),
        "two  spaces".to_owned(),
        "$HOME".to_owned(),
    ]));
    let out = ctx.run(&b)?.ok()?;
    ensure!(out.stdout == "two  spaces $HOME\n", "{out}");
    Ok(())
}

#[test]
fn user_group_and_additional_gids_are_applied() -> Result<()> {
    let ctx = TestContext::new("user")?;
    let mut b = ctx.bundle()?;
    let mut user = User::default();
    user.set_uid(USER_UID);
    user.set_gid(USER_GID);
    user.set_additional_gids(Some(EXTRA_GIDS.to_vec()));
    b.process().set_user(user);
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("id", "id -u; id -g; id -un")
            .fact("status", "cat /proc/self/status"),
    )?;
    ensure!(facts.ok("id")? == "1000\n1000\ncapsa", "{facts:?}");
    let status = facts.ok("status")?;
    let ids = |f: &str| -> Result<Vec<String>> {
        Ok(status_field(status, f)
            .with_context(|| f.to_owned())?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    };
    ensure!(ids("Uid")? == ["1000"; 4], "Uid: {:?}", ids("Uid")?);
    ensure!(ids("Gid")? == ["1000"; 4], "Gid: {:?}", ids("Gid")?);
    let groups: Vec<String> = EXTRA_GIDS.iter().map(u32::to_string).collect();
    ensure!(ids("Groups")? == groups, "Groups: {:?}", ids("Groups")?);
    Ok(())
}

#[test]
fn umask_is_applied() -> Result<()> {
    let ctx = TestContext::new("umask")?;
    let mut b = ctx.bundle()?;
    let mut user = User::default();
    user.set_umask(Some(0o027));
    b.process().set_user(user);
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("umask", "umask")
            .fact("mode", "touch /tmp/f && stat -c %a /tmp/f"),
    )?;
    ensure!(facts.ok("umask")? == "0027", "{facts:?}");
    ensure!(facts.ok("mode")? == "640", "{facts:?}");
    Ok(())
}

#[test]
fn no_new_privileges_is_applied() -> Result<()> {
    let ctx = TestContext::new("nnp")?;
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let mut b = ctx.bundle()?;
        b.process().set_no_new_privileges(Some(nnp));
        let facts = ctx.probe(
            &mut b,
            &Probe::new().fact("status", "cat /proc/self/status"),
        )?;
        let seen = status_field(facts.ok("status")?, "NoNewPrivs");
        ensure!(
            seen == Some(want),
            "noNewPrivileges {nnp}: NoNewPrivs {seen:?}"
        );
    }
    Ok(())
}

#[test]
fn oom_score_adj_is_applied() -> Result<()> {
    let ctx = TestContext::new("oom")?;
    let mut b = ctx.bundle()?;
    b.process().set_oom_score_adj(Some(567));
    let facts = ctx.probe(
        &mut b,
        &Probe::new().fact("oom", "cat /proc/self/oom_score_adj"),
    )?;
    ensure!(facts.ok("oom")? == "567", "{facts:?}");
    Ok(())
}

#[test]
fn run_exits_with_the_payload_exit_code() -> Result<()> {
    let ctx = TestContext::new("exit-code")?;
    for code in [0, 3, 42] {
        let mut b = ctx.bundle()?;
        b.payload(&format!("exit {code}"));
        let out = ctx.run(&b)?;
        ensure!(out.code() == code, "payload exit {code}: {out}");
    }
    Ok(())
}

/// Starts `run` of `bundle` in the background with a pid file; returns the running command
/// and the container's pid once the payload has printed `ready`.
fn spawn_run(
    ctx: &TestContext,
    b: &capsa_tests::bundle::Bundle,
) -> Result<(capsa_tests::runtime::Spawned, i32)> {
    b.write()?;
    let id = ctx.new_id();
    let pid_file = ctx.dir().join(format!("{id}.pid"));
    let run = ctx.runtime.spawn(&[
        "run",
        "--bundle",
        path_str(&b.dir)?,
        "--pid-file",
        path_str(&pid_file)?,
        &id,
    ])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if run.stdout_so_far().contains("ready")
            && let Ok(pid) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = pid.trim().parse()
        {
            return Ok((run, pid));
        }
        ensure!(Instant::now() < deadline, "payload never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_exits_128_plus_n_when_the_payload_dies_of_signal_n() -> Result<()> {
    let ctx = TestContext::new("exit-signal")?;
    let mut b = ctx.bundle()?;
    b.payload("echo ready; sleep 1000");
    let (run, pid) = spawn_run(&ctx, &b)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
        .context("killing the payload")?;
    let out = run.wait(Duration::from_secs(10))?;
    ensure!(out.code() == 128 + 9, "payload killed by SIGKILL: {out}");

    // Without a pid namespace the payload is not an init and can signal itself.
    let mut b = ctx.bundle()?;
    b.without_namespace(LinuxNamespaceType::Pid);
    b.payload("kill -USR1 $$; sleep 5");
    let out = ctx.run(&b)?;
    ensure!(out.code() == 128 + 10, "payload killed by SIGUSR1: {out}");
    Ok(())
}

#[test]
fn run_forwards_sigterm_to_the_payload() -> Result<()> {
    let ctx = TestContext::new("run-sigterm")?;
    let mut b = ctx.bundle()?;
    b.payload("trap 'echo got-TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done");
    let (run, _pid) = spawn_run(&ctx, &b)?;
    run.signal(Signal::SIGTERM)?;
    let out = run.wait(Duration::from_secs(10))?;
    ensure!(out.stdout.contains("got-TERM"), "{out}");
    ensure!(out.code() == 7, "run exits with the payload's code: {out}");
    Ok(())
}

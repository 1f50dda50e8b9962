//! capsad driven by the real docker CLI (28.x) on this machine: the flows of the daemon issue,
//! each asserting what a docker user sees. Every test has a daemon of its own
//! (`capsa_tests::daemon::Daemon`): data root, exec root, socket, cgroup parent.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use capsa_tests::daemon::Daemon;

/// Polls `f` until it is true or `timeout` passes.
fn eventually(timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn docker_cli_runs_lists_inspects_and_removes_containers() -> Result<()> {
    let d = Daemon::start("daemon-cli")?;
    let version = d
        .docker(&[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ])?
        .ok()?;
    ensure!(version.stdout.trim() == "1.47 linux", "{version}");
    let info = d
        .docker(&["info", "--format", "{{.Driver}} {{.Swarm.LocalNodeState}}"])?
        .ok()?;
    ensure!(info.stdout.trim() == "overlay2 inactive", "{info}");
    d.load_busybox("bb:1")?;
    d.docker(&["tag", "bb:1", "bb:alias"])?.ok()?;
    let images = d
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?
        .ok()?;
    let mut names: Vec<&str> = images.stdout.lines().collect();
    names.sort();
    ensure!(names == ["bb:1", "bb:alias"], "{images}");

    // run --rm: stdout and stderr apart, the payload's exit code, nothing left behind.
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 7",
    ])?;
    ensure!(out.code() == 7, "{out}");
    ensure!(out.stdout == "to-out\n", "{out}");
    ensure!(
        out.stderr.contains("to-err\n") && !out.stderr.contains("to-out"),
        "{out}"
    );
    let ps = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(ps.stdout.is_empty(), "a --rm container is left: {ps}");
    let missing = d.docker(&["run", "--rm", "--network", "none", "bb:1", "/no/such"])?;
    ensure!(
        missing.code() != 0 && missing.stderr.contains("/no/such"),
        "{missing}"
    );

    // run -d, ps with filters and --format, labels, inspect, logs, top, stats.
    let id = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "web",
            "--label",
            "tier=front",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "echo started; while true; do sleep 1; done",
        ])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    ensure!(id.len() == 64, "run -d prints the id: {id}");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "batch",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "exit 3",
    ])?
    .ok()?;
    let waited = d.docker(&["wait", "batch"])?.ok()?;
    ensure!(waited.stdout.trim() == "3", "{waited}");
    let running = d
        .docker(&["ps", "--format", "{{.Names}} {{.State}}"])?
        .ok()?;
    ensure!(running.stdout.trim() == "web running", "{running}");
    let exited = d
        .docker(&[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--filter",
            "exited=3",
            "--format",
            "{{.Names}}",
        ])?
        .ok()?;
    ensure!(exited.stdout.trim() == "batch", "{exited}");
    let labelled = d
        .docker(&["ps", "-a", "--filter", "label=tier=front", "-q"])?
        .ok()?;
    ensure!(
        id.starts_with(labelled.stdout.trim()) && !labelled.stdout.trim().is_empty(),
        "{labelled}"
    );
    let by_name = d
        .docker(&["ps", "-a", "--filter", "name=bat", "--format", "{{.Names}}"])?
        .ok()?;
    ensure!(by_name.stdout.trim() == "batch", "{by_name}");
    let ancestor = d
        .docker(&["ps", "-a", "--filter", "ancestor=bb:1", "-q"])?
        .ok()?;
    ensure!(ancestor.stdout.lines().count() == 2, "{ancestor}");
    let fields = d.docker(&["inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Config.Labels.tier}} {{.HostConfig.NetworkMode}} {{.Name}}", "web"])?.ok()?;
    ensure!(
        fields.stdout.trim() == "running true front none /web",
        "{fields}"
    );
    let pid = d
        .docker(&["inspect", "-f", "{{.State.Pid}}", "web"])?
        .ok()?;
    ensure!(pid.stdout.trim().parse::<i32>().unwrap_or(0) > 1, "{pid}");
    let exit_code = d
        .docker(&[
            "inspect",
            "-f",
            "{{.State.ExitCode}} {{.State.Status}}",
            "batch",
        ])?
        .ok()?;
    ensure!(exit_code.stdout.trim() == "3 exited", "{exit_code}");
    ensure!(
        eventually(Duration::from_secs(5), || Ok(d
            .docker(&["logs", "web"])?
            .stdout
            == "started\n"))?,
        "logs"
    );
    let top = d.docker(&["top", "web"])?.ok()?;
    ensure!(
        top.stdout.contains("PID") && top.stdout.contains("sleep"),
        "{top}"
    );
    let stats = d
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}}",
            "web",
        ])?
        .ok()?;
    ensure!(stats.stdout.trim() == "web 2", "{stats}");

    // stop, start, restart, kill, rm -f.
    let stopped = d.docker(&["stop", "-t", "1", "web"])?.ok()?;
    ensure!(stopped.stdout.trim() == "web", "{stopped}");
    let status = d
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "web",
        ])?
        .ok()?;
    ensure!(
        status.stdout.trim() == "exited 137",
        "sh as pid 1 ignores SIGTERM: SIGKILL after -t: {status}"
    );
    d.docker(&["start", "web"])?.ok()?;
    d.docker(&["restart", "-t", "0", "web"])?.ok()?;
    let up = d
        .docker(&["inspect", "-f", "{{.State.Running}}", "web"])?
        .ok()?;
    ensure!(up.stdout.trim() == "true", "{up}");
    d.docker(&["kill", "-s", "KILL", "web"])?.ok()?;
    let code = d.docker(&["wait", "web"])?.ok()?;
    ensure!(code.stdout.trim() == "137", "{code}");
    d.docker(&["start", "web"])?.ok()?;
    let busy = d.docker(&["rm", "web"])?;
    ensure!(
        busy.code() != 0 && busy.stderr.contains("running"),
        "{busy}"
    );
    d.docker(&["rm", "-f", "web", "batch"])?.ok()?;
    let gone = d.docker(&["inspect", "web"])?;
    ensure!(
        gone.code() != 0 && gone.stderr.contains("No such"),
        "{gone}"
    );
    ensure!(
        capsa_tests::cleanup::mounts_below(d.dir()).is_empty(),
        "mounts left"
    );
    Ok(())
}

#[test]
fn docker_exec_and_attach_work_on_a_terminal() -> Result<()> {
    let d = Daemon::start("daemon-exec")?;
    d.load_busybox("bb:1")?;
    d.docker(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ])?
    .ok()?;
    // exec without a terminal: output, exit codes, stdin.
    let out = d.docker(&[
        "exec",
        "box",
        "sh",
        "-c",
        "echo in-box; echo err >&2; exit 4",
    ])?;
    ensure!(
        out.code() == 4 && out.stdout == "in-box\n" && out.stderr.contains("err"),
        "{out}"
    );
    let input = d.dir().join("input.txt");
    std::fs::write(&input, "piped line\n")?;
    let cat = d
        .docker_with_stdin(&["exec", "-i", "box", "cat"], &input)?
        .ok()?;
    ensure!(cat.stdout == "piped line\n", "{cat}");
    let env = d
        .docker(&[
            "exec",
            "-e",
            "A=b",
            "-w",
            "/etc",
            "box",
            "sh",
            "-c",
            "echo $A $(pwd)",
        ])?
        .ok()?;
    ensure!(env.stdout.trim() == "b /etc", "{env}");
    let bad = d.docker(&["exec", "box", "/no/such/program"])?;
    ensure!(bad.code() != 0, "{bad}");

    // exec -it under a real terminal (script(1) gives the docker CLI a pty of 30x100).
    let script = format!(
        "stty rows 30 cols 100; DOCKER_HOST={} DOCKER_CONFIG={} {} exec -it box sh -c 'tty; stty size; echo TERM=$TERM; exit 5'",
        d.host(),
        d.dir().join("docker-config").display(),
        d.docker.display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-eqc", &script, "/dev/null"])
        .stdin(std::process::Stdio::null());
    let tty = capsa_tests::daemon::run_captured(
        cmd,
        "script docker exec -it",
        &d.dir().join("io"),
        Duration::from_secs(30),
    )?;
    ensure!(tty.code() == 5, "{tty}");
    ensure!(
        tty.stdout.contains("/dev/pts/")
            && tty.stdout.contains("30 100")
            && tty.stdout.contains("TERM=xterm"),
        "{tty}"
    );

    // attach to a -it container, type a line, detach with ctrl-p ctrl-q: it keeps running.
    d.docker(&[
        "run",
        "-d",
        "-it",
        "--name",
        "shell",
        "--network",
        "none",
        "bb:1",
        "sh",
    ])?
    .ok()?;
    let script = format!(
        "(sleep 1; printf 'echo typed-$((6*7))\\n'; sleep 1; printf '\\020\\021'; sleep 1) | script -qc 'DOCKER_HOST={} DOCKER_CONFIG={} {} attach shell' /dev/null",
        d.host(),
        d.dir().join("docker-config").display(),
        d.docker.display()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]).stdin(std::process::Stdio::null());
    let attached = capsa_tests::daemon::run_captured(
        cmd,
        "script docker attach",
        &d.dir().join("io"),
        Duration::from_secs(30),
    )?;
    ensure!(attached.stdout.contains("typed-42"), "{attached}");
    let still = d
        .docker(&["inspect", "-f", "{{.State.Running}}", "shell"])?
        .ok()?;
    ensure!(
        still.stdout.trim() == "true",
        "detaching must leave it running: {still}"
    );
    let logged = d.docker(&["logs", "shell"])?.ok()?;
    ensure!(logged.stdout.contains("typed-42"), "{logged}");
    Ok(())
}

#[test]
fn docker_cp_copies_both_ways_and_never_leaves_the_container() -> Result<()> {
    let d = Daemon::start("daemon-cp")?;
    d.load_busybox("bb:1")?;
    d.docker(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "mkdir -p /data/sub; echo inside > /data/sub/f; ln -s /etc /data/escape; sleep 300",
    ])?
    .ok()?;
    ensure!(
        eventually(Duration::from_secs(5), || Ok(d
            .docker(&["exec", "box", "test", "-L", "/data/escape"])?
            .success()))?,
        "setup"
    );
    let host = d.dir().join("host");
    std::fs::create_dir_all(host.join("tree/deep"))?;
    std::fs::write(host.join("file.txt"), "from the host\n")?;
    std::fs::write(host.join("tree/deep/x"), "x\n")?;
    let h = |p: &str| host.join(p).to_string_lossy().into_owned();
    // Host to container: a file, and a tree into a directory.
    d.docker(&["cp", &h("file.txt"), "box:/data/"])?.ok()?;
    d.docker(&["cp", &h("tree"), "box:/data/"])?.ok()?;
    let seen = d
        .docker(&[
            "exec",
            "box",
            "sh",
            "-c",
            "cat /data/file.txt /data/tree/deep/x",
        ])?
        .ok()?;
    ensure!(seen.stdout == "from the host\nx\n", "{seen}");
    // Container to host: a file (renamed) and a tree.
    d.docker(&["cp", "box:/data/sub/f", &h("copied-f")])?.ok()?;
    ensure!(
        std::fs::read_to_string(host.join("copied-f"))? == "inside\n",
        "file copied out"
    );
    d.docker(&["cp", "box:/data/sub", &h("subcopy")])?.ok()?;
    ensure!(
        std::fs::read_to_string(host.join("subcopy/f"))? == "inside\n",
        "tree copied out"
    );
    // A symlink in the container to /etc resolves inside the container, never on the host.
    d.docker(&["cp", &h("file.txt"), "box:/data/escape/"])?
        .ok()?;
    ensure!(
        !Path::new("/etc/file.txt").exists(),
        "a write went through a symlink to the host"
    );
    let in_etc = d.docker(&["exec", "box", "cat", "/etc/file.txt"])?.ok()?;
    ensure!(in_etc.stdout == "from the host\n", "{in_etc}");
    d.docker(&["cp", "box:/data/escape/passwd", &h("passwd")])?
        .ok()?;
    let copied = std::fs::read_to_string(host.join("passwd"))?;
    ensure!(
        copied == d.docker(&["exec", "box", "cat", "/etc/passwd"])?.stdout,
        "the container's passwd, not the host's"
    );
    let missing = d.docker(&["cp", "box:/no/such", &h("x")])?;
    ensure!(
        missing.code() != 0 && missing.stderr.contains("/no/such"),
        "{missing}"
    );
    // A stopped container's files (its overlay, its volumes) copy too.
    d.docker(&["stop", "-t", "0", "box"])?.ok()?;
    d.docker(&["cp", "box:/data/file.txt", &h("after-stop")])?
        .ok()?;
    ensure!(
        std::fs::read_to_string(host.join("after-stop"))? == "from the host\n",
        "stopped container cp"
    );
    Ok(())
}

#[test]
fn named_volumes_keep_data_across_containers() -> Result<()> {
    let d = Daemon::start("daemon-vol")?;
    d.load_busybox("bb:1")?;
    let made = d
        .docker(&["volume", "create", "--label", "app=x", "data"])?
        .ok()?;
    ensure!(made.stdout.trim() == "data", "{made}");
    let ls = d
        .docker(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"])?
        .ok()?;
    ensure!(ls.stdout.trim() == "local data", "{ls}");
    let filtered = d
        .docker(&["volume", "ls", "-q", "--filter", "label=app=x"])?
        .ok()?;
    ensure!(filtered.stdout.trim() == "data", "{filtered}");
    d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data",
        "bb:1",
        "sh",
        "-c",
        "echo kept > /data/f",
    ])?
    .ok()?;
    let read = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--mount",
            "type=volume,source=data,target=/mnt,readonly",
            "bb:1",
            "cat",
            "/mnt/f",
        ])?
        .ok()?;
    ensure!(read.stdout == "kept\n", "{read}");
    let ro = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data:ro",
        "bb:1",
        "touch",
        "/data/g",
    ])?;
    ensure!(ro.code() != 0, "a read-only volume took a write: {ro}");
    // In use: refused; after the container goes, removed.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "data:/data",
        "bb:1",
        "sleep",
        "300",
    ])?
    .ok()?;
    let busy = d.docker(&["volume", "rm", "data"])?;
    ensure!(busy.code() != 0 && busy.stderr.contains("in use"), "{busy}");
    let mp = d
        .docker(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}",
            "holder",
        ])?
        .ok()?;
    ensure!(mp.stdout.trim() == "volume data /data", "{mp}");
    d.docker(&["rm", "-f", "holder"])?.ok()?;
    d.docker(&["volume", "rm", "data"])?.ok()?;
    let none = d.docker(&["volume", "inspect", "data"])?;
    ensure!(none.code() != 0, "{none}");
    // A volume named in -v that does not exist is made, filled with the image's content.
    let auto = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "etcvol:/etc",
            "bb:1",
            "ls",
            "/etc/passwd",
        ])?
        .ok()?;
    ensure!(auto.stdout.trim() == "/etc/passwd", "{auto}");
    let listed = d.docker(&["volume", "ls", "-q"])?.ok()?;
    ensure!(listed.stdout.trim() == "etcvol", "{listed}");
    d.docker(&["volume", "rm", "etcvol"])?.ok()?;
    Ok(())
}

#[test]
fn events_stream_what_containers_do() -> Result<()> {
    let d = Daemon::start("daemon-events")?;
    d.load_busybox("bb:1")?;
    let since = chrono_now();
    d.docker(&["run", "--name", "ev", "--network", "none", "bb:1", "true"])?
        .ok()?;
    d.docker(&["rm", "ev"])?.ok()?;
    let until = chrono_now();
    let events = d
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "type=container",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])?
        .ok()?;
    let actions: Vec<&str> = events.stdout.lines().collect();
    for want in ["create ev", "attach ev", "start ev", "die ev", "destroy ev"] {
        ensure!(actions.contains(&want), "{want:?} missing from {actions:?}");
    }
    let pos = |a: &str| actions.iter().position(|x| *x == a).unwrap_or(usize::MAX);
    ensure!(
        pos("create ev") < pos("start ev")
            && pos("start ev") < pos("die ev")
            && pos("die ev") < pos("destroy ev"),
        "{actions:?}"
    );
    let die = d
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=die",
            "--format",
            "{{json .}}",
        ])?
        .ok()?;
    let v: serde_json::Value =
        serde_json::from_str(die.stdout.lines().next().context("a die event")?)?;
    ensure!(
        v["Actor"]["Attributes"]["exitCode"] == "0"
            && v["Type"] == "container"
            && v["status"] == "die",
        "{v}"
    );
    // A live stream sees a container start and stop while it is open.
    let mut follow = d.docker_command(&[
        "events",
        "--filter",
        "container=live",
        "--format",
        "{{.Action}}",
    ]);
    let log = d.dir().join("events.out");
    let mut child = follow
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    d.docker(&[
        "run",
        "-d",
        "--name",
        "live",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "30",
    ])?
    .ok()?;
    d.docker(&["stop", "-t", "0", "live"])?.ok()?;
    let seen = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log)?;
        Ok(text.contains("start") && text.contains("die") && text.contains("stop"))
    })?;
    let _ = child.kill();
    let _ = child.wait();
    ensure!(seen, "live events: {}", std::fs::read_to_string(&log)?);
    Ok(())
}

/// Now as RFC 3339 (for `--since`/`--until`).
fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

#[test]
fn restart_policies_and_healthchecks_are_the_monitors_job() -> Result<()> {
    let d = Daemon::start("daemon-restart")?;
    d.load_busybox("bb:1")?;
    // on-failure:2 — a crashing payload runs three times, then stays exited.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "crash",
        "--restart",
        "on-failure:2",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "echo run; exit 3",
    ])?
    .ok()?;
    let done = eventually(Duration::from_secs(15), || {
        let s = d
            .docker(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.RestartCount}}",
                "crash",
            ])?
            .stdout;
        Ok(s.trim() == "exited 2")
    })?;
    ensure!(done, "{}", d.docker(&["inspect", "crash"])?.stdout);
    let logs = d.docker(&["logs", "crash"])?.ok()?;
    ensure!(logs.stdout == "run\nrun\nrun\n", "{logs}");
    // always: restarted after each exit; stop ends it; it does not come back by itself.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "sleep 0.2; exit 1",
    ])?
    .ok()?;
    let restarted = eventually(Duration::from_secs(15), || {
        let n = d
            .docker(&["inspect", "-f", "{{.RestartCount}}", "always"])?
            .stdout;
        Ok(n.trim().parse::<i32>().unwrap_or(0) >= 2)
    })?;
    ensure!(restarted, "always did not restart");
    d.docker(&["stop", "-t", "1", "always"])?.ok()?;
    let stopped = d
        .docker(&["inspect", "-f", "{{.State.Status}}", "always"])?
        .ok()?;
    ensure!(stopped.stdout.trim() == "exited", "{stopped}");
    std::thread::sleep(Duration::from_secs(1));
    let still = d
        .docker(&["inspect", "-f", "{{.State.Status}}", "always"])?
        .ok()?;
    ensure!(
        still.stdout.trim() == "exited",
        "a stopped always container came back: {still}"
    );
    // Health: starting, healthy once the file exists, unhealthy after two failures.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--network",
        "none",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "bb:1",
        "sh",
        "-c",
        "sleep 1; touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 300",
    ])?
    .ok()?;
    let status = |d: &Daemon| -> Result<String> {
        Ok(
            d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])?
                .stdout
                .trim()
                .to_owned(),
        )
    };
    ensure!(
        status(&d)? == "starting",
        "a new container's health is starting"
    );
    ensure!(
        eventually(Duration::from_secs(10), || Ok(status(&d)? == "healthy"))?,
        "never healthy"
    );
    let ps = d
        .docker(&[
            "ps",
            "--filter",
            "health=healthy",
            "--format",
            "{{.Names}} {{.Status}}",
        ])?
        .ok()?;
    ensure!(
        ps.stdout.starts_with("hc Up") && ps.stdout.contains("(healthy)"),
        "{ps}"
    );
    ensure!(
        eventually(Duration::from_secs(10), || Ok(status(&d)? == "unhealthy"))?,
        "never unhealthy"
    );
    let log = d
        .docker(&[
            "inspect",
            "-f",
            "{{(index .State.Health.Log 0).ExitCode}}",
            "hc",
        ])?
        .ok()?;
    ensure!(["0", "1"].contains(&log.stdout.trim()), "{log}");
    let events = d
        .docker(&[
            "events",
            "--since",
            "0",
            "--until",
            &chrono_now(),
            "--filter",
            "event=health_status",
            "--format",
            "{{.Action}}",
        ])?
        .ok()?;
    ensure!(
        events.stdout.contains("health_status: healthy")
            && events.stdout.contains("health_status: unhealthy"),
        "{events}"
    );
    Ok(())
}

#[test]
fn live_restore_a_killed_daemon_finds_its_containers() -> Result<()> {
    let mut d = Daemon::start("daemon-restore")?;
    d.load_busybox("bb:1")?;
    d.docker(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    ])?
    .ok()?;
    d.docker(&[
        "run",
        "-d",
        "--name",
        "quiet",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ])?
    .ok()?;
    let pid_before = d
        .docker(&["inspect", "-f", "{{.State.Pid}}", "ticker"])?
        .ok()?
        .stdout;
    d.kill9();
    // While the daemon is down the containers run on, and their output is still logged.
    let log_path = d.capsa(&["inspect", "ticker"])?.ok()?;
    let v: serde_json::Value = serde_json::from_str(&log_path.stdout)?;
    let log_file = v[0]["LogPath"].as_str().context("LogPath")?.to_owned();
    let before = std::fs::read_to_string(&log_file)?.lines().count();
    std::thread::sleep(Duration::from_secs(1));
    let during = std::fs::read_to_string(&log_file)?.lines().count();
    ensure!(during > before, "the monitor logs while the daemon is down");
    d.spawn()?;
    let ps = d.docker(&["ps", "--format", "{{.Names}}"])?.ok()?;
    let mut names: Vec<&str> = ps.stdout.lines().collect();
    names.sort();
    ensure!(names == ["quiet", "ticker"], "{ps}");
    let pid_after = d
        .docker(&["inspect", "-f", "{{.State.Pid}}", "ticker"])?
        .ok()?
        .stdout;
    ensure!(pid_before == pid_after, "the same process, not a restart");
    let exec = d.docker(&["exec", "quiet", "echo", "still-here"])?.ok()?;
    ensure!(exec.stdout == "still-here\n", "{exec}");
    // logs -f follows a running container and ends when it stops.
    let mut follow = d.docker_command(&["logs", "-f", "--tail", "1", "ticker"]);
    let out = d.dir().join("follow.out");
    let mut child = follow
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(800));
    d.docker(&["stop", "-t", "1", "ticker"])?.ok()?;
    let ended = eventually(Duration::from_secs(10), || Ok(child.try_wait()?.is_some()))?;
    if !ended {
        let _ = child.kill();
    }
    let _ = child.wait();
    ensure!(ended, "logs -f did not end when the container stopped");
    let followed = std::fs::read_to_string(&out)?;
    ensure!(
        followed.lines().count() >= 3 && followed.lines().all(|l| l.starts_with("tick ")),
        "{followed}"
    );
    d.docker(&["stop", "-t", "1", "quiet"])?.ok()?;
    let state = d
        .docker(&["ps", "-a", "--format", "{{.Names}} {{.State}}"])?
        .ok()?;
    ensure!(
        state.stdout.lines().all(|l| l.ends_with("exited")),
        "{state}"
    );
    Ok(())
}

#[test]
fn capsa_cli_and_docker_cli_share_one_store() -> Result<()> {
    let d = Daemon::start("daemon-shared")?;
    d.load_busybox("bb:1")?;
    // Made by the capsa CLI without the daemon: docker sees it, and the other way round.
    d.capsa(&["run", "-d", "--name", "from-capsa", "bb:1", "sleep", "300"])?
        .ok()?;
    d.docker(&[
        "run",
        "-d",
        "--name",
        "from-docker",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ])?
    .ok()?;
    let docker_ps = d.docker(&["ps", "--format", "{{.Names}}"])?.ok()?;
    ensure!(docker_ps.stdout.contains("from-capsa"), "{docker_ps}");
    let capsa_ps = d.capsa(&["ps", "--format", "{{.Names}}"])?.ok()?;
    ensure!(capsa_ps.stdout.contains("from-docker"), "{capsa_ps}");
    // The capsa CLI prints the same through the daemon as without it.
    for args in [
        &["ps", "-a", "--format", "{{.Names}} {{.Image}} {{.State}}"][..],
        &["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"][..],
        &["volume", "ls"][..],
    ] {
        let local = d.capsa(args)?.ok()?;
        let remote = d.capsa_remote(args)?.ok()?;
        ensure!(local.stdout == remote.stdout, "{local}\n---\n{remote}");
    }
    let exec = d.capsa_remote(&["exec", "from-capsa", "sh", "-c", "echo via-daemon; exit 3"])?;
    ensure!(exec.code() == 3 && exec.stdout == "via-daemon\n", "{exec}");
    let run = d.capsa_remote(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "echo o; echo e >&2; exit 9",
    ])?;
    ensure!(
        run.code() == 9 && run.stdout == "o\n" && run.stderr.contains("e\n"),
        "{run}"
    );
    d.capsa_remote(&["stop", "-t", "0", "from-docker"])?.ok()?;
    let state = d.capsa(&["inspect", "from-docker"])?.ok()?;
    ensure!(state.stdout.contains("\"Status\": \"exited\""), "{state}");
    d.capsa_remote(&["rm", "-f", "from-capsa", "from-docker"])?
        .ok()?;
    let none = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(none.stdout.is_empty(), "{none}");
    Ok(())
}

#[test]
fn one_daemon_per_data_root_and_no_plain_tcp_off_loopback() -> Result<()> {
    let d = Daemon::start("daemon-lock")?;
    let second = d.dir().join("second.sock");
    let mut cmd = std::process::Command::new(&d.capsad);
    cmd.arg("--data-root")
        .arg(&d.root)
        .arg("--exec-root")
        .arg(&d.state)
        .arg("-H")
        .arg(format!("unix://{}", second.display()))
        .stdin(std::process::Stdio::null());
    let out = capsa_tests::daemon::run_captured(
        cmd,
        "second capsad",
        &d.dir().join("io"),
        Duration::from_secs(20),
    )?;
    ensure!(
        out.code() != 0
            && out.stderr.contains("another capsad")
            && out.stderr.contains("data root"),
        "{out}"
    );
    let mut cmd = std::process::Command::new(&d.capsad);
    cmd.arg("--data-root")
        .arg(d.dir().join("other-root"))
        .arg("--exec-root")
        .arg(d.dir().join("other-state"))
        .arg("-H")
        .arg("tcp://0.0.0.0:2375")
        .stdin(std::process::Stdio::null());
    let out = capsa_tests::daemon::run_captured(
        cmd,
        "capsad on 0.0.0.0",
        &d.dir().join("io"),
        Duration::from_secs(20),
    )?;
    ensure!(
        out.code() != 0 && out.stderr.contains("refusing plain TCP"),
        "{out}"
    );
    Ok(())
}

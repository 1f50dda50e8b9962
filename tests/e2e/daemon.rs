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
    let tty = d.docker_on_a_terminal(
        "",
        (30, 100),
        "exec -it box sh -c 'tty; stty size; echo TERM=$TERM; exit 5'",
        "script docker exec -it",
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
    let attached = d.docker_on_a_terminal(
        "sleep 1; printf 'echo typed-$((6*7))\\n'; sleep 1; printf '\\020\\021'; sleep 1",
        (24, 80),
        "attach shell",
        "script docker attach",
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
    let done = eventually(Duration::from_secs(60), || {
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
    let restarted = eventually(Duration::from_secs(60), || {
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
    // Health: starting (failures in the start period do not count), healthy once the file
    // exists, unhealthy after two failures once it has been healthy.
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
        "--health-start-period",
        "10m",
        "bb:1",
        "sleep",
        "300",
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
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        status(&d)? == "starting",
        "failing probes in the start period leave it starting"
    );
    d.docker(&["exec", "hc", "touch", "/tmp/ok"])?.ok()?;
    ensure!(
        eventually(Duration::from_secs(20), || Ok(status(&d)? == "healthy"))?,
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
    d.docker(&["exec", "hc", "rm", "/tmp/ok"])?.ok()?;
    ensure!(
        eventually(Duration::from_secs(20), || Ok(status(&d)? == "unhealthy"))?,
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

#[test]
fn docker_login_push_and_pull_against_a_local_registry() -> Result<()> {
    let d = Daemon::start("daemon-registry")?;
    d.load_busybox("bb:1")?;
    let registry = capsa_tests::registry::Registry::start_with_login("tester", "s3cret")?;
    let host = registry.host();
    let remote = format!("{host}/capsa-test/bb:1");
    // Without credentials the registry refuses; a wrong password fails the login.
    d.docker(&["tag", "bb:1", &remote])?.ok()?;
    let refused = d.docker(&["push", &remote])?;
    ensure!(refused.code() != 0, "a push without login: {refused}");
    let password = d.dir().join("password");
    std::fs::write(&password, "wrong\n")?;
    let bad = d.docker_with_stdin(
        &["login", "-u", "tester", "--password-stdin", &host],
        &password,
    )?;
    ensure!(bad.code() != 0, "{bad}");
    std::fs::write(&password, "s3cret\n")?;
    let login = d
        .docker_with_stdin(
            &["login", "-u", "tester", "--password-stdin", &host],
            &password,
        )?
        .ok()?;
    ensure!(login.stdout.contains("Login Succeeded"), "{login}");
    let pushed = d.docker(&["push", &remote])?.ok()?;
    ensure!(pushed.stdout.contains("digest: sha256:"), "{pushed}");
    // Pull back into an empty store: rmi, pull, run.
    d.docker(&["rmi", &remote, "bb:1"])?.ok()?;
    let pulled = d.docker(&["pull", &remote])?.ok()?;
    ensure!(pulled.stdout.contains("Downloaded newer image"), "{pulled}");
    let again = d.docker(&["pull", &remote])?.ok()?;
    ensure!(again.stdout.contains("Image is up to date"), "{again}");
    let run = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            &remote,
            "echo",
            "pulled",
        ])?
        .ok()?;
    ensure!(run.stdout == "pulled\n", "{run}");
    // `docker run` of an image the store lacks pulls it first (404, pull, create again).
    d.docker(&["rmi", &remote])?.ok()?;
    let auto = d
        .docker(&["run", "--rm", "--network", "none", &remote, "echo", "auto"])?
        .ok()?;
    ensure!(
        auto.stdout == "auto\n" && auto.stderr.contains("Unable to find image"),
        "{auto}"
    );
    let missing = d.docker(&["pull", &format!("{host}/capsa-test/nosuch:1")])?;
    ensure!(
        missing.code() != 0 && !missing.stderr.is_empty(),
        "{missing}"
    );
    d.docker(&["logout", &host])?.ok()?;
    Ok(())
}

/// A CA and two certificates for it (the daemon's for 127.0.0.1, a client's), and a client
/// certificate from another CA, made with openssl.
fn make_certificates(dir: &Path) -> Result<()> {
    let sh = format!(
        r#"set -e
cd {dir}
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=capsa-test-ca -keyout ca-key.pem -out ca.pem
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server-key.pem -out server.csr
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -days 2 -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -extfile server.ext -out server-cert.pem
openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout key.pem -out client.csr
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -days 2 -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -extfile client.ext -out cert.pem
mkdir -p other
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other/ca-key.pem -out other/ca.pem
openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout other/key.pem -out other/client.csr
openssl x509 -req -days 2 -in other/client.csr -CA other/ca.pem -CAkey other/ca-key.pem -CAcreateserial -extfile client.ext -out other/cert.pem
cp ca.pem other/server-ca.pem
"#,
        dir = dir.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &sh])
        .output()?;
    ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn remote_tls_needs_a_client_certificate_of_the_ca() -> Result<()> {
    let certs = capsa_tests::cleanup::TempDir::new("daemon-certs")?;
    make_certificates(certs.path())?;
    let port = capsa_tests::registry::free_port()?;
    let c = |f: &str| certs.path().join(f).to_string_lossy().into_owned();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let d = Daemon::start_with(
        "daemon-tls",
        &[
            "-H",
            &tcp,
            "--tlsverify",
            "--tlscacert",
            &c("ca.pem"),
            "--tlscert",
            &c("server-cert.pem"),
            "--tlskey",
            &c("server-key.pem"),
        ],
    )?;
    let docker =
        |args: &[&str], env: &[(&str, String)]| -> Result<capsa_tests::runtime::CmdOutput> {
            let mut cmd = std::process::Command::new(&d.docker);
            cmd.env("DOCKER_CONFIG", d.dir().join("docker-config"))
                .env_remove("DOCKER_TLS_VERIFY")
                .env_remove("DOCKER_CERT_PATH")
                .args(args)
                .stdin(std::process::Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            capsa_tests::daemon::run_captured(
                cmd,
                &format!("docker {}", args.join(" ")),
                &d.dir().join("io"),
                Duration::from_secs(30),
            )
        };
    // With the client certificate: works.
    let ok = docker(
        &[
            "-H",
            &tcp,
            "--tlsverify",
            "--tlscacert",
            &c("ca.pem"),
            "--tlscert",
            &c("cert.pem"),
            "--tlskey",
            &c("key.pem"),
            "version",
            "--format",
            "{{.Server.APIVersion}}",
        ],
        &[],
    )?
    .ok()?;
    ensure!(ok.stdout.trim() == "1.47", "{ok}");
    d.load_busybox("bb:1")?;
    let env = [
        ("DOCKER_HOST", tcp.clone()),
        ("DOCKER_TLS_VERIFY", "1".into()),
        (
            "DOCKER_CERT_PATH",
            certs.path().to_string_lossy().into_owned(),
        ),
    ];
    let run = docker(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "echo",
            "over-tls",
        ],
        &env,
    )?
    .ok()?;
    ensure!(run.stdout == "over-tls\n", "{run}");
    // No client certificate, one from another CA, plain HTTP: refused.
    let none = docker(
        &["-H", &tcp, "--tls", "--tlscacert", &c("ca.pem"), "version"],
        &[],
    )?;
    ensure!(
        none.code() != 0 && !none.stdout.contains("Server"),
        "no certificate: {none}"
    );
    let other = docker(
        &[
            "-H",
            &tcp,
            "--tlsverify",
            "--tlscacert",
            &c("ca.pem"),
            "--tlscert",
            &c("other/cert.pem"),
            "--tlskey",
            &c("other/key.pem"),
            "version",
        ],
        &[],
    )?;
    ensure!(other.code() != 0, "another CA's certificate: {other}");
    let plain = docker(&["-H", &tcp, "version"], &[])?;
    ensure!(plain.code() != 0, "plain HTTP: {plain}");
    // The capsa CLI as a TLS client.
    let mut cmd = std::process::Command::new(&d.capsa);
    cmd.args([
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &c("ca.pem"),
        "--tlscert",
        &c("cert.pem"),
        "--tlskey",
        &c("key.pem"),
        "run",
        "--rm",
        "bb:1",
        "echo",
        "capsa-tls",
    ])
    .stdin(std::process::Stdio::null());
    let capsa = capsa_tests::daemon::run_captured(
        cmd,
        "capsa over TLS",
        &d.dir().join("io"),
        Duration::from_secs(30),
    )?
    .ok()?;
    ensure!(capsa.stdout == "capsa-tls\n", "{capsa}");
    Ok(())
}

#[test]
fn bad_requests_get_docker_errors_and_the_daemon_keeps_serving() -> Result<()> {
    let mut d = Daemon::start("daemon-bad")?;
    d.load_busybox("bb:1")?;
    d.docker(&[
        "run",
        "-d",
        "--name",
        "taken",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ])?
    .ok()?;
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "POST",
            "/containers/create",
            Some("{not json"),
            400,
            "invalid JSON",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Image": 5}"#),
            400,
            "container config",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Image": "bb:1", "HostConfig": {"Memory": "lots"}}"#),
            400,
            "container config",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"[]"#),
            400,
            "expected a JSON object",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Image": "nosuch:9"}"#),
            404,
            "No such image: nosuch:9",
        ),
        (
            "POST",
            "/containers/create?name=taken",
            Some(r#"{"Image": "bb:1"}"#),
            409,
            "already in use",
        ),
        (
            "POST",
            "/containers/create?name=bad%20name",
            Some(r#"{"Image": "bb:1"}"#),
            400,
            "container name",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Image": "bb:1", "HostConfig": {"Binds": ["../x:/x"]}}"#),
            400,
            "volume name",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Image": "bb:1", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}"#),
            400,
            "restart policy",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Image": "bb:1", "HostConfig": {"NetworkMode": "nosuchnet"}}"#),
            400,
            "network",
        ),
        (
            "GET",
            "/containers/nosuch/json",
            None,
            404,
            "No such container: nosuch",
        ),
        (
            "POST",
            "/containers/nosuch/start",
            None,
            404,
            "No such container",
        ),
        ("POST", "/containers/taken/start", None, 304, ""),
        (
            "POST",
            "/containers/taken/kill?signal=SIGNOPE",
            None,
            400,
            "signal",
        ),
        (
            "POST",
            "/containers/taken/wait?condition=sometime",
            None,
            400,
            "wait condition",
        ),
        (
            "DELETE",
            "/containers/taken",
            None,
            409,
            "running container",
        ),
        (
            "GET",
            "/containers/json?filters=%7Bbad",
            None,
            400,
            "filters",
        ),
        (
            "GET",
            "/containers/json?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D",
            None,
            400,
            "invalid filter",
        ),
        (
            "GET",
            "/containers/taken/logs",
            None,
            400,
            "choose at least one stream",
        ),
        (
            "GET",
            "/containers/taken/archive?path=/no/such",
            None,
            404,
            "Could not find",
        ),
        (
            "POST",
            "/containers/taken/exec",
            Some(r#"{"Cmd": []}"#),
            400,
            "no command",
        ),
        (
            "POST",
            "/exec/abc123/start",
            Some("{}"),
            404,
            "No such exec instance",
        ),
        (
            "GET",
            "/exec/zz-not-hex/json",
            None,
            404,
            "No such exec instance",
        ),
        ("GET", "/images/nosuch:1/json", None, 404, "No such image"),
        (
            "DELETE",
            "/images/bb:1",
            None,
            409,
            "is using its referenced image",
        ),
        ("POST", "/images/create", None, 400, "fromImage"),
        (
            "POST",
            "/images/create?fromImage=UPPER%2FCase",
            None,
            400,
            "reference",
        ),
        ("POST", "/images/load", Some("not a tarball"), 400, ""),
        ("GET", "/volumes/nosuch", None, 404, "no such volume"),
        (
            "POST",
            "/volumes/create",
            Some(r#"{"Name": "-bad"}"#),
            400,
            "volume name",
        ),
        (
            "POST",
            "/volumes/create",
            Some(r#"{"Name": "ok1", "Driver": "nfs"}"#),
            400,
            "local driver",
        ),
        ("GET", "/v1.99/version", None, 400, "too new"),
        ("GET", "/v1.12/version", None, 400, "too old"),
        ("GET", "/no/such/endpoint", None, 404, "page not found"),
        ("GET", "/swarm", None, 503, "not a swarm manager"),
        ("GET", "/services", None, 503, "not a swarm manager"),
        (
            "POST",
            "/containers/taken/attach?stream=1&stdout=1",
            None,
            400,
            "Upgrade",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let (got, text) = d.curl(method, path, *body)?;
        ensure!(
            got == *status,
            "{method} {path}: {got} {text} (expected {status})"
        );
        if !message.is_empty() {
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: not JSON: {text}"))?;
            let m = v["message"].as_str().unwrap_or_default();
            ensure!(
                m.contains(message),
                "{method} {path}: {m:?} lacks {message:?}"
            );
        }
    }
    // A body larger than any JSON request is refused alone; a client gone mid-wait or
    // mid-attach costs nothing; the daemon is still up and the container still runs.
    let huge = "x".repeat(20 << 20);
    let huge_file = d.dir().join("huge.json");
    std::fs::write(&huge_file, &huge)?;
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "30",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
    ])
    .arg(format!("@{}", huge_file.display()))
    .arg("--unix-socket")
    .arg(&d.socket)
    .arg("http://capsa/containers/create");
    let out = capsa_tests::daemon::run_captured(
        cmd,
        "curl huge",
        &d.dir().join("io"),
        Duration::from_secs(40),
    )?;
    ensure!(out.stdout.trim() == "413", "a 20 MiB body: {out}");
    for path in [
        "/containers/taken/wait",
        "/containers/taken/attach?stream=1&stdout=1&stderr=1",
    ] {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-s",
            "--max-time",
            "1",
            "-X",
            "POST",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: tcp",
        ])
        .arg("--unix-socket")
        .arg(&d.socket)
        .arg(format!("http://capsa{path}"));
        let _ = capsa_tests::daemon::run_captured(
            cmd,
            "curl gone",
            &d.dir().join("io"),
            Duration::from_secs(10),
        )?;
    }
    ensure!(d.alive(), "the daemon died: {}", d.log());
    // No thread outlives its request: the blocking pool's idle threads go within seconds.
    let threads = |pid: i32| -> Result<usize> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    };
    let pid = d.pid().context("the daemon's pid")?;
    ensure!(
        eventually(Duration::from_secs(15), || Ok(threads(pid)? <= 3))?,
        "threads left after the bad requests: {}",
        threads(pid)?
    );
    let (code, _) = d.curl("GET", "/_ping", None)?;
    ensure!(code == 200, "ping after the bad requests");
    let running = d
        .docker(&["inspect", "-f", "{{.State.Running}}", "taken"])?
        .ok()?;
    ensure!(running.stdout.trim() == "true", "{running}");
    // Old clients and unversioned paths.
    let mut old = d.docker_command(&[
        "version",
        "--format",
        "{{.Client.APIVersion}} {{.Server.APIVersion}}",
    ]);
    old.env("DOCKER_API_VERSION", "1.41");
    let old = capsa_tests::daemon::run_captured(
        old,
        "docker version (1.41)",
        &d.dir().join("io"),
        Duration::from_secs(20),
    )?
    .ok()?;
    ensure!(old.stdout.trim().starts_with("1.41"), "{old}");
    let mut old_run = d.docker_command(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb:1",
        "echo",
        "old-client",
    ]);
    old_run.env("DOCKER_API_VERSION", "1.41");
    let old_run = capsa_tests::daemon::run_captured(
        old_run,
        "docker run (1.41)",
        &d.dir().join("io"),
        Duration::from_secs(20),
    )?
    .ok()?;
    ensure!(old_run.stdout == "old-client\n", "{old_run}");
    let (code, body) = d.curl("GET", "/containers/json", None)?;
    ensure!(
        code == 200 && body.contains("taken"),
        "unversioned: {code} {body}"
    );
    let (code, body) = d.curl("GET", "/v1.24/containers/json", None)?;
    ensure!(
        code == 200 && body.contains("taken"),
        "v1.24: {code} {body}"
    );
    // Nothing half-made: the refused creates left no container and no volume.
    let all = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(all.stdout.lines().count() == 1, "{all}");
    let vols = d.docker(&["volume", "ls", "-q"])?.ok()?;
    ensure!(vols.stdout.trim().is_empty(), "{vols}");
    // SIGTERM stops the daemon, not its containers.
    let status = d.terminate()?;
    ensure!(status.success(), "capsad exit after SIGTERM: {status}");
    let still = d.capsa(&["inspect", "taken"])?.ok()?;
    ensure!(still.stdout.contains("\"Running\": true"), "{still}");
    Ok(())
}

/// The repository's `tests/python`.
fn python_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

#[test]
fn docker_py_drives_capsad() -> Result<()> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    ensure!(
        python.exists(),
        "{}: run scripts/install-deps.sh (it makes the docker-py venv)",
        python.display()
    );
    let d = Daemon::start("daemon-py")?;
    d.load_busybox("bb:1")?;
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(python_dir().join("docker_api.py"))
        .env("DOCKER_HOST", d.host())
        .stdin(std::process::Stdio::null());
    let out = capsa_tests::daemon::run_captured(
        cmd,
        "docker_api.py",
        &d.dir().join("io"),
        Duration::from_secs(120),
    )?;
    ensure!(
        out.success() && out.stdout.contains("all checks passed"),
        "{out}\n--- capsad ---\n{}",
        d.log()
    );
    Ok(())
}

#[test]
fn docker_compose_brings_up_two_services_with_a_named_volume() -> Result<()> {
    let d = Daemon::start("daemon-compose")?;
    d.load_busybox("bb:1")?;
    let compose_file = python_dir().join("compose.yml");
    let compose = |args: &[&str]| d.compose("capsatest", &compose_file, args);
    compose(&["up", "-d"])?.ok()?;
    let ps = d
        .docker(&["ps", "--format", "{{.Names}} {{.State}}"])?
        .ok()?;
    let mut lines: Vec<&str> = ps.stdout.lines().collect();
    lines.sort();
    ensure!(
        lines == ["capsatest_reader_1 running", "capsatest_writer_1 running"],
        "{ps}"
    );
    let vols = d.docker(&["volume", "ls", "-q"])?.ok()?;
    ensure!(vols.stdout.trim() == "capsatest_shared", "{vols}");
    let read = eventually(Duration::from_secs(10), || {
        Ok(compose(&["logs", "reader"])?
            .stdout
            .contains("hello-from-writer"))
    })?;
    ensure!(read, "{}", compose(&["logs"])?);
    let listed = compose(&["ps"])?.ok()?;
    ensure!(
        listed.stdout.contains("capsatest_writer_1") && listed.stdout.contains("Up"),
        "{listed}"
    );
    let exec = compose(&["exec", "-T", "writer", "cat", "/shared/msg"])?.ok()?;
    ensure!(exec.stdout.trim() == "hello-from-writer", "{exec}");
    compose(&["stop", "-t", "1"])?.ok()?;
    compose(&["down", "-v"])?.ok()?;
    let none = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(none.stdout.is_empty(), "{none}");
    let vols = d.docker(&["volume", "ls", "-q"])?.ok()?;
    ensure!(vols.stdout.trim().is_empty(), "{vols}");
    Ok(())
}

#[test]
fn docker_image_and_container_verbs_round_trip() -> Result<()> {
    let d = Daemon::start("daemon-verbs")?;
    d.load_busybox("bb:1")?;
    // save, rmi, load: the same image id back.
    let id = d
        .docker(&["inspect", "-f", "{{.Id}}", "bb:1"])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let saved = d.dir().join("saved.tar");
    let s = saved.to_string_lossy().into_owned();
    d.docker(&["save", "-o", &s, "bb:1"])?.ok()?;
    d.docker(&["rmi", "bb:1"])?.ok()?;
    let loaded = d.docker(&["load", "-i", &s])?.ok()?;
    ensure!(loaded.stdout.contains("Loaded image: bb:1"), "{loaded}");
    let again = d.docker(&["inspect", "-f", "{{.Id}}", "bb:1"])?.ok()?;
    ensure!(again.stdout.trim() == id, "{again}");
    let history = d
        .docker(&["history", "--format", "{{.CreatedBy}}", "bb:1"])?
        .ok()?;
    ensure!(!history.stdout.trim().is_empty(), "{history}");
    // commit a change with -c, export, import.
    d.docker(&[
        "run",
        "--name",
        "changer",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "echo made > /made",
    ])?
    .ok()?;
    let diff = d.docker(&["diff", "changer"])?.ok()?;
    ensure!(diff.stdout.lines().any(|l| l == "A /made"), "{diff}");
    d.docker(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "-m",
        "a change",
        "changer",
        "bb:committed",
    ])?
    .ok()?;
    let run = d
        .docker(&["run", "--rm", "--network", "none", "bb:committed"])?
        .ok()?;
    ensure!(run.stdout == "made\n", "{run}");
    let exported = d.dir().join("export.tar");
    let e = exported.to_string_lossy().into_owned();
    d.docker(&["export", "-o", &e, "changer"])?.ok()?;
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&exported)
        .output()?;
    let names = String::from_utf8_lossy(&listing.stdout);
    ensure!(
        names.lines().any(|l| l.trim_start_matches("./") == "made")
            && names.lines().any(|l| l.contains("bin/busybox")),
        "export: {names}"
    );
    let imported = d
        .docker_with_stdin(&["import", "-", "bb:imported"], &exported)?
        .ok()?;
    ensure!(imported.stdout.trim().starts_with("sha256:"), "{imported}");
    let run = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:imported",
            "cat",
            "/made",
        ])?
        .ok()?;
    ensure!(run.stdout == "made\n", "{run}");
    // rename, update, pause/unpause.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "old-name",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ])?
    .ok()?;
    d.docker(&["rename", "old-name", "new-name"])?.ok()?;
    let renamed = d.docker(&["ps", "--format", "{{.Names}}"])?.ok()?;
    ensure!(renamed.stdout.trim() == "new-name", "{renamed}");
    d.docker(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--pids-limit",
        "50",
        "new-name",
    ])?
    .ok()?;
    let limits = d
        .docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
            "new-name",
        ])?
        .ok()?;
    ensure!(limits.stdout.trim() == "67108864 50", "{limits}");
    let stats = d
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            "new-name",
        ])?
        .ok()?;
    ensure!(
        stats.stdout.contains("/ 64MiB"),
        "the new limit holds: {stats}"
    );
    d.docker(&["pause", "new-name"])?.ok()?;
    let paused = d
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "new-name",
        ])?
        .ok()?;
    ensure!(paused.stdout.trim() == "paused true", "{paused}");
    let ps = d.docker(&["ps", "--format", "{{.Status}}"])?.ok()?;
    ensure!(ps.stdout.contains("(Paused)"), "{ps}");
    d.docker(&["unpause", "new-name"])?.ok()?;
    // docker run -it under a terminal: the shell's output and exit code.
    let tty = d.docker_on_a_terminal(
        "sleep 1; printf 'echo in-tty-$((2+3)); exit 6\\r'",
        (24, 80),
        "run -it --rm --network none bb:1 sh",
        "docker run -it",
    )?;
    ensure!(tty.code() == 6 && tty.stdout.contains("in-tty-5"), "{tty}");
    // system df, prunes.
    let df = d
        .docker(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"])?
        .ok()?;
    ensure!(
        df.stdout.contains("Images 3") && df.stdout.contains("Containers 2"),
        "{df}"
    );
    d.docker(&["rm", "-f", "new-name"])?.ok()?;
    let pruned = d.docker(&["container", "prune", "-f"])?.ok()?;
    ensure!(pruned.stdout.contains("Total reclaimed space"), "{pruned}");
    let left = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(left.stdout.is_empty(), "{left}");
    d.docker(&["image", "prune", "-af"])?.ok()?;
    let images = d.docker(&["images", "-q"])?.ok()?;
    ensure!(
        images.stdout.is_empty(),
        "every unused image pruned: {images}"
    );
    Ok(())
}

#[test]
fn docker_run_flags_reach_the_container() -> Result<()> {
    let d = Daemon::start("daemon-flags")?;
    d.load_busybox("bb:1")?;
    let run = |args: &[&str]| -> Result<String> {
        let mut all = vec!["run", "--rm", "--network", "none"];
        all.extend_from_slice(args);
        Ok(d.docker(&all)?.ok()?.stdout)
    };
    // Environment, user, working dir, hostname, entrypoint.
    let out = run(&[
        "-e",
        "A=1",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "--hostname",
        "box",
        "bb:1",
        "sh",
        "-c",
        "echo $A $(id -u):$(id -g) $(pwd) $(hostname)",
    ])?;
    ensure!(out.trim() == "1 1000:1000 /tmp box", "{out}");
    let out = run(&["--entrypoint", "echo", "bb:1", "from", "entrypoint"])?;
    ensure!(out.trim() == "from entrypoint", "{out}");
    // /etc/hosts and resolv.conf from --add-host and --dns.
    let out = run(&[
        "--add-host",
        "db.local:10.1.2.3",
        "--dns",
        "127.0.0.53",
        "--dns-search",
        "corp.test",
        "bb:1",
        "sh",
        "-c",
        "grep db.local /etc/hosts; cat /etc/resolv.conf",
    ])?;
    ensure!(
        out.contains("10.1.2.3\tdb.local")
            && out.contains("nameserver 127.0.0.53")
            && out.contains("search corp.test"),
        "{out}"
    );
    // Read-only root with a tmpfs, capabilities dropped, a memory limit, pids limit.
    let ro = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "bb:1",
        "sh",
        "-c",
        "touch /scratch/ok && touch /nope",
    ])?;
    ensure!(ro.code() != 0 && ro.stderr.contains("Read-only"), "{ro}");
    let caps = run(&[
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "bb:1",
        "grep",
        "CapEff",
        "/proc/self/status",
    ])?;
    ensure!(caps.contains("0000000000000001"), "only CAP_CHOWN: {caps}");
    let mem = run(&[
        "-m",
        "32m",
        "--pids-limit",
        "20",
        "bb:1",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ])?;
    ensure!(mem.trim() == "33554432", "{mem}");
    // --init: a tiny init is pid 1 and the payload its child.
    let init = run(&["--init", "bb:1", "sh", "-c", "cat /proc/1/comm; echo $$"])?;
    let lines: Vec<&str> = init.lines().collect();
    ensure!(
        lines.len() == 2 && lines[0] != "sh" && lines[1] != "1",
        "{init}"
    );
    // --ulimit, --sysctl, --shm-size.
    let out = run(&[
        "--ulimit",
        "nofile=512:512",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--shm-size",
        "8m",
        "bb:1",
        "sh",
        "-c",
        "ulimit -n; cat /proc/sys/net/ipv4/ip_forward; df -k /dev/shm | tail -1",
    ])?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.first() == Some(&"512")
            && lines.get(1) == Some(&"1")
            && lines.get(2).is_some_and(|l| l.contains("8192")),
        "{out}"
    );
    // Confinement through HostConfig: the default filter, --privileged, devices and rules.
    let status = |extra: &[&str]| -> Result<String> {
        let mut args = vec!["run", "--rm"];
        args.extend(extra);
        args.extend([
            "bb:1",
            "grep",
            "-E",
            "^(Seccomp|CapEff):",
            "/proc/self/status",
        ]);
        Ok(d.docker(&args)?.ok()?.stdout)
    };
    let default = status(&[])?;
    ensure!(
        default.contains("Seccomp:\t2") && default.contains("00000000a80425fb"),
        "{default}"
    );
    let privileged = status(&["--privileged"])?;
    let host = std::fs::read_to_string("/proc/self/status")?;
    let bounding = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map_or("", str::trim);
    ensure!(
        privileged.contains("Seccomp:\t0") && privileged.contains(&format!("CapEff:\t{bounding}")),
        "no filter, every capability the host can grant ({bounding}): {privileged}"
    );
    let out = d
        .docker(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/capsa-null:rw",
            "--device-cgroup-rule",
            "b 7:* r",
            "bb:1",
            "sh",
            "-c",
            "ls -l /dev/capsa-null; mknod /tmp/l b 7 0; head -c1 /tmp/l; echo head=$?",
        ])?
        .ok()?;
    ensure!(
        out.stdout.contains("1,   3") && !out.stderr.contains("Operation not permitted"),
        "{out}"
    );
    let info = d
        .docker(&["info", "--format", "{{json .SecurityOptions}}"])?
        .ok()?;
    ensure!(
        info.stdout.contains("name=seccomp,profile=builtin"),
        "{info}"
    );
    let missing = d.docker(&[
        "run",
        "--rm",
        "--device",
        "/nonexistent/capsa",
        "bb:1",
        "true",
    ])?;
    ensure!(
        missing.code() == 125 && missing.stderr.contains("/nonexistent/capsa"),
        "{missing}"
    );
    let net = d.docker(&["run", "--rm", "--network", "mynet", "bb:1", "true"])?;
    ensure!(net.code() != 0 && net.stderr.contains("mynet"), "{net}");
    // Published ports are recorded at create (and set up at start, on a bridge network).
    let id = d
        .docker(&["create", "-p", "127.0.0.1:8080:80", "bb:1", "true"])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let ports = d
        .docker(&["inspect", "-f", "{{json .HostConfig.PortBindings}}", &id])?
        .ok()?;
    ensure!(
        ports.stdout.contains("\"80/tcp\"") && ports.stdout.contains("8080"),
        "{ports}"
    );
    d.docker(&["rm", &id])?.ok()?;
    Ok(())
}

#[test]
fn a_daemon_start_restarts_what_a_crash_stopped_and_cleans_up() -> Result<()> {
    let mut d = Daemon::start("daemon-reconcile")?;
    d.load_busybox("bb:1")?;
    let id = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "keeper",
            "--restart",
            "always",
            "--network",
            "none",
            "bb:1",
            "sleep",
            "300",
        ])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ])?
    .ok()?;
    let pid_of = |d: &Daemon, name: &str| -> Result<i32> {
        Ok(d.docker(&["inspect", "-f", "{{.State.Pid}}", name])?
            .ok()?
            .stdout
            .trim()
            .parse()?)
    };
    let (keeper_pid, plain_pid) = (pid_of(&d, "keeper")?, pid_of(&d, "plain")?);
    // A crash of everything (as a reboot would leave it): the daemon, the monitors, the
    // payloads, all SIGKILLed.
    d.kill9();
    let monitors: Vec<i32> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c).contains("capsa-monitor")
                        && String::from_utf8_lossy(&c).contains(&*d.root.to_string_lossy())
                })
                .unwrap_or(false)
        })
        .collect();
    ensure!(monitors.len() == 2, "two monitors: {monitors:?}");
    for pid in monitors.iter().copied().chain([keeper_pid, plain_pid]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    d.spawn()?;
    // The `always` container runs again (a new process), the other is exited, and neither's
    // overlay is left mounted by a dead monitor.
    let up = eventually(Duration::from_secs(20), || {
        Ok(
            d.docker(&["inspect", "-f", "{{.State.Running}}", "keeper"])?
                .stdout
                .trim()
                == "true",
        )
    })?;
    ensure!(up, "keeper was not restarted: {}", d.log());
    ensure!(pid_of(&d, "keeper")? != keeper_pid, "a new process");
    let plain = d
        .docker(&["inspect", "-f", "{{.State.Status}}", "plain"])?
        .ok()?;
    ensure!(plain.stdout.trim() == "exited", "{plain}");
    let mounted: Vec<String> = capsa_tests::cleanup::mounts_below(d.dir())
        .into_iter()
        .filter(|m| m.contains(&id) || m.ends_with("/rootfs"))
        .collect();
    ensure!(
        mounted.len() == 1 && mounted[0].contains(&id),
        "only the running container's overlay is mounted: {mounted:?}"
    );
    ensure!(d.log().contains("1 restarted"), "{}", d.log());
    Ok(())
}

#[test]
fn commands_that_cannot_start_exit_as_docker_says() -> Result<()> {
    // `docker run` exits 127 when the command does not exist and 126 when it cannot be invoked
    // (not executable, a directory); 125 is the engine's own failures. The same through the
    // docker CLI (which decides from the daemon's message), capsa as a client of the daemon and
    // capsa on the store; the container is left exited with that code and the message.
    let d = Daemon::start("daemon-exit-codes")?;
    d.load_busybox("bb:1")?;
    for (command, code) in [
        ("nosuchcmd", 127),
        ("/nosuch", 127),
        ("/etc/passwd", 126),
        ("/etc", 126),
    ] {
        let args = ["run", "--rm", "--network", "none", "bb:1", command];
        let docker = d.docker(&args)?;
        ensure!(docker.code() == code, "docker {args:?}: {docker}");
        let remote = d.capsa_remote(&args)?;
        ensure!(remote.code() == code, "capsa -H {args:?}: {remote}");
        let local = d.capsa(&args)?;
        ensure!(local.code() == code, "capsa {args:?}: {local}");
    }
    let out = d.docker(&[
        "run",
        "--name",
        "ec",
        "--network",
        "none",
        "bb:1",
        "nosuchcmd",
    ])?;
    ensure!(out.code() == 127, "{out}");
    ensure!(
        out.stderr.contains("executable file not found"),
        "the message says why: {out}"
    );
    let state = d
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}",
            "ec",
        ])?
        .ok()?;
    ensure!(
        state.stdout.starts_with("exited 127 ") && state.stdout.contains("nosuchcmd"),
        "{state}"
    );
    let engine = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "capsa-test-no-such-image",
    ])?;
    ensure!(engine.code() == 125, "an engine failure is 125: {engine}");
    d.docker(&["rm", "ec"])?.ok()?;
    Ok(())
}

#[test]
fn docker_security_opt_seccomp_sends_the_profile_and_it_applies() -> Result<()> {
    // The docker CLI reads the file and sends the profile itself in HostConfig.SecurityOpt.
    let d = Daemon::start("daemon-seccomp")?;
    d.load_busybox("bb:1")?;
    let profile = d.dir().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })
        .to_string(),
    )?;
    let opt = format!("seccomp={}", profile.display());
    let out = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--security-opt",
            &opt,
            "bb:1",
            "sh",
            "-c",
            "mkdir /tmp/x 2>&1; echo mkdir=$?",
        ])?
        .ok()?;
    ensure!(
        out.stdout.contains("Operation not permitted") && out.stdout.contains("mkdir=1"),
        "{out}"
    );
    let bad = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "apparmor=capsa-test",
        "bb:1",
        "true",
    ])?;
    if !std::path::Path::new("/sys/module/apparmor/parameters/enabled").exists() {
        ensure!(
            bad.code() == 125 && bad.stderr.contains("AppArmor"),
            "apparmor on a kernel without it: {bad}"
        );
    }
    Ok(())
}

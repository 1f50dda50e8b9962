//! The `capsa` engine end to end: images built by the test from busybox-static, run through the
//! CLI with a store root, state dir and cgroup parent of the test's own.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use capsa_tests::engine::{EngineContext, tar_dir};
use serde_json::json;

/// A busybox image `bb:1` made with `capsa import`.
fn busybox_image(ctx: &EngineContext) -> Result<()> {
    ctx.import_busybox("bb:1")
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Polls `f` until it returns true.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn three_layer_image_shows_whiteouts_and_opaque_dir() -> Result<()> {
    let ctx = EngineContext::new("engine-layers")?;
    let l1 = ctx.busybox_rootfs("l1")?;
    write(&l1.join("a/keep"), "keep\n")?;
    write(&l1.join("a/gone"), "gone\n")?;
    write(&l1.join("d/old"), "old\n")?;
    let l2 = ctx.dir().join("l2");
    write(&l2.join("a/new"), "new\n")?;
    write(&l2.join("a/.wh.gone"), "")?;
    let l3 = ctx.dir().join("l3");
    write(&l3.join("d/.wh..wh..opq"), "")?;
    write(&l3.join("d/fresh"), "fresh\n")?;
    let layout = ctx.oci_layout(
        "layout",
        &[&l1, &l2, &l3],
        json!({"Cmd": ["sh", "-c", "ls /a; ls /d"]}),
        "three:1",
    )?;
    ctx.capsa(&["load", "-i", layout.to_str().context("path")?])?
        .ok()?;
    let inspect = ctx.capsa(&["image", "inspect", "three:1"])?.ok()?.json()?;
    let layers = inspect[0]["RootFS"]["Layers"]
        .as_array()
        .context("RootFS.Layers")?;
    assert_eq!(layers.len(), 3, "{inspect}");
    let out = ctx.run(&["--rm", "three:1"])?.ok()?;
    assert_eq!(out.stdout, "keep\nnew\nfresh\n", "{out}");
    // `diff` compares the image's view with the container's, as overlayfs resolves both: /d/old,
    // hidden by layer 3's opaque /d, is new again; /a made again from scratch (an opaque upper
    // dir) lost /a/keep, and /a/new, there before and after, changed.
    ctx.run(&[
        "--name",
        "changer",
        "three:1",
        "sh",
        "-c",
        "echo again > /d/old; rm -r /a; mkdir /a; echo n > /a/new",
    ])?
    .ok()?;
    let diff = ctx.capsa(&["diff", "changer"])?.ok()?;
    let lines: Vec<&str> = diff.stdout.lines().collect();
    assert_eq!(
        lines,
        ["C /a", "D /a/keep", "C /a/new", "C /d", "A /d/old"],
        "{diff}"
    );
    ctx.capsa(&["rm", "changer"])?.ok()?;
    Ok(())
}

#[test]
fn writes_are_copy_on_write_and_private_to_each_container() -> Result<()> {
    let ctx = EngineContext::new("engine-cow")?;
    busybox_image(&ctx)?;
    let a = ctx
        .run(&["-d", "--name", "a", "bb:1", "sleep", "1000"])?
        .ok()?;
    let b = ctx
        .run(&["-d", "--name", "b", "bb:1", "sleep", "1000"])?
        .ok()?;
    ctx.capsa(&[
        "exec",
        "a",
        "sh",
        "-c",
        "echo mine > /etc/motd; rm /capsa-rootfs-marker",
    ])?
    .ok()?;
    let seen_b = ctx.capsa(&[
        "exec",
        "b",
        "sh",
        "-c",
        "cat /etc/motd; cat /capsa-rootfs-marker",
    ])?;
    assert!(!seen_b.stdout.contains("mine"), "{seen_b}");
    assert!(seen_b.stdout.contains("capsa test rootfs"), "{seen_b}");
    let fresh = ctx
        .run(&["--rm", "bb:1", "cat", "/capsa-rootfs-marker"])?
        .ok()?;
    assert!(fresh.stdout.contains("capsa test rootfs"), "{fresh}");
    // The new container's layer holds nothing: the image data is not copied.
    let b_id = b.stdout.trim();
    let upper = ctx.root.join("containers").join(b_id).join("upper");
    let entries: Vec<_> = std::fs::read_dir(&upper)?.collect();
    assert!(entries.is_empty(), "upper dir of b: {entries:?}");
    let diff = ctx.capsa(&["diff", "a"])?.ok()?;
    assert!(diff.stdout.contains("A /etc/motd"), "{diff}");
    assert!(diff.stdout.contains("D /capsa-rootfs-marker"), "{diff}");
    let _ = a;
    ctx.capsa(&["rm", "-f", "a", "b"])?.ok()?;
    Ok(())
}

#[test]
fn commit_records_changes_with_whiteouts_and_without_init_files() -> Result<()> {
    let ctx = EngineContext::new("engine-commit")?;
    busybox_image(&ctx)?;
    ctx.run(&[
        "--name",
        "c",
        "bb:1",
        "sh",
        "-c",
        "echo new > /new; echo changed > /etc/passwd; rm /capsa-rootfs-marker; echo x >> /etc/hosts",
    ])?
    .ok()?;
    ctx.capsa(&["commit", "-m", "test", "c", "bb:2"])?.ok()?;
    let out = ctx
        .run(&[
            "--rm",
            "bb:2",
            "sh",
            "-c",
            "cat /new /etc/passwd; test -e /capsa-rootfs-marker || echo deleted",
        ])?
        .ok()?;
    assert_eq!(out.stdout, "new\nchanged\ndeleted\n", "{out}");
    // The new layer, as `save` writes it.
    let saved = ctx.dir().join("bb2.tar");
    ctx.capsa(&["save", "-o", saved.to_str().context("path")?, "bb:2"])?
        .ok()?;
    let x = ctx.dir().join("x");
    std::fs::create_dir_all(&x)?;
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&saved)
        .arg("-C")
        .arg(&x)
        .status()?;
    ensure!(st.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json"))?)?;
    let layers = manifest[0]["Layers"].as_array().context("Layers")?;
    assert_eq!(layers.len(), 2);
    let top = x.join(layers[1].as_str().context("layer")?);
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&top)
        .output()?;
    let names = String::from_utf8(list.stdout)?;
    assert!(
        names.lines().any(|l| l == ".wh.capsa-rootfs-marker"),
        "{names}"
    );
    assert!(names.lines().any(|l| l == "new"), "{names}");
    assert!(
        !names.contains("etc/hosts")
            && !names.contains("etc/hostname")
            && !names.contains("resolv.conf"),
        "{names}"
    );
    let history = ctx.capsa(&["history", "bb:2"])?.ok()?;
    assert!(history.stdout.contains("capsa commit c"), "{history}");
    Ok(())
}

#[test]
fn commit_records_the_container_config_and_changes() -> Result<()> {
    let ctx = EngineContext::new("engine-commit-config")?;
    busybox_image(&ctx)?;
    ctx.run(&[
        "--name",
        "c",
        "-e",
        "GREETING=hi",
        "-w",
        "/srv",
        "bb:1",
        "sh",
        "-c",
        "echo data > f",
    ])?
    .ok()?;
    // `inspect` shows the container's config as Docker does: Cmd apart from Entrypoint, the
    // environment it runs with.
    let inspect = ctx.capsa(&["inspect", "c"])?.ok()?.json()?;
    let config = &inspect[0]["Config"];
    assert_eq!(
        config["Cmd"],
        json!(["sh", "-c", "echo data > f"]),
        "{inspect}"
    );
    assert_eq!(config["WorkingDir"], json!("/srv"), "{inspect}");
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("GREETING=hi"))),
        "{inspect}"
    );
    // Without changes the image keeps what the container ran with, as `docker commit` does.
    ctx.capsa(&["commit", "c", "bb:plain"])?.ok()?;
    let plain = ctx.capsa(&["image", "inspect", "bb:plain"])?.ok()?;
    let plain: serde_json::Value = serde_json::from_str(&plain.stdout)?;
    let config = &plain[0]["Config"];
    assert_eq!(
        config["Cmd"],
        json!(["sh", "-c", "echo data > f"]),
        "{plain}"
    );
    assert_eq!(config["WorkingDir"], json!("/srv"), "{plain}");
    let env = config["Env"].as_array().context("Env")?;
    assert!(env.contains(&json!("GREETING=hi")), "{plain}");
    assert!(
        !env.iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("HOSTNAME="))),
        "the hostname is the container's, not the image's: {plain}"
    );

    ctx.capsa(&[
        "commit",
        "-a",
        "Ann <ann@example.org>",
        "-m",
        "with changes",
        "-c",
        r#"CMD ["sh", "-c", "echo $GREETING $EXTRA $(pwd) $(cat f)"]"#,
        "--change",
        "ENV EXTRA=more",
        "-c",
        "LABEL stage=test",
        "-c",
        "EXPOSE 8080",
        "c",
        "bb:changed",
    ])?
    .ok()?;
    let out = ctx.run(&["--rm", "bb:changed"])?.ok()?;
    assert_eq!(out.stdout, "hi more /srv data\n", "{out}");
    let inspect = ctx.capsa(&["image", "inspect", "bb:changed"])?.ok()?;
    let image: serde_json::Value = serde_json::from_str(&inspect.stdout)?;
    assert_eq!(
        image[0]["Author"],
        json!("Ann <ann@example.org>"),
        "{inspect}"
    );
    assert_eq!(image[0]["Comment"], json!("with changes"), "{inspect}");
    assert_eq!(image[0]["Config"]["Labels"]["stage"], json!("test"));
    assert_eq!(image[0]["Config"]["ExposedPorts"], json!({"8080/tcp": {}}));

    // A bad change names itself and makes no image.
    let before = ctx.capsa(&["images", "-q"])?.ok()?.stdout;
    let bad = ctx.capsa(&["commit", "-c", "RUN rm -rf /", "c", "bb:bad"])?;
    assert!(!bad.success(), "{bad}");
    assert!(bad.stderr.contains("RUN is not supported"), "{bad}");
    assert_eq!(ctx.capsa(&["images", "-q"])?.ok()?.stdout, before);
    let bad = ctx.capsa(&["import", "-c", "EXPOSE 99999", "/nonexistent.tar"])?;
    assert!(!bad.success(), "{bad}");
    ctx.capsa(&["rm", "c"])?.ok()?;
    Ok(())
}

#[test]
fn saved_images_are_read_by_umoci_and_skopeo() -> Result<()> {
    let ctx = EngineContext::new("engine-save")?;
    busybox_image(&ctx)?;
    let archive = ctx.dir().join("oci.tar");
    ctx.capsa(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        archive.to_str().context("path")?,
        "bb:1",
    ])?
    .ok()?;
    let skopeo = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display()))
        .output()?;
    ensure!(
        skopeo.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    let layout = ctx.dir().join("layout");
    ctx.capsa(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().context("path")?,
        "bb:1",
    ])?
    .ok()?;
    let bundle = ctx.dir().join("bundle");
    let umoci = std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .output()?;
    if !umoci.status.success() {
        // umoci wants the ref name as the tag; try the full name.
        let again = std::process::Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:bb:1", layout.display()))
            .arg(&bundle)
            .output()?;
        ensure!(
            again.status.success(),
            "umoci: {} / {}",
            String::from_utf8_lossy(&umoci.stderr),
            String::from_utf8_lossy(&again.stderr)
        );
    }
    assert!(bundle.join("rootfs/capsa-rootfs-marker").exists());
    Ok(())
}

#[test]
fn podman_saved_archives_load_and_run() -> Result<()> {
    let ctx = EngineContext::new("engine-podman")?;
    busybox_image(&ctx)?;
    let ours = ctx.dir().join("ours.tar");
    ctx.capsa(&["save", "-o", ours.to_str().context("path")?, "bb:1"])?
        .ok()?;
    // podman with a store of the test's own.
    let pod = ctx.dir().join("podman");
    let podman = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("podman")
            .arg("--root")
            .arg(pod.join("root"))
            .arg("--runroot")
            .arg(pod.join("run"))
            .arg("--storage-driver")
            .arg("vfs")
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    podman(&["load", "-i", ours.to_str().context("path")?])?;
    for (format, file) in [
        ("docker-archive", "p-docker.tar"),
        ("oci-archive", "p-oci.tar"),
    ] {
        let path = ctx.dir().join(file);
        podman(&[
            "save",
            "--format",
            format,
            "-o",
            path.to_str().context("path")?,
            "localhost/bb:1",
        ])?;
        let loaded = ctx
            .capsa(&["load", "-i", path.to_str().context("path")?])?
            .ok()?;
        ctx.capsa(&["tag", "localhost/bb:1", &format!("from-{format}:1")])?
            .ok()?;
        let out = ctx
            .run(&[
                "--rm",
                &format!("from-{format}:1"),
                "cat",
                "/capsa-rootfs-marker",
            ])?
            .ok()?;
        assert!(out.stdout.contains("capsa test rootfs"), "{loaded}\n{out}");
    }
    let _ = podman(&["rmi", "-a", "-f"]);
    Ok(())
}

#[test]
fn detached_container_outlives_the_cli_with_logs_exec_stop_wait_rm() -> Result<()> {
    let ctx = EngineContext::new("engine-detached")?;
    busybox_image(&ctx)?;
    let script = "echo started; trap 'echo stopping; exit 7' TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done";
    let out = ctx
        .run(&["-d", "--name", "d", "bb:1", "sh", "-c", script])?
        .ok()?;
    let id = out.stdout.trim().to_owned();
    assert_eq!(id.len(), 64, "{out}");
    // The CLI has exited; the container runs on.
    eventually("two ticks in the log", Duration::from_secs(10), || {
        Ok(ctx.capsa(&["logs", "d"])?.stdout.contains("tick 2"))
    })?;
    let ps = ctx
        .capsa(&["ps", "--format", "{{.Names}} {{.State}}"])?
        .ok()?;
    assert!(ps.stdout.contains("d running"), "{ps}");
    // The monitor's attach socket is reachable by root only, whatever the umask.
    let attach_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(ctx.state.join("attach"))?
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        attach_mode, 0o700,
        "the attach directory is {attach_mode:o}"
    );
    let follow = ctx
        .command(&["logs", "-f", "d"])
        .stdout(Stdio::piped())
        .spawn()?;
    let exec = ctx.capsa(&["exec", "d", "cat", "/etc/hostname"])?.ok()?;
    assert_eq!(exec.stdout.trim(), &id[..12], "{exec}");
    ctx.capsa(&["stop", "-t", "5", "d"])?.ok()?;
    let wait = ctx.capsa(&["wait", "d"])?.ok()?;
    assert_eq!(wait.stdout.trim(), "7", "{wait}");
    let followed = follow.wait_with_output()?;
    let text = String::from_utf8(followed.stdout)?;
    assert!(
        text.starts_with("started\n") && text.contains("stopping"),
        "{text}"
    );
    let tail = ctx.capsa(&["logs", "--tail", "1", "d"])?.ok()?;
    assert_eq!(tail.stdout, "stopping\n", "{tail}");
    let raw = std::fs::read_to_string(
        ctx.root
            .join("containers")
            .join(&id)
            .join(format!("{id}-json.log")),
    )?;
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().context("log line")?)?;
    assert_eq!(first["stream"], "stdout");
    assert!(
        first["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    let ps = ctx
        .capsa(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])?
        .ok()?;
    assert!(ps.stdout.contains("d Exited (7)"), "{ps}");
    ctx.capsa(&["rm", "d"])?.ok()?;
    assert!(!ctx.root.join("containers").join(&id).exists());
    assert!(capsa_tests::cleanup::mounts_below(ctx.dir()).is_empty());
    let cgroups = capsa_tests::cleanup::cgroup_exists(&format!("{}/{id}", ctx.cgroup_parent))?;
    assert!(cgroups.is_empty(), "{cgroups:?}");
    Ok(())
}

#[test]
fn detached_containers_with_a_terminal_log_what_it_shows() -> Result<()> {
    let ctx = EngineContext::new("engine-tty")?;
    busybox_image(&ctx)?;
    // `run -dt`: the monitor holds the pty; the payload's stdout and stderr are the terminal.
    let id = ctx
        .run(&["-dt", "bb:1", "sh", "-c", "tty; echo to-stderr >&2; exit 3"])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let wait = ctx.capsa(&["wait", &id])?.ok()?;
    assert_eq!(wait.stdout.trim(), "3", "{wait}");
    let logs = ctx.capsa(&["logs", &id])?.ok()?;
    assert_eq!(logs.stdout, "/dev/pts/0\r\nto-stderr\r\n", "{logs}");
    // `-dit sh` keeps an interactive shell waiting on its terminal, as with Docker.
    ctx.run(&["-dit", "--name", "shell", "bb:1", "sh"])?.ok()?;
    std::thread::sleep(Duration::from_millis(300));
    let ps = ctx
        .capsa(&["ps", "--format", "{{.Names}} {{.State}}"])?
        .ok()?;
    assert!(ps.stdout.contains("shell running"), "{ps}");
    let exec = ctx
        .capsa(&["exec", "shell", "readlink", "/proc/1/fd/0"])?
        .ok()?;
    assert_eq!(exec.stdout.trim(), "/dev/pts/0", "{exec}");
    ctx.capsa(&["stop", "-t", "1", "shell"])?.ok()?;
    // `create -t` then `start` takes the same path.
    ctx.create(&["-t", "--name", "later", "bb:1", "tty"])?
        .ok()?;
    ctx.capsa(&["start", "later"])?.ok()?;
    let wait = ctx.capsa(&["wait", "later"])?.ok()?;
    assert_eq!(wait.stdout.trim(), "0", "{wait}");
    eventually("the log of `later`", Duration::from_secs(5), || {
        Ok(ctx.capsa(&["logs", "later"])?.stdout == "/dev/pts/0\r\n")
    })?;
    ctx.capsa(&["rm", "-f", &id, "shell", "later"])?.ok()?;
    Ok(())
}

#[test]
fn image_volumes_start_with_the_image_content() -> Result<()> {
    let ctx = EngineContext::new("engine-volumes")?;
    let rootfs = ctx.busybox_rootfs("vol-rootfs")?;
    let data = rootfs.join("data");
    write(&data.join("sub/inner"), "inner\n")?;
    write(&data.join("owned"), "owned\n")?;
    std::os::unix::fs::chown(data.join("owned"), Some(1000), Some(1001))?;
    std::fs::set_permissions(
        data.join("owned"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )?;
    std::os::unix::fs::symlink("/etc/passwd", data.join("link"))?;
    let tar = ctx.dir().join("vol.tar");
    tar_dir(&rootfs, &tar)?;
    ctx.capsa(&[
        "import",
        "-c",
        "VOLUME /data",
        tar.to_str().context("path")?,
        "vol:1",
    ])?
    .ok()?;
    let out = ctx
        .run(&[
            "--name",
            "v",
            "vol:1",
            "sh",
            "-c",
            "cat /data/sub/inner; stat -c '%u:%g %a' /data/owned; readlink /data/link; \
             grep -q ' /data ' /proc/self/mountinfo && echo mounted; echo new > /data/new",
        ])?
        .ok()?;
    assert_eq!(
        out.stdout, "inner\n1000:1001 640\n/etc/passwd\nmounted\n",
        "{out}"
    );
    // The write went to the volume, not to the container's layer.
    let diff = ctx.capsa(&["diff", "v"])?.ok()?;
    assert!(!diff.stdout.contains("/data"), "{diff}");
    ctx.capsa(&["rm", "v"])?.ok()?;
    Ok(())
}

#[test]
fn stop_sends_the_flag_or_image_stop_signal_first() -> Result<()> {
    let ctx = EngineContext::new("engine-stopsignal")?;
    busybox_image(&ctx)?;
    let tar = ctx.dir().join("bb.tar");
    ctx.capsa(&[
        "import",
        "-c",
        "STOPSIGNAL SIGUSR2",
        tar.to_str().context("path")?,
        "bb:stop",
    ])?
    .ok()?;
    let script = "trap 'exit 11' USR1; trap 'exit 12' USR2; trap 'exit 15' TERM; \
                  echo up; while true; do sleep 0.1; done";
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&["--stop-signal", "SIGUSR1", "bb:1"], &[], "11"),
        (&["bb:stop"], &[], "12"),
        (&["bb:stop"], &["-s", "TERM"], "15"),
        (&["bb:1"], &[], "15"),
    ];
    for (n, (run, stop, code)) in cases.iter().enumerate() {
        let name = format!("s{n}");
        let mut args = vec!["-d", "--name", &name];
        args.extend_from_slice(run);
        args.extend_from_slice(&["sh", "-c", script]);
        ctx.run(&args)?.ok()?;
        eventually("the traps are set", Duration::from_secs(5), || {
            Ok(ctx.capsa(&["logs", &name])?.stdout.contains("up"))
        })?;
        let mut stop_args = vec!["stop", "-t", "5"];
        stop_args.extend_from_slice(stop);
        stop_args.push(&name);
        ctx.capsa(&stop_args)?.ok()?;
        let wait = ctx.capsa(&["wait", &name])?.ok()?;
        assert_eq!(wait.stdout.trim(), *code, "{run:?} {stop:?}: {wait}");
        ctx.capsa(&["rm", &name])?.ok()?;
    }
    let bad = ctx.run(&["--rm", "--stop-signal", "SIGNOPE", "bb:1", "true"])?;
    assert!(
        !bad.success() && bad.stderr.contains("--stop-signal"),
        "{bad}"
    );
    Ok(())
}

/// `stop` of an `--restart always` container whose payload exits by itself every few ms: the
/// stop lands before, during and after exits and restarts, and must succeed every time (a payload
/// that exited between `stop` reading the state and signalling it once failed the stop with
/// "does not exist").
#[test]
fn stop_of_a_restarting_container_succeeds_at_any_moment() -> Result<()> {
    let ctx = EngineContext::new("engine-stop-restarting")?;
    busybox_image(&ctx)?;
    ctx.run(&[
        "-d",
        "--name",
        "flap",
        "--restart",
        "always",
        "bb:1",
        "sh",
        "-c",
        "sleep 0.02; exit 1",
    ])?
    .ok()?;
    for round in 0..12u64 {
        if round > 0 {
            ctx.capsa(&["start", "flap"])?.ok()?;
        }
        std::thread::sleep(Duration::from_millis(7 * round));
        let stop = ctx.capsa(&["stop", "-t", "1", "flap"])?;
        ensure!(stop.success(), "round {round}: {stop}");
        let status = ctx
            .capsa(&["inspect", "-f", "{{.State.Status}}", "flap"])?
            .ok()?;
        ensure!(status.stdout.trim() == "exited", "round {round}: {status}");
    }
    ctx.capsa(&["rm", "flap"])?.ok()?;
    Ok(())
}

#[test]
fn top_and_stats_show_a_running_container() -> Result<()> {
    let ctx = EngineContext::new("engine-usage")?;
    busybox_image(&ctx)?;
    ctx.run(&[
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "bb:1",
        "sh",
        "-c",
        "yes > /dev/null & exec sleep 1000",
    ])?
    .ok()?;
    let top = ctx.capsa(&["top", "busy", "-o", "pid,comm"])?.ok()?;
    let lines: Vec<&str> = top.stdout.lines().collect();
    assert_eq!(
        lines
            .first()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["PID", "COMMAND"]),
        "{top}"
    );
    assert_eq!(
        lines.len(),
        3,
        "the header and the container's two processes: {top}"
    );
    assert!(
        top.stdout.contains("sleep") && top.stdout.contains("yes"),
        "{top}"
    );
    let stats = ctx
        .capsa(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
            "busy",
        ])?
        .ok()?;
    let fields: Vec<&str> = stats.stdout.trim().split('|').collect();
    assert_eq!(fields.len(), 4, "{stats}");
    assert_eq!(fields[0], "busy");
    let cpu: f64 = fields[1].trim_end_matches('%').parse()?;
    assert!(cpu > 10.0, "a spinning `yes` uses CPU: {stats}");
    assert!(fields[2].ends_with("/ 64.00MiB"), "{stats}");
    assert_eq!(fields[3], "2", "{stats}");
    ctx.capsa(&["rm", "-f", "busy"])?.ok()?;
    let gone = ctx.capsa(&["stats", "--no-stream", "busy"])?;
    assert!(
        !gone.success() && gone.stderr.contains("No such container"),
        "{gone}"
    );
    ctx.run(&["--name", "done", "bb:1", "true"])?.ok()?;
    let top = ctx.capsa(&["top", "done"])?;
    assert!(
        !top.success() && top.stderr.contains("not running"),
        "{top}"
    );
    ctx.capsa(&["rm", "done"])?.ok()?;
    Ok(())
}

#[test]
fn bad_input_fails_clearly_and_leaves_nothing() -> Result<()> {
    let ctx = EngineContext::new("engine-bad")?;
    busybox_image(&ctx)?;
    let cases: &[(&[&str], &str)] = &[
        // --pull never: a test makes no traffic beyond loopback (docker.io is not asked).
        (
            &["--rm", "--pull", "never", "nosuch:1", "true"],
            "No such image",
        ),
        (&["--rm", "-v", "../x:/x", "bb:1", "true"], "volume name"),
        (&["--rm", "-m", "lots", "bb:1", "true"], "size"),
        (&["--rm", "--network", "bridge", "bb:1", "true"], "network"),
        (
            &["--rm", "-u", "nobody-here", "bb:1", "true"],
            "no such user",
        ),
        (&["--rm", "bb:1", "/no/such/program"], "no/such/program"),
    ];
    for (args, message) in cases {
        let out = ctx.run(args)?.failed()?;
        assert!(out.stderr.contains(message), "expected {message:?}: {out}");
    }
    let ps = ctx.capsa(&["ps", "-aq"])?.ok()?;
    assert_eq!(ps.stdout, "", "containers left: {ps}");
    let left: Vec<_> = std::fs::read_dir(ctx.root.join("containers"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(capsa_tests::cleanup::mounts_below(ctx.dir()).is_empty());
    let bad = ctx.dir().join("bad-layout");
    std::fs::create_dir_all(&bad)?;
    std::fs::write(bad.join("index.json"), "{not json")?;
    let out = ctx
        .capsa(&["load", "-i", bad.to_str().context("path")?])?
        .failed()?;
    assert!(out.stderr.contains("index.json"), "{out}");
    ctx.capsa(&["rmi", "bb:1"])?.ok()?;
    Ok(())
}

/// Writes "hello from wasm" with WASI's fd_write.
const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn wasm_images_in_all_three_forms_run_through_the_shim() -> Result<()> {
    let ctx = EngineContext::new("engine-wasm")?;
    ensure!(
        ctx.bin.with_file_name("capsa-shim").is_file(),
        "capsa-shim not built beside capsa: scripts/build-shim.sh (scripts/test.sh does)"
    );
    let module = ctx.dir().join("hello.wasm");
    std::fs::write(&module, wat::parse_str(HELLO_WAT)?)?;
    // CNCF wasm artifact.
    let cncf = ctx.raw_layout(
        "cncf",
        "application/vnd.wasm.config.v0+json",
        &json!({"architecture": "wasm", "os": "wasip1", "layerDigests": []}),
        &[("application/wasm", &module)],
        "cncf",
    )?;
    // runwasi's layout: an OCI config with architecture wasm and a raw component-type layer.
    let runwasi = ctx.raw_layout(
        "runwasi",
        "application/vnd.oci.image.config.v1+json",
        &json!({"architecture": "wasm", "os": "wasip1", "config": {},
                "rootfs": {"type": "layers", "diff_ids": []}}),
        &[(
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            &module,
        )],
        "runwasi",
    )?;
    // Docker's wasi/wasm platform: a tar layer holding the module the entrypoint names.
    let tree = ctx.dir().join("docker-tree");
    std::fs::create_dir_all(&tree)?;
    std::fs::copy(&module, tree.join("hello.wasm"))?;
    let docker = ctx.oci_layout_for(
        "docker",
        &[&tree],
        json!({"Entrypoint": ["/hello.wasm"]}),
        "docker",
        ("wasi", "wasm"),
    )?;
    for layout in [&cncf, &runwasi, &docker] {
        let id = load_id(&ctx, layout)?;
        // Compiled at load: the cache holds the artifact before any container ran. The three
        // forms carry the same module, so they share one entry.
        ensure!(
            wasm_cache_entries(&ctx)? == 1,
            "{} compiled artifacts after loading {}",
            wasm_cache_entries(&ctx)?,
            layout.display()
        );
        let name = format!("w{}", &id[7..15]);
        let out = ctx.run(&["-d", "--name", &name, &id])?.ok()?;
        let wait = ctx.capsa(&["wait", &name])?.ok()?;
        let logs = ctx.capsa(&["logs", &name])?.ok()?;
        assert_eq!(wait.stdout.trim(), "0", "{out}\n{wait}\n{logs}");
        assert_eq!(logs.stdout, "hello from wasm\n", "{logs}");
        let inspect = ctx.capsa(&["inspect", &name])?.ok()?.json()?;
        assert_eq!(inspect[0]["Wasm"], true);
        ctx.capsa(&["rm", &name])?.ok()?;
    }
    // A file bind mount (`-v FILE:PATH`) is reached through the preopened `/`: the shim must
    // not try to preopen it as a directory.
    let file = ctx.dir().join("capsa-test-file-bind.conf");
    std::fs::write(&file, "x\n")?;
    let volume = format!("{}:/etc/capsa-test.conf:ro", file.display());
    let id = load_id(&ctx, &docker)?;
    let out = ctx.run(&["--rm", "-v", &volume, &id])?.ok()?;
    assert_eq!(out.stdout, "hello from wasm\n", "{out}");
    // Running them compiled nothing more.
    ensure!(
        wasm_cache_entries(&ctx)? == 1,
        "the runs added cache entries"
    );
    Ok(())
}

/// The artifacts in the engine's wasm cache (in the store root, so they survive a reboot).
fn wasm_cache_entries(ctx: &EngineContext) -> Result<usize> {
    let dir = ctx.root.join("wasm-cache");
    if !dir.is_dir() {
        return Ok(0);
    }
    Ok(std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count())
}

/// Sleeps 60 s in WASI's poll_oneoff (a relative monotonic-clock subscription).
const SLEEP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 60000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;

#[test]
fn a_wasm_image_runs_in_its_own_namespaces_and_cgroup() -> Result<()> {
    let ctx = EngineContext::new("engine-wasm-ns")?;
    let module = ctx.dir().join("sleep.wasm");
    std::fs::write(&module, wat::parse_str(SLEEP_WAT)?)?;
    let layout = ctx.raw_layout(
        "sleep",
        "application/vnd.wasm.config.v0+json",
        &json!({"architecture": "wasm", "os": "wasip1", "layerDigests": []}),
        &[("application/wasm", &module)],
        "sleep",
    )?;
    let id = load_id(&ctx, &layout)?;
    ctx.run(&["-d", "--name", "sleeper", &id])?.ok()?;
    let inspect = ctx.capsa(&["inspect", "sleeper"])?.ok()?.json()?;
    let pid = inspect[0]["State"]["Pid"]
        .as_i64()
        .context("State.Pid of a running container")?;
    // The shim is the container's process: /proc/PID/exe is capsa-shim.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    ensure!(
        exe.file_name().is_some_and(|n| n == "capsa-shim"),
        "the container's process is {}",
        exe.display()
    );
    for ns in ["pid", "net", "ipc", "uts", "mnt"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))?;
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}"))?;
        ensure!(
            theirs != ours,
            "the wasm container shares the {ns} namespace"
        );
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    ensure!(
        cgroup.contains(&ctx.cgroup_parent),
        "not in the container's cgroup under {}: {cgroup}",
        ctx.cgroup_parent
    );
    ctx.capsa(&["rm", "-f", "sleeper"])?.ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() {
        ensure!(
            Instant::now() < deadline,
            "the shim (pid {pid}) outlived rm -f"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn push_to_a_registry_then_pull_back_and_run() -> Result<()> {
    let ctx = EngineContext::new("engine-registry")?;
    let registry = capsa_tests::registry::Registry::start()?;
    busybox_image(&ctx)?;
    let remote = format!("{}/capsa-test/bb:1", registry.host());
    let pushed = ctx.capsa(&["push", "-q", "bb:1", &remote])?.ok()?;
    let digest = pushed
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .context("push prints the manifest digest")?
        .to_owned();
    // skopeo (a peer) sees what capsa pushed.
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{remote}"),
        ])
        .output()?;
    ensure!(inspect.status.success(), "skopeo inspect: {inspect:?}");
    let seen: serde_json::Value = serde_json::from_slice(&inspect.stdout)?;
    ensure!(
        seen["Digest"] == digest.as_str(),
        "skopeo sees {}",
        seen["Digest"]
    );

    ctx.capsa(&["rmi", "bb:1"])?.ok()?;
    let pulled = ctx.capsa(&["pull", "-q", &remote])?.ok()?;
    ensure!(pulled.stdout.trim().starts_with("sha256:"), "{pulled}");
    let out = ctx.run(&["--rm", &remote, "echo", "pulled"])?.ok()?;
    ensure!(out.stdout == "pulled\n", "{out}");
    // Pulled again: nothing to fetch.
    let again = ctx.capsa(&["pull", &remote])?.ok()?;
    ensure!(again.stdout.contains("0 blobs fetched"), "{again}");

    // A committed image pushes too, and skopeo copies it out as an OCI layout.
    ctx.run(&[
        "--name",
        "committer",
        &remote,
        "sh",
        "-c",
        "echo changed > /changed",
    ])?
    .ok()?;
    ctx.capsa(&["commit", "committer", "bb:2"])?.ok()?;
    ctx.capsa(&["rm", "committer"])?.ok()?;
    let remote2 = format!("{}/capsa-test/bb:2", registry.host());
    ctx.capsa(&["push", "bb:2", &remote2])?.ok()?;
    let copied = ctx.dir().join("copied");
    let copy = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{remote2}"),
        ])
        .arg(format!("oci:{}:bb", copied.display()))
        .output()?;
    ensure!(copy.status.success(), "skopeo copy: {copy:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&copy_manifest(&copied)?)?;
    ensure!(
        manifest["layers"].as_array().map(Vec::len) == Some(2),
        "the committed image has two layers: {manifest}"
    );
    // `run` of an image the store lacks pulls it first, as `docker run` does; stdout stays the
    // payload's.
    let out = ctx.run(&["--rm", &remote2, "cat", "/changed"])?.ok()?;
    ensure!(out.stdout == "changed\n", "{out}");
    ensure!(out.stderr.contains("Unable to find image"), "{out}");
    let absent = format!("{}/capsa-test/absent:1", registry.host());
    let never = ctx.run(&["--rm", "--pull", "never", &absent, "true"])?;
    ensure!(
        never.code() != 0 && never.stderr.contains("--pull=never"),
        "{never}"
    );
    let missing = ctx.run(&["--rm", &absent, "true"])?;
    ensure!(
        missing.code() != 0 && missing.stderr.contains("absent"),
        "{missing}"
    );

    // A wasm artifact: pushed, removed, pulled (compiled at pull) and run.
    let module = ctx.dir().join("hello.wasm");
    std::fs::write(&module, wat::parse_str(HELLO_WAT)?)?;
    let layout = ctx.raw_layout(
        "wasm-art",
        "application/vnd.wasm.config.v0+json",
        &json!({"architecture": "wasm", "os": "wasip1", "layerDigests": []}),
        &[("application/wasm", &module)],
        "wasm-art",
    )?;
    let id = load_id(&ctx, &layout)?;
    let wasm_remote = format!("{}/capsa-test/hello-wasm:1", registry.host());
    ctx.capsa(&["push", &id, &wasm_remote])?.ok()?;
    ctx.capsa(&["rmi", &id])?.ok()?;
    std::fs::remove_dir_all(ctx.root.join("wasm-cache"))?;
    ctx.capsa(&["pull", "--platform", "wasi/wasm", &wasm_remote])?
        .ok()?;
    ensure!(
        wasm_cache_entries(&ctx)? == 1,
        "the wasm artifact was not compiled at pull"
    );
    let out = ctx.run(&["--rm", &wasm_remote])?.ok()?;
    ensure!(out.stdout == "hello from wasm\n", "{out}");

    // Bad input: a registry with nothing listening, and a malformed reference.
    let port = capsa_tests::registry::free_port()?;
    let refused = ctx.capsa(&["pull", &format!("127.0.0.1:{port}/x/y:1")])?;
    ensure!(
        refused.code() != 0 && refused.stderr.contains(&format!("127.0.0.1:{port}")),
        "{refused}"
    );
    let bad = ctx.capsa(&["pull", "UPPER/Case::x"])?;
    ensure!(bad.code() != 0 && !bad.stderr.is_empty(), "{bad}");
    Ok(())
}

/// The manifest of the only image in the OCI layout `dir`.
fn copy_manifest(dir: &Path) -> Result<Vec<u8>> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .context("index.json names a sha256 manifest")?;
    Ok(std::fs::read(dir.join("blobs/sha256").join(digest))?)
}

/// `capsa load -i LAYOUT` of an unnamed image; its id.
fn load_id(ctx: &EngineContext, layout: &Path) -> Result<String> {
    let loaded = ctx
        .capsa(&["load", "-i", layout.to_str().context("path")?])?
        .ok()?;
    Ok(loaded
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: "))
        .context("load prints the image id")?
        .to_owned())
}

#[test]
fn a_file_that_is_not_a_tarball_is_refused_in_one_line_without_its_bytes() -> Result<()> {
    let ctx = EngineContext::new("engine-not-tar")?;
    let file = ctx.dir().join("capsa-test-passwd");
    std::fs::write(
        &file,
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
    )?;
    let path = file.to_str().context("path")?;
    for args in [
        vec!["load", "-i", path],
        vec!["import", path, "capsa-test-x:1"],
    ] {
        let out = ctx.capsa(&args)?;
        ensure!(out.code() == 125, "{args:?}: {out}");
        ensure!(
            out.stderr.trim().lines().count() == 1 && out.stderr.contains("not a tar archive"),
            "{args:?} says what is wrong in one line: {out}"
        );
        ensure!(
            !out.stderr.contains("root:x:0"),
            "{args:?} echoes the file: {out}"
        );
    }
    let images = ctx.capsa(&["images", "-q"])?.ok()?;
    ensure!(
        images.stdout.trim().is_empty(),
        "nothing was added: {images}"
    );
    Ok(())
}

#[test]
fn security_opts_apply_a_seccomp_profile_lift_system_paths_and_refuse_what_cannot_hold()
-> Result<()> {
    let ctx = EngineContext::new("engine-security-opt")?;
    busybox_image(&ctx)?;
    // A profile in Docker's format: everything allowed but mkdir, which fails with EPERM.
    let profile = ctx.dir().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "excludes": {"caps": ["CAP_SYS_CHROOT"]}}
            ]
        })
        .to_string(),
    )?;
    let opt = format!("seccomp={}", profile.display());
    let out = ctx
        .run(&[
            "--rm",
            "--network",
            "none",
            "--security-opt",
            &opt,
            "bb:1",
            "sh",
            "-c",
            "mkdir /tmp/x 2>&1; echo mkdir=$?; chroot / true; echo chroot=$?",
        ])?
        .ok()?;
    ensure!(
        out.stdout.contains("Operation not permitted") && out.stdout.contains("mkdir=1"),
        "mkdir is refused by the profile: {out}"
    );
    // Docker's set has CAP_SYS_CHROOT, so the rule that excludes it is left out.
    ensure!(out.stdout.contains("chroot=0"), "chroot is allowed: {out}");
    let out = ctx
        .run(&[
            "--rm",
            "--network",
            "none",
            "--cap-drop",
            "SYS_CHROOT",
            "--security-opt",
            &opt,
            "bb:1",
            "sh",
            "-c",
            "chroot / true 2>/dev/null; echo chroot=$?",
        ])?
        .ok()?;
    ensure!(
        out.stdout.contains("chroot=1"),
        "without the capability the rule applies: {out}"
    );
    // podman's default profile, as users pass it.
    let podman = std::path::Path::new("/usr/share/containers/seccomp.json");
    if podman.exists() {
        let opt = format!("seccomp={}", podman.display());
        let out = ctx
            .run(&[
                "--rm",
                "--network",
                "none",
                "--security-opt",
                &opt,
                "bb:1",
                "echo",
                "ok",
            ])?
            .ok()?;
        ensure!(out.stdout == "ok\n", "{out}");
    }
    // systempaths=unconfined lifts the masked paths.
    let masked = ctx
        .run(&[
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "wc -c < /proc/timer_list",
        ])?
        .ok()?;
    ensure!(masked.stdout.trim() == "0", "masked by default: {masked}");
    let open = ctx
        .run(&[
            "--rm",
            "--network",
            "none",
            "--security-opt",
            "systempaths=unconfined",
            "bb:1",
            "sh",
            "-c",
            "wc -c < /proc/timer_list",
        ])?
        .ok()?;
    ensure!(open.stdout.trim() != "0", "unmasked: {open}");
    // What cannot hold is refused, naming the flag; nothing is created.
    let mut refusals = vec![
        ("seccomp=/nonexistent/capsa-test.json", "No such file"),
        ("label=type:capsa_t", "SELinux"),
        ("bogus=1", "supported: no-new-privileges"),
    ];
    if !std::path::Path::new("/sys/module/apparmor/parameters/enabled").exists() {
        refusals.push(("apparmor=capsa-test", "AppArmor is not enabled"));
    }
    for (opt, says) in refusals {
        let out = ctx.run(&["--network", "none", "--security-opt", opt, "bb:1", "true"])?;
        ensure!(
            out.code() == 125 && out.stderr.contains("--security-opt") && out.stderr.contains(says),
            "--security-opt {opt}: {out}"
        );
    }
    let left = ctx.capsa(&["ps", "-aq"])?.ok()?;
    ensure!(
        left.stdout.trim().is_empty(),
        "no container was left: {left}"
    );
    Ok(())
}

#[test]
fn oom_kill_disable_label_files_userns_host_and_inspect_format() -> Result<()> {
    let ctx = EngineContext::new("engine-more-flags")?;
    busybox_image(&ctx)?;
    let labels = ctx.dir().join("labels");
    std::fs::write(&labels, "# team labels\ntier=web\nowner=ops\n\n")?;
    let labels = labels.to_str().context("path")?;
    let out = ctx.create(&[
        "--name",
        "capsa-test-flags",
        "--network",
        "none",
        "-m",
        "64m",
        "--oom-kill-disable",
        "--label-file",
        labels,
        "--label",
        "owner=dev",
        "--userns",
        "host",
        "--ipc",
        "shareable",
        "bb:1",
        "sleep",
        "60",
    ])?;
    let out = out.ok()?;
    let pure_v2 = !std::path::Path::new("/sys/fs/cgroup/memory").exists();
    ensure!(
        out.stderr.contains("OomKillDisable discarded") == pure_v2,
        "dockerd's warning on cgroup v2 only: {out}"
    );
    let inspect = ctx
        .capsa(&[
            "inspect",
            "-f",
            "{{.Config.Labels.tier}} {{.Config.Labels.owner}} {{.HostConfig.OomKillDisable}} {{json .State.Running}}",
            "capsa-test-flags",
        ])?
        .ok()?;
    ensure!(
        inspect.stdout == "web dev true false\n",
        "labels from the file, the flag overriding it; the template walks nested fields: {inspect}"
    );
    ctx.capsa(&["start", "capsa-test-flags"])?.ok()?;
    if !pure_v2 {
        let pid = ctx
            .capsa(&["inspect", "--format", "{{.State.Pid}}", "capsa-test-flags"])?
            .ok()?;
        let pid = pid.stdout.trim();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let memory = cgroup
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
            .context("a memory cgroup")?;
        let control =
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{memory}/memory.oom_control"))?;
        ensure!(control.contains("oom_kill_disable 1"), "{control}");
    }
    ctx.capsa(&["rm", "-f", "capsa-test-flags"])?.ok()?;
    for (flag, value, says) in [
        ("--userns", "remap", "only host"),
        ("--pid", "container:other", "No such container: other"),
        ("--label-file", "/nonexistent/capsa-labels", "--label-file"),
    ] {
        let out = ctx.run(&["--network", "none", flag, value, "bb:1", "true"])?;
        ensure!(
            out.code() == 125 && out.stderr.contains(says),
            "{flag} {value}: {out}"
        );
    }
    Ok(())
}

#[test]
fn pid_and_ipc_join_another_container_and_ipc_none_has_no_shm() -> Result<()> {
    let ctx = EngineContext::new("engine-join-ns")?;
    busybox_image(&ctx)?;
    ctx.run(&[
        "-d",
        "--name",
        "capsa-test-target",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "60",
    ])?
    .ok()?;
    let ns = |name: &str, kind: &str| -> Result<String> {
        let out = ctx
            .capsa(&["exec", name, "readlink", &format!("/proc/self/ns/{kind}")])?
            .ok()?;
        Ok(out.stdout.trim().to_owned())
    };
    let target_pid = ns("capsa-test-target", "pid")?;
    let target_ipc = ns("capsa-test-target", "ipc")?;
    let out = ctx
        .run_rm(&[
            "--pid",
            "container:capsa-test-target",
            "--ipc",
            "container:capsa-test-target",
            "bb:1",
            "sh",
            "-c",
            "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; cat /proc/1/cmdline | tr '\\0' ' '",
        ])?
        .ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines.first() == Some(&target_pid.as_str())
            && lines.get(1) == Some(&target_ipc.as_str())
            && lines.get(2).is_some_and(|l| l.starts_with("sleep 60")),
        "joined the target's pid and ipc namespaces: {out} (target {target_pid} {target_ipc})"
    );
    let inspect_target = ctx
        .capsa(&["inspect", "-f", "{{.Id}}", "capsa-test-target"])?
        .ok()?;
    ctx.create(&[
        "--name",
        "capsa-test-joiner",
        "--network",
        "none",
        "--pid",
        "container:capsa-test-target",
        "bb:1",
        "true",
    ])?
    .ok()?;
    let mode = ctx
        .capsa(&[
            "inspect",
            "-f",
            "{{.HostConfig.PidMode}}",
            "capsa-test-joiner",
        ])?
        .ok()?;
    ensure!(
        mode.stdout.trim() == format!("container:{}", inspect_target.stdout.trim()),
        "{mode}"
    );
    let none = ctx.run_rm(&[
        "--ipc",
        "none",
        "bb:1",
        "sh",
        "-c",
        "grep -c ' /dev/shm ' /proc/self/mounts",
    ])?;
    ensure!(
        none.stdout.trim() == "0",
        "no /dev/shm with --ipc none: {none}"
    );
    // The target stopped: starting the joiner fails as dockerd's does.
    ctx.capsa(&["rm", "-f", "capsa-test-target"])?.ok()?;
    let start = ctx.capsa(&["start", "capsa-test-joiner"])?;
    ensure!(
        start.code() != 0 && start.stderr.contains("no longer exists"),
        "{start}"
    );
    let missing = ctx.run(&[
        "--network",
        "none",
        "--pid",
        "container:capsa-test-nothing",
        "bb:1",
        "true",
    ])?;
    ensure!(
        missing.code() == 125
            && missing
                .stderr
                .contains("No such container: capsa-test-nothing"),
        "{missing}"
    );
    ctx.capsa(&["rm", "-f", "capsa-test-joiner"])?.ok()?;
    Ok(())
}

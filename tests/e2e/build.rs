//! `capsa build` without a daemon: images from Dockerfiles through the real engine (RUN steps
//! are real containers), checked by running them, inspecting them, and rebuilding them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use capsa_tests::engine::EngineContext;
use capsa_tests::runtime::CmdOutput;
use serde_json::Value;

/// A context directory `name` under the test's dir with `files` (path, content).
fn context(ctx: &EngineContext, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    let dir = ctx.dir().join(name);
    for (path, content) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `capsa build ARGS DIR`.
fn build(ctx: &EngineContext, dir: &Path, args: &[&str]) -> Result<CmdOutput> {
    let d = dir.to_string_lossy().into_owned();
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    all.push(&d);
    ctx.capsa(&all)
}

/// `capsa image inspect NAME` as JSON.
fn inspect(ctx: &EngineContext, name: &str) -> Result<Value> {
    let out = ctx.capsa(&["image", "inspect", name])?.ok()?;
    let v: Value = serde_json::from_str(&out.stdout)?;
    Ok(v[0].clone())
}

/// How many steps the output says came from the cache.
fn cached_steps(out: &CmdOutput) -> usize {
    out.stdout.matches("---> Using cache").count()
}

fn base(ctx: &EngineContext) -> Result<()> {
    ctx.import_busybox("bb:1")
}

#[test]
fn build_makes_the_image_the_dockerfile_describes() -> Result<()> {
    let ctx = EngineContext::new("build-basic")?;
    base(&ctx)?;
    let dir = context(
        &ctx,
        "ctx",
        &[
            ("a.txt", "hello\n"),
            ("sub/b.txt", "bee\n"),
            (
                "Dockerfile",
                "# a comment\nFROM bb:1\nARG WHO=world\nENV GREETING=\"hello $WHO\" \\\n    OTHER=x\nWORKDIR /app\nCOPY a.txt .\nCOPY sub/ ./sub2/\nRUN echo \"$GREETING\" > greet && \\\n    cat /app/a.txt\nEXPOSE 8080 53/udp\nLABEL org.example.k=\"v 1\"\nUSER 1000\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s --retries=2 CMD [\"true\"]\nVOLUME /data\nCMD [\"cat\", \"/app/greet\"]\n",
            ),
        ],
    )?;
    let out = build(&ctx, &dir, &["-t", "demo:1"])?.ok()?;
    ensure!(out.stdout.contains("Step 1/14 : FROM bb:1"), "{out}");
    ensure!(
        out.stdout
            .contains("Step 7/14 : RUN echo \"$GREETING\" > greet &&"),
        "the step header shows the instruction: {out}"
    );
    ensure!(
        out.stdout.contains("hello\n"),
        "RUN's output streams: {out}"
    );
    ensure!(out.stdout.contains("Successfully tagged demo:1"), "{out}");

    let run = ctx.run_rm(&["demo:1"])?.ok()?;
    ensure!(run.stdout == "hello world\n", "CMD runs: {run}");
    let files = ctx
        .run_rm(&[
            "--user",
            "0",
            "demo:1",
            "cat",
            "/app/a.txt",
            "/app/sub2/b.txt",
        ])?
        .ok()?;
    ensure!(files.stdout == "hello\nbee\n", "COPY copied: {files}");

    let i = inspect(&ctx, "demo:1")?;
    let c = &i["Config"];
    let env: Vec<&str> = c["Env"]
        .as_array()
        .context("Env")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(env.contains(&"GREETING=hello world"), "{env:?}");
    ensure!(env.contains(&"OTHER=x"), "{env:?}");
    ensure!(
        !env.iter().any(|e| e.starts_with("WHO=")),
        "a build arg is not in the image's env: {env:?}"
    );
    ensure!(c["WorkingDir"] == "/app", "{c}");
    ensure!(c["User"] == "1000", "{c}");
    ensure!(c["StopSignal"] == "SIGINT", "{c}");
    ensure!(c["Cmd"] == serde_json::json!(["cat", "/app/greet"]), "{c}");
    ensure!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    ensure!(c["ExposedPorts"]["53/udp"].is_object(), "{c}");
    ensure!(c["Labels"]["org.example.k"] == "v 1", "{c}");
    ensure!(c["Volumes"]["/data"].is_object(), "{c}");
    ensure!(
        c["Healthcheck"]["Test"] == serde_json::json!(["CMD", "true"]),
        "{c}"
    );
    ensure!(c["Healthcheck"]["Interval"] == 5_000_000_000i64, "{c}");
    ensure!(c["Healthcheck"]["Retries"] == 2, "{c}");
    // Layers: the base's one, then one per COPY and RUN, and WORKDIR's (it made /app).
    let layers = i["RootFS"]["Layers"].as_array().context("layers")?.len();
    ensure!(
        layers == 5,
        "one layer per COPY/RUN/new WORKDIR on the base's: {i}"
    );

    // History: Docker's shape, newest first, metadata steps without a layer.
    let history = ctx
        .capsa(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}|{{.Size}}",
            "demo:1",
        ])?
        .ok()?;
    let lines: Vec<&str> = history.stdout.lines().collect();
    ensure!(
        lines.len() == 14,
        "a history entry per step plus the base's: {history}"
    );
    ensure!(
        lines[0].starts_with("/bin/sh -c #(nop)  CMD [\"cat\" \"/app/greet\"]|0B"),
        "{history}"
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("|1 WHO=world /bin/sh -c echo")),
        "a RUN with a build arg records it as Docker does: {history}"
    );
    ensure!(
        lines.iter().any(|l| l.contains("#(nop) COPY dir:")),
        "{history}"
    );
    Ok(())
}

#[test]
fn rebuild_reuses_the_cache_as_the_classic_builder_does() -> Result<()> {
    let ctx = EngineContext::new("build-cache")?;
    base(&ctx)?;
    let dir = context(
        &ctx,
        "ctx",
        &[
            ("f.txt", "one\n"),
            (
                "Dockerfile",
                "FROM bb:1\nARG V=1\nCOPY f.txt /f.txt\nRUN echo run-$V > /r\nCMD [\"cat\", \"/r\"]\n",
            ),
        ],
    )?;
    let first = build(&ctx, &dir, &["-t", "c:1"])?.ok()?;
    ensure!(cached_steps(&first) == 0, "{first}");
    let id = inspect(&ctx, "c:1")?["Id"].clone();

    let again = build(&ctx, &dir, &["-t", "c:1"])?.ok()?;
    ensure!(
        cached_steps(&again) == 4,
        "every step after FROM from the cache: {again}"
    );
    ensure!(!again.stdout.contains("Running in"), "no RUN ran: {again}");
    ensure!(inspect(&ctx, "c:1")?["Id"] == id, "the same image");

    // An mtime-only change keeps the cache; a mode change or new content does not.
    let f = dir.join("f.txt");
    std::fs::File::options()
        .write(true)
        .open(&f)?
        .set_modified(std::time::SystemTime::UNIX_EPOCH)?;
    let touched = build(&ctx, &dir, &["-t", "c:1"])?.ok()?;
    ensure!(cached_steps(&touched) == 4, "mtime only: {touched}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
    let chmodded = build(&ctx, &dir, &["-t", "c:1"])?.ok()?;
    ensure!(
        cached_steps(&chmodded) == 1,
        "only ARG before the COPY: {chmodded}"
    );
    std::fs::write(&f, "two\n")?;
    let changed = build(&ctx, &dir, &["-t", "c:1"])?.ok()?;
    ensure!(cached_steps(&changed) == 1, "content: {changed}");

    // A used build arg misses at the first step that uses it (the RUN: ARG and COPY hit, as
    // in Docker's cache); an unused one hits, with Docker's warning.
    let arg = build(&ctx, &dir, &["-t", "c:2", "--build-arg", "V=2"])?.ok()?;
    ensure!(
        cached_steps(&arg) == 2 && arg.stdout.contains("Running in"),
        "{arg}"
    );
    ensure!(
        ctx.run_rm(&["c:2"])?.ok()?.stdout == "run-2\n",
        "the arg reached RUN"
    );
    let unused = build(&ctx, &dir, &["-t", "c:1", "--build-arg", "NOPE=1"])?.ok()?;
    ensure!(cached_steps(&unused) == 4, "{unused}");
    ensure!(
        unused
            .stdout
            .contains("[Warning] One or more build-args [NOPE] were not consumed"),
        "{unused}"
    );

    // --no-cache runs every step; the cache survives restarts (it is on disk) until prune.
    let fresh = build(&ctx, &dir, &["--no-cache", "-t", "c:3"])?.ok()?;
    ensure!(
        cached_steps(&fresh) == 0 && fresh.stdout.contains("Running in"),
        "{fresh}"
    );
    let pruned = ctx.capsa(&["builder", "prune", "-f"])?.ok()?;
    ensure!(pruned.stdout.contains("Total reclaimed space"), "{pruned}");
    let after = build(&ctx, &dir, &["-t", "c:1"])?.ok()?;
    ensure!(
        cached_steps(&after) == 0,
        "prune emptied the cache: {after}"
    );
    Ok(())
}

#[test]
fn failing_run_stops_the_build_with_its_code_and_leaves_nothing() -> Result<()> {
    let ctx = EngineContext::new("build-fail")?;
    base(&ctx)?;
    let dir = context(
        &ctx,
        "ctx",
        &[(
            "Dockerfile",
            "FROM bb:1\nRUN echo made > /made\nRUN echo partial > /p && echo oops >&2 && exit 3\nCMD [\"true\"]\n",
        )],
    )?;
    let images_before = ctx.capsa(&["images", "-q"])?.ok()?.stdout;
    let out = build(&ctx, &dir, &["-t", "bad:1"])?;
    ensure!(out.code() == 3, "the step's exit code: {out}");
    ensure!(
        out.stderr
            .contains("The command '/bin/sh -c echo partial > /p && echo oops >&2 && exit 3' returned a non-zero code: 3"),
        "Docker's message: {out}"
    );
    ensure!(
        out.stdout.contains("oops"),
        "the step's stderr streams: {out}"
    );
    ensure!(
        !out.stdout.contains("Step 4/4"),
        "no step after the failure: {out}"
    );
    let ps = ctx.capsa(&["ps", "-aq"])?.ok()?;
    ensure!(ps.stdout.trim().is_empty(), "no build container left: {ps}");
    let has = ctx.capsa(&["image", "inspect", "bad:1"])?;
    ensure!(!has.success(), "nothing tagged: {has}");
    // The steps that completed stay as untagged images (the cache of the next attempt, as
    // Docker keeps them); nothing is tagged, and a retry reuses them.
    let images = ctx
        .capsa(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?
        .ok()?;
    let named: Vec<&str> = images
        .stdout
        .lines()
        .filter(|l| *l != "<none>:<none>")
        .collect();
    ensure!(named == ["bb:1"], "only the base is named: {images}");
    let _ = images_before;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM bb:1\nRUN echo made > /made\nRUN true\nCMD [\"true\"]\n",
    )?;
    let retry = build(&ctx, &dir, &["-t", "bad:1"])?.ok()?;
    ensure!(
        cached_steps(&retry) == 1,
        "the completed step is reused: {retry}"
    );
    let tmp = ctx.root.join("build-tmp");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    ensure!(leftovers.is_empty(), "build-tmp is empty: {leftovers:?}");
    Ok(())
}

#[test]
fn dockerignore_keeps_files_out_and_exceptions_in() -> Result<()> {
    let ctx = EngineContext::new("build-ignore")?;
    base(&ctx)?;
    let dir = context(
        &ctx,
        "ctx",
        &[
            (
                ".dockerignore",
                "# logs\n*.log\n!keep.log\nsecret/\n**/*.tmp\n",
            ),
            ("a.log", "no"),
            ("keep.log", "yes"),
            ("secret/key", "no"),
            ("deep/x/y.tmp", "no"),
            ("deep/x/z.txt", "yes"),
            ("sub/inner.log", "yes: *.log matches at the root only"),
            ("Dockerfile", "FROM bb:1\nCOPY . /ctx/\n"),
        ],
    )?;
    build(&ctx, &dir, &["-t", "ign:1"])?.ok()?;
    let out = ctx
        .run_rm(&["ign:1", "busybox", "find", "/ctx", "-type", "f"])?
        .ok()?;
    let mut files: Vec<&str> = out.stdout.lines().collect();
    files.sort();
    ensure!(
        files
            == [
                "/ctx/.dockerignore",
                "/ctx/Dockerfile",
                "/ctx/deep/x/z.txt",
                "/ctx/keep.log",
                "/ctx/sub/inner.log"
            ],
        "{files:?}"
    );
    let missing = context(
        &ctx,
        "ctx2",
        &[
            (".dockerignore", "a.log\n"),
            ("a.log", "x"),
            ("Dockerfile", "FROM bb:1\nCOPY a.log /\n"),
        ],
    )?;
    let refused = build(&ctx, &missing, &[])?;
    ensure!(
        !refused.success() && refused.stderr.contains("excluded by .dockerignore"),
        "an ignored source is an error: {refused}"
    );
    Ok(())
}

#[test]
fn multi_stage_copies_from_a_stage_and_stops_at_the_target() -> Result<()> {
    let ctx = EngineContext::new("build-stages")?;
    base(&ctx)?;
    let dir = context(
        &ctx,
        "ctx",
        &[(
            "Dockerfile",
            "ARG BASE=bb:1\nFROM $BASE AS builder\nRUN mkdir /out && echo built > /out/artifact && chown 7:8 /out/artifact\n\nFROM scratch AS final\nCOPY --from=builder /out/artifact /artifact\nCOPY --from=0 /bin/busybox /bin/busybox\nCMD [\"/bin/busybox\", \"cat\", \"/artifact\"]\n",
        )],
    )?;
    let out = build(&ctx, &dir, &["-t", "ms:1"])?.ok()?;
    ensure!(out.stdout.contains("Step 1/7 : ARG BASE=bb:1"), "{out}");
    let run = ctx.run_rm(&["ms:1"])?.ok()?;
    ensure!(run.stdout == "built\n", "{run}");
    let owner = ctx
        .run_rm(&["ms:1", "/bin/busybox", "stat", "-c", "%u:%g", "/artifact"])?
        .ok()?;
    ensure!(owner.stdout == "7:8\n", "COPY --from keeps owners: {owner}");
    let i = inspect(&ctx, "ms:1")?;
    ensure!(
        i["RootFS"]["Layers"].as_array().map(Vec::len) == Some(2),
        "the final stage has only its own two layers: {i}"
    );

    let target = build(&ctx, &dir, &["--target", "builder", "-t", "ms:builder"])?.ok()?;
    ensure!(
        target.stdout.contains("Step 3/3"),
        "only the first stage: {target}"
    );
    let a = ctx.run_rm(&["ms:builder", "cat", "/out/artifact"])?.ok()?;
    ensure!(a.stdout == "built\n", "{a}");
    let bad = build(&ctx, &dir, &["--target", "nope"])?;
    ensure!(
        !bad.success() && bad.stderr.contains("failed to reach build target nope"),
        "{bad}"
    );
    Ok(())
}

#[test]
fn copy_and_add_follow_dockers_rules_for_owners_modes_and_paths() -> Result<()> {
    let ctx = EngineContext::new("build-copy")?;
    base(&ctx)?;
    // A base with a user, and /link -> /real (a COPY through it lands in /real).
    let basedir = context(
        &ctx,
        "base",
        &[(
            "Dockerfile",
            "FROM bb:1\nRUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group && mkdir /real && ln -s /real /link\n",
        )],
    )?;
    build(&ctx, &basedir, &["-t", "withuser:1"])?.ok()?;
    let dir = context(
        &ctx,
        "ctx",
        &[
            ("one.txt", "1"),
            ("two.txt", "2"),
            ("tree/a/b.txt", "b"),
            (
                "Dockerfile",
                "FROM withuser:1\nCOPY --chown=app:app --chmod=0750 one.txt /opt/deep/one\nCOPY *.txt /multi/\nCOPY one.txt /link/\nADD arch.tar.gz /unpacked/\nCOPY tree /tree-contents\nENV X=1\nCOPY <<EOF /inline.txt\nfrom a \"heredoc\" $X\nEOF\n",
            ),
        ],
    )?;
    // An archive for ADD: a gzip tar of tree/.
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(dir.join("arch.tar.gz"))
        .arg("-C")
        .arg(dir.join("tree"))
        .arg(".")
        .status()?;
    ensure!(status.success(), "tar");
    build(&ctx, &dir, &["-t", "cp:1"])?.ok()?;
    let check =
        |cmd: &str| -> Result<String> { Ok(ctx.run_rm(&["cp:1", "sh", "-c", cmd])?.ok()?.stdout) };
    ensure!(
        check("stat -c '%u:%g %a' /opt/deep/one")? == "1000:1000 750\n",
        "--chown by name and --chmod"
    );
    ensure!(
        check("stat -c '%u:%g %a' /opt/deep /opt")? == "1000:1000 755\n0:0 755\n"
            || check("stat -c '%u:%g %a' /opt")? == "1000:1000 755\n",
        "missing parents are made"
    );
    ensure!(
        check("cat /multi/one.txt /multi/two.txt")? == "12",
        "a wildcard source"
    );
    ensure!(
        check("readlink /link; cat /real/one.txt")? == "/real\n1",
        "a link on the way resolves inside the image"
    );
    ensure!(
        check("cat /unpacked/a/b.txt")? == "b",
        "ADD unpacks a local tar"
    );
    ensure!(
        check("cat /tree-contents/a/b.txt")? == "b",
        "a directory copies its contents"
    );
    ensure!(
        check("cat /inline.txt")? == "from a \"heredoc\" 1\n",
        "a COPY heredoc"
    );

    let several = context(
        &ctx,
        "bad1",
        &[
            ("a", ""),
            ("b", ""),
            ("Dockerfile", "FROM bb:1\nCOPY a b /dest\n"),
        ],
    )?;
    let out = build(&ctx, &several, &[])?;
    ensure!(
        !out.success()
            && out
                .stderr
                .contains("the destination must be a directory and end with a /"),
        "{out}"
    );
    let outside = context(
        &ctx,
        "bad2",
        &[("Dockerfile", "FROM bb:1\nCOPY ../secret /x\n")],
    )?;
    let out = build(&ctx, &outside, &[])?;
    ensure!(
        !out.success() && out.stderr.contains("outside the build context"),
        "{out}"
    );
    let url = context(
        &ctx,
        "bad3",
        &[("Dockerfile", "FROM bb:1\nADD https://example.com/x /x\n")],
    )?;
    let out = build(&ctx, &url, &[])?;
    ensure!(!out.success() && out.stderr.contains("remote URL"), "{out}");
    Ok(())
}

#[test]
fn onbuild_shell_heredoc_and_stdin_forms_work() -> Result<()> {
    let ctx = EngineContext::new("build-forms")?;
    base(&ctx)?;
    let parent = context(
        &ctx,
        "parent",
        &[(
            "Dockerfile",
            "FROM bb:1\nONBUILD RUN echo triggered > /trigger\n",
        )],
    )?;
    build(&ctx, &parent, &["-t", "parent:1"])?.ok()?;
    let child = context(
        &ctx,
        "child",
        &[(
            "Dockerfile",
            "FROM parent:1\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN <<EOF\necho one > /h1\necho two >> /h1\nEOF\nRUN cat /trigger /h1\n",
        )],
    )?;
    let out = build(&ctx, &child, &["-t", "child:1"])?.ok()?;
    ensure!(out.stdout.contains("# Executing 1 build trigger"), "{out}");
    ensure!(out.stdout.contains("triggered\none\ntwo\n"), "{out}");
    let i = inspect(&ctx, "child:1")?;
    ensure!(
        i["Config"]["OnBuild"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "triggers run once, not inherited: {i}"
    );
    ensure!(
        i["Config"]["Shell"] == serde_json::json!(["/bin/sh", "-ec"]),
        "{i}"
    );

    // `-f -`: the Dockerfile from stdin; `-`: the context as a tar on stdin.
    let text = "FROM bb:1\nCOPY f /f\nCMD [\"cat\", \"/f\"]\n";
    let d = context(&ctx, "stdin", &[("f", "from the context\n")])?;
    let mut cmd = ctx.command(&["build", "-t", "stdin:1", "-f", "-", &d.to_string_lossy()]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let done = child.wait_with_output()?;
    ensure!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    ensure!(ctx.run_rm(&["stdin:1"])?.ok()?.stdout == "from the context\n");

    std::fs::write(d.join("Dockerfile"), text)?;
    let tar = ctx.dir().join("context.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&d)
        .arg(".")
        .status()?;
    ensure!(status.success());
    let mut cmd = ctx.command(&["build", "-q", "-t", "tar:1", "-"]);
    cmd.stdin(std::fs::File::open(&tar)?);
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure!(
        id.starts_with("sha256:") && id.len() == 71,
        "-q prints the id only: {id:?}"
    );
    ensure!(inspect(&ctx, "tar:1")?["Id"] == id.as_str());
    Ok(())
}

#[test]
fn bad_dockerfiles_are_refused_clearly_and_leave_nothing() -> Result<()> {
    let ctx = EngineContext::new("build-bad")?;
    base(&ctx)?;
    let cases: &[(&str, &str)] = &[
        ("FROM bb:1\nFRUM x\n", "unknown instruction: FRUM"),
        ("RUN true\n", "FROM"),
        (
            "FROM bb:1\nCOPY missing /x\n",
            "file not found in build context",
        ),
        (
            "FROM bb:1\nCOPY onlyone\n",
            "requires at least two arguments",
        ),
        ("FROM bb:1\nEXPOSE http\n", "invalid containerPort: http"),
        (
            "FROM bb:1\nRUN --mount=type=cache,target=/x true\n",
            "BuildKit",
        ),
        (
            "FROM 127.0.0.1:1/no-such-image:1\n",
            "FROM 127.0.0.1:1/no-such-image:1: not in the store",
        ),
    ];
    for (n, (dockerfile, needle)) in cases.iter().enumerate() {
        let dir = context(&ctx, &format!("case{n}"), &[("Dockerfile", dockerfile)])?;
        let out = build(&ctx, &dir, &["-t", "never:1"])?;
        ensure!(!out.success(), "{dockerfile:?} must fail: {out}");
        ensure!(
            out.stderr.contains(needle),
            "{dockerfile:?}: expected {needle:?} in {out}"
        );
    }
    // Sources outside the context: an absolute path is the context's, and a link pointing out
    // resolves inside it (so neither reaches the host's /etc/passwd).
    for (n, source) in ["/etc/passwd", "out", "out-dir/passwd"].iter().enumerate() {
        let dir = context(
            &ctx,
            &format!("outside{n}"),
            &[("Dockerfile", &format!("FROM bb:1\nCOPY {source} /x\n"))],
        )?;
        std::os::unix::fs::symlink("/etc/passwd", dir.join("out"))?;
        std::os::unix::fs::symlink("/etc", dir.join("out-dir"))?;
        let out = build(&ctx, &dir, &["-t", "never:1"])?;
        ensure!(
            !out.success() && out.stderr.contains("file not found in build context"),
            "COPY {source}: {out}"
        );
    }
    let nofile = context(&ctx, "empty", &[])?;
    let out = build(&ctx, &nofile, &[])?;
    ensure!(
        !out.success() && out.stderr.contains("Cannot locate specified Dockerfile"),
        "{out}"
    );
    ensure!(!ctx.capsa(&["image", "inspect", "never:1"])?.success());
    ensure!(ctx.capsa(&["ps", "-aq"])?.ok()?.stdout.trim().is_empty());
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
fn wasm_image_from_scratch_builds_compiled_and_runs_through_the_shim() -> Result<()> {
    let ctx = EngineContext::new("build-wasm")?;
    ensure!(
        ctx.bin.with_file_name("capsa-shim").is_file(),
        "capsa-shim not built beside capsa: scripts/build-shim.sh (scripts/test.sh does)"
    );
    let dir = context(
        &ctx,
        "ctx",
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY app.wasm /app.wasm\nENTRYPOINT [\"/app.wasm\"]\n",
        )],
    )?;
    std::fs::write(dir.join("app.wasm"), wat::parse_str(HELLO_WAT)?)?;
    build(&ctx, &dir, &["--platform", "wasi/wasm", "-t", "wasm-app:1"])?.ok()?;
    let i = inspect(&ctx, "wasm-app:1")?;
    ensure!(i["Os"] == "wasi" && i["Architecture"] == "wasm", "{i}");
    ensure!(
        i["RootFS"]["Layers"].as_array().map(Vec::len) == Some(1),
        "one layer, the module: {i}"
    );
    // Compiled when built: the wasm cache holds an artifact before any container ran.
    let cache = ctx.root.join("wasm-cache");
    let artifacts = walk_files(&cache);
    ensure!(!artifacts.is_empty(), "no artifact in {}", cache.display());
    let out = ctx.run_rm(&["wasm-app:1"])?.ok()?;
    ensure!(out.stdout == "hello from wasm\n", "{out}");
    Ok(())
}

/// Every file below `dir` (none if it does not exist).
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A tree as the differential compares it: path → kind, mode, owner, and content or target.
fn tree(root: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    use std::os::unix::fs::MetadataExt;
    // What each tool puts in a container's view but not in the image's content.
    const SKIP: [&str; 7] = [
        "dev",
        "proc",
        "sys",
        "run",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ];
    fn walk(
        root: &Path,
        rel: &str,
        out: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let dir = root.join(rel);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .with_context(|| format!("read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        for name in names {
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if SKIP.contains(&child.as_str()) {
                continue;
            }
            let p = root.join(&child);
            let m = std::fs::symlink_metadata(&p)?;
            let head = format!("{:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
            if m.file_type().is_symlink() {
                out.insert(child, format!("l -> {}", std::fs::read_link(&p)?.display()));
            } else if m.is_dir() {
                out.insert(child.clone(), format!("d {head}"));
                walk(root, &child, out)?;
            } else {
                out.insert(
                    child,
                    format!("f {head} {}", capsa_tests::engine::sha256_file(&p)?),
                );
            }
        }
        Ok(())
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

#[test]
fn build_matches_buildah_on_the_same_dockerfile() -> Result<()> {
    let ctx = EngineContext::new("build-buildah")?;
    if which("buildah").is_none() {
        anyhow::bail!("buildah is missing: scripts/install-deps.sh installs it");
    }
    ctx.import_busybox("localhost/bb:1")?;
    let archive = ctx.dir().join("bb-save.tar");
    ctx.capsa(&["save", "-o", &archive.to_string_lossy(), "localhost/bb:1"])?
        .ok()?;
    let dir = context(
        &ctx,
        "ctx",
        &[
            ("a.txt", "alpha\n"),
            ("tree/x/y.txt", "why\n"),
            ("tree/z", "zed\n"),
            (
                "Dockerfile",
                "FROM localhost/bb:1 AS first\nRUN mkdir -p /out && echo first > /out/f && chmod 0600 /out/f\n\nFROM localhost/bb:1\nARG V=7\nENV A=1 B=\"two words\"\nWORKDIR /app\nCOPY --chown=1:2 --chmod=0640 a.txt sub/\nCOPY tree /app/tree/\nCOPY --from=first /out/f /from-first\nRUN mkdir -p /data/x && echo made-$V > /data/x/f && chmod 0700 /data/x && ln -s /data/x/f /app/link && rm /bin/cat\nUSER 1000:1000\nEXPOSE 8080/tcp 53/udp\nVOLUME /data\nLABEL k=v other=\"a b\"\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"echo hi\"]\n",
            ),
        ],
    )?;
    build(&ctx, &dir, &["-t", "localhost/out:1"])?.ok()?;

    // buildah: its own store in the test's dir, chroot isolation, the same base image.
    let broot = ctx.dir().join("buildah");
    let buildah = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("buildah")
            .arg("--root")
            .arg(broot.join("root"))
            .arg("--runroot")
            .arg(broot.join("run"))
            .args(["--storage-driver", "overlay"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .context("run buildah")?;
        ensure!(
            out.status.success(),
            "buildah {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let result = (|| -> Result<()> {
        buildah(&[
            "pull",
            "-q",
            &format!("docker-archive:{}", archive.display()),
        ])?;
        let d = dir.to_string_lossy().into_owned();
        buildah(&[
            "bud",
            "--layers",
            "--isolation",
            "chroot",
            "--pull-never",
            "-q",
            "-t",
            "localhost/out:1",
            &d,
        ])?;
        buildah(&["from", "--name", "capsa-test-cmp", "localhost/out:1"])?;
        let mounted = buildah(&["mount", "capsa-test-cmp"])?;
        let theirs = tree(Path::new(mounted.trim()))?;

        // capsa's: the image's rootfs as `export` of a container of it gives it.
        let created = ctx
            .create(&["--network", "none", "localhost/out:1"])?
            .ok()?;
        let id = created.stdout.trim().to_owned();
        let export = ctx.dir().join("export.tar");
        ctx.capsa(&["export", "-o", &export.to_string_lossy(), &id])?
            .ok()?;
        let unpacked = ctx.dir().join("capsa-tree");
        std::fs::create_dir_all(&unpacked)?;
        let status = std::process::Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&export)
            .arg("-C")
            .arg(&unpacked)
            .status()?;
        ensure!(status.success(), "tar -x of the export");
        ctx.capsa(&["rm", &id])?.ok()?;
        let ours = tree(&unpacked)?;
        let mut differences = Vec::new();
        for (path, desc) in &theirs {
            match ours.get(path) {
                Some(o) if o == desc => {}
                Some(o) => differences.push(format!("{path}: capsa {o}, buildah {desc}")),
                None => differences.push(format!("{path}: only buildah has it ({desc})")),
            }
        }
        for (path, desc) in &ours {
            if !theirs.contains_key(path) {
                differences.push(format!("{path}: only capsa has it ({desc})"));
            }
        }
        // One known difference, Docker's side taken: buildah 1.28 makes a WORKDIR only when a
        // later step needs it, owned as that step's files (here COPY --chown=1:2); Docker's
        // classic builder (and BuildKit) make it at WORKDIR, root's.
        let known = "app: capsa d 755 0:0, buildah d 755 1:2";
        differences.retain(|d| d != known);
        ensure!(
            differences.is_empty(),
            "the rootfs trees differ:\n{}",
            differences.join("\n")
        );

        // The configs: the fields a container is made from.
        let theirs: Value = serde_json::from_str(&buildah(&[
            "inspect",
            "--type",
            "image",
            "localhost/out:1",
        ])?)?;
        let mut theirs = theirs["OCIv1"]["config"].clone();
        // buildah labels what it builds with its version.
        if let Some(labels) = theirs["Labels"].as_object_mut() {
            labels.remove("io.buildah.version");
        }
        let theirs = &theirs;
        let ours = inspect(&ctx, "localhost/out:1")?;
        let ours = &ours["Config"];
        for (our_key, their_key) in [
            ("Cmd", "Cmd"),
            ("Entrypoint", "Entrypoint"),
            ("WorkingDir", "WorkingDir"),
            ("User", "User"),
            ("ExposedPorts", "ExposedPorts"),
            ("Volumes", "Volumes"),
            ("Labels", "Labels"),
        ] {
            ensure!(
                ours[our_key] == theirs[their_key],
                "{our_key}: capsa {} buildah {}",
                ours[our_key],
                theirs[their_key]
            );
        }
        let env = |v: &Value| -> Vec<String> {
            let mut e: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            e.sort();
            e
        };
        ensure!(
            env(&ours["Env"]) == env(&theirs["Env"]),
            "Env: capsa {:?} buildah {:?}",
            env(&ours["Env"]),
            env(&theirs["Env"])
        );
        Ok(())
    })();
    let _ = buildah(&["umount", "capsa-test-cmp"]);
    let _ = buildah(&["rm", "capsa-test-cmp"]);
    let _ = buildah(&["rmi", "--all", "--force"]);
    // buildah's overlay mounts live under its root: none may outlive the test.
    for m in capsa_tests::cleanup::mounts_below(&broot) {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    result
}

/// The path of a program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

#[test]
fn interrupted_build_kills_its_step_and_leaves_no_container() -> Result<()> {
    let ctx = EngineContext::new("build-cancel")?;
    base(&ctx)?;
    let dir = context(
        &ctx,
        "ctx",
        &[("Dockerfile", "FROM bb:1\nRUN echo started && sleep 60\n")],
    )?;
    let log = ctx.dir().join("build.out");
    let mut child = ctx
        .command(&["build", "-t", "never:1", &dir.to_string_lossy()])
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(&log)?.contains("started") {
        ensure!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = child.wait()?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the build stopped soon after SIGINT"
    );
    ensure!(status.code() == Some(130), "exit code: {status:?}");
    let ps = ctx.capsa(&["ps", "-aq"])?.ok()?;
    ensure!(ps.stdout.trim().is_empty(), "no step container left: {ps}");
    ensure!(!ctx.capsa(&["image", "inspect", "never:1"])?.success());
    Ok(())
}

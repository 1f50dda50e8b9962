//! `POST /build` and `POST /build/prune` of capsad (Docker's classic builder) driven by the
//! clients that speak them: the docker CLI (28.x, legacy builder), docker-compose 1.29,
//! docker-py, curl and `capsa -H`. Every test has a daemon of its own and checks what the
//! built image does: `docker run` of it, `docker image inspect`, `docker history`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use capsa_tests::daemon::{COMMAND_TIMEOUT, Daemon, run_captured};
use capsa_tests::runtime::CmdOutput;
use serde_json::Value;

/// A context directory `name` under the test's dir with `files` (path, content).
fn context(d: &Daemon, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    let dir = d.dir().join(name);
    std::fs::create_dir_all(&dir)?;
    for (path, content) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
    }
    Ok(dir)
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `docker image inspect NAME`'s one object.
fn inspect(d: &Daemon, name: &str) -> Result<Value> {
    let out = d.docker(&["image", "inspect", name])?.ok()?;
    Ok(out.json()?[0].clone())
}

/// The full id (`sha256:…`) of an image.
fn image_id(d: &Daemon, name: &str) -> Result<String> {
    Ok(d.docker(&["image", "inspect", "-f", "{{.Id}}", name])?
        .ok()?
        .stdout
        .trim()
        .to_owned())
}

/// How many steps the log says came from the cache.
fn cached_steps(out: &CmdOutput) -> usize {
    out.stdout.matches("---> Using cache").count()
}

/// The short id of `Successfully built ID`.
fn built_id(out: &CmdOutput) -> Option<&str> {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .map(str::trim)
}

/// `docker run --rm --network none IMAGE [ARGS]`'s stdout, which must succeed.
fn run_image(d: &Daemon, image: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["run", "--rm", "--network", "none", image];
    all.extend_from_slice(args);
    Ok(d.docker(&all)?.ok()?.stdout)
}

/// That no container is left and `tag` names no image.
fn nothing_left(d: &Daemon, tag: &str) -> Result<()> {
    let ps = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(ps.stdout.is_empty(), "a build container is left: {ps}");
    let missing = d.docker(&["image", "inspect", tag])?;
    ensure!(
        !missing.success() && missing.stderr.contains("No such image"),
        "a failed build tagged {tag}: {missing}"
    );
    Ok(())
}

const APP_DOCKERFILE: &str = r#"FROM bb:1
ARG GREETING=hello
ENV APP_HOME=/app MODE=prod
WORKDIR $APP_HOME
COPY greet.txt ./
RUN echo "$GREETING from run" > made.txt
LABEL org.example.role=test
EXPOSE 8080/tcp
CMD ["sh", "-c", "cat greet.txt made.txt; echo mode=$MODE; pwd"]
"#;

#[test]
fn docker_build_legacy_builder_makes_a_runnable_image_and_caches_it() -> Result<()> {
    let d = Daemon::start("bd-basic")?;
    d.load_busybox("bb:1")?;
    let ctx = context(
        &d,
        "app",
        &[
            ("Dockerfile", APP_DOCKERFILE),
            ("greet.txt", "from-the-context\n"),
        ],
    )?;
    let ctx_arg = path_arg(&ctx);
    // DOCKER_BUILDKIT=0 (the harness's default for every docker command).
    let first = d.docker(&["build", "-t", "x:1", &ctx_arg])?.ok()?;
    ensure!(first.stdout.contains("Step 1/9 : FROM bb:1\n"), "{first}");
    ensure!(
        first
            .stdout
            .contains("Step 6/9 : RUN echo \"$GREETING from run\" > made.txt\n")
            && first.stdout.contains("Step 9/9 : CMD"),
        "{first}"
    );
    ensure!(
        first.stdout.contains("Successfully tagged x:1\n"),
        "{first}"
    );
    ensure!(cached_steps(&first) == 0, "{first}");
    let id = image_id(&d, "x:1")?;
    let short = built_id(&first).context("no `Successfully built`")?;
    ensure!(
        id.strip_prefix("sha256:")
            .is_some_and(|h| h.starts_with(short))
            && short.len() == 12,
        "built {short}, inspect says {id}"
    );

    let ran = run_image(&d, "x:1", &[])?;
    ensure!(
        ran == "from-the-context\nhello from run\nmode=prod\n/app\n",
        "{ran:?}"
    );

    let image = inspect(&d, "x:1")?;
    let config = &image["Config"];
    let env: Vec<&str> = config["Env"]
        .as_array()
        .context("Config.Env")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        env.contains(&"APP_HOME=/app")
            && env.contains(&"MODE=prod")
            && env.iter().any(|e| e.starts_with("PATH=")),
        "{env:?}"
    );
    ensure!(
        !env.iter().any(|e| e.starts_with("GREETING")),
        "an ARG is not in the image's Env: {env:?}"
    );
    ensure!(
        config["Cmd"]
            == serde_json::json!(["sh", "-c", "cat greet.txt made.txt; echo mode=$MODE; pwd"]),
        "{}",
        config["Cmd"]
    );
    ensure!(config["WorkingDir"] == "/app", "{}", config["WorkingDir"]);
    ensure!(
        config["ExposedPorts"] == serde_json::json!({"8080/tcp": {}}),
        "{}",
        config["ExposedPorts"]
    );
    ensure!(
        config["Labels"] == serde_json::json!({"org.example.role": "test"}),
        "{}",
        config["Labels"]
    );

    // The history: one entry per step over the base's, newest first, as the classic builder
    // writes them.
    let history = d
        .docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "x:1"])?
        .ok()?;
    let lines: Vec<&str> = history.stdout.lines().collect();
    let base = d
        .docker(&["history", "-q", "bb:1"])?
        .ok()?
        .stdout
        .lines()
        .count();
    ensure!(lines.len() == base + 8, "{history}");
    ensure!(
        lines[0].starts_with("/bin/sh -c #(nop)  CMD [\"sh\" \"-c\""),
        "{history}"
    );
    ensure!(
        lines[1] == "/bin/sh -c #(nop)  EXPOSE 8080/tcp",
        "{history}"
    );
    ensure!(
        lines[3] == "|1 GREETING=hello /bin/sh -c echo \"$GREETING from run\" > made.txt",
        "{history}"
    );
    ensure!(
        lines[4].starts_with("/bin/sh -c #(nop) COPY file:") && lines[4].ends_with(" in ./ "),
        "{history}"
    );

    // Again: every step but FROM from the cache, the same image.
    let second = d.docker(&["build", "-t", "x:1", &ctx_arg])?.ok()?;
    ensure!(cached_steps(&second) == 8, "{second}");
    ensure!(built_id(&second) == Some(short), "{second}");
    ensure!(image_id(&d, "x:1")? == id, "a cached build changed the id");

    // -q prints the id alone.
    let quiet = d.docker(&["build", "-q", &ctx_arg])?.ok()?;
    ensure!(quiet.stdout.trim() == id, "{quiet}");

    // Without DOCKER_BUILDKIT the CLI falls back to the legacy builder (no buildx, and the
    // daemon offers Builder-Version 1).
    let mut cmd = d.docker_command(&["build", "-t", "x:2", &ctx_arg]);
    cmd.env_remove("DOCKER_BUILDKIT");
    let plain = run_captured(
        cmd,
        "docker build (no DOCKER_BUILDKIT)",
        &d.dir().join("io"),
        COMMAND_TIMEOUT,
    )?
    .ok()?;
    ensure!(
        plain.stdout.contains("Step 1/9 : FROM bb:1")
            && plain.stdout.contains("Successfully tagged x:2"),
        "{plain}"
    );
    ensure!(image_id(&d, "x:2")? == id, "{plain}");
    let ps = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(ps.stdout.is_empty(), "a build container is left: {ps}");
    Ok(())
}

#[test]
fn docker_build_applies_dockerignore_with_exceptions() -> Result<()> {
    let d = Daemon::start("bd-ignore")?;
    d.load_busybox("bb:1")?;
    let ctx = context(
        &d,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM bb:1\nCOPY . /ctx/\nCMD [\"sh\", \"-c\", \"cd /ctx && find . | sort\"]\n",
            ),
            // `*.log` is of the top directory only; `**/*.tmp` of every one; the
            // .dockerignore itself goes to the daemon (which reads it) but not into the image.
            (
                ".dockerignore",
                "*.log\n!keep.log\nsecret/\n**/*.tmp\n.dockerignore\n",
            ),
            ("app.txt", "app\n"),
            ("debug.log", "noise\n"),
            ("keep.log", "kept\n"),
            ("secret/key", "hunter2\n"),
            ("docs/draft.log", "draft\n"),
            ("docs/x.tmp", "tmp\n"),
            ("y.tmp", "tmp\n"),
        ],
    )?;
    d.docker(&["build", "-t", "ign:1", &path_arg(&ctx)])?.ok()?;
    let listed = run_image(&d, "ign:1", &[])?;
    ensure!(
        listed == ".\n./Dockerfile\n./app.txt\n./docs\n./docs/draft.log\n./keep.log\n",
        "{listed}"
    );
    let kept = run_image(&d, "ign:1", &["cat", "/ctx/keep.log"])?;
    ensure!(kept == "kept\n", "{kept}");

    // COPY of an ignored file fails the build as with Docker.
    let bad = context(
        &d,
        "bad",
        &[
            ("Dockerfile", "FROM bb:1\nCOPY debug.log /\n"),
            (".dockerignore", "*.log\n"),
            ("debug.log", "noise\n"),
        ],
    )?;
    let out = d.docker(&["build", "-t", "ign:bad", &path_arg(&bad)])?;
    ensure!(
        !out.success() && (out.stdout + &out.stderr).contains("debug.log"),
        "COPY of an ignored file must fail"
    );
    nothing_left(&d, "ign:bad")
}

#[test]
fn docker_build_takes_the_dockerfile_or_the_whole_context_from_stdin() -> Result<()> {
    let d = Daemon::start("bd-stdin")?;
    d.load_busybox("bb:1")?;
    // -f -: the CLI sends the Dockerfile as `.dockerfile.<random>`, the last tar entry without
    // padding, and a .dockerignore naming it (and itself): neither lands in the image.
    let ctx = context(&d, "ctx", &[("a.txt", "from-a\n")])?;
    let dockerfile = d.dir().join("Dockerfile.stdin");
    std::fs::write(
        &dockerfile,
        "FROM bb:1\nCOPY . /ctx/\nCMD [\"sh\", \"-c\", \"ls -A /ctx; cat /ctx/a.txt\"]\n",
    )?;
    let out = d
        .docker_with_stdin(
            &["build", "-f", "-", "-t", "fromstdin:1", &path_arg(&ctx)],
            &dockerfile,
        )?
        .ok()?;
    ensure!(
        out.stdout.contains("Successfully tagged fromstdin:1"),
        "{out}"
    );
    let ran = run_image(&d, "fromstdin:1", &[])?;
    ensure!(ran == "a.txt\nfrom-a\n", "{ran:?}");

    // `-`: no context, the Dockerfile is all of it.
    let alone = d.dir().join("Dockerfile.alone");
    std::fs::write(
        &alone,
        "FROM bb:1\nRUN echo no-context > /n\nCMD [\"cat\", \"/n\"]\n",
    )?;
    let out = d
        .docker_with_stdin(&["build", "-t", "nocontext:1", "-"], &alone)?
        .ok()?;
    ensure!(
        out.stdout.contains("Step 2/3 : RUN echo no-context > /n")
            && out.stdout.contains("Successfully tagged nocontext:1"),
        "{out}"
    );
    let ran = run_image(&d, "nocontext:1", &[])?;
    ensure!(ran == "no-context\n", "{ran:?}");

    // `-` with a tar: the context on stdin.
    let tar = d.dir().join("ctx.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(context(
            &d,
            "tarred",
            &[
                (
                    "Dockerfile",
                    "FROM bb:1\nCOPY t.txt /\nCMD [\"cat\", \"/t.txt\"]\n",
                ),
                ("t.txt", "from-a-tar\n"),
            ],
        )?)
        .arg("-czf")
        .arg(&tar)
        .arg(".")
        .status()?;
    ensure!(st.success(), "tar failed");
    d.docker_with_stdin(&["build", "-t", "fromtar:1", "-"], &tar)?
        .ok()?;
    let ran = run_image(&d, "fromtar:1", &[])?;
    ensure!(ran == "from-a-tar\n", "{ran:?}");
    Ok(())
}

#[test]
fn docker_build_of_a_failing_run_exits_with_its_code_and_leaves_nothing() -> Result<()> {
    let d = Daemon::start("bd-fail")?;
    d.load_busybox("bb:1")?;
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            "FROM bb:1\nRUN echo before-the-failure\nRUN exit 3\nCMD [\"true\"]\n",
        )],
    )?;
    let out = d.docker(&["build", "-t", "bad:1", &path_arg(&ctx)])?;
    ensure!(
        out.code() == 3,
        "the legacy CLI exits with errorDetail.code: {out}"
    );
    ensure!(
        out.stdout.contains("before-the-failure") && out.stdout.contains("Step 3/4 : RUN exit 3"),
        "{out}"
    );
    ensure!(
        out.stderr
            .contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{out}"
    );
    ensure!(!out.stdout.contains("Successfully"), "{out}");
    nothing_left(&d, "bad:1")?;

    // A FROM of an image the store lacks (and no registry has): an error, nothing tagged.
    let ctx = context(
        &d,
        "nobase",
        &[("Dockerfile", "FROM capsa-test-no-such/base:1\nRUN true\n")],
    )?;
    let out = d.docker(&["build", "-t", "bad:2", &path_arg(&ctx)])?;
    ensure!(
        !out.success() && out.stderr.contains("capsa-test-no-such/base"),
        "{out}"
    );
    nothing_left(&d, "bad:2")
}

#[test]
fn post_build_rejects_bad_requests_and_survives_bad_dockerfiles() -> Result<()> {
    let mut d = Daemon::start("bd-http")?;
    d.load_busybox("bb:1")?;
    let (code, body) = d.curl("POST", "/build?version=2", None)?;
    ensure!(code == 400 && body.contains("BuildKit"), "{code} {body}");
    let (code, body) = d.curl("POST", "/build?remote=https://x", None)?;
    ensure!(code == 400 && body.contains("remote"), "{code} {body}");
    let (code, body) = d.curl("POST", "/build?buildargs=not-json", None)?;
    ensure!(code == 400 && body.contains("buildargs"), "{code} {body}");

    // A context whose Dockerfile has an unknown instruction: the error names line and word.
    let ctx = context(
        &d,
        "parse",
        &[("Dockerfile", "FROM bb:1\nFROBNICATE the-thing\n")],
    )?;
    let tar = d.dir().join("parse.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .arg("-cf")
        .arg(&tar)
        .arg("Dockerfile")
        .status()?;
    ensure!(st.success(), "tar failed");
    let data = format!("@{}", tar.display());
    let (code, body) = d.curl("POST", "/build?t=parse:1", Some(&data))?;
    let message = if code == 200 {
        // dockerd answers 400 here (the error comes before any output); a stream must carry
        // it as an `error` line.
        body.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v["error"].as_str().map(str::to_owned))
            .with_context(|| format!("no error line in the stream: {body}"))?
    } else {
        ensure!(code == 400, "{code} {body}");
        body.clone()
    };
    ensure!(
        message.contains("line 2") && message.to_lowercase().contains("frobnicate"),
        "{message}"
    );
    ensure!(!body.contains("\"aux\""), "{body}");

    // A body that is no tar, and an empty one.
    let junk = d.dir().join("junk.bin");
    std::fs::write(
        &junk,
        "this is not a tar archive, not at all, by any measure\n",
    )?;
    let (code, body) = d.curl(
        "POST",
        "/build?t=junk:1",
        Some(&format!("@{}", junk.display())),
    )?;
    ensure!(
        (code == 200 && body.contains("\"error\"")) || code == 400 || code == 500,
        "{code} {body}"
    );
    ensure!(!body.contains("\"aux\""), "{body}");
    let (code, body) = d.curl("POST", "/build?t=empty:1", None)?;
    ensure!(
        (code == 200 && body.contains("\"error\"")) || code == 400 || code == 500,
        "{code} {body}"
    );
    ensure!(!body.contains("\"aux\""), "{body}");

    ensure!(d.alive(), "capsad died: {}", d.log());
    let version = d.docker(&["version", "--format", "{{.Server.APIVersion}}"])?;
    ensure!(version.success(), "{version}");
    let images = d
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?
        .ok()?;
    ensure!(images.stdout.trim() == "bb:1", "{images}");
    Ok(())
}

const MULTI_STAGE: &str = r#"FROM bb:1 AS builder
ARG VERSION=0.0
RUN mkdir /out && echo "built $VERSION" > /out/artifact
FROM bb:1 AS runtime
COPY --from=builder /out/artifact /artifact
CMD ["cat", "/artifact"]
FROM runtime AS debug
RUN echo debug > /debug
CMD ["sh", "-c", "cat /artifact /debug"]
"#;

#[test]
fn docker_build_args_target_label_and_iidfile() -> Result<()> {
    let d = Daemon::start("bd-flags")?;
    d.load_busybox("bb:1")?;
    let ctx = context(&d, "ctx", &[("Dockerfile", MULTI_STAGE)])?;
    let iid = d.dir().join("iid");
    let out = d
        .docker(&[
            "build",
            "--build-arg",
            "VERSION=2.5",
            "--build-arg",
            "UNUSED=1",
            "--target",
            "runtime",
            "--label",
            "team=core",
            "--iidfile",
            &path_arg(&iid),
            "-t",
            "ms:1",
            &path_arg(&ctx),
        ])?
        .ok()?;
    // Only the stages up to the target count.
    ensure!(
        out.stdout.contains("Step 1/6 : FROM bb:1 AS builder")
            && out
                .stdout
                .contains("Step 6/6 : CMD [\"cat\", \"/artifact\"]")
            && !out.stdout.contains("debug"),
        "{out}"
    );
    ensure!(
        out.stdout
            .contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{out}"
    );
    let id = image_id(&d, "ms:1")?;
    let written = std::fs::read_to_string(&iid).context("the iidfile")?;
    ensure!(written.trim() == id, "iidfile {written:?}, image {id}");
    ensure!(
        run_image(&d, "ms:1", &[])? == "built 2.5\n",
        "the build arg"
    );
    let debug = d.docker(&["run", "--rm", "--network", "none", "ms:1", "ls", "/debug"])?;
    ensure!(
        debug.code() != 0,
        "a stage after the target was built: {debug}"
    );
    let image = inspect(&d, "ms:1")?;
    ensure!(
        image["Config"]["Labels"] == serde_json::json!({"team": "core"}),
        "{}",
        image["Config"]["Labels"]
    );

    // The last stage, by default: it builds on the runtime stage from the cache.
    let out = d
        .docker(&[
            "build",
            "--build-arg",
            "VERSION=2.5",
            "-t",
            "ms:debug",
            &path_arg(&ctx),
        ])?
        .ok()?;
    ensure!(out.stdout.contains("Step 9/9 :"), "{out}");
    ensure!(cached_steps(&out) >= 4, "{out}");
    ensure!(
        run_image(&d, "ms:debug", &[])? == "built 2.5\ndebug\n",
        "the debug stage"
    );
    // Another --build-arg value: the RUN using it misses the cache.
    let out = d
        .docker(&[
            "build",
            "--build-arg",
            "VERSION=3.0",
            "--target",
            "runtime",
            "-t",
            "ms:3",
            &path_arg(&ctx),
        ])?
        .ok()?;
    ensure!(run_image(&d, "ms:3", &[])? == "built 3.0\n", "{out}");
    ensure!(image_id(&d, "ms:3")? != id, "{out}");

    // A target no stage has.
    let out = d.docker(&[
        "build",
        "--target",
        "nope",
        "-t",
        "ms:nope",
        &path_arg(&ctx),
    ])?;
    ensure!(!out.success() && out.stderr.contains("nope"), "{out}");
    nothing_left(&d, "ms:nope")
}

#[test]
fn docker_builder_prune_empties_the_build_cache() -> Result<()> {
    let d = Daemon::start("bd-prune")?;
    d.load_busybox("bb:1")?;
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            "FROM bb:1\nRUN echo one > /one\nENV K=v\nRUN cat /one > /two\n",
        )],
    )?;
    let ctx_arg = path_arg(&ctx);
    d.docker(&["build", "-t", "p:1", &ctx_arg])?.ok()?;
    let cached = d.docker(&["build", "-t", "p:1", &ctx_arg])?.ok()?;
    ensure!(cached_steps(&cached) == 3, "{cached}");

    // The CLI's `builder prune` is a plain POST /build/prune, legacy builder or not.
    let pruned = d.docker(&["builder", "prune", "-f"])?.ok()?;
    ensure!(pruned.stdout.contains("Total reclaimed space"), "{pruned}");
    let after = d.docker(&["build", "-t", "p:1", &ctx_arg])?.ok()?;
    ensure!(
        cached_steps(&after) == 0,
        "a step came from a pruned cache: {after}"
    );
    ensure!(
        run_image(&d, "p:1", &["cat", "/two"])? == "one\n",
        "the rebuilt image"
    );

    // The endpoint itself, as dockerd answers it.
    let (code, body) = d.curl("POST", "/build/prune", None)?;
    ensure!(code == 200, "{code} {body}");
    let v: Value = serde_json::from_str(&body).with_context(|| body.clone())?;
    ensure!(
        v["CachesDeleted"].is_array() && v["SpaceReclaimed"].is_u64(),
        "{body}"
    );
    let again = d.docker(&["build", "-t", "p:1", &ctx_arg])?.ok()?;
    ensure!(cached_steps(&again) == 0, "{again}");
    // The tagged image survives a prune.
    run_image(&d, "p:1", &["cat", "/two"])?;
    Ok(())
}

#[test]
fn docker_compose_builds_a_service_and_runs_it() -> Result<()> {
    let d = Daemon::start("bd-compose")?;
    d.load_busybox("bb:1")?;
    context(
        &d,
        "proj/app",
        &[
            (
                "Dockerfile",
                "FROM bb:1\nARG FLAVOR=plain\nRUN echo \"flavor=$FLAVOR\" > /flavor\nCMD [\"cat\", \"/flavor\"]\n",
            ),
            (
                "Dockerfile.alt",
                "FROM bb:1\nCMD [\"echo\", \"alt-file\"]\n",
            ),
        ],
    )?;
    let file = d.dir().join("proj/compose.yml");
    std::fs::write(
        &file,
        r#"version: "3"
services:
  app:
    build:
      context: ./app
      args:
        FLAVOR: compose
      labels:
        via: compose
    image: composed:1
  alt:
    build:
      context: ./app
      dockerfile: Dockerfile.alt
    image: composed:alt
"#,
    )?;
    // docker-compose 1.29 builds through the docker CLI by default.
    let built = d.compose("bdcompose", &file, &["build"])?.ok()?;
    ensure!(
        built.stdout.contains("Successfully tagged composed:1")
            || built.stderr.contains("Successfully tagged composed:1"),
        "{built}"
    );
    ensure!(
        run_image(&d, "composed:1", &[])? == "flavor=compose\n",
        "{built}"
    );
    ensure!(
        run_image(&d, "composed:alt", &[])? == "alt-file\n",
        "{built}"
    );
    let image = inspect(&d, "composed:1")?;
    ensure!(
        image["Config"]["Labels"]["via"] == "compose",
        "{}",
        image["Config"]["Labels"]
    );

    // The image compose built runs (`docker run`: compose 1.29's own `run -T` output is a
    // matter of its attach, not of the build).
    let ran = d.docker(&["run", "--rm", "composed:1"])?.ok()?;
    ensure!(ran.stdout.contains("flavor=compose"), "{ran}");
    d.compose("bdcompose", &file, &["up", "-d", "app"])?.ok()?;
    let ps = d
        .docker(&["ps", "-a", "--format", "{{.Image}} {{.Names}}"])?
        .ok()?;
    ensure!(ps.stdout.contains("composed:1 bdcompose_app_1"), "{ps}");
    d.compose("bdcompose", &file, &["down"])?.ok()?;

    // COMPOSE_DOCKER_CLI_BUILD=0: compose builds through docker-py's POST /build itself.
    std::fs::write(
        d.dir().join("proj/app/Dockerfile"),
        "FROM bb:1\nARG FLAVOR=plain\nRUN echo \"native=$FLAVOR\" > /flavor\nCMD [\"cat\", \"/flavor\"]\n",
    )?;
    let mut cmd = std::process::Command::new("docker-compose");
    cmd.args(["-p", "bdcompose", "-f"])
        .arg(&file)
        .args(["build", "app"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir().join("docker-config"))
        .env("COMPOSE_DOCKER_CLI_BUILD", "0")
        .stdin(std::process::Stdio::null());
    let native = run_captured(
        cmd,
        "docker-compose build (docker-py)",
        &d.dir().join("io"),
        Duration::from_secs(90),
    )?
    .ok()?;
    ensure!(
        (native.stdout.clone() + &native.stderr).contains("Successfully tagged composed:1"),
        "{native}"
    );
    ensure!(
        run_image(&d, "composed:1", &[])? == "native=compose\n",
        "{native}"
    );
    d.compose("bdcompose", &file, &["down", "--rmi", "all"])?
        .ok()?;
    let ps = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(ps.stdout.is_empty(), "{ps}");
    let gone = d.docker(&["image", "inspect", "composed:1"])?;
    ensure!(!gone.success(), "down --rmi all left composed:1: {gone}");
    Ok(())
}

const DOCKER_PY_BUILD: &str = r#"
import sys, docker
client = docker.from_env()
image, logs = client.images.build(
    path=sys.argv[1], tag="py:1", buildargs={"WHO": "docker-py"}, labels={"via": "docker-py"}, rm=True
)
log = "".join(chunk.get("stream", "") for chunk in logs)
print("ID", image.id)
print("TAGS", ",".join(image.tags))
print("LOGOK", "Successfully built" in log and "Step 1/4 : FROM bb:1" in log)
try:
    client.images.build(path=sys.argv[2], tag="pybad:1")
    print("NOERROR")
except docker.errors.BuildError as e:
    print("BUILDERROR", e.msg)
"#;

#[test]
fn docker_py_builds_an_image() -> Result<()> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    ensure!(
        python.exists(),
        "{}: run scripts/install-deps.sh (it makes the docker-py venv)",
        python.display()
    );
    let d = Daemon::start("bd-py")?;
    d.load_busybox("bb:1")?;
    let good = context(
        &d,
        "good",
        &[
            (
                "Dockerfile",
                "FROM bb:1\nARG WHO=nobody\nRUN echo \"built by $WHO\" > /who\nCMD [\"cat\", \"/who\"]\n",
            ),
            (".dockerignore", "junk\n"),
            ("junk", "x\n"),
        ],
    )?;
    let bad = context(&d, "bad", &[("Dockerfile", "FROM bb:1\nRUN exit 5\n")])?;
    let mut cmd = std::process::Command::new(&python);
    cmd.args(["-c", DOCKER_PY_BUILD])
        .arg(&good)
        .arg(&bad)
        .env("DOCKER_HOST", d.host())
        .stdin(std::process::Stdio::null());
    let out = run_captured(
        cmd,
        "docker-py build",
        &d.dir().join("io"),
        Duration::from_secs(120),
    )?
    .ok()?;
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let id = image_id(&d, "py:1")?;
    ensure!(field("ID ") == id, "docker-py's id vs inspect {id}: {out}");
    ensure!(field("TAGS ") == "py:1", "{out}");
    ensure!(field("LOGOK ") == "True", "{out}");
    ensure!(
        field("BUILDERROR ")
            .contains("The command '/bin/sh -c exit 5' returned a non-zero code: 5"),
        "{out}"
    );
    ensure!(
        run_image(&d, "py:1", &[])? == "built by docker-py\n",
        "{out}"
    );
    ensure!(
        inspect(&d, "py:1")?["Config"]["Labels"]["via"] == "docker-py",
        "{out}"
    );
    nothing_left(&d, "pybad:1")
}

#[test]
fn capsa_cli_builds_through_the_daemon() -> Result<()> {
    let d = Daemon::start("bd-capsa")?;
    d.load_busybox("bb:1")?;
    let ctx = context(
        &d,
        "ctx",
        &[
            ("Dockerfile", APP_DOCKERFILE),
            ("greet.txt", "via-capsa\n"),
            (".dockerignore", "*.bak\n"),
            ("old.bak", "x\n"),
        ],
    )?;
    let ctx_arg = path_arg(&ctx);
    let out = d
        .capsa_remote(&["build", "--build-arg", "GREETING=hi", "-t", "r:1", &ctx_arg])?
        .ok()?;
    ensure!(
        out.stdout.contains("Step 1/9 : FROM bb:1")
            && out.stdout.contains("Successfully tagged r:1"),
        "{out}"
    );
    // The docker CLI sees what capsa built through the daemon.
    let ran = run_image(&d, "r:1", &[])?;
    ensure!(
        ran == "via-capsa\nhi from run\nmode=prod\n/app\n",
        "{ran:?}"
    );
    let listed = run_image(&d, "r:1", &["ls", "-A", "/app"])?;
    ensure!(listed == "greet.txt\nmade.txt\n", "{listed:?}");
    // And the cache the daemon keeps serves the next build, whichever client.
    let again = d
        .docker(&["build", "--build-arg", "GREETING=hi", "-t", "r:2", &ctx_arg])?
        .ok()?;
    ensure!(cached_steps(&again) == 8, "{again}");
    ensure!(image_id(&d, "r:2")? == image_id(&d, "r:1")?, "{again}");

    // A -f Dockerfile outside the context.
    let outside = d.dir().join("Dockerfile.outside");
    std::fs::write(
        &outside,
        "FROM bb:1\nCOPY greet.txt /g\nCMD [\"cat\", \"/g\"]\n",
    )?;
    d.capsa_remote(&["build", "-f", &path_arg(&outside), "-t", "r:out", &ctx_arg])?
        .ok()?;
    ensure!(run_image(&d, "r:out", &[])? == "via-capsa\n", "-f outside");

    // A failing RUN: its code is capsa's.
    let bad = context(&d, "bad", &[("Dockerfile", "FROM bb:1\nRUN exit 3\n")])?;
    let out = d.capsa_remote(&["build", "-t", "r:bad", &path_arg(&bad)])?;
    ensure!(out.code() == 3, "{out}");
    ensure!(
        out.stderr
            .contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{out}"
    );
    nothing_left(&d, "r:bad")?;

    let pruned = d.capsa_remote(&["builder", "prune", "-f"])?.ok()?;
    let after = d
        .capsa_remote(&["build", "--build-arg", "GREETING=hi", "-t", "r:1", &ctx_arg])?
        .ok()?;
    ensure!(cached_steps(&after) == 0, "{pruned}\n{after}");
    Ok(())
}

//! Registries as users configure them: a token server in front of docker-registry (Docker's
//! bearer-token flow end to end), Docker Hub mirrors with fallback to the origin, credential
//! helpers, and the engine's configuration file (capsa CLI and capsad).
//!
//! Docker Hub itself is never reached: a second docker-registry stands in for it through
//! `CAPSA_TEST_DOCKER_HUB_API` (test-only), and every server is on 127.0.0.1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use capsa_tests::engine::EngineContext;
use capsa_tests::registry::Registry;
use capsa_tests::token_server::TokenServer;
use serde_json::Value;

/// Token requests made since `before` of them were logged.
fn requests_since(tokens: &TokenServer, before: usize) -> Result<Vec<Value>> {
    Ok(tokens.requests()?.into_iter().skip(before).collect())
}

fn auth_file(ctx: &EngineContext) -> String {
    fs::read_to_string(ctx.root.join("auth.json")).unwrap_or_default()
}

#[test]
fn bearer_tokens_from_a_token_server_end_to_end() -> Result<()> {
    let tokens = TokenServer::start(
        &[("alice", "alice-secret")],
        &[("capsa-test/private", &["alice"])],
    )?;
    let registry = Registry::start_with_token_auth(&tokens)?;
    let host = registry.host();
    let public = format!("{host}/capsa-test/public:1");
    let private = format!("{host}/capsa-test/private:1");
    let ctx = EngineContext::new("reg-token")?;
    ctx.import_busybox("bb:1")?;

    // Anonymous: the token server grants pull only, so the push is refused, clearly.
    let refused = ctx.capsa(&["push", "-q", "bb:1", &public])?;
    ensure!(
        refused.code() != 0 && refused.stderr.contains("authentication required"),
        "{refused}"
    );
    // A wrong password: refused with the token server's word, nothing stored.
    let wrong = ctx.capsa(&["login", "-u", "alice", "-p", "wrong", &host])?;
    ensure!(
        wrong.code() != 0
            && wrong.stderr.contains("login refused")
            && wrong.stderr.contains("wrong user name or password"),
        "{wrong}"
    );
    ensure!(!auth_file(&ctx).contains(&host), "{}", auth_file(&ctx));

    // Login asks for a refresh token (offline_token), and keeps it instead of the password.
    let before = tokens.requests()?.len();
    ctx.capsa(&["login", "-u", "alice", "-p", "alice-secret", &host])?
        .ok()?;
    let login = requests_since(&tokens, before)?;
    ensure!(
        login.len() == 1 && login[0]["grant"] == "basic" && login[0]["user"] == "alice",
        "{login:?}"
    );
    let stored = auth_file(&ctx);
    // base64("alice:alice-secret"), what a stored password would look like.
    let basic = "YWxpY2U6YWxpY2Utc2VjcmV0";
    ensure!(
        stored.contains("identitytoken") && !stored.contains(basic),
        "the identity token, not the password, is stored: {stored}"
    );

    // Pushes need a push scope: granted to alice through the refresh grant (POST), never the
    // password again.
    let before = tokens.requests()?.len();
    ctx.capsa(&["push", "-q", "bb:1", &private])?.ok()?;
    ctx.capsa(&["push", "-q", "bb:1", &public])?.ok()?;
    let pushes = requests_since(&tokens, before)?;
    ensure!(
        !pushes.is_empty()
            && pushes
                .iter()
                .all(|r| r["grant"] == "refresh_token" && r["user"] == "alice"),
        "{pushes:?}"
    );
    ensure!(
        pushes
            .iter()
            .any(|r| r["scopes"].as_array().is_some_and(|s| s
                .iter()
                .any(|s| s == "repository:capsa-test/private:pull,push"))),
        "no token asked for the push scope: {pushes:?}"
    );

    // Another store, signed out: the public image pulls anonymously with one token for every
    // request of the pull (manifest, config, layer); the private one is refused.
    let other = EngineContext::new("reg-token-other")?;
    let before = tokens.requests()?.len();
    other.capsa(&["pull", "-q", &public])?.ok()?;
    let pull = requests_since(&tokens, before)?;
    ensure!(
        pull.len() == 1 && pull[0]["grant"] == "anonymous",
        "one anonymous token for the whole pull: {pull:?}"
    );
    let denied = other.capsa(&["pull", "-q", &private])?;
    ensure!(
        denied.code() != 0 && denied.stderr.contains("authentication required"),
        "{denied}"
    );
    ensure!(
        !other.capsa(&["images"])?.ok()?.stdout.contains("private"),
        "a refused pull left an image"
    );

    // Signed in, with the next token already expired on arrival: the registry refuses it and
    // the client asks once more.
    other
        .capsa(&["login", "-u", "alice", "-p", "alice-secret", &host])?
        .ok()?;
    tokens.expire_next()?;
    let before = tokens.requests()?.len();
    other.capsa(&["pull", "-q", &private])?.ok()?;
    let renewed = requests_since(&tokens, before)?;
    ensure!(
        renewed.len() == 2,
        "expired token renewed once: {renewed:?}"
    );
    let out = other.run_rm(&[&private, "echo", "private"])?.ok()?;
    ensure!(out.stdout == "private\n", "{out}");

    // A push to another repository of the registry mounts the blobs from where the image came
    // from: one token for both scopes (push here, pull there).
    let copy = format!("{host}/capsa-test/copy:1");
    let before = tokens.requests()?.len();
    let pushed = other.capsa(&["push", &private, &copy])?.ok()?;
    ensure!(pushed.stderr.contains("mounted"), "{pushed}");
    let mount = requests_since(&tokens, before)?;
    ensure!(
        mount.iter().any(|r| {
            let scopes = r["scopes"].as_array().cloned().unwrap_or_default();
            scopes
                .iter()
                .any(|s| s == "repository:capsa-test/copy:pull,push")
                && scopes
                    .iter()
                    .any(|s| s == "repository:capsa-test/private:pull")
        }),
        "no token asked for both scopes: {mount:?}"
    );

    // The docker CLI through capsad: `POST /auth` hands the CLI the identity token, which it
    // keeps and sends back in X-Registry-Auth; capsad's pull then uses the refresh grant.
    let daemon = capsa_tests::daemon::Daemon::start("reg-token-daemon")?;
    daemon
        .docker(&["login", "-u", "alice", "-p", "alice-secret", &host])?
        .ok()?;
    let kept = fs::read_to_string(daemon.dir().join("docker-config/config.json"))?;
    ensure!(kept.contains("identitytoken"), "{kept}");
    let before = tokens.requests()?.len();
    daemon.docker(&["pull", &private])?.ok()?;
    let pull = requests_since(&tokens, before)?;
    ensure!(
        !pull.is_empty() && pull.iter().all(|r| r["grant"] == "refresh_token"),
        "{pull:?}"
    );
    drop(daemon);

    // Logged out: the identity token is forgotten and the private image refused again.
    other.capsa(&["logout", &host])?.ok()?;
    ensure!(!auth_file(&other).contains("identitytoken"));
    other.capsa(&["rmi", &private])?.ok()?;
    let denied = other.capsa(&["pull", "-q", &private])?;
    ensure!(
        denied.code() != 0 && denied.stderr.contains("authentication required"),
        "{denied}"
    );
    Ok(())
}

/// The files of `registry`'s blobs, largest first (the layer before the config).
fn stored_blobs(registry: &Registry) -> Result<Vec<PathBuf>> {
    let mut blobs = Vec::new();
    let root = registry.storage().join("docker/registry/v2/blobs/sha256");
    for prefix in fs::read_dir(&root).with_context(|| format!("{}", root.display()))? {
        for blob in fs::read_dir(prefix?.path())? {
            let data = blob?.path().join("data");
            if data.is_file() {
                blobs.push(data);
            }
        }
    }
    blobs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).map_or(0, |m| m.len())));
    Ok(blobs)
}

fn write_config(dir: &Path, name: &str, json: &str) -> Result<String> {
    let path = dir.join(name);
    fs::write(&path, json)?;
    Ok(path.to_string_lossy().into_owned())
}

#[test]
fn docker_hub_mirrors_are_tried_first_and_fall_back_to_the_origin() -> Result<()> {
    let origin = Registry::start()?;
    let mut mirror = Some(Registry::start()?);
    let mirror_host = mirror.as_ref().context("mirror")?.host();
    let seed = EngineContext::new("reg-mirror-seed")?;
    seed.import_busybox("bb:1")?;
    for tag in ["1", "mirror-only"] {
        seed.capsa(&[
            "push",
            "-q",
            "bb:1",
            &format!("{mirror_host}/library/bb:{tag}"),
        ])?
        .ok()?;
    }
    for tag in ["1", "origin-only"] {
        seed.capsa(&[
            "push",
            "-q",
            "bb:1",
            &format!("{}/library/bb:{tag}", origin.host()),
        ])?
        .ok()?;
    }
    let config = write_config(
        seed.dir(),
        "daemon.json",
        &format!(r#"{{"registry-mirrors": ["http://{mirror_host}/"]}}"#),
    )?;
    let puller = |label: &str| -> Result<EngineContext> {
        let mut ctx = EngineContext::new(label)?;
        ctx.env.push((
            "CAPSA_TEST_DOCKER_HUB_API".to_owned(),
            origin.host().to_owned(),
        ));
        ctx.env
            .push(("CAPSA_CONFIG_FILE".to_owned(), config.clone()));
        Ok(ctx)
    };
    let from_mirror = format!("from mirror http://{mirror_host}");

    // Served by the mirror; `info` shows it.
    let ctx = puller("reg-mirror-1")?;
    let pulled = ctx.capsa(&["pull", "bb:1"])?.ok()?;
    ensure!(pulled.stderr.contains(&from_mirror), "{pulled}");
    let out = ctx.run_rm(&["bb:1", "echo", "mirrored"])?.ok()?;
    ensure!(out.stdout == "mirrored\n", "{out}");
    let info = ctx
        .capsa(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"])?
        .ok()?;
    ensure!(
        info.stdout.contains(&format!("http://{mirror_host}/")),
        "{info}"
    );

    // What the mirror lacks (404) comes from the origin.
    let pulled = ctx.capsa(&["pull", "bb:origin-only"])?.ok()?;
    ensure!(
        !pulled.stderr.contains(&from_mirror)
            && pulled.stderr.contains("trying the next source")
            && pulled
                .stderr
                .contains("pulled docker.io/library/bb:origin-only"),
        "{pulled}"
    );

    // The daemon reads the same file: through the docker CLI, an image only the mirror has and
    // one only the origin has both pull.
    let daemon = capsa_tests::daemon::Daemon::start_with_env(
        "reg-mirror-daemon",
        &["--config-file", &config],
        &[("CAPSA_TEST_DOCKER_HUB_API", &origin.host())],
    )?;
    for tag in ["mirror-only", "origin-only"] {
        let pulled = daemon.docker(&["pull", &format!("bb:{tag}")])?.ok()?;
        ensure!(
            pulled
                .stdout
                .contains(&format!("docker.io/library/bb:{tag}")),
            "{pulled}"
        );
    }
    let out = daemon
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:mirror-only",
            "echo",
            "via capsad",
        ])?
        .ok()?;
    ensure!(out.stdout == "via capsad\n", "{out}");
    drop(daemon);

    // A mirror serving a tampered layer: refused by digest, fetched from the origin.
    let layer = stored_blobs(mirror.as_ref().context("mirror")?)?
        .into_iter()
        .next()
        .context("the mirror stores blobs")?;
    let mut bytes = fs::read(&layer)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&layer, &bytes)?;
    let ctx = puller("reg-mirror-2")?;
    let pulled = ctx.capsa(&["pull", "bb:1"])?.ok()?;
    ensure!(
        pulled.stderr.contains("hashes to")
            && !pulled.stderr.contains(&from_mirror)
            && pulled.stderr.contains("pulled docker.io/library/bb:1"),
        "{pulled}"
    );
    let out = ctx.run_rm(&["bb:1", "echo", "verified"])?.ok()?;
    ensure!(out.stdout == "verified\n", "{out}");

    // The mirror stopped: the origin serves.
    drop(mirror.take());
    let ctx = puller("reg-mirror-3")?;
    let pulled = ctx.capsa(&["pull", "bb:1"])?.ok()?;
    ensure!(
        pulled.stderr.contains("cannot connect") && !pulled.stderr.contains(&from_mirror),
        "{pulled}"
    );

    // An image of another registry never goes through the mirror.
    let ctx = puller("reg-mirror-4")?;
    let direct = format!("{}/library/bb:1", origin.host());
    let pulled = ctx.capsa(&["pull", &direct])?.ok()?;
    ensure!(!pulled.stderr.contains("mirror"), "{pulled}");
    Ok(())
}

/// A credential helper as Docker's protocol wants one, keeping its secrets in `store`.
const HELPER: &str = r#"#!/usr/bin/env python3
import json, os, sys
STORE = os.environ["CAPSA_TEST_HELPER_STORE"]
action = sys.argv[1]
data = sys.stdin.read()
db = json.load(open(STORE)) if os.path.exists(STORE) else {}
if action == "store":
    m = json.loads(data)
    db[m["ServerURL"]] = {"Username": m["Username"], "Secret": m["Secret"]}
elif action == "get":
    server = data.strip()
    if server not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(dict(ServerURL=server, **db[server])))
elif action == "erase":
    server = data.strip()
    if server not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    del db[server]
else:
    print("unknown action " + action)
    sys.exit(1)
with open(STORE + ".tmp", "w") as f:
    json.dump(db, f)
os.rename(STORE + ".tmp", STORE)
"#;

#[test]
fn credential_helpers_keep_the_login() -> Result<()> {
    let registry = Registry::start_with_login("bob", "bob-secret")?;
    let host = registry.host();
    let image = format!("{host}/capsa-test/helper:1");
    let work = capsa_tests::registry::TempDir::new("reg-helper")?;
    let bin = work.join("bin");
    fs::create_dir(&bin)?;
    let helper = bin.join("docker-credential-capsatest");
    fs::write(&helper, HELPER)?;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755))?;
    let docker_config = work.join("docker");
    fs::create_dir(&docker_config)?;
    fs::write(
        docker_config.join("config.json"),
        r#"{"credsStore": "capsatest"}"#,
    )?;
    let helper_store = work.join("helper-store.json");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let with_helper = |label: &str| -> Result<EngineContext> {
        let mut ctx = EngineContext::new(label)?;
        ctx.env.push(("PATH".into(), path.clone()));
        ctx.env
            .push(("DOCKER_CONFIG".into(), docker_config.display().to_string()));
        ctx.env.push((
            "CAPSA_TEST_HELPER_STORE".into(),
            helper_store.display().to_string(),
        ));
        Ok(ctx)
    };

    // Login stores through the helper (Docker's credsStore): the secret is in no file of capsa's.
    let ctx = with_helper("reg-helper-1")?;
    ctx.import_busybox("bb:1")?;
    ctx.capsa(&["login", "-u", "bob", "-p", "bob-secret", &host])?
        .ok()?;
    let kept: Value = serde_json::from_str(&fs::read_to_string(&helper_store)?)?;
    ensure!(
        kept[&host]["Username"] == "bob" && kept[&host]["Secret"] == "bob-secret",
        "{kept}"
    );
    ensure!(!auth_file(&ctx).contains(&host), "{}", auth_file(&ctx));
    ctx.capsa(&["push", "-q", "bb:1", &image])?.ok()?;

    // Another store finds the credentials through the helper.
    let other = with_helper("reg-helper-2")?;
    other.capsa(&["pull", "-q", &image])?.ok()?;

    // Logout erases them from the helper; the pull is refused again.
    ctx.capsa(&["logout", &host])?.ok()?;
    let kept: Value = serde_json::from_str(&fs::read_to_string(&helper_store)?)?;
    ensure!(kept.get(&host).is_none(), "{kept}");
    let third = with_helper("reg-helper-3")?;
    let refused = third.capsa(&["pull", "-q", &image])?;
    ensure!(
        refused.code() != 0 && refused.stderr.contains("authentication required"),
        "{refused}"
    );

    // A helper that is not installed is named in the error (credHelpers, per registry).
    fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"credHelpers": {{"{host}": "capsatest-missing"}}}}"#),
    )?;
    let missing = third.capsa(&["pull", "-q", &image])?;
    ensure!(
        missing.code() != 0
            && missing
                .stderr
                .contains("docker-credential-capsatest-missing"),
        "{missing}"
    );
    Ok(())
}

/// Runs capsad with the configuration file `config` (and `--data-root` under `dir`), which must
/// refuse to start; returns its stderr.
fn capsad_refuses(dir: &Path, config: &str) -> Result<String> {
    let daemon = Command::new(capsa_tests::daemon::sibling_bin("capsad")?)
        .args(["--config-file", config, "-H"])
        .arg(format!("unix://{}/never.sock", dir.display()))
        .arg("--data-root")
        .arg(dir.join("never-root"))
        .arg("--exec-root")
        .arg(dir.join("never-state"))
        .output()?;
    let stderr = String::from_utf8_lossy(&daemon.stderr).into_owned();
    ensure!(
        !daemon.status.success(),
        "capsad started with {config}: {stderr}"
    );
    Ok(stderr)
}

#[test]
fn the_configuration_file_is_checked_and_shared_by_the_cli_and_the_daemon() -> Result<()> {
    let mut ctx = EngineContext::new("reg-config")?;
    let dir = ctx.dir().to_owned();
    // Bad files: a clear error naming the file and the key, nothing done.
    for (name, text, wanted) in [
        ("notjson.json", "{registry-mirrors", "not JSON"),
        (
            "unknown.json",
            r#"{"storage-driver": "vfs"}"#,
            "unknown field `storage-driver`",
        ),
        (
            "ftp.json",
            r#"{"registry-mirrors": ["ftp://mirror.example"]}"#,
            "registry-mirrors: invalid registry mirror \"ftp://mirror.example\"",
        ),
    ] {
        let path = write_config(&dir, name, text)?;
        let out = ctx.capsa(&["--config-file", &path, "images"])?;
        ensure!(
            out.code() != 0 && out.stderr.contains(&path) && out.stderr.contains(wanted),
            "{name}: {out}"
        );
        let stderr = capsad_refuses(&dir, &path)?;
        ensure!(stderr.contains(wanted), "capsad with {name}: {stderr}");
        ensure!(!dir.join("never-root").exists(), "capsad wrote a data root");
    }
    // A named file that does not exist is an error; a flag and the same key both set too.
    let missing = ctx.capsa(&["--config-file", "/nonexistent/capsa.json", "images"])?;
    ensure!(
        missing.code() != 0 && missing.stderr.contains("/nonexistent/capsa.json"),
        "{missing}"
    );
    let both = write_config(&dir, "both.json", r#"{"data-root": "/var/lib/elsewhere"}"#)?;
    let out = ctx.capsa(&["--config-file", &both, "images"])?;
    ensure!(
        out.code() != 0
            && out
                .stderr
                .contains("specified both as a flag and in the configuration file")
            && out.stderr.contains("data-root"),
        "{out}"
    );
    let stderr = capsad_refuses(&dir, &both)?;
    ensure!(
        stderr.contains("data-root: (from flag: ") && stderr.contains("/var/lib/elsewhere"),
        "{stderr}"
    );
    ensure!(!Path::new("/var/lib/elsewhere").exists());

    // A good file: the CLI's default ulimits and insecure registries, and the daemon's, through
    // the docker CLI.
    let good = write_config(
        &dir,
        "good.json",
        r#"{"registry-mirrors": ["https://mirror.example"],
            "insecure-registries": ["registry.example:5000"],
            "default-ulimits": {"nproc": {"Name": "nproc", "Soft": 321, "Hard": 654}},
            "live-restore": true}"#,
    )?;
    ctx.import_busybox("bb:1")?;
    // Named by the environment this time.
    ctx.env.push(("CAPSA_CONFIG_FILE".into(), good.clone()));
    let out = ctx
        .capsa(&["info", "--format", "{{json .RegistryConfig}}"])?
        .ok()?;
    ensure!(
        out.stdout.contains("https://mirror.example/")
            && out.stdout.contains("registry.example:5000"),
        "{out}"
    );
    let limits = ctx
        .run_rm(&["bb:1", "sh", "-c", "ulimit -u; ulimit -Hu"])?
        .ok()?;
    ensure!(limits.stdout == "321\n654\n", "{limits}");
    let own = ctx
        .run_rm(&["--ulimit", "nproc=100:200", "bb:1", "sh", "-c", "ulimit -u"])?
        .ok()?;
    ensure!(
        own.stdout == "100\n",
        "a container's own --ulimit wins: {own}"
    );

    let daemon =
        capsa_tests::daemon::Daemon::start_with("reg-config-daemon", &["--config-file", &good])?;
    let info = daemon
        .docker(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"])?
        .ok()?;
    ensure!(info.stdout.contains("https://mirror.example/"), "{info}");
    let info = daemon.docker(&["info"])?.ok()?;
    ensure!(
        info.stdout.contains("Registry Mirrors:") && info.stdout.contains("registry.example:5000"),
        "{info}"
    );
    Ok(())
}

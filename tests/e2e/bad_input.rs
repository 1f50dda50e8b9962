//! Invalid bundles and commands: the runtime exits non-zero, says what is wrong, and leaves
//! nothing behind (no state, cgroup, process or mount).

use anyhow::{Result, ensure};
use capsa_tests::bundle::Bundle;
use capsa_tests::context::{TestContext, path_str, skip};

/// `create`s the bundle as it is on disk; it must fail naming `keyword` (case-insensitive) and
/// leave nothing behind.
fn create_fails_naming(ctx: &TestContext, b: &Bundle, keyword: &str) -> Result<()> {
    let id = ctx.new_id();
    let out = ctx
        .rt(&["create", "--bundle", path_str(&b.dir)?, &id])?
        .failed()?;
    ensure!(
        out.stderr.to_lowercase().contains(&keyword.to_lowercase()),
        "stderr should name {keyword:?}: {out}"
    );
    ctx.assert_nothing_left(&id, b)
}

#[test]
fn malformed_config_json_is_rejected() -> Result<()> {
    let ctx = TestContext::new("bad-json")?;
    let b = ctx.bundle()?;
    std::fs::write(
        b.config_path(),
        "{ \"ociVersion\": \"1.0.2\", \"process\": ",
    )?;
    // The user needs to know which file is broken. runc 1.1 only says "unexpected EOF".
    let keyword = if ctx.runtime.is_runc() {
        "unexpected EOF"
    } else {
        "config.json"
    };
    create_fails_naming(&ctx, &b, keyword)
}

#[test]
fn missing_rootfs_is_rejected() -> Result<()> {
    let ctx = TestContext::new("no-rootfs")?;
    let mut b = ctx.bundle()?;
    b.spec
        .root_mut()
        .as_mut()
        .expect("root")
        .set_path("no-such-rootfs".into());
    b.write()?;
    create_fails_naming(&ctx, &b, "no-such-rootfs")
}

#[test]
fn unknown_namespace_type_is_rejected() -> Result<()> {
    let ctx = TestContext::new("bad-ns")?;
    let b = ctx.bundle()?;
    let mut json = b.to_json()?;
    json["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(serde_json::json!({ "type": "bogusns" }));
    b.write_json(&json)?;
    create_fails_naming(&ctx, &b, "bogusns")
}

#[test]
fn unknown_capability_is_rejected() -> Result<()> {
    let ctx = TestContext::new("bad-cap")?;
    if ctx.runtime.is_runc() {
        // config.md "capabilities": names MUST be valid; runtimes SHOULD error on unknown
        // ones. runc 1.1 only logs a warning and drops the capability.
        return skip(
            "unknown_capability_is_rejected",
            "runc 1.1 ignores unknown capabilities with a warning",
        );
    }
    let b = ctx.bundle()?;
    let mut json = b.to_json()?;
    json["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .expect("bounding")
        .push("CAP_BOGUS".into());
    b.write_json(&json)?;
    create_fails_naming(&ctx, &b, "CAP_BOGUS")
}

#[test]
fn empty_args_are_rejected() -> Result<()> {
    let ctx = TestContext::new("no-args")?;
    let mut b = ctx.bundle()?;
    b.process().set_args(Some(Vec::new()));
    b.write()?;
    create_fails_naming(&ctx, &b, "args")
}

#[test]
fn relative_cwd_is_rejected() -> Result<()> {
    let ctx = TestContext::new("rel-cwd")?;
    let mut b = ctx.bundle()?;
    b.process().set_cwd("relative/dir".into());
    b.write()?;
    create_fails_naming(&ctx, &b, "cwd")
}

#[test]
fn nonexistent_bundle_path_is_rejected() -> Result<()> {
    let ctx = TestContext::new("no-bundle")?;
    let b = ctx.bundle()?;
    let missing = ctx.dir().join("no-such-bundle");
    let id = ctx.new_id();
    let out = ctx
        .rt(&["create", "--bundle", path_str(&missing)?, &id])?
        .failed()?;
    ensure!(
        out.stderr.contains("no-such-bundle"),
        "stderr should name the bundle path: {out}"
    );
    ctx.assert_nothing_left(&id, &b)
}

#[test]
fn duplicate_container_id_is_rejected_and_the_first_survives() -> Result<()> {
    let ctx = TestContext::new("dup-id")?;
    let mut first = ctx.bundle()?;
    first.payload("sleep 1000");
    let (id, _) = ctx.create(&first, &[])?;
    let pid = ctx.pid_of(&id)?;

    let mut second = ctx.bundle()?;
    second.payload("echo second");
    second.write()?;
    let out = ctx
        .rt(&["create", "--bundle", path_str(&second.dir)?, &id])?
        .failed()?;
    ensure!(
        out.stderr.contains(&id) || out.stderr.to_lowercase().contains("exist"),
        "stderr should say the id is taken: {out}"
    );
    let state = ctx.state(&id)?;
    ensure!(
        state["status"] == "created" && state["pid"] == pid,
        "the first container is untouched: {state}"
    );
    let first_bundle = first.dir.canonicalize()?;
    ensure!(
        state["bundle"].as_str().map(std::path::Path::new) == Some(first_bundle.as_path()),
        "the first container keeps its bundle: {state}"
    );
    ensure!(
        capsa_tests::cleanup::cgroup_exists(&second.cgroup)?.is_empty(),
        "the rejected create made a cgroup"
    );
    Ok(())
}

#[test]
fn commands_on_an_unknown_container_fail_naming_it() -> Result<()> {
    let ctx = TestContext::new("unknown-id")?;
    for args in [
        vec!["state", "capsa-test-nope"],
        vec!["start", "capsa-test-nope"],
        vec!["kill", "capsa-test-nope", "KILL"],
        vec!["delete", "capsa-test-nope"],
        vec!["ps", "capsa-test-nope"],
    ] {
        let out = ctx.rt(&args)?.failed()?;
        ensure!(
            out.stderr.contains("capsa-test-nope")
                || out.stderr.to_lowercase().contains("not exist"),
            "stderr should say the container does not exist: {out}"
        );
    }
    Ok(())
}

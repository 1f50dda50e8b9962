//! User-namespace remapping (Docker's `userns-remap`) through `capsa run`: container root is an
//! unprivileged range of the host, the image's layers stay shared and keep their owners inside,
//! `--userns host` opts out, and what cannot hold is refused clearly.
//!
//! The subordinate id files are the test's own (`CAPSA_SUBID_DIR`, a test-only override of
//! /etc/subuid and /etc/subgid), so the host's users and ranges are never touched.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use anyhow::{Context, Result, ensure};
use capsa_tests::engine::EngineContext;

/// A range far from what hosts hand out, owned by a name that exists only in the test's files.
const START: u32 = 2_000_000_000;
const SIZE: u32 = 65536;
const USER: &str = "capsa-test-remap";

fn remapped(label: &str) -> Result<EngineContext> {
    let mut ctx = EngineContext::new(label)?;
    let ids = ctx.dir().join("subid");
    std::fs::create_dir(&ids)?;
    for file in ["subuid", "subgid"] {
        std::fs::write(
            ids.join(file),
            format!("someone-else:100000:65536\n{USER}:{START}:{SIZE}\n"),
        )?;
    }
    ctx.env
        .push(("CAPSA_SUBID_DIR".into(), ids.display().to_string()));
    ctx.env.push(("CAPSA_USERNS_REMAP".into(), USER.into()));
    Ok(ctx)
}

#[test]
fn userns_remap_makes_container_root_an_unprivileged_range() -> Result<()> {
    let ctx = remapped("userns-remap")?;
    ctx.import_busybox("bb:1")?;
    let data = ctx.dir().join("data");
    std::fs::create_dir(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777))?;
    let bind = format!("{}:/data", data.display());
    let out = ctx
        .run_rm(&[
            "-v",
            &bind,
            "bb:1",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map /proc/self/gid_map; stat -c '%u:%g %i' /bin/busybox; \
             touch /data/made-inside; echo written > /tmp/upper; cat /tmp/upper",
        ])?
        .ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(lines.first() == Some(&"0"), "root inside: {out}");
    let map: Vec<&str> = lines
        .get(1)
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    ensure!(
        map == ["0", &START.to_string(), &SIZE.to_string()],
        "uid_map is the range: {out}"
    );
    let gid_map: Vec<&str> = lines
        .get(2)
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    ensure!(gid_map == map, "gid_map too: {out}");
    let owner_and_inode = lines.get(3).context("stat line")?;
    ensure!(
        owner_and_inode.starts_with("0:0 "),
        "the image's files keep their owners inside: {out}"
    );
    ensure!(
        lines.get(4) == Some(&"written"),
        "the upper layer is writable: {out}"
    );
    let made = std::fs::metadata(data.join("made-inside"))?;
    ensure!(
        made.uid() == START && made.gid() == START,
        "the host sees the remapped owner: {}:{}",
        made.uid(),
        made.gid()
    );
    // A second container shares the image's layer: the same inode, no copy per mapping.
    let again = ctx
        .run_rm(&["bb:1", "stat", "-c", "%u:%g %i", "/bin/busybox"])?
        .ok()?;
    ensure!(
        again.stdout.trim() == *owner_and_inode,
        "same owners and inode: {again} vs {owner_and_inode}"
    );
    // --userns host opts out: the host's root.
    let host = ctx
        .run_rm(&["--userns", "host", "bb:1", "cat", "/proc/self/uid_map"])?
        .ok()?;
    let host_map: Vec<&str> = host.stdout.split_whitespace().collect();
    ensure!(host_map == ["0", "0", "4294967295"], "{host}");
    // exec joins the container's user namespace.
    ctx.run(&[
        "-d",
        "--name",
        "capsa-test-remapped",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "60",
    ])?
    .ok()?;
    let exec = ctx
        .capsa(&[
            "exec",
            "capsa-test-remapped",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map",
        ])?
        .ok()?;
    ensure!(
        exec.stdout.starts_with("0\n") && exec.stdout.contains(&START.to_string()),
        "{exec}"
    );
    let inspect = ctx
        .capsa(&[
            "inspect",
            "-f",
            "{{.HostConfig.UsernsMode}}",
            "capsa-test-remapped",
        ])?
        .ok()?;
    ensure!(
        inspect.stdout.trim().is_empty(),
        "remapped, as dockerd shows it: {inspect}"
    );
    // cp, commit and export show and record the owners as the container sees them.
    ctx.capsa(&[
        "exec",
        "capsa-test-remapped",
        "sh",
        "-c",
        "echo made > /made-inside",
    ])?
    .ok()?;
    let host_file = ctx.dir().join("from-host");
    std::fs::write(&host_file, "in\n")?;
    let into = format!("{}", host_file.display());
    ctx.capsa(&["cp", &into, "capsa-test-remapped:/from-host"])?
        .ok()?;
    let owners = ctx
        .capsa(&[
            "exec",
            "capsa-test-remapped",
            "stat",
            "-c",
            "%u:%g",
            "/from-host",
            "/made-inside",
        ])?
        .ok()?;
    ensure!(
        owners.stdout == "0:0\n0:0\n",
        "cp in: root's inside: {owners}"
    );
    let out_tar = ctx.dir().join("out.tar");
    let out_arg = out_tar.display().to_string();
    ctx.capsa(&["cp", "capsa-test-remapped:/made-inside", "-"])
        .and_then(|o| {
            std::fs::write(&out_tar, o.stdout.as_bytes())?;
            Ok(o)
        })?
        .ok()?;
    let listing = std::process::Command::new("tar")
        .args(["-tvf", &out_arg, "--numeric-owner"])
        .output()?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    ensure!(
        listing.contains(" 0/0 "),
        "cp out: the container's owners: {listing}"
    );
    ctx.capsa(&["commit", "capsa-test-remapped", "capsa-test-committed:1"])?
        .ok()?;
    let committed = ctx
        .run_rm(&[
            "--userns",
            "host",
            "capsa-test-committed:1",
            "stat",
            "-c",
            "%u:%g",
            "/made-inside",
        ])?
        .ok()?;
    ensure!(
        committed.stdout == "0:0\n",
        "commit records the container's owners: {committed}"
    );
    ctx.capsa(&["rm", "-f", "capsa-test-remapped"])?.ok()?;
    let info = ctx
        .capsa(&["info", "--format", "{{json .SecurityOptions}}"])?
        .ok()?;
    ensure!(info.stdout.contains("name=userns"), "{info}");
    Ok(())
}

#[test]
fn userns_remap_refuses_what_cannot_hold() -> Result<()> {
    let mut ctx = remapped("userns-refusals")?;
    ctx.import_busybox("bb:1")?;
    // A user without ranges: named, with the file.
    ctx.env.retain(|(k, _)| k != "CAPSA_USERNS_REMAP");
    ctx.env
        .push(("CAPSA_USERNS_REMAP".into(), "capsa-test-nobody".into()));
    let out = ctx.run_rm(&["bb:1", "true"])?;
    ensure!(
        out.code() == 125
            && out.stderr.contains("capsa-test-nobody")
            && out.stderr.contains("subuid"),
        "{out}"
    );
    // Every command refuses the setting, as dockerd refuses to start with it.
    let ps = ctx.capsa(&["ps", "-aq"])?;
    ensure!(
        ps.code() == 125 && ps.stderr.contains("capsa-test-nobody"),
        "{ps}"
    );
    ctx.env.retain(|(k, _)| k != "CAPSA_USERNS_REMAP");
    let left = ctx.capsa(&["ps", "-aq"])?.ok()?;
    ensure!(left.stdout.trim().is_empty(), "nothing was created: {left}");
    Ok(())
}

#[test]
fn capsad_userns_remap_serves_remapped_containers_to_the_docker_cli() -> Result<()> {
    let ids = capsa_tests::cleanup::TempDir::new("userns-daemon-ids")?;
    for file in ["subuid", "subgid"] {
        std::fs::write(ids.path().join(file), format!("{USER}:{START}:{SIZE}\n"))?;
    }
    let dir = ids.path().display().to_string();
    let d = capsa_tests::daemon::Daemon::start_with_env(
        "userns-daemon",
        &["--userns-remap", USER],
        &[("CAPSA_SUBID_DIR", &dir)],
    )?;
    d.load_busybox("bb:1")?;
    let map = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "cat",
            "/proc/self/uid_map",
        ])?
        .ok()?;
    let fields: Vec<&str> = map.stdout.split_whitespace().collect();
    ensure!(
        fields == ["0", &START.to_string(), &SIZE.to_string()],
        "{map}"
    );
    let host = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--userns",
            "host",
            "bb:1",
            "cat",
            "/proc/self/uid_map",
        ])?
        .ok()?;
    ensure!(host.stdout.split_whitespace().nth(1) == Some("0"), "{host}");
    let info = d
        .docker(&["info", "--format", "{{json .SecurityOptions}}"])?
        .ok()?;
    ensure!(info.stdout.contains("name=userns"), "{info}");
    Ok(())
}

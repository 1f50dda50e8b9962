//! User-namespace remapping, Docker's `userns-remap`: every container's root is an unprivileged
//! range of host ids (from /etc/subuid and /etc/subgid), unless it asks for `--userns host`.
//!
//! The range is decided when the engine opens (`--userns-remap default|USER[:GROUP]`) and
//! recorded in each container it creates, so a later start, restart or exec (by the CLI, the
//! daemon or the monitor) uses the container's own mapping. The image's layers are not chowned
//! or copied per mapping: the overlay is built on id-mapped mounts of them (`capsa_images::idmap`),
//! so a file the store holds as 0:0 is START:START on the host and 0:0 inside.
//!
//! `default` is dockerd's: a system user (`capsa`, dockerd's `dockremap`) with a fresh range of
//! 65536 ids, created with useradd/usermod the first time. `CAPSA_SUBID_DIR` (test-only) reads
//! `subuid`/`subgid` from another directory instead of /etc, and then never creates anything.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::error::{Result, invalid};

/// The user dockerd would call `dockremap`.
const DEFAULT_USER: &str = "capsa";
/// How many ids `default` gives its user, and where a fresh range starts at the lowest.
const DEFAULT_SIZE: u32 = 65536;
const FIRST_START: u32 = 100_000;

/// Container id 0 and up mapped to host ids `uid`/`gid` and up, `size` of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub uid_size: u32,
    pub gid_size: u32,
}

impl IdMap {
    /// The host id a container uid stands for (ids outside the range are unchanged).
    pub fn host_uid(&self, uid: u32) -> u32 {
        if uid < self.uid_size {
            self.uid + uid
        } else {
            uid
        }
    }

    /// A host owner as the container sees it (the inverse of `host_uid`/`host_gid`).
    pub fn container_owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        let back = |id: u32, start: u32, size: u32| {
            if id >= start && id - start < size {
                id - start
            } else {
                id
            }
        };
        (
            back(uid, self.uid, self.uid_size),
            back(gid, self.gid, self.gid_size),
        )
    }

    /// The host id a container gid stands for.
    pub fn host_gid(&self, gid: u32) -> u32 {
        if gid < self.gid_size {
            self.gid + gid
        } else {
            gid
        }
    }
}

fn subid_dir() -> (PathBuf, bool) {
    match std::env::var_os("CAPSA_SUBID_DIR") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (PathBuf::from("/etc"), false),
    }
}

/// The first range of `name` (or of the numeric `id`) in a subuid/subgid file's text.
fn range_of(text: &str, name: &str, id: Option<u32>) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        let start = fields.next()?.trim().parse().ok()?;
        let size = fields.next()?.trim().parse().ok()?;
        let matches = owner == name || id.is_some_and(|id| owner == id.to_string());
        (matches && size > 0).then_some((start, size))
    })
}

/// A start past every range of a subuid/subgid file, as useradd picks one.
fn free_start(text: &str) -> u32 {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':').skip(1);
            let start: u32 = fields.next()?.trim().parse().ok()?;
            let size: u32 = fields.next()?.trim().parse().ok()?;
            start.checked_add(size)
        })
        .fold(FIRST_START, u32::max)
}

fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn gid_of(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

fn run(flag: &str, program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| invalid(flag, format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(invalid(
            flag,
            format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// `default`: the `capsa` system user and a fresh range, created as dockerd creates
/// `dockremap` (only on the real /etc).
fn ensure_default_user(flag: &str, subuid: &str, subgid: &str) -> Result<()> {
    let has_ranges = range_of(subuid, DEFAULT_USER, None).is_some()
        && range_of(subgid, DEFAULT_USER, None).is_some();
    if has_ranges {
        return Ok(());
    }
    if uid_of(DEFAULT_USER).is_none() {
        run(
            flag,
            "useradd",
            &[
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                DEFAULT_USER,
            ],
        )?;
    }
    let start = free_start(subuid).max(free_start(subgid));
    let range = format!("{start}-{}", start + DEFAULT_SIZE - 1);
    run(
        flag,
        "usermod",
        &[
            "--add-subuids",
            &range,
            "--add-subgids",
            &range,
            DEFAULT_USER,
        ],
    )
}

/// Resolves `--userns-remap default|USER[:GROUP]` to the container-root mapping.
pub fn resolve(spec: &str) -> Result<IdMap> {
    let flag = format!("--userns-remap {spec}");
    let (dir, overridden) = subid_dir();
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| invalid(flag.as_str(), format!("{}: {e}", path.display())))
    };
    let (user, group) = match spec {
        "" => return Err(invalid(flag.as_str(), "give default or USER[:GROUP]")),
        "default" => (DEFAULT_USER, DEFAULT_USER),
        other => other.split_once(':').unwrap_or((other, other)),
    };
    let mut subuid = read("subuid")?;
    let mut subgid = read("subgid")?;
    if spec == "default" && !overridden {
        ensure_default_user(&flag, &subuid, &subgid)?;
        subuid = read("subuid")?;
        subgid = read("subgid")?;
    }
    let missing = |file: &str, who: &str| {
        invalid(
            flag.as_str(),
            format!(
                "no subordinate range for {who} in {} (add a line {who}:START:COUNT)",
                dir.join(file).display()
            ),
        )
    };
    let (uid, uid_size) =
        range_of(&subuid, user, uid_of(user)).ok_or_else(|| missing("subuid", user))?;
    let (gid, gid_size) =
        range_of(&subgid, group, gid_of(group)).ok_or_else(|| missing("subgid", group))?;
    Ok(IdMap {
        uid,
        gid,
        uid_size,
        gid_size,
    })
}

/// Lets the remapped root pass through `dir` (a store directory, 0700 root:root) on the way
/// to its rootfs and volumes: group `map.gid` and the group's search bit, as dockerd makes its
/// remapped root 0710 root:REMAPGID. Nothing is listed or read through it; a directory already
/// searchable by others is left alone. One mapping per store, as with dockerd.
pub fn grant_traverse(dir: &std::path::Path, map: &IdMap) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let what = || dir.display().to_string();
    let meta = std::fs::metadata(dir).map_err(|e| invalid(what(), e.to_string()))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o001 != 0 {
        return Ok(());
    }
    std::os::unix::fs::chown(dir, None, Some(map.gid))
        .map_err(|e| invalid(what(), format!("chgrp: {e}")))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o010))
        .map_err(|e| invalid(what(), format!("chmod: {e}")))
}

/// Gives a volume made for a remapped container the mapped owners (what it was filled with
/// from the image is 0:0 in the store's terms), as dockerd does; symlinks are not followed.
pub fn shift_owners(dir: &std::path::Path, map: &IdMap) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shift = |path: &std::path::Path| -> Result<()> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| invalid(path.display().to_string(), e.to_string()))?;
        std::os::unix::fs::lchown(
            path,
            Some(map.host_uid(meta.uid())),
            Some(map.host_gid(meta.gid())),
        )
        .map_err(|e| invalid(path.display().to_string(), format!("chown: {e}")))?;
        // chown clears set-id bits, even root's: put them back.
        use std::os::unix::fs::PermissionsExt;
        if !meta.file_type().is_symlink() && meta.mode() & 0o6000 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| invalid(path.display().to_string(), format!("chmod: {e}")))?;
        }
        Ok(())
    };
    shift(dir)?;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| invalid(d.display().to_string(), e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| invalid(d.display().to_string(), e.to_string()))?;
            let path = entry.path();
            shift(&path)?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Where id-mapped mounts are impossible (a filesystem without them, such as tmpfs before
/// Linux 6.3): the plan with every store layer replaced by a copy owned by the range, kept under
/// `<root>/userns/<uid>.<gid>/<layer>` and shared by every container of the mapping (dockerd's
/// store per mapping, layer by layer). A copy is made once (`cp -a` into a temporary name,
/// owners shifted, renamed). The init layer is the container's own: shifted in place.
pub fn shifted_plan(
    plan: &capsa_images::rootfs::MountPlan,
    map: &IdMap,
    store_root: &std::path::Path,
) -> Result<capsa_images::rootfs::MountPlan> {
    let base = store_root
        .join("userns")
        .join(format!("{}.{}", map.uid, map.gid));
    std::fs::create_dir_all(&base)
        .map_err(|e| invalid(base.display().to_string(), e.to_string()))?;
    for d in [store_root.join("userns"), base.clone()] {
        grant_traverse(&d, map)?;
    }
    let mut lower = Vec::new();
    let mut lower_short = Vec::new();
    for (i, layer) in plan.lower.iter().enumerate() {
        if i == 0 {
            shift_owners(layer, map)?;
            lower.push(layer.clone());
            lower_short.push(layer.clone());
            continue;
        }
        // `<root>/layers/<diff_id>/diff` → `<base>/<diff_id>`.
        let name = layer
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| i.to_string());
        let copy = base.join(&name);
        if !copy.is_dir() {
            let tmp = base.join(format!(".tmp-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            let out = Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(layer)
                .arg(&tmp)
                .output()
                .map_err(|e| invalid("cp", e.to_string()))?;
            if !out.status.success() {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(invalid(
                    format!("copy {} for the user-namespace mapping", layer.display()),
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            shift_owners(&tmp, map)?;
            // Another container may have made the same copy meanwhile: keep either.
            if std::fs::rename(&tmp, &copy).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        lower.push(copy);
        lower_short.push(std::path::PathBuf::from(name));
    }
    Ok(capsa_images::rootfs::MountPlan {
        lower,
        lower_short,
        short_base: base,
        upper: plan.upper.clone(),
        work: plan.work.clone(),
    })
}

/// A user namespace with `map`, as an fd (for id-mapped mounts): a `capsa-monitor
/// --userns-holder` child unshares one and waits while its maps are written, then exits. The
/// namespace lives on through the fd. No fork here: the daemon is multi-threaded.
pub fn namespace_fd(map: &IdMap) -> Result<OwnedFd> {
    let what = "a user namespace for the id-mapped layers";
    let monitor = super::monitor::monitor_binary()?;
    let mut child = Command::new(&monitor)
        .arg("--userns-holder")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| invalid(what, format!("{}: {e}", monitor.display())))?;
    let result = (|| {
        let mut line = String::new();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| invalid(what, "no pipe"))?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| invalid(what, e.to_string()))?;
        if line.trim() != "ready" {
            return Err(invalid(what, "the holder did not unshare a user namespace"));
        }
        Ok(crate::sys::userns::map_and_open(
            child.id() as i32,
            &format!("0 {} {}\n", map.uid, map.uid_size),
            &format!("0 {} {}\n", map.gid, map.gid_size),
        )?)
    })();
    // Closing stdin ends the holder; reap it whatever happened.
    drop(child.stdin.take());
    let _ = child.wait();
    result
}

/// The holder's side (`capsa-monitor --userns-holder`): unshare, say so, wait for stdin's end.
pub fn hold() -> i32 {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
        eprintln!("capsa-monitor: unshare(CLONE_NEWUSER): {e}");
        return 1;
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_found_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:300000:1000\nbroken\ncapsa:bad:1\n";
        assert_eq!(range_of(text, "alice", None), Some((100000, 65536)));
        assert_eq!(range_of(text, "bob", Some(1001)), Some((300000, 1000)));
        assert_eq!(range_of(text, "capsa", None), None);
        assert_eq!(range_of(text, "carol", None), None);
    }

    #[test]
    fn a_fresh_range_starts_past_every_other() {
        assert_eq!(free_start(""), 100_000);
        assert_eq!(free_start("a:100000:65536\nb:231072:65536\n"), 296_608);
        assert_eq!(free_start("a:10:5\n"), 100_000);
    }

    #[test]
    fn shifting_owners_keeps_set_id_bits() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("capsa-test-shift-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let file = dir.join("sub/su");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("su", dir.join("sub/link")).unwrap();
        let map = IdMap {
            uid: 700_000,
            gid: 800_000,
            uid_size: 65536,
            gid_size: 65536,
        };
        shift_owners(&dir, &map).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let link = std::fs::symlink_metadata(dir.join("sub/link")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (700_000, 800_000));
        assert_eq!(meta.mode() & 0o7777, 0o4755);
        assert_eq!(
            link.uid(),
            700_000,
            "symlinks themselves, not their targets"
        );
    }

    #[test]
    fn ids_inside_the_range_are_shifted_and_others_kept() {
        let map = IdMap {
            uid: 500_000,
            gid: 600_000,
            uid_size: 65536,
            gid_size: 1000,
        };
        assert_eq!(map.host_uid(0), 500_000);
        assert_eq!(map.host_gid(999), 600_999);
        assert_eq!(map.host_gid(1000), 1000);
    }
}

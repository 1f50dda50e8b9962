//! `-u USER[:GROUP]` and the image's `User`: names are looked up in the container's own
//! `/etc/passwd` and `/etc/group`, read with `openat2(RESOLVE_IN_ROOT)` so a symlink in the
//! image cannot make the engine read a host file.

use std::io::Read;
use std::path::Path;

use nix::fcntl::OFlag;

use super::error::{IoContext, Result, invalid};
use crate::sys::fs::open_in_root;

/// A resolved user: uid, gid and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary groups from `/etc/group`.
    pub additional_gids: Vec<u32>,
}

/// Reads a file of the rootfs; a missing file reads as empty.
fn read_in_root(rootfs: &Path, name: &str) -> Result<String> {
    let root = std::fs::File::open(rootfs).io("open", rootfs)?;
    match open_in_root(&root, Path::new(name), OFlag::O_RDONLY | OFlag::O_CLOEXEC) {
        Ok(fd) => {
            let mut text = String::new();
            std::fs::File::from(fd)
                .take(1 << 20)
                .read_to_string(&mut text)
                .io("read", rootfs.join(name))?;
            Ok(text)
        }
        Err(_) => Ok(String::new()),
    }
}

/// A group name or gid (`--group-add`) looked up in the rootfs's `/etc/group`.
pub fn resolve_group(rootfs: &Path, group: &str) -> Result<u32> {
    if let Ok(g) = group.parse::<u32>() {
        return Ok(g);
    }
    read_in_root(rootfs, "etc/group")?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == group)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| {
            invalid(
                format!("group {group:?}"),
                "no such group in the container's /etc/group",
            )
        })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`) against the rootfs.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<Identity> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let groups = read_in_root(rootfs, "etc/group")?;
    // passwd: name:x:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, name) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => {
            let uid = f[2]
                .parse()
                .map_err(|_| invalid("/etc/passwd", format!("uid of {}", f[0])))?;
            let gid = f[3]
                .parse()
                .map_err(|_| invalid("/etc/passwd", format!("gid of {}", f[0])))?;
            (uid, gid, Some(f[0].to_owned()))
        }
        (None, Ok(uid)) => (uid, 0, None),
        (None, Err(_)) => {
            return Err(invalid(
                format!("user {user:?}"),
                "no such user in the container's /etc/passwd",
            ));
        }
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    invalid(
                        format!("group {group:?}"),
                        "no such group in the container's /etc/group",
                    )
                })?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for f in groups.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse::<u32>()
                && g != gid
            {
                additional_gids.push(g);
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        additional_gids,
    })
}

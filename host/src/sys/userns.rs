//! A user namespace with given mappings, as an fd, for id-mapped mounts (`mount_setattr`
//! wants one): a forked child unshares it and waits while the maps are written, then exits; the
//! namespace lives on through the fd. Only for single-threaded callers (the runtime and the
//! container's init): the daemon spawns `capsa-monitor --userns-holder` instead.

use std::io::Write;
use std::os::fd::OwnedFd;

use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pipe, read, write};
use oci_spec::runtime::LinuxIdMapping;

use crate::error::{Context, Result};

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the uid_map and gid_map of `pid` (a process that has just unshared a user
/// namespace) and opens its namespace. Shared with the daemon's holder process.
pub fn map_and_open(pid: i32, uid_map: &str, gid_map: &str) -> Result<OwnedFd> {
    let proc = format!("/proc/{pid}");
    for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let path = format!("{proc}/{file}");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with(|| format!("write {path}"))?;
    }
    let ns = format!("{proc}/ns/user");
    std::fs::File::open(&ns)
        .map(OwnedFd::from)
        .with(|| format!("open {ns}"))
}

/// A new user namespace whose uid_map and gid_map are `uids` and `gids` (container id → host
/// id, as OCI writes them).
pub fn with_mappings(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (ready_r, ready_w) = pipe().with(|| "pipe".to_string())?;
    let (done_r, done_w) = pipe().with(|| "pipe".to_string())?;
    // SAFETY: the caller is single-threaded; the child only makes async-signal-safe syscalls
    // (unshare, write, read, _exit) before it exits.
    match unsafe { fork() }.with(|| "fork a user-namespace holder".to_string())? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = write(&ready_w, if ok { b"1" } else { b"0" });
            let mut byte = [0u8; 1];
            let _ = read(&done_r, &mut byte);
            // SAFETY: _exit ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let result = (|| {
                let mut byte = [0u8; 1];
                let n = read(&ready_r, &mut byte).with(|| "read".to_string())?;
                if n != 1 || byte[0] != b'1' {
                    return Err(crate::error::invalid(
                        "unshare(CLONE_NEWUSER) for an id-mapped mount failed",
                    ));
                }
                map_and_open(child.as_raw(), &map_text(uids), &map_text(gids))
            })();
            drop(done_w);
            let _ = waitpid(child, None);
            result
        }
    }
}

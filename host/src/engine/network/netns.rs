//! A container's network namespace as a bind mount owned by capsa (`<state>/netns/<id>`), made
//! before the container's init exists and kept until teardown, so that netavark can set it up
//! before the payload starts and tear it down after the payload (or whoever started it) died.
//!
//! It is made without a fork: a network namespace belongs to a thread, so a short-lived thread
//! unshares one, brings its loopback up, bind-mounts `/proc/thread-self/ns/net` and ends. That is
//! safe in the multi-threaded daemon as in the CLI (no other thread is affected, and the process
//! has one thread again when the runtime forks afterwards).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::engine::error::{EngineError, IoContext, Result, SysContext};

/// Makes a new network namespace with `lo` up and binds it at `path` (an existing bind is an
/// error: the caller tears down before it sets up again).
pub fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).io("mkdir", dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .io("create", path)?;
    let made = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .sys(|| "unshare(CLONE_NEWNET)".to_owned())?;
                loopback_up()?;
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .sys(|| format!("bind the network namespace at {}", path.display()))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(EngineError::Invalid {
                    what: "network namespace".into(),
                    reason: "the thread that made it panicked".into(),
                })
            })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Whether a namespace is bound at `path` (a file there that is not on the parent's device is
/// nsfs; a plain file left by a crash between create and bind is not).
pub fn is_bound(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(file), Some(Ok(dir))) => file.dev() != dir.dev(),
        _ => false,
    }
}

/// Unbinds and removes the namespace file; nothing there is not an error.
pub fn remove(path: &Path) -> Result<()> {
    if is_bound(path) {
        nix::mount::umount2(path, MntFlags::MNT_DETACH)
            .sys(|| format!("umount {}", path.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).io("remove", path),
        _ => Ok(()),
    }
}

/// Sets `IFF_UP` on `lo` in the calling thread's network namespace (netavark leaves it down,
/// and every container expects 127.0.0.1 to work).
fn loopback_up() -> Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(nix::errno::Errno::last()).sys(|| "socket(AF_INET) for lo".to_owned());
    }
    // SAFETY: `raw` is a new fd nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own, named by ifr_name.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(nix::errno::Errno::last()).sys(|| "SIOCGIFFLAGS lo".to_owned());
    }
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(nix::errno::Errno::last()).sys(|| "SIOCSIFFLAGS lo up".to_owned());
    }
    Ok(())
}

//! Process file descriptors: signal and wait for a process by a handle that cannot be confused
//! with a later process that reuses its pid. They work on processes that are not our children,
//! which is the normal case for a container's init after `create` has exited.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Context, Result};

/// A handle on a live process.
pub struct PidFd(OwnedFd);

impl std::os::fd::AsFd for PidFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }
}

impl PidFd {
    /// Opens a handle on `pid`; fails with ESRCH if it no longer exists.
    pub fn open(pid: i32) -> Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Errno::last()).with(|| format!("pidfd_open({pid})"));
        }
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) -> Result<(), Errno> {
        // SAFETY: pidfd_send_signal with a null siginfo sends like kill().
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if ret < 0 { Err(Errno::last()) } else { Ok(()) }
    }

    /// Waits until the process has exited (or become a zombie), at most `timeout`. Returns whether
    /// it exited.
    pub fn wait_exit(&self, timeout: Duration) -> Result<bool> {
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&self.0),
            PollFlags::POLLIN,
        )];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        loop {
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).with(|| "poll(pidfd)".to_string()),
            }
        }
    }
}

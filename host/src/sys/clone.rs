//! Fork-like `clone3` (and `clone` as a fallback) with namespace flags and `CLONE_INTO_CGROUP`.
//!
//! The child continues from the call, like `fork`, with a copy of the parent's memory: the parsed
//! config is already there, so nothing is re-exec'd or serialised. This is only sound in a
//! single-threaded process, which the runtime path is by design.

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::error::{Context, Result};

/// Which side of the clone we are on.
pub enum Forked {
    /// We are the new process.
    Child,
    /// We are the caller; the new process has this pid.
    Parent(Pid),
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks with `flags` (namespace flags, `CLONE_PARENT`), placing the child straight into the
/// cgroup `cgroup_dir` is open on when given (cgroup v2 only).
///
/// # Safety
/// The calling process must be single-threaded: the child gets a copy of only this thread, and any
/// lock held by another thread would stay locked forever in it.
pub unsafe fn fork_with(flags: libc::c_int, cgroup_dir: Option<RawFd>) -> Result<Forked> {
    let mut args = CloneArgs {
        flags: flags as u32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_dir {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // clone3 refuses CLONE_PARENT with an exit signal, while the classic clone gives the child
    // its parent's exit signal (SIGCHLD), which the runtime needs to see the init exit.
    let use_clone3 = flags & libc::CLONE_PARENT == 0;
    let ret = if use_clone3 {
        // SAFETY: clone3 with a zero stack behaves like fork: the child runs on a copy of this
        // stack. `args` outlives the call; the caller guarantees the process is single-threaded.
        unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        }
    } else {
        -1
    };
    let ret = if !use_clone3 || (ret < 0 && Errno::last() == Errno::ENOSYS && cgroup_dir.is_none())
    {
        // SAFETY: as above; the classic clone with a null stack is fork with flags.
        unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        }
    } else {
        ret
    };
    match ret {
        r if r < 0 => Err(Errno::last()).with(|| format!("clone3(flags={flags:#x})")),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

//! A new process in a running container (`exec`), from the moment `fork` returns in the child until
//! it execs: join the container's namespaces through its init's `/proc/<pid>/ns/*` (user first, so
//! it owns the right to join the rest; mount last), fork once more if the pid namespace changed,
//! then take the identity of the process config exactly as the init does (identity.rs, exec.rs,
//! console.rs and the container's seccomp filter). Nothing of the rootfs is built: setns into the
//! container's mount namespace already puts the process at the container's root.
//!
//! Every failure is reported to the runtime as text over the sync socket, as the init does.

use std::convert::Infallible;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::setsid;
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::console;
use super::identity::{Assumed, assume_identity, set_no_new_privs};
use super::init::join_session_keyring;
use super::seccomp::Filter;
use super::sync::{FromInit, ToInit};
use crate::error::{Context, Error, Result, invalid};
use crate::sys::clone::{Forked, fork_with};
use crate::sys::socket::{recv, send};

/// The namespace files of `/proc/<pid>/ns`, in the order they are joined: the user namespace
/// first (joining it grants the capabilities to join the others, which it owns), the mount
/// namespace last (joining it changes root and cwd).
const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

/// One namespace of a running container, open, to be joined with `setns`.
#[derive(Debug)]
pub struct Namespace {
    /// The `/proc/<pid>/ns` file name (`net`, `mnt`, …), for error messages.
    pub name: &'static str,
    /// The namespace type, as `setns` wants it.
    pub flag: CloneFlags,
    /// The open namespace file.
    pub fd: OwnedFd,
}

/// The namespaces of process `pid` that are not ours, opened, in the order they must be joined.
/// Namespaces the container shares with the runtime are left out: joining one's own namespace is
/// a no-op at best, and for a user namespace `setns` fails with EINVAL. Kernels without a type
/// (no `/proc/self/ns/time`) skip it.
///
/// The caller must check afterwards that `pid` is still the container's init (pids are reused):
/// once open, the files keep the namespaces they were opened on.
pub fn namespaces_of(pid: i32) -> Result<Vec<Namespace>> {
    let mut joins = Vec::new();
    for (name, flag) in NAMESPACES {
        let ours = match std::fs::metadata(format!("/proc/self/ns/{name}")) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with(|| format!("stat /proc/self/ns/{name}")),
        };
        let path = format!("/proc/{pid}/ns/{name}");
        let fd = open(
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with(|| format!("open {path}"))?;
        let theirs = fstat(&fd).with(|| format!("fstat {path}"))?;
        if theirs.st_ino == ours.ino() && theirs.st_dev == ours.dev() {
            continue;
        }
        joins.push(Namespace {
            name,
            flag: CloneFlags::from_bits_retain(flag),
            fd,
        });
    }
    Ok(joins)
}

/// What the new process needs; it lives in the child's copy of the runtime's memory.
pub struct EnterArgs<'a> {
    /// The container id (names the session keyring).
    pub id: &'a str,
    /// The process to run, complete (the container's defaults already merged with `exec`'s
    /// flags) and validated.
    pub process: &'a Process,
    /// The container's namespaces to join, from [`namespaces_of`].
    pub namespaces: &'a [Namespace],
    /// The container's seccomp profile, applied to this process too.
    pub seccomp: Option<&'a LinuxSeccomp>,
    /// Where compiled seccomp programs are kept (under the state root).
    pub seccomp_cache: &'a std::path::Path,
    /// The container's OCI state JSON, for a seccomp notify agent.
    pub state: &'a str,
    /// The child's end of the sync socket.
    pub sync: RawFd,
    /// Where the pty master goes when the process has a terminal.
    pub console_socket: Option<RawFd>,
    /// The signal mask to restore: the runtime blocks signals before forking, so none sent to it
    /// is lost; the process must not inherit that.
    pub signal_mask: Option<SigSet>,
    /// Pass this many descriptors from fd 3 on to the process.
    pub preserve_fds: u32,
    /// The wasm shim to exec instead of a native program (prepared by the runtime).
    pub wasm: Option<&'a crate::wasm::ShimExec>,
    /// The container's cgroup, whose v1 directories the process joins itself before anything
    /// else (see `Cgroup::join_v1_self`); its v2 part is joined at the fork.
    pub join_v1_cgroup: Option<&'a crate::cgroups::Cgroup>,
}

/// Runs the new process's side; never returns. Exits 127 after reporting a failure.
pub fn run(args: EnterArgs) -> ! {
    let error = match enter_and_exec(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = send(&args.sync, &FromInit::Failed(error.to_string()));
    // SAFETY: _exit ends this process without running the parent's atexit handlers or destructors,
    // which belong to the runtime process we were forked from.
    unsafe { libc::_exit(127) }
}

fn enter_and_exec(args: &EnterArgs) -> Result<Infallible> {
    let process = args.process;
    if let Some(mask) = &args.signal_mask {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
            .with(|| "restore the signal mask".to_string())?;
    }
    if let Some(cgroup) = args.join_v1_cgroup {
        cgroup.join_v1_self()?;
    }
    match recv::<ToInit>(&args.sync)? {
        Some(ToInit::Continue) => {}
        other => {
            return Err(Error::Step {
                step: "wait for cgroup placement".into(),
                message: format!("unexpected {other:?} from the runtime"),
            });
        }
    }
    // Compiled before joining anything; a notify agent's socket is a host path, connected while
    // the host's filesystem is still ours.
    let mut filter = args
        .seccomp
        .map(|profile| Filter::compile(profile, Some(args.seccomp_cache)))
        .transpose()
        .with(|| "linux.seccomp".into())?;
    if let Some(filter) = filter.as_mut() {
        filter.connect_listener(args.state)?;
    }

    for ns in args.namespaces {
        setns(ns.fd.as_fd(), ns.flag).with(|| format!("setns into the container's {}", ns.name))?;
    }
    if args
        .namespaces
        .iter()
        .any(|ns| ns.flag == CloneFlags::CLONE_NEWPID)
    {
        // setns of a pid namespace only applies to children. CLONE_PARENT makes the runtime the
        // new process's parent, so it can wait for it (foreground) or leave it to its subreaper.
        // SAFETY: this child is single-threaded (a copy of the single-threaded runtime).
        match unsafe { fork_with(libc::CLONE_PARENT, None)? } {
            Forked::Child => {}
            Forked::Parent(pid) => {
                let _ = send(&args.sync, &FromInit::InitPid(pid.as_raw()));
                // SAFETY: see run().
                unsafe { libc::_exit(0) }
            }
        }
    }
    setsid().with(|| "setsid".to_string())?;

    if process.terminal().unwrap_or(false) {
        let socket = args
            .console_socket
            .ok_or_else(|| invalid("the process has a terminal but there is no console socket"))?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::setup_for_exec(socket, size)?;
        // SAFETY: the console socket fd is ours; it was only needed to send the pty master.
        drop(unsafe { OwnedFd::from_raw_fd(socket) });
    }
    join_session_keyring(args.id);
    let Assumed {
        payload: program,
        no_new_privileges,
    } = assume_identity(process, args.wasm, &mut filter, args.preserve_fds)?;
    if no_new_privileges {
        set_no_new_privs()?;
    }
    // As late as possible, so the profile need not allow our own syscalls.
    if let Some(filter) = filter.as_mut() {
        filter.load()?;
    }
    // The sync socket is close-on-exec: on success the runtime sees end of file.
    Err(program.exec())
}

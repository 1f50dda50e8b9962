//! `exec`: run a new process in a running container, as `runc exec` does. The runtime forks (no
//! re-exec, no thread); the child joins the namespaces of the container's init and its cgroup,
//! takes the identity of the process config and execs (`envelope::enter`). The process comes from
//! `--process` (an OCI process object) or is the container's own process with the command line's
//! changes on top.
//!
//! Detached (`--detach`, what conmon and containerd's shim use), the runtime returns once the
//! process has exec'd and it is left to the caller's subreaper. In the foreground the runtime
//! stays its parent: it forwards signals, proxies the terminal for `-t` without
//! `--console-socket`, and exits with the process's code (128+n for signal n).

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process, Spec};

use super::state::{StateRoot, Status};
use super::tty::Proxy;
use crate::envelope::enter::{self, EnterArgs};
use crate::envelope::sync::{FromInit, ToInit};
use crate::error::{Context, Error, Result, invalid};
use crate::spec::validate_process;
use crate::sys::clone::{Forked, fork_with};
use crate::sys::fs::write_atomic;
use crate::sys::proc;
use crate::sys::socket::{recv, recv_fd, send, seqpacket_pair};

/// What `exec` takes from the command line.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The container to run the process in; it must be running.
    pub id: String,
    /// Where the process config comes from.
    pub process: ProcessSource,
    /// Return once the process has exec'd instead of waiting for it.
    pub detach: bool,
    /// Write the process's pid here (atomically), as seen from the runtime.
    pub pid_file: Option<PathBuf>,
    /// Send the pty master here when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// Pass this many descriptors from fd 3 on to the process.
    pub preserve_fds: u32,
}

/// Where `exec` gets its process config from.
#[derive(Debug, Clone)]
pub enum ProcessSource {
    /// An OCI `process` object in a JSON file (`--process`), used as it is; the command line's
    /// process flags do not apply (runc ignores them too).
    File(PathBuf),
    /// The container's own process with these changes.
    Flags(ProcessFlags),
}

/// The command line's changes to the container's process, with runc's meaning.
#[derive(Debug, Clone, Default)]
pub struct ProcessFlags {
    /// The command and its arguments (replace the container's).
    pub args: Vec<String>,
    /// Give the process a terminal (`-t`). Without it the process has none, whatever the
    /// container's process says.
    pub tty: bool,
    /// `KEY=value` entries added to the container's environment; one for a key the container
    /// sets replaces its value.
    pub env: Vec<String>,
    /// The working directory (absolute), instead of the container's.
    pub cwd: Option<PathBuf>,
    /// The uid (and gid), instead of the container's.
    pub user: Option<UserSpec>,
    /// Supplementary groups added to the container's.
    pub additional_gids: Vec<u32>,
    /// Capabilities added to all five sets.
    pub capabilities: Vec<Capability>,
    /// Set no_new_privs (when false the container's setting stands).
    pub no_new_privs: bool,
}

/// `--user UID[:GID]`: numeric ids, as runc takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSpec {
    pub uid: u32,
    /// The gid; the container's when not given.
    pub gid: Option<u32>,
}

impl FromStr for UserSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let number = |part: &str, what: &str| {
            part.parse::<u32>().map_err(|_| Error::Step {
                step: format!("--user {text:?}"),
                message: format!("the {what} {part:?} is not a number (use UID[:GID])"),
            })
        };
        let (uid, gid) = match text.split_once(':') {
            Some((uid, gid)) => (number(uid, "uid")?, Some(number(gid, "gid")?)),
            None => (number(text, "uid")?, None),
        };
        Ok(Self { uid, gid })
    }
}

/// Parses a capability name as config.json's are parsed (`CAP_NET_ADMIN`; the prefix and case are
/// optional); an unknown name is an error, as the runtime spec asks (runc only warns).
pub fn parse_capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| Error::Step {
        step: format!("--cap {name:?}"),
        message: "unknown capability".into(),
    })
}

/// Runs a process in running container `options.id`. Returns the exit code to exit with: the
/// process's in the foreground (128+n when it died of signal n), 0 when detached.
pub fn exec(root: &StateRoot, options: &ExecOptions) -> Result<i32> {
    let (dir, record) = root.open(&options.id)?;
    let status = record.status();
    if status != Status::Running {
        return Err(Error::WrongStatus {
            id: options.id.clone(),
            status: status.to_string(),
            action: "exec: container not running",
        });
    }
    let spec = dir.load_config()?;
    let process = match &options.process {
        ProcessSource::File(path) => read_process_file(path)?,
        ProcessSource::Flags(flags) => process_from_flags(&spec, flags)?,
    };
    validate_process(&process)?;

    // The terminal: sent to --console-socket, or proxied by us in the foreground.
    let terminal = process.terminal().unwrap_or(false);
    if terminal && options.detach && options.console_socket.is_none() {
        return Err(invalid(
            "a detached process with a terminal needs --console-socket to send the pty to",
        ));
    }
    if !terminal && options.console_socket.is_some() {
        return Err(invalid(
            "--console-socket is given but the process has no terminal (use -t)",
        ));
    }
    let (own_console, console): (Option<UnixStream>, Option<OwnedFd>) =
        match (terminal, &options.console_socket) {
            (false, _) => (None, None),
            (true, Some(path)) => {
                let stream = UnixStream::connect(path)
                    .with(|| format!("connect to console socket {}", path.display()))?;
                (None, Some(stream.into()))
            }
            (true, None) => {
                let (ours, theirs) =
                    UnixStream::pair().with(|| "socketpair for the console".to_string())?;
                (Some(ours), Some(theirs.into()))
            }
        };

    let namespaces = enter::namespaces_of(record.pid)
        .with(|| format!("open the namespaces of the init of {}", options.id))?;
    // A wasm program is found in the container's root and compiled before the fork.
    let wasm = crate::wasm::prepare(
        &spec,
        &process,
        &PathBuf::from(format!("/proc/{}/root", record.pid)),
        &record.bundle,
        &root.wasm_cache(),
    )?;
    // The files (and the wasm program) are the init's only if the pid was not reused meanwhile.
    if !proc::is_same_live_process(record.pid, record.init_start_time) {
        return Err(Error::WrongStatus {
            id: options.id.clone(),
            status: Status::Stopped.to_string(),
            action: "exec: container not running (its init has just exited)",
        });
    }
    let into_cgroup = match &record.cgroup {
        Some(cgroup) => cgroup.open_v2_dir(),
        None => None,
    };
    let state = record.oci_state_json();
    let linux_seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let (sync, child_sync) = seqpacket_pair()?;

    // In the foreground, block signals before the fork so none sent to us is lost before they
    // are forwarded; the child restores the mask before anything else.
    let forwarded = SigSet::all();
    let mut saved_mask = None;
    if !options.detach {
        let mut old = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old))
            .with(|| "block signals".to_string())?;
        saved_mask = Some(old);
    }

    // SAFETY: capsa-runtime is single-threaded on this path (no threads are ever started).
    let forked = unsafe { fork_with(0, into_cgroup.as_ref().map(|fd| fd.as_raw_fd()))? };
    let child = match forked {
        Forked::Child => {
            drop(sync);
            drop(own_console);
            enter::run(EnterArgs {
                id: &options.id,
                process: &process,
                namespaces: &namespaces,
                seccomp: linux_seccomp,
                seccomp_cache: &root.seccomp_cache(),
                state: &state,
                sync: child_sync.into_raw_fd(),
                console_socket: console.map(|c| c.into_raw_fd()),
                signal_mask: saved_mask,
                preserve_fds: options.preserve_fds,
                wasm: wasm.as_ref(),
                join_v1_cgroup: record.cgroup.as_ref(),
            })
        }
        Forked::Parent(pid) => pid,
    };
    drop(child_sync);
    drop(console);
    drop(wasm);
    let joins_pid_namespace = namespaces
        .iter()
        .any(|ns| ns.flag == nix::sched::CloneFlags::CLONE_NEWPID);
    drop(namespaces);
    let mut reaper = Reaper(Some(child));

    // The child joins the v1 directories itself (no RCU grace period: Cgroup::join_v1_self).
    if into_cgroup.is_none()
        && let Some(cgroup) = &record.cgroup
    {
        cgroup
            .add_to(child.as_raw(), false, true)
            .with(|| format!("join the cgroup of {}", options.id))?;
    }
    send(&sync, &ToInit::Continue)?;
    let mut pid = child;
    // With a pid namespace to join, the first child forks the process (as our child) and exits.
    let mut forks_again = false;
    loop {
        match recv::<FromInit>(&sync)? {
            Some(FromInit::InitPid(p)) => {
                let _ = waitpid(child, None);
                pid = Pid::from_raw(p);
                reaper.0 = Some(pid);
                forks_again = true;
            }
            Some(FromInit::Failed(message)) => {
                return Err(Error::Step {
                    step: format!("exec in container {:?}", options.id),
                    message,
                });
            }
            Some(other) => {
                return Err(Error::Step {
                    step: format!("exec in container {:?}", options.id),
                    message: format!("unexpected message {other:?} from the new process"),
                });
            }
            // End of file: the process exec'd (the socket is close-on-exec) — unless the first
            // child died before it could fork the process.
            None => break,
        }
    }
    if joins_pid_namespace && !forks_again {
        return Err(Error::Step {
            step: format!("exec in container {:?}", options.id),
            message: "the new process died before it entered the container".into(),
        });
    }
    reaper.0 = None;

    if let Some(pid_file) = &options.pid_file {
        write_atomic(pid_file, pid.as_raw().to_string().as_bytes())?;
    }
    if options.detach {
        return Ok(0);
    }
    let master = match &own_console {
        Some(socket) => recv_fd(socket.as_raw_fd())?,
        None => None,
    };
    // Release the lock while the process runs, so other commands work on the container meanwhile.
    drop(dir);
    Proxy::new(master, &forwarded)?.run(pid)
}

/// Kills and reaps the child on an early return.
struct Reaper(Option<Pid>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Reads `--process`: one OCI process object.
fn read_process_file(path: &Path) -> Result<Process> {
    let bytes = std::fs::read(path).with(|| format!("read --process {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("--process {}: {e}", path.display())))
}

/// The container's process with `flags` applied, as runc builds it.
fn process_from_flags(spec: &Spec, flags: &ProcessFlags) -> Result<Process> {
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| invalid("the container's config has no process"))?;
    if flags.args.is_empty() {
        return Err(invalid("exec needs a command to run (or --process)"));
    }
    process.set_args(Some(flags.args.clone()));
    process.set_terminal(Some(flags.tty));
    if let Some(cwd) = &flags.cwd {
        process.set_cwd(cwd.clone());
    }
    let env = merge_env(process.env().as_deref().unwrap_or_default(), &flags.env);
    process.set_env(Some(env));
    if let Some(user) = flags.user {
        process.user_mut().set_uid(user.uid);
        if let Some(gid) = user.gid {
            process.user_mut().set_gid(gid);
        }
    }
    if !flags.additional_gids.is_empty() {
        let mut gids = process.user().additional_gids().clone().unwrap_or_default();
        gids.extend(&flags.additional_gids);
        process.user_mut().set_additional_gids(Some(gids));
    }
    if !flags.capabilities.is_empty() {
        process.set_capabilities(Some(add_capabilities(
            process.capabilities().as_ref(),
            &flags.capabilities,
        )));
    }
    if flags.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    Ok(process)
}

/// `base` with each `KEY=value` of `extra` replacing the entry for its key in place, or appended.
/// A process sees one value per variable, the last given, as with runc.
fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let key = |entry: &str| entry.split_once('=').map_or(entry, |(k, _)| k).to_string();
    let mut env: Vec<String> = Vec::with_capacity(base.len() + extra.len());
    for entry in base.iter().chain(extra) {
        match env.iter_mut().find(|e| key(e) == key(entry)) {
            Some(existing) => *existing = entry.clone(),
            None => env.push(entry.clone()),
        }
    }
    env
}

/// `caps` added to all five capability sets of `current` (runc's `--cap`).
fn add_capabilities(current: Option<&LinuxCapabilities>, caps: &[Capability]) -> LinuxCapabilities {
    let mut sets = current.cloned().unwrap_or_else(|| {
        let mut empty = LinuxCapabilities::default();
        empty.set_bounding(None);
        empty.set_effective(None);
        empty.set_inheritable(None);
        empty.set_permitted(None);
        empty.set_ambient(None);
        empty
    });
    let with = |set: &Option<Capabilities>| -> Option<Capabilities> {
        let mut set = set.clone().unwrap_or_default();
        set.extend(caps.iter().copied());
        Some(set)
    };
    let (b, e, i, p, a) = (
        with(sets.bounding()),
        with(sets.effective()),
        with(sets.inheritable()),
        with(sets.permitted()),
        with(sets.ambient()),
    );
    sets.set_bounding(b);
    sets.set_effective(e);
    sets.set_inheritable(i);
    sets.set_permitted(p);
    sets.set_ambient(a);
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_takes_numeric_uid_and_optional_gid() {
        assert_eq!(
            "1000".parse::<UserSpec>().ok(),
            Some(UserSpec {
                uid: 1000,
                gid: None
            })
        );
        assert_eq!(
            "1000:100".parse::<UserSpec>().ok(),
            Some(UserSpec {
                uid: 1000,
                gid: Some(100)
            })
        );
        for bad in ["", "root", "1000:", ":1", "1:2:3", "-1"] {
            assert!(bad.parse::<UserSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_flags_replace_the_containers_value_in_place() {
        let base = vec!["PATH=/bin".to_string(), "TERM=xterm".to_string()];
        let extra = vec!["TERM=dumb".to_string(), "FOO=bar".to_string()];
        assert_eq!(
            merge_env(&base, &extra),
            vec!["PATH=/bin", "TERM=dumb", "FOO=bar"]
        );
    }

    #[test]
    fn unknown_capabilities_are_refused() {
        assert!(parse_capability("CAP_SYS_ADMIN").is_ok());
        assert!(parse_capability("CAP_NOPE").is_err());
    }

    #[test]
    fn cap_flags_go_into_every_set() {
        let caps = add_capabilities(None, &[Capability::NetAdmin]);
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.inheritable(),
            caps.permitted(),
            caps.ambient(),
        ] {
            assert_eq!(set.as_ref().map(|s| s.len()), Some(1));
        }
    }
}

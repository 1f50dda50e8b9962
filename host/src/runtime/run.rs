//! `run`: create and start in one command. In the foreground the runtime stays the parent of the
//! container's init: it forwards every signal it receives to it, reaps it, deletes the container
//! and exits with its status (128+n when it died of signal n), as runc does.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::create::{CreateOptions, create};
use super::delete::destroy;
use super::start::mark_running;
use super::state::StateRoot;
use crate::envelope::sync::{FromInit, ToInit};
use crate::error::{Context, Error, Result};
use crate::sys::socket::{recv, send};

/// Runs container `options.id`; returns the exit code to exit with (0 when `detach`).
pub fn run(root: &StateRoot, options: &CreateOptions, detach: bool) -> Result<i32> {
    let created = create(root, options)?;
    let (dir, mut record, sync) = (created.dir, created.record, created.sync);
    let init = Pid::from_raw(record.pid);

    // Block signals before the payload runs, so none is lost between its start and our wait;
    // they are taken with sigwait below. (The init was cloned before: its mask is untouched.)
    let forwarded = SigSet::all();
    if !detach {
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
            .with(|| "block signals".to_string())?;
    }
    send(&sync, &ToInit::Start)?;
    if let Some(FromInit::Failed(message)) = recv::<FromInit>(&sync)? {
        let _ = destroy(dir, &record);
        let _ = waitpid(init, None);
        return Err(Error::Step {
            step: "start".into(),
            message,
        });
    }
    mark_running(&dir, &mut record)?;
    if detach {
        return Ok(0);
    }
    // Release the lock while the container runs, so `kill`, `state` and `ps` work meanwhile.
    drop(dir);
    let code = wait_forwarding_signals(init, &forwarded)?;
    let (dir, record) = root.open(&options.id)?;
    destroy(dir, &record)?;
    Ok(code)
}

/// Forwards signals to `init` until it exits; returns its exit code.
fn wait_forwarding_signals(init: Pid, signals: &SigSet) -> Result<i32> {
    loop {
        if let Some(code) = reap(init)? {
            return Ok(code);
        }
        let signal = signals.wait().with(|| "sigwait".to_string())?;
        if signal != Signal::SIGCHLD {
            let _ = kill(init, signal);
        }
    }
}

/// Reaps exited children; returns the init's exit code once it has exited.
fn reap(init: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == init => {
                return Ok(Some(128 + signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).with(|| "waitpid".to_string()),
        }
    }
}

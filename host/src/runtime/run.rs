//! `run`: create and start in one command. In the foreground the runtime stays the parent of the
//! container's init: it forwards every signal it receives to it, reaps it, deletes the container
//! and exits with its status (128+n when it died of signal n), as runc does.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::create::{CreateOptions, create_from};
use super::delete::destroy;
use super::start::mark_running;
use super::state::StateRoot;
use super::timing;
use super::tty::Proxy;
use crate::envelope::sync::{FromInit, ToInit};
use crate::error::{Context, Error, Result};
use crate::spec::Bundle;
use crate::sys::socket::recv_fd;
use crate::sys::socket::{recv, send};

/// Runs container `options.id`; returns the exit code to exit with (0 when `detach`).
pub fn run(root: &StateRoot, options: &CreateOptions, detach: bool) -> Result<i32> {
    // `run` in the foreground with a terminal and no console socket proxies the pty itself.
    let bundle = Bundle::load(&options.bundle)?;
    timing::mark("bundle loaded");
    if bundle.process().is_none() {
        // `run` is create + start, and start needs a process: refuse before anything exists.
        return Err(crate::error::invalid(
            "config.json has no process: run needs one (create accepts a config without)",
        ));
    }
    let terminal = bundle.wants_terminal();
    let own_console = terminal && options.console_socket.is_none() && !detach;
    let (ours, theirs) = if own_console {
        let (a, b) = UnixStream::pair().with(|| "socketpair for the console".to_string())?;
        (Some(a), Some(OwnedFd::from(b)))
    } else {
        (None, None)
    };
    let created = create_from(root, options, bundle, theirs)?;
    let (dir, mut record, sync) = (created.dir, created.record, created.sync);
    let master = match &ours {
        Some(socket) => recv_fd(socket.as_raw_fd())?,
        None => None,
    };
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
    timing::mark("started (the payload exec'd)");
    if detach {
        return Ok(0);
    }
    // Release the lock while the container runs, so `kill`, `state` and `ps` work meanwhile.
    drop(dir);
    let code = Proxy::new(master, &forwarded)?.run(init)?;
    timing::mark("payload exited");
    let (dir, record) = root.open(&options.id)?;
    destroy(dir, &record)?;
    timing::mark("deleted");
    Ok(code)
}

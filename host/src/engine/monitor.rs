//! The per-container monitor (conmon's role): a process forked from the CLI, detached by a
//! double fork and `setsid`, that creates and starts the container in-process (so it is the
//! init's parent), holds the payload's stdout and stderr, writes them as Docker json-file lines,
//! reaps the init, records the exit code and cleans up. The container outlives the CLI.
//!
//! The CLI is single-threaded, so forking it is safe; the monitor never starts a thread either.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};

use super::container::{ContainerRecord, ExitRecord, now_rfc3339};
use super::error::{EngineError, Result, SysContext};
use super::{Engine, lifecycle};
use crate::runtime::{self, CreateOptions};

/// Forks the monitor for container `c` and returns once the payload runs (or with the error
/// that stopped it).
pub(crate) fn spawn(engine: &Engine, c: &ContainerRecord) -> Result<()> {
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?;
    // SAFETY: the CLI is single-threaded (no tokio, no thread is ever started), so the child
    // may run any code.
    match unsafe { fork() }.sys(|| "fork the monitor".to_owned())? {
        ForkResult::Child => {
            drop(report_r);
            let _ = setsid();
            // SAFETY: still single-threaded.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let code = monitor(engine, c, report_w);
                    // SAFETY: _exit skips the parent's atexit handlers and buffers, which
                    // belong to the CLI.
                    unsafe { libc::_exit(code) }
                }
                // SAFETY: as above.
                Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
                // SAFETY: as above.
                Err(_) => unsafe { libc::_exit(1) },
            }
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            let _ = waitpid(child, None);
            let mut text = String::new();
            let _ = std::fs::File::from(report_r).read_to_string(&mut text);
            match text.strip_prefix("ok") {
                Some(_) => Ok(()),
                None if text.is_empty() => Err(EngineError::Conflict(format!(
                    "the monitor of container {} died before starting it",
                    c.name
                ))),
                None => Err(EngineError::Conflict(text)),
            }
        }
    }
}

/// Closes every descriptor but 0, 1, 2 and `keep`.
fn close_others(keep: &[i32]) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor this process no longer uses (inherited from the CLI).
            unsafe { libc::close(fd) };
        }
    }
}

/// One stream of the payload: its pipe and the partial line not yet logged.
struct Stream {
    name: &'static str,
    fd: Option<OwnedFd>,
    partial: Vec<u8>,
}

/// Appends one json-file line.
fn log_line(log: &mut std::fs::File, stream: &str, bytes: &[u8]) {
    let line = serde_json::json!({
        "log": String::from_utf8_lossy(bytes),
        "stream": stream,
        "time": now_rfc3339(),
    });
    let _ = writeln!(log, "{line}");
}

impl Stream {
    /// Reads what is available; logs complete lines; returns false at end of file.
    fn pump(&mut self, log: &mut std::fs::File) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut buf = [0u8; 16384];
        match nix::unistd::read(fd, &mut buf) {
            // A pty master reads EIO once the last slave is closed: its end of file.
            Ok(0) | Err(nix::errno::Errno::EBADF | nix::errno::Errno::EIO) => {
                if !self.partial.is_empty() {
                    log_line(log, self.name, &std::mem::take(&mut self.partial));
                }
                self.fd = None;
                false
            }
            Ok(n) => {
                self.partial.extend_from_slice(&buf[..n]);
                while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.partial.drain(..=pos).collect();
                    log_line(log, self.name, &line);
                }
                true
            }
            Err(_) => true,
        }
    }
}

/// The monitor's body; returns its exit code.
fn monitor(engine: &Engine, c: &ContainerRecord, report: OwnedFd) -> i32 {
    let mut report = std::fs::File::from(report);
    let fail = |report: &mut std::fs::File, message: String| {
        let _ = report.write_all(message.as_bytes());
        let _ = runtime::delete(&engine.runtime, &c.id, true);
        1
    };
    let _ = std::env::set_current_dir("/");
    let setup = (|| -> Result<(OwnedFd, OwnedFd, std::fs::File)> {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| EngineError::Conflict(format!("open /dev/null: {e}")))?;
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?;
        nix::unistd::dup2_stdin(&null).sys(|| "dup2".to_owned())?;
        nix::unistd::dup2_stdout(&out_w).sys(|| "dup2".to_owned())?;
        nix::unistd::dup2_stderr(&err_w).sys(|| "dup2".to_owned())?;
        Ok((out_r, err_r, null))
    })();
    let (out_r, err_r, null) = match setup {
        Ok(s) => s,
        Err(e) => return fail(&mut report, format!("monitor setup: {e}")),
    };
    close_others(&[
        report.as_raw_fd(),
        out_r.as_raw_fd(),
        err_r.as_raw_fd(),
        null.as_raw_fd(),
    ]);
    let started = now_rfc3339();
    let options = CreateOptions {
        id: c.id.clone(),
        bundle: engine.container_dir(&c.id),
        ..CreateOptions::default()
    };
    // With `-t` the payload's stdio is a pty whose master this monitor holds (and logs), as
    // Docker's daemon does for `run -dt`.
    let (pid, terminal) = match runtime::create_holding_terminal(&engine.runtime, &options) {
        Ok((created, master)) => (created.record.pid, master),
        Err(e) => return fail(&mut report, e.to_string()),
    };
    if let Err(e) = runtime::start(&engine.runtime, &c.id) {
        let _ = waitpid(Pid::from_raw(pid), None);
        return fail(&mut report, e.to_string());
    }
    // Only the payload holds the pipes' write ends from now on.
    let _ = nix::unistd::dup2_stdout(&null);
    let _ = nix::unistd::dup2_stderr(&null);
    let _ = report.write_all(b"ok");
    drop(report);

    let log_path = engine.log_path(c);
    let mut log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        Ok(f) => f,
        Err(_) => match std::fs::File::create("/dev/null") {
            Ok(f) => f,
            Err(_) => return 1,
        },
    };
    // A terminal merges both streams; Docker logs it all as stdout.
    let (out, err) = match terminal {
        Some(master) => (master, None),
        None => (out_r, Some(err_r)),
    };
    let mut streams = [
        Stream {
            name: "stdout",
            fd: Some(out),
            partial: Vec::new(),
        },
        Stream {
            name: "stderr",
            fd: err,
            partial: Vec::new(),
        },
    ];
    let init = Pid::from_raw(pid);
    let mut exit: Option<(i32, Instant)> = None;
    loop {
        let open: Vec<usize> = (0..2).filter(|&i| streams[i].fd.is_some()).collect();
        if open.is_empty() && exit.is_some() {
            break;
        }
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .filter_map(|&i| streams[i].fd.as_ref())
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            let timeout = PollTimeout::from(100u16);
            if fds.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
                Vec::new()
            } else {
                let _ = poll(&mut fds, timeout);
                fds.iter()
                    .zip(&open)
                    .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(_, &i)| i)
                    .collect()
            }
        };
        for i in &ready {
            streams[*i].pump(&mut log);
        }
        if exit.is_none() {
            match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => exit = Some((code, Instant::now())),
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    exit = Some((128 + sig as i32, Instant::now()))
                }
                Err(nix::errno::Errno::ECHILD) => exit = Some((255, Instant::now())),
                _ => {}
            }
        }
        // A process the payload left behind may hold a pipe: stop reading a second after the
        // init exited when nothing more comes.
        if let Some((_, at)) = exit
            && ready.is_empty()
            && at.elapsed() > Duration::from_secs(1)
        {
            break;
        }
    }
    for s in &mut streams {
        if !s.partial.is_empty() {
            let p = std::mem::take(&mut s.partial);
            log_line(&mut log, s.name, &p);
        }
    }
    let code = exit.map_or(255, |(code, _)| code);
    let _ = engine.write_exit(
        c,
        &ExitRecord {
            code,
            started,
            finished: now_rfc3339(),
        },
    );
    let _ = runtime::delete(&engine.runtime, &c.id, true);
    let _ = lifecycle::unmount(&engine.rootfs_dir(c));
    if c.auto_remove {
        let _ = engine.remove_files(c);
    }
    0
}

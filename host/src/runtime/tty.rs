//! The foreground `run` loop: forward every signal to the container's init, reap it, and — when
//! the runtime holds the container's terminal itself — copy bytes between our terminal (in raw
//! mode) and the pty master, and pass window size changes on. One poll over a signalfd, stdin
//! and the master; no threads.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, read, write};

use crate::error::{Context, Result};

/// The foreground loop's state.
pub struct Proxy {
    signals: SignalFd,
    master: Option<OwnedFd>,
    /// Our terminal's settings before raw mode, restored on drop.
    saved: Option<Termios>,
    stdin_open: bool,
}

impl Proxy {
    /// Takes `signals` (already blocked) through a signalfd; puts stdin in raw mode when it is a
    /// terminal and we proxy a pty `master`.
    pub fn new(master: Option<OwnedFd>, signals: &SigSet) -> Result<Self> {
        let signals =
            SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).with(|| "signalfd".to_string())?;
        let stdin = std::io::stdin();
        let saved = match &master {
            Some(master) => {
                let saved = tcgetattr(stdin.as_fd()).ok();
                if let Some(original) = &saved {
                    let mut raw = original.clone();
                    cfmakeraw(&mut raw);
                    tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                        .with(|| "put the terminal in raw mode".to_string())?;
                }
                copy_window_size(stdin.as_fd(), master.as_fd());
                saved
            }
            None => None,
        };
        Ok(Self {
            signals,
            master,
            saved,
            stdin_open: true,
        })
    }

    /// Runs until `init` exits; returns its exit code (128+n for death by signal n).
    pub fn run(mut self, init: Pid) -> Result<i32> {
        loop {
            if let Some(code) = reap(init)? {
                self.drain_master();
                return Ok(code);
            }
            let stdin = std::io::stdin();
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let proxying = self.master.is_some();
            if let Some(master) = &self.master {
                fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
                if self.stdin_open {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).with(|| "poll".to_string()),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                self.forward_signal(init)?;
            }
            if proxying && ready.get(1) == Some(&true) && !self.copy_master_to_stdout() {
                // The slave side is gone (EIO): nothing more will come.
                self.master = None;
            }
            if proxying && ready.get(2) == Some(&true) {
                self.copy_stdin_to_master();
            }
        }
    }

    fn forward_signal(&mut self, init: Pid) -> Result<()> {
        let Some(info) = self
            .signals
            .read_signal()
            .with(|| "read signalfd".to_string())?
        else {
            return Ok(());
        };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
            return Ok(());
        };
        match signal {
            Signal::SIGCHLD => {}
            Signal::SIGWINCH if self.master.is_some() => {
                if let Some(master) = &self.master {
                    copy_window_size(std::io::stdin().as_fd(), master.as_fd());
                }
            }
            other => {
                let _ = kill(init, other);
            }
        }
        Ok(())
    }

    /// Copies what the container wrote; false once the pty is closed.
    fn copy_master_to_stdout(&mut self) -> bool {
        let Some(master) = &self.master else {
            return false;
        };
        let mut buf = [0u8; 8192];
        match read(master.as_fd(), &mut buf) {
            Ok(0) | Err(Errno::EIO) => false,
            Ok(n) => {
                write_all(std::io::stdout().as_fd(), &buf[..n]);
                true
            }
            Err(_) => true,
        }
    }

    fn copy_stdin_to_master(&mut self) {
        let Some(master) = &self.master else {
            return;
        };
        let mut buf = [0u8; 8192];
        match read(std::io::stdin().as_fd(), &mut buf) {
            Ok(0) | Err(_) => self.stdin_open = false,
            Ok(n) => write_all(master.as_fd(), &buf[..n]),
        }
    }

    /// After the init exits, copy what is still buffered in the pty.
    fn drain_master(&mut self) {
        let Some(master) = &self.master else {
            return;
        };
        let fd = master.as_raw_fd();
        // SAFETY: F_SETFL O_NONBLOCK on our own descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
        while self.copy_master_to_stdout() {}
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

fn write_all(fd: BorrowedFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn copy_window_size(from: BorrowedFd, to: BorrowedFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into `ws`; TIOCSWINSZ reads it. Both on our own fds.
    unsafe {
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
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
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(None),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).with(|| "waitpid".to_string()),
        }
    }
}

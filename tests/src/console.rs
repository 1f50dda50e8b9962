//! The receiving end of `--console-socket`: a unix socket the runtime connects to and sends the
//! pty master over (SCM_RIGHTS), and reading the payload's terminal output from that master.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};

/// A listening console socket.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> Result<Self> {
        let listener =
            UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("console socket O_NONBLOCK")?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master it sends.
    pub fn receive_master(&self, timeout: Duration) -> Result<OwnedFd> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        bail!("nobody connected to {} in {timeout:?}", self.path.display());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e).context("accept on the console socket"),
            }
        };
        stream
            .set_nonblocking(false)
            .context("console connection blocking")?;
        stream
            .set_read_timeout(Some(timeout))
            .context("console connection timeout")?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .context("recvmsg on the console socket")?;
        for c in msg.cmsgs().context("reading control messages")? {
            if let ControlMessageOwned::ScmRights(fds) = c
                && let Some(&fd) = fds.first()
            {
                // SAFETY: the kernel just installed this fd in our table for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        bail!("the runtime's console message carried no file descriptor")
    }
}

/// Reads from a pty master until the slave side is closed by everyone (EIO) or `timeout`.
pub fn read_until_hangup(master: &OwnedFd, timeout: Duration) -> Result<String> {
    read_pty(master, timeout, None)
}

/// Reads from `master` until what was read contains `needle` (the payload is at a known point,
/// e.g. about to `read` its input: typing earlier lets the tty's echo land in the middle of the
/// payload's output). Fails if the pty hangs up first or `timeout` passes.
pub fn read_until_contains(master: &OwnedFd, needle: &str, timeout: Duration) -> Result<String> {
    let out = read_pty(master, timeout, Some(needle))?;
    if !out.contains(needle) {
        bail!("the pty hung up before {needle:?} appeared; read: {out:?}");
    }
    Ok(out)
}

fn read_pty(master: &OwnedFd, timeout: Duration, needle: Option<&str>) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        if let Some(needle) = needle
            && String::from_utf8_lossy(&out).contains(needle)
        {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "{} within {timeout:?}; read so far: {:?}",
                match needle {
                    Some(n) => format!("{n:?} did not appear on the pty"),
                    None => "the pty was not hung up".to_owned(),
                },
                String::from_utf8_lossy(&out)
            );
        }
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(master),
            PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        poll(&mut fds, PollTimeout::from(ms)).context("poll on the pty master")?;
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("read from the pty master"),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

//! The container's terminal: a pty allocated from the container's own devpts, its master sent to
//! the caller over `--console-socket` (SCM_RIGHTS), its slave made the process's stdio and
//! controlling terminal and bind-mounted on /dev/console.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{posix_openpt, ptsname_r, unlockpt};
use nix::unistd::dup2_stdin;

use crate::error::{Context, Result};
use crate::sys::socket::send_fd;

/// Allocates the pty, hands the master to `console_socket` and makes the slave our terminal and
/// the container's /dev/console. Runs after pivot_root, so `/dev/ptmx` is the container's.
pub fn setup(console_socket: RawFd, size: Option<(u16, u16)>) -> Result<()> {
    attach(console_socket, size, true)
}

/// Like [`setup`] for a process `exec`'d in a running container: /dev/console is left alone, since
/// it belongs to the container (its init's terminal, in the mount namespace every process of the
/// container shares), as runc leaves it.
pub fn setup_for_exec(console_socket: RawFd, size: Option<(u16, u16)>) -> Result<()> {
    attach(console_socket, size, false)
}

fn attach(console_socket: RawFd, size: Option<(u16, u16)>, bind_dev_console: bool) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .with(|| "open /dev/ptmx".to_string())?;
    unlockpt(&master).with(|| "unlockpt".to_string())?;
    let slave_name = ptsname_r(&master).with(|| "ptsname".to_string())?;
    if let Some((height, width)) = size {
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_name)
        .with(|| format!("open {slave_name}"))?;
    send_fd(console_socket, &slave_name, master.as_raw_fd())?;
    drop(master);
    if bind_dev_console {
        // /dev/console is the terminal too, as on a real system.
        let console = Path::new("/dev/console");
        if !console.exists() {
            std::fs::File::create(console).with(|| "create /dev/console".to_string())?;
        }
        nix::mount::mount(
            Some(Path::new(&slave_name)),
            console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .with(|| format!("bind {slave_name} on /dev/console"))?;
    }
    dup2_stdin(&slave).with(|| "dup2 pty to stdin".to_string())?;
    nix::unistd::dup2_stdout(&slave).with(|| "dup2 pty to stdout".to_string())?;
    nix::unistd::dup2_stderr(&slave).with(|| "dup2 pty to stderr".to_string())?;
    // SAFETY: TIOCSCTTY on stdin (now the pty slave) with arg 0; no memory involved.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(nix::errno::Errno::last())
            .with(|| "make the pty the controlling terminal".to_string());
    }
    Ok(())
}

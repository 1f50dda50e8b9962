//! `kill`: send a signal to a container's init, or with `--all` to every process in its cgroup.

use nix::sys::signal::Signal;

use super::state::{StateRoot, Status};
use crate::error::{Context, Error, Result, invalid};
use crate::sys::pidfd::PidFd;

/// Parses a signal as runc does: `9`, `KILL` or `SIGKILL` (any case).
pub fn parse_signal(text: &str) -> Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(invalid(format!("signal {n} is out of range")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name
        .strip_prefix("SIGRTMIN+")
        .and_then(|n| n.parse::<i32>().ok())
    {
        return Ok(libc::SIGRTMIN() + rt);
    }
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| invalid(format!("unknown signal {text:?}")))
}

/// Sends `signal` to container `id`.
pub fn kill(root: &StateRoot, id: &str, signal: i32, all: bool) -> Result<()> {
    let (_dir, record) = root.open(id)?;
    let status = record.status();
    if status == Status::Stopped && !all {
        return Err(Error::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            // containerd's runc shim and podman treat a kill error as "already exited" only when
            // it says runc's words `container not running`: they are part of the interface.
            action: "kill: container not running",
        });
    }
    if all {
        if let Some(cgroup) = &record.cgroup {
            if signal == libc::SIGKILL {
                // Freezes first (or uses cgroup.kill), so nothing forks away, and works on a
                // paused container, whose frozen processes would otherwise not die.
                cgroup.kill_all()?;
            } else {
                cgroup.signal_all(signal)?;
            }
        }
        return Ok(());
    }
    let pidfd = PidFd::open(record.pid).with(|| format!("find the init of {id}"))?;
    pidfd
        .signal(signal)
        .with(|| format!("send signal {signal} to {id} (pid {})", record.pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_number_and_name() {
        assert_eq!(parse_signal("9").ok(), Some(9));
        assert_eq!(parse_signal("KILL").ok(), Some(9));
        assert_eq!(parse_signal("SIGTERM").ok(), Some(15));
        assert_eq!(parse_signal("term").ok(), Some(15));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}

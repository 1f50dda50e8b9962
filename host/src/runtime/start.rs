//! `start`: release a created container's init so it execs the payload, and report whether that
//! exec succeeded (runc cannot: its init execs after `start` has returned).

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
use std::os::fd::AsRawFd;

use super::START_SOCKET;
use super::create::short_path;
use super::state::{ContainerDir, Record, StateRoot, Status};
use crate::envelope::sync::{FromInit, ToInit};
use crate::error::{Context, Error, Result};
use crate::sys::socket::{recv, send};

/// Starts container `id`, which must be `created`.
pub fn start(root: &StateRoot, id: &str) -> Result<()> {
    let (dir, mut record) = root.open(id)?;
    let status = record.status();
    if status != Status::Created {
        return Err(Error::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            action: "start (only a created container can be started)",
        });
    }
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .with(|| "socket(AF_UNIX, SOCK_SEQPACKET)".to_string())?;
    let path = short_path(&dir, START_SOCKET)?;
    let addr = UnixAddr::new(&path).with(|| format!("socket address {}", path.display()))?;
    connect(fd.as_raw_fd(), &addr).with(|| format!("connect to the init of {id}"))?;
    send(&fd, &ToInit::Start)?;
    // End of file means the init exec'd (its end is close-on-exec): the payload runs.
    if let Some(FromInit::Failed(message)) = recv::<FromInit>(&fd)? {
        return Err(Error::Step {
            step: "start".into(),
            message,
        });
    }
    let _ = std::fs::remove_file(dir.path().join(START_SOCKET));
    super::timing::mark("started (the payload exec'd)");
    mark_running(&dir, &mut record)
}

/// Records the container as running and runs the poststart hooks. A failing poststart hook is
/// logged as a warning and the others still run; the container goes on, as the runtime spec says.
pub(crate) fn mark_running(dir: &ContainerDir, record: &mut Record) -> Result<()> {
    record.recorded_status = Status::Running;
    dir.write(record)?;
    let hooks = record.hooks.as_ref().and_then(|h| h.poststart().as_ref());
    if hooks.is_some() {
        let state = serde_json::to_string(&record.oci_state(Status::Running)).unwrap_or_default();
        crate::hooks::run_hooks_warning("poststart", hooks, &state);
    }
    Ok(())
}

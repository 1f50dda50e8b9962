//! `delete`: remove a container: its processes (with `--force` if it still runs), its cgroup, the
//! poststop hooks, its state.

use std::time::Duration;

use super::state::{ContainerDir, Record, StateRoot, Status};
use crate::cgroups::Layout;
use crate::error::{Error, Result};
use crate::hooks::run_hooks;
use crate::sys::pidfd::PidFd;

/// Deletes container `id`. A running or paused container needs `force`; a created one is
/// deleted without (its init has not run the payload yet).
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let (dir, record) = root.open(id)?;
    let status = record.status();
    match status {
        Status::Stopped | Status::Created | Status::Creating => {}
        Status::Running | Status::Paused if force => {}
        Status::Running | Status::Paused => {
            return Err(Error::WrongStatus {
                id: id.to_string(),
                status: status.to_string(),
                action: "delete (stop it first or use --force)",
            });
        }
    }
    destroy(dir, &record)
}

/// Kills whatever is left of the container and removes it.
pub(crate) fn destroy(dir: ContainerDir, record: &Record) -> Result<()> {
    let layout = Layout::detect()?;
    let init = PidFd::open(record.pid)
        .ok()
        .filter(|_| record.status() != Status::Stopped);
    match (&record.cgroup, &init) {
        (Some(cgroup), _) => cgroup.kill_all(&layout)?,
        (None, Some(init)) => {
            let _ = init.signal(libc::SIGKILL);
        }
        (None, None) => {}
    }
    if let Some(init) = init {
        let _ = init.wait_exit(Duration::from_secs(5));
    }
    if let Some(cgroup) = &record.cgroup {
        cgroup.remove()?;
    }
    let hooks = record.hooks.as_ref().and_then(|h| h.poststop().as_ref());
    if hooks.is_some() {
        let state = serde_json::to_string(&record.oci_state(Status::Stopped)).unwrap_or_default();
        if let Err(e) = run_hooks("poststop", hooks, &state) {
            log::warn!("{e}");
        }
    }
    dir.remove()
}

//! `delete`: remove a container: its processes (with `--force` if it still runs), its cgroup, the
//! poststop hooks, its state.

use std::time::Duration;

use super::state::{ContainerDir, Record, StateRoot, Status};
use crate::error::{Error, Result};
use crate::hooks::run_hooks_warning;
use crate::sys::pidfd::PidFd;

/// Deletes container `id`. One that is not stopped (`created`, `running`, `paused`) needs
/// `force`, which kills it first: runtime.md says deleting a container that is not stopped MUST
/// generate an error (runc deletes a `created` one without `--force`; capsa does not). A
/// `creating` record is what a create that died half-way left behind (a live create holds the
/// directory's lock), and is removed.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let (dir, record) = root.open(id)?;
    let status = record.status();
    match status {
        Status::Stopped | Status::Creating => {}
        Status::Created | Status::Running | Status::Paused if force => {}
        Status::Created | Status::Running | Status::Paused => {
            return Err(Error::WrongStatus {
                id: id.to_string(),
                status: status.to_string(),
                action: "delete a container that is not stopped (kill it first, or use --force)",
            });
        }
    }
    destroy(dir, &record)
}

/// Kills whatever is left of the container and removes it.
pub(crate) fn destroy(dir: ContainerDir, record: &Record) -> Result<()> {
    let init = PidFd::open(record.pid)
        .ok()
        .filter(|_| record.status() != Status::Stopped);
    match (&record.cgroup, &init) {
        (Some(cgroup), _) => cgroup.kill_all()?,
        (None, Some(init)) => {
            let _ = init.signal(libc::SIGKILL);
        }
        (None, None) => {}
    }
    if let Some(init) = init {
        let _ = init.wait_exit(Duration::from_secs(5));
    }
    super::timing::mark("processes ended");
    if let Some(cgroup) = &record.cgroup {
        cgroup.remove()?;
    }
    super::timing::mark("cgroup removed");
    let hooks = record.hooks.as_ref().and_then(|h| h.poststop().as_ref());
    if hooks.is_some() {
        let state = serde_json::to_string(&record.oci_state(Status::Stopped)).unwrap_or_default();
        run_hooks_warning("poststop", hooks, &state);
    }
    dir.remove()
}

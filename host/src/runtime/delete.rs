//! `delete`: remove a container: its processes (with `--force` if it still runs), its cgroup, the
//! poststop hooks, its state.

use std::time::Duration;

use super::state::{ContainerDir, Record, StateRoot, Status};
use crate::cgroups::Cgroup;
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
    if let Ok(pidfd) = PidFd::open(record.pid)
        && record.status() != Status::Stopped
    {
        let _ = pidfd.signal(libc::SIGKILL);
        if let Some(cgroup) = &record.cgroup {
            thaw(cgroup);
        }
        let _ = pidfd.wait_exit(Duration::from_secs(5));
    }
    if let Some(cgroup) = &record.cgroup {
        cgroup.signal_all(libc::SIGKILL)?;
        thaw(cgroup);
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

/// Thaws a frozen cgroup (v1 freezer or v2 cgroup.freeze), so killed processes can die.
pub(crate) fn thaw(cgroup: &Cgroup) {
    for dir in cgroup.all_dirs() {
        let v1 = dir.join("freezer.state");
        if v1.exists() {
            let _ = std::fs::write(v1, "THAWED");
        }
        let v2 = dir.join("cgroup.freeze");
        if v2.exists() {
            let _ = std::fs::write(v2, "0");
        }
    }
}

//! Control of a live container's cgroup: `pause` and `resume` (the freezer), `update` (change its
//! resources).

use oci_spec::runtime::LinuxResources;

use super::state::{Record, StateRoot, Status};
use crate::cgroups::{Cgroup, Layout};
use crate::error::{Error, Result, invalid};

fn cgroup_of(record: &Record) -> Result<&Cgroup> {
    record
        .cgroup
        .as_ref()
        .ok_or_else(|| invalid(format!("container {:?} has no cgroup", record.id)))
}

fn require(record: &Record, wanted: &[Status], action: &'static str) -> Result<Status> {
    let status = record.status();
    if wanted.contains(&status) {
        Ok(status)
    } else {
        Err(Error::WrongStatus {
            id: record.id.clone(),
            status: status.to_string(),
            action,
        })
    }
}

/// Freezes every process of container `id`, which must be running.
pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let (_dir, record) = root.open(id)?;
    require(&record, &[Status::Running], "pause: container not running")?;
    cgroup_of(&record)?.freeze(&Layout::detect()?)
}

/// Thaws container `id`, which must be paused.
pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let (_dir, record) = root.open(id)?;
    require(
        &record,
        &[Status::Paused],
        "resume (only a paused container can be resumed)",
    )?;
    cgroup_of(&record)?.thaw(&Layout::detect()?)
}

/// Applies `resources` to container `id` (created, running or paused). Only the fields given
/// change; a value the kernel refuses (a memory limit below current usage, an impossible cpuset)
/// fails with the field named and leaves the container running.
pub fn update(root: &StateRoot, id: &str, resources: &LinuxResources) -> Result<()> {
    let (_dir, record) = root.open(id)?;
    require(
        &record,
        &[Status::Created, Status::Running, Status::Paused],
        "update: container not running",
    )?;
    cgroup_of(&record)?.apply(&Layout::detect()?, resources, false)
}

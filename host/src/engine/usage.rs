//! `capsa top` and `capsa stats`: a running container's processes and resource usage, read from
//! the cgroup its runtime record names, as `docker top` and `docker stats` show them.

use crate::cgroups::Cgroup;
use crate::cgroups::stats::Stats;
use crate::runtime::Status;

use super::Engine;
use super::container::ContainerRecord;
use super::error::{EngineError, Result};

impl Engine {
    /// The cgroup of a running (or paused) container.
    fn running_cgroup(&self, c: &ContainerRecord) -> Result<Cgroup> {
        let record = self
            .runtime
            .list()?
            .into_iter()
            .find(|r| r.id == c.id && matches!(r.status(), Status::Running | Status::Paused));
        record
            .and_then(|r| r.cgroup)
            .ok_or_else(|| EngineError::Conflict(format!("container {} is not running", c.name)))
    }

    /// The host pids of the container's processes.
    pub fn processes(&self, c: &ContainerRecord) -> Result<Vec<i32>> {
        Ok(self.running_cgroup(c)?.pids()?)
    }

    /// The container's cgroup usage now (CPU time, memory, pids, block I/O).
    pub fn stats(&self, c: &ContainerRecord) -> Result<Stats> {
        Ok(self.running_cgroup(c)?.stats()?)
    }
}

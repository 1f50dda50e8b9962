//! `top`, `stats` and sizes: a running container's pids and cgroup usage, read from the cgroup
//! its runtime record names; one usage [`Sample`] with the host's CPU time beside it (what
//! Docker's CPU % is computed from); how many bytes a directory holds (`ps -s`, `system df`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use crate::cgroups::Cgroup;
use crate::cgroups::stats::Stats;
use crate::runtime::Status;

use super::Engine;
use super::container::{ContainerRecord, now_rfc3339};
use super::error::{EngineError, Result};

/// One usage sample of a container.
pub struct Sample {
    /// The cgroup's counters.
    pub stats: Stats,
    /// The host's CPU time in nanoseconds (all CPUs), Docker's `system_cpu_usage`.
    pub system_cpu_ns: u64,
    /// Online CPUs.
    pub online_cpus: u64,
    /// The memory limit as Docker shows it: the cgroup's, or the host's memory.
    pub limit: u64,
    /// RFC 3339, when it was read.
    pub read: String,
    /// The same, for computing rates.
    pub at: Instant,
}

impl Sample {
    /// Memory in use as `docker stats` counts it: usage without the inactive file cache.
    pub fn memory_used(&self) -> u64 {
        let cache = ["total_inactive_file", "inactive_file"]
            .iter()
            .find_map(|k| self.stats.memory.raw.get(*k).copied())
            .unwrap_or(0);
        self.stats.memory.usage.usage.saturating_sub(cache)
    }

    /// CPU % since `before` as the docker CLI computes it (100% = one CPU).
    pub fn cpu_percent(&self, before: &Sample) -> f64 {
        let cpu = self
            .stats
            .cpu
            .usage
            .total
            .saturating_sub(before.stats.cpu.usage.total) as f64;
        let system = self.system_cpu_ns.saturating_sub(before.system_cpu_ns) as f64;
        if system > 0.0 && cpu > 0.0 {
            cpu / system * self.online_cpus as f64 * 100.0
        } else {
            0.0
        }
    }
}

/// The host's memory in bytes (Docker shows it as the limit of an unlimited container).
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb * 1024)
}

/// The host's CPU time (`/proc/stat`'s first line, in nanoseconds) and its online CPUs.
fn system_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf takes a constant and returns a number.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut total = 0;
    let mut cpus = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            total = rest
                .split_whitespace()
                .take(7)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum::<u64>()
                * (1_000_000_000 / ticks);
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    (total, cpus.max(1))
}

/// The apparent size of everything under `dir` (0 when it does not exist); links are not
/// followed, hard links counted once.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

impl Engine {
    /// The cgroup of a running (or paused) container.
    fn running_cgroup(&self, c: &ContainerRecord) -> Result<Cgroup> {
        self.runtime
            .record(&c.id)
            .filter(|r| matches!(r.status(), Status::Running | Status::Paused))
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

    /// One usage sample of a running container.
    pub fn sample(&self, c: &ContainerRecord) -> Result<Sample> {
        let stats = self.stats(c)?;
        let (system_cpu_ns, online_cpus) = system_cpu();
        let host = host_memory();
        let limit = match stats.memory.usage.limit {
            0 => host,
            l => l.min(host),
        };
        Ok(Sample {
            stats,
            system_cpu_ns,
            online_cpus,
            limit,
            read: now_rfc3339(),
            at: Instant::now(),
        })
    }
}

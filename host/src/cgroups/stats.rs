//! Resource usage of a container's cgroup, in the JSON shape of runc's `events` (so tools that
//! parse runc's output parse capsa's), read through cgroups-rs; and the OOM-kill counter that
//! `events` watches.

use std::collections::BTreeMap;

use cgroups_rs::manager::{FsManager, Manager};
use serde::Serialize;

use super::{Cgroup, Layout};
use crate::error::{Error, Result};

/// `data` of a runc `stats` event.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Usage>,
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    /// Nanoseconds of CPU time, all CPUs.
    pub total: u64,
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub usage: Usage,
    pub swap: Usage,
    pub kernel: Usage,
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Usage {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Pids {
    pub current: u64,
    pub limit: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

fn limit(value: i64) -> u64 {
    if value < 0 { u64::MAX } else { value as u64 }
}

impl Cgroup {
    /// The cgroup's current usage.
    pub fn stats(&self) -> Result<Stats> {
        let base = self
            .path
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        let manager = FsManager::new(&base).map_err(|e| Error::Step {
            step: format!("open cgroup {}", self.path.display()),
            message: e.to_string(),
        })?;
        let raw = manager.stats();
        let mut stats = Stats::default();
        let has_cpuacct = raw.cpu.cpu_acct.is_some();
        if let Some(acct) = raw.cpu.cpu_acct {
            stats.cpu.usage = CpuUsage {
                total: acct.total_usage,
                percpu: acct.usage_percpu,
                kernel: acct.system_usage,
                user: acct.user_usage,
            };
        }
        if !has_cpuacct && let Some(dir) = &self.unified {
            // cgroup v2 has no cpuacct: cpu.stat (in every cgroup) counts microseconds.
            let text = std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix(name)?
                            .strip_prefix(' ')?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .map_or(0, |usec| usec.saturating_mul(1000))
            };
            stats.cpu.usage.total = field("usage_usec");
            stats.cpu.usage.user = field("user_usec");
            stats.cpu.usage.kernel = field("system_usec");
        }
        if let Some(t) = raw.cpu.cpu_throttling {
            stats.cpu.throttling = Throttling {
                periods: t.periods,
                throttled_periods: t.throttled_periods,
                throttled_time: t.throttled_time,
            };
        }
        let m = raw.memory;
        let usage = |s: Option<cgroups_rs::stats::MemoryStats>| {
            s.map(|s| Usage {
                limit: limit(s.limit),
                usage: s.usage,
                max: s.max_usage,
                failcnt: s.fail_cnt,
            })
            .unwrap_or_default()
        };
        stats.memory.usage = usage(m.memory);
        stats.memory.swap = usage(m.memory_swap);
        stats.memory.kernel = usage(m.kernel_memory);
        for (key, value) in [
            ("cache", m.cache),
            ("rss", m.rss),
            ("rss_huge", m.rss_huge),
            ("shmem", m.shmem),
            ("mapped_file", m.mapped_file),
            ("dirty", m.dirty),
            ("writeback", m.writeback),
            ("swap", m.swap),
            ("pgfault", m.pgfault),
            ("pgmajfault", m.pgmajfault),
            ("inactive_anon", m.inactive_anon),
            ("active_anon", m.active_anon),
            ("inactive_file", m.inactive_file),
            ("active_file", m.active_file),
            ("unevictable", m.unevictable),
        ] {
            stats.memory.raw.insert(key.to_string(), value);
        }
        stats.pids = Pids {
            current: raw.pids.current,
            limit: limit(raw.pids.limit),
        };
        let entries = |v: Vec<cgroups_rs::stats::BlkioStat>| {
            v.into_iter()
                .map(|e| BlkioEntry {
                    major: e.major,
                    minor: e.minor,
                    op: e.op,
                    value: e.value,
                })
                .collect()
        };
        stats.blkio.io_service_bytes_recursive = entries(raw.blkio.io_service_bytes_recursive);
        stats.blkio.io_serviced_recursive = entries(raw.blkio.io_serviced_recursive);
        for (size, h) in raw.hugetlb {
            stats.hugetlb.insert(
                size,
                Usage {
                    limit: 0,
                    usage: h.usage,
                    max: h.max_usage,
                    failcnt: h.fail_cnt,
                },
            );
        }
        Ok(stats)
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup so far.
    pub fn oom_kills(&self, layout: &Layout) -> u64 {
        let (dir, file) = if layout.is_pure_v2() {
            (self.unified.clone(), "memory.events")
        } else {
            (self.controller_dir(layout, "memory"), "memory.oom_control")
        };
        dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }
}

//! `GET /containers/{id}/stats`: Docker's stats object from two samples of the container's
//! cgroup (the docker CLI computes CPU % from the deltas of `cpu_stats` and `precpu_stats`,
//! memory from `usage` minus the inactive file cache).

use serde_json::{Value, json};

use crate::engine::usage::Sample;

/// One stats object: `now`, with `before` as `precpu_stats` (zeroes for the first).
pub fn stats_json(name: &str, id: &str, now: &Sample, before: Option<&Sample>) -> Value {
    let cpu = |s: Option<&Sample>| match s {
        Some(s) => json!({
            "cpu_usage": {
                "total_usage": s.stats.cpu.usage.total,
                "percpu_usage": if s.stats.cpu.usage.percpu.is_empty() { Value::Null } else { json!(s.stats.cpu.usage.percpu) },
                "usage_in_kernelmode": s.stats.cpu.usage.kernel,
                "usage_in_usermode": s.stats.cpu.usage.user,
            },
            "system_cpu_usage": s.system_cpu_ns,
            "online_cpus": s.online_cpus,
            "throttling_data": {
                "periods": s.stats.cpu.throttling.periods,
                "throttled_periods": s.stats.cpu.throttling.throttled_periods,
                "throttled_time": s.stats.cpu.throttling.throttled_time,
            },
        }),
        None => json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        }),
    };
    let m = &now.stats.memory;
    let blkio =
        |entries: &[crate::cgroups::stats::BlkioEntry]| -> Value {
            if entries.is_empty() {
                return Value::Null;
            }
            json!(entries
            .iter()
            .map(|e| json!({ "major": e.major, "minor": e.minor, "op": e.op, "value": e.value }))
            .collect::<Vec<_>>())
        };
    json!({
        "name": format!("/{name}"),
        "id": id,
        "read": now.read,
        "preread": before.map_or("0001-01-01T00:00:00Z".to_owned(), |b| b.read.clone()),
        "pids_stats": { "current": now.stats.pids.current, "limit": now.stats.pids.limit },
        "blkio_stats": {
            "io_service_bytes_recursive": blkio(&now.stats.blkio.io_service_bytes_recursive),
            "io_serviced_recursive": blkio(&now.stats.blkio.io_serviced_recursive),
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu(Some(now)),
        "precpu_stats": cpu(before),
        "memory_stats": {
            "usage": m.usage.usage,
            "max_usage": m.usage.max,
            "failcnt": m.usage.failcnt,
            "limit": now.limit,
            "stats": m.raw,
        },
    })
}

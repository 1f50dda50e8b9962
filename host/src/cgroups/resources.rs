//! `linux.resources` applied to a container's cgroup: through cgroups-rs for the fields it knows
//! (cpu, cpuset, memory, pids, blockIO, hugepages, network, v1 devices), directly for the
//! `unified` key/values, and with a BPF program for device rules on cgroup v2. Each field is
//! applied on its own so an error names the field the host could not honour. No field is
//! silently ignored: what cgroups-rs leaves out (kernelTCP, useHierarchy, checkBeforeUpdate,
//! rdma, unknown hugepage sizes, v2's missing swappiness/OOM switch) is done here, refused with
//! the reason, or (the deprecated kernel-memory no-ops) warned about.

use cgroups_rs::manager::{FsManager, Manager};
use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory, LinuxRdma, LinuxResources,
};

use super::{Cgroup, Layout, device_filter};
use crate::error::{Context, Error, Result, invalid};

/// Devices every container may use whatever its rules say, as runc allows them: the standard
/// nodes, the terminal devices and /dev/net/tun. Appended after the config's rules (the last
/// matching rule wins). Unlike runc, capsa does not also allow mknod of every device, so a rule
/// that denies a device denies creating it too.
const ALWAYS_ALLOWED: [(LinuxDeviceType, Option<i64>, Option<i64>); 10] = [
    (LinuxDeviceType::C, Some(1), Some(3)),
    (LinuxDeviceType::C, Some(1), Some(5)),
    (LinuxDeviceType::C, Some(1), Some(7)),
    (LinuxDeviceType::C, Some(1), Some(8)),
    (LinuxDeviceType::C, Some(1), Some(9)),
    (LinuxDeviceType::C, Some(5), Some(0)),
    (LinuxDeviceType::C, Some(5), Some(1)),
    (LinuxDeviceType::C, Some(5), Some(2)),
    (LinuxDeviceType::C, Some(136), None),
    (LinuxDeviceType::C, Some(10), Some(200)),
];

/// A v1 device rule as the kernel reads it from `devices.allow`/`devices.deny`: `TYPE MAJ:MIN
/// ACCESS`, a missing (or -1) number being `*`, a missing type `a` (all devices) and a missing
/// access `rwm`, as in the v2 filter (device_filter.rs). An unbuffered character device (`u`) is a
/// character device; a fifo (`p`) is nothing the cgroup controls: `None`.
fn v1_device_rule(rule: &LinuxDeviceCgroup) -> Option<String> {
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => return None,
    };
    let number = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access: String = rule
        .access()
        .as_deref()
        .unwrap_or("rwm")
        .chars()
        .filter(|c| matches!(c, 'r' | 'w' | 'm'))
        .collect();
    Some(format!(
        "{typ} {}:{} {access}",
        number(rule.major()),
        number(rule.minor())
    ))
}

/// Writes `rules`, in order, to the v1 devices cgroup `dir`: each rule is one `write` (the kernel
/// parses one per call) to `devices.allow` or `devices.deny`, each file opened once. (cgroups-rs
/// opened the file again for every rule and first read mountinfo twice to find the hierarchy:
/// a dozen rules cost ~40 syscalls more on every container start.)
fn write_v1_device_rules(dir: &std::path::Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    use std::io::Write;
    let mut allow: Option<std::fs::File> = None;
    let mut deny: Option<std::fs::File> = None;
    for rule in rules {
        let Some(line) = v1_device_rule(rule) else {
            continue;
        };
        let (slot, name) = if rule.allow() {
            (&mut allow, "devices.allow")
        } else {
            (&mut deny, "devices.deny")
        };
        let path = dir.join(name);
        let file = match slot {
            Some(file) => file,
            None => slot.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with(|| format!("open {}", path.display()))?,
            ),
        };
        file.write_all(line.as_bytes())
            .with(|| format!("write {line:?} to {}", path.display()))?;
    }
    Ok(())
}

/// The device rules to enforce: the config's, then the always-allowed ones.
pub fn effective_device_rules(configured: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let mut rules = configured.to_vec();
    for (typ, major, minor) in ALWAYS_ALLOWED {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(major);
        rule.set_minor(minor);
        rule.set_access(Some("rwm".to_string()));
        rules.push(rule);
    }
    rules
}

impl Cgroup {
    /// Applies `resources` to the cgroup. `initial` is true at create, when the device rules get
    /// the always-allowed devices appended; `update` passes only what it changes.
    pub fn apply(&self, layout: &Layout, resources: &LinuxResources, initial: bool) -> Result<()> {
        let base = self
            .path
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        // Opened on first use: cgroups-rs reads /proc/self/cgroup and mountinfo (twice) to
        // find its hierarchies, which a container with only device rules (the default spec's:
        // those are written below without it) does not need on the start path.
        let mut manager: Option<FsManager> = None;
        let mut set = |field: &str, partial: LinuxResources| -> Result<()> {
            let manager = match &mut manager {
                Some(m) => m,
                None => manager.insert(FsManager::new(&base).map_err(|e| Error::Step {
                    step: format!("open cgroup {}", self.path.display()),
                    message: e.to_string(),
                })?),
            };
            manager.set(&partial).map_err(|e| Error::Step {
                step: format!(
                    "apply linux.resources.{field} to cgroup {}",
                    self.path.display()
                ),
                message: describe(&e),
            })
        };
        if let Some(cpu) = resources.cpu() {
            if cpu.idle().is_some() || cpu.burst().is_some() {
                self.apply_cpu_extras(layout, cpu.idle(), cpu.burst())?;
            }
            let mut partial = LinuxResources::default();
            partial.set_cpu(Some(cpu.clone()));
            set("cpu", partial)?;
        }
        if let Some(memory) = resources.memory() {
            self.check_memory_usage(layout, memory)?;
            let mut partial = LinuxResources::default();
            partial.set_memory(Some(*memory));
            set("memory", partial)?;
            self.apply_memory_extras(layout, memory)?;
        }
        if let Some(pids) = resources.pids() {
            let mut partial = LinuxResources::default();
            partial.set_pids(Some(*pids));
            set("pids", partial)?;
        }
        if let Some(block_io) = resources.block_io() {
            let mut partial = LinuxResources::default();
            partial.set_block_io(Some(block_io.clone()));
            set("blockIO", partial)?;
        }
        if let Some(hugepages) = resources
            .hugepage_limits()
            .as_ref()
            .filter(|h| !h.is_empty())
        {
            self.check_hugepage_sizes(layout, hugepages)?;
            let mut partial = LinuxResources::default();
            partial.set_hugepage_limits(Some(hugepages.clone()));
            set("hugepageLimits", partial)?;
        }
        if let Some(network) = resources.network() {
            if layout.is_pure_v2() {
                return Err(invalid(
                    "linux.resources.network (net_cls/net_prio) needs cgroup v1; this host is cgroup v2",
                ));
            }
            let mut partial = LinuxResources::default();
            partial.set_network(Some(network.clone()));
            set("network", partial)?;
        }
        if let Some(devices) = resources.devices() {
            let rules = if initial {
                effective_device_rules(devices)
            } else {
                devices.clone()
            };
            if layout.is_pure_v2() {
                let dir = self
                    .unified
                    .as_ref()
                    .ok_or_else(|| invalid("no cgroup v2 directory"))?;
                device_filter::install(dir, &rules)?;
            } else {
                let dir = self
                    .controller_dir(layout, "devices")
                    .ok_or_else(|| invalid("no devices cgroup on this host"))?;
                write_v1_device_rules(&dir, &rules)?;
            }
        }
        if let Some(rdma) = resources.rdma().as_ref().filter(|r| !r.is_empty()) {
            self.apply_rdma(layout, rdma)?;
        }
        if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
            self.apply_unified(layout, unified)?;
        }
        Ok(())
    }

    /// The memory fields cgroups-rs leaves out (it ignores kernel, kernelTCP and useHierarchy
    /// everywhere, swappiness and disableOOMKiller on v2): set where the host has them, a clear
    /// error where a limit cannot be honoured, a warning for the deprecated no-ops.
    #[allow(deprecated)]
    fn apply_memory_extras(&self, layout: &Layout, memory: &LinuxMemory) -> Result<()> {
        if layout.is_pure_v2() {
            if memory.kernel().is_some() {
                log::warn!(
                    "linux.resources.memory.kernel is ignored: cgroup v2 has no separate kernel \
                     memory limit (kernel memory counts toward memory.max)"
                );
            }
            if memory.kernel_tcp().is_some() {
                log::warn!(
                    "linux.resources.memory.kernelTCP is ignored: cgroup v2 has no TCP buffer \
                     limit (TCP memory counts toward memory.max)"
                );
            }
            if memory.swappiness().is_some() {
                return Err(invalid(
                    "linux.resources.memory.swappiness cannot be applied: cgroup v2 has no \
                     per-cgroup swappiness",
                ));
            }
            if memory.disable_oom_killer() == Some(true) {
                return Err(invalid(
                    "linux.resources.memory.disableOOMKiller cannot be applied: cgroup v2 cannot \
                     disable the OOM killer for a cgroup",
                ));
            }
            if memory.use_hierarchy() == Some(false) {
                return Err(invalid(
                    "linux.resources.memory.useHierarchy false cannot be applied: cgroup v2 is \
                     always hierarchical",
                ));
            }
            return Ok(());
        }
        let dir = self.controller_dir(layout, "memory").ok_or_else(|| {
            invalid("linux.resources.memory: the host has no memory cgroup controller")
        })?;
        if let Some(limit) = memory.kernel_tcp() {
            write_field(
                &dir,
                "memory.kmem.tcp.limit_in_bytes",
                &limit.to_string(),
                "memory.kernelTCP",
            )?;
        }
        if let Some(limit) = memory.kernel() {
            let file = dir.join("memory.kmem.limit_in_bytes");
            let applied = std::fs::write(&file, limit.to_string()).is_ok()
                && std::fs::read_to_string(&file).is_ok_and(|v| v.trim() == limit.to_string());
            if !applied {
                log::warn!(
                    "linux.resources.memory.kernel is ignored: this kernel no longer limits \
                     kernel memory separately (a no-op since Linux 5.16; it counts toward \
                     memory.limit_in_bytes)"
                );
            }
        }
        if let Some(hierarchical) = memory.use_hierarchy() {
            let value = if hierarchical { "1" } else { "0" };
            let file = dir.join("memory.use_hierarchy");
            let current = std::fs::read_to_string(&file).unwrap_or_default();
            if current.trim() != value {
                std::fs::write(&file, value).map_err(|e| {
                    invalid(format!(
                        "linux.resources.memory.useHierarchy {hierarchical} cannot be applied: \
                         write {value} to {}: {e} (kernels since 6.x are always hierarchical)",
                        file.display()
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// `checkBeforeUpdate`: a new limit below what the cgroup already uses is refused rather
    /// than written (which would make the kernel reclaim or OOM-kill).
    fn check_memory_usage(&self, layout: &Layout, memory: &LinuxMemory) -> Result<()> {
        if memory.check_before_update() != Some(true) {
            return Ok(());
        }
        let (dir, usage_file) = if layout.is_pure_v2() {
            (self.unified.clone(), "memory.current")
        } else {
            (
                self.controller_dir(layout, "memory"),
                "memory.usage_in_bytes",
            )
        };
        let Some(dir) = dir else { return Ok(()) };
        let Ok(usage) = std::fs::read_to_string(dir.join(usage_file)) else {
            return Ok(());
        };
        let usage: i64 = usage.trim().parse().unwrap_or(0);
        for (field, limit) in [("limit", memory.limit()), ("swap", memory.swap())] {
            if let Some(limit) = limit.filter(|l| *l > 0)
                && limit < usage
            {
                return Err(invalid(format!(
                    "linux.resources.memory.{field} {limit} is below the cgroup's current usage \
                     {usage} (checkBeforeUpdate is set)"
                )));
            }
        }
        Ok(())
    }

    /// Every hugepage size named must exist on this host: cgroups-rs skips unknown sizes.
    fn check_hugepage_sizes(&self, layout: &Layout, limits: &[LinuxHugepageLimit]) -> Result<()> {
        let (dir, suffix) = if layout.is_pure_v2() {
            (self.unified.clone(), "max")
        } else {
            (self.controller_dir(layout, "hugetlb"), "limit_in_bytes")
        };
        let dir = dir.ok_or_else(|| {
            invalid("linux.resources.hugepageLimits: the host has no hugetlb cgroup controller")
        })?;
        for limit in limits {
            let file = format!("hugetlb.{}.{suffix}", limit.page_size());
            if !dir.join(&file).exists() {
                return Err(invalid(format!(
                    "linux.resources.hugepageLimits: page size {:?} is not supported here (no {file})",
                    limit.page_size()
                )));
            }
        }
        Ok(())
    }

    /// `linux.resources.rdma`: one `rdma.max` line per device (v1's rdma hierarchy or v2).
    fn apply_rdma(
        &self,
        layout: &Layout,
        rdma: &std::collections::HashMap<String, LinuxRdma>,
    ) -> Result<()> {
        let dir = if layout.is_pure_v2() {
            self.unified.clone()
        } else {
            self.controller_dir(layout, "rdma")
        }
        .ok_or_else(|| invalid("linux.resources.rdma: the host has no rdma cgroup controller"))?;
        for (device, limits) in rdma {
            let mut line = device.clone();
            if let Some(handles) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={handles}"));
            }
            if let Some(objects) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={objects}"));
            }
            write_field(&dir, "rdma.max", &line, &format!("rdma.{device}"))?;
        }
        Ok(())
    }

    /// cpu.idle and cpu.max.burst (v2) / cpu.cfs_burst_us (v1), which cgroups-rs does not set.
    fn apply_cpu_extras(
        &self,
        layout: &Layout,
        idle: Option<i64>,
        burst: Option<u64>,
    ) -> Result<()> {
        let cpu_dir = if layout.is_pure_v2() {
            self.unified.clone()
        } else {
            self.controller_dir(layout, "cpu")
        }
        .ok_or_else(|| invalid("linux.resources.cpu: the host has no cpu controller"))?;
        if let Some(idle) = idle {
            write_field(&cpu_dir, "cpu.idle", &idle.to_string(), "cpu.idle")?;
        }
        if let Some(burst) = burst {
            let file = if layout.is_pure_v2() {
                "cpu.max.burst"
            } else {
                "cpu.cfs_burst_us"
            };
            write_field(&cpu_dir, file, &burst.to_string(), "cpu.burst")?;
        }
        Ok(())
    }

    /// `linux.resources.unified`: cgroup v2 files written as given.
    fn apply_unified(
        &self,
        layout: &Layout,
        unified: &std::collections::HashMap<String, String>,
    ) -> Result<()> {
        let dir = match (&self.unified, layout.is_pure_v2()) {
            (Some(dir), true) => dir,
            _ => {
                return Err(invalid(
                    "linux.resources.unified needs a cgroup v2 host; this host is cgroup v1",
                ));
            }
        };
        for (key, value) in unified {
            if key.contains('/') || key.starts_with('.') {
                return Err(invalid(format!(
                    "linux.resources.unified key {key:?} is not a file name"
                )));
            }
            write_field(dir, key, value, &format!("unified.{key}"))?;
        }
        Ok(())
    }

    /// The directory of this cgroup in the v1 hierarchy that has `controller`.
    pub fn controller_dir(&self, layout: &Layout, controller: &str) -> Option<std::path::PathBuf> {
        layout
            .hierarchies()
            .iter()
            .zip(&self.dirs)
            .find(|(h, _)| h.controllers.iter().any(|c| c == controller))
            .map(|(_, d)| d.clone())
    }
}

fn write_field(dir: &std::path::Path, file: &str, value: &str, field: &str) -> Result<()> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(invalid(format!(
            "linux.resources.{field}: this host's cgroup has no {file} (kernel or controller missing)"
        )));
    }
    std::fs::write(&path, value).with(|| {
        format!(
            "linux.resources.{field}: write {value:?} to {}",
            path.display()
        )
    })
}

/// A cgroups-rs error in one line (its Display already carries the cause).
fn describe(e: &cgroups_rs::manager::Error) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> LinuxDeviceCgroup {
        serde_json::from_value(json).expect("a device rule")
    }

    #[test]
    fn v1_device_rules_are_written_as_the_kernel_reads_them() {
        let cases = [
            (
                serde_json::json!({"allow": false, "access": "rwm"}),
                "a *:* rwm",
            ),
            (
                serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}),
                "c 1:3 rw",
            ),
            (
                serde_json::json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}),
                "c 136:* rwm",
            ),
            (
                serde_json::json!({"allow": true, "type": "b", "major": -1, "minor": -1, "access": "m"}),
                "b *:* m",
            ),
            (
                serde_json::json!({"allow": true, "type": "u", "major": 4, "minor": 1}),
                "c 4:1 rwm",
            ),
            (
                serde_json::json!({"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rxw"}),
                "c 5:0 rw",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(
                v1_device_rule(&rule(json.clone())).as_deref(),
                Some(expected),
                "{json}"
            );
        }
        assert_eq!(
            v1_device_rule(&rule(serde_json::json!({"allow": true, "type": "p"}))),
            None
        );
    }
}

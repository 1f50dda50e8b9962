//! Payload probes: a busybox `sh` script that prints named facts about the container from the
//! inside, and the parsers for what it prints.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Capability;

const BEGIN: &str = "@@capsa-fact-begin ";
const END: &str = "@@capsa-fact-end ";

/// A list of named shell commands to run in the payload, in order.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    facts: Vec<(String, String)>,
}

impl Probe {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds fact `name`: the stdout+stderr and exit status of shell command `command`.
    pub fn fact(mut self, name: &str, command: &str) -> Self {
        self.facts.push((name.to_owned(), command.to_owned()));
        self
    }

    /// The payload's view of itself, as compared between runtimes.
    pub fn standard() -> Self {
        Self::new()
            .fact("status", "cat /proc/self/status")
            .fact("id", "id")
            .fact("hostname", "hostname")
            .fact("domainname", "cat /proc/sys/kernel/domainname")
            .fact("mountinfo", "cat /proc/self/mountinfo")
            .fact("limits", "cat /proc/self/limits")
            .fact("cwd", "pwd")
            .fact("env", "env | sort")
            .fact("umask", "umask")
            .fact("uid_map", "cat /proc/self/uid_map")
            .fact("gid_map", "cat /proc/self/gid_map")
    }

    /// The script, for `sh -c`. The script exits 0 whatever its facts' commands return.
    pub fn script(&self) -> String {
        let mut s = String::new();
        for (name, command) in &self.facts {
            s.push_str(&format!(
                "echo '{BEGIN}{name}'; ( {command} ) 2>&1; s=$?; echo; echo \"{END}{name} $s\"\n"
            ));
        }
        s
    }
}

/// Output and exit status of one fact's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub output: String,
    pub status: i32,
}

/// The facts a probe printed.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    map: BTreeMap<String, Fact>,
}

impl Facts {
    /// Parses the payload's stdout. Text outside fact markers is ignored.
    pub fn parse(stdout: &str) -> Result<Self> {
        let mut map = BTreeMap::new();
        let mut current: Option<(String, Vec<&str>)> = None;
        for line in stdout.lines() {
            if let Some(name) = line.strip_prefix(BEGIN) {
                current = Some((name.to_owned(), Vec::new()));
            } else if let Some(rest) = line.strip_prefix(END) {
                let (name, body) = current
                    .take()
                    .with_context(|| format!("fact end without begin: {line:?}"))?;
                let (end_name, status) = rest
                    .rsplit_once(' ')
                    .with_context(|| format!("bad fact end line {line:?}"))?;
                if end_name != name {
                    bail!("fact {name} ended as {end_name}");
                }
                let output = body.join("\n").trim_end_matches('\n').to_owned();
                let status = status.parse().context("fact exit status")?;
                map.insert(name, Fact { output, status });
            } else if let Some((_, body)) = current.as_mut() {
                body.push(line);
            }
        }
        if let Some((name, _)) = current {
            bail!("fact {name} never ended: the payload died while printing it\n{stdout}");
        }
        Ok(Self { map })
    }

    pub fn get(&self, name: &str) -> Result<&Fact> {
        self.map
            .get(name)
            .with_context(|| format!("the payload did not print fact {name:?}"))
    }

    /// Output of fact `name`.
    pub fn out(&self, name: &str) -> Result<&str> {
        Ok(self.get(name)?.output.as_str())
    }

    /// Output of fact `name`, which must have exited 0.
    pub fn ok(&self, name: &str) -> Result<&str> {
        let fact = self.get(name)?;
        if fact.status != 0 {
            bail!(
                "fact {name} exited {}: {}",
                fact.status,
                fact.output.trim_end()
            );
        }
        Ok(fact.output.as_str())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

/// The value of `field` in a /proc/<pid>/status text (`CapEff`, `NoNewPrivs`, `Groups`, ...).
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim())
    })
}

/// Capability names in kernel bit order (include/uapi/linux/capability.h).
pub const CAPABILITY_BITS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit mask /proc/<pid>/status shows for a set of capabilities.
pub fn cap_mask<'a>(caps: impl IntoIterator<Item = &'a Capability>) -> Result<u64> {
    let mut mask = 0u64;
    for cap in caps {
        let name = serde_json::to_value(cap).context("capability name")?;
        let name = name.as_str().context("capability serialises as a string")?;
        let bit = CAPABILITY_BITS
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("unknown capability {name}"))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// Parses a `Cap*` value of /proc/<pid>/status.
pub fn parse_cap_hex(value: &str) -> Result<u64> {
    u64::from_str_radix(value.trim(), 16).with_context(|| format!("bad capability mask {value:?}"))
}

/// /proc/<pid>/limits as `name → (soft, hard)`, e.g. `"Max open files" → ("1024", "1024")`.
pub fn parse_limits(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            // Columns are fixed width: name (26 chars), soft (21), hard (21), units.
            let name = l.get(..26)?.trim().to_owned();
            let rest: Vec<&str> = l.get(26..)?.split_whitespace().collect();
            Some((name, (rest.first()?.to_string(), rest.get(1)?.to_string())))
        })
        .collect()
}

//! The OCI runtime spec of a container, built from the image config (Entrypoint, Cmd, Env,
//! WorkingDir, User, Volumes, Healthcheck, and the wasm markers) and the `run`/`create`
//! options, with Docker's rules for combining them. [`RunOptions`] is what both front doors
//! hand the engine: the CLI fills it from flags, the daemon from Docker's create body
//! (`engine::api`). Every option is checked here, before anything is created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{Result, invalid};
use super::user::Identity;

/// `--network`: Docker's `NetworkMode`, stored as its word (`none`, `host`, a network's name,
/// `container:ID`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Network {
    /// Docker's default: the default bridge, or `none` where the engine has none
    /// (`--bridge none`). `create` records which.
    #[default]
    Default,
    /// A new network namespace with only loopback.
    None,
    /// The host's network namespace.
    Host,
    /// A bridge network by name (`bridge` is the default bridge; others are user networks).
    Bridge(String),
    /// Another container's network namespace (the id, or the name before create resolves it).
    Container(String),
}

impl Network {
    /// Parses Docker's `NetworkMode` (`default` is the default bridge, as dockerd reads it).
    pub fn parse(mode: &str) -> Network {
        match mode {
            "none" => Network::None,
            "host" => Network::Host,
            "" | "default" => Network::Default,
            other => match other.strip_prefix("container:") {
                Some(target) => Network::Container(target.to_owned()),
                None => Network::Bridge(other.to_owned()),
            },
        }
    }

    /// Docker's `NetworkMode` word.
    pub fn mode(&self) -> String {
        match self {
            Network::Default => "default".to_owned(),
            Network::None => "none".to_owned(),
            Network::Host => "host".to_owned(),
            Network::Bridge(name) => name.clone(),
            Network::Container(id) => format!("container:{id}"),
        }
    }
}

impl From<String> for Network {
    fn from(mode: String) -> Network {
        Network::parse(&mode)
    }
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        n.mode()
    }
}

/// `--restart`: Docker's restart policies, carried out by the container's monitor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no` (or empty), `always`, `unless-stopped`, `on-failure`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// For `on-failure`: restarts at most this many times (0: no bound).
    #[serde(rename = "MaximumRetryCount", default)]
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    /// Parses `--restart no|always|unless-stopped|on-failure[:N]`.
    pub fn parse(text: &str) -> Result<RestartPolicy> {
        let (name, count) = match text.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (text, None),
        };
        let maximum_retry_count = match count {
            Some(c) if name == "on-failure" => {
                c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    invalid(
                        format!("--restart {text:?}"),
                        "the count must be a number ≥ 0",
                    )
                })?
            }
            Some(_) => {
                return Err(invalid(
                    format!("--restart {text:?}"),
                    "only on-failure takes a count",
                ));
            }
            None => 0,
        };
        let policy = RestartPolicy {
            name: name.to_owned(),
            maximum_retry_count,
        };
        policy.check()?;
        Ok(policy)
    }

    /// Checks the name (and that only `on-failure` has a count, as dockerd does).
    pub fn check(&self) -> Result<()> {
        match self.name.as_str() {
            "" | "no" | "always" | "unless-stopped" if self.maximum_retry_count == 0 => Ok(()),
            "on-failure" if self.maximum_retry_count >= 0 => Ok(()),
            "" | "no" | "always" | "unless-stopped" => Err(invalid(
                format!("restart policy {:?}", self.name),
                "maximum retry count cannot be used with this policy",
            )),
            other => Err(invalid(
                format!("restart policy {other:?}"),
                "use no, always, unless-stopped or on-failure[:N]",
            )),
        }
    }

    /// Whether any restart can happen.
    pub fn restarts(&self) -> bool {
        !matches!(self.name.as_str(), "" | "no")
    }
}

/// Docker's `Healthcheck` (image config and `--health-*`): durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    /// `["CMD", prog, args...]`, `["CMD-SHELL", command]`, `["NONE"]`, or empty (inherit).
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `--ulimit NAME=SOFT[:HARD]`, Docker's `Ulimits` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Soft")]
    pub soft: i64,
    #[serde(rename = "Hard")]
    pub hard: i64,
}

impl Ulimit {
    /// Parses `nofile=1024:2048` (or `nofile=1024`).
    pub fn parse(text: &str) -> Result<Ulimit> {
        let bad = || invalid(format!("--ulimit {text:?}"), "expected NAME=SOFT[:HARD]");
        let (name, limits) = text.split_once('=').ok_or_else(bad)?;
        let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
        Ok(Ulimit {
            name: name.to_owned(),
            soft: soft.parse().map_err(|_| bad())?,
            hard: hard.parse().map_err(|_| bad())?,
        })
    }
}

/// Refuses a ulimit whose name is not a resource or whose soft limit is above its hard one.
pub fn check_ulimit(u: &Ulimit) -> Result<()> {
    if u.soft > u.hard {
        return Err(invalid(
            format!("--ulimit {}", u.name),
            format!("soft limit {} is above hard limit {}", u.soft, u.hard),
        ));
    }
    ulimit_resource(&u.name)?;
    Ok(())
}

/// `--mount` / `HostConfig.Mounts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountSpec {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// A host path (bind) or a volume name (volume; empty: a new anonymous volume).
    pub source: String,
    /// The path in the container.
    pub target: String,
    pub read_only: bool,
    /// A volume: do not copy the image's content into a new volume.
    pub no_copy: bool,
    /// A tmpfs: its size in bytes (0: the kernel's default).
    pub tmpfs_size: i64,
    /// A tmpfs: its mode (0: 1777).
    pub tmpfs_mode: u32,
}

/// Cgroup limits (`-m`, `--cpus`, ... / HostConfig's resource fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory plus swap, bytes; -1: unlimited swap.
    pub memory_swap: Option<i64>,
    /// Soft limit, bytes.
    pub memory_reservation: Option<i64>,
    /// CPUs (Docker's NanoCpus / 1e9).
    pub cpus: Option<f64>,
    /// Relative weight (Docker's 2..262144, default 1024).
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in µs.
    pub cpu_period: Option<u64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit` (≤ 0: unlimited).
    pub pids_limit: Option<i64>,
    /// `--blkio-weight` (10..1000).
    pub blkio_weight: Option<u16>,
    /// `--oom-kill-disable`: the kernel does not OOM-kill the container's processes (cgroup v1;
    /// cgroup v2 has no such switch, and dockerd drops it there with a warning).
    pub oom_kill_disable: bool,
}

/// Everything `create` takes: the flags of `capsa create`/`run`, or Docker's create body.
/// Kept in the container's record (inspect shows it as `HostConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// The image (name or id).
    pub image: String,
    /// The command after the image: replaces the image's Cmd.
    pub command: Vec<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `KEY=VALUE` entries (a bare `KEY` removes the image's). Front doors resolve `-e KEY`
    /// and `--env-file` from the caller's side first ([`resolve_env`]).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
    /// `--group-add`: names (in the container's /etc/group) or gids.
    pub group_add: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--domainname`.
    pub domainname: Option<String>,
    /// `--entrypoint`: replaces the image's; `Some([])` (or `[""]`) clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `-v SRC:DST[:OPTS]` (SRC a host path or a volume name) or `-v DST` (anonymous).
    pub volumes: Vec<String>,
    /// `--mount`.
    pub mounts: Vec<MountSpec>,
    /// `--tmpfs DST[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// Cgroup limits.
    pub resources: Resources,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--network`.
    pub network: Network,
    /// `-t`.
    pub tty: bool,
    /// `-i`: the container's stdin is open (fed by attached clients).
    pub interactive: bool,
    /// Close stdin when the first attached client detaches (`docker run -i`).
    pub stdin_once: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--cgroup-parent`: the container's cgroup is `<parent>/<id>` (default `/capsa`).
    pub cgroup_parent: Option<String>,
    /// `--stop-signal`: what `stop` sends first (default: the image's StopSignal, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<i64>,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--health-*` (over the image's HEALTHCHECK).
    pub healthcheck: Option<Healthcheck>,
    /// `--expose` and `-p` ports (`80/tcp`), kept for inspect.
    pub exposed_ports: Vec<String>,
    /// `-p`: Docker's `PortBindings` (`{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`).
    pub port_bindings: Value,
    /// `-P`: every exposed port on a random host port.
    #[serde(default)]
    pub publish_all: bool,
    /// `--network-alias`: more DNS names on the (first) user network.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `--ip`: the container's address on its (first) user network.
    #[serde(default)]
    pub ip: Option<String>,
    /// `--mac-address`.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// `--cap-add` (`ALL` for every one).
    pub cap_add: Vec<String>,
    /// `--cap-drop` (`ALL` for every one).
    pub cap_drop: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--add-host NAME:IP`.
    pub extra_hosts: Vec<String>,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `--init`: a tiny init (catatonit, tini) as pid 1 that reaps and forwards signals.
    pub init: bool,
    /// `--sysctl`.
    pub sysctls: BTreeMap<String, String>,
    /// `--shm-size` in bytes.
    pub shm_size: Option<i64>,
    /// `--oom-score-adj`.
    pub oom_score_adj: Option<i32>,
    /// `--pid host`, `--ipc host`, `--uts host`: share the host's namespace.
    pub pid_host: bool,
    pub ipc_host: bool,
    pub uts_host: bool,
    /// `--log-driver`: `json-file` (default) or `none`.
    pub log_driver: Option<String>,
    /// `--log-opt`.
    pub log_opts: BTreeMap<String, String>,
    /// `--privileged`: every capability, every host device, no seccomp filter, /sys and the
    /// cgroup tree writable, no masked or read-only paths (dockerd's meaning).
    pub privileged: bool,
    /// `--pid container:NAME`, `--ipc container:NAME`: join that container's namespace (the
    /// name as given; resolved to the container at create, its init's namespace at each start).
    pub pid_container: Option<String>,
    pub ipc_container: Option<String>,
    /// `--ipc none`: a private IPC namespace without /dev/shm.
    pub ipc_none: bool,
    /// `--userns host`: no remapping for this container even when the engine remaps.
    pub userns_host: bool,
    /// `--device`.
    pub devices: Vec<super::DeviceMapping>,
    /// `--device-cgroup-rule`.
    pub device_cgroup_rules: Vec<String>,
    /// `--platform`.
    pub platform: Option<String>,
}

/// What dockerd warns about (and then ignores) for these options on this host, in its words;
/// both front doors show them.
pub fn create_warnings(options: &RunOptions) -> Vec<String> {
    let mut warnings = Vec::new();
    if options.resources.oom_kill_disable && host_is_pure_v2() {
        warnings.push(
            "Your kernel does not support OomKillDisable. OomKillDisable discarded.".to_owned(),
        );
    }
    let publishes = options
        .port_bindings
        .as_object()
        .is_some_and(|m| !m.is_empty())
        || options.publish_all;
    if publishes && options.network == Network::Host {
        warnings.push("Published ports are discarded when using host network mode".to_owned());
    }
    warnings
}

/// Whether this host's cgroups are v2 only (asked only when an option depends on it: it reads
/// the mount table).
fn host_is_pure_v2() -> bool {
    crate::cgroups::Layout::detect().is_ok_and(|l| l.is_pure_v2())
}

/// Parses Docker's byte sizes: `1024`, `64k`, `512m`, `1g` (binary multiples).
pub fn parse_bytes(text: &str) -> Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(format!("size {text:?}"), "expected a number with k, m or g"))
}

/// Parses Go durations as Docker's flags take them (`30s`, `1m30s`, `500ms`, `2h`) into
/// nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64> {
    let bad = || {
        invalid(
            format!("duration {text:?}"),
            "expected e.g. 30s, 1m30s, 500ms",
        )
    };
    let mut total: f64 = 0.0;
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Ok(total as i64)
}

/// Resolves `-e` and `--env-file` on the caller's side, as the docker CLI does: `KEY` alone
/// takes the caller's value (and is dropped when unset), files give `KEY=VALUE` lines.
pub fn resolve_env(env: &[String], env_files: &[PathBuf]) -> Result<Vec<String>> {
    let mut all = Vec::new();
    for file in env_files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| invalid(format!("--env-file {}", file.display()), e.to_string()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            all.push(line.to_owned());
        }
    }
    all.extend(env.iter().cloned());
    let mut resolved = Vec::new();
    for e in all {
        match e.split_once('=') {
            Some(_) => resolved.push(e),
            None if e.is_empty() => return Err(invalid("-e \"\"", "empty variable name")),
            None => {
                if let Ok(value) = std::env::var(&e) {
                    resolved.push(format!("{e}={value}"));
                }
            }
        }
    }
    Ok(resolved)
}

/// A validated host-path bind.
#[derive(Debug, Clone)]
pub(crate) struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// A validated named (or, with an empty name, new anonymous) volume mount.
#[derive(Debug, Clone)]
pub(crate) struct VolumeMount {
    pub name: String,
    pub destination: String,
    pub read_only: bool,
    pub no_copy: bool,
}

/// Options parsed and checked, before anything exists.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub binds: Vec<Bind>,
    pub volumes: Vec<VolumeMount>,
    pub tmpfs: Vec<(String, Vec<String>)>,
    pub env: Vec<String>,
    /// Capabilities of the process (Docker's set with `--cap-add`/`--cap-drop` applied).
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    /// `--security-opt apparmor=PROFILE` (checked: the kernel has AppArmor).
    pub apparmor_profile: Option<String>,
    /// `--security-opt seccomp=PROFILE.json`, converted for this container's capabilities.
    pub seccomp: Option<Value>,
    /// `--security-opt systempaths=unconfined`: no masked or read-only /proc and /sys paths.
    pub unconfined_system_paths: bool,
    /// `--device`, `--device-cgroup-rule` and `--privileged`'s host devices.
    pub devices: super::devices::Devices,
    /// The host's init binary for `--init`.
    pub init: Option<PathBuf>,
}

fn absolute_dest(dest: &str, what: &str) -> Result<String> {
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
        return Err(invalid(
            format!("{what} {dest:?}"),
            "the container path must be absolute, without ..",
        ));
    }
    let trimmed = dest.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

/// Docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_volume_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && name.len() <= 255
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("volume name {name:?}"),
            "use [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at least two characters)",
        ))
    }
}

/// Docker's default capabilities.
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, by name (for `--cap-add ALL`).
fn all_capabilities() -> Vec<String> {
    caps::all()
        .into_iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What "every capability" means for `--privileged` and `--cap-add ALL`: the ones this process
/// can still pass on (its bounding set). A host (or an outer container) that dropped one, as
/// this kind of machine drops CAP_SYS_RESOURCE, would otherwise make every privileged start
/// fail in capset, as it does under dockerd 20.10 with runc; podman does the same.
fn grantable_capabilities() -> Vec<String> {
    match caps::read(None, caps::CapSet::Bounding) {
        Ok(set) => set
            .into_iter()
            .map(|c| c.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        Err(_) => all_capabilities(),
    }
}

/// `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`, checked against the kernel's
/// names.
fn capability_name(name: &str) -> Result<String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if all_capabilities().contains(&full) {
        Ok(full)
    } else {
        Err(invalid(
            format!("capability {name:?}"),
            "unknown capability",
        ))
    }
}

/// The capability set by Docker's rules: the defaults, minus `--cap-drop` (`ALL` drops every
/// one), plus `--cap-add` (`ALL` adds every one).
fn capabilities(options: &RunOptions) -> Result<Vec<String>> {
    // dockerd ignores --cap-add/--cap-drop for a privileged container (and so does capsa).
    if options.privileged {
        return Ok(grantable_capabilities());
    }
    let is_all = |c: &String| c.eq_ignore_ascii_case("all");
    let mut set: Vec<String> = if options.cap_drop.iter().any(is_all) {
        Vec::new()
    } else {
        let drop: Vec<String> = options
            .cap_drop
            .iter()
            .map(|c| capability_name(c))
            .collect::<Result<_>>()?;
        CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if options.cap_add.iter().any(is_all) {
        return Ok(grantable_capabilities());
    }
    for c in &options.cap_add {
        let name = capability_name(c)?;
        if !set.contains(&name) {
            set.push(name);
        }
    }
    Ok(set)
}

/// The host's init for `--init`: Docker's `docker-init`, else tini, else podman's catatonit.
fn find_init() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(PathBuf::from("/usr/libexec/docker"));
    dirs.push(PathBuf::from("/usr/libexec/podman"));
    for name in ["docker-init", "tini-static", "tini", "catatonit"] {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(invalid(
        "--init",
        "no init binary on this host (docker-init, tini or catatonit)",
    ))
}

/// Checks every option, before anything exists.
pub(crate) fn check(options: &RunOptions) -> Result<Checked> {
    let mut binds = Vec::new();
    let mut volumes = Vec::new();
    for v in &options.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [d] => ("", *d, None),
            [s, d] => (*s, *d, None),
            [s, d, m] => (*s, *d, Some(*m)),
            _ => return Err(invalid(format!("-v {v:?}"), "expected [SRC:]DST[:OPTS]")),
        };
        let mut read_only = false;
        let mut no_copy = false;
        for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" | "readonly" => read_only = true,
                "rw" => read_only = false,
                "nocopy" => no_copy = true,
                // SELinux relabelling and propagation modes change nothing here.
                "z" | "Z" | "private" | "rprivate" | "slave" | "rslave" | "delegated"
                | "cached" | "consistent" => {}
                other => {
                    return Err(invalid(
                        format!("-v {v:?}"),
                        format!("unknown option {other:?}"),
                    ));
                }
            }
        }
        let destination = absolute_dest(dst, "-v")?;
        if src.starts_with('/') {
            binds.push(Bind {
                source: PathBuf::from(src),
                destination,
                read_only,
            });
        } else {
            if !src.is_empty() {
                validate_volume_name(src)?;
            }
            volumes.push(VolumeMount {
                name: src.to_owned(),
                destination,
                read_only,
                no_copy,
            });
        }
    }
    let mut tmpfs = Vec::new();
    for t in &options.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
        let mut list: Vec<String> = ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
        list.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
        tmpfs.push((absolute_dest(dst, "--tmpfs")?, list));
    }
    for m in &options.mounts {
        let what = format!("--mount target={}", m.target);
        let destination = absolute_dest(&m.target, "--mount target")?;
        match m.kind.as_str() {
            "bind" => {
                if !m.source.starts_with('/') {
                    return Err(invalid(
                        what,
                        "a bind's source must be an absolute host path",
                    ));
                }
                if !Path::new(&m.source).exists() {
                    return Err(invalid(
                        what,
                        format!("bind source path does not exist: {}", m.source),
                    ));
                }
                binds.push(Bind {
                    source: PathBuf::from(&m.source),
                    destination,
                    read_only: m.read_only,
                });
            }
            "volume" => {
                if !m.source.is_empty() {
                    validate_volume_name(&m.source)?;
                }
                volumes.push(VolumeMount {
                    name: m.source.clone(),
                    destination,
                    read_only: m.read_only,
                    no_copy: m.no_copy,
                });
            }
            "tmpfs" => {
                let mut list: Vec<String> =
                    ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
                if m.tmpfs_size > 0 {
                    list.push(format!("size={}", m.tmpfs_size));
                }
                list.push(format!(
                    "mode={:o}",
                    if m.tmpfs_mode == 0 {
                        0o1777
                    } else {
                        m.tmpfs_mode
                    }
                ));
                if m.read_only {
                    list.push("ro".into());
                }
                tmpfs.push((destination, list));
            }
            other => {
                return Err(invalid(
                    what,
                    format!("mount type {other:?} is not supported (bind, volume, tmpfs)"),
                ));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let destinations = binds
        .iter()
        .map(|b| &b.destination)
        .chain(volumes.iter().map(|v| &v.destination))
        .chain(tmpfs.iter().map(|(d, _)| d));
    for d in destinations {
        if !seen.insert(d.clone()) {
            return Err(invalid(
                format!("mount point {d:?}"),
                "duplicate mount point",
            ));
        }
    }
    if let Some(signal) = &options.stop_signal {
        crate::runtime::parse_signal(signal)
            .map_err(|e| invalid(format!("--stop-signal {signal:?}"), e.to_string()))?;
    }
    let mut env = Vec::new();
    for e in &options.env {
        match e.split_once('=') {
            Some(("", _)) => return Err(invalid(format!("-e {e:?}"), "empty variable name")),
            _ if e.is_empty() => return Err(invalid("-e \"\"", "empty variable name")),
            _ => env.push(e.clone()),
        }
    }
    let r = &options.resources;
    if let Some(cpus) = r.cpus
        && !(cpus > 0.0 && cpus <= 1024.0)
    {
        return Err(invalid(format!("--cpus {cpus}"), "must be above 0"));
    }
    if let Some(m) = r.memory
        && m < 6 << 20
    {
        return Err(invalid(
            format!("--memory {m}"),
            "the minimum memory limit is 6MB",
        ));
    }
    if let Some(swap) = r.memory_swap
        && swap != -1
        && r.memory.is_none_or(|m| swap < m)
    {
        return Err(invalid(
            format!("--memory-swap {swap}"),
            "must be -1 or at least --memory (which it needs)",
        ));
    }
    if let Some(p) = r.cpu_period
        && !(1000..=1_000_000).contains(&p)
    {
        return Err(invalid(
            format!("--cpu-period {p}"),
            "must be between 1000 and 1000000 µs",
        ));
    }
    if let Some(q) = r.cpu_quota
        && q != -1
        && q < 1000
    {
        return Err(invalid(
            format!("--cpu-quota {q}"),
            "must be at least 1000 µs",
        ));
    }
    if let Some(w) = r.blkio_weight
        && !(10..=1000).contains(&w)
    {
        return Err(invalid(
            format!("--blkio-weight {w}"),
            "must be between 10 and 1000",
        ));
    }
    for u in &options.ulimits {
        check_ulimit(u)?;
    }
    if let Some(parent) = &options.cgroup_parent
        && (!parent.starts_with('/') || parent.split('/').any(|c| c == ".."))
    {
        return Err(invalid(
            format!("--cgroup-parent {parent:?}"),
            "must be an absolute cgroup path",
        ));
    }
    options.restart.check()?;
    if options.auto_remove && options.restart.restarts() {
        return Err(invalid(
            "--restart",
            "conflicting options: --restart and --rm (a removed container cannot restart)",
        ));
    }
    if let Some(h) = &options.healthcheck {
        check_healthcheck(h)?;
    }
    let mut no_new_privileges = false;
    let mut apparmor_profile = None;
    // Docker's order: the default profile unless `seccomp=` names another or unconfined.
    let mut seccomp_choice = SeccompChoice::Default;
    let mut unconfined_system_paths = false;
    for opt in &options.security_opt {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map_or((opt.as_str(), ""), |(k, v)| (k, v));
        let flag = || format!("--security-opt {opt}");
        match (key, value) {
            ("no-new-privileges", "" | "true") => no_new_privileges = true,
            ("no-new-privileges", "false") => no_new_privileges = false,
            ("seccomp", "unconfined") => seccomp_choice = SeccompChoice::Unconfined,
            ("apparmor", "unconfined") | ("label", "disable") => {}
            ("seccomp", path) if !path.is_empty() => {
                seccomp_choice = SeccompChoice::Profile(path.to_string())
            }
            ("apparmor", profile) if !profile.is_empty() => {
                if !crate::envelope::lsm::apparmor_enabled() {
                    return Err(invalid(flag(), "AppArmor is not enabled in this kernel"));
                }
                apparmor_profile = Some(profile.to_string());
            }
            ("label", _) => {
                return Err(invalid(
                    flag(),
                    if crate::envelope::lsm::selinux_enabled() {
                        "SELinux labels are not supported by capsa yet (label=disable is)"
                    } else {
                        "SELinux is not enabled on this host"
                    },
                ));
            }
            ("systempaths", "unconfined") => unconfined_system_paths = true,
            _ => {
                return Err(invalid(
                    flag(),
                    "supported: no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json, \
                     apparmor=unconfined|PROFILE, label=disable, systempaths=unconfined",
                ));
            }
        }
    }
    for h in &options.extra_hosts {
        let ok = h.split_once([':', '=']).is_some_and(|(name, ip)| {
            !name.is_empty() && (ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok())
        });
        if !ok {
            return Err(invalid(format!("--add-host {h:?}"), "expected NAME:IP"));
        }
    }
    for d in &options.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(format!("--dns {d:?}"), "not an IP address"));
        }
    }
    match options.log_driver.as_deref() {
        None | Some("") | Some("json-file") | Some("none") => {}
        Some(other) => {
            return Err(invalid(
                format!("--log-driver {other:?}"),
                "supported: json-file, none",
            ));
        }
    }
    for d in &options.devices {
        d.check()?;
    }
    let mut devices = super::devices::resolve(&options.devices, &options.device_cgroup_rules)?;
    if options.privileged {
        let all = super::devices::all_host_devices()?;
        devices.nodes.splice(0..0, all.nodes);
        devices.rules.extend(all.rules);
    }
    for k in options.sysctls.keys() {
        let namespaced = k.starts_with("net.")
            || k.starts_with("fs.mqueue.")
            || matches!(
                k.as_str(),
                "kernel.msgmax"
                    | "kernel.msgmnb"
                    | "kernel.msgmni"
                    | "kernel.sem"
                    | "kernel.shmall"
                    | "kernel.shmmax"
                    | "kernel.shmmni"
                    | "kernel.shm_rmid_forced"
            );
        if !namespaced {
            return Err(invalid(
                format!("--sysctl {k}"),
                "not a namespaced sysctl (net.*, fs.mqueue.*, kernel.msg*, kernel.sem, kernel.shm*)",
            ));
        }
        if k.starts_with("net.") && options.network == Network::Host {
            return Err(invalid(
                format!("--sysctl {k}"),
                "net.* sysctls cannot be set with --network host",
            ));
        }
    }
    let capabilities = capabilities(options)?;
    // `--privileged` drops the filter whatever else is asked, as dockerd does.
    let seccomp = match seccomp_choice {
        _ if options.privileged => None,
        SeccompChoice::Unconfined => None,
        SeccompChoice::Default => Some(super::seccomp_profile::convert(
            super::seccomp_default::profile(),
            &capabilities,
        )?),
        SeccompChoice::Profile(source) => {
            Some(super::seccomp_profile::load(&source, &capabilities)?)
        }
    };
    Ok(Checked {
        binds,
        volumes,
        tmpfs,
        env,
        capabilities,
        no_new_privileges,
        apparmor_profile,
        seccomp,
        unconfined_system_paths: unconfined_system_paths || options.privileged,
        devices,
        init: if options.init {
            Some(find_init()?)
        } else {
            None
        },
    })
}

/// Which seccomp filter a container gets.
enum SeccompChoice {
    /// capsa's default profile (Docker's effect).
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=FILE` or the profile inline.
    Profile(String),
}

/// A Healthcheck's test and durations, as dockerd checks them.
pub(crate) fn check_healthcheck(h: &Healthcheck) -> Result<()> {
    match h.test.first().map(String::as_str) {
        None | Some("NONE") => {}
        Some("CMD") | Some("CMD-SHELL") if h.test.len() >= 2 => {}
        Some(other) => {
            return Err(invalid(
                format!("healthcheck test {other:?}"),
                "use [\"CMD\", prog, args...], [\"CMD-SHELL\", command] or [\"NONE\"]",
            ));
        }
    }
    for (what, v) in [
        ("interval", h.interval),
        ("timeout", h.timeout),
        ("start period", h.start_period),
        ("start interval", h.start_interval),
    ] {
        if v != 0 && v < 1_000_000 {
            return Err(invalid(
                format!("health {what}"),
                "must be at least 1ms (or 0 for the default)",
            ));
        }
    }
    if h.retries < 0 {
        return Err(invalid("health retries", "must not be negative"));
    }
    Ok(())
}

/// `nofile` → `RLIMIT_NOFILE`.
fn ulimit_resource(name: &str) -> Result<String> {
    const KNOWN: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if KNOWN.contains(&name) {
        Ok(format!("RLIMIT_{}", name.to_ascii_uppercase()))
    } else {
        Err(invalid(format!("--ulimit {name}"), "unknown resource"))
    }
}

/// Adds `KEY=value` entries to `env`, replacing the value of a key already there; a bare
/// `KEY` removes it.
pub(crate) fn merge_env(env: &mut Vec<String>, add: &[String]) {
    let key_of = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    for e in add {
        let key = key_of(e);
        if !e.contains('=') {
            env.retain(|x| key_of(x) != key);
            continue;
        }
        match env.iter_mut().find(|x| key_of(x) == key) {
            Some(slot) => *slot = e.clone(),
            None => env.push(e.clone()),
        }
    }
}

/// A JSON array of strings, or nothing.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an `--entrypoint` value clears the image's (`""` on the command line, `[]` or
/// `[""]` in the API).
fn clears(entrypoint: &[String]) -> bool {
    entrypoint.is_empty() || (entrypoint.len() == 1 && entrypoint[0].is_empty())
}

/// The process's command line by Docker's rules: `--entrypoint` replaces the image's
/// Entrypoint and drops its Cmd; a command replaces Cmd.
pub(crate) fn command_line(image_config: &Value, options: &RunOptions) -> Vec<String> {
    let (entrypoint, cmd_default) = match &options.entrypoint {
        Some(e) if clears(e) => (Vec::new(), Vec::new()),
        Some(e) => (e.clone(), Vec::new()),
        None => (
            strings(&image_config["Entrypoint"]),
            strings(&image_config["Cmd"]),
        ),
    };
    let cmd = if options.command.is_empty() {
        cmd_default
    } else {
        options.command.clone()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// The container's healthcheck: the options' over the image's (fields left 0 inherit the
/// image's), `None` when there is none or it is `NONE`.
pub(crate) fn effective_healthcheck(
    image_config: &Value,
    options: &RunOptions,
) -> Option<Healthcheck> {
    let image: Option<Healthcheck> = image_config
        .get("Healthcheck")
        .and_then(|h| serde_json::from_value(h.clone()).ok());
    let mut h = image.unwrap_or_default();
    if let Some(o) = &options.healthcheck {
        if !o.test.is_empty() {
            h.test = o.test.clone();
        }
        for (mine, theirs) in [
            (&mut h.interval, o.interval),
            (&mut h.timeout, o.timeout),
            (&mut h.start_period, o.start_period),
            (&mut h.start_interval, o.start_interval),
            (&mut h.retries, o.retries),
        ] {
            if theirs != 0 {
                *mine = theirs;
            }
        }
    }
    match h.test.first().map(String::as_str) {
        Some("CMD") | Some("CMD-SHELL") => Some(h),
        _ => None,
    }
}

/// `/etc/hosts` for the container; `address` is its own address and its network's gateway
/// (what `host-gateway` means there) when it is on a bridge.
pub(crate) fn hosts_file(
    hostname: &str,
    domainname: Option<&str>,
    extra: &[String],
    address: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
) -> String {
    let fqdn = match domainname.filter(|d| !d.is_empty()) {
        Some(d) => format!("{hostname}.{d}\t{hostname}"),
        None => hostname.to_owned(),
    };
    let own = address.map_or_else(|| "127.0.1.1".to_owned(), |(ip, _)| ip.to_string());
    let mut text =
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{fqdn}\n");
    for h in extra {
        if let Some((name, ip)) = h.split_once([':', '=']) {
            let ip = if ip == "host-gateway" {
                address.map_or_else(|| "127.0.0.1".to_owned(), |(_, gw)| gw.to_string())
            } else {
                ip.to_owned()
            };
            text.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    text
}

/// resolv.conf on a network with DNS: aardvark-dns (`servers`, the gateway) is the one
/// nameserver (`--dns` servers are its upstreams); search and options from the flags, else the
/// host's.
pub(crate) fn resolv_conf_with_servers(
    host: &str,
    options: &RunOptions,
    servers: &[String],
) -> String {
    let pointed = RunOptions {
        dns: servers.to_vec(),
        ..options.clone()
    };
    resolv_conf(host, &pointed)
}

/// resolv.conf on the default bridge: as [`resolv_conf`], less the host's loopback nameservers
/// (unreachable from the container's namespace); none left gives Docker's fallback (Google's).
pub(crate) fn resolv_conf_for_bridge(host: &str, options: &RunOptions) -> String {
    let text = resolv_conf(host, options);
    let loopback = |l: &str| {
        l.trim_start()
            .strip_prefix("nameserver")
            .map(str::trim)
            .is_some_and(|a| a.starts_with("127.") || a == "::1")
    };
    let mut kept: String = text
        .lines()
        .filter(|l| !loopback(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if !kept
        .lines()
        .any(|l| l.trim_start().starts_with("nameserver"))
    {
        kept.insert_str(0, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    kept
}

/// `/etc/resolv.conf` for the container: the host's, unless `--dns`/`--dns-search`/
/// `--dns-option` say otherwise (each replaces its own kind of line).
pub(crate) fn resolv_conf(host: &str, options: &RunOptions) -> String {
    if options.dns.is_empty() && options.dns_search.is_empty() && options.dns_options.is_empty() {
        return host.to_owned();
    }
    let keep = |prefix: &str, replaced: bool| {
        host.lines()
            .filter(|l| !replaced && l.trim_start().starts_with(prefix))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let mut text = String::new();
    if options.dns.is_empty() {
        text.push_str(&keep("nameserver", false));
    } else {
        for d in &options.dns {
            text.push_str(&format!("nameserver {d}\n"));
        }
    }
    if options.dns_search.is_empty() {
        text.push_str(&keep("search", false));
    } else {
        text.push_str(&format!("search {}\n", options.dns_search.join(" ")));
    }
    if options.dns_options.is_empty() {
        text.push_str(&keep("options", false));
    } else {
        text.push_str(&format!("options {}\n", options.dns_options.join(" ")));
    }
    text
}

/// Where `--init`'s binary is mounted in the container (Docker's path).
pub(crate) const INIT_PATH: &str = "/sbin/docker-init";

/// Everything the spec is made of, decided by `create`.
pub(crate) struct SpecInput<'a> {
    /// The user-namespace mapping (userns-remap), if any.
    pub id_map: Option<super::userns::IdMap>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Identity,
    pub hostname: String,
    pub rootfs: &'a Path,
    pub checked: &'a Checked,
    /// Volumes (anonymous, image and named): (destination, host dir, read-only).
    pub volume_binds: Vec<(String, PathBuf, bool)>,
    pub cgroup: String,
    pub annotations: Vec<(String, String)>,
    pub options: &'a RunOptions,
    /// The engine's `default-ulimits`, under the container's own.
    pub default_ulimits: &'a [Ulimit],
    /// The network namespace the container joins (`<state>/netns/<id>`, bridge networks).
    pub netns: Option<PathBuf>,
}

/// The OCI `linux.resources` fields (memory, cpu, pids, blockIO) for `r` (devices stay as
/// they are): what `create` writes and `update` changes.
pub(crate) fn resources_json(r: &Resources) -> Value {
    let mut resources = serde_json::Map::new();
    let mut memory = serde_json::Map::new();
    if let Some(m) = r.memory {
        memory.insert("limit".into(), json!(m));
    }
    if let Some(s) = r.memory_swap {
        memory.insert("swap".into(), json!(s));
    }
    if let Some(s) = r.memory_reservation {
        memory.insert("reservation".into(), json!(s));
    }
    if r.oom_kill_disable && !host_is_pure_v2() {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        resources.insert("memory".into(), Value::Object(memory));
    }
    let mut cpu = serde_json::Map::new();
    if let Some(c) = r.cpus {
        cpu.insert("quota".into(), json!((c * 100_000.0).round() as i64));
        cpu.insert("period".into(), json!(100_000u64));
    }
    if let Some(q) = r.cpu_quota {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = r.cpu_period {
        cpu.insert("period".into(), json!(p));
    }
    if let Some(s) = r.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(c) = &r.cpuset_cpus {
        cpu.insert("cpus".into(), json!(c));
    }
    if let Some(m) = &r.cpuset_mems {
        cpu.insert("mems".into(), json!(m));
    }
    if !cpu.is_empty() {
        resources.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = r.pids_limit {
        resources.insert(
            "pids".into(),
            json!({ "limit": if p <= 0 { -1 } else { p } }),
        );
    }
    if let Some(w) = r.blkio_weight {
        resources.insert("blockIO".into(), json!({ "weight": w }));
    }
    Value::Object(resources)
}

/// The config.json for a container.
pub(crate) fn build(input: &SpecInput<'_>) -> Result<Vec<u8>> {
    let mut spec: Value = serde_json::from_str(crate::spec::default_spec_json())
        .map_err(|e| invalid("default spec", e.to_string()))?;
    let options = input.options;
    let checked = input.checked;
    let caps: &[String] = &checked.capabilities;
    let effective: Vec<&String> = if input.user.uid == 0 {
        caps.iter().collect()
    } else {
        Vec::new()
    };
    // Docker's 1048576 open files, within what this host allows without CAP_SYS_RESOURCE.
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard.min(1_048_576));
    let mut rlimits = vec![json!({ "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile })];
    // The engine's defaults (`default-ulimits`) first: a container's own `--ulimit` wins.
    for u in input.default_ulimits.iter().chain(&options.ulimits) {
        let typ = ulimit_resource(&u.name)?;
        rlimits.retain(|r| r["type"] != typ.as_str());
        // -1 is Docker's "unlimited".
        let value = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
        rlimits.push(json!({ "type": typ, "hard": value(u.hard), "soft": value(u.soft) }));
    }
    let mut args = input.args.clone();
    if checked.init.is_some() {
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }
    let mut additional_gids = input.user.additional_gids.clone();
    for g in &options.group_add {
        let gid = super::user::resolve_group(input.rootfs, g)?;
        if !additional_gids.contains(&gid) {
            additional_gids.push(gid);
        }
    }
    spec["process"] = json!({
        "terminal": options.tty,
        "user": {
            "uid": input.user.uid,
            "gid": input.user.gid,
            "additionalGids": additional_gids,
        },
        "args": args,
        "env": input.env,
        "cwd": input.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": effective,
            "permitted": effective,
        },
        "rlimits": rlimits,
        "noNewPrivileges": checked.no_new_privileges,
    });
    if let Some(adj) = options.oom_score_adj {
        spec["process"]["oomScoreAdj"] = json!(adj);
    }
    if let Some(profile) = &checked.apparmor_profile {
        spec["process"]["apparmorProfile"] = json!(profile);
    }
    spec["root"] = json!({ "path": input.rootfs, "readonly": options.read_only });
    spec["hostname"] = json!(input.hostname);
    if let Some(d) = options.domainname.as_ref().filter(|d| !d.is_empty()) {
        spec["domainname"] = json!(d);
    }
    let mounts = spec["mounts"]
        .as_array_mut()
        .ok_or_else(|| invalid("default spec", "no mounts"))?;
    if let Some(size) = options.shm_size {
        for m in mounts.iter_mut() {
            if m["destination"] == "/dev/shm"
                && let Some(opts) = m["options"].as_array_mut()
            {
                opts.retain(|o| !o.as_str().is_some_and(|s| s.starts_with("size=")));
                opts.push(json!(format!("size={size}")));
            }
        }
    }
    if options.ipc_none {
        mounts.retain(|m| m["destination"] != "/dev/shm");
    }
    if options.privileged {
        for m in mounts.iter_mut() {
            if (m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup")
                && let Some(opts) = m["options"].as_array_mut()
            {
                opts.retain(|o| o != "ro");
            }
        }
    }
    for (dest, source, ro) in &input.volume_binds {
        let mut opts = vec!["rbind", "rprivate"];
        if *ro {
            opts.push("ro");
        }
        mounts.push(
            json!({ "destination": dest, "type": "bind", "source": source, "options": opts }),
        );
    }
    for b in &checked.binds {
        let mut opts = vec!["rbind", "rprivate"];
        if b.read_only {
            opts.push("ro");
        }
        mounts.push(json!({ "destination": b.destination, "type": "bind", "source": b.source, "options": opts }));
    }
    for (dest, opts) in &checked.tmpfs {
        mounts.push(
            json!({ "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts }),
        );
    }
    if let Some(init) = &checked.init {
        mounts.push(json!({ "destination": INIT_PATH, "type": "bind", "source": init, "options": ["rbind", "rprivate", "ro"] }));
    }
    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(input.cgroup);
    if let Some(seccomp) = &checked.seccomp {
        linux["seccomp"] = seccomp.clone();
    }
    if checked.unconfined_system_paths
        && let Some(obj) = linux.as_object_mut()
    {
        obj.remove("maskedPaths");
        obj.remove("readonlyPaths");
    }
    if !checked.devices.nodes.is_empty() {
        linux["devices"] = json!(checked.devices.nodes);
    }
    if let Some(rules) = linux["resources"]["devices"].as_array_mut() {
        // Docker's containers may create any device node (runc allows `m` on all of them);
        // opening one still needs a rule.
        rules.push(json!({ "allow": true, "type": "c", "access": "m" }));
        rules.push(json!({ "allow": true, "type": "b", "access": "m" }));
        rules.extend(checked.devices.rules.iter().cloned());
    }
    if !options.sysctls.is_empty() {
        linux["sysctl"] = json!(options.sysctls);
    }
    if let Some(obj) = resources_json(&options.resources).as_object() {
        for (k, v) in obj {
            linux["resources"][k] = v.clone();
        }
    }
    if let Some(map) = input.id_map {
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            ns.push(json!({ "type": "user" }));
        }
        linux["uidMappings"] =
            json!([{ "containerID": 0, "hostID": map.uid, "size": map.uid_size }]);
        linux["gidMappings"] =
            json!([{ "containerID": 0, "hostID": map.gid, "size": map.gid_size }]);
    }
    if let (Some(path), Some(ns)) = (&input.netns, linux["namespaces"].as_array_mut()) {
        for n in ns.iter_mut().filter(|n| n["type"] == "network") {
            n["path"] = json!(path);
        }
    }
    if let Some(ns) = linux["namespaces"].as_array_mut() {
        ns.retain(|n| {
            !(n["type"] == "network" && options.network == Network::Host
                || n["type"] == "pid" && options.pid_host
                || n["type"] == "ipc" && options.ipc_host
                || n["type"] == "uts" && options.uts_host)
        });
    }
    if !input.annotations.is_empty() {
        let map: serde_json::Map<String, Value> = input
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        spec["annotations"] = Value::Object(map);
    }
    serde_json::to_vec_pretty(&spec).map_err(|e| invalid("spec", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("512m").ok(), Some(512 << 20));
        assert_eq!(parse_bytes("1g").ok(), Some(1 << 30));
        assert_eq!(parse_bytes("4096").ok(), Some(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn durations_parse_as_go_does() {
        assert_eq!(parse_duration("30s").ok(), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s").ok(), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms").ok(), Some(500_000_000));
        assert_eq!(parse_duration("0").ok(), Some(0));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn entrypoint_flag_drops_image_cmd() {
        let config = json!({ "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"] });
        let mut o = RunOptions::default();
        assert_eq!(command_line(&config, &o), ["/bin/sh", "-c", "echo hi"]);
        o.command = vec!["true".into()];
        assert_eq!(command_line(&config, &o), ["/bin/sh", "-c", "true"]);
        o.command.clear();
        o.entrypoint = Some(vec!["/bin/echo".into()]);
        assert_eq!(command_line(&config, &o), ["/bin/echo"]);
        o.entrypoint = Some(vec![String::new()]);
        assert!(command_line(&config, &o).is_empty());
    }

    #[test]
    fn env_merge_replaces_by_key_and_bare_keys_remove() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        merge_env(
            &mut env,
            &["A=2".to_string(), "B=3".to_string(), "PATH".to_string()],
        );
        assert_eq!(env, ["A=2", "B=3"]);
    }

    #[test]
    fn restart_policies_parse_as_docker_takes_them() {
        assert_eq!(
            RestartPolicy::parse("on-failure:3").ok(),
            Some(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: 3
            })
        );
        assert!(RestartPolicy::parse("always").is_ok());
        assert!(RestartPolicy::parse("always:2").is_err());
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
    }

    #[test]
    fn capabilities_follow_add_and_drop() {
        let mut o = RunOptions {
            cap_drop: vec!["chown".into()],
            cap_add: vec!["NET_ADMIN".into()],
            ..RunOptions::default()
        };
        let caps = capabilities(&o).unwrap();
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        o.cap_drop = vec!["ALL".into()];
        o.cap_add = vec!["CAP_KILL".into()];
        assert_eq!(capabilities(&o).unwrap(), ["CAP_KILL"]);
        o.cap_add = vec!["CAP_FLY".into()];
        assert!(capabilities(&o).is_err());
    }

    #[test]
    fn volumes_split_into_binds_and_named() {
        let o = RunOptions {
            volumes: vec![
                "/srv:/data:ro".into(),
                "cache:/cache".into(),
                "/anon".into(),
            ],
            ..RunOptions::default()
        };
        let c = check(&o).unwrap();
        assert_eq!(c.binds.len(), 1);
        assert!(c.binds[0].read_only);
        assert_eq!(c.volumes.len(), 2);
        assert_eq!(c.volumes[0].name, "cache");
        assert_eq!(c.volumes[1].name, "");
        let dup = RunOptions {
            volumes: vec!["a1:/x".into(), "/srv:/x".into()],
            ..RunOptions::default()
        };
        assert!(check(&dup).is_err());
        let bad = RunOptions {
            volumes: vec!["-bad:/x".into()],
            ..RunOptions::default()
        };
        assert!(check(&bad).is_err());
    }

    #[test]
    fn resolv_conf_replaces_only_what_is_given() {
        let host = "nameserver 10.0.0.1\nsearch corp\noptions ndots:2\n";
        let o = RunOptions {
            dns: vec!["127.0.0.1".into()],
            ..RunOptions::default()
        };
        assert_eq!(
            resolv_conf(host, &o),
            "nameserver 127.0.0.1\nsearch corp\noptions ndots:2\n"
        );
    }
}

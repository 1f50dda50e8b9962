//! `capsa create`/`run` flags (Docker's) and their translation to the engine's `RunOptions`,
//! which both front doors take (the daemon's create body is the same thing in JSON).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use capsa_host::engine::{
    Healthcheck, MountSpec, Network, Resources, RestartPolicy, RunOptions, Ulimit, parse_bytes,
    parse_duration, resolve_env,
};
use clap::Args;

#[derive(Args, Clone)]
pub struct CreateArgs {
    /// Remove the container (and its anonymous volumes) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// The container's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the caller's).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// The working directory in the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP], names or ids.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional groups (names in the container's /etc/group, or gids).
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// The container's hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// The container's NIS domain name.
    #[arg(long)]
    pub domainname: Option<String>,
    /// Replace the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set a label (KEY=VALUE).
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines.
    #[arg(long = "label-file")]
    pub label_file: Vec<PathBuf>,
    /// Bind a host path (SRC:DST[:ro]), mount a named volume (NAME:DST[:ro]), or make an
    /// anonymous volume (DST).
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// A mount: type=bind|volume|tmpfs,source=...,target=...[,readonly][,volume-nocopy]
    /// [,tmpfs-size=...][,tmpfs-mode=...].
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs: DST[:OPTIONS].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit (e.g. 64m).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap (-1: unlimited swap).
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// CPU limit (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CFS period (µs).
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CFS quota (µs).
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// CPUs to run on (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight (10-1000).
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Do not OOM-kill the container's processes (cgroup v1).
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// A resource limit: NAME=SOFT[:HARD].
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// The network: bridge (the default bridge), a user network's name, none (loopback only),
    /// host, or container:NAME (another container's).
    #[arg(long = "network", alias = "net", default_value = "default")]
    pub network: String,
    /// More names the container answers to on its user network (repeatable).
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// The container's IPv4 address on its user network.
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// The container's MAC address (aa:bb:cc:dd:ee:ff).
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Publish every exposed port on a random host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// The parent cgroup of the container's cgroup (default /capsa).
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// The signal `stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Restart policy: no, always, unless-stopped, on-failure[:N].
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// The healthcheck's command (run with /bin/sh -c).
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between checks (e.g. 30s).
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Time a check may take.
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Failures in a row that make it unhealthy.
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Time to start during which failures do not count.
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between checks during the start period.
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Expose a port or a range (80, 80/udp, 8000-8010).
    #[arg(long)]
    pub expose: Vec<String>,
    /// Publish a port: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO], ports may be ranges.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Add a capability (or ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security options: no-new-privileges, seccomp=unconfined, ...
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP.
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// A DNS server for resolv.conf.
    #[arg(long)]
    pub dns: Vec<String>,
    /// A DNS search domain.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// A resolv.conf option.
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Run an init (catatonit, tini) as pid 1: it reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// A namespaced kernel parameter: KEY=VALUE.
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Size of /dev/shm.
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// OOM score adjustment (-1000 to 1000).
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// PID namespace: host, or private (default).
    #[arg(long)]
    pub pid: Option<String>,
    /// IPC namespace: host, or private (default).
    #[arg(long)]
    pub ipc: Option<String>,
    /// UTS namespace: host, or private (default).
    #[arg(long)]
    pub uts: Option<String>,
    /// Logging: json-file (default) or none.
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// A logging option: KEY=VALUE.
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Every capability, every host device, no seccomp filter, nothing masked (as docker).
    #[arg(long)]
    pub privileged: bool,
    /// The user namespace: host (no remapping for this container under --userns-remap).
    #[arg(long)]
    pub userns: Option<String>,
    /// Add a host device: HOST[:CONTAINER][:PERMISSIONS] (permissions of r, w, m; rwm by default).
    #[arg(long)]
    pub device: Vec<String>,
    /// Allow devices in the device cgroup: 'TYPE MAJOR:MINOR ACCESS' (e.g. 'c 1:3 rwm', 'b 7:* r').
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Pull the image first: missing (when it is not in the store), always or never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// The platform to pull (os/arch[/variant]) when the image is pulled.
    #[arg(long)]
    pub platform: Option<String>,
    /// No pull progress.
    #[arg(short, long)]
    pub quiet: bool,
    /// The image.
    pub image: String,
    /// The command and its arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `KEY=VALUE` list to a map.
fn pairs(list: &[String], what: &str) -> Result<std::collections::BTreeMap<String, String>> {
    list.iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            if k.is_empty() {
                bail!("--{what} {kv:?}: expected KEY=VALUE");
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// `--mount type=...,source=...,target=...`.
fn parse_mount(text: &str) -> Result<MountSpec> {
    let mut m = MountSpec {
        kind: "volume".into(),
        ..MountSpec::default()
    };
    for field in text.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, "true"));
        match k {
            "type" => m.kind = v.to_owned(),
            "source" | "src" => m.source = v.to_owned(),
            "target" | "destination" | "dst" => m.target = v.to_owned(),
            "readonly" | "ro" => m.read_only = v != "false" && v != "0",
            "volume-nocopy" => m.no_copy = v != "false" && v != "0",
            "tmpfs-size" => m.tmpfs_size = parse_bytes(v)?,
            "tmpfs-mode" => {
                m.tmpfs_mode = u32::from_str_radix(v, 8)
                    .with_context(|| format!("--mount {text:?}: tmpfs-mode is octal"))?
            }
            "bind-propagation" | "consistency" => {}
            other => bail!("--mount {text:?}: unknown field {other:?}"),
        }
    }
    if m.target.is_empty() {
        bail!("--mount {text:?}: target is required");
    }
    Ok(m)
}

/// `80` or `8000-8010`: the first and last port.
fn port_range(text: &str, what: &str) -> Result<(u16, u16)> {
    let one = |t: &str| {
        t.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .with_context(|| format!("{what}: {t:?} is not a port (1-65535)"))
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                bail!("{what}: the range {text:?} is empty");
            }
            Ok((a, b))
        }
        None => one(text).map(|p| (p, p)),
    }
}

/// `-p [IP:][HOST:]CONTAINER[/PROTO]` into Docker's PortBindings, as the docker CLI does it:
/// a container range is one key per port, with the host range split alongside (same length),
/// or a host range for a single container port (the engine picks a free one).
fn port_bindings(list: &[String]) -> Result<(serde_json::Value, Vec<String>)> {
    let mut map = serde_json::Map::new();
    let mut exposed = Vec::new();
    for p in list {
        let (spec, proto) = p.rsplit_once('/').unwrap_or((p, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if proto != "tcp" && proto != "udp" {
            bail!("-p {p:?}: the protocol must be tcp or udp");
        }
        // An IPv6 host address is bracketed: [::1]:8080:80.
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let (container, host_port, host_ip) = match parts.as_slice() {
            [c] => (*c, "", ""),
            [c, h] => (*c, *h, ""),
            [c, h, ip] => (*c, *h, ip.trim_start_matches('[').trim_end_matches(']')),
            _ => bail!("-p {p:?}: expected [IP:][HOST:]CONTAINER[/PROTO]"),
        };
        if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
            bail!("-p {p:?}: {host_ip:?} is not an IP address");
        }
        let what = format!("-p {p:?}");
        let (c_first, c_last) = port_range(container, &what)?;
        let host = if host_port.is_empty() {
            None
        } else {
            Some(port_range(host_port, &what)?)
        };
        let count = c_last - c_first;
        if let Some((h_first, h_last)) = host
            && count > 0
            && h_last - h_first != count
        {
            bail!("{what}: the host and container port ranges differ in length");
        }
        for i in 0..=count {
            let key = format!("{}/{proto}", c_first + i);
            exposed.push(key.clone());
            let host_text = match host {
                None => String::new(),
                Some((a, b)) if count == 0 && a != b => format!("{a}-{b}"),
                Some((a, _)) => (a + i).to_string(),
            };
            let entry = map.entry(key).or_insert_with(|| serde_json::json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(serde_json::json!({ "HostIp": host_ip, "HostPort": host_text }));
            }
        }
    }
    Ok((serde_json::Value::Object(map), exposed))
}

/// Whether a namespace flag asks for the host's.
fn host_ns(flag: &Option<String>, what: &str) -> Result<bool> {
    match flag.as_deref() {
        None | Some("") | Some("private") => Ok(false),
        // A private IPC namespace others may join: capsa's are all joinable by exec.
        Some("shareable") if what == "ipc" => Ok(false),
        Some("host") => Ok(true),
        // Joined at start (see run_options); none: private, without /dev/shm.
        Some(other) if other.starts_with("container:") && other.len() > 10 => Ok(false),
        Some("none") if what == "ipc" => Ok(false),
        Some(other) => bail!("--{what} {other:?}: use host or private"),
    }
}

/// `container:NAME` of a `--pid`/`--ipc` value.
fn joined(flag: &Option<String>) -> Option<String> {
    flag.as_deref()
        .and_then(|m| m.strip_prefix("container:"))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// The flags as engine options (environment resolved here, on the caller's side).
pub fn run_options(a: &CreateArgs) -> Result<RunOptions> {
    if let Some(mode) = a
        .userns
        .as_deref()
        .filter(|m| !m.is_empty() && *m != "host")
    {
        bail!("--userns {mode:?}: only host is supported (it opts out of --userns-remap)");
    }
    if a.network.is_empty() || a.network == "container:" {
        bail!("--network {:?}: name a network or a container", a.network);
    }
    let network = Network::parse(&a.network);
    let dur = |v: &Option<String>| v.as_deref().map(parse_duration).transpose();
    let healthcheck = if a.no_healthcheck {
        Some(Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        })
    } else {
        let h = Healthcheck {
            test: a
                .health_cmd
                .as_ref()
                .map(|c| vec!["CMD-SHELL".to_owned(), c.clone()])
                .unwrap_or_default(),
            interval: dur(&a.health_interval)?.unwrap_or(0),
            timeout: dur(&a.health_timeout)?.unwrap_or(0),
            start_period: dur(&a.health_start_period)?.unwrap_or(0),
            start_interval: dur(&a.health_start_interval)?.unwrap_or(0),
            retries: a.health_retries.unwrap_or(0),
        };
        Some(h).filter(|h| *h != Healthcheck::default())
    };
    let (port_bindings, mut exposed) = port_bindings(&a.publish)?;
    for e in &a.expose {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (first, last) = port_range(ports, &format!("--expose {e:?}"))?;
        exposed.extend((first..=last).map(|p| format!("{p}/{proto}")));
    }
    exposed.sort();
    exposed.dedup();
    let bytes = |v: &Option<String>| -> Result<Option<i64>> {
        match v.as_deref() {
            None => Ok(None),
            Some("-1") => Ok(Some(-1)),
            Some(s) => Ok(Some(parse_bytes(s)?)),
        }
    };
    Ok(RunOptions {
        image: a.image.clone(),
        command: a.command.clone(),
        name: a.name.clone(),
        env: resolve_env(&a.env, &a.env_file)?,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        group_add: a.group_add.clone(),
        hostname: a.hostname.clone(),
        domainname: a.domainname.clone(),
        entrypoint: a.entrypoint.clone().map(|e| vec![e]),
        labels: {
            let mut from_files = Vec::new();
            for file in &a.label_file {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("--label-file {}", file.display()))?;
                from_files.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            // Flags after files: a --label overrides the same key from a file, as in docker.
            from_files.extend(a.label.iter().cloned());
            pairs(&from_files, "label")?
        },
        volumes: a.volume.clone(),
        mounts: a
            .mount
            .iter()
            .map(|m| parse_mount(m))
            .collect::<Result<_>>()?,
        tmpfs: a.tmpfs.clone(),
        read_only: a.read_only,
        resources: Resources {
            memory: bytes(&a.memory)?,
            memory_swap: bytes(&a.memory_swap)?,
            memory_reservation: bytes(&a.memory_reservation)?,
            cpus: a.cpus,
            cpu_shares: a.cpu_shares,
            cpu_quota: a.cpu_quota,
            cpu_period: a.cpu_period,
            cpuset_cpus: a.cpuset_cpus.clone(),
            cpuset_mems: a.cpuset_mems.clone(),
            pids_limit: a.pids_limit,
            blkio_weight: a.blkio_weight,
            oom_kill_disable: a.oom_kill_disable,
        },
        ulimits: a
            .ulimit
            .iter()
            .map(|u| Ulimit::parse(u))
            .collect::<std::result::Result<_, _>>()?,
        network,
        tty: a.tty,
        interactive: a.interactive,
        stdin_once: a.interactive && !a.tty,
        auto_remove: a.rm,
        cgroup_parent: a.cgroup_parent.clone(),
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        restart: RestartPolicy::parse(&a.restart)?,
        healthcheck,
        exposed_ports: exposed,
        publish_all: a.publish_all,
        network_aliases: a.network_alias.clone(),
        ip: a.ip.clone(),
        mac_address: a.mac_address.clone(),
        port_bindings,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        security_opt: a.security_opt.clone(),
        extra_hosts: a.add_host.clone(),
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        init: a.init,
        sysctls: pairs(&a.sysctl, "sysctl")?,
        shm_size: a.shm_size.as_deref().map(parse_bytes).transpose()?,
        oom_score_adj: a.oom_score_adj,
        pid_host: host_ns(&a.pid, "pid")?,
        ipc_host: host_ns(&a.ipc, "ipc")?,
        uts_host: host_ns(&a.uts, "uts")?,
        log_driver: a.log_driver.clone(),
        log_opts: pairs(&a.log_opt, "log-opt")?,
        privileged: a.privileged,
        devices: a
            .device
            .iter()
            .map(|d| capsa_host::engine::DeviceMapping::parse(d))
            .collect::<Result<_, _>>()?,
        device_cgroup_rules: a.device_cgroup_rule.clone(),
        userns_host: a.userns.as_deref() == Some("host"),
        pid_container: joined(&a.pid),
        ipc_container: joined(&a.ipc),
        ipc_none: a.ipc.as_deref() == Some("none"),
        platform: a.platform.clone(),
    })
}

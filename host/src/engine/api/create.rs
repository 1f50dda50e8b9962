//! Docker's container create body (`POST /containers/create`: the container `Config` with
//! `HostConfig` and `NetworkingConfig` beside it) to [`RunOptions`] and back. The daemon takes
//! the body through [`from_body`]; the CLI, as a client of a daemon, sends [`to_body`] of the
//! options its flags made, so both front doors hand the engine the same thing.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::error::{Result, invalid};
use crate::engine::spec::{
    Healthcheck, MountSpec, Network, Resources, RestartPolicy, RunOptions, Ulimit,
};

/// The fields of Docker's create body that capsa reads (every one optional; `null` is
/// absent). Unknown fields are ignored, as dockerd ignores them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Body {
    hostname: Option<String>,
    domainname: Option<String>,
    user: Option<String>,
    tty: Option<bool>,
    open_stdin: Option<bool>,
    stdin_once: Option<bool>,
    env: Option<Vec<String>>,
    cmd: Option<StringOrList>,
    healthcheck: Option<Healthcheck>,
    image: Option<String>,
    volumes: Option<BTreeMap<String, Value>>,
    working_dir: Option<String>,
    entrypoint: Option<StringOrList>,
    network_disabled: Option<bool>,
    networking_config: Option<Value>,
    mac_address: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    exposed_ports: Option<BTreeMap<String, Value>>,
    host_config: Option<HostConfig>,
}

/// `Cmd` and `Entrypoint` may be a string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfig {
    binds: Option<Vec<String>>,
    log_config: Option<LogConfig>,
    network_mode: Option<String>,
    port_bindings: Option<Value>,
    restart_policy: Option<RestartPolicy>,
    auto_remove: Option<bool>,
    volumes_from: Option<Vec<String>>,
    mounts: Option<Vec<Mount>>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    group_add: Option<Vec<String>>,
    ipc_mode: Option<String>,
    links: Option<Vec<String>>,
    oom_score_adj: Option<i32>,
    pid_mode: Option<String>,
    privileged: Option<bool>,
    publish_all_ports: Option<bool>,
    readonly_rootfs: Option<bool>,
    security_opt: Option<Vec<String>>,
    tmpfs: Option<BTreeMap<String, String>>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    userns_mode: Option<String>,
    shm_size: Option<i64>,
    sysctls: Option<BTreeMap<String, String>>,
    runtime: Option<String>,
    cpu_shares: Option<i64>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    cgroup_parent: Option<String>,
    blkio_weight: Option<u16>,
    cpu_period: Option<i64>,
    cpu_quota: Option<i64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    devices: Option<Vec<DeviceJson>>,
    oom_kill_disable: Option<bool>,
    device_cgroup_rules: Option<Vec<String>>,
    memory_reservation: Option<i64>,
    memory_swap: Option<i64>,
    pids_limit: Option<i64>,
    ulimits: Option<Vec<Ulimit>>,
    init: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LogConfig {
    #[serde(rename = "Type")]
    kind: Option<String>,
    config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Mount {
    #[serde(rename = "Type")]
    kind: Option<String>,
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
    volume_options: Option<VolumeOptions>,
    tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeOptions {
    no_copy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TmpfsOptions {
    size_bytes: Option<i64>,
    mode: Option<u32>,
}

/// One entry of `HostConfig.Devices`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeviceJson {
    path_on_host: String,
    path_in_container: String,
    cgroup_permissions: String,
}

impl DeviceJson {
    /// dockerd's defaults: the container path is the host's, permissions `rwm`.
    fn into_mapping(self) -> crate::engine::DeviceMapping {
        crate::engine::DeviceMapping {
            path_in_container: if self.path_in_container.is_empty() {
                self.path_on_host.clone()
            } else {
                self.path_in_container
            },
            path_on_host: self.path_on_host,
            cgroup_permissions: if self.cgroup_permissions.is_empty() {
                "rwm".into()
            } else {
                self.cgroup_permissions
            },
        }
    }
}

/// `HostConfig.Devices` as dockerd shows it.
pub(crate) fn devices_json(devices: &[crate::engine::DeviceMapping]) -> Value {
    json!(
        devices
            .iter()
            .map(|d| json!({
                "PathOnHost": d.path_on_host,
                "PathInContainer": d.path_in_container,
                "CgroupPermissions": d.cgroup_permissions,
            }))
            .collect::<Vec<_>>()
    )
}

/// Docker's create body to options; also returns the warnings dockerd would give. `name` is
/// the `?name=` of the request, `platform` its `?platform=`.
pub fn from_body(
    body: &Value,
    name: Option<&str>,
    platform: Option<&str>,
) -> Result<(RunOptions, Vec<String>)> {
    let b: Body = serde_json::from_value(body.clone())
        .map_err(|e| invalid("container config", e.to_string()))?;
    let mut warnings = Vec::new();
    let image = b
        .image
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid("container config", "no image specified (Image is empty)"))?;
    let h = b.host_config.unwrap_or_default();
    let network = if b.network_disabled == Some(true) {
        Network::None
    } else {
        Network::parse(h.network_mode.as_deref().unwrap_or(""))
    };
    // NetworkingConfig: the endpoint of the network the container starts on (aliases, a fixed
    // address, a MAC); the others are `POST /networks/{id}/connect`, as dockerd takes them.
    let mode = network.mode();
    let endpoint = b
        .networking_config
        .as_ref()
        .and_then(|n| n["EndpointsConfig"].as_object())
        .and_then(|m| {
            m.get(&mode)
                .or_else(|| (m.len() == 1).then(|| m.values().next()).flatten())
        })
        .cloned()
        .unwrap_or(Value::Null);
    let network_aliases: Vec<String> = endpoint["Aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let endpoint_ip = endpoint["IPAMConfig"]["IPv4Address"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let mac_address = endpoint["MacAddress"]
        .as_str()
        .or(b.mac_address.as_deref())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let joined = |mode: Option<&str>| {
        mode.and_then(|m| m.strip_prefix("container:"))
            .map(str::to_owned)
    };
    let host_namespace = |what: &str, mode: Option<&str>| -> Result<bool> {
        match mode.unwrap_or("") {
            "" | "private" | "shareable" => Ok(false),
            m if m.starts_with("container:") && m.len() > "container:".len() => Ok(false),
            "none" if what == "ipc" => Ok(false),
            "host" => Ok(true),
            other => Err(invalid(
                format!("{what} mode {other:?}"),
                "only private and host are supported",
            )),
        }
    };
    if let Some(u) = h
        .userns_mode
        .as_deref()
        .filter(|u| !u.is_empty() && *u != "host")
    {
        return Err(invalid(
            format!("userns mode {u:?}"),
            "only host (opting out of --userns-remap) is supported",
        ));
    }
    if let Some(r) = h
        .runtime
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "capsa" && *r != "runc")
    {
        return Err(invalid(
            format!("runtime {r:?}"),
            "unknown runtime (capsa runs every container itself)",
        ));
    }
    if h.volumes_from.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(invalid("VolumesFrom", "not supported yet"));
    }
    if h.links.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(invalid(
            "Links",
            "legacy links are not supported: put the containers on a user-defined network, where they reach each other by name",
        ));
    }
    let mut volumes = h.binds.unwrap_or_default();
    for (dest, _) in b.volumes.unwrap_or_default() {
        let covered = volumes.iter().any(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            parts.get(1).is_some_and(|d| *d == dest) || parts.len() == 1 && parts[0] == dest
        });
        if !covered {
            volumes.push(dest);
        }
    }
    let mut mounts = Vec::new();
    for m in h.mounts.unwrap_or_default() {
        let kind = m.kind.unwrap_or_else(|| "volume".into());
        mounts.push(MountSpec {
            kind,
            source: m.source.unwrap_or_default(),
            target: m.target.unwrap_or_default(),
            read_only: m.read_only.unwrap_or(false),
            no_copy: m.volume_options.and_then(|v| v.no_copy).unwrap_or(false),
            tmpfs_size: m
                .tmpfs_options
                .as_ref()
                .and_then(|t| t.size_bytes)
                .unwrap_or(0),
            tmpfs_mode: m.tmpfs_options.and_then(|t| t.mode).unwrap_or(0),
        });
    }
    let (log_driver, log_opts) = match h.log_config {
        Some(l) => (
            l.kind.filter(|k| !k.is_empty()),
            l.config.unwrap_or_default(),
        ),
        None => (None, BTreeMap::new()),
    };
    let positive = |v: Option<i64>| v.filter(|n| *n > 0);
    let resources = Resources {
        memory: positive(h.memory),
        memory_swap: h.memory_swap.filter(|s| *s != 0),
        memory_reservation: positive(h.memory_reservation),
        cpus: positive(h.nano_cpus).map(|n| n as f64 / 1e9),
        cpu_shares: positive(h.cpu_shares).map(|n| n as u64),
        cpu_quota: h.cpu_quota.filter(|q| *q != 0),
        cpu_period: positive(h.cpu_period).map(|n| n as u64),
        cpuset_cpus: h.cpuset_cpus.filter(|s| !s.is_empty()),
        cpuset_mems: h.cpuset_mems.filter(|s| !s.is_empty()),
        pids_limit: positive(h.pids_limit),
        blkio_weight: h.blkio_weight.filter(|w| *w > 0),
        oom_kill_disable: h.oom_kill_disable.unwrap_or(false),
    };
    if resources.cpus.is_some() && (resources.cpu_quota.is_some() || resources.cpu_period.is_some())
    {
        return Err(invalid(
            "NanoCpus",
            "conflicting options: Nano CPUs and CPU Period/Quota cannot both be set",
        ));
    }
    let options = RunOptions {
        image,
        command: b.cmd.map(StringOrList::into_vec).unwrap_or_default(),
        name: name.filter(|n| !n.is_empty()).map(str::to_owned),
        env: b.env.unwrap_or_default(),
        workdir: b.working_dir.filter(|w| !w.is_empty()),
        user: b.user.filter(|u| !u.is_empty()),
        group_add: h.group_add.unwrap_or_default(),
        hostname: b.hostname.filter(|h| !h.is_empty()),
        domainname: b.domainname.filter(|d| !d.is_empty()),
        entrypoint: b.entrypoint.map(StringOrList::into_vec),
        labels: b.labels.unwrap_or_default(),
        volumes,
        mounts,
        tmpfs: h
            .tmpfs
            .unwrap_or_default()
            .into_iter()
            .map(|(d, o)| if o.is_empty() { d } else { format!("{d}:{o}") })
            .collect(),
        read_only: h.readonly_rootfs.unwrap_or(false),
        resources,
        ulimits: h.ulimits.unwrap_or_default(),
        network,
        tty: b.tty.unwrap_or(false),
        interactive: b.open_stdin.unwrap_or(false),
        stdin_once: b.stdin_once.unwrap_or(false),
        auto_remove: h.auto_remove.unwrap_or(false),
        cgroup_parent: h.cgroup_parent.filter(|c| !c.is_empty()),
        stop_signal: b.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: b.stop_timeout,
        restart: h.restart_policy.unwrap_or_default(),
        healthcheck: b.healthcheck.filter(|h| *h != Healthcheck::default()),
        exposed_ports: b.exposed_ports.unwrap_or_default().into_keys().collect(),
        port_bindings: h
            .port_bindings
            .filter(|p| !p.is_null())
            .unwrap_or(json!({})),
        publish_all: h.publish_all_ports.unwrap_or(false),
        network_aliases,
        ip: endpoint_ip,
        mac_address,
        cap_add: h.cap_add.unwrap_or_default(),
        cap_drop: h.cap_drop.unwrap_or_default(),
        security_opt: h.security_opt.unwrap_or_default(),
        extra_hosts: h.extra_hosts.unwrap_or_default(),
        dns: h.dns.unwrap_or_default(),
        dns_search: h.dns_search.unwrap_or_default(),
        dns_options: h.dns_options.unwrap_or_default(),
        init: h.init.unwrap_or(false),
        sysctls: h.sysctls.unwrap_or_default(),
        shm_size: positive(h.shm_size),
        oom_score_adj: h.oom_score_adj.filter(|a| *a != 0),
        pid_host: host_namespace("pid", h.pid_mode.as_deref())?,
        ipc_host: host_namespace("ipc", h.ipc_mode.as_deref())?,
        pid_container: joined(h.pid_mode.as_deref()),
        ipc_container: joined(h.ipc_mode.as_deref()),
        ipc_none: h.ipc_mode.as_deref() == Some("none"),
        uts_host: host_namespace("uts", h.uts_mode.as_deref())?,
        log_driver,
        log_opts,
        privileged: h.privileged.unwrap_or(false),
        devices: h
            .devices
            .unwrap_or_default()
            .into_iter()
            .map(DeviceJson::into_mapping)
            .collect(),
        device_cgroup_rules: h.device_cgroup_rules.unwrap_or_default(),
        userns_host: h.userns_mode.as_deref() == Some("host"),
        platform: platform.filter(|p| !p.is_empty()).map(str::to_owned),
    };
    warnings.dedup();
    warnings.extend(crate::engine::create_warnings(&options));
    Ok((options, warnings))
}

/// The options as Docker's create body (for the CLI talking to a daemon).
pub fn to_body(o: &RunOptions) -> Value {
    let r = &o.resources;
    let mut tmpfs = serde_json::Map::new();
    for t in &o.tmpfs {
        let (d, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(d.to_owned(), json!(opts));
    }
    let mounts: Vec<Value> = o
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": m.kind, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only,
                "VolumeOptions": { "NoCopy": m.no_copy },
                "TmpfsOptions": { "SizeBytes": m.tmpfs_size, "Mode": m.tmpfs_mode },
            })
        })
        .collect();
    let exposed: serde_json::Map<String, Value> = o
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    json!({
        "Hostname": o.hostname.clone().unwrap_or_default(),
        "Domainname": o.domainname.clone().unwrap_or_default(),
        "User": o.user.clone().unwrap_or_default(),
        "AttachStdin": o.interactive,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "StdinOnce": o.stdin_once,
        "Env": o.env,
        "Cmd": if o.command.is_empty() { Value::Null } else { json!(o.command) },
        "Healthcheck": o.healthcheck,
        "Image": o.image,
        "WorkingDir": o.workdir.clone().unwrap_or_default(),
        "Entrypoint": o.entrypoint,
        "Labels": o.labels,
        "StopSignal": o.stop_signal,
        "StopTimeout": o.stop_timeout,
        "ExposedPorts": exposed,
        "HostConfig": {
            "Binds": o.volumes,
            "LogConfig": { "Type": o.log_driver.clone().unwrap_or_default(), "Config": o.log_opts },
            "NetworkMode": o.network.mode(),
            "PublishAllPorts": o.publish_all,
            "PortBindings": o.port_bindings,
            "RestartPolicy": o.restart,
            "AutoRemove": o.auto_remove,
            "Mounts": mounts,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "Dns": o.dns,
            "DnsOptions": o.dns_options,
            "DnsSearch": o.dns_search,
            "ExtraHosts": o.extra_hosts,
            "GroupAdd": o.group_add,
            "IpcMode": super::containers::namespace_mode(o.ipc_host, o.ipc_container.as_deref(), o.ipc_none, ""),
            "PidMode": super::containers::namespace_mode(o.pid_host, o.pid_container.as_deref(), false, ""),
            "UTSMode": if o.uts_host { "host" } else { "" },
            "OomScoreAdj": o.oom_score_adj.unwrap_or(0),
            "Privileged": o.privileged,
            "ReadonlyRootfs": o.read_only,
            "SecurityOpt": o.security_opt,
            "Tmpfs": tmpfs,
            "ShmSize": o.shm_size.unwrap_or(0),
            "Sysctls": o.sysctls,
            "CpuShares": r.cpu_shares.unwrap_or(0),
            "Memory": r.memory.unwrap_or(0),
            "NanoCpus": r.cpus.map_or(0, |c| (c * 1e9).round() as i64),
            "CgroupParent": o.cgroup_parent.clone().unwrap_or_default(),
            "BlkioWeight": r.blkio_weight.unwrap_or(0),
            "CpuPeriod": r.cpu_period.unwrap_or(0),
            "CpuQuota": r.cpu_quota.unwrap_or(0),
            "CpusetCpus": r.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": r.cpuset_mems.clone().unwrap_or_default(),
            "Devices": devices_json(&o.devices),
            "DeviceCgroupRules": o.device_cgroup_rules,
            "OomKillDisable": r.oom_kill_disable,
            "UsernsMode": if o.userns_host { "host" } else { "" },
            "MemoryReservation": r.memory_reservation.unwrap_or(0),
            "MemorySwap": r.memory_swap.unwrap_or(0),
            "PidsLimit": r.pids_limit,
            "Ulimits": o.ulimits,
            "Init": o.init,
        },
        "NetworkingConfig": networking_config(o),
    })
}

/// `NetworkingConfig` for the network the container starts on (aliases, `--ip`, MAC).
fn networking_config(o: &RunOptions) -> Value {
    if o.network_aliases.is_empty() && o.ip.is_none() && o.mac_address.is_none() {
        return Value::Null;
    }
    let mut endpoint = json!({ "Aliases": o.network_aliases });
    if let Some(ip) = &o.ip {
        endpoint["IPAMConfig"] = json!({ "IPv4Address": ip });
    }
    if let Some(mac) = &o.mac_address {
        endpoint["MacAddress"] = json!(mac);
    }
    json!({ "EndpointsConfig": { o.network.mode(): endpoint } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_the_body() {
        let o = RunOptions {
            image: "busybox".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            labels: BTreeMap::from([("k".into(), "v".into())]),
            volumes: vec!["/srv:/data:ro".into(), "cache:/cache".into()],
            tmpfs: vec!["/run:size=1m".into()],
            resources: Resources {
                memory: Some(64 << 20),
                cpus: Some(0.5),
                pids_limit: Some(10),
                ..Resources::default()
            },
            network: Network::Host,
            tty: true,
            interactive: true,
            restart: RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: 2,
            },
            cap_add: vec!["NET_ADMIN".into()],
            entrypoint: Some(vec![String::new()]),
            port_bindings: json!({}),
            ..RunOptions::default()
        };
        let (back, warnings) = from_body(&to_body(&o), None, None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back, o);
    }

    #[test]
    fn docker_cli_bodies_parse_with_nulls() {
        let body = json!({
            "Image": "bb", "Cmd": null, "Entrypoint": null, "Env": null, "Volumes": {"/v": {}},
            "HostConfig": {"Binds": null, "NetworkMode": "default", "Memory": 0, "PidsLimit": null,
                "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}, "Tmpfs": null,
                "LogConfig": {"Type": "", "Config": {}}}
        });
        let (o, warnings) = from_body(&body, Some("web"), None).unwrap();
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!(o.volumes, ["/v"]);
        assert_eq!(o.restart.name, "always");
        assert_eq!(o.network, Network::Default);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(from_body(&json!({"Image": 3}), None, None).is_err());
        assert!(from_body(&json!({}), None, None).is_err());
        let (o, _) = from_body(
            &json!({"Image": "x", "HostConfig": {"NetworkMode": "mynet"},
                "NetworkingConfig": {"EndpointsConfig": {"mynet": {
                    "Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.9.0.7"}}}}}),
            None,
            None,
        )
        .unwrap();
        assert_eq!(o.network, Network::Bridge("mynet".into()));
        assert_eq!(o.network_aliases, ["web"]);
        assert_eq!(o.ip.as_deref(), Some("10.9.0.7"));
        let (o, _) = from_body(
            &json!({"Image": "x", "HostConfig": {"NetworkMode": "container:abc"}}),
            None,
            None,
        )
        .unwrap();
        assert_eq!(o.network, Network::Container("abc".into()));
    }
}

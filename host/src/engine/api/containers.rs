//! Containers in Docker's JSON shapes: the list entry (`GET /containers/json`, `docker ps`),
//! the inspect object (`GET /containers/{id}/json`), the status words, the list filters, `top`
//! as titles and rows, and `changes`. The CLI prints from these, locally or from a daemon.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::filters::Filters;
use super::time;
use crate::engine::container::{ContainerRecord, State};
use crate::engine::error::{Result, invalid};
use crate::engine::{ChangeKind, Engine};

/// `docker ps`'s STATUS column: "Up 3 seconds (healthy)", "Exited (0) 2 minutes ago", ...
pub fn status_text(engine: &Engine, c: &ContainerRecord, state: State) -> String {
    let run = engine.run_state(c);
    let health = engine.health(c).map(|h| match h.status.as_str() {
        "starting" => " (health: starting)".to_owned(),
        s => format!(" ({s})"),
    });
    match state {
        State::Running => format!(
            "Up {}{}",
            time::human(time::since(&run.started)),
            health.unwrap_or_default()
        ),
        State::Paused => format!("Up {} (Paused)", time::human(time::since(&run.started))),
        State::Restarting => {
            let exit = engine.exit_record(c).unwrap_or_default();
            format!(
                "Restarting ({}) {} ago",
                exit.code,
                time::human(time::since(&exit.finished))
            )
        }
        State::Exited => {
            let exit = engine.exit_record(c).unwrap_or_default();
            format!(
                "Exited ({}) {} ago",
                exit.code,
                time::human(time::since(&exit.finished))
            )
        }
        State::Created => "Created".to_owned(),
    }
}

/// The container's labels (the image's and its own, as `Config.Labels`).
pub fn labels(c: &ContainerRecord) -> BTreeMap<String, String> {
    c.config["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// One entry of `GET /containers/json`.
pub fn summary(engine: &Engine, c: &ContainerRecord, size: bool) -> Value {
    summary_in(engine, c, engine.state(c).0, size)
}

/// [`summary`] with the state already known.
fn summary_in(engine: &Engine, c: &ContainerRecord, state: State, size: bool) -> Value {
    let mounts: Vec<Value> = c.mounts.iter().map(|m| json!(m)).collect();
    let attachment = engine.attachment(&c.id);
    let mut v = json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": c.args.join(" "),
        "Created": time::unix(&c.created),
        "Ports": super::networks::ports_list(c, attachment.as_ref()),
        "Labels": labels(c),
        "State": state.as_str(),
        "Status": status_text(engine, c, state),
        "HostConfig": { "NetworkMode": c.options.network.mode() },
        "NetworkSettings": { "Networks": super::networks::networks_json(c, attachment.as_ref()) },
        "Mounts": mounts,
    });
    if size {
        add_sizes(engine, c, &mut v);
    }
    v
}

/// `SizeRw` (the container's layer) and `SizeRootFs` (with the image's).
fn add_sizes(engine: &Engine, c: &ContainerRecord, v: &mut Value) {
    let rw = crate::engine::usage::disk_usage(&engine.upper_dir(c));
    let image = engine
        .store()
        .inspect(&c.image_id)
        .map(|i| i.size)
        .unwrap_or(0);
    v["SizeRw"] = json!(rw);
    v["SizeRootFs"] = json!(rw + image);
}

/// The filters `GET /containers/json` takes.
const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "ancestor", "exited", "before", "since", "health", "volume",
    "network", "is-task", "publish", "expose",
];

/// `GET /containers/json`: newest first; all of them with `all`, else the running ones;
/// filtered; at most `limit`.
pub fn list(
    engine: &Engine,
    all: bool,
    limit: Option<usize>,
    size: bool,
    filters: &Filters,
) -> Result<Vec<Value>> {
    filters.only(LIST_FILTERS)?;
    let mut records = engine.containers()?;
    records.reverse();
    // `before`/`since` name containers: keep those created before/after them.
    let created_of = |name: &str| -> Result<String> { Ok(engine.container(name)?.created) };
    let before = filters
        .get("before")
        .and_then(|v| v.first())
        .map(|n| created_of(n))
        .transpose()?;
    let since = filters
        .get("since")
        .and_then(|v| v.first())
        .map(|n| created_of(n))
        .transpose()?;
    let image_ids: Option<Vec<String>> = filters.get("ancestor").map(|names| {
        names
            .iter()
            .filter_map(|n| engine.store().resolve(n).ok().map(|id| id.to_string()))
            .collect()
    });
    for s in filters.get("status").unwrap_or_default() {
        if ![
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ]
        .contains(&s.as_str())
        {
            return Err(invalid(format!("status filter {s:?}"), "invalid filter"));
        }
    }
    let mut out = Vec::new();
    for c in &records {
        let (state, _) = engine.state(c);
        let any_status = filters.get("status").is_some() || filters.get("exited").is_some();
        if !all
            && !any_status
            && !matches!(state, State::Running | State::Paused | State::Restarting)
        {
            continue;
        }
        let ok = |key: &str, test: &dyn Fn(&str) -> bool| {
            filters
                .get(key)
                .is_none_or(|vals| vals.iter().any(|v| test(v)))
        };
        let keep = ok("id", &|v| c.id.starts_with(v))
            && ok("name", &|v| {
                let v = v.trim_start_matches('/');
                // Docker matches names as a regular expression; a substring is its common use.
                c.name.contains(v)
            })
            && ok("status", &|v| v == state.as_str())
            && ok("exited", &|v| {
                state == State::Exited
                    && engine
                        .exit_record(c)
                        .is_some_and(|e| v.parse::<i32>().ok() == Some(e.code))
            })
            && ok("health", &|v| {
                let h = engine
                    .health(c)
                    .map(|h| h.status)
                    .unwrap_or_else(|| "none".into());
                h == v
            })
            && ok("volume", &|v| {
                c.mounts.iter().any(|m| m.name == v || m.destination == v)
            })
            && ok("network", &|v| {
                v == c.options.network.mode()
                    || c.endpoints
                        .iter()
                        .any(|e| e.network == v || e.network_id.starts_with(v))
            })
            && ok("is-task", &|v| v == "false")
            && ok("expose", &|v| {
                c.options
                    .exposed_ports
                    .iter()
                    .any(|p| p == v || p.split('/').next() == Some(v))
            })
            && ok("publish", &|v| {
                c.options
                    .port_bindings
                    .as_object()
                    .is_some_and(|m| m.keys().any(|p| p == v || p.split('/').next() == Some(v)))
            })
            && filters.labels_match(&labels(c))
            && image_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&c.image_id))
            && before.as_ref().is_none_or(|b| c.created < *b)
            && since.as_ref().is_none_or(|s| c.created > *s);
        if keep {
            out.push(summary_in(engine, c, state, size));
        }
        if limit.is_some_and(|l| l > 0 && out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

/// `GET /containers/{id}/json`: Docker's inspect object.
pub fn inspect(engine: &Engine, c: &ContainerRecord, size: bool) -> Result<Value> {
    let (state, pid) = engine.state(c);
    let exit = engine.exit_record(c);
    let run = engine.run_state(c);
    let dir = engine.bundle_dir(c);
    let spec: Value = crate::engine::container::read_json(&dir.join("config.json"))?;
    let attachment = engine.attachment(&c.id);
    let first = attachment.as_ref().and_then(|a| a.endpoints.first());
    let layers: Vec<String> = engine
        .store()
        .layer_dirs(&c.image_id)
        .unwrap_or_default()
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let started_at = if run.started.is_empty() {
        exit.as_ref()
            .map_or(time::ZERO.to_owned(), |e| e.started.clone())
    } else {
        run.started.clone()
    };
    let finished_at = match (&exit, state) {
        (Some(e), State::Exited | State::Restarting) => e.finished.clone(),
        (Some(e), _) if !e.finished.is_empty() => e.finished.clone(),
        _ => time::ZERO.to_owned(),
    };
    let mut state_json = json!({
        "Status": state.as_str(),
        "Running": matches!(state, State::Running | State::Paused),
        "Paused": state == State::Paused,
        "Restarting": state == State::Restarting,
        "OOMKilled": false,
        "Dead": false,
        "Pid": pid,
        "ExitCode": exit.as_ref().map_or(0, |e| e.code),
        "Error": exit.as_ref().and_then(|e| e.error.clone()).unwrap_or_default(),
        "StartedAt": if started_at.is_empty() { time::ZERO.to_owned() } else { started_at },
        "FinishedAt": finished_at,
    });
    if let Some(h) = engine.health(c) {
        state_json["Health"] = json!(h);
    }
    let exec_ids = {
        let ids = engine.exec_ids(&c.id);
        if ids.is_empty() {
            Value::Null
        } else {
            json!(ids)
        }
    };
    let mut v = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.args.first(),
        "Args": c.args.get(1..).unwrap_or_default(),
        "State": state_json,
        "Image": c.image_id,
        "ResolvConfPath": dir.join("init/etc/resolv.conf"),
        "HostnamePath": dir.join("init/etc/hostname"),
        "HostsPath": dir.join("init/etc/hosts"),
        "LogPath": engine.log_path(c),
        "Name": format!("/{}", c.name),
        "RestartCount": run.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids,
        "HostConfig": host_config(c),
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "LowerDir": std::iter::once(dir.join("init").display().to_string()).chain(layers).collect::<Vec<_>>().join(":"),
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
                "MergedDir": dir.join("rootfs"),
            }
        },
        "Mounts": c.mounts,
        "Config": config(c, &spec),
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "HairpinMode": false,
            "SandboxKey": attachment.as_ref().map(|a| a.netns.display().to_string()).unwrap_or_default(),
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": super::networks::port_map(c, attachment.as_ref()),
            "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
            "EndpointID": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "Gateway": first.map(|e| e.gateway.to_string()).unwrap_or_default(),
            "IPAddress": first.map(|e| e.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": first.map(|e| e.prefix).unwrap_or(0),
            "IPv6Gateway": "",
            "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
            "Networks": super::networks::networks_json(c, attachment.as_ref()),
        },
        "Wasm": c.wasm,
    });
    if size {
        add_sizes(engine, c, &mut v);
    }
    Ok(v)
}

/// Inspect's `Config`: the container's config in image terms (Entrypoint and Cmd apart,
/// Labels, Volumes, ...) plus what only the container has (Hostname, Tty, Image, the whole
/// environment it runs with).
fn config(c: &ContainerRecord, spec: &Value) -> Value {
    let mut config = match &c.config {
        Value::Object(m) => m.clone(),
        // A record from before the config was kept: the command line as Cmd.
        _ => serde_json::Map::from_iter([("Cmd".to_owned(), json!(spec["process"]["args"]))]),
    };
    let o = &c.options;
    config.insert("Hostname".into(), spec["hostname"].clone());
    config.insert(
        "Domainname".into(),
        json!(o.domainname.clone().unwrap_or_default()),
    );
    config.insert(
        "User".into(),
        json!(o.user.clone().unwrap_or_else(|| {
            config
                .get("User")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })),
    );
    config.insert("AttachStdin".into(), json!(o.interactive));
    config.insert("AttachStdout".into(), json!(true));
    config.insert("AttachStderr".into(), json!(true));
    config.insert("Tty".into(), json!(c.tty));
    config.insert("OpenStdin".into(), json!(o.interactive));
    config.insert("StdinOnce".into(), json!(o.stdin_once));
    config.insert("Env".into(), spec["process"]["env"].clone());
    config.insert("WorkingDir".into(), spec["process"]["cwd"].clone());
    config.insert("Image".into(), json!(c.image));
    config.entry("Labels").or_insert_with(|| json!({}));
    if config.get("Labels").is_some_and(Value::is_null) {
        config.insert("Labels".into(), json!({}));
    }
    if let Some(h) = &c.healthcheck {
        config.insert("Healthcheck".into(), json!(h));
    }
    Value::Object(config)
}

/// Inspect's `HostConfig`, from the options `create` took.
fn host_config(c: &ContainerRecord) -> Value {
    let o = &c.options;
    let r = &o.resources;
    let tmpfs: serde_json::Map<String, Value> = o
        .tmpfs
        .iter()
        .map(|t| {
            let (d, opts) = t.split_once(':').unwrap_or((t, ""));
            (d.to_owned(), json!(opts))
        })
        .collect();
    let binds: Vec<&String> = o.volumes.iter().filter(|v| v.contains(':')).collect();
    json!({
        "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
        "ContainerIDFile": "",
        "LogConfig": {
            "Type": o.log_driver.clone().unwrap_or_else(|| "json-file".into()),
            "Config": o.log_opts,
        },
        "NetworkMode": o.network.mode(),
        "PortBindings": o.port_bindings,
        "RestartPolicy": {
            "Name": if o.restart.name.is_empty() { "no" } else { o.restart.name.as_str() },
            "MaximumRetryCount": o.restart.maximum_retry_count,
        },
        "AutoRemove": c.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": null,
        "ConsoleSize": [0, 0],
        "CapAdd": o.cap_add,
        "CapDrop": o.cap_drop,
        "CgroupnsMode": "private",
        "Dns": o.dns,
        "DnsOptions": o.dns_options,
        "DnsSearch": o.dns_search,
        "ExtraHosts": o.extra_hosts,
        "GroupAdd": o.group_add,
        "IpcMode": namespace_mode(o.ipc_host, o.ipc_container.as_deref(), o.ipc_none, "private"),
        "Cgroup": "",
        "Links": null,
        "OomScoreAdj": o.oom_score_adj.unwrap_or(0),
        "PidMode": namespace_mode(o.pid_host, o.pid_container.as_deref(), false, ""),
        "Privileged": o.privileged,
        "PublishAllPorts": false,
        "ReadonlyRootfs": o.read_only,
        "SecurityOpt": o.security_opt,
        "Tmpfs": tmpfs,
        "UTSMode": if o.uts_host { "host" } else { "" },
        "UsernsMode": if o.userns_host { "host" } else { "" },
        "ShmSize": o.shm_size.unwrap_or(64 << 20),
        "Sysctls": o.sysctls,
        "Runtime": "capsa",
        "Isolation": "",
        "CpuShares": r.cpu_shares.unwrap_or(0),
        "Memory": r.memory.unwrap_or(0),
        "NanoCpus": r.cpus.map_or(0, |c| (c * 1e9).round() as i64),
        "CgroupParent": o.cgroup_parent.clone().unwrap_or_default(),
        "BlkioWeight": r.blkio_weight.unwrap_or(0),
        "CpuPeriod": r.cpu_period.unwrap_or(0),
        "CpuQuota": r.cpu_quota.unwrap_or(0),
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": r.cpuset_cpus.clone().unwrap_or_default(),
        "CpusetMems": r.cpuset_mems.clone().unwrap_or_default(),
        "Devices": super::create::devices_json(&o.devices),
        "DeviceCgroupRules": if o.device_cgroup_rules.is_empty() { Value::Null } else { json!(o.device_cgroup_rules) },
        "DeviceRequests": null,
        "MemoryReservation": r.memory_reservation.unwrap_or(0),
        "MemorySwap": r.memory_swap.unwrap_or(0),
        "MemorySwappiness": null,
        "OomKillDisable": r.oom_kill_disable,
        "PidsLimit": r.pids_limit,
        "Ulimits": o.ulimits,
        "Init": o.init,
        "Mounts": o.mounts.iter().map(|m| json!({"Type": m.kind, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only})).collect::<Vec<_>>(),
        "MaskedPaths": [],
        "ReadonlyPaths": [],
    })
}

/// `GET /containers/{id}/top`: ps(1)'s table as Docker's `Titles` and `Processes` (the last
/// column takes the rest of the line, as dockerd parses it).
pub fn top(engine: &Engine, c: &ContainerRecord, ps_args: &[String]) -> Result<Value> {
    let pids = engine.processes(c)?;
    let table = crate::runtime::ps_table(&pids, ps_args)?;
    let mut lines = table.lines();
    let titles: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let n = titles.len().max(1);
    let processes: Vec<Vec<String>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut fields: Vec<String> = Vec::new();
            let mut rest = l.trim_start();
            while fields.len() + 1 < n {
                match rest.find(char::is_whitespace) {
                    Some(i) => {
                        fields.push(rest[..i].to_owned());
                        rest = rest[i..].trim_start();
                    }
                    None => break,
                }
            }
            fields.push(rest.to_owned());
            fields
        })
        .collect();
    Ok(json!({ "Titles": titles, "Processes": processes }))
}

/// `GET /containers/{id}/changes`: `Kind` 0 changed, 1 added, 2 deleted.
pub fn changes(engine: &Engine, c: &ContainerRecord) -> Result<Value> {
    let list: Vec<Value> = engine
        .diff(c)?
        .into_iter()
        .map(|ch| {
            let kind = match ch.kind {
                ChangeKind::Changed => 0,
                ChangeKind::Added => 1,
                ChangeKind::Deleted => 2,
            };
            json!({ "Path": ch.path, "Kind": kind })
        })
        .collect();
    Ok(if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    })
}

/// `HostConfig.PidMode`/`IpcMode` as dockerd shows them.
pub(crate) fn namespace_mode(
    host: bool,
    joined: Option<&str>,
    none: bool,
    default: &str,
) -> String {
    if host {
        "host".into()
    } else if let Some(id) = joined {
        format!("container:{id}")
    } else if none {
        "none".into()
    } else {
        default.into()
    }
}

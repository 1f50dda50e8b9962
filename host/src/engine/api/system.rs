//! `GET /version`, `GET /info` and `GET /system/df`, in Docker's shapes.

use serde_json::{Value, json};

use super::{API_VERSION, MIN_API_VERSION, VERSION, containers, images, time};
use crate::engine::container::State;
use crate::engine::error::Result;
use crate::engine::{Engine, usage};

fn uname() -> (String, String) {
    // SAFETY: a zeroed utsname is valid for uname(2) to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.release), field(&u.nodename))
}

/// Go's name for this machine's architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET /version`.
pub fn version() -> Value {
    let (kernel, _) = uname();
    json!({
        "Platform": { "Name": "capsa" },
        "Components": [{
            "Name": "Engine",
            "Version": VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": go_arch(),
                "KernelVersion": kernel,
                "Experimental": "false",
                "GitCommit": "",
            }
        }],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

/// `/etc/os-release`'s PRETTY_NAME.
fn operating_system() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// What `GET /info` says beyond the engine's own state: set by the daemon.
#[derive(Debug, Clone, Default)]
pub struct InfoExtras {
    /// Event listeners connected now.
    pub event_listeners: usize,
    /// The daemon's own labels, debug flag and the like.
    pub debug: bool,
}

/// Whether `s` is an `ADDRESS/PREFIX` network (an insecure-registries entry may be one).
fn is_cidr(s: &str) -> bool {
    s.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
    })
}

/// `GET /info`.
pub fn info(engine: &Engine, extras: &InfoExtras) -> Result<Value> {
    let containers = engine.containers()?;
    let mut running = 0;
    let mut paused = 0;
    let mut stopped = 0;
    for c in &containers {
        match engine.state(c).0 {
            State::Running | State::Restarting => running += 1,
            State::Paused => paused += 1,
            _ => stopped += 1,
        }
    }
    let images = engine.store().list()?.len();
    let (kernel, hostname) = uname();
    let layout = crate::cgroups::Layout::detect().ok();
    let cgroup_version = match layout {
        Some(l) if l.is_pure_v2() => "2",
        _ => "1",
    };
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_total = usage::host_memory();
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut insecure = vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()];
    let registry = engine.registry_settings();
    // Docker's split: CIDRs here, registries by name in IndexConfigs (the docker CLI refuses
    // anything else in InsecureRegistryCIDRs).
    insecure.extend(registry.insecure.iter().filter(|r| is_cidr(r)).cloned());
    let mirrors: Vec<String> = registry
        .mirrors
        .iter()
        .map(|m| format!("{}/", m.url()))
        .collect();
    let mut index_configs = serde_json::Map::new();
    index_configs.insert(
        "docker.io".into(),
        json!({ "Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true }),
    );
    for r in registry.insecure.iter().filter(|r| !is_cidr(r)) {
        index_configs.insert(
            r.clone(),
            json!({ "Name": r, "Mirrors": [], "Secure": false, "Official": false }),
        );
    }
    Ok(json!({
        "ID": engine_id(engine),
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["host", "null"],
            "Authorization": null,
            "Log": ["json-file", "none"],
        },
        "MemoryLimit": true,
        "SwapLimit": std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() || cgroup_version == "2",
        "KernelMemory": false,
        "KernelMemoryTCP": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1"),
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": extras.debug,
        "NFd": fds,
        "OomKillDisable": false,
        "NGoroutines": threads,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": extras.event_listeners,
        "KernelVersion": kernel,
        "OperatingSystem": operating_system(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": null,
            "AllowNondistributableArtifactsHostnames": null,
            "InsecureRegistryCIDRs": insecure,
            "IndexConfigs": index_configs,
            "Mirrors": mirrors,
        },
        "NCPU": ncpu,
        "MemTotal": mem_total,
        "GenericResources": null,
        "DockerRootDir": engine.root(),
        "HttpProxy": std::env::var("HTTP_PROXY").unwrap_or_default(),
        "HttpsProxy": std::env::var("HTTPS_PROXY").unwrap_or_default(),
        "NoProxy": std::env::var("NO_PROXY").unwrap_or_default(),
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": { "capsa": { "path": "capsa" } },
        "DefaultRuntime": "capsa",
        "Swarm": {
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null,
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": { "ID": "", "Expected": "" },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": security_options(engine),
        "Warnings": [],
    }))
}

/// dockerd's list: the default seccomp profile, the user namespace when remapping, cgroupns.
fn security_options(engine: &Engine) -> Vec<&'static str> {
    let mut options = vec!["name=seccomp,profile=builtin"];
    if engine.userns_remap().is_some() {
        options.push("name=userns");
    }
    options.push("name=cgroupns");
    options
}

/// A stable id for this engine's store (Docker's `ID`).
fn engine_id(engine: &Engine) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(engine.root().as_os_str().as_encoded_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `GET /system/df`: images, containers and volumes with their sizes.
pub fn df(engine: &Engine) -> Result<Value> {
    let containers = engine.containers()?;
    let mut image_list = Vec::new();
    let mut layers_size = 0u64;
    for i in engine.store().list()? {
        let id = i.id.to_string();
        let used = containers.iter().filter(|c| c.image_id == id).count() as i64;
        layers_size += i.size;
        image_list.push(images::summary(engine, &i, used));
    }
    let container_list: Vec<Value> = containers
        .iter()
        .map(|c| containers::summary(engine, c, true))
        .collect();
    let mut volume_list = Vec::new();
    for v in engine.volumes()? {
        let users = engine.volume_users(&v.name)?;
        let data = engine.volume_data(&v.name);
        volume_list.push(json!({
            "Name": v.name, "Driver": v.driver, "Mountpoint": data,
            "CreatedAt": v.created_at, "Labels": v.labels, "Scope": "local", "Options": v.options,
            "UsageData": { "Size": usage::disk_usage(&data), "RefCount": users.len() },
        }));
    }
    Ok(json!({
        "LayersSize": layers_size,
        "Images": image_list,
        "Containers": container_list,
        "Volumes": volume_list,
        "BuildCache": [],
    }))
}

/// A volume in Docker's shape (`GET /volumes/{name}`).
pub fn volume_json(engine: &Engine, v: &crate::engine::VolumeRecord) -> Value {
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": engine.volume_data(&v.name),
        "CreatedAt": v.created_at,
        "Labels": v.labels,
        "Scope": "local",
        "Options": v.options,
        "Status": null,
    })
}

/// The creation time of an RFC 3339 string as unix seconds (for filters on volumes).
pub fn created_unix(v: &str) -> i64 {
    time::unix(v)
}

//! The OCI runtime spec of a container, built from the image config (Entrypoint, Cmd, Env,
//! WorkingDir, User, Volumes, and the wasm markers) and the `run`/`create` flags, with Docker's
//! rules for combining them. Every flag is parsed here, before anything is created.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::error::{IoContext, Result, invalid};
use super::user::Identity;

/// `--network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace with only loopback (the default: capsa has no bridge).
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// The flags of `capsa create` / `capsa run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The image (name or id).
    pub image: String,
    /// The command after the image: replaces the image's Cmd.
    pub command: Vec<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `-e KEY=VALUE` or `-e KEY` (taken from the caller's environment).
    pub env: Vec<String>,
    /// `--env-file`.
    pub env_files: Vec<PathBuf>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--entrypoint` (`""` clears the image's).
    pub entrypoint: Option<String>,
    /// `-v SRC:DST[:ro]`.
    pub volumes: Vec<String>,
    /// `--tmpfs DST[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `-m` in bytes.
    pub memory: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--network`.
    pub network: Network,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--cgroup-parent`: the container's cgroup is `<parent>/<id>` (default `/capsa`).
    pub cgroup_parent: Option<String>,
    /// `--stop-signal`: what `stop` sends first (default: the image's StopSignal, else SIGTERM).
    pub stop_signal: Option<String>,
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

/// A validated `-v`.
#[derive(Debug, Clone)]
pub(crate) struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Flags parsed and checked, before anything exists.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<(String, Vec<String>)>,
    pub env: Vec<String>,
}

fn absolute_dest(dest: &str, what: &str) -> Result<String> {
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
        return Err(invalid(
            format!("{what} {dest:?}"),
            "the container path must be absolute, without ..",
        ));
    }
    Ok(dest.to_owned())
}

/// Checks the flags that name files and paths.
pub(crate) fn check(options: &RunOptions) -> Result<Checked> {
    let mut binds = Vec::new();
    for v in &options.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, None),
            [s, d, m] => (*s, *d, Some(*m)),
            _ => return Err(invalid(format!("-v {v:?}"), "expected SRC:DST[:ro|rw]")),
        };
        if !src.starts_with('/') {
            return Err(invalid(
                format!("-v {v:?}"),
                "the source must be an absolute host path (named volumes are not supported)",
            ));
        }
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => {
                return Err(invalid(
                    format!("-v {v:?}"),
                    format!("unknown mode {other:?}"),
                ));
            }
        };
        binds.push(Bind {
            source: PathBuf::from(src),
            destination: absolute_dest(dst, "-v")?,
            read_only,
        });
    }
    if let Some(signal) = &options.stop_signal {
        crate::runtime::parse_signal(signal)
            .map_err(|e| invalid(format!("--stop-signal {signal:?}"), e.to_string()))?;
    }
    let mut tmpfs = Vec::new();
    for t in &options.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
        let mut list: Vec<String> = ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
        list.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
        tmpfs.push((absolute_dest(dst, "--tmpfs")?, list));
    }
    let mut env = Vec::new();
    for file in &options.env_files {
        let text = std::fs::read_to_string(file).io("read --env-file", file)?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.push(line.to_owned());
        }
    }
    env.extend(options.env.iter().cloned());
    let mut resolved = Vec::new();
    for e in env {
        match e.split_once('=') {
            Some(("", _)) => return Err(invalid(format!("-e {e:?}"), "empty variable name")),
            Some(_) => resolved.push(e),
            None if e.is_empty() => return Err(invalid("-e \"\"", "empty variable name")),
            None => {
                if let Ok(value) = std::env::var(&e) {
                    resolved.push(format!("{e}={value}"));
                }
            }
        }
    }
    if let Some(cpus) = options.cpus
        && !(cpus > 0.0 && cpus <= 1024.0)
    {
        return Err(invalid(format!("--cpus {cpus}"), "must be above 0"));
    }
    if let Some(parent) = &options.cgroup_parent
        && (!parent.starts_with('/') || parent.split('/').any(|c| c == ".."))
    {
        return Err(invalid(
            format!("--cgroup-parent {parent:?}"),
            "must be an absolute cgroup path",
        ));
    }
    Ok(Checked {
        binds,
        tmpfs,
        env: resolved,
    })
}

/// Adds `KEY=value` entries to `env`, replacing the value of a key already there.
pub(crate) fn merge_env(env: &mut Vec<String>, add: &[String]) {
    for e in add {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match env
            .iter_mut()
            .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key)
        {
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

/// The process's command line by Docker's rules: `--entrypoint` replaces the image's
/// Entrypoint and drops its Cmd; a command replaces Cmd.
pub(crate) fn command_line(image_config: &Value, options: &RunOptions) -> Vec<String> {
    let (entrypoint, cmd_default) = match &options.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
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

/// Docker's default capabilities.
const CAPABILITIES: &[&str] = &[
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

/// Everything the spec is made of, decided by `create`.
pub(crate) struct SpecInput<'a> {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Identity,
    pub hostname: String,
    pub rootfs: &'a Path,
    pub checked: &'a Checked,
    /// Image `Volumes` not covered by a flag, with the host dir that backs each.
    pub anonymous: Vec<(String, PathBuf)>,
    pub cgroup: String,
    pub annotations: Vec<(String, String)>,
    pub options: &'a RunOptions,
}

/// The config.json for a container.
pub(crate) fn build(input: &SpecInput<'_>) -> Result<Vec<u8>> {
    let mut spec: Value = serde_json::from_str(crate::spec::default_spec_json())
        .map_err(|e| invalid("default spec", e.to_string()))?;
    let options = input.options;
    let caps: Vec<&str> = if input.user.uid == 0 {
        CAPABILITIES.to_vec()
    } else {
        Vec::new()
    };
    // Docker's 1048576 open files, within what this host allows without CAP_SYS_RESOURCE.
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard.min(1_048_576));
    spec["process"] = json!({
        "terminal": options.tty,
        "user": {
            "uid": input.user.uid,
            "gid": input.user.gid,
            "additionalGids": input.user.additional_gids,
        },
        "args": input.args,
        "env": input.env,
        "cwd": input.cwd,
        "capabilities": {
            "bounding": CAPABILITIES,
            "effective": caps,
            "permitted": caps,
        },
        "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile }],
        "noNewPrivileges": false,
    });
    spec["root"] = json!({ "path": input.rootfs, "readonly": options.read_only });
    spec["hostname"] = json!(input.hostname);
    let mounts = spec["mounts"]
        .as_array_mut()
        .ok_or_else(|| invalid("default spec", "no mounts"))?;
    for (dest, source) in &input.anonymous {
        mounts.push(json!({ "destination": dest, "type": "bind", "source": source, "options": ["rbind", "rprivate"] }));
    }
    for b in &input.checked.binds {
        let mut opts = vec!["rbind", "rprivate"];
        if b.read_only {
            opts.push("ro");
        }
        mounts.push(json!({ "destination": b.destination, "type": "bind", "source": b.source, "options": opts }));
    }
    for (dest, opts) in &input.checked.tmpfs {
        mounts.push(
            json!({ "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts }),
        );
    }
    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(input.cgroup);
    let resources = &mut linux["resources"];
    // Docker's device rules: deny all; the runtime allows the standard devices itself.
    if let Some(m) = options.memory {
        resources["memory"] = json!({ "limit": m });
    }
    if let Some(c) = options.cpus {
        resources["cpu"] = json!({ "quota": (c * 100_000.0).round() as i64, "period": 100_000u64 });
    }
    if let Some(p) = options.pids_limit {
        resources["pids"] = json!({ "limit": p });
    }
    if options.network == Network::Host
        && let Some(ns) = linux["namespaces"].as_array_mut()
    {
        ns.retain(|n| n["type"] != "network");
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
    fn entrypoint_flag_drops_image_cmd() {
        let config = json!({ "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"] });
        let mut o = RunOptions::default();
        assert_eq!(command_line(&config, &o), ["/bin/sh", "-c", "echo hi"]);
        o.command = vec!["true".into()];
        assert_eq!(command_line(&config, &o), ["/bin/sh", "-c", "true"]);
        o.command.clear();
        o.entrypoint = Some("/bin/echo".into());
        assert_eq!(command_line(&config, &o), ["/bin/echo"]);
    }

    #[test]
    fn env_merge_replaces_by_key() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        merge_env(&mut env, &["A=2".to_string(), "B=3".to_string()]);
        assert_eq!(env, ["PATH=/bin", "A=2", "B=3"]);
    }
}

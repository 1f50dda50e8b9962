//! Host devices in a container: `--device HOST[:CONTAINER][:PERMISSIONS]`,
//! `--device-cgroup-rule 'TYPE MAJOR:MINOR ACCESS'` and `--privileged`'s every host device, as
//! dockerd turns them into the OCI `linux.devices` (the nodes the runtime creates) and
//! `linux.resources.devices` (what the device cgroup lets the container open).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::error::{Result, invalid};

/// One `--device`: the host path, where it appears, and the cgroup access (`rwm` by default).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

fn is_permissions(text: &str) -> bool {
    !text.is_empty() && text.len() <= 3 && text.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

impl DeviceMapping {
    /// Parses the docker CLI's `--device` value: `HOST`, `HOST:CONTAINER`, `HOST:PERMISSIONS`
    /// or `HOST:CONTAINER:PERMISSIONS`.
    pub fn parse(text: &str) -> Result<Self> {
        let flag = || format!("--device {text}");
        let parts: Vec<&str> = text.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [host] => (*host, *host, "rwm"),
            [host, p] if is_permissions(p) => (*host, *host, *p),
            [host, container] => (*host, *container, "rwm"),
            [host, container, p] => (*host, *container, *p),
            _ => return Err(invalid(flag(), "expected HOST[:CONTAINER][:PERMISSIONS]")),
        };
        let mapping = Self {
            path_on_host: host.to_owned(),
            path_in_container: container.to_owned(),
            cgroup_permissions: permissions.to_owned(),
        };
        mapping.check()?;
        Ok(mapping)
    }

    /// The checks dockerd makes of a mapping from either the CLI or `HostConfig.Devices`.
    pub fn check(&self) -> Result<()> {
        let flag = || format!("--device {}", self.path_on_host);
        if !self.path_on_host.starts_with('/') {
            return Err(invalid(flag(), "the host path must be absolute"));
        }
        if !self.path_in_container.starts_with('/')
            || self.path_in_container.split('/').any(|c| c == "..")
        {
            return Err(invalid(
                flag(),
                format!(
                    "{:?}: the container path must be absolute, without ..",
                    self.path_in_container
                ),
            ));
        }
        if !is_permissions(&self.cgroup_permissions) {
            return Err(invalid(
                flag(),
                format!(
                    "{:?}: permissions are a combination of r, w and m",
                    self.cgroup_permissions
                ),
            ));
        }
        Ok(())
    }
}

/// A device node found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    path_in_container: String,
    kind: &'static str,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn node(path: &Path, path_in_container: String) -> std::io::Result<Option<Node>> {
    let meta = std::fs::metadata(path)?;
    let kind = if meta.file_type().is_char_device() {
        "c"
    } else if meta.file_type().is_block_device() {
        "b"
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    Ok(Some(Node {
        path_in_container,
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

/// The nodes under `dir` (recursively, symlinks not followed), as runc's `HostDevices` lists
/// them: the pseudo-terminal, shm, fd and mqueue directories and /dev/console are not devices a
/// container takes from the host.
fn nodes_under(dir: &Path, container_dir: &str, out: &mut Vec<Node>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type()?;
        let inside = format!("{}/{name}", container_dir.trim_end_matches('/'));
        if file_type.is_dir() {
            if matches!(
                name.as_ref(),
                "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
            ) {
                continue;
            }
            nodes_under(&entry.path(), &inside, out)?;
        } else if file_type.is_symlink() || name == "console" {
            continue;
        } else if let Some(n) = node(&entry.path(), inside)? {
            out.push(n);
        }
    }
    Ok(())
}

/// What a container's spec gets for its devices.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Devices {
    /// `linux.devices`.
    pub nodes: Vec<Value>,
    /// Rules appended to `linux.resources.devices` (after the default deny).
    pub rules: Vec<Value>,
}

/// A node as a `linux.devices` entry.
fn node_json(n: &Node) -> Value {
    json!({
        "path": n.path_in_container, "type": n.kind, "major": n.major, "minor": n.minor,
        "fileMode": n.mode, "uid": n.uid, "gid": n.gid,
    })
}

fn push_node(devices: &mut Devices, n: &Node, permissions: &str) {
    devices.nodes.push(node_json(n));
    devices.rules.push(json!({
        "allow": true, "type": n.kind, "major": n.major, "minor": n.minor, "access": permissions,
    }));
}

/// Resolves `--device` mappings on this host: a device node, or a directory of them (each node
/// beneath it, at the same place under the container path), symlinks followed as dockerd does.
pub(crate) fn resolve(mappings: &[DeviceMapping], rules: &[String]) -> Result<Devices> {
    let mut devices = Devices::default();
    for m in mappings {
        let flag = || format!("--device {}", m.path_on_host);
        let host = std::fs::canonicalize(&m.path_on_host)
            .map_err(|e| invalid(flag(), format!("gathering device information: {e}")))?;
        let meta = std::fs::metadata(&host)
            .map_err(|e| invalid(flag(), format!("gathering device information: {e}")))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            nodes_under(&host, &m.path_in_container, &mut found)
                .map_err(|e| invalid(flag(), format!("listing devices: {e}")))?;
            if found.is_empty() {
                return Err(invalid(flag(), "the directory holds no device nodes"));
            }
            for n in &found {
                push_node(&mut devices, n, &m.cgroup_permissions);
            }
        } else {
            let n = node(&host, m.path_in_container.clone())
                .map_err(|e| invalid(flag(), e.to_string()))?
                .ok_or_else(|| {
                    invalid(
                        flag(),
                        format!("{} is not a device node", PathBuf::from(&host).display()),
                    )
                })?;
            push_node(&mut devices, &n, &m.cgroup_permissions);
        }
    }
    for rule in rules {
        devices.rules.push(cgroup_rule(rule)?);
    }
    Ok(devices)
}

/// `--privileged`: every host device, and a cgroup that allows every device.
pub(crate) fn all_host_devices() -> Result<Devices> {
    let mut found = Vec::new();
    nodes_under(Path::new("/dev"), "/dev", &mut found)
        .map_err(|e| invalid("--privileged", format!("listing the host's devices: {e}")))?;
    Ok(Devices {
        nodes: found.iter().map(node_json).collect(),
        rules: vec![json!({ "allow": true, "access": "rwm" })],
    })
}

/// One `--device-cgroup-rule`: `TYPE MAJOR:MINOR ACCESS` (`a`, `b` or `c`; `*` for any
/// number), the device cgroup's own syntax.
pub(crate) fn cgroup_rule(text: &str) -> Result<Value> {
    let bad = || {
        invalid(
            format!("--device-cgroup-rule {text:?}"),
            "expected 'TYPE MAJOR:MINOR ACCESS' (TYPE a, b or c; * for any number; ACCESS of r, w, m)",
        )
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [kind, numbers, access] = fields.as_slice() else {
        return Err(bad());
    };
    if !matches!(*kind, "a" | "b" | "c") || !is_permissions(access) {
        return Err(bad());
    }
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<Value> {
        if n == "*" {
            Ok(Value::Null)
        } else {
            n.parse::<i64>().map(Value::from).map_err(|_| bad())
        }
    };
    let mut rule = json!({ "allow": true, "type": kind, "access": access });
    for (key, value) in [("major", number(major)?), ("minor", number(minor)?)] {
        if !value.is_null() {
            rule[key] = value;
        }
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags_parse_as_the_docker_cli_does() {
        let m = DeviceMapping::parse("/dev/fuse").unwrap();
        assert_eq!(
            (m.path_in_container.as_str(), m.cgroup_permissions.as_str()),
            ("/dev/fuse", "rwm")
        );
        let m = DeviceMapping::parse("/dev/sda:/dev/xvda:r").unwrap();
        assert_eq!(
            (m.path_in_container.as_str(), m.cgroup_permissions.as_str()),
            ("/dev/xvda", "r")
        );
        let m = DeviceMapping::parse("/dev/null:rw").unwrap();
        assert_eq!(
            (m.path_in_container.as_str(), m.cgroup_permissions.as_str()),
            ("/dev/null", "rw")
        );
        assert!(DeviceMapping::parse("dev/null").is_err());
        assert!(DeviceMapping::parse("/dev/null:/x:rwx").is_err());
        assert!(DeviceMapping::parse("/dev/null:rel").is_err());
        assert!(DeviceMapping::parse("/a:/b:r:extra").is_err());
    }

    #[test]
    fn a_device_resolves_to_its_numbers_and_a_missing_one_is_named() {
        let m = DeviceMapping::parse("/dev/null:/dev/capsa-null:r").unwrap();
        let d = resolve(&[m], &[]).unwrap();
        assert_eq!(d.nodes[0]["major"], 1);
        assert_eq!(d.nodes[0]["minor"], 3);
        assert_eq!(d.nodes[0]["path"], "/dev/capsa-null");
        assert_eq!(d.rules[0]["access"], "r");
        let err = resolve(&[DeviceMapping::parse("/nonexistent").unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--device /nonexistent") && err.contains("No such file"),
            "{err}"
        );
        let err = resolve(&[DeviceMapping::parse("/etc/hostname").unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a device node"), "{err}");
    }

    #[test]
    fn cgroup_rules_parse_with_wildcards() {
        let r = cgroup_rule("c 1:3 mr").unwrap();
        assert_eq!(
            r,
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "mr"})
        );
        let r = cgroup_rule("b 7:* rwm").unwrap();
        assert_eq!(
            r,
            json!({"allow": true, "type": "b", "major": 7, "access": "rwm"})
        );
        for bad in ["c 1:3", "x 1:3 r", "c 1-3 r", "c a:3 r", "c 1:3 rx"] {
            assert!(cgroup_rule(bad).is_err(), "{bad}");
        }
    }
}

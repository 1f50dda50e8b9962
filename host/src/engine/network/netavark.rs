//! The network backend: podman's netavark (with aardvark-dns for names), driven as an external
//! binary through its JSON-on-stdin contract. This is the only file that knows netavark; the
//! rest of the engine hands it a [`Request`] and reads back the [`Status`] per network.
//!
//! `netavark --config DIR --rootless=false --aardvark-binary=PATH setup|teardown NETNS` with the
//! same JSON on stdin for both: the caller keeps the exact setup request for the teardown.
//! netavark starts aardvark-dns itself (port 53 on each DNS-enabled network's gateway) with its
//! configuration under `DIR/aardvark-dns`, and stops it with the last such container.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, IoContext, Result};

/// Where Debian's (and Fedora's) packages put the binaries; `CAPSA_NETAVARK` /
/// `CAPSA_AARDVARK_DNS` name others.
const SEARCH: [&str; 3] = [
    "/usr/lib/podman",
    "/usr/libexec/podman",
    "/usr/local/libexec/podman",
];

/// One port published from the host (netavark's `port_mappings` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `""` for every address of the host.
    pub host_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    /// How many consecutive ports from both starts.
    pub range: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// What one network is to netavark (`network_info`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub network_interface: String,
    pub subnets: Vec<SubnetInfo>,
    pub ipv6_enabled: bool,
    pub internal: bool,
    pub dns_enabled: bool,
    pub ipam_options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A subnet and its gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubnetInfo {
    pub subnet: String,
    pub gateway: String,
}

/// The container's options on one network (`networks`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerNetwork {
    pub static_ips: Vec<String>,
    pub aliases: Vec<String>,
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_mac: Option<String>,
}

/// The whole request, setup and teardown alike.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub container_id: String,
    pub container_name: String,
    pub port_mappings: Vec<PortMapping>,
    pub networks: BTreeMap<String, PerNetwork>,
    pub network_info: BTreeMap<String, NetworkInfo>,
    /// Upstream servers aardvark forwards to for names it does not know (`--dns`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
}

/// What setup reports for one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub dns_search_domains: Vec<String>,
    #[serde(default)]
    pub dns_server_ips: Vec<String>,
    #[serde(default)]
    pub interfaces: BTreeMap<String, Interface>,
}

/// One interface made in the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Interface {
    #[serde(default)]
    pub mac_address: String,
    #[serde(default)]
    pub subnets: Vec<InterfaceSubnet>,
}

/// An address on an interface.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InterfaceSubnet {
    pub ipnet: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// The backend: the two binaries and netavark's configuration directory.
#[derive(Debug, Clone)]
pub struct Netavark {
    netavark: PathBuf,
    aardvark: PathBuf,
    config: PathBuf,
}

fn find(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    SEARCH
        .iter()
        .map(|d| Path::new(d).join(name))
        .chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|d| d.join(name))
                .collect::<Vec<_>>(),
        )
        .find(|p| p.is_file())
}

impl Netavark {
    /// Finds netavark and aardvark-dns; `config` is netavark's `--config` directory (made here).
    pub fn locate(config: &Path) -> Result<Netavark> {
        let missing = |what: &str, env: &str| EngineError::Invalid {
            what: "bridge networking".into(),
            reason: format!(
                "{what} is not installed (Debian: apt-get install netavark aardvark-dns; or set {env})"
            ),
        };
        let netavark = find("CAPSA_NETAVARK", "netavark")
            .ok_or_else(|| missing("netavark", "CAPSA_NETAVARK"))?;
        let aardvark = find("CAPSA_AARDVARK_DNS", "aardvark-dns")
            .ok_or_else(|| missing("aardvark-dns", "CAPSA_AARDVARK_DNS"))?;
        std::fs::create_dir_all(config).io("mkdir", config)?;
        Ok(Netavark {
            netavark,
            aardvark,
            config: config.to_owned(),
        })
    }

    /// Sets up the networks of `request` in the namespace at `netns`.
    pub fn setup(&self, netns: &Path, request: &Request) -> Result<BTreeMap<String, Status>> {
        let out = self.call("setup", netns, request)?;
        serde_json::from_slice(&out).map_err(|e| EngineError::Invalid {
            what: "netavark setup's answer".into(),
            reason: e.to_string(),
        })
    }

    /// Tears down what `request` set up (the same request, as netavark requires).
    pub fn teardown(&self, netns: &Path, request: &Request) -> Result<()> {
        self.call("teardown", netns, request).map(drop)
    }

    fn call(&self, verb: &str, netns: &Path, request: &Request) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(request).map_err(|e| EngineError::Invalid {
            what: "netavark request".into(),
            reason: e.to_string(),
        })?;
        let mut child = Command::new(&self.netavark)
            .arg("--config")
            .arg(&self.config)
            .arg("--rootless=false")
            .arg(format!("--aardvark-binary={}", self.aardvark.display()))
            .arg(verb)
            .arg(netns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .io("spawn", &self.netavark)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&body).io("write to", &self.netavark)?;
        }
        let out = child.wait_with_output().io("wait for", &self.netavark)?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // netavark answers `{"error": "..."}` on stdout; stderr has its log lines.
        let reason = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&out.stderr);
                text.lines()
                    .filter(|l| !l.contains("failed to connect to syslog"))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        Err(EngineError::Network(format!(
            "network {verb}: netavark: {reason}"
        )))
    }
}

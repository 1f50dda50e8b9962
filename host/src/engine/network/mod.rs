//! Bridge networks, Docker's model on podman's network stack: a network is a Linux bridge with
//! a subnet; a container on it gets a veth pair from its own network namespace into the bridge,
//! an address of the subnet, NAT to the outside, DNAT for its published ports and, on
//! user-defined networks, DNS by container name and alias (aardvark-dns). netavark does the
//! kernel side (`netavark.rs`); capsa owns the rest:
//!
//! ```text
//! <root>/networks/<id>.json     a network's definition (name, subnet, gateway, bridge, options)
//! <root>/networks/lock          flock'd by whoever changes networks or attachments
//! <state>/networks/<cid>.json   a container's attachment: the exact netavark request (kept for
//!                               its teardown), its addresses, MACs and published ports
//! <state>/netns/<cid>           the container's network namespace, bound (see `netns.rs`)
//! <state>/netavark/             netavark's --config dir (aardvark-dns's configuration)
//! <state>/keepers/<id>.json     a network's keeper, which holds its bridge up between
//!                               containers (see `keeper.rs`), and `<id>.netns`, its namespace
//! ```
//!
//! The attachments are the leases: an address is in use while an attachment names it, and the
//! lock is held from reading them to writing the new one. Attachments live in the state dir
//! because what they describe (veths, rules, namespaces) does not survive a reboot either.
//!
//! Predefined networks, as in Docker: `bridge` (the default bridge, `capsa0`, 172.17.0.0/16
//! unless the host routes it already; no name resolution), `host` and `none`.

pub mod attach;
pub mod ipam;
pub mod keeper;
pub mod netavark;
pub mod netns;
pub mod ports;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use self::ipam::Subnet;
use super::Engine;
use super::container::{now_rfc3339, random_id, read_json, write_atomic};
use super::error::{EngineError, IoContext, Result, invalid};

/// The default bridge's name, as Docker calls it.
pub const DEFAULT_BRIDGE: &str = "bridge";
/// The default bridge's interface unless the configuration's `bridge` names another.
pub const DEFAULT_BRIDGE_INTERFACE: &str = "capsa0";
/// The networks every engine has, which cannot be made or removed.
pub const PREDEFINED: [&str; 3] = [DEFAULT_BRIDGE, "host", "none"];

/// Driver options a network accepts (Docker's names and netavark's).
const KNOWN_OPTIONS: [&str; 5] = [
    "com.docker.network.bridge.name",
    "com.docker.network.driver.mtu",
    "mtu",
    "isolate",
    "com.docker.network.bridge.enable_icc",
];

/// A network's definition, as stored (Docker's `Network` object is computed from it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Created")]
    pub created: String,
    /// `bridge`, or `host`/`null` for the predefined `host` and `none`.
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Subnet", default)]
    pub subnet: Option<Subnet>,
    #[serde(rename = "Gateway", default)]
    pub gateway: Option<Ipv4Addr>,
    /// Addresses are given from this part of the subnet only (`--ip-range`).
    #[serde(rename = "IPRange", default)]
    pub ip_range: Option<Subnet>,
    /// No route out and no published ports (`--internal`).
    #[serde(rename = "Internal", default)]
    pub internal: bool,
    /// Name resolution (aardvark-dns): user networks have it, the default bridge does not.
    #[serde(rename = "DNS", default)]
    pub dns: bool,
    /// The bridge device.
    #[serde(rename = "Interface", default)]
    pub interface: String,
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Options", default)]
    pub options: BTreeMap<String, String>,
}

impl NetworkRecord {
    /// Whether containers on it get an interface (not `host` or `none`).
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
}

/// What `network create` takes (`docker network create`'s flags, the API's create body).
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    pub name: String,
    /// Only `bridge` (or empty).
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// `--attachable` (for swarm's overlay networks): accepted for docker's command lines; a
    /// bridge network takes any container. (Docker's `CheckDuplicate` is always on here: a
    /// name in use fails `create`, which compose relies on.)
    pub attachable: bool,
}

/// The default bridge as the configuration sets it (`bridge`, `bip` in daemon.json).
#[derive(Debug, Clone, Default)]
pub struct DefaultBridge {
    /// The bridge device (default `capsa0`); `none`: no default bridge.
    pub interface: Option<String>,
    /// The gateway address with the subnet's prefix (`172.17.0.1/16`, Docker's `bip`).
    pub bip: Option<String>,
}

/// Docker's rule for network names (the same as for containers, with dots allowed).
fn validate_network_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("network name {name:?}"),
            "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
        ))
    }
}

/// Linux's rule for interface names: 1..15 bytes, no `/`, no whitespace.
fn validate_interface(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        return Err(invalid(
            format!("bridge name {name:?}"),
            "an interface name is 1 to 15 characters, without '/', ':' or spaces",
        ));
    }
    Ok(())
}

impl Engine {
    /// `--bridge none`: the engine has no default bridge, and containers without a network
    /// get only loopback (dockerd's meaning).
    pub fn default_bridge_disabled(&self) -> bool {
        self.default_bridge.interface.as_deref() == Some("none")
    }

    fn networks_dir(&self) -> PathBuf {
        self.root.join("networks")
    }

    /// The lock every change to networks and attachments holds (definitions and leases).
    pub(crate) fn network_lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let dir = self.networks_dir();
        std::fs::create_dir_all(&dir).io("mkdir", &dir)?;
        super::container::lock_file(&dir.join("lock"), nix::fcntl::FlockArg::LockExclusive)
    }

    /// Every stored network, predefined ones first made if missing (caller holds the lock).
    fn networks_locked(&self) -> Result<Vec<NetworkRecord>> {
        let dir = self.networks_dir();
        let mut list = Vec::new();
        for entry in std::fs::read_dir(&dir).io("list", &dir)? {
            let path = entry.io("list", &dir)?.path();
            if path.extension().is_some_and(|e| e == "json") {
                list.push(read_json::<NetworkRecord>(&path)?);
            }
        }
        for name in PREDEFINED {
            if name == DEFAULT_BRIDGE && self.default_bridge_disabled() {
                continue;
            }
            if !list.iter().any(|n| n.name == name) {
                let record = self.predefined(name, &list)?;
                self.write_network(&record)?;
                list.push(record);
            }
        }
        list.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(list)
    }

    /// Whether a network with this id is stored (none is made, unlike `networks_locked`).
    fn network_defined(&self, id: &str) -> bool {
        self.networks_dir().join(format!("{id}.json")).exists()
    }

    /// The record of a predefined network, made on first use.
    fn predefined(&self, name: &str, existing: &[NetworkRecord]) -> Result<NetworkRecord> {
        let mut record = NetworkRecord {
            name: name.to_owned(),
            id: random_id()?,
            created: now_rfc3339(),
            driver: match name {
                "host" => "host",
                "none" => "null",
                _ => "bridge",
            }
            .to_owned(),
            subnet: None,
            gateway: None,
            ip_range: None,
            internal: false,
            dns: false,
            interface: String::new(),
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        };
        if name == DEFAULT_BRIDGE {
            let interface = self
                .default_bridge
                .interface
                .clone()
                .unwrap_or_else(|| DEFAULT_BRIDGE_INTERFACE.to_owned());
            validate_interface(&interface)?;
            let (subnet, gateway) = match &self.default_bridge.bip {
                Some(bip) => parse_bip(bip)?,
                None => {
                    let taken = self.taken_subnets(existing);
                    let subnet =
                        ipam::first_free(ipam::default_pools(), &taken).ok_or_else(|| {
                            EngineError::Network("no free subnet for the default bridge".into())
                        })?;
                    (subnet, subnet.first_host())
                }
            };
            record.subnet = Some(subnet);
            record.gateway = Some(gateway);
            record.interface = interface.clone();
            record
                .options
                .insert("com.docker.network.bridge.name".into(), interface);
            record.options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
        }
        Ok(record)
    }

    /// Subnets a new network must not overlap: this store's networks and the host's routes
    /// (other than a bridge of this store, which routes its own subnet).
    fn taken_subnets(&self, existing: &[NetworkRecord]) -> Vec<Subnet> {
        let mut taken: Vec<Subnet> = existing.iter().filter_map(|n| n.subnet).collect();
        taken.extend(ipam::host_routes());
        taken
    }

    fn write_network(&self, record: &NetworkRecord) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| invalid("network", e.to_string()))?;
        write_atomic(
            &self.networks_dir().join(format!("{}.json", record.id)),
            &bytes,
        )
    }

    /// Finds a network by name, id or unique id prefix (caller holds the lock).
    fn find_network(list: &[NetworkRecord], key: &str) -> Result<NetworkRecord> {
        if let Some(n) = list.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let matches: Vec<&NetworkRecord> = list
            .iter()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::NotFound(format!("network {key} not found"))),
            _ => Err(invalid(
                format!("network {key:?}"),
                "the id prefix names more than one network",
            )),
        }
    }

    /// `network ls`: every network, the predefined ones included.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let _lock = self.network_lock()?;
        self.networks_locked()
    }

    /// `network inspect`: one network by name, id or id prefix.
    pub fn network(&self, key: &str) -> Result<NetworkRecord> {
        let _lock = self.network_lock()?;
        Self::find_network(&self.networks_locked()?, key)
    }

    /// `network create`: checks everything first (name, driver, subnet and gateway, overlap
    /// with this store's networks and the host's routes, options), then writes the record in
    /// one atomic step. The bridge itself appears with the first container.
    pub fn network_create(&self, o: &NetworkOptions) -> Result<NetworkRecord> {
        validate_network_name(&o.name)?;
        match o.driver.as_str() {
            "" | "bridge" => {}
            other => {
                return Err(invalid(
                    format!("network driver {other:?}"),
                    "only the bridge driver is available",
                ));
            }
        }
        if o.ipv6 {
            return Err(invalid("--ipv6", "IPv6 networks are not supported yet"));
        }
        for key in o.options.keys() {
            if !KNOWN_OPTIONS.contains(&key.as_str()) {
                return Err(invalid(
                    format!("network option {key:?}"),
                    format!("not supported (known: {})", KNOWN_OPTIONS.join(", ")),
                ));
            }
        }
        let mtu = o
            .options
            .get("com.docker.network.driver.mtu")
            .or_else(|| o.options.get("mtu"));
        if let Some(m) = mtu
            && !m.parse::<u32>().is_ok_and(|v| (68..=65535).contains(&v))
        {
            return Err(invalid(
                format!("network option mtu={m:?}"),
                "the MTU must be a number from 68 to 65535",
            ));
        }
        let _lock = self.network_lock()?;
        let existing = self.networks_locked()?;
        if PREDEFINED.contains(&o.name.as_str()) {
            return Err(EngineError::Conflict(format!(
                "{} is a pre-defined network and cannot be created",
                o.name
            )));
        }
        if existing.iter().any(|n| n.name == o.name) {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                o.name
            )));
        }
        let subnet = match &o.subnet {
            Some(s) => {
                let subnet = Subnet::parse(s).map_err(|r| invalid("--subnet", r))?;
                if subnet.prefix > 30 {
                    return Err(invalid(
                        format!("--subnet {subnet}"),
                        "a /31 or /32 has no room for a gateway and a container",
                    ));
                }
                if let Some(other) = existing
                    .iter()
                    .find(|n| n.subnet.is_some_and(|t| t.overlaps(&subnet)))
                {
                    return Err(EngineError::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space (subnet {subnet} overlaps network {} ({}))",
                        other.name,
                        other.subnet.map(|s| s.to_string()).unwrap_or_default()
                    )));
                }
                subnet
            }
            None => {
                if o.gateway.is_some() || o.ip_range.is_some() {
                    return Err(invalid(
                        "--gateway/--ip-range",
                        "they need a --subnet to be in",
                    ));
                }
                let taken = self.taken_subnets(&existing);
                ipam::first_free(ipam::default_pools(), &taken).ok_or_else(|| {
                    EngineError::Network(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?
            }
        };
        let gateway = match &o.gateway {
            Some(g) => {
                let ip: Ipv4Addr = g
                    .parse()
                    .map_err(|_| invalid(format!("--gateway {g:?}"), "not an IPv4 address"))?;
                if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
                    return Err(invalid(
                        format!("--gateway {ip}"),
                        format!("not a host address of the subnet {subnet}"),
                    ));
                }
                ip
            }
            None => subnet.first_host(),
        };
        let ip_range = match &o.ip_range {
            Some(r) => {
                let range = Subnet::parse(r).map_err(|e| invalid("--ip-range", e))?;
                if !subnet.contains(range.network()) || range.prefix < subnet.prefix {
                    return Err(invalid(
                        format!("--ip-range {range}"),
                        format!("not inside the subnet {subnet}"),
                    ));
                }
                Some(range)
            }
            None => None,
        };
        let id = random_id()?;
        let interface = match o.options.get("com.docker.network.bridge.name") {
            Some(name) => {
                validate_interface(name)?;
                if existing.iter().any(|n| &n.interface == name) {
                    return Err(EngineError::Conflict(format!(
                        "bridge name {name} is used by another network"
                    )));
                }
                name.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let record = NetworkRecord {
            name: o.name.clone(),
            id,
            created: now_rfc3339(),
            driver: "bridge".into(),
            subnet: Some(subnet),
            gateway: Some(gateway),
            ip_range,
            internal: o.internal,
            dns: true,
            interface,
            labels: o.labels.clone(),
            options: o.options.clone(),
        };
        self.write_network(&record)?;
        self.emit_network(&record, "create", None);
        Ok(record)
    }

    /// The containers (ids) whose definition puts them on `network`.
    pub(crate) fn network_users(&self, network: &NetworkRecord) -> Result<Vec<String>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| {
                c.endpoints
                    .iter()
                    .any(|e| e.network_id == network.id || e.network == network.name)
            })
            .map(|c| c.id)
            .collect())
    }

    /// `network rm`: a network a container is defined on (running or not) is refused, as are
    /// the predefined ones.
    pub fn network_remove(&self, key: &str) -> Result<NetworkRecord> {
        let _lock = self.network_lock()?;
        let network = Self::find_network(&self.networks_locked()?, key)?;
        if PREDEFINED.contains(&network.name.as_str()) {
            return Err(EngineError::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                network.name
            )));
        }
        let users = self.network_users(&network)?;
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints (containers {})",
                network.name,
                network.id,
                users
                    .iter()
                    .map(|u| &u[..12])
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // Its bridge and rules go with it (the keeper held them up).
        if let Some(k) = self.keeper(&network.id) {
            self.keeper_down_locked(&k);
        }
        let path = self.networks_dir().join(format!("{}.json", network.id));
        std::fs::remove_file(&path).io("remove", &path)?;
        self.emit_network(&network, "destroy", None);
        Ok(network)
    }

    /// `network prune`: removes every user network no container is defined on; returns their
    /// names.
    pub fn network_prune(&self, keep: impl Fn(&NetworkRecord) -> bool) -> Result<Vec<String>> {
        let candidates: Vec<NetworkRecord> = self
            .networks()?
            .into_iter()
            .filter(|n| !PREDEFINED.contains(&n.name.as_str()) && !keep(n))
            .collect();
        let mut removed = Vec::new();
        for n in candidates {
            if self.network_remove(&n.id).is_ok() {
                removed.push(n.name);
            }
        }
        // An idle default bridge goes now rather than after its linger.
        let _lock = self.network_lock()?;
        self.reap_keepers_locked(true);
        Ok(removed)
    }

    /// Appends a network event (`create`, `destroy`, `connect`, `disconnect`).
    pub(crate) fn emit_network(&self, n: &NetworkRecord, action: &str, container: Option<&str>) {
        let mut attrs = BTreeMap::from([
            ("name".to_owned(), n.name.clone()),
            ("type".to_owned(), n.driver.clone()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".to_owned(), c.to_owned());
        }
        self.emit("network", action, &n.id, attrs);
    }
}

/// `bip`: `172.17.0.1/16` is the gateway and the subnet's prefix.
fn parse_bip(bip: &str) -> Result<(Subnet, Ipv4Addr)> {
    let (addr, prefix) = bip
        .split_once('/')
        .ok_or_else(|| invalid(format!("bip {bip:?}"), "expected A.B.C.D/N"))?;
    let gateway: Ipv4Addr = addr
        .parse()
        .map_err(|_| invalid(format!("bip {bip:?}"), "not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| invalid(format!("bip {bip:?}"), "the prefix must be 8..30"))?;
    let mask = u32::MAX << (32 - u32::from(prefix));
    let subnet = Subnet {
        addr: Ipv4Addr::from(u32::from(gateway) & mask),
        prefix,
    };
    if gateway == subnet.network() || gateway == subnet.broadcast() {
        return Err(invalid(
            format!("bip {bip:?}"),
            "the address is the subnet's network or broadcast address",
        ));
    }
    Ok((subnet, gateway))
}

//! A container on its networks: the endpoints `create` records, and the attachment that exists
//! while the container runs: its network namespace, the exact netavark request (kept for the
//! teardown), the addresses chosen (the leases) and the ports published.
//!
//! Set up before every start of the payload ([`Engine::network_up`], from `prepare_start`) and
//! torn down wherever the container stops for good ([`Engine::network_down`]: the foreground
//! run's end, the monitor's end, `rm`, a failed start, and reconcile after a crash). The
//! attachment is written before netavark runs, so a crash in the middle leaves a record that the
//! next reconcile tears down from.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ipam::{self, Subnet};
use super::netavark::{Netavark, NetworkInfo, PerNetwork, PortMapping, Request, SubnetInfo};
use super::{NetworkRecord, netns, ports};
use crate::engine::Engine;
use crate::engine::container::{ContainerRecord, read_json, write_atomic};
use crate::engine::error::{EngineError, IoContext, Result, invalid};

/// A network the container is defined on (`--network NAME`, `network connect`), as recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointConfig {
    /// The network's name when the endpoint was made.
    pub network: String,
    pub network_id: String,
    /// `--network-alias`: more names this container answers to on the network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`: a fixed address (else the lowest free one at each start).
    #[serde(default)]
    pub ip: Option<String>,
    /// `--mac-address`.
    #[serde(default)]
    pub mac: Option<String>,
}

/// One interface of a running container, as set up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointState {
    pub network: String,
    pub network_id: String,
    /// `eth0`, `eth1`, …
    pub interface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The names aardvark-dns answers for (empty on the default bridge).
    pub aliases: Vec<String>,
    /// The resolvers netavark reports for the network (its gateway, where aardvark listens).
    pub dns_servers: Vec<String>,
}

/// A running container's network: what was set up, kept until it is torn down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub netns: PathBuf,
    pub request: Request,
    pub endpoints: Vec<EndpointState>,
    /// Its container has ended and a background process is tearing it down (it holds the
    /// lock): nobody else tears it down, and a start that wants its ports or address waits.
    #[serde(default)]
    pub releasing: bool,
}

impl Attachment {
    /// The published ports, as set up.
    pub fn ports(&self) -> &[PortMapping] {
        &self.request.port_mappings
    }
}

/// netavark's view of a network.
pub(super) fn network_info(n: &NetworkRecord) -> Result<NetworkInfo> {
    let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) else {
        return Err(invalid(
            format!("network {}", n.name),
            "it has no subnet (host and none give no interface)",
        ));
    };
    let mut options = BTreeMap::new();
    if let Some(mtu) = n
        .options
        .get("com.docker.network.driver.mtu")
        .or_else(|| n.options.get("mtu"))
    {
        options.insert("mtu".to_owned(), mtu.clone());
    }
    if let Some(isolate) = n.options.get("isolate") {
        options.insert("isolate".to_owned(), isolate.clone());
    }
    Ok(NetworkInfo {
        name: n.name.clone(),
        id: n.id.clone(),
        driver: "bridge".into(),
        network_interface: n.interface.clone(),
        subnets: vec![SubnetInfo {
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
        }],
        ipv6_enabled: false,
        internal: n.internal,
        dns_enabled: n.dns,
        ipam_options: BTreeMap::from([("driver".to_owned(), "host-local".to_owned())]),
        options,
    })
}

/// Docker's validation of `--ip`, `--network-alias` and `--mac-address` for one endpoint.
pub(crate) fn check_endpoint(n: &NetworkRecord, e: &EndpointConfig) -> Result<()> {
    if !n.is_bridge() {
        if e.ip.is_some() || !e.aliases.is_empty() || e.mac.is_some() {
            return Err(invalid(
                format!("network {}", n.name),
                "--ip, --network-alias and --mac-address need a bridge network",
            ));
        }
        return Ok(());
    }
    if !n.dns && !e.aliases.is_empty() {
        return Err(invalid(
            "--network-alias",
            "network-scoped alias is supported only for containers in user defined networks",
        ));
    }
    let mut seen = Vec::new();
    for a in &e.aliases {
        if a.is_empty() || a.contains(char::is_whitespace) {
            return Err(invalid(format!("--network-alias {a:?}"), "not a name"));
        }
        if seen.contains(&a) {
            return Err(invalid(
                format!("--network-alias {a}"),
                "given twice for the same network",
            ));
        }
        seen.push(a);
    }
    if let Some(ip) = &e.ip {
        if !n.dns {
            return Err(invalid(
                "--ip",
                "user specified IP address is supported on user defined networks only",
            ));
        }
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| invalid(format!("--ip {ip:?}"), "not an IPv4 address"))?;
        let subnet = n.subnet.unwrap_or(Subnet {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix: 32,
        });
        if !subnet.contains(addr)
            || addr == subnet.network()
            || addr == subnet.broadcast()
            || Some(addr) == n.gateway
        {
            return Err(invalid(
                format!("--ip {addr}"),
                format!(
                    "no configured subnet contains it as a free host address (network {}: {subnet}, gateway {})",
                    n.name,
                    n.gateway.map(|g| g.to_string()).unwrap_or_default()
                ),
            ));
        }
    }
    if let Some(mac) = &e.mac {
        let ok = mac.split(':').count() == 6
            && mac
                .split(':')
                .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
        if !ok {
            return Err(invalid(
                format!("--mac-address {mac:?}"),
                "expected six hex bytes, aa:bb:cc:dd:ee:ff",
            ));
        }
    }
    Ok(())
}

impl Engine {
    fn attachments_dir(&self) -> PathBuf {
        self.state.join("networks")
    }

    fn attachment_path(&self, id: &str) -> PathBuf {
        self.attachments_dir().join(format!("{id}.json"))
    }

    /// `<state>/netns/<id>`: where a container's network namespace is bound.
    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.state.join("netns").join(id)
    }

    fn attachment_lock_path(&self, id: &str) -> PathBuf {
        self.attachments_dir().join(format!("{id}.lock"))
    }

    /// Takes (shared) the container's attachment lock for as long as this process runs the
    /// container: the monitor, or the CLI in a foreground run. Whoever finds it unlocked knows
    /// the attachment's owner died and may tear it down.
    fn hold_attachment(&self, id: &str) -> Result<()> {
        let mut held = self
            .held_networks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.iter().any(|(h, _)| h == id) {
            return Ok(());
        }
        let dir = self.attachments_dir();
        std::fs::create_dir_all(&dir).io("mkdir", &dir)?;
        let lock = crate::engine::container::lock_file(
            &self.attachment_lock_path(id),
            nix::fcntl::FlockArg::LockSharedNonblock,
        )?;
        held.push((id.to_owned(), lock));
        Ok(())
    }

    /// Whether a live process holds the container's attachment lock.
    fn attachment_owned(&self, id: &str) -> bool {
        if self
            .held_networks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(h, _)| h == id)
        {
            return true;
        }
        let Ok(file) = std::fs::File::open(self.attachment_lock_path(id)) else {
            return false;
        };
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err()
    }

    /// Whether this process holds the container's attachment lock.
    fn holds_attachment(&self, id: &str) -> bool {
        self.held_networks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(h, _)| h == id)
    }

    /// The end of a foreground run: the exit code need not wait for the kernel to delete a veth
    /// and for netavark's firewall calls (most of a bridge run's cost). Marks the attachment
    /// releasing and tears it down in a child that outlives this process (it inherits the lock,
    /// so nobody takes the attachment for dead meanwhile). Only a single-threaded process forks;
    /// anything else tears down here and now.
    pub(crate) fn network_down_in_background(&self, c: &ContainerRecord) {
        if !self.attachment_path(&c.id).exists() || crate::sys::proc::thread_count() > 1 {
            return self.network_down(c);
        }
        {
            let Ok(_lock) = self.network_lock() else {
                return self.network_down(c);
            };
            let Some(mut a) = self.attachment(&c.id) else {
                return;
            };
            a.releasing = true;
            if self.write_attachment(&c.id, &a).is_err() {
                drop(_lock);
                return self.network_down(c);
            }
        }
        // SAFETY: the process is single-threaded (checked above), so the child may run any
        // code; it ends with _exit and never returns into the caller.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = nix::unistd::setsid();
                if let Ok(null) = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                {
                    let _ = nix::unistd::dup2_stdin(&null);
                    let _ = nix::unistd::dup2_stdout(&null);
                    let _ = nix::unistd::dup2_stderr(&null);
                }
                self.network_down_id(&c.id);
                // SAFETY: _exit ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(0) }
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => {
                // The child holds the lock now: it is the same open file. Dropping a Flock
                // would unlock that file for both, so this process forgets its handle (the
                // descriptor closes when the process, at the end of its run, exits).
                let mut held = self
                    .held_networks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(i) = held.iter().position(|(h, _)| *h == c.id) {
                    std::mem::forget(held.swap_remove(i));
                }
            }
            Err(_) => self.network_down(c),
        }
    }

    /// Before a start takes the network lock: waits (up to 10 s) for the background teardowns
    /// that hold a host port or the fixed address this container asks for, so `run --rm -p
    /// 8080:80` twice in a row works as with a synchronous teardown.
    fn wait_for_releases(&self, c: &ContainerRecord) {
        let wanted = ports::wanted(
            &c.options.port_bindings,
            c.options.publish_all,
            &exposed_ports(c),
        )
        .unwrap_or_default();
        let fixed_ips: Vec<Ipv4Addr> = c
            .endpoints
            .iter()
            .filter_map(|e| e.ip.as_deref()?.parse().ok())
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let blocking = self.attachments().into_iter().any(|(id, a)| {
                id != c.id
                    && a.releasing
                    && self.attachment_owned(&id)
                    && (a.endpoints.iter().any(|e| fixed_ips.contains(&e.ip))
                        || a.request.port_mappings.iter().any(|m| {
                            wanted.iter().any(|w| {
                                w.protocol == m.protocol
                                    && w.host_ports
                                        .is_some_and(|(lo, hi)| (lo..=hi).contains(&m.host_port))
                            })
                        }))
            });
            if !blocking || std::time::Instant::now() > deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn release_attachment(&self, id: &str) {
        let _ = std::fs::remove_file(self.attachment_lock_path(id));
        self.held_networks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(h, _)| h != id);
    }

    pub(super) fn backend(&self) -> Result<Netavark> {
        Netavark::locate(&self.state.join("netavark"))
    }

    /// The container's attachment while its network is set up.
    pub fn attachment(&self, id: &str) -> Option<Attachment> {
        read_json(&self.attachment_path(id)).ok()
    }

    /// Every attachment (container id, attachment).
    pub(super) fn attachments(&self) -> Vec<(String, Attachment)> {
        let Ok(dir) = std::fs::read_dir(self.attachments_dir()) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let path = e.path();
                let id = path.file_stem()?.to_str()?.to_owned();
                (path.extension()? == "json")
                    .then(|| read_json::<Attachment>(&path).ok().map(|a| (id, a)))
                    .flatten()
            })
            .collect()
    }

    fn write_attachment(&self, id: &str, a: &Attachment) -> Result<()> {
        let dir = self.attachments_dir();
        std::fs::create_dir_all(&dir).io("mkdir", &dir)?;
        let bytes =
            serde_json::to_vec_pretty(a).map_err(|e| invalid("attachment", e.to_string()))?;
        write_atomic(&self.attachment_path(id), &bytes)
    }

    /// Resolves `--network NAME` and its endpoint options at create: the network must exist.
    pub(crate) fn endpoint_for_create(
        &self,
        network: &str,
        aliases: &[String],
        ip: Option<&str>,
        mac: Option<&str>,
    ) -> Result<EndpointConfig> {
        // Bad input of the create, not a missing object: a 404 would make the docker CLI try
        // to pull the image.
        let n = self.network(network).map_err(|e| match e {
            EngineError::NotFound(m) => invalid("--network", m),
            other => other,
        })?;
        let e = EndpointConfig {
            network: n.name.clone(),
            network_id: n.id.clone(),
            aliases: aliases.to_vec(),
            ip: ip.map(str::to_owned),
            mac: mac.map(str::to_owned),
        };
        check_endpoint(&n, &e)?;
        Ok(e)
    }

    /// Sets up the container's networks before its payload starts (nothing for `none`, `host`
    /// or `container:`). A restart by the monitor finds its attachment still bound and keeps it.
    pub(crate) fn network_up(&self, c: &ContainerRecord) -> Result<()> {
        if c.endpoints.is_empty() {
            return Ok(());
        }
        let result = self.network_up_inner(c);
        if result.is_err() {
            if !self.attachment_path(&c.id).exists() {
                self.release_attachment(&c.id);
            }
            // A keeper made for this start lingers (or goes) as after a container's end.
            self.settle_keepers();
        }
        result
    }

    fn network_up_inner(&self, c: &ContainerRecord) -> Result<()> {
        self.wait_for_releases(c);
        let _lock = self.network_lock()?;
        self.hold_attachment(&c.id)?;
        if let Some(a) = self.attachment(&c.id) {
            if netns::is_bound(&a.netns) {
                return self.write_network_files(c, &a);
            }
            self.teardown_locked(&c.id, &a);
        }
        // Leases and ports of containers whose engine or monitor died are free again.
        self.reap_dead_attachments_locked();
        let networks = self.networks_locked()?;
        let others: Vec<(String, Attachment)> = self
            .attachments()
            .into_iter()
            .filter(|(id, _)| *id != c.id)
            .collect();
        let mut request = Request {
            container_id: c.id.clone(),
            container_name: c.name.clone(),
            port_mappings: Vec::new(),
            networks: BTreeMap::new(),
            network_info: BTreeMap::new(),
            dns_servers: c.options.dns.clone(),
        };
        let backend = self.backend()?;
        let kept: Vec<Ipv4Addr> = c
            .endpoints
            .iter()
            .filter_map(|e| networks.iter().find(|n| n.id == e.network_id))
            .filter_map(|n| {
                self.ensure_keeper_locked(n, &addresses_to_avoid(n, c, &others), &backend)
            })
            .collect();
        let mut endpoints = Vec::new();
        for (index, e) in c.endpoints.iter().enumerate() {
            let (n, state, per) = self.plan_endpoint(c, e, index, &networks, &others, &kept)?;
            request.networks.insert(n.name.clone(), per);
            request
                .network_info
                .insert(n.name.clone(), network_info(&n)?);
            endpoints.push(state);
        }
        let wanted = ports::wanted(
            &c.options.port_bindings,
            c.options.publish_all,
            &exposed_ports(c),
        )?;
        if !wanted.is_empty() {
            if let Some(n) = c
                .endpoints
                .first()
                .and_then(|e| networks.iter().find(|n| n.id == e.network_id))
                .filter(|n| n.internal)
            {
                return Err(invalid(
                    "-p",
                    format!(
                        "network {} is internal: no port can be published on it",
                        n.name
                    ),
                ));
            }
            let taken: Vec<PortMapping> = others
                .iter()
                .flat_map(|(_, a)| a.request.port_mappings.iter().cloned())
                .collect();
            request.port_mappings = ports::resolve(&wanted, &taken)?;
        }
        let mut attachment = Attachment {
            netns: self.netns_path(&c.id),
            request,
            endpoints,
            releasing: false,
        };
        netns::create(&attachment.netns)?;
        self.write_attachment(&c.id, &attachment)?;
        let status = match backend.setup(&attachment.netns, &attachment.request) {
            Ok(s) => s,
            Err(e) => {
                self.teardown_locked(&c.id, &attachment);
                self.release_attachment(&c.id);
                return Err(e);
            }
        };
        for ep in &mut attachment.endpoints {
            if let Some(s) = status.get(&ep.network) {
                if let Some(i) = s.interfaces.get(&ep.interface) {
                    ep.mac = i.mac_address.clone();
                }
                ep.dns_servers = s.dns_server_ips.clone();
            }
        }
        self.write_attachment(&c.id, &attachment)?;
        for ep in &attachment.endpoints {
            if let Some(n) = networks.iter().find(|n| n.id == ep.network_id) {
                self.emit_network(n, "connect", Some(&c.id));
            }
        }
        self.write_network_files(c, &attachment)
    }

    /// The address, aliases and interface of one endpoint, checked against the other
    /// containers' leases and the keepers' addresses (`kept`).
    fn plan_endpoint(
        &self,
        c: &ContainerRecord,
        e: &EndpointConfig,
        index: usize,
        networks: &[NetworkRecord],
        others: &[(String, Attachment)],
        kept: &[Ipv4Addr],
    ) -> Result<(NetworkRecord, EndpointState, PerNetwork)> {
        let n = networks
            .iter()
            .find(|n| n.id == e.network_id)
            .or_else(|| networks.iter().find(|n| n.name == e.network))
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("network {} not found", e.network)))?;
        check_endpoint(&n, e)?;
        let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) else {
            return Err(invalid(format!("network {}", n.name), "it has no subnet"));
        };
        let mut used = leased_addresses(&n, others);
        used.extend(kept.iter().copied().filter(|ip| subnet.contains(*ip)));
        let ip = match &e.ip {
            Some(text) => {
                let ip: Ipv4Addr = text
                    .parse()
                    .map_err(|_| invalid(format!("--ip {text:?}"), "not an IPv4 address"))?;
                if used.contains(&ip) {
                    return Err(EngineError::Conflict(format!(
                        "Address already in use: {ip} on network {}",
                        n.name
                    )));
                }
                ip
            }
            None => {
                ipam::allocate(&subnet, n.ip_range.as_ref(), gateway, &used).ok_or_else(|| {
                    EngineError::Network(format!(
                        "no available IPv4 addresses on network {} ({subnet})",
                        n.name
                    ))
                })?
            }
        };
        let aliases = if n.dns {
            let mut a = vec![c.name.clone(), c.id[..12].to_owned()];
            a.extend(e.aliases.iter().cloned());
            a.dedup();
            a
        } else {
            Vec::new()
        };
        let interface = format!("eth{index}");
        let per = PerNetwork {
            static_ips: vec![ip.to_string()],
            aliases: aliases.clone(),
            interface_name: interface.clone(),
            static_mac: e.mac.clone(),
        };
        let state = EndpointState {
            network: n.name.clone(),
            network_id: n.id.clone(),
            interface,
            ip,
            prefix: subnet.prefix,
            gateway,
            mac: String::new(),
            aliases,
            dns_servers: Vec::new(),
        };
        Ok((n, state, per))
    }

    /// Tears down what `request` set up in the namespace at `netns` and unbinds it (`what`
    /// names the owner in the log). Best effort: what fails is logged.
    pub(super) fn teardown_namespace(
        &self,
        netns: &std::path::Path,
        request: &Request,
        what: &str,
    ) {
        match self.backend() {
            Ok(backend) => {
                // netavark 1.4 needs the namespace to tear down; one that is gone (a reboot,
                // a manual umount) took its veth with it, and an empty one lets the rules go.
                let fresh = !netns::is_bound(netns)
                    && netns::remove(netns).is_ok()
                    && netns::create(netns).is_ok();
                if let Err(e) = backend.teardown(netns, request)
                    && !fresh
                {
                    log::warn!("network teardown of {what}: {e}");
                }
            }
            Err(e) => log::warn!("network teardown of {what}: {e}"),
        }
        if let Err(e) = netns::remove(netns) {
            log::warn!("network namespace of {what}: {e}");
        }
    }

    /// Tears down what the attachment set up, unbinds the namespace and drops the lease. Best
    /// effort: what fails is logged, and the record goes last.
    fn teardown_locked(&self, id: &str, a: &Attachment) {
        self.teardown_namespace(&a.netns, &a.request, &format!("container {id}"));
        let _ = std::fs::remove_file(self.attachment_path(id));
    }

    /// Tears down the container's network if it is set up (a no-op otherwise, and for
    /// containers without networks).
    pub(crate) fn network_down(&self, c: &ContainerRecord) {
        self.network_down_id(&c.id);
    }

    fn network_down_id(&self, id: &str) {
        if !self.attachment_path(id).exists() {
            if self.attachment_lock_path(id).exists() {
                self.release_attachment(id);
            }
            return;
        }
        // Another process is tearing it down (and holds the network lock while it does: this
        // is checked before waiting for that lock). Attachments are written atomically.
        let released_elsewhere =
            |a: &Attachment| a.releasing && !self.holds_attachment(id) && self.attachment_owned(id);
        if self.attachment(id).is_some_and(|a| released_elsewhere(&a)) {
            return;
        }
        {
            let Ok(_lock) = self.network_lock() else {
                return;
            };
            let Some(a) = self.attachment(id) else {
                return;
            };
            if released_elsewhere(&a) {
                return;
            }
            self.teardown_locked(id, &a);
            self.release_attachment(id);
            if let Ok(list) = self.networks_locked() {
                for ep in &a.endpoints {
                    if let Some(n) = list.iter().find(|n| n.id == ep.network_id) {
                        self.emit_network(n, "disconnect", Some(id));
                    }
                }
            }
        }
        self.settle_keepers();
    }

    /// Tears down the attachments whose owner (monitor or foreground CLI) is gone: a crash,
    /// a SIGKILL, a reboot's leftovers. The caller holds the network lock. Returns how many.
    fn reap_dead_attachments_locked(&self) -> usize {
        let mut cleaned = 0;
        for (id, a) in self.attachments() {
            if !self.attachment_owned(&id) {
                self.teardown_locked(&id, &a);
                self.release_attachment(&id);
                cleaned += 1;
            }
        }
        cleaned
    }

    /// Reconcile (a daemon's start): what [`Self::reap_dead_attachments_locked`] does, under
    /// the lock. Returns how many attachments were torn down.
    pub(crate) fn reconcile_networks(&self) -> usize {
        let cleaned = match self.network_lock() {
            Ok(_lock) => self.reap_dead_attachments_locked(),
            Err(_) => 0,
        };
        self.settle_keepers();
        cleaned
    }

    /// `/etc/hosts` (the container's own address for its hostname, `host-gateway` as the
    /// gateway) and, on a network with DNS, `/etc/resolv.conf` pointing at aardvark-dns. Written
    /// in place into the init layer, which is under the mounted overlay (a file the container
    /// has already changed is its own).
    fn write_network_files(&self, c: &ContainerRecord, a: &Attachment) -> Result<()> {
        let Some(first) = a.endpoints.first() else {
            return Ok(());
        };
        let etc = self.container_dir(&c.id).join("init").join("etc");
        let hosts = crate::engine::spec::hosts_file(
            &c.hostname,
            c.options.domainname.as_deref(),
            &c.options.extra_hosts,
            Some((first.ip, first.gateway)),
        );
        let path = etc.join("hosts");
        std::fs::write(&path, hosts).io("write", &path)?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = match a.endpoints.iter().find(|e| !e.dns_servers.is_empty()) {
            Some(e) => {
                crate::engine::spec::resolv_conf_with_servers(&host, &c.options, &e.dns_servers)
            }
            None => crate::engine::spec::resolv_conf_for_bridge(&host, &c.options),
        };
        let path = etc.join("resolv.conf");
        std::fs::write(&path, resolv).io("write", &path)
    }

    /// `--network container:OTHER`: the container sees the other's `/etc/hosts` and
    /// `/etc/resolv.conf` (it has the other's addresses), copied into its init layer at start.
    pub(crate) fn share_network_files(
        &self,
        c: &ContainerRecord,
        other: &ContainerRecord,
    ) -> Result<()> {
        let etc = |id: &str| self.container_dir(id).join("init").join("etc");
        for name in ["hosts", "resolv.conf"] {
            let from = etc(&other.id).join(name);
            let to = etc(&c.id).join(name);
            let bytes = std::fs::read(&from).io("read", &from)?;
            std::fs::write(&to, bytes).io("write", &to)?;
        }
        Ok(())
    }

    /// `network connect`: records the endpoint and, if the container runs, adds the interface
    /// now (`eth1`, …).
    pub fn network_connect(
        &self,
        c: &ContainerRecord,
        network: &str,
        aliases: &[String],
        ip: Option<&str>,
    ) -> Result<()> {
        let n = self.network(network)?;
        if !n.is_bridge() {
            return Err(invalid(
                format!("network {}", n.name),
                "a container cannot be connected to host or none",
            ));
        }
        if !matches!(c.options.network, crate::engine::Network::Bridge(_)) {
            return Err(invalid(
                format!("container {}", c.name),
                format!(
                    "its network mode is {}: it cannot join a bridge network as well",
                    c.options.network.mode()
                ),
            ));
        }
        if c.endpoints.iter().any(|e| e.network_id == n.id) {
            return Err(EngineError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            )));
        }
        let e = EndpointConfig {
            network: n.name.clone(),
            network_id: n.id.clone(),
            aliases: aliases.to_vec(),
            ip: ip.map(str::to_owned),
            mac: None,
        };
        check_endpoint(&n, &e)?;
        let mut record = c.clone();
        record.endpoints.push(e.clone());
        let _lock = self.network_lock()?;
        if let Some(mut a) = self.attachment(&c.id).filter(|a| netns::is_bound(&a.netns)) {
            let networks = self.networks_locked()?;
            let others: Vec<(String, Attachment)> = self
                .attachments()
                .into_iter()
                .filter(|(id, _)| *id != c.id)
                .collect();
            let index = (0..)
                .find(|i| {
                    !a.endpoints
                        .iter()
                        .any(|ep| ep.interface == format!("eth{i}"))
                })
                .unwrap_or(a.endpoints.len());
            let backend = self.backend()?;
            let kept: Vec<Ipv4Addr> = networks
                .iter()
                .find(|n| n.id == e.network_id)
                .and_then(|n| {
                    self.ensure_keeper_locked(n, &addresses_to_avoid(n, c, &others), &backend)
                })
                .into_iter()
                .collect();
            let (n, mut state, per) =
                self.plan_endpoint(c, &e, index, &networks, &others, &kept)?;
            let one = Request {
                container_id: c.id.clone(),
                container_name: c.name.clone(),
                port_mappings: Vec::new(),
                networks: BTreeMap::from([(n.name.clone(), per.clone())]),
                network_info: BTreeMap::from([(n.name.clone(), network_info(&n)?)]),
                dns_servers: c.options.dns.clone(),
            };
            let status = backend.setup(&a.netns, &one)?;
            if let Some(s) = status.get(&n.name) {
                if let Some(i) = s.interfaces.get(&state.interface) {
                    state.mac = i.mac_address.clone();
                }
                state.dns_servers = s.dns_server_ips.clone();
            }
            a.request.networks.insert(n.name.clone(), per);
            a.request
                .network_info
                .insert(n.name.clone(), network_info(&n)?);
            a.endpoints.push(state);
            self.write_attachment(&c.id, &a)?;
            self.emit_network(&n, "connect", Some(&c.id));
        }
        self.write_record(&record)
    }

    /// `network disconnect`: removes the interface if the container runs, and the endpoint.
    pub fn network_disconnect(&self, c: &ContainerRecord, network: &str) -> Result<()> {
        let n = self.network(network)?;
        if !c.endpoints.iter().any(|e| e.network_id == n.id) {
            return Err(invalid(
                format!("container {}", c.name),
                format!("it is not connected to network {}", n.name),
            ));
        }
        let _lock = self.network_lock()?;
        if let Some(mut a) = self.attachment(&c.id).filter(|a| netns::is_bound(&a.netns)) {
            let primary = a.endpoints.first().is_some_and(|ep| ep.network_id == n.id);
            let one = Request {
                container_id: c.id.clone(),
                container_name: c.name.clone(),
                port_mappings: if primary {
                    a.request.port_mappings.clone()
                } else {
                    Vec::new()
                },
                networks: a
                    .request
                    .networks
                    .iter()
                    .filter(|(k, _)| **k == n.name)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                network_info: a
                    .request
                    .network_info
                    .iter()
                    .filter(|(k, _)| **k == n.name)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                dns_servers: a.request.dns_servers.clone(),
            };
            self.backend()?.teardown(&a.netns, &one)?;
            a.request.networks.remove(&n.name);
            a.request.network_info.remove(&n.name);
            if primary {
                a.request.port_mappings.clear();
            }
            a.endpoints.retain(|ep| ep.network_id != n.id);
            self.write_attachment(&c.id, &a)?;
            self.emit_network(&n, "disconnect", Some(&c.id));
        }
        let mut record = c.clone();
        record.endpoints.retain(|e| e.network_id != n.id);
        self.write_record(&record)?;
        drop(_lock);
        self.settle_keepers();
        Ok(())
    }
}

/// The ports `-P` publishes: the image's `ExposedPorts` and `--expose`.
fn exposed_ports(c: &ContainerRecord) -> Vec<String> {
    let mut list: Vec<String> = c.options.exposed_ports.clone();
    if let Some(map) = c.config["ExposedPorts"].as_object() {
        list.extend(map.keys().cloned());
    }
    list.sort();
    list.dedup();
    list
}

/// The addresses the other containers hold on `n` (the leases).
fn leased_addresses(n: &NetworkRecord, others: &[(String, Attachment)]) -> Vec<Ipv4Addr> {
    others
        .iter()
        .flat_map(|(_, a)| a.endpoints.iter())
        .filter(|ep| ep.network_id == n.id)
        .map(|ep| ep.ip)
        .collect()
}

/// The addresses a keeper of `n` must not take: the leases, and the fixed ones (`--ip`) this
/// container asks for there.
fn addresses_to_avoid(
    n: &NetworkRecord,
    c: &ContainerRecord,
    others: &[(String, Attachment)],
) -> Vec<Ipv4Addr> {
    let mut avoid = leased_addresses(n, others);
    avoid.extend(
        c.endpoints
            .iter()
            .filter(|e| e.network_id == n.id)
            .filter_map(|e| e.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
    );
    avoid
}

//! A network's keeper: a network namespace of capsa's own with one veth in the network's bridge,
//! so that the bridge, its firewall rules and aardvark-dns stay up between containers.
//!
//! netavark removes a bridge and its network's rules when its last veth goes, and makes them
//! again for the next container: with netavark 1.4 (iptables) that is most of a container's
//! network cost (about 50 ms of setup and 180 ms of teardown, some twenty iptables calls), paid
//! by every `run --rm` on an otherwise empty network. With the keeper attached first, a
//! container's setup and teardown are only its own veth, address and ports (about 30 ms each).
//!
//! Lifetimes, as Docker's bridges: a user-defined network keeps its bridge from its first
//! container until `network rm` (dockerd makes `br-…` at `network create` and keeps it); the
//! default bridge's goes [`LINGER`] after its last container (a script's next `run` finds it
//! up), torn down by a reaper process (`capsa-monitor --reap-bridges`). `network prune` takes
//! an idle default bridge down at once. A keeper whose network is gone, or whose namespace a
//! reboot took, is torn down after the next container's teardown or at the daemon's start
//! (reconcile); a start on its own network replaces it. None of this is on a start's path.
//!
//! ```text
//! <state>/keepers/<network id>.json    the keeper: its exact netavark request, address, idleness
//! <state>/keepers/<network id>.netns   its network namespace, bound
//! <state>/keepers/reaper.pid           the reaper that waits to take idle bridges down
//! ```
//!
//! The keeper takes the subnet's highest free address (containers get the lowest), and moves
//! when a container asks for that address with `--ip`. A subnet of fewer than six addresses
//! gets no keeper: its bridge comes and goes with its containers, as netavark does alone.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::netavark::{Netavark, PerNetwork, Request};
use super::{DEFAULT_BRIDGE, NetworkRecord, attach, netns};
use crate::engine::Engine;
use crate::engine::container::{read_json, write_atomic};
use crate::engine::error::{IoContext, Result, invalid};

/// How long the default bridge stays up after its last container: long enough for the next
/// command of a script or a benchmark loop, short enough that a one-off run leaves nothing for
/// long.
pub const LINGER: Duration = Duration::from_secs(3);

/// The name netavark (and aardvark-dns) know a keeper by; it has no DNS aliases.
const KEEPER_NAME: &str = "capsa-bridge-keeper";

/// One network's keeper, as set up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keeper {
    pub network_id: String,
    pub network: String,
    pub ip: Ipv4Addr,
    /// The exact setup request (netavark tears down from the same).
    pub request: Request,
    /// When the network's last container left (milliseconds since the epoch), for a lingering
    /// keeper with no container on its network.
    #[serde(default)]
    pub idle_since_ms: Option<u64>,
}

impl Keeper {
    /// Whether it goes [`LINGER`] after the network's last container (the default bridge), or
    /// stays until the network is removed (user-defined networks).
    fn lingers(&self) -> bool {
        self.network == DEFAULT_BRIDGE
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The address a keeper takes on `n`: the highest host address that is neither the gateway nor
/// in `avoid`; none on a subnet too small to spare one.
fn keeper_address(n: &NetworkRecord, avoid: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let subnet = n.subnet?;
    if subnet.prefix > 29 {
        return None;
    }
    let hosts: Vec<Ipv4Addr> = subnet.hosts().collect();
    hosts
        .into_iter()
        .rev()
        .find(|ip| Some(*ip) != n.gateway && !avoid.contains(ip))
}

/// Whether the process `pid` is the keeper reaper of `state` (a pid file can outlive its
/// process, and the pid go to another).
fn is_reaper(pid: i32, state: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.contains(&b"--reap-bridges".as_slice())
            && args.contains(&state.as_os_str().as_encoded_bytes())
    })
}

impl Engine {
    fn keepers_dir(&self) -> PathBuf {
        self.state.join("keepers")
    }

    fn keeper_path(&self, network_id: &str) -> PathBuf {
        self.keepers_dir().join(format!("{network_id}.json"))
    }

    /// Where a keeper's network namespace is bound.
    fn keeper_netns(&self, network_id: &str) -> PathBuf {
        self.keepers_dir().join(format!("{network_id}.netns"))
    }

    fn reaper_pid_path(&self) -> PathBuf {
        self.keepers_dir().join("reaper.pid")
    }

    /// The reaper that is running for this state dir, if one is.
    fn running_reaper(&self) -> Option<i32> {
        std::fs::read_to_string(self.reaper_pid_path())
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|p| is_reaper(*p, &self.state))
    }

    /// The keeper of a network, if it has one.
    pub(crate) fn keeper(&self, network_id: &str) -> Option<Keeper> {
        read_json(&self.keeper_path(network_id)).ok()
    }

    /// Every keeper.
    pub(crate) fn keepers(&self) -> Vec<Keeper> {
        let Ok(dir) = std::fs::read_dir(self.keepers_dir()) else {
            return Vec::new();
        };
        dir.flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| read_json::<Keeper>(&p).ok())
            .collect()
    }

    fn write_keeper(&self, k: &Keeper) -> Result<()> {
        let dir = self.keepers_dir();
        std::fs::create_dir_all(&dir).io("mkdir", &dir)?;
        let bytes = serde_json::to_vec_pretty(k).map_err(|e| invalid("keeper", e.to_string()))?;
        write_atomic(&self.keeper_path(&k.network_id), &bytes)
    }

    /// Before a container's setup on `n` (caller holds the network lock): makes sure the
    /// network has a keeper whose address is none of `avoid` (the other containers' and the
    /// ones this container asks for), and returns that address, which no container may take.
    /// Best effort: a network without a keeper works, slower.
    pub(super) fn ensure_keeper_locked(
        &self,
        n: &NetworkRecord,
        avoid: &[Ipv4Addr],
        backend: &Netavark,
    ) -> Option<Ipv4Addr> {
        if let Some(mut k) = self.keeper(&n.id) {
            if netns::is_bound(&self.keeper_netns(&k.network_id)) && !avoid.contains(&k.ip) {
                if k.idle_since_ms.take().is_some() {
                    let _ = self.write_keeper(&k);
                }
                return Some(k.ip);
            }
            self.keeper_down_locked(&k);
        }
        let ip = keeper_address(n, avoid)?;
        let info = attach::network_info(n).ok()?;
        let k = Keeper {
            network_id: n.id.clone(),
            network: n.name.clone(),
            ip,
            request: Request {
                container_id: n.id.clone(),
                container_name: KEEPER_NAME.to_owned(),
                port_mappings: Vec::new(),
                networks: BTreeMap::from([(
                    n.name.clone(),
                    PerNetwork {
                        static_ips: vec![ip.to_string()],
                        aliases: Vec::new(),
                        interface_name: "eth0".to_owned(),
                        static_mac: None,
                    },
                )]),
                network_info: BTreeMap::from([(n.name.clone(), info)]),
                dns_servers: Vec::new(),
            },
            idle_since_ms: None,
        };
        let netns_path = self.keeper_netns(&n.id);
        if let Err(e) = netns::create(&netns_path) {
            log::warn!("the keeper of network {}: {e}", n.name);
            return None;
        }
        // Written before netavark runs: a crash in the middle leaves a record to tear down.
        if self.write_keeper(&k).is_err() {
            let _ = netns::remove(&netns_path);
            return None;
        }
        if let Err(e) = backend.setup(&netns_path, &k.request) {
            log::warn!("the keeper of network {}: {e}", n.name);
            self.keeper_down_locked(&k);
            return None;
        }
        Some(ip)
    }

    /// Tears a keeper down (its veth, and with it the bridge and the network's rules when no
    /// container is on it), unbinds its namespace and drops the record. Best effort.
    pub(super) fn keeper_down_locked(&self, k: &Keeper) {
        self.teardown_namespace(
            &self.keeper_netns(&k.network_id),
            &k.request,
            &format!("the keeper of network {}", k.network),
        );
        let _ = std::fs::remove_file(self.keeper_path(&k.network_id));
    }

    /// Tears down the keepers that are due (caller holds the network lock): those of networks
    /// that are gone or whose namespace is, and lingering ones idle for [`LINGER`] (with
    /// `idle_now`, every idle one of the default bridge: `network prune`). Starts the linger of
    /// a keeper that has just lost its last container. Returns when the next lingering keeper
    /// is due, if one waits.
    pub(super) fn reap_keepers_locked(&self, idle_now: bool) -> Option<u64> {
        let keepers = self.keepers();
        if keepers.is_empty() {
            return None;
        }
        let attachments = self.attachments();
        let now = now_ms();
        let linger = u64::try_from(LINGER.as_millis()).unwrap_or(u64::MAX);
        let mut next_due: Option<u64> = None;
        for mut k in keepers {
            if !self.network_defined(&k.network_id)
                || !netns::is_bound(&self.keeper_netns(&k.network_id))
            {
                self.keeper_down_locked(&k);
                continue;
            }
            let in_use = attachments
                .iter()
                .any(|(_, a)| a.endpoints.iter().any(|e| e.network_id == k.network_id));
            if !k.lingers() || in_use {
                continue;
            }
            let since = match k.idle_since_ms {
                Some(t) => t,
                None => {
                    k.idle_since_ms = Some(now);
                    let _ = self.write_keeper(&k);
                    now
                }
            };
            let due = since.saturating_add(linger);
            if idle_now || now >= due {
                self.keeper_down_locked(&k);
            } else {
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
            }
        }
        next_due
    }

    /// After a container left its networks: reaps what is due and, if a lingering keeper now
    /// waits, makes sure a reaper process will take it down.
    pub(super) fn settle_keepers(&self) {
        let waiting = match self.network_lock() {
            Ok(_lock) => {
                self.reap_keepers_locked(false).is_some() && self.running_reaper().is_none()
            }
            Err(_) => false,
        };
        if waiting {
            self.spawn_keeper_reaper();
        }
    }

    /// Starts `capsa-monitor --reap-bridges` (it detaches at once; this waits only for that).
    fn spawn_keeper_reaper(&self) {
        let bin = match super::super::monitor::monitor_binary() {
            Ok(b) => b,
            Err(e) => return log::warn!("the bridge reaper: {e}"),
        };
        let status = std::process::Command::new(&bin)
            .arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--reap-bridges")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Err(e) = status {
            log::warn!("the bridge reaper: {}: {e}", bin.display());
        }
    }

    /// The reaper's body (in its own session, detached): until no lingering keeper waits,
    /// sleeps until the next is due and takes it down. One reaper per state dir: a second
    /// one ends at once.
    pub(crate) fn reap_keepers_until_idle(&self) {
        let me = std::process::id();
        {
            let Ok(_lock) = self.network_lock() else {
                return;
            };
            let other = self
                .running_reaper()
                .filter(|p| u32::try_from(*p).ok() != Some(me));
            if other.is_some()
                || write_atomic(&self.reaper_pid_path(), me.to_string().as_bytes()).is_err()
            {
                return;
            }
        }
        loop {
            let next = {
                let Ok(_lock) = self.network_lock() else {
                    return;
                };
                let Some(due) = self.reap_keepers_locked(false) else {
                    // Under the lock: a releaser that finds no reaper from here on starts one.
                    let _ = std::fs::remove_file(self.reaper_pid_path());
                    return;
                };
                due
            };
            let wait = next.saturating_sub(now_ms()).saturating_add(20);
            std::thread::sleep(Duration::from_millis(wait));
        }
    }
}

/// `capsa-monitor --root R --state S --reap-bridges`: detaches (a new session, a fork whose
/// parent returns at once) and runs [`Engine::reap_keepers_until_idle`]. Returns the exit code.
pub fn reaper_main(root: &Path, state: &Path) -> i32 {
    let _ = nix::unistd::setsid();
    // SAFETY: this process was just exec'd and has started no thread.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {}
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Err(e) => {
            eprintln!("capsa-monitor: fork the bridge reaper: {e}");
            return 1;
        }
    }
    let _ = std::env::set_current_dir("/");
    match Engine::open(root, state) {
        Ok(engine) => {
            engine.reap_keepers_until_idle();
            0
        }
        Err(e) => {
            eprintln!("capsa-monitor: the bridge reaper: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::network::ipam::Subnet;

    fn net(subnet: &str, gateway: &str) -> NetworkRecord {
        NetworkRecord {
            name: "n".into(),
            id: "i".into(),
            created: String::new(),
            driver: "bridge".into(),
            subnet: Some(Subnet::parse(subnet).expect("subnet")),
            gateway: gateway.parse().ok(),
            ip_range: None,
            internal: false,
            dns: true,
            interface: "b".into(),
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn the_keeper_takes_the_highest_free_address_and_small_subnets_get_none() {
        let n = net("10.0.0.0/24", "10.0.0.1");
        assert_eq!(keeper_address(&n, &[]), "10.0.0.254".parse().ok());
        let avoid = ["10.0.0.254".parse().expect("ip")];
        assert_eq!(keeper_address(&n, &avoid), "10.0.0.253".parse().ok());
        let high_gateway = net("10.0.0.0/24", "10.0.0.254");
        assert_eq!(
            keeper_address(&high_gateway, &[]),
            "10.0.0.253".parse().ok()
        );
        assert_eq!(keeper_address(&net("10.0.0.0/30", "10.0.0.1"), &[]), None);
        assert_eq!(
            keeper_address(&net("10.0.0.0/29", "10.0.0.1"), &[]),
            "10.0.0.6".parse().ok()
        );
    }
}

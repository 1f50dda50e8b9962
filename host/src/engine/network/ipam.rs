//! IPv4 address management: subnets, Docker's address pools, and the choice of a container's
//! address. netavark only applies the addresses it is given (`static_ips`), so choosing them is
//! the engine's job; the leases themselves are the attachment records (see `attach`), read
//! under the network lock, so there is no second list to drift from what is set up.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 subnet (`10.1.2.0/24`), always stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length, 8..=30 for a network that has room for a gateway and containers.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `A.B.C.D/N`; host bits set are an error (Docker refuses `10.1.2.3/24` too).
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not in CIDR notation (A.B.C.D/N)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{text:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{text:?}: the prefix length must be 0..32"))?;
        let subnet = Subnet { addr, prefix };
        if subnet.network() != addr {
            return Err(format!(
                "{text:?} has host bits set: the subnet is {}",
                Subnet {
                    addr: subnet.network(),
                    prefix
                }
            ));
        }
        Ok(subnet)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The first usable address, Docker's default gateway (`.1`).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).saturating_add(1))
    }

    /// The usable host addresses in order (network and broadcast left out).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network()) + 1;
        let last = u32::from(self.broadcast()).saturating_sub(1);
        (first..=last).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Subnet::parse(s)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Subnet::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Docker's default address pools for user networks, in the order dockerd tries them:
/// 172.17–31.0.0/16 (172.17 is the default bridge's), then 192.168.0.0/16 in /20 steps.
pub fn default_pools() -> impl Iterator<Item = Subnet> {
    let sixteens = (17u8..=31).map(|b| Subnet {
        addr: Ipv4Addr::new(172, b, 0, 0),
        prefix: 16,
    });
    let twenties = (0u8..16).map(|i| Subnet {
        addr: Ipv4Addr::new(192, 168, i * 16, 0),
        prefix: 20,
    });
    sixteens.chain(twenties)
}

/// The first subnet of the pools that overlaps none of `taken`.
pub fn first_free(mut pools: impl Iterator<Item = Subnet>, taken: &[Subnet]) -> Option<Subnet> {
    pools.find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
}

/// The lowest address of `range` (or the subnet) that is neither the gateway nor in `used`.
pub fn allocate(
    subnet: &Subnet,
    range: Option<&Subnet>,
    gateway: Ipv4Addr,
    used: &[Ipv4Addr],
) -> Option<Ipv4Addr> {
    range
        .unwrap_or(subnet)
        .hosts()
        .filter(|ip| subnet.contains(*ip) && *ip != subnet.broadcast())
        .find(|ip| *ip != gateway && !used.contains(ip))
}

/// The IPv4 subnets this host already routes (its interfaces' networks and its routing
/// table), which a new network must not overlap: `/proc/net/route` lists both.
pub fn host_routes() -> Vec<Subnet> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            // The default route (0.0.0.0/0) overlaps everything and says nothing.
            (mask != 0).then(|| Subnet {
                addr: Ipv4Addr::from(dest & mask),
                prefix: mask.count_ones() as u8,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_as_docker_reads_them_and_bad_ones_say_why() {
        let s = Subnet::parse("10.89.0.0/24").unwrap();
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 89, 0, 255));
        assert!(s.contains(Ipv4Addr::new(10, 89, 0, 77)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 1, 1)));
        assert!(
            Subnet::parse("10.89.0.5/24")
                .unwrap_err()
                .contains("host bits set: the subnet is 10.89.0.0/24")
        );
        assert!(Subnet::parse("10.89.0.0").unwrap_err().contains("CIDR"));
        assert!(
            Subnet::parse("10.89.0.0/33")
                .unwrap_err()
                .contains("prefix")
        );
        assert!(Subnet::parse("fd00::/64").unwrap_err().contains("IPv4"));
    }

    #[test]
    fn overlap_is_symmetric_and_pools_skip_what_is_taken() {
        let a = Subnet::parse("172.18.0.0/16").unwrap();
        let b = Subnet::parse("172.18.5.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&Subnet::parse("172.19.0.0/16").unwrap()));
        let taken = [Subnet::parse("172.17.0.0/16").unwrap(), b];
        assert_eq!(
            first_free(default_pools(), &taken).unwrap().to_string(),
            "172.19.0.0/16"
        );
        let all: Vec<Subnet> = (16u8..=31)
            .map(|x| Subnet {
                addr: Ipv4Addr::new(172, x, 0, 0),
                prefix: 16,
            })
            .collect();
        assert_eq!(
            first_free(default_pools(), &all).unwrap().to_string(),
            "192.168.0.0/20"
        );
    }

    #[test]
    fn allocation_takes_the_lowest_free_address_and_never_the_gateway() {
        let s = Subnet::parse("10.0.0.0/29").unwrap();
        let gw = s.first_host();
        let used = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 4)];
        assert_eq!(
            allocate(&s, None, gw, &used),
            Some(Ipv4Addr::new(10, 0, 0, 3))
        );
        let range = Subnet::parse("10.0.0.4/30").unwrap();
        assert_eq!(
            allocate(&s, Some(&range), gw, &used),
            Some(Ipv4Addr::new(10, 0, 0, 5))
        );
        let full: Vec<Ipv4Addr> = s.hosts().collect();
        assert_eq!(allocate(&s, None, gw, &full), None);
    }

    #[test]
    fn the_hosts_routes_are_read() {
        // Every machine routes loopback through `lo`, which /proc/net/route does not list, but
        // any interface with an IPv4 address gives its subnet; the call must not fail either way.
        let routes = host_routes();
        assert!(routes.iter().all(|r| r.prefix > 0));
    }
}

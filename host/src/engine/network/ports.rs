//! Published ports: Docker's `PortBindings` (what `-p` and the API's HostConfig say) and `-P`
//! (every `EXPOSE`d port) turned into netavark's port mappings, with the host ports chosen and
//! checked here, at start, so that a port another container or a host process holds is a clear
//! error before anything is set up (netavark's DNAT would silently shadow a host listener).

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};

use serde_json::Value;

use super::netavark::PortMapping;
use crate::engine::error::{EngineError, Result, invalid};

/// One port the container asks to publish, before the host port is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub container_port: u16,
    pub protocol: String,
    /// `""` for every address.
    pub host_ip: String,
    /// A port or a range to pick from; none for any free port.
    pub host_ports: Option<(u16, u16)>,
}

fn port(text: &str, what: &str) -> Result<u16> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(what.to_owned(), format!("{text:?} is not a port (1-65535)")))
}

/// `80/tcp` → (80, tcp).
pub fn parse_key(key: &str) -> Result<(u16, String)> {
    let (p, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(invalid(
            format!("port {key:?}"),
            format!("protocol {proto:?} is not tcp or udp (sctp is not supported)"),
        ));
    }
    Ok((port(p, &format!("port {key:?}"))?, proto))
}

/// What a container asks for: its `PortBindings`, plus with `-P` every exposed port that has
/// no binding (on a random host port).
pub fn wanted(bindings: &Value, publish_all: bool, exposed: &[String]) -> Result<Vec<Wanted>> {
    let mut out = Vec::new();
    if let Some(map) = bindings.as_object() {
        for (key, list) in map {
            let (container_port, protocol) = parse_key(key)?;
            let entries = list.as_array().cloned().unwrap_or_default();
            let entries = if entries.is_empty() {
                vec![Value::Null]
            } else {
                entries
            };
            for b in entries {
                let host_ip = b["HostIp"].as_str().unwrap_or("").to_owned();
                if !host_ip.is_empty() {
                    match host_ip.parse::<IpAddr>() {
                        Ok(IpAddr::V4(_)) => {}
                        Ok(IpAddr::V6(_)) => {
                            return Err(invalid(
                                format!("published port {key} on {host_ip}"),
                                "IPv6 host addresses are not supported yet",
                            ));
                        }
                        Err(_) => {
                            return Err(invalid(
                                format!("published port {key}"),
                                format!("{host_ip:?} is not an IP address"),
                            ));
                        }
                    }
                }
                let text = b["HostPort"].as_str().unwrap_or("");
                let what = format!("host port of {key}");
                let host_ports = match text.split_once('-') {
                    _ if text.is_empty() => None,
                    Some((a, b)) => {
                        let (a, b) = (port(a, &what)?, port(b, &what)?);
                        if b < a {
                            return Err(invalid(what, format!("{text:?}: the range is empty")));
                        }
                        Some((a, b))
                    }
                    None => {
                        let p = port(text, &what)?;
                        Some((p, p))
                    }
                };
                out.push(Wanted {
                    container_port,
                    protocol: protocol.clone(),
                    host_ip,
                    host_ports,
                });
            }
        }
    }
    if publish_all {
        for key in exposed {
            let (container_port, protocol) = parse_key(key)?;
            if !out
                .iter()
                .any(|w| w.container_port == container_port && w.protocol == protocol)
            {
                out.push(Wanted {
                    container_port,
                    protocol,
                    host_ip: String::new(),
                    host_ports: None,
                });
            }
        }
    }
    Ok(out)
}

/// Whether two host addresses can receive the same packets (`""`/0.0.0.0 is every address).
fn same_addresses(a: &str, b: &str) -> bool {
    let any = |s: &str| s.is_empty() || s == "0.0.0.0";
    any(a) || any(b) || a == b
}

fn in_use(taken: &[PortMapping], ip: &str, port: u16, protocol: &str) -> bool {
    taken.iter().any(|m| {
        m.protocol == protocol
            && same_addresses(&m.host_ip, ip)
            && (m.host_port..m.host_port.saturating_add(m.range.max(1))).contains(&port)
    })
}

/// Whether a host process could bind the port itself (it is free on the host).
fn free_on_host(ip: &str, port: u16, protocol: &str) -> bool {
    let addr: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    if protocol == "udp" {
        UdpSocket::bind((addr, port)).is_ok()
    } else {
        TcpListener::bind((addr, port)).is_ok()
    }
}

/// A port the kernel picks as free on the host (its ephemeral range), for `-p 80` and `-P`.
fn any_free(ip: &str, protocol: &str, taken: &[PortMapping]) -> Result<u16> {
    let addr: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    for _ in 0..64 {
        let port = if protocol == "udp" {
            UdpSocket::bind((addr, 0)).and_then(|s| s.local_addr())
        } else {
            TcpListener::bind((addr, 0)).and_then(|s| s.local_addr())
        }
        .map(|a| a.port())
        .map_err(|e| EngineError::Network(format!("pick a free host port on {addr}: {e}")))?;
        if !in_use(taken, ip, port, protocol) {
            return Ok(port);
        }
    }
    Err(EngineError::Network(format!(
        "no free host port for {protocol} on {addr}"
    )))
}

/// Chooses the host ports: a fixed port must be free of other containers' mappings (`taken`)
/// and of host listeners; a range gives its first free port; none gives any free port.
pub fn resolve(wanted: &[Wanted], taken: &[PortMapping]) -> Result<Vec<PortMapping>> {
    let mut chosen: Vec<PortMapping> = Vec::new();
    for w in wanted {
        let all_taken: Vec<PortMapping> = taken.iter().chain(chosen.iter()).cloned().collect();
        let shown_ip = if w.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &w.host_ip
        };
        let host_port = match w.host_ports {
            None => any_free(&w.host_ip, &w.protocol, &all_taken)?,
            Some((first, last)) => (first..=last)
                .find(|p| {
                    !in_use(&all_taken, &w.host_ip, *p, &w.protocol)
                        && free_on_host(&w.host_ip, *p, &w.protocol)
                })
                .ok_or_else(|| {
                    let ports = if first == last {
                        first.to_string()
                    } else {
                        format!("{first}-{last}")
                    };
                    EngineError::Conflict(format!(
                        "Bind for {shown_ip}:{ports} failed: port is already allocated"
                    ))
                })?,
        };
        chosen.push(PortMapping {
            host_ip: w.host_ip.clone(),
            container_port: w.container_port,
            host_port,
            range: 1,
            protocol: w.protocol.clone(),
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bindings_and_publish_all_become_wanted_ports() {
        let b = json!({
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "", "HostPort": ""}],
            "90/tcp": [{"HostIp": "", "HostPort": "9000-9010"}],
        });
        let w = wanted(&b, true, &["80/tcp".into(), "443/tcp".into()]).unwrap();
        assert_eq!(w.len(), 4);
        assert!(w.contains(&Wanted {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
            host_ports: Some((8080, 8080)),
        }));
        assert!(
            w.iter()
                .any(|x| x.container_port == 443 && x.host_ports.is_none())
        );
        assert!(
            w.iter()
                .any(|x| x.protocol == "udp" && x.host_ports.is_none())
        );
        assert!(w.iter().any(|x| x.host_ports == Some((9000, 9010))));
    }

    #[test]
    fn bad_bindings_are_named() {
        let bad = |b: Value| wanted(&b, false, &[]).unwrap_err().to_string();
        assert!(bad(json!({"80/sctp": []})).contains("sctp"));
        assert!(bad(json!({"0/tcp": []})).contains("not a port"));
        assert!(bad(json!({"80/tcp": [{"HostPort": "x"}]})).contains("\"x\" is not a port"));
        assert!(bad(json!({"80/tcp": [{"HostPort": "9-8"}]})).contains("range is empty"));
        assert!(bad(json!({"80/tcp": [{"HostIp": "nope"}]})).contains("not an IP"));
        assert!(bad(json!({"80/tcp": [{"HostIp": "::1"}]})).contains("IPv6"));
    }

    #[test]
    fn a_taken_port_is_refused_and_a_random_one_avoids_it() {
        let taken = vec![PortMapping {
            host_ip: String::new(),
            container_port: 80,
            host_port: 18123,
            range: 1,
            protocol: "tcp".into(),
        }];
        let fixed = Wanted {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
            host_ports: Some((18123, 18123)),
        };
        let err = resolve(std::slice::from_ref(&fixed), &taken).unwrap_err();
        assert!(
            err.to_string()
                .contains("Bind for 127.0.0.1:18123 failed: port is already allocated"),
            "{err}"
        );
        // The same port on udp is another port.
        let udp = Wanted {
            protocol: "udp".into(),
            ..fixed.clone()
        };
        assert_eq!(resolve(&[udp], &taken).unwrap()[0].host_port, 18123);
        // A host listener holds it too.
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let held = listener.local_addr().unwrap().port();
        let w = Wanted {
            host_ports: Some((held, held)),
            ..fixed.clone()
        };
        assert!(resolve(&[w], &[]).is_err());
        let any = Wanted {
            host_ports: None,
            ..fixed
        };
        let got = resolve(&[any], &taken).unwrap();
        assert_ne!(got[0].host_port, 18123);
    }
}

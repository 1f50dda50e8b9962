//! Docker's network objects: `GET /networks` and `/networks/{id}` (NetworkResource), the create
//! body, and a container's `NetworkSettings` (its endpoints, addresses and published ports).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::filters::Filters;
use crate::engine::network::attach::{Attachment, EndpointState};
use crate::engine::network::{NetworkOptions, NetworkRecord, PREDEFINED};
use crate::engine::{ContainerRecord, Engine, EngineError, Result};

/// The filters `GET /networks` takes.
const LIST_FILTERS: &[&str] = &["name", "id", "driver", "label", "type", "scope", "dangling"];

/// Docker's `Network` object; `Containers` lists the running containers on it.
pub fn network_json(engine: &Engine, n: &NetworkRecord) -> Value {
    let mut containers = serde_json::Map::new();
    if let Ok(list) = engine.containers() {
        for c in list {
            let Some(a) = engine.attachment(&c.id) else {
                continue;
            };
            for ep in a.endpoints.iter().filter(|e| e.network_id == n.id) {
                containers.insert(
                    c.id.clone(),
                    json!({
                        "Name": c.name,
                        "EndpointID": endpoint_id(&c.id, ep),
                        "MacAddress": ep.mac,
                        "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                        "IPv6Address": "",
                    }),
                );
            }
        }
    }
    let config: Vec<Value> = match (n.subnet, n.gateway) {
        (Some(s), Some(g)) => {
            let mut entry = json!({ "Subnet": s.to_string(), "Gateway": g.to_string() });
            if let Some(r) = n.ip_range {
                entry["IPRange"] = json!(r.to_string());
            }
            vec![entry]
        }
        _ => Vec::new(),
    };
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": config },
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    })
}

/// A stable endpoint id: the container and the network, hashed (Docker's is random).
fn endpoint_id(container: &str, ep: &EndpointState) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{container}/{}", ep.network_id));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /networks?filters=`: the networks that pass the filters.
pub fn network_list(engine: &Engine, filters: &Filters) -> Result<Vec<Value>> {
    filters.only(LIST_FILTERS)?;
    let dangling = filters.bool("dangling")?;
    let used: Vec<String> = engine
        .containers()?
        .iter()
        .flat_map(|c| c.endpoints.iter().map(|e| e.network_id.clone()))
        .collect();
    let any = |key: &str, f: &dyn Fn(&str) -> bool| {
        filters
            .get(key)
            .is_none_or(|vals| vals.iter().any(|v| f(v)))
    };
    Ok(engine
        .networks()?
        .into_iter()
        .filter(|n| {
            let builtin = PREDEFINED.contains(&n.name.as_str());
            any("name", &|v| n.name.contains(v))
                && any("id", &|v| n.id.starts_with(v))
                && any("driver", &|v| v == n.driver)
                && any("scope", &|v| v == "local")
                && any("type", &|v| {
                    (v == "builtin" && builtin) || (v == "custom" && !builtin)
                })
                && dangling.is_none_or(|d| d == (!builtin && !used.contains(&n.id)))
                && filters.labels_match(&n.labels)
        })
        .map(|n| network_json(engine, &n))
        .collect())
}

/// `POST /networks/create`'s body into [`NetworkOptions`].
pub fn network_create_options(body: &Value) -> Result<NetworkOptions> {
    let bad = |what: &str, reason: &str| EngineError::Invalid {
        what: what.to_owned(),
        reason: reason.to_owned(),
    };
    let name = body["Name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("network create", "Name is required"))?;
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let ipam = &body["IPAM"];
    match ipam["Driver"].as_str() {
        None | Some("") | Some("default") => {}
        Some(other) => {
            return Err(bad(
                &format!("IPAM driver {other:?}"),
                "only the default IPAM driver is available",
            ));
        }
    }
    let configs = ipam["Config"].as_array().cloned().unwrap_or_default();
    if configs.len() > 1 {
        return Err(bad(
            "IPAM.Config",
            "one IPv4 subnet per network is supported",
        ));
    }
    let cfg = configs.first().cloned().unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(NetworkOptions {
        name: name.to_owned(),
        driver: body["Driver"].as_str().unwrap_or("").to_owned(),
        subnet: text(&cfg["Subnet"]),
        gateway: text(&cfg["Gateway"]),
        ip_range: text(&cfg["IPRange"]),
        internal: body["Internal"].as_bool().unwrap_or(false),
        ipv6: body["EnableIPv6"].as_bool().unwrap_or(false),
        labels: strings(&body["Labels"]),
        options: strings(&body["Options"]),
        attachable: body["Attachable"].as_bool().unwrap_or(false),
    })
}

/// One entry of `NetworkSettings.Networks`.
fn endpoint_json(c: &ContainerRecord, ep: &EndpointState, config_aliases: &[String]) -> Value {
    json!({
        "IPAMConfig": null, "Links": null,
        "Aliases": if config_aliases.is_empty() { Value::Null } else { json!(config_aliases) },
        "MacAddress": ep.mac,
        "DriverOpts": null,
        "NetworkID": ep.network_id,
        "EndpointID": endpoint_id(&c.id, ep),
        "Gateway": ep.gateway.to_string(),
        "IPAddress": ep.ip.to_string(),
        "IPPrefixLen": ep.prefix,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "DNSNames": if ep.aliases.is_empty() { Value::Null } else { json!(ep.aliases) },
    })
}

/// `NetworkSettings.Networks`: every network the container is on; a running container's
/// entries have its addresses.
pub fn networks_json(c: &ContainerRecord, attachment: Option<&Attachment>) -> Value {
    let mut map = serde_json::Map::new();
    if c.endpoints.is_empty() {
        let mode = c.options.network.mode();
        map.insert(
            mode.clone(),
            json!({
                "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "",
                "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DNSNames": null,
            }),
        );
        return Value::Object(map);
    }
    for e in &c.endpoints {
        let live =
            attachment.and_then(|a| a.endpoints.iter().find(|s| s.network_id == e.network_id));
        let v = match live {
            Some(ep) => endpoint_json(c, ep, &e.aliases),
            None => json!({
                "IPAMConfig": e.ip.as_ref().map(|ip| json!({ "IPv4Address": ip })),
                "Links": null,
                "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
                "MacAddress": e.mac.clone().unwrap_or_default(),
                "NetworkID": e.network_id, "EndpointID": "", "Gateway": "", "IPAddress": "",
                "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DNSNames": null,
            }),
        };
        map.insert(e.network.clone(), v);
    }
    Value::Object(map)
}

/// Docker's `Ports` list (`ps`): the published ports as set up, else the exposed ones.
pub fn ports_list(c: &ContainerRecord, attachment: Option<&Attachment>) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(a) = attachment {
        for m in a.ports() {
            let ip = if m.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &m.host_ip
            };
            out.push(json!({
                "IP": ip, "PrivatePort": m.container_port, "PublicPort": m.host_port,
                "Type": m.protocol,
            }));
        }
    }
    for p in &c.options.exposed_ports {
        let (number, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let private: u16 = number.parse().unwrap_or(0);
        if !out
            .iter()
            .any(|v| v["PrivatePort"] == private && v["Type"] == proto)
        {
            out.push(json!({ "PrivatePort": private, "Type": proto }));
        }
    }
    out
}

/// `NetworkSettings.Ports`: every exposed port, with its host bindings while set up.
pub fn port_map(c: &ContainerRecord, attachment: Option<&Attachment>) -> Value {
    let mut map = serde_json::Map::new();
    for p in &c.options.exposed_ports {
        map.insert(p.clone(), Value::Null);
    }
    if let Some(ports) = c.config["ExposedPorts"].as_object() {
        for p in ports.keys() {
            map.insert(p.clone(), Value::Null);
        }
    }
    if let Some(a) = attachment {
        for m in a.ports() {
            let key = format!("{}/{}", m.container_port, m.protocol);
            let ip = if m.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &m.host_ip
            };
            let entry = map.entry(key).or_insert(Value::Null);
            if !entry.is_array() {
                *entry = json!([]);
            }
            if let Some(list) = entry.as_array_mut() {
                list.push(json!({ "HostIp": ip, "HostPort": m.host_port.to_string() }));
            }
        }
    }
    Value::Object(map)
}

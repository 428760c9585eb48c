//! Endpoints as a profile writes them: the name the agent resolved, else
//! the address; unnamed IPv4 addresses of one /24 on one port grouped into
//! the CIDR; the agent's model API marked.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use crate::profile::{Direction, Granularity, NetRule};

/// Where an endpoint is: a name the agent resolved, an address, a socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Host(String),
    Addr(IpAddr),
    Unix(String),
}

pub type NetKey = (Direction, Target, Option<u16>);

/// Endpoints, with unnamed IPv4 addresses on one port and direction
/// grouped into their /24 when `min_cidr` or more share it.
pub fn rules(net: &BTreeMap<NetKey, BTreeSet<String>>, min_cidr: usize) -> Vec<NetRule> {
    let mut groups: BTreeMap<(Direction, Option<u16>, [u8; 3]), Vec<IpAddr>> = BTreeMap::new();
    for (dir, target, port) in net.keys() {
        if let Target::Addr(IpAddr::V4(v4)) = target {
            let o = v4.octets();
            groups
                .entry((*dir, *port, [o[0], o[1], o[2]]))
                .or_default()
                .push(IpAddr::V4(*v4));
        }
    }
    let mut merged: BTreeMap<(Direction, String, Option<u16>), BTreeSet<String>> = BTreeMap::new();
    let mut cidr_of: HashMap<(Direction, Option<u16>, IpAddr), String> = HashMap::new();
    for ((dir, port, net), addrs) in &groups {
        if addrs.len() >= min_cidr {
            let cidr = format!("{}.{}.{}.0/24", net[0], net[1], net[2]);
            for a in addrs {
                cidr_of.insert((*dir, *port, *a), cidr.clone());
            }
        }
    }
    let mut out: Vec<NetRule> = Vec::new();
    for ((dir, target, port), by) in net {
        let mut rule = NetRule {
            direction: *dir,
            host: None,
            address: None,
            unix: None,
            port: *port,
            by: by.iter().cloned().collect(),
            model: false,
            runs: 1,
        };
        match target {
            Target::Host(h) => rule.host = Some(h.clone()),
            Target::Unix(u) => rule.unix = Some(u.clone()),
            Target::Addr(a) => match cidr_of.get(&(*dir, *port, *a)) {
                Some(cidr) => {
                    merged
                        .entry((*dir, cidr.clone(), *port))
                        .or_default()
                        .extend(by.iter().cloned());
                    continue;
                }
                None => rule.address = Some(a.to_string()),
            },
        }
        out.push(rule);
    }
    for ((direction, cidr, port), by) in merged {
        out.push(NetRule {
            direction,
            host: None,
            address: Some(cidr),
            unix: None,
            port,
            by: by.into_iter().collect(),
            model: false,
            runs: 1,
        });
    }
    out
}

/// Executables using one endpoint that make it open to any executable
/// (`by` empty), by granularity: a local service many tools use (nscd, a
/// database socket) is the agent's, whoever asks.
pub const fn by_any_threshold(g: Granularity) -> Option<usize> {
    match g {
        Granularity::Strict => None,
        Granularity::Balanced => Some(3),
        Granularity::Open => Some(2),
    }
}

/// Widens `by` to any executable where enough of them used the endpoint.
pub fn widen_by(rules: &mut [NetRule], g: Granularity) {
    let Some(t) = by_any_threshold(g) else {
        return;
    };
    for r in rules {
        if r.by.len() >= t {
            r.by.clear();
        }
    }
}

/// Does a connect rule name the endpoint `spec` (`host`, `host:port`,
/// `address`, `address:port`, `[v6]:port`)? Marks the agent's model API.
pub fn names_endpoint(r: &NetRule, spec: &str) -> bool {
    if r.direction != Direction::Connect {
        return false;
    }
    let (host, port) = split_spec(spec);
    let port_ok = port.is_none() || port == r.port;
    let target = r.host.as_deref().or(r.address.as_deref());
    port_ok && target.is_some_and(|t| t.eq_ignore_ascii_case(host))
}

fn split_spec(spec: &str) -> (&str, Option<u16>) {
    if let Some(rest) = spec.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, p.parse().ok());
        }
        return (rest.trim_end_matches(']'), None);
    }
    match spec.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (spec, None),
        },
        _ => (spec, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_many_executables_use_is_open_to_any() {
        let rule = |by: &[&str]| NetRule {
            direction: Direction::Connect,
            host: None,
            address: None,
            unix: Some("/run/nscd/socket".into()),
            port: None,
            by: by.iter().map(|s| s.to_string()).collect(),
            model: false,
            runs: 1,
        };
        let mut v = vec![
            rule(&["/usr/bin/ls", "/usr/bin/id", "/usr/bin/tar"]),
            rule(&["/usr/bin/git"]),
        ];
        widen_by(&mut v, Granularity::Strict);
        assert_eq!(v[0].by.len(), 3);
        widen_by(&mut v, Granularity::Balanced);
        assert!(v[0].by.is_empty());
        assert_eq!(v[1].by, ["/usr/bin/git"]);
    }

    #[test]
    fn model_endpoints_by_name_or_address() {
        let mut r = rules(
            &[(
                (
                    Direction::Connect,
                    Target::Host("api.model.test".into()),
                    Some(443),
                ),
                BTreeSet::new(),
            )]
            .into_iter()
            .collect(),
            3,
        )
        .remove(0);
        assert!(names_endpoint(&r, "api.model.test"));
        assert!(names_endpoint(&r, "API.model.test:443"));
        assert!(!names_endpoint(&r, "api.model.test:80"));
        r.host = None;
        r.address = Some("::1".into());
        assert!(names_endpoint(&r, "[::1]:443"));
        assert!(names_endpoint(&r, "::1"));
    }
}

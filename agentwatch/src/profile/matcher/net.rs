//! Network judgements: an endpoint against the profile's rules (by
//! address, CIDR, DNS name the agent resolved, or unix path) and the
//! exfiltration guardrail on connects.
use std::net::IpAddr;

use super::*;

impl Matcher {
    pub(super) fn judge_net(
        &self,
        direction: Direction,
        peer: &Peer,
        ev: &Event,
    ) -> Option<Finding> {
        // Normalised only when a rule names executables or a finding needs it.
        let exe = std::cell::OnceCell::new();
        let exe = || {
            exe.get_or_init(|| {
                ev.context
                    .exe
                    .as_deref()
                    .and_then(|e| normalise::path(e, &self.anchors, self.run.seen.pids()))
                    .unwrap_or_else(|| ev.comm.clone())
            })
            .clone()
        };
        if observe::ephemeral_loopback_bind(direction, peer) {
            return None;
        }
        let host = match peer {
            Peer::Ip { addr, port } => self.run.seen.host(addr, *port).map(str::to_string),
            Peer::Unix { .. } => None,
        };
        let hit = self.net.iter().find(|r| {
            r.direction == direction
                && self.target_matches(r, peer, host.as_deref())
                && (r.by.is_empty() || r.by.contains(&exe()))
        });
        if let Some(r) = hit {
            if r.model && self.run.tainted.contains(&ev.pid) {
                return Some(Finding {
                    rule: Rule::GuardExfiltrate,
                    class: Class::Network,
                    what: format!("{} -> {direction} {}", exe(), r.target()),
                    reason: "a process that read a secret connects to the model API".into(),
                });
            }
            return None;
        }
        let target = match (peer, &host) {
            (Peer::Ip { port, .. }, Some(h)) => format!("{h}{}", port_text(*port)),
            (
                Peer::Ip {
                    addr: IpAddr::V6(a),
                    port: Some(p),
                },
                None,
            ) => format!("[{a}]:{p}"),
            (Peer::Ip { addr, port }, None) => format!("{addr}{}", port_text(*port)),
            (Peer::Unix { path }, _) => format!("unix:{}", self.anchors.anchor(path)),
        };
        let endpoint_known = self
            .net
            .iter()
            .any(|r| r.direction == direction && self.target_matches(r, peer, host.as_deref()));
        if self.run.secret_read && !endpoint_known && direction == Direction::Connect {
            return Some(Finding {
                rule: Rule::GuardExfiltrate,
                class: Class::Network,
                what: format!("{} -> {direction} {target}", exe()),
                reason: "a connect outside the profile after the agent read a secret".into(),
            });
        }
        Some(Finding {
            rule: Rule::NetworkUnknown,
            class: Class::Network,
            what: format!("{} -> {direction} {target}", exe()),
            reason: if endpoint_known {
                "endpoint in the profile, but not for this executable".into()
            } else {
                "endpoint not in the profile".into()
            },
        })
    }

    fn target_matches(&self, r: &NetRule, peer: &Peer, host: Option<&str>) -> bool {
        match peer {
            Peer::Ip { addr, port } => {
                let port_ok = r.port.is_none() || r.port == *port;
                let host_ok = match (&r.host, &r.address) {
                    (Some(h), _) => host.is_some_and(|n| {
                        n == h || h.strip_prefix('*').is_some_and(|s| n.ends_with(s))
                    }),
                    (_, Some(a)) => address_matches(a, *addr),
                    _ => false,
                };
                port_ok && host_ok
            }
            Peer::Unix { path } => r.unix.as_deref().is_some_and(|u| {
                u == path
                    || self
                        .anchors
                        .expand(u)
                        .and_then(|e| Glob::parse(&e).ok())
                        .is_some_and(|g| g.matches(path))
            }),
        }
    }
}

fn port_text(p: Option<u16>) -> String {
    p.map(|p| format!(":{p}")).unwrap_or_default()
}

/// An address rule (`10.0.0.7` or `10.0.0.0/24`) against an address.
pub fn address_matches(rule: &str, addr: IpAddr) -> bool {
    let Some((net, bits)) = rule.split_once('/') else {
        return rule.parse::<IpAddr>().is_ok_and(|r| r == addr);
    };
    let Ok(bits) = bits.parse::<u32>() else {
        return false;
    };
    match (net.parse::<IpAddr>(), addr) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

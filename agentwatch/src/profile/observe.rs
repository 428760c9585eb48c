//! What an event means for a profile: the one reduction both learning and
//! matching use, so `check` judges exactly what `learn` recorded.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::{Access, AccessSet, Class, Direction};
use crate::event::{Detail, Endpoint, Event, Family};

/// One profile-relevant fact from an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obs {
    /// A successful exec of `path`.
    Exec {
        path: String,
    },
    /// An access (attempted or done) to an absolute path.
    File {
        path: String,
        access: AccessSet,
        class: Class,
    },
    Net {
        direction: Direction,
        peer: Peer,
    },
    /// A directory opened read-only to list it or walk through it
    /// (`O_DIRECTORY` or `O_PATH`: `ls`, `mkdir -p`, `rm -r`, `os.walk`).
    /// It shows names, never contents: guardrails judge it, profiles
    /// neither learn nor need it (the kernel does the same).
    Listing {
        path: String,
    },
    /// A DNS question the agent sent.
    Dns {
        name: String,
    },
    /// Addresses a DNS answer gave for a name the agent asked.
    DnsAnswer {
        name: String,
        addrs: Vec<IpAddr>,
    },
}

/// The other side of a network event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Ip { addr: IpAddr, port: Option<u16> },
    Unix { path: String },
}

impl Obs {
    /// Whether a rate budget counts it: reads and listings change
    /// nothing (the kernel skips them too).
    pub fn rated(&self) -> bool {
        match self {
            Obs::Listing { .. } => false,
            Obs::File { access, .. } => *access != AccessSet::of(&[Access::Read]),
            _ => true,
        }
    }

    pub fn class(&self) -> Class {
        match self {
            Obs::Exec { .. } => Class::Exec,
            Obs::File { class, .. } => *class,
            Obs::Listing { .. } => Class::File,
            Obs::Net { .. } => Class::Network,
            Obs::Dns { .. } | Obs::DnsAnswer { .. } => Class::Dns,
        }
    }
}

fn file(path: &str, access: &[Access], class: Class) -> Obs {
    Obs::File {
        path: path.to_string(),
        access: AccessSet::of(access),
        class,
    }
}

fn peer(e: &Endpoint, with_port: bool) -> Option<Peer> {
    match e.family {
        Family::Ipv4 | Family::Ipv6 => {
            let addr: IpAddr = e.addr.as_deref()?.parse().ok()?;
            // IPv4-mapped IPv6 is the IPv4 host it maps.
            let addr = match addr {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
                a => a,
            };
            Some(Peer::Ip {
                addr,
                port: if with_port { e.port } else { None },
            })
        }
        Family::Unix => Some(Peer::Unix {
            path: e.path.clone().filter(|p| !p.is_empty())?,
        }),
        Family::Other => None,
    }
}

/// A bind to port 0 on loopback: within every profile (see
/// [`agentwatch_common::policy::ephemeral_loopback_bind`], which the
/// kernel uses too), so neither learned nor flagged.
pub fn ephemeral_loopback_bind(direction: Direction, peer: &Peer) -> bool {
    let Peer::Ip { addr, port } = peer else {
        return false;
    };
    let mapped = match addr {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(a) => a.octets(),
    };
    let dir = match direction {
        Direction::Bind => agentwatch_common::policy::DIR_BIND,
        _ => agentwatch_common::policy::DIR_CONNECT,
    };
    agentwatch_common::policy::ephemeral_loopback_bind(dir, port.unwrap_or(0), &mapped)
}

/// A read-only open of a directory, or an `O_PATH` one (no data either
/// way); the kernel's `open_listing` reads the flags the same way.
fn listing(flags: u64, access: &crate::event::Access) -> bool {
    agentwatch_common::open::open_listing(flags)
        && !access.write
        && !access.create
        && !access.truncate
}

/// Did a file call fail (so it changed nothing)? Guardrails judge the
/// attempt all the same; the profile's own rules only what happened.
pub fn failed(ev: &Event) -> bool {
    let result = match &ev.detail {
        Detail::Open { result, .. }
        | Detail::Unlink { result, .. }
        | Detail::Rename { result, .. }
        | Detail::Link { result, .. }
        | Detail::Make { result, .. }
        | Detail::Chmod { result, .. }
        | Detail::Chown { result, .. } => *result,
        _ => None,
    };
    result.is_some_and(|r| r < 0)
}

/// The facts in one event (a rename is two).
pub fn observe(ev: &Event) -> Vec<Obs> {
    use Access::*;
    match &ev.detail {
        Detail::Exec { path, result, .. } if *result == Some(0) || result.is_none() => {
            vec![Obs::Exec { path: path.clone() }]
        }
        Detail::Open {
            path,
            access,
            flags,
            ..
        } if listing(*flags, access) => vec![Obs::Listing { path: path.clone() }],
        Detail::Open { path, access, .. } => {
            let mut set = Vec::new();
            if access.read {
                set.push(Read);
            }
            if access.write || access.truncate {
                set.push(Write);
            }
            if access.create {
                set.push(Create);
            }
            if set.is_empty() {
                set.push(Read);
            }
            vec![file(path, &set, Class::File)]
        }
        Detail::Unlink { path, .. } => vec![file(path, &[Delete], Class::Delete)],
        Detail::Make { path, .. } => vec![file(path, &[Create], Class::File)],
        Detail::Rename { from, to, .. } => vec![
            file(from, &[Rename], Class::File),
            file(to, &[Rename], Class::File),
        ],
        // A second name reaches the same data: reading and writing the
        // source (so a link to a guardrail file is judged as one).
        Detail::Link { from, to, .. } => vec![
            file(from, &[Read, Write], Class::File),
            file(to, &[Create], Class::File),
        ],
        Detail::Chmod { path, .. } | Detail::Chown { path, .. } => {
            vec![file(path, &[Chmod], Class::File)]
        }
        // A datagram to an address is a connect there, in the profile's
        // terms (its connect rules cover UDP).
        Detail::Connect { endpoint, .. } | Detail::Datagram { endpoint, .. } => {
            peer(endpoint, true)
                .map(|peer| Obs::Net {
                    direction: Direction::Connect,
                    peer,
                })
                .into_iter()
                .collect()
        }
        Detail::Bind { endpoint, .. } => peer(endpoint, true)
            .map(|peer| Obs::Net {
                direction: Direction::Bind,
                // Port 0 asks for any free port.
                peer: match peer {
                    Peer::Ip { addr, port } => Peer::Ip {
                        addr,
                        port: port.filter(|p| *p != 0),
                    },
                    p => p,
                },
            })
            .into_iter()
            .collect(),
        // The peer's port is ephemeral; who connected is the address.
        Detail::Accept { endpoint, .. } => peer(endpoint, false)
            .map(|peer| Obs::Net {
                direction: Direction::Accept,
                peer,
            })
            .into_iter()
            .collect(),
        Detail::Dns { name, .. } if !name.is_empty() => vec![Obs::Dns {
            name: dns_name(name),
        }],
        Detail::DnsAnswer { name, addrs, .. } => vec![Obs::DnsAnswer {
            name: dns_name(name),
            addrs: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
        }],
        _ => Vec::new(),
    }
}

/// What an agent's own events teach about its later ones: its PIDs and
/// TIDs (normalised out of paths) and the names its DNS answers gave to
/// addresses (so endpoints read as the name it resolved).
#[derive(Debug, Default)]
pub struct Seen {
    pids: HashSet<u32>,
    names: HashMap<IpAddr, String>,
}

impl Seen {
    /// Notes the event's processes and any DNS answer in it; returns the
    /// event's other observations.
    pub fn observe(&mut self, ev: &Event) -> Vec<Obs> {
        self.pids.insert(ev.pid);
        self.pids.insert(ev.tid);
        if let Detail::Fork { child_pid } = ev.detail {
            self.pids.insert(child_pid);
        }
        let mut obs = observe(ev);
        obs.retain(|o| match o {
            Obs::DnsAnswer { name, addrs } => {
                for a in addrs {
                    self.names.insert(*a, name.clone());
                }
                false
            }
            _ => true,
        });
        obs
    }

    pub fn pids(&self) -> &HashSet<u32> {
        &self.pids
    }

    /// The name the agent resolved to `addr`. Resolver traffic (port 53)
    /// keeps its address: the nameserver is not the name it answered for,
    /// even when they share an IP.
    pub fn host(&self, addr: &IpAddr, port: Option<u16>) -> Option<&str> {
        if port == Some(53) {
            return None;
        }
        self.names.get(addr).map(String::as_str)
    }
}

/// DNS names compare lower-case, without the root dot.
pub fn dns_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

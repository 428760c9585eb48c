//! Sockets (connect, bind, listen, accept) and DNS messages.
use agentwatch_common::{calls::Call, policy::action, syscalls as nr};

use super::Record;
use crate::event::{Detail, Endpoint, Family};

/// The detail of a network call's entry (accept's address comes with its
/// exit).
pub(super) fn enter(rec: &Record, call: &Call) -> Option<Detail> {
    let a = rec.args();
    Some(match call.nr {
        nr::CONNECT => Detail::Connect {
            endpoint: rec.endpoint(),
            result: None,
        },
        nr::BIND => Detail::Bind {
            endpoint: rec.endpoint(),
            result: None,
        },
        nr::LISTEN => Detail::Listen {
            endpoint: rec.endpoint(),
            backlog: a[1] as i32 as i64,
            result: None,
        },
        nr::ACCEPT | nr::ACCEPT4 => Detail::Accept {
            endpoint: Endpoint {
                family: Family::Other,
                addr: None,
                port: None,
                path: None,
            },
            result: None,
        },
        _ => return None,
    })
}

/// A DNS query or answer (payload in slot 0); None for anything that is
/// neither, unless the kernel holds the receiver until it is read.
pub(super) fn dns(rec: &Record) -> Option<Detail> {
    let (b, _) = rec.slot(agentwatch_common::slot::PATH1)?;
    let server = server(&rec.endpoint());
    if let Some(q) = crate::net::parse_dns_query(b) {
        Some(Detail::Dns {
            name: q.name,
            qtype: q.qtype,
            id: q.id,
            server,
        })
    } else if let Some(a) = crate::net::parse_dns_answer(b) {
        Some(Detail::DnsAnswer {
            name: a.name,
            addrs: a.addrs.iter().map(ToString::to_string).collect(),
            id: a.id,
            ttl: a.ttl,
            server,
        })
    } else if rec.header().action == action::HOLD {
        // Held until userspace has read it: whatever arrived, the process
        // must be let go.
        Some(Detail::DnsAnswer {
            name: String::new(),
            addrs: Vec::new(),
            id: 0,
            ttl: 0,
            server,
        })
    } else {
        None
    }
}

/// A DNS peer as `addr:port` (`[v6]:port`); None when the kernel could
/// not read it.
fn server(e: &Endpoint) -> Option<String> {
    let addr = e.addr.as_deref()?;
    let port = e.port?;
    Some(match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{port}"),
            None => format!("[{v6}]:{port}"),
        },
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
    })
}

//! Socket addresses and DNS messages as the kernel copied them.
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::event::{Endpoint, Family};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Parses a `struct sockaddr_*` (native-endian family, network-order port).
pub fn parse_sockaddr(b: &[u8]) -> Option<Endpoint> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]);
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    Some(match family {
        AF_INET if b.len() >= 8 => Endpoint {
            family: Family::Ipv4,
            addr: Some(Ipv4Addr::new(b[4], b[5], b[6], b[7]).to_string()),
            port: Some(port(b)),
            path: None,
        },
        AF_INET6 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            Endpoint {
                family: Family::Ipv6,
                addr: Some(Ipv6Addr::from(a).to_string()),
                port: Some(port(b)),
                path: None,
            }
        }
        AF_UNIX => {
            let raw = &b[2..];
            let path = if raw.is_empty() {
                String::new()
            } else if raw[0] == 0 {
                // Abstract socket: shown with a leading '@', as ss(8) does.
                let name = &raw[1..];
                let end = name.iter().position(|c| *c == 0).unwrap_or(name.len());
                format!("@{}", String::from_utf8_lossy(&name[..end]))
            } else {
                let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
                String::from_utf8_lossy(&raw[..end]).into_owned()
            };
            Endpoint {
                family: Family::Unix,
                addr: None,
                port: None,
                path: Some(path),
            }
        }
        _ => Endpoint {
            family: Family::Other,
            addr: None,
            port: None,
            path: None,
        },
    })
}

/// A DNS question: the name asked for and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: String,
    /// The message id its answer must carry.
    pub id: u16,
}

/// Parses the first question of a DNS query. Accepts both UDP messages and
/// TCP ones (with their two-byte length prefix). Returns None for anything
/// that is not a well-formed query, so a stray write to a port-53 socket
/// never becomes a made-up name.
pub fn parse_dns_query(b: &[u8]) -> Option<Question> {
    udp_or_tcp(b, parse_dns_message)
}

/// Parses `b` as a UDP message, else as a TCP one after its two-byte
/// length prefix.
fn udp_or_tcp<T>(b: &[u8], parse: fn(&[u8]) -> Option<T>) -> Option<T> {
    parse(b).or_else(|| {
        let framed = b.len() > 2 && u16::from_be_bytes([b[0], b[1]]) as usize >= b.len() - 2;
        framed.then(|| parse(&b[2..])).flatten()
    })
}

fn parse_dns_message(b: &[u8]) -> Option<Question> {
    if b.len() < 12 + 5 {
        return None;
    }
    let flags = u16::from_be_bytes([b[2], b[3]]);
    let qdcount = u16::from_be_bytes([b[4], b[5]]);
    // QR bit must be 0 (query), opcode 0 (standard query), one question or more.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount == 0 {
        return None;
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *b.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointers never appear in a query's question
        }
        let label = b.get(i..i + len)?;
        if !label.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
        if labels.len() > 127 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]);
    Some(Question {
        name: if labels.is_empty() {
            ".".into()
        } else {
            labels.join(".")
        },
        qtype: qtype_name(qtype),
        id: u16::from_be_bytes([b[0], b[1]]),
    })
}

/// The addresses a DNS response gave for its question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub addrs: Vec<std::net::IpAddr>,
    /// The id of the query it answers.
    pub id: u16,
    /// The shortest time to live of its address records, in seconds (0
    /// without any).
    pub ttl: u32,
}

/// Parses a DNS response (UDP, or TCP with its length prefix) into the
/// question's name and every A and AAAA record in the answer section
/// (CNAME chains included: the addresses are those of the name asked).
/// None for anything else, or a response without addresses.
pub fn parse_dns_answer(b: &[u8]) -> Option<Answer> {
    udp_or_tcp(b, parse_answer_message)
}

fn parse_answer_message(b: &[u8]) -> Option<Answer> {
    if b.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([b[2], b[3]]);
    let qdcount = u16::from_be_bytes([b[4], b[5]]);
    let ancount = u16::from_be_bytes([b[6], b[7]]);
    // A response (QR), standard opcode, one question. An error (NXDOMAIN)
    // or no address is an answer too: the agent learned nothing to
    // connect to, and a process held for it must be let go.
    if flags & 0x8000 == 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let (name, mut i) = read_name(b, 12)?;
    i += 4; // qtype, qclass
    let id = u16::from_be_bytes([b[0], b[1]]);
    let mut addrs = Vec::new();
    let mut ttl: Option<u32> = None;
    if flags & 0xf != 0 {
        // An error: whatever records it carries name no address.
        return Some(Answer {
            name,
            addrs,
            id,
            ttl: 0,
        });
    }
    for _ in 0..ancount {
        let (_, j) = read_name(b, i)?;
        let rtype = u16::from_be_bytes([*b.get(j)?, *b.get(j + 1)?]);
        let rttl = u32::from_be_bytes([
            *b.get(j + 4)?,
            *b.get(j + 5)?,
            *b.get(j + 6)?,
            *b.get(j + 7)?,
        ]);
        let rdlen = u16::from_be_bytes([*b.get(j + 8)?, *b.get(j + 9)?]) as usize;
        let rdata = b.get(j + 10..j + 10 + rdlen)?;
        let addr = match (rtype, rdlen) {
            (1, 4) => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?)),
            (28, 16) => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?)),
            _ => None,
        };
        if let Some(a) = addr {
            addrs.push(a);
            ttl = Some(ttl.map_or(rttl, |t| t.min(rttl)));
        }
        i = j + 10 + rdlen;
    }
    Some(Answer {
        name,
        addrs,
        id,
        ttl: ttl.unwrap_or(0),
    })
}

/// Reads a possibly compressed name at `at`; returns it and the offset
/// just past it in the message.
fn read_name(b: &[u8], at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let (mut i, mut end, mut jumps) = (at, None, 0);
    loop {
        let len = *b.get(i)? as usize;
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *b.get(i + 1)? as usize;
            end.get_or_insert(i + 2);
            jumps += 1;
            if jumps > 16 {
                return None;
            }
            i = ptr;
            continue;
        }
        i += 1;
        if len == 0 {
            break;
        }
        let label = b.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
        if labels.len() > 127 {
            return None;
        }
    }
    let name = if labels.is_empty() {
        ".".into()
    } else {
        labels.join(".")
    };
    Some((name, end.unwrap_or(i)))
}

fn qtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        65 => "HTTPS".into(),
        other => format!("TYPE{other}"),
    }
}

#[cfg(test)]
pub(crate) fn build_query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_sockaddr() {
        let mut b = vec![0u8; 16];
        b[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
        b[2..4].copy_from_slice(&8080u16.to_be_bytes());
        b[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let e = parse_sockaddr(&b).unwrap();
        assert_eq!(e.family, Family::Ipv4);
        assert_eq!(e.addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(e.port, Some(8080));
    }

    #[test]
    fn ipv6_sockaddr() {
        let mut b = vec![0u8; 28];
        b[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        b[2..4].copy_from_slice(&443u16.to_be_bytes());
        b[23] = 1;
        let e = parse_sockaddr(&b).unwrap();
        assert_eq!(e.addr.as_deref(), Some("::1"));
        assert_eq!(e.port, Some(443));
    }

    #[test]
    fn unix_paths_and_abstract_names() {
        let mut b = AF_UNIX.to_ne_bytes().to_vec();
        b.extend_from_slice(b"/run/x.sock\0");
        assert_eq!(
            parse_sockaddr(&b).unwrap().path.as_deref(),
            Some("/run/x.sock")
        );
        let mut b = AF_UNIX.to_ne_bytes().to_vec();
        b.extend_from_slice(b"\0abstract");
        assert_eq!(
            parse_sockaddr(&b).unwrap().path.as_deref(),
            Some("@abstract")
        );
    }

    #[test]
    fn dns_udp_and_tcp_queries() {
        let q = build_query("Example.COM", 28);
        assert_eq!(
            parse_dns_query(&q),
            Some(Question {
                name: "example.com".into(),
                qtype: "AAAA".into(),
                id: 0x1234,
            })
        );
        let mut tcp = (q.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&q);
        assert_eq!(parse_dns_query(&tcp).unwrap().name, "example.com");
    }

    #[test]
    fn dns_rejects_responses_and_garbage() {
        let mut r = build_query("a.b", 1);
        r[2] |= 0x80; // a response
        assert_eq!(parse_dns_query(&r), None);
        assert_eq!(parse_dns_query(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        assert_eq!(parse_dns_query(&[0u8; 4]), None);
    }

    /// A response to `q` with a CNAME to `alias` and then `addrs`.
    fn response(q: &[u8], addrs: &[std::net::IpAddr]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] |= 0x80;
        r[7] = 1 + addrs.len() as u8;
        // CNAME: api -> (pointer to the question name, so the alias shares it)
        r.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 0x0c]);
        for a in addrs {
            r.extend_from_slice(&[0xc0, 0x0c]);
            let (t, bytes) = match a {
                std::net::IpAddr::V4(v4) => (1u16, v4.octets().to_vec()),
                std::net::IpAddr::V6(v6) => (28u16, v6.octets().to_vec()),
            };
            r.extend_from_slice(&t.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            r.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            r.extend_from_slice(&bytes);
        }
        r
    }

    #[test]
    fn dns_answers_give_every_address() {
        let q = build_query("API.example.com", 1);
        let addrs: Vec<std::net::IpAddr> =
            vec!["10.1.2.3".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let r = response(&q, &addrs);
        assert_eq!(
            parse_dns_answer(&r),
            Some(Answer {
                name: "api.example.com".into(),
                addrs: addrs.clone(),
                id: 0x1234,
                ttl: 60,
            })
        );
        let mut tcp = (r.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&r);
        assert_eq!(parse_dns_answer(&tcp).unwrap().addrs, addrs);
        // Queries and truncated messages are not answers; an error or an
        // empty answer is one, with no address.
        assert_eq!(parse_dns_answer(&q), None);
        let mut nx = response(&q, &addrs);
        nx[3] |= 3;
        assert_eq!(parse_dns_answer(&nx).map(|a| a.addrs), Some(vec![]));
        assert_eq!(
            parse_dns_answer(&response(&q, &[])).map(|a| a.addrs),
            Some(vec![])
        );
        assert_eq!(parse_dns_answer(&r[..r.len() - 3]), None);
    }

    #[test]
    fn dns_compression_loops_are_refused() {
        let mut r = build_query("a.b", 1);
        r[2] |= 0x80;
        r[7] = 1;
        r.extend_from_slice(&[
            0xc0,
            r.len() as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            1,
            0,
            4,
            1,
            2,
            3,
            4,
        ]);
        assert_eq!(parse_dns_answer(&r), None);
    }
}

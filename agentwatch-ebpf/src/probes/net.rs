//! Sockets: connect, bind, listen and accept. Entry copies the user's
//! sockaddr (connect, bind) or reads the kernel socket (listen); exit
//! reads an accepted socket's peer. Connect and bind are judged against
//! the agent's endpoint tries at entry; listen and accept by userspace.
use agentwatch_common::{
    calls::{Call, Judge},
    policy::{class, rule, verdict, DIR_BIND, DIR_CONNECT},
    RawEvent, SOCKADDR_LEN,
};

use crate::{
    enforce::{self, Decision},
    maps::DNS_SOCKETS,
    shim::*,
};

const AF_UNIX: u16 = 1;
pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;
pub(crate) const DNS_PORT_BE: u16 = 53u16.to_be();

/// Reads a network call's entry into `ev`: the address a connect or bind
/// names, the local address of a listen. A connect to port 53 marks its
/// socket as a DNS socket (its sends and receives are copied).
#[inline(always)]
pub fn read_entry(ev: &mut RawEvent, tgid: u32, call: &Call, a: &[u64; 6]) {
    match call.judge {
        Judge::Connect | Judge::Bind => {
            user_sockaddr(ev, a[1], a[2]);
            if call.judge == Judge::Connect {
                let key = ((tgid as u64) << 32) | (a[0] & 0xffff_ffff);
                if sockaddr_port_be(ev) == Some(DNS_PORT_BE) {
                    let _ = DNS_SOCKETS.insert(&key, &1, 0);
                } else {
                    let _ = DNS_SOCKETS.remove(&key);
                }
            }
        }
        Judge::Later if call.nr == agentwatch_common::syscalls::LISTEN => {
            kernel_sockaddr(ev, a[0], false)
        }
        _ => {}
    }
}

/// The entry's decision: connect and bind by the endpoint tries; the
/// rest is left to userspace.
#[inline(always)]
pub fn judge_entry(agent: u32, ev: &RawEvent, call: &Call) -> Decision {
    match call.judge {
        Judge::Connect => endpoint_decision(agent, ev, DIR_CONNECT),
        Judge::Bind => endpoint_decision(agent, ev, DIR_BIND),
        _ => Decision::new(verdict::UNDECIDED, rule::SOCKET, class::NETWORK),
    }
}

/// Completes an exit record: an accepted socket's peer.
#[inline(always)]
pub fn read_exit(ev: &mut RawEvent, call: &Call, ret: i64) {
    let accept = call.nr == agentwatch_common::syscalls::ACCEPT
        || call.nr == agentwatch_common::syscalls::ACCEPT4;
    if accept && ret >= 0 {
        kernel_sockaddr(ev, ret as u64, true);
    }
}

/// Copies a `struct sockaddr` from user memory into `ev.addr`.
#[inline(always)]
pub(crate) fn user_sockaddr(ev: &mut RawEvent, ptr: u64, len: u64) {
    let mut n = len as usize;
    if n > SOCKADDR_LEN {
        n = SOCKADDR_LEN;
    }
    if ptr == 0 || n == 0 {
        return;
    }
    if unsafe { aw_read_user_max127(ev.addr.bytes.as_mut_ptr(), n as u64, ptr as Ptr) } >= 0 {
        ev.addr.len = n as u32;
    }
}

/// Writes the peer address of the connected socket behind `fd` into
/// `ev.addr` (nothing when it has none).
#[inline(always)]
pub(crate) fn peer_sockaddr(ev: &mut RawEvent, fd: u64) {
    kernel_sockaddr(ev, fd, true)
}

/// Writes the local (or peer) address of the socket behind `fd` into
/// `ev.addr` as a `struct sockaddr_*`, read from the kernel socket.
#[inline(always)]
fn kernel_sockaddr(ev: &mut RawEvent, fd: u64, peer: bool) {
    let f = unsafe { aw_current_fd(fd as u32) };
    if f.is_null() {
        return;
    }
    let sk = unsafe { aw_file_sock(f) };
    if sk.is_null() {
        return;
    }
    let family = unsafe { aw_sock_family(sk) };
    let b = &mut ev.addr.bytes;
    b[0..2].copy_from_slice(&family.to_ne_bytes());
    match family {
        AF_INET => {
            let (port, addr) = unsafe {
                if peer {
                    (aw_sock_dport(sk), aw_sock_daddr4(sk))
                } else {
                    (aw_sock_sport(sk).to_be(), aw_sock_saddr4(sk))
                }
            };
            b[2..4].copy_from_slice(&port.to_ne_bytes());
            b[4..8].copy_from_slice(&addr.to_ne_bytes());
            ev.addr.len = 16;
        }
        AF_INET6 => {
            let port = unsafe {
                if peer {
                    aw_sock_dport(sk)
                } else {
                    aw_sock_sport(sk).to_be()
                }
            };
            b[2..4].copy_from_slice(&port.to_ne_bytes());
            let out = unsafe { b.as_mut_ptr().add(8) };
            unsafe {
                if peer {
                    aw_sock_daddr6(sk, out)
                } else {
                    aw_sock_saddr6(sk, out)
                }
            };
            ev.addr.len = 28;
        }
        AF_UNIX => {
            // Accepted unix sockets share the listener's address.
            let ua = unsafe { aw_unix_addr(sk) };
            if ua.is_null() {
                ev.addr.len = 2;
                return;
            }
            let mut n = unsafe { aw_unix_addr_len(ua) } as usize;
            if n > SOCKADDR_LEN {
                n = SOCKADDR_LEN;
            }
            if n > 0
                && unsafe { aw_read_kernel_max127(b.as_mut_ptr(), n as u64, aw_unix_addr_name(ua)) }
                    >= 0
            {
                ev.addr.len = n as u32;
            }
        }
        _ => ev.addr.len = 2,
    }
}

#[inline(always)]
pub(crate) fn sockaddr_port_be(ev: &RawEvent) -> Option<u16> {
    if ev.addr.len < 4 {
        return None;
    }
    let family = u16::from_ne_bytes([ev.addr.bytes[0], ev.addr.bytes[1]]);
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    Some(u16::from_ne_bytes([ev.addr.bytes[2], ev.addr.bytes[3]]))
}

/// The allow decision for the address in `ev.addr` (a sockaddr).
#[inline(always)]
pub(crate) fn endpoint_decision(agent: u32, ev: &RawEvent, dir: u8) -> Decision {
    if ev.addr.len < 8 {
        return Decision::new(verdict::UNDECIDED, rule::SOCKET, class::NETWORK);
    }
    let b = &ev.addr.bytes;
    let family = u16::from_ne_bytes([b[0], b[1]]);
    let port = u16::from_ne_bytes([b[2], b[3]]);
    match family {
        AF_INET => {
            let addr = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            enforce::judge_endpoint(
                agent,
                dir,
                port,
                &enforce::mapped4(addr),
                enforce::tainted(),
            )
        }
        AF_INET6 if ev.addr.len >= 24 => {
            let mut addr = [0u8; 16];
            addr.copy_from_slice(&b[8..24]);
            enforce::judge_endpoint(agent, dir, port, &addr, enforce::tainted())
        }
        _ => Decision::new(verdict::UNDECIDED, rule::SOCKET, class::NETWORK),
    }
}

//! DNS: the queries a watched process sends (to port 53, or on a socket
//! connected to it) and the answers it receives on such a socket, copied
//! for userspace to parse. The same send hooks judge datagrams sent to an
//! address the sender names (unconnected UDP) as connects there.
use agentwatch_common::{slot, syscalls as nr, RecordKind, WatchEntry};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext, EbpfContext};

use crate::{
    enforce, event,
    maps::*,
    probes::{arg, net, net::DNS_PORT_BE, read_args, syscall_nr, watched_current},
};
use agentwatch_common::policy::{class, flags, rule, verdict, DIR_CONNECT};

/// Copies the DNS message being sent: `buf` of `len` bytes, from a send to
/// port 53 or on a socket connected to it.
#[inline(always)]
fn dns_record(
    w: &WatchEntry,
    sysno: u32,
    fd: u64,
    buf: u64,
    len: u64,
    to_port_53: bool,
    dest: u64,
) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = ((tgid as u64) << 32) | (fd & 0xffff_ffff);
    if to_port_53 {
        // An unconnected socket sending to port 53: its answers come back
        // on it, so the receive side must know it too.
        let _ = DNS_SOCKETS.insert(&key, &1, 0);
    } else if unsafe { DNS_SOCKETS.get(&key) }.is_none() {
        return Ok(());
    }
    let ev = event::start(RecordKind::Dns, w, sysno).ok_or(1)?;
    ev.args[0] = fd;
    // The resolver it goes to (its answer must come from there): the
    // address the send names, else the connected socket's peer.
    server_address(ev, dest, fd);
    if let Some(pol) = enforce::policy(w.agent_id) {
        // Names are judged in userspace; the kernel counts the rate.
        ev.hdr.verdict = verdict::UNDECIDED;
        if let Some(r) = enforce::rate(pol, w.agent_id, class::DNS) {
            ev.hdr.verdict = r.verdict;
            ev.hdr.rule = r.rule;
            ev.hdr.action = enforce::act(pol, w.agent_id, &r, false);
        }
    }
    let mut n = len;
    if n > agentwatch_common::DNS_PAYLOAD_LEN as u64 {
        n = agentwatch_common::DNS_PAYLOAD_LEN as u64;
    }
    event::user_bytes(ev, slot::PATH1, buf, n, agentwatch_common::SLOT_BYTES);
    event::submit(ev);
    Ok(())
}

/// Writes into `ev.addr` the address at `sockaddr` (a user `struct
/// sockaddr_in` or `_in6`), else, with none, the peer of the socket
/// behind `fd`.
#[inline(always)]
fn server_address(ev: &mut agentwatch_common::RawEvent, sockaddr: u64, fd: u64) {
    if sockaddr == 0 {
        net::peer_sockaddr(ev, fd);
        return;
    }
    let family: u16 =
        unsafe { aya_ebpf::helpers::bpf_probe_read_user(sockaddr as *const u16) }.unwrap_or(0);
    let len = if family == net::AF_INET6 { 28 } else { 16 };
    net::user_sockaddr(ev, sockaddr, len);
}

/// Reads `(base, len)` of the first iovec of a `struct user_msghdr` (uapi
/// layout: msg_name 0, msg_namelen 8, msg_iov 16), and whether its
/// destination is port 53.
#[inline(always)]
fn msghdr_first_iov(msg: u64) -> Option<(u64, u64, bool)> {
    use aya_ebpf::helpers::bpf_probe_read_user as rd;
    let name: u64 = unsafe { rd((msg) as *const u64) }.ok()?;
    let mut to53 = false;
    if name != 0 {
        let port: u16 = unsafe { rd((name + 2) as *const u16) }.ok()?;
        to53 = port == DNS_PORT_BE;
    }
    let iov: u64 = unsafe { rd((msg + 16) as *const u64) }.ok()?;
    let base: u64 = unsafe { rd(iov as *const u64) }.ok()?;
    let len: u64 = unsafe { rd((iov + 8) as *const u64) }.ok()?;
    Some((base, len, to53))
}

/// A datagram sent to the address at `name` (`namelen` bytes), judged as
/// a connect there. With a policy, only one outside the profile is sent
/// (the cgroup sendmsg hooks refuse it in enforce mode); without one
/// (learning, tracing), every one.
#[inline(always)]
fn datagram_record(w: &WatchEntry, sysno: u32, name: u64, namelen: u64) -> Result<(), i64> {
    // Most datagrams are allowed and dropped: the task's details are read
    // only for one that is sent.
    let ev = event::begin(RecordKind::Datagram, w, sysno).ok_or(1)?;
    net::user_sockaddr(ev, name, namelen);
    let family = u16::from_ne_bytes([ev.addr.bytes[0], ev.addr.bytes[1]]);
    if ev.addr.len < 8 || !matches!(family, net::AF_INET | net::AF_INET6) {
        return Ok(());
    }
    if let Some(pol) = enforce::policy(w.agent_id) {
        let d = net::endpoint_decision(w.agent_id, ev, DIR_CONNECT);
        if d.allowed() {
            return Ok(());
        }
        ev.hdr.verdict = d.verdict;
        ev.hdr.rule = d.rule;
        if d.verdict == verdict::VIOLATION {
            ev.hdr.action = enforce::act(pol, w.agent_id, &d, false);
        }
    }
    event::stamp(ev);
    event::submit(ev);
    Ok(())
}

/// The `msg_name` of a `struct user_msghdr` (0: none).
#[inline(always)]
fn msg_name(msg: u64) -> u64 {
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(msg as *const u64) }.unwrap_or(0)
}

/// `datagram_record` for the destination in a `struct user_msghdr`
/// (msg_name 0, msg_namelen 8); nothing for a connected socket's send.
#[inline(always)]
fn msghdr_datagram(w: &WatchEntry, sysno: u32, msg: u64) -> Result<(), i64> {
    let name = msg_name(msg);
    if name == 0 {
        return Ok(());
    }
    let len: u32 =
        unsafe { aya_ebpf::helpers::bpf_probe_read_user((msg + 8) as *const u32) }.unwrap_or(0);
    datagram_record(w, sysno, name, len as u64)
}

/// Entry of send-type calls of a watched process: copy DNS queries only.
pub fn try_dns_send(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((tgid, w)) = watched_current() else {
        return Ok(());
    };
    let sysno = syscall_nr(ctx);
    // A paused or killed agent stops at its writes too (its commonest call).
    enforce::stop_if_paused(w.agent_id);
    // write/writev are a watched process's commonest calls: look the fd
    // up before reading any other argument.
    let key = ((tgid as u64) << 32) | (arg(ctx, 0) & 0xffff_ffff);
    if matches!(sysno, nr::WRITE | nr::WRITEV) && unsafe { DNS_SOCKETS.get(&key) }.is_none() {
        return Ok(());
    }
    let a = read_args(ctx);
    use aya_ebpf::helpers::bpf_probe_read_user as rd;
    match sysno {
        nr::SENDTO => {
            let mut to53 = false;
            if a[4] != 0 {
                let port: u16 = unsafe { rd((a[4] + 2) as *const u16) }.unwrap_or(0);
                to53 = port == DNS_PORT_BE;
                if !to53 {
                    datagram_record(&w, sysno, a[4], a[5])?;
                }
            }
            dns_record(&w, sysno, a[0], a[1], a[2], to53, a[4])
        }
        nr::WRITE => dns_record(&w, sysno, a[0], a[1], a[2], false, 0),
        nr::SENDMSG => {
            let (base, len, to53) = msghdr_first_iov(a[1]).ok_or(1)?;
            if !to53 {
                msghdr_datagram(&w, sysno, a[1])?;
            }
            dns_record(&w, sysno, a[0], base, len, to53, msg_name(a[1]))
        }
        nr::SENDMMSG => {
            // glibc sends the A and AAAA questions in one sendmmsg; struct
            // mmsghdr is a msghdr (56 bytes) plus msg_len, padded to 64.
            for i in 0..2u64 {
                if i >= a[2] {
                    break;
                }
                if let Some((base, len, to53)) = msghdr_first_iov(a[1] + 64 * i) {
                    if !to53 && i == 0 {
                        msghdr_datagram(&w, sysno, a[1])?;
                    }
                    dns_record(&w, sysno, a[0], base, len, to53, msg_name(a[1] + 64 * i))?;
                }
            }
            Ok(())
        }
        nr::WRITEV => {
            // DNS over TCP through writev: [2-byte length][message].
            let mut base: u64 = unsafe { rd(a[1] as *const u64) }.unwrap_or(0);
            let mut len: u64 = unsafe { rd((a[1] + 8) as *const u64) }.unwrap_or(0);
            if len == 2 && a[2] > 1 {
                base = unsafe { rd((a[1] + 16) as *const u64) }.unwrap_or(0);
                len = unsafe { rd((a[1] + 24) as *const u64) }.unwrap_or(0);
            }
            dns_record(&w, sysno, a[0], base, len, false, 0)
        }
        _ => Ok(()),
    }
}

/// Entry of recvfrom/recvmsg: on a DNS socket of a watched process, keep
/// the buffer for the exit.
pub fn try_dns_recv_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((tgid, _)) = watched_current() else {
        return Ok(());
    };
    // Every receive of a watched process passes here: read the fd alone
    // until the socket turns out to be a DNS one.
    let key = ((tgid as u64) << 32) | (arg(ctx, 0) & 0xffff_ffff);
    if unsafe { DNS_SOCKETS.get(&key) }.is_none() {
        return Ok(());
    }
    // The buffer, where the sender's address will be (0: none asked),
    // and the fd (a connected socket's peer is the sender).
    let fd = arg(ctx, 0);
    let saved = match syscall_nr(ctx) {
        nr::RECVFROM => [arg(ctx, 1), arg(ctx, 4), fd],
        nr::RECVMSG => {
            let msg = arg(ctx, 1);
            [msghdr_first_iov(msg).ok_or(1)?.0, msg_name(msg), fd]
        }
        _ => return Ok(()),
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = DNS_RECV.insert(&tid, &saved, 0);
    Ok(())
}

/// Exit of recvfrom/recvmsg: copy what was received into a DNS record
/// (userspace tells answers from queries by the header).
pub fn try_dns_recv_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((_, w)) = watched_current() else {
        return Ok(());
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some([buf, from, fd]) = (unsafe { DNS_RECV.get(&tid) }).copied() else {
        return Ok(());
    };
    let _ = DNS_RECV.remove(&tid);
    let ret = unsafe { core::ptr::read((ctx.as_ptr() as *const i64).add(2)) };
    if ret <= 0 {
        return Ok(());
    }
    let mut n = ret as u64;
    if n > agentwatch_common::DNS_ANSWER_LEN as u64 {
        n = agentwatch_common::DNS_ANSWER_LEN as u64;
    }
    let ev = event::start(RecordKind::Dns, &w, syscall_nr(ctx)).ok_or(1)?;
    event::user_bytes(ev, slot::PATH1, buf, n, agentwatch_common::SLOT_BYTES);
    // Who sent it: an answer counts only from the resolver asked.
    server_address(ev, from, fd);
    if let Some(pol) = enforce::policy(w.agent_id) {
        // Endpoints named by host: the process waits until userspace has
        // added this answer's addresses to the allow tries.
        if pol.enforce != 0 && pol.flags & flags::HOLD_DNS != 0 {
            enforce::signal(enforce::SIGSTOP);
            ev.hdr.verdict = verdict::UNDECIDED;
            ev.hdr.rule = rule::DNS_ANSWER;
            ev.hdr.action = agentwatch_common::policy::action::HOLD;
        }
    }
    event::submit(ev);
    Ok(())
}

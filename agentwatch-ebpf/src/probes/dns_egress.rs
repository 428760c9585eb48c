//! DNS queries an agent may not send: dropped as they leave. The syscall
//! tracepoints see a query only as it is sent (too late to stop it), so
//! the judgement is made on the packet: a cgroup egress hook on the
//! cgroup-v2 root finds the sending socket (tagged by the connect and
//! sendmsg hooks when an agent's socket talks to port 53), reads the
//! question's name and looks it up in the agent's allowed names. In
//! enforce mode, when the profile's DNS action is not `alert`, a name
//! outside the profile is dropped: the send fails with EPERM and nothing
//! leaves the host.
use agentwatch_common::policy::{action, class, decided, dns_hash, rule, verdict, DnsKey};
use aya_ebpf::{
    helpers::generated::{bpf_get_socket_cookie, bpf_loop},
    programs::{SkBuffContext, SockAddrContext},
};

use crate::{
    enforce::{self, Decision},
    maps::*,
};

/// The question's name, as read from the packet: the encoded name
/// (length-prefixed labels), made dotted in place. A per-CPU map value,
/// too big for the stack.
#[repr(C)]
pub struct DnsScan {
    buf: [u8; NAME_BYTES],
}

/// The scan over the name. bpf_loop hands its callback a pointer that
/// must be on the stack (the verifier refuses a map value), so the cursor
/// lives here and the callback looks the buffer up itself.
#[repr(C)]
struct Cursor {
    /// Bytes of the buffer read from the packet.
    len: u32,
    /// The forward pass's position and the next length byte's.
    i: u32,
    next: u32,
    /// Where the name ends (its terminating zero length), once found.
    end: u32,
    agent: u32,
    hash: u64,
    allowed: u32,
    bad: u32,
}

const NAME_BYTES: usize = 256;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;

/// Tags an agent's socket talking to port 53 (`port_be` in network
/// order), so the egress hook knows whose queries these are.
#[inline(always)]
pub fn tag(ctx: &SockAddrContext, agent: u32, port_be: u32) {
    if port_be as u16 != 53u16.to_be() {
        return;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let _ = DNS_COOKIES.insert(&cookie, &agent, 0);
}

/// cgroup/sendmsg4|6: an unconnected send to port 53 tags its socket
/// (its names are judged by the egress hook); a send anywhere else is
/// judged as a connect there and refused as one would be.
#[inline(always)]
pub fn try_sendmsg(ctx: &SockAddrContext, v6: bool) -> Option<i32> {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let w = watched(tgid)?;
    enforce::policy(w.agent_id)?;
    // SAFETY: the context the kernel passed to this program.
    let port = unsafe { (*ctx.sock_addr).user_port };
    if port as u16 == 53u16.to_be() {
        tag(ctx, w.agent_id, port);
        return Some(1);
    }
    enforce::try_connect(ctx, v6)
}

/// Where a packet's transport header starts, its IP protocol and its
/// destination port.
#[inline(always)]
fn transport(ctx: &SkBuffContext, v4: bool) -> Option<(usize, u8, u16)> {
    let (l4, ipproto) = if v4 {
        let b0: u8 = packet_read(ctx, 0)?;
        ((b0 & 0x0f) as usize * 4, packet_read::<u8>(ctx, 9)?)
    } else {
        (40, packet_read::<u8>(ctx, 6)?)
    };
    let dport: u16 = packet_read(ctx, l4 + 2)?;
    Some((l4, ipproto, u16::from_be(dport)))
}

/// The value `off` bytes into the packet (at most `WINDOW` bytes long).
/// Read in place (`__sk_buff` data to data_end) when the `WINDOW` bytes
/// from `off` lie in the packet's linear part, as a locally made packet's
/// headers do: no helper call, and this runs for every packet leaving the
/// host. Else through bpf_skb_load_bytes.
#[inline(always)]
fn packet_read<T: Copy>(ctx: &SkBuffContext, off: usize) -> Option<T> {
    // One bound for every field read: a one-byte bound is compiled as
    // `at < end`, which gives the verifier no readable range. Every field
    // read here has at least this many header bytes from its start.
    const WINDOW: usize = 4;
    const { assert!(core::mem::size_of::<T>() <= WINDOW) };
    // SAFETY: the context the kernel passed to this program.
    let (data, end) = unsafe {
        (
            (*ctx.skb.skb).data as usize,
            (*ctx.skb.skb).data_end as usize,
        )
    };
    let at = data + off;
    if at + WINDOW <= end {
        // SAFETY: inside data..end, checked above (the verifier checks it too).
        return Some(unsafe { core::ptr::read_unaligned(at as *const T) });
    }
    ctx.load(off).ok()
}

/// The egress hook: 1 lets the packet go, 0 drops it.
#[inline(always)]
pub fn try_egress(ctx: &SkBuffContext) -> Option<i32> {
    // SAFETY: the context the kernel passed to this program.
    let proto = u16::from_be(unsafe { (*ctx.skb.skb).protocol } as u16) as u32;
    let v4 = match proto {
        ETH_P_IP => true,
        ETH_P_IPV6 => false,
        _ => return Some(1),
    };
    let (l4, ipproto, dport) = transport(ctx, v4)?;
    if dport != 53 {
        return Some(1);
    }
    let msg = match ipproto {
        17 => l4 + 8,
        // DNS over TCP: a two-byte length before the message.
        6 => {
            let doff: u8 = packet_read(ctx, l4 + 12)?;
            l4 + (doff >> 4) as usize * 4 + 2
        }
        _ => return Some(1),
    };
    // A segment without a question (a handshake, an acknowledgement).
    if (ctx.len() as usize) < msg + 13 {
        return Some(1);
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let agent = unsafe { DNS_COOKIES.get(&cookie) }.copied()?;
    let pol = enforce::policy(agent)?;
    let d = Decision::new(verdict::VIOLATION, rule::DNS, class::DNS);
    if enforce::wanted(pol, &d) == action::ALERT {
        return Some(1);
    }
    let scan = DNS_SCAN.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, ours until the program returns.
    let buf = unsafe { &mut (*scan).buf };
    // Bytes to read: 1..=NAME_BYTES, in a form the verifier can bound
    // (ctx.len() >= msg + 13 was checked above, but it reads len again).
    let avail = (ctx.len() as usize)
        .saturating_sub(msg + 12)
        .min(NAME_BYTES);
    let n = ((avail.wrapping_sub(1)) & (NAME_BYTES - 1)) + 1;
    let read = unsafe {
        aya_ebpf::helpers::generated::bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            (msg + 12) as u32,
            buf.as_mut_ptr().cast(),
            n as u32,
        )
    };
    if read != 0 {
        return Some(1);
    }
    let mut s = Cursor {
        len: n as u32,
        i: 0,
        next: 0,
        end: 0,
        agent,
        hash: dns_hash::OFFSET,
        allowed: 0,
        bad: 0,
    };
    let cursor = (&mut s as *mut Cursor).cast::<core::ffi::c_void>();
    unsafe {
        bpf_loop(
            NAME_BYTES as u32,
            dotted_step as *mut core::ffi::c_void,
            cursor,
            0,
        );
    }
    if s.bad == 0 && s.end > 1 {
        s.i = s.end;
        unsafe {
            bpf_loop(
                NAME_BYTES as u32,
                hash_step as *mut core::ffi::c_void,
                cursor,
                0,
            );
        }
    }
    if s.allowed != 0 {
        return Some(1);
    }
    count(decided::acted(s.agent, class::DNS));
    Some(0)
}

/// This CPU's name buffer (the egress hook filled it before the loop).
#[inline(always)]
fn buffer() -> Option<&'static mut [u8; NAME_BYTES]> {
    let scan = DNS_SCAN.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, ours until the program returns.
    Some(unsafe { &mut (*scan).buf })
}

/// Forward: the length bytes after the first become dots; finds the end.
extern "C" fn dotted_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: bpf_loop passes back the stack cursor we gave it.
    let s = unsafe { &mut *(ctx as *mut Cursor) };
    let Some(buf) = buffer() else {
        s.bad = 1;
        return 1;
    };
    if s.i >= s.len {
        s.bad = 1;
        return 1;
    }
    let at = s.i as usize & (NAME_BYTES - 1);
    let b = buf[at];
    if s.i == s.next {
        if b == 0 {
            s.end = s.i;
            return 1;
        }
        if b > 63 {
            // A pointer or an oversized label: not a plain question.
            s.bad = 1;
            return 1;
        }
        if s.i > 0 {
            buf[at] = b'.';
        }
        s.next = s.i + b as u32 + 1;
    }
    s.i += 1;
    0
}

/// Backward over the dotted name (from `end` to 1): at each dot the hash
/// so far is the suffix's (`*.suffix` rules); at the start, the name's.
extern "C" fn hash_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: bpf_loop passes back the stack cursor we gave it.
    let s = unsafe { &mut *(ctx as *mut Cursor) };
    let Some(buf) = buffer() else {
        return 1;
    };
    let allowed = |s: &Cursor, suffix: u32| {
        let key = DnsKey {
            agent: s.agent,
            suffix,
            hash: s.hash,
        };
        unsafe { DNS_ALLOW.get(&key) }.is_some()
    };
    if s.i <= 1 {
        if allowed(s, 0) {
            s.allowed = 1;
        }
        return 1;
    }
    s.i -= 1;
    let b = buf[s.i as usize & (NAME_BYTES - 1)];
    if b == b'.' && allowed(s, 1) {
        s.allowed = 1;
        return 1;
    }
    s.hash = dns_hash::step(s.hash, b);
    0
}

//! Intent capture: the plain text an agent's processes write to and read
//! from TLS connections, from uprobes on OpenSSL's `SSL_write`,
//! `SSL_write_ex`, `SSL_read` and `SSL_read_ex` (libssl, or a binary that
//! embeds OpenSSL), before encryption and after decryption. Only for
//! watched processes whose agent has capture on (`INTENT`), and not for
//! connections userspace found are not to a model endpoint
//! (`TLS_IGNORED`). Userspace parses what it keeps (`agentwatch::intent`).
use agentwatch_common::{
    policy::{action, rule, verdict},
    tls, RecordKind, WatchEntry, SLOTS,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    programs::{ProbeContext, RetProbeContext},
};

use super::watched_current;
use crate::{enforce, event, maps::*};

/// The watched process's entry and its agent's capture level when the
/// agent captures intent and the connection `ssl` is not one userspace set
/// aside.
#[inline(always)]
fn capturing(ssl: u64) -> Option<(WatchEntry, u32)> {
    let (tgid, w) = watched_current()?;
    let level = INTENT.get(w.agent_id).copied().unwrap_or(0);
    if level == 0 {
        return None;
    }
    if unsafe { TLS_IGNORED.get(&[tgid as u64, ssl]) }.is_some() {
        return None;
    }
    Some((w, level))
}

/// One record: up to `tls::MAX_BYTES` of `buf[offset..n]`. `hold`: the
/// caller is stopped until userspace has read it (set on the call's last
/// record).
#[inline(always)]
fn send(
    w: &WatchEntry,
    ssl: u64,
    dir: u64,
    (buf, n, offset): (u64, u64, u64),
    hold: bool,
) -> Option<()> {
    let ev = event::start(RecordKind::Tls, w, 0)?;
    if hold {
        ev.hdr.verdict = verdict::UNDECIDED;
        ev.hdr.rule = rule::EXFILTRATE;
        ev.hdr.action = action::HOLD;
    }
    ev.args[0] = ssl;
    ev.args[1] = dir;
    ev.args[2] = n;
    ev.args[3] = offset;
    for i in 0..SLOTS {
        let at = offset + (i * tls::CHUNK) as u64;
        if at >= n {
            break;
        }
        let left = n - at;
        let len = if left > tls::CHUNK as u64 {
            tls::CHUNK as u64
        } else {
            left
        };
        event::user_bytes(ev, i, buf + at, len, agentwatch_common::SLOT_BYTES);
    }
    event::submit(ev);
    Some(())
}

/// `n` bytes at `buf`: the first `MAX_BYTES`, and the last when more;
/// the last record asks for the hold when `hold`.
#[inline(always)]
fn send_all(w: &WatchEntry, ssl: u64, dir: u64, (buf, n): (u64, u64), hold: bool) {
    if n == 0 || buf == 0 {
        return;
    }
    let max = tls::MAX_BYTES as u64;
    let _ = send(w, ssl, dir, (buf, n, 0), hold && n <= max);
    if n > max {
        let _ = send(w, ssl, dir, (buf, n, n - max), hold);
    }
}

/// Whether this write is held for userspace to read before it is sent: a
/// process that read a secret (tainted), of an agent enforced with
/// `content` capture. Its plain text may carry the secret to the model
/// through a connection opened before the read, which the connect hook
/// can no longer refuse.
#[inline(always)]
fn hold_write(w: &WatchEntry, level: u32) -> bool {
    level == tls::LEVEL_CONTENT
        && w.flags & agentwatch_common::policy::watch::TAINTED != 0
        && enforce::policy(w.agent_id).is_some_and(|p| p.enforce != 0)
}

/// SSL_write(ssl, buf, num) and SSL_write_ex(ssl, buf, num, written):
/// the plain text about to be encrypted.
pub fn try_ssl_write(ctx: &ProbeContext) -> Result<(), i64> {
    let ssl: u64 = ctx.arg(0).ok_or(1)?;
    let buf: u64 = ctx.arg(1).ok_or(1)?;
    let num: u64 = ctx.arg(2).ok_or(1)?;
    let (w, level) = capturing(ssl).ok_or(0)?;
    // `num` is an int for SSL_write, a size_t for SSL_write_ex.
    let n = num & 0xffff_ffff;
    let hold = hold_write(&w, level);
    send_all(&w, ssl, tls::WRITE, (buf, n), hold);
    if hold {
        // Delivered on the way back to user space: before SSL_write runs.
        enforce::signal(enforce::SIGSTOP);
    }
    Ok(())
}

/// SSL_read(ssl, buf, num) / SSL_read_ex(ssl, buf, num, readbytes): the
/// buffer, kept for the return.
pub fn try_ssl_read(ctx: &ProbeContext, ex: bool) -> Result<(), i64> {
    let ssl: u64 = ctx.arg(0).ok_or(1)?;
    let buf: u64 = ctx.arg(1).ok_or(1)?;
    let count: u64 = if ex { ctx.arg(3).ok_or(1)? } else { 0 };
    capturing(ssl).ok_or(0)?;
    let _ = TLS_READS.insert(&bpf_get_current_pid_tgid(), &[ssl, buf, count], 0);
    Ok(())
}

/// The return of either read: the bytes it delivered.
pub fn try_ssl_read_ret(ctx: &RetProbeContext) -> Result<(), i64> {
    let key = bpf_get_current_pid_tgid();
    let [ssl, buf, count] = unsafe { TLS_READS.get(&key) }.copied().ok_or(0)?;
    let _ = TLS_READS.remove(&key);
    // Both return an int: the register's upper half is not part of it
    // (-1 arrives as 0xffffffff).
    let ret = ctx.ret::<u64>() as u32 as i32;
    let n = if count != 0 {
        // SSL_read_ex: 1 on success, the count written through `count`.
        if ret != 1 {
            return Ok(());
        }
        unsafe { bpf_probe_read_user(count as *const u64) }.map_err(|_| 1i64)?
    } else if ret > 0 {
        ret as u64
    } else {
        return Ok(());
    };
    let (_, w) = watched_current().ok_or(0)?;
    let _ = send(&w, ssl, tls::READ, (buf, n, 0), false);
    Ok(())
}

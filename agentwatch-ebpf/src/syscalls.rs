//! File and network syscalls, from the classic per-syscall tracepoints
//! (`syscalls:sys_enter_*` / `sys_exit_*`). One entry program and one exit
//! program are attached to every watched call and switch on `__syscall_nr`.
//!
//! Record layout of these tracepoints (checked against tracefs by the
//! loader before attaching): `__syscall_nr` at 8, arguments at 16 + 8*i,
//! and on exit the return value at 16.
use agentwatch_common::{
    slot, syscalls as nr, InodeKey, RawEvent, RecordKind, WatchEntry, SOCKADDR_LEN,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_task},
    programs::TracePointContext,
    EbpfContext,
};

use crate::{
    enforce::{self, Decision},
    event,
    maps::*,
    shim::*,
};
use agentwatch_common::open::{open_access, open_listing, CREAT_FLAGS, O_CREAT};
use agentwatch_common::policy::{
    accept, access, action, class, decided, epoch, flags, rule, verdict, AgentPolicy, Deferred,
    OpenedKey, OpenedStamp, DIR_BIND, DIR_CONNECT,
};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
pub(crate) const DNS_PORT_BE: u16 = 53u16.to_be();

#[inline(always)]
pub(crate) fn watched_current() -> Option<(u32, WatchEntry)> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    unsafe { WATCHED.get(&tgid) }.map(|w| (tgid, *w))
}

#[inline(always)]
fn task() -> Ptr {
    unsafe { bpf_get_current_task() as Ptr }
}

#[inline(always)]
pub(crate) fn read_args(ctx: &TracePointContext) -> [u64; 6] {
    let mut a = [0u64; 6];
    for (i, v) in a.iter_mut().enumerate() {
        *v = arg(ctx, i);
    }
    a
}

/// Argument `i` of the syscall. The first is loaded directly; the others
/// go through a helper: one program serves every call, and a direct load
/// past the smallest record (unlink's, one argument) makes the kernel
/// refuse to attach it there.
#[inline(always)]
pub(crate) fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    if i == 0 {
        unsafe { core::ptr::read((ctx.as_ptr() as *const u64).add(2)) }
    } else {
        unsafe { ctx.read_at::<u64>(16 + 8 * i) }.unwrap_or(0)
    }
}

#[inline(always)]
pub(crate) fn syscall_nr(ctx: &TracePointContext) -> u32 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(8) as *const i32) as u32 }
}

/// Copies the path argument into `slot` and, when it is relative, the
/// directory it is relative to (dirfd, or the cwd for AT_FDCWD) into `base`.
/// A path whose read failed is remembered in `retry` for the exit.
#[inline(always)]
pub(crate) fn path_arg(
    ev: &mut RawEvent,
    slot: usize,
    base: usize,
    dirfd: u64,
    user_path: u64,
    retry: &mut [u64; 2],
) {
    // The first byte comes from the copy just made. Unreadable now
    // (retried at exit): walk the base anyway, in case it turns out relative.
    let absolute = if event::user_str(ev, slot, user_path) {
        user_path != 0 && event::slot_first_byte(ev, slot) == b'/'
    } else {
        retry[slot & 1] = user_path;
        false
    };
    if absolute {
        return;
    }
    // Relative (or empty, for AT_EMPTY_PATH): resolve against dirfd or cwd.
    let dirfd = dirfd as i32;
    let dir = if dirfd == nr::AT_FDCWD {
        unsafe { aw_task_pwd(task()) }
    } else if dirfd >= 0 {
        let f = unsafe { aw_task_fd(task(), dirfd as u32) };
        if f.is_null() {
            return;
        }
        unsafe { aw_file_path(f) }
    } else {
        return;
    };
    event::walk_path(ev, base, dir);
}

/// Path of an open file descriptor (fchmod, fchown).
#[inline(always)]
pub(crate) fn fd_path(ev: &mut RawEvent, slot: usize, fd: u64) {
    let f = unsafe { aw_task_fd(task(), fd as u32) };
    if !f.is_null() {
        event::walk_path(ev, slot, unsafe { aw_file_path(f) });
    }
}

/// Copies a `struct sockaddr` from user memory into `ev.addr`.
#[inline(always)]
fn user_sockaddr(ev: &mut RawEvent, ptr: u64, len: u64) {
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

/// Writes the local (or peer) address of the socket behind `fd` into
/// `ev.addr` as a `struct sockaddr_*`, read from the kernel socket.
#[inline(always)]
fn kernel_sockaddr(ev: &mut RawEvent, fd: u64, peer: bool) {
    let f = unsafe { aw_task_fd(task(), fd as u32) };
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
fn sockaddr_port_be(ev: &RawEvent) -> Option<u16> {
    if ev.addr.len < 4 {
        return None;
    }
    let family = u16::from_ne_bytes([ev.addr.bytes[0], ev.addr.bytes[1]]);
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    Some(u16::from_ne_bytes([ev.addr.bytes[2], ev.addr.bytes[3]]))
}

/// Entry of a watched file or network call. Fails open: any read that
/// fails leaves a field empty; the record is still sent.
pub fn try_sys_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((tgid, w)) = watched_current() else {
        return Ok(());
    };
    let sysno = syscall_nr(ctx);
    let a = read_args(ctx);
    let ev = event::start(RecordKind::SysEnter, &w, sysno).ok_or(1)?;
    ev.args = a;
    let cwd = nr::AT_FDCWD as i64 as u64;
    let mut retry = [0u64; 2];
    let r = &mut retry;
    match sysno {
        nr::OPEN
        | nr::CREAT
        | nr::UNLINK
        | nr::RMDIR
        | nr::CHMOD
        | nr::CHOWN
        | nr::LCHOWN
        | nr::EXECVE => path_arg(ev, slot::PATH1, slot::BASE1, cwd, a[0], r),
        nr::OPENAT | nr::UNLINKAT | nr::FCHMODAT | nr::FCHMODAT2 | nr::FCHOWNAT | nr::EXECVEAT => {
            path_arg(ev, slot::PATH1, slot::BASE1, a[0], a[1], r)
        }
        nr::OPENAT2 => {
            path_arg(ev, slot::PATH1, slot::BASE1, a[0], a[1], r);
            // struct open_how begins with the u64 flags (uapi, stable).
            ev.args[5] =
                unsafe { aya_ebpf::helpers::bpf_probe_read_user(a[2] as *const u64) }.unwrap_or(0);
        }
        nr::RENAME | nr::LINK => {
            path_arg(ev, slot::PATH1, slot::BASE1, cwd, a[0], r);
            path_arg(ev, slot::PATH2, slot::BASE2, cwd, a[1], r);
        }
        nr::RENAMEAT | nr::RENAMEAT2 | nr::LINKAT => {
            path_arg(ev, slot::PATH1, slot::BASE1, a[0], a[1], r);
            path_arg(ev, slot::PATH2, slot::BASE2, a[2], a[3], r);
        }
        nr::FCHMOD | nr::FCHOWN => fd_path(ev, slot::BASE1, a[0]),
        nr::CONNECT | nr::BIND => {
            user_sockaddr(ev, a[1], a[2]);
            if sysno == nr::CONNECT {
                let key = ((tgid as u64) << 32) | (a[0] & 0xffff_ffff);
                if sockaddr_port_be(ev) == Some(DNS_PORT_BE) {
                    let _ = DNS_SOCKETS.insert(&key, &1, 0);
                } else {
                    let _ = DNS_SOCKETS.remove(&key);
                }
            }
        }
        nr::LISTEN => kernel_sockaddr(ev, a[0], false),
        _ => {}
    }
    if retry != [0, 0] {
        let tid = bpf_get_current_pid_tgid() as u32;
        let _ = RETRY_PATHS.insert(&tid, &retry, 0);
    }
    if let Some(pol) = enforce::policy(w.agent_id) {
        if !decide_enter(pol, w.agent_id, ev, sysno) {
            // Decided allowed in the kernel: neither entry nor exit crosses.
            // An open to record (a new name in a territory, a workspace
            // secret read) is sent from its exit, with the file it reached.
            let tid = bpf_get_current_pid_tgid() as u32;
            let record = match ev.hdr.rule {
                rule::TERRITORY => RECORD_TERRITORY,
                rule::TAINT => RECORD_TAINT,
                _ => 0,
            };
            let flags = open_flags(sysno, &ev.args) & OPEN_FLAGS_MASK;
            let v = sysno as u64 | (flags | record) << 32;
            let _ = SKIP_EXIT.insert(&tid, &v, 0);
            return Ok(());
        }
    }
    event::submit(ev);
    Ok(())
}

/// Bits of a SKIP_EXIT value's high word above the open flags (which use
/// bits 0..23): the allowed open is to be recorded at its exit.
const RECORD_TERRITORY: u64 = 1 << 30;
const RECORD_TAINT: u64 = 1 << 31;
const OPEN_FLAGS_MASK: u64 = (1 << 30) - 1;

/// Setuid and setgid bits of a mode.
const S_ISUID_ISGID: u64 = 0o6000;
/// A regular file's type bits (S_IFMT).
const S_IFREG: u64 = 0o100000;

/// The open flags of an open-type call, from the record's arguments
/// (openat2's were read from its `struct open_how` into `args[5]`; creat
/// is O_CREAT|O_WRONLY|O_TRUNC); 0 for other calls.
#[inline(always)]
fn open_flags(sysno: u32, args: &[u64; 6]) -> u64 {
    match sysno {
        nr::OPEN => args[1],
        nr::OPENAT => args[2],
        nr::OPENAT2 => args[5],
        nr::CREAT => CREAT_FLAGS,
        _ => 0,
    }
}

/// Judges a call's entry under the agent's policy, acts, and writes the
/// verdict into the record. Returns false when the call is allowed and its
/// records need not cross to userspace.
#[inline(always)]
fn decide_enter(pol: &AgentPolicy, agent: u32, ev: &mut RawEvent, sysno: u32) -> bool {
    enforce::stop_if_paused(agent);
    let paths = pol.flags & flags::PATHS != 0;
    let path = |ev: &RawEvent, p: usize, b: usize, needs: bool, acc: u64, cls: usize| {
        let payload = if paths {
            enforce::resolve(pol, ev, p, b, needs)
        } else {
            None
        };
        enforce::judge_path(agent, payload, acc, cls)
    };
    let (p1, b1, p2, b2) = (slot::PATH1, slot::BASE1, slot::PATH2, slot::BASE2);
    let privilege = Decision::new(verdict::VIOLATION, rule::GUARD_PRIVILEGE, class::FILE);
    // An open's payload and access, kept for a judgement at its exit.
    let mut opened: Option<(u64, u64)> = None;
    // Reads and listings change nothing: no rate budget counts them (a
    // grep over a tree is not a runaway loop).
    let mut read_only = false;
    let d = match sysno {
        // Setting setuid/setgid bits is a guardrail whatever the profile
        // says (the mode is the second argument, or the third after a
        // dirfd).
        nr::CHMOD | nr::FCHMOD if ev.args[1] & S_ISUID_ISGID != 0 => privilege,
        nr::FCHMODAT | nr::FCHMODAT2 if ev.args[2] & S_ISUID_ISGID != 0 => privilege,
        nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT => {
            let acc = open_access(open_flags(sysno, &ev.args));
            read_only = acc == access::READ;
            let payload = if paths {
                enforce::resolve(pol, ev, p1, b1, true)
            } else {
                None
            };
            if let Some(p) = payload {
                opened = Some((p, acc));
            }
            let d = enforce::judge_path(agent, payload, acc, class::FILE);
            // A listing (or a walk through a directory) shows names, never
            // contents: only guardrails judge it.
            if d.rule == rule::FILE && open_listing(open_flags(sysno, &ev.args)) {
                Decision::new(verdict::ALLOW, rule::NONE, class::FILE)
            } else {
                d
            }
        }
        nr::UNLINK | nr::UNLINKAT | nr::RMDIR => {
            path(ev, p1, b1, true, access::DELETE, class::DELETE)
        }
        nr::CHMOD | nr::CHOWN | nr::LCHOWN | nr::FCHMODAT | nr::FCHMODAT2 | nr::FCHOWNAT => {
            path(ev, p1, b1, true, access::CHMOD, class::FILE)
        }
        nr::FCHMOD | nr::FCHOWN => path(ev, p1, b1, false, access::CHMOD, class::FILE),
        // A hard link to a guardrail file is a second way in to it: the
        // source counts as read and written. Other links are left to the
        // profile's rules on what the agent then opens.
        nr::LINK | nr::LINKAT => {
            let from = path(ev, p1, b1, true, access::READ | access::WRITE, class::FILE);
            if from.verdict == verdict::VIOLATION
                && !agentwatch_common::policy::hard_rule(from.rule)
            {
                Decision::new(verdict::ALLOW, rule::NONE, class::FILE)
            } else {
                from
            }
        }
        nr::RENAME | nr::RENAMEAT | nr::RENAMEAT2 => {
            let from = path(ev, p1, b1, true, access::RENAME, class::FILE);
            if from.allowed() {
                path(ev, p2, b2, true, access::RENAME, class::FILE)
            } else {
                from
            }
        }
        nr::CONNECT | nr::BIND => {
            let dir = if sysno == nr::CONNECT {
                DIR_CONNECT
            } else {
                DIR_BIND
            };
            endpoint_decision(agent, ev, dir)
        }
        // Exec attempts are decided at sched_process_exec; accepted peers
        // and listens by userspace.
        _ => Decision::new(verdict::UNDECIDED, rule::SOCKET, class::NETWORK),
    };
    let decided_here = !matches!(
        sysno,
        nr::EXECVE | nr::EXECVEAT | nr::LISTEN | nr::ACCEPT | nr::ACCEPT4
    );
    // Every file call decided here passes an LSM hook (file_open,
    // path_mknod/unlink/rmdir/rename/chmod/chown) after this entry.
    let lsm = d.class != class::NETWORK;
    let d = if decided_here && !read_only {
        enforce::with_rate(pol, agent, d, d.class as usize, lsm)
    } else {
        d
    };
    if d.allowed() {
        count(decided::allowed(d.class as usize));
        ev.hdr.rule = d.rule;
        return false;
    }
    if !decided_here {
        return true;
    }
    // A file violation of the profile's rules (not a guardrail) is judged
    // at the exit: a call that failed changed nothing. Not when the LSM
    // tier is to refuse it: that refusal needs this entry's decision.
    let lsm_deny = lsm && pol.flags & flags::LSM != 0 && enforce::wanted(pol, &d) == action::DENY;
    let file_call = d.class == class::FILE || d.class == class::DELETE;
    if file_call && d.verdict == verdict::VIOLATION && d.rule == rule::FILE && !lsm_deny {
        let (payload, acc) = opened.unwrap_or((0, 0));
        let df = Deferred {
            payload,
            access: acc as u32,
            class: d.class as u8,
            rule: d.rule,
            _pad: [0; 2],
        };
        let tid = bpf_get_current_pid_tgid() as u32;
        let _ = DEFERRED.insert(&tid, &df, 0);
        return true;
    }
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    ev.hdr.action = enforce::act(pol, agent, &d, lsm);
    true
}

/// The exit of a call whose file violation was left to it: judged again
/// on what happened (nothing, if the call failed; an open's create only
/// when it made a regular file). Returns the decision for the exit record:
/// allowed when there is nothing (more) to act on, so userspace does not
/// judge it again.
#[inline(always)]
fn judge_deferred(
    pol: &AgentPolicy,
    w: &WatchEntry,
    sysno: u32,
    ret: i64,
    df: &Deferred,
) -> Option<Decision> {
    let allowed = Decision::new(verdict::ALLOW, rule::NONE, df.class as usize);
    if ret < 0 {
        return Some(allowed);
    }
    let d = if is_open(sysno) {
        // The real path first: a guardrail it reaches wins (and is acted
        // on and sent by judge_opened).
        let flags = if df.access as u64 & access::CREATE != 0 {
            O_CREAT
        } else {
            0
        };
        if judge_opened(pol, w, sysno, ret, flags, rule::NONE)? {
            return Some(allowed);
        }
        let mut acc = df.access as u64;
        let f = unsafe { aw_task_fd(task(), ret as u32) };
        if !f.is_null() && unsafe { aw_file_type(f) } as u64 != S_IFREG {
            acc &= !access::CREATE;
        }
        enforce::judge_path(w.agent_id, Some(df.payload), acc, df.class as usize)
    } else {
        Decision::new(verdict::VIOLATION, df.rule, df.class as usize)
    };
    Some(if d.allowed() { allowed } else { d })
}

/// The allow decision for the address in `ev.addr` (a sockaddr).
#[inline(always)]
fn endpoint_decision(agent: u32, ev: &RawEvent, dir: u8) -> Decision {
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

/// Return of a watched call: a small record with the result; accept adds
/// the peer's address, read from the new socket.
pub fn try_sys_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let sysno = syscall_nr(ctx);
    let ret = unsafe { core::ptr::read((ctx.as_ptr() as *const i64).add(2)) };
    // Any process's rename may move a file a cached clean open reached.
    // Bumped at exit, after the move: a verdict judged during the call
    // carries the old epoch and is dropped. A failed rename moved nothing.
    if ret == 0 && matches!(sysno, nr::RENAME | nr::RENAMEAT | nr::RENAMEAT2) {
        bump_epoch(epoch::PATHS);
    }
    let Some((_, w)) = watched_current() else {
        return Ok(());
    };
    if ret >= 0 && is_open(sysno) {
        note_written(w.agent_id, ret);
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let pol = enforce::policy(w.agent_id);
    if let Some(p) = pol {
        if let Some(v) = unsafe { SKIP_EXIT.get(&tid) }.copied() {
            let _ = SKIP_EXIT.remove(&tid);
            if v as u32 == sysno {
                if ret >= 0 && p.flags & flags::PATHS != 0 && is_open(sysno) {
                    let high = v >> 32;
                    let record = match high & !OPEN_FLAGS_MASK {
                        RECORD_TERRITORY => rule::TERRITORY,
                        RECORD_TAINT => rule::TAINT,
                        _ => rule::NONE,
                    };
                    judge_opened(p, &w, sysno, ret, high & OPEN_FLAGS_MASK, record).ok_or(1)?;
                }
                return Ok(());
            }
        }
    }
    let deferred = unsafe { DEFERRED.get(&tid) }.copied();
    if deferred.is_some() {
        let _ = DEFERRED.remove(&tid);
    }
    let late = match (pol, deferred) {
        (Some(p), Some(df)) => judge_deferred(p, &w, sysno, ret, &df),
        _ => None,
    };
    let ev = event::start(RecordKind::SysExit, &w, sysno).ok_or(1)?;
    ev.args[0] = ret as u64;
    if ret >= 0 && is_open(sysno) {
        // The kind of file opened: an O_CREAT open of a device creates
        // nothing (userspace reads the create access from this).
        let f = unsafe { aw_task_fd(task(), ret as u32) };
        if !f.is_null() {
            ev.args[1] = unsafe { aw_file_type(f) } as u64;
        }
    }
    if let (Some(p), Some(d)) = (pol, late) {
        ev.hdr.verdict = d.verdict;
        ev.hdr.rule = d.rule;
        if !d.allowed() {
            ev.hdr.action = enforce::act(p, w.agent_id, &d, false);
        }
    }
    // A call the LSM tier refused: the exit carries the decision (an exec's
    // entry record was sent before bprm_check_security judged it).
    if pol.is_some_and(|p| p.flags & flags::LSM != 0) {
        if let Some(d) = unsafe { DENY_NOW.get(&tid) }.copied() {
            let _ = DENY_NOW.remove(&tid);
            ev.hdr.verdict = verdict::VIOLATION;
            ev.hdr.rule = d.rule;
            ev.hdr.action = agentwatch_common::policy::action::DENY;
        }
    }
    if (sysno == nr::ACCEPT || sysno == nr::ACCEPT4) && ret >= 0 {
        kernel_sockaddr(ev, ret as u64, true);
    }
    // Paths unreadable at entry: the kernel has faulted them in by now.
    // Network calls take no path, so they skip the lookup.
    let takes_path = !matches!(
        sysno,
        nr::CONNECT | nr::BIND | nr::LISTEN | nr::ACCEPT | nr::ACCEPT4
    );
    if takes_path {
        retry_paths(ev);
    }
    event::submit(ev);
    Ok(())
}

#[inline(always)]
fn is_open(sysno: u32) -> bool {
    matches!(sysno, nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT)
}

/// Remembers the file behind a new fd when it was opened for writing: an
/// exec of it later is running what the agent wrote (`exec/written`).
#[inline(always)]
fn note_written(agent: u32, fd: i64) {
    let f = unsafe { aw_task_fd(task(), fd as u32) };
    if f.is_null() || unsafe { aw_file_writable(f) } == 0 {
        return;
    }
    let key = InodeKey {
        dev: unsafe { aw_file_dev(f) } as u64,
        ino: unsafe { aw_file_ino(f) },
    };
    let _ = WRITTEN.insert(&key, &(agent + 1), 0);
}

/// The file an open reached, judged by its real path (a dentry walk from
/// the new fd) against the guardrails: a symlink, `/proc/self/cwd` or a
/// bind mount that leads to a guardrail file is caught here even though
/// the path the process named was allowed. Only guardrails: the profile's
/// own rules name files as the agent names them (`/lib/...` for
/// `/usr/lib/...`), so judging real paths against them would flag
/// symlinked system paths. The open has happened; the action lands before
/// the process returns to user space (pause or kill; deny kills).
///
/// A clean verdict is cached (CLEAN_OPENS) by dentry and mount: the same
/// file opened again costs a lookup instead of a walk and a judgement.
///
/// `record` (TERRITORY, TAINT) asks for an allowed open to be sent, with
/// the file it reached, so userspace can record it.
#[inline(always)]
fn judge_opened(
    pol: &AgentPolicy,
    w: &WatchEntry,
    sysno: u32,
    fd: i64,
    open_flags: u64,
    record: u8,
) -> Option<bool> {
    let f = unsafe { aw_task_fd(task(), fd as u32) };
    if f.is_null() {
        return Some(false);
    }
    let path = unsafe { aw_file_path(f) };
    let acc = open_access(open_flags);
    let (key, stamp) = opened_stamp(path, w.agent_id, acc);
    if record == rule::NONE && unsafe { CLEAN_OPENS.get(&key) } == Some(&stamp) {
        return Some(false);
    }
    let ev = event::start(RecordKind::Opened, w, sysno)?;
    event::walk_path(ev, slot::BASE1, path);
    let payload = enforce::resolve(pol, ev, slot::PATH1, slot::BASE1, false);
    let mut d = enforce::judge_path(w.agent_id, payload, acc, class::FILE);
    // Another process's environment or memory: the file's own pid says
    // whose it is (a process's own /proc/self/environ is its own).
    let proc_guard =
        payload.is_some_and(|p| (p >> accept::GUARD_PROC_SHIFT) & acc & access::ALL != 0);
    if proc_guard {
        let owner = unsafe { aw_proc_file_pid(f) } as u32;
        let me = bpf_get_current_pid_tgid();
        if owner != (me >> 32) as u32 && owner != me as u32 {
            enforce::note_secret_read(w.agent_id);
            d = Decision::new(verdict::VIOLATION, rule::GUARD_SECRETS, class::FILE);
        }
    }
    ev.args[0] = fd as u64;
    ev.args[1] = open_flags;
    if d.verdict != verdict::VIOLATION || !agentwatch_common::policy::hard_rule(d.rule) {
        if !proc_guard {
            let _ = CLEAN_OPENS.insert(&key, &stamp, 0);
        }
        if record != rule::NONE {
            ev.hdr.verdict = verdict::ALLOW;
            ev.hdr.rule = record;
            event::submit(ev);
        }
        return Some(false);
    }
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    ev.hdr.action = enforce::act(pol, w.agent_id, &d, false);
    event::submit(ev);
    Some(true)
}

/// The CLEAN_OPENS key of an open file and the stamp its verdict is valid
/// under, read before the walk so that a rename during it invalidates it.
#[inline(always)]
fn opened_stamp(path: Ptr, agent: u32, acc: u64) -> (OpenedKey, OpenedStamp) {
    let dentry = unsafe { aw_path_dentry(path) };
    let key = OpenedKey {
        dentry: dentry as u64,
        mnt: unsafe { aw_path_mnt(path) } as u64,
        agent,
        access: acc as u32,
    };
    let stamp = OpenedStamp {
        paths_epoch: epoch_value(epoch::PATHS),
        policy_epoch: epoch_value(epoch::POLICY),
        parent: unsafe { aw_dentry_parent(dentry) } as u64,
        inode: unsafe { aw_dentry_inode(dentry) } as u64,
        name_hash_len: unsafe { aw_dentry_hash_len(dentry) },
    };
    (key, stamp)
}

/// Exit of a call that changes the mount tree, by any process.
pub fn try_mount_changed() -> Result<(), i64> {
    bump_epoch(epoch::PATHS);
    Ok(())
}

/// Re-reads into the exit record the paths its entry could not read.
#[inline(always)]
fn retry_paths(ev: &mut RawEvent) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(retry) = (unsafe { RETRY_PATHS.get(&tid) }).copied() else {
        return;
    };
    let _ = RETRY_PATHS.remove(&tid);
    for (slot, ptr) in [(slot::PATH1, retry[0]), (slot::PATH2, retry[1])] {
        if ptr != 0 && !event::user_str(ev, slot, ptr) {
            count_loss(agentwatch_common::loss::READ_FAILED);
        }
    }
}

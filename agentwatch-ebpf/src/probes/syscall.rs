//! The watched file, network and exec calls, from the classic per-syscall
//! tracepoints (`syscalls:sys_enter_*` / `sys_exit_*`). One entry program
//! and one exit program are attached to every call in
//! `agentwatch_common::calls::CALLS`; they look the call's row up and hand
//! it to its family (`file`, `net`), then decide, act and send here.
use agentwatch_common::{
    calls::{self, Call, Entry, Family, Judge},
    open,
    policy::{
        action, class, decided, epoch, flags, landlock_rule, rule, verdict, watch, AgentPolicy,
        Deferred,
    },
    RawEvent, RecordKind, WatchEntry,
};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext};

use super::{
    file::{self, Judged, Retried},
    net, read_entry_args, syscall_nr, syscall_ret, watched_current,
};
use crate::{
    enforce::{self, Decision},
    event,
    maps::*,
    shim::*,
};

/// A PENDING_EXIT call. Low word: the syscall number, with `ALLOWED`
/// when its entry was decided allowed and not sent (nor is its exit),
/// `LEFT` when its entry was sent undecided (left to userspace, which
/// judges it after it ran). High word: an open's flags either way (the
/// exit judges the file it reached), with a `RECORD_*` bit above them for
/// an allowed open to be recorded at its exit.
pub(crate) const SYSNO_MASK: u64 = 0xffff;
pub(crate) const ALLOWED: u64 = 1 << 31;
const LEFT: u64 = 1 << 30;
/// The open flags' part of the high word (taken shifted down): every bit
/// below the `RECORD_*` bits (open flags stop at bit 23).
pub(crate) const OPEN_FLAGS_MASK: u64 = (1 << 29) - 1;
const RECORD_PINNED: u64 = 1 << (32 + 29);
const RECORD_TERRITORY: u64 = 1 << (32 + 30);
const RECORD_TAINT: u64 = 1 << (32 + 31);
const RECORD_MASK: u64 = RECORD_PINNED | RECORD_TERRITORY | RECORD_TAINT;
const _: () = assert!((OPEN_FLAGS_MASK << 32) & RECORD_MASK == 0);

/// Entry of a watched call other than an open or one making a name.
/// Fails open: any read that fails leaves a field empty; the record is
/// still sent.
pub fn try_sys_enter(ctx: &TracePointContext) -> Result<(), i64> {
    enter_of(ctx, Entry::Judged)
}

/// Entry of a call making a name (`Call::makes_name`). Fails open.
pub fn try_names_enter(ctx: &TracePointContext) -> Result<(), i64> {
    enter_of(ctx, Entry::Names)
}

/// Entry of `openat` or `openat2`. Fails open.
pub fn try_opens_enter(ctx: &TracePointContext) -> Result<(), i64> {
    enter_of(ctx, Entry::Opens)
}

/// Entry of `open` or `creat`. Fails open.
pub fn try_legacy_opens_enter(ctx: &TracePointContext) -> Result<(), i64> {
    enter_of(ctx, Entry::LegacyOpens)
}

/// `Entry::direct_args` of each entry program, evaluated at compile time
/// (a match on the constant `program` folds to one of them).
#[inline(always)]
const fn direct_args(program: Entry) -> usize {
    const JUDGED: usize = Entry::Judged.direct_args();
    const NAMES: usize = Entry::Names.direct_args();
    const OPENS: usize = Entry::Opens.direct_args();
    const LEGACY_OPENS: usize = Entry::LegacyOpens.direct_args();
    match program {
        Entry::Judged => JUDGED,
        Entry::Names => NAMES,
        Entry::Opens => OPENS,
        Entry::LegacyOpens => LEGACY_OPENS,
    }
}

/// The entry of the calls whose `Call::entry` is `program`: each program
/// explores only its own rows.
#[inline(always)]
fn enter_of(ctx: &TracePointContext, program: Entry) -> Result<(), i64> {
    let Some((tgid, w)) = watched_current() else {
        return Ok(());
    };
    let sysno = syscall_nr(ctx);
    let Some(call) = calls::find(sysno).filter(|c| c.entry() == program) else {
        return Ok(());
    };
    let ev = event::begin(RecordKind::SysEnter, &w, sysno).ok_or(1)?;
    // `begin` zeroed the slots. openat's and openat2's four arguments are
    // all loaded directly: no helper call on the hottest entry.
    read_entry_args(ctx, direct_args(program), call.args.into(), &mut ev.args);
    let a = ev.args;
    match call.family {
        Family::Net => net::read_entry(ev, tgid, &call, &a),
        Family::File | Family::Exec => file::read_entry(ev, &call, &a),
    }
    if let Some(pol) = enforce::policy(w.agent_id) {
        if !decide_enter(pol, w.agent_id, ev, &call) {
            // Decided allowed in the kernel: neither entry nor exit crosses.
            // An open to record (a new name in a territory, a workspace
            // secret read, a pinned file read) is sent from its exit, with
            // the file it reached.
            let record = match ev.hdr.rule {
                rule::TERRITORY => RECORD_TERRITORY,
                rule::TAINT => RECORD_TAINT,
                rule::PINNED => RECORD_PINNED,
                _ => 0,
            };
            let flags = call.open_flags_of(&ev.args) & OPEN_FLAGS_MASK;
            pending_set(sysno as u64 | ALLOWED | flags << 32 | record, &w);
            return Ok(());
        }
    }
    let mut pending = sysno as u64;
    if ev.hdr.verdict == verdict::UNDECIDED {
        let flags = call.open_flags_of(&ev.args) & OPEN_FLAGS_MASK;
        pending |= LEFT | flags << 32;
    }
    pending_set(pending, &w);
    event::stamp(ev);
    event::submit(ev);
    Ok(())
}

/// Judges a call's entry under the agent's policy, acts, and writes the
/// verdict into the record. Returns false when the call is allowed and its
/// records need not cross to userspace.
#[inline(always)]
fn decide_enter(pol: &AgentPolicy, agent: u32, ev: &mut RawEvent, call: &Call) -> bool {
    enforce::stop_if_paused(agent);
    let Judged {
        d,
        opened,
        read_only,
    } = match call.family {
        Family::File => file::judge_entry(pol, agent, ev, call).unjudged_if_cut(ev),
        Family::Net => Judged::of(net::judge_entry(agent, ev, call)),
        // Exec attempts are decided at sched_process_exec.
        Family::Exec => Judged::of(Decision::new(
            verdict::UNDECIDED,
            rule::SOCKET,
            class::NETWORK,
        )),
    };
    let decided_here = call.judge != Judge::Later;
    // Every file call decided here passes an LSM hook (file_open,
    // path_mknod/unlink/rmdir/rename/chmod/chown) after this entry.
    let lsm = d.class != class::NETWORK;
    let d = if decided_here && !read_only {
        enforce::with_rate(pol, agent, d, d.class as usize, lsm)
    } else {
        d
    };
    if d.allowed() {
        count(decided::allowed(agent, d.class as usize));
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

/// Whether Landlock holds `call`'s class for the process (`WatchEntry`
/// flags `wflags`): a file call it refused is reported even when its entry
/// was allowed by name.
#[inline(always)]
fn landlock_held(wflags: u32, call: &Call) -> bool {
    let held = watch::landlock_of(call.class) | watch::SHIELDED;
    call.family == Family::File && wflags & held != 0
}

/// A file call allowed at entry by the names it gave, which Landlock
/// refused by the real hierarchy (a symlinked directory, a hard link to a
/// file outside the tree): its entry is read again, from the arguments
/// still in the task's saved user registers, and sent with the exit,
/// which carries the refusal. Userspace judges it by its real paths.
/// Reached by tail call from `try_sys_exit`, which checked the agent and
/// the refusal; the process's watch entry is the one the call's entry left
/// in PENDING_EXIT (no WATCHED lookup).
pub fn try_landlock_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(w) = pending_watch() else {
        return Ok(());
    };
    let sysno = syscall_nr(ctx);
    let ret = syscall_ret(ctx);
    let call = calls::find(sysno).ok_or(1)?;
    let a = syscall_args_now().ok_or(1)?;
    let enter = event::start(RecordKind::SysEnter, &w, sysno).ok_or(1)?;
    enter.args = a;
    file::read_entry(enter, &call, &a);
    // Read again just now: what the entry could not read is not retried.
    let _ = file::take_retry();
    event::submit(enter);
    let ev = event::start(RecordKind::SysExit, &w, sysno).ok_or(1)?;
    ev.args[0] = ret as u64;
    ev.hdr.verdict = verdict::VIOLATION;
    ev.hdr.rule = landlock_rule(call.class);
    ev.hdr.action = action::DENY_LANDLOCK;
    event::submit(ev);
    unsafe { JUMPS.tail_call(ctx, JUMP_LANDLOCK_KILL) };
    Ok(())
}

/// An open left to userspace (`LEFT`) that succeeded: the file it reached
/// is judged by its real path, as an allowed open's is at its exit, before
/// the exit is sent: a held caller's names are only a claim (a symlink in
/// an allowed directory may lead to a key), and the verdict lands before
/// userspace can release it. By guardrails only, unless the entry could
/// not read the names: then nothing judged them before the call, and the
/// real path is judged by the whole profile (`judge_opened`'s `late`).
/// Reached by tail call from `try_sys_exit`, which left the call in
/// PENDING_EXIT. Fails open: a lost record loses the judgement (and the
/// exit, which userspace then reports without its result).
pub fn try_opened_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let entered = pending_take_passed().ok_or(1)?;
    let w = entered.watch;
    let sysno = syscall_nr(ctx);
    let ret = syscall_ret(ctx);
    let pol = enforce::policy(w.agent_id).ok_or(1)?;
    let opened = unsafe { aw_current_fd(ret as u32) };
    let retry = file::take_retry();
    let flags = (entered.call >> 32) & OPEN_FLAGS_MASK;
    let late = retry.is_some();
    let _ = file::judge_opened(pol, &entered, sysno, opened, ret, flags, rule::NONE, late);
    let ev = exit_record(&w, sysno, ret, opened).ok_or(1)?;
    if file::reread_paths(ev, retry) == Retried::Unreadable {
        unjudged(ev, pol, w.agent_id, class::FILE);
    }
    event::submit(ev);
    Ok(())
}

/// The current syscall's six arguments, from the user registers saved at
/// entry, which the file calls leave as they were.
#[inline(always)]
pub(crate) fn syscall_args_now() -> Option<[u64; 6]> {
    let r = super::saved_regs()?;
    let [a0, a1, a2, a3, a4, a5] = super::regs::ARGS;
    Some([r[a0], r[a1], r[a2], r[a3], r[a4], r[a5]])
}

/// Return of a watched call: a small record with the result; accept adds
/// the peer's address, read from the new socket.
pub fn try_sys_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let sysno = syscall_nr(ctx);
    let ret = syscall_ret(ctx);
    let Some(call) = calls::find(sysno) else {
        return Ok(());
    };
    // Any process's rename may move a file a cached clean open reached.
    // Bumped at exit, after the move: a verdict judged during the call
    // carries the old epoch and is dropped. A failed rename moved nothing.
    if ret == 0 && call.judge == Judge::Both {
        bump_epoch(epoch::PATHS);
    }
    // Only a watched call's entry leaves it: a thread with nothing pending
    // was not watched when it entered. Taken whatever it is: a stale one
    // must not pass for this call's.
    let Some(entered) = pending_take().filter(|p| p.call & SYSNO_MASK == sysno as u64) else {
        return Ok(());
    };
    let w = entered.watch;
    // The file an open reached, read once for every use below.
    let opened = if ret >= 0 && call.is_open() {
        unsafe { aw_current_fd(ret as u32) }
    } else {
        core::ptr::null_mut()
    };
    let pol = enforce::policy(w.agent_id);
    // Allowed at entry, under a policy: nothing was sent.
    let pending = Some(entered.call)
        .filter(|v| pol.is_some() && v & ALLOWED != 0)
        .map(|v| v & !ALLOWED);
    // An allowed open kept its flags: whether it writes is known without
    // reading the file.
    let writable = pending
        .filter(|_| call.is_open())
        .map(|v| open::opened_for_write((v >> 32) & OPEN_FLAGS_MASK));
    file::note_written(w.agent_id, opened, writable);
    if let Some(p) = pol {
        if let Some(v) = pending {
            // Landlock refused what the names allowed: reported from a
            // program of its own (this one is at the verifier's limit).
            if landlock_held(w.flags, &call) && file::landlock_refused(w.flags, call.class, ret) {
                unsafe { JUMPS.tail_call(ctx, JUMP_LANDLOCK) };
            }
            if ret >= 0 && p.flags & flags::PATHS != 0 && call.is_open() {
                let record = match v & RECORD_MASK {
                    RECORD_TERRITORY => rule::TERRITORY,
                    RECORD_TAINT => rule::TAINT,
                    RECORD_PINNED => rule::PINNED,
                    _ => rule::NONE,
                };
                file::judge_opened(
                    p,
                    &entered,
                    sysno,
                    opened,
                    ret,
                    (v >> 32) & OPEN_FLAGS_MASK,
                    record,
                    false,
                )
                .ok_or(1)?;
            }
            return Ok(());
        }
    }
    // Past the allowed calls' return: their exit needs no thread id.
    let tid = bpf_get_current_pid_tgid() as u32;
    let deferred = unsafe { DEFERRED.get(&tid) }.copied();
    if deferred.is_some() {
        let _ = DEFERRED.remove(&tid);
    }
    // An open left to userspace that succeeded: the file it reached is
    // judged as an allowed open's is, before its exit is sent (so before
    // userspace can release its held caller), in a program of its own
    // (this one is at the verifier's limit). Without that program, the
    // exit is sent as any other.
    let judge_reached = ret >= 0 && call.is_open() && entered.call & LEFT != 0;
    if judge_reached && pol.is_some_and(|p| p.flags & flags::PATHS != 0) {
        entered.leave();
        unsafe { JUMPS.tail_call(ctx, JUMP_OPENED) };
        let _ = pending_take_passed();
    }
    let late = match (pol, deferred) {
        (Some(p), Some(df)) => file::judge_deferred(p, &entered, &call, ret, &df, opened),
        _ => None,
    };
    let ev = exit_record(&w, sysno, ret, opened).ok_or(1)?;
    if let (Some(p), Some(d)) = (pol, late) {
        ev.hdr.verdict = d.verdict;
        ev.hdr.rule = d.rule;
        if !d.allowed() {
            ev.hdr.action = enforce::act(p, w.agent_id, &d, false);
        }
    }
    // A call outside the profile (a deferred violation) or an exec (never
    // judged at entry: sched_process_exec judges execs that ran) that
    // failed as Landlock refuses: refused before the effect, the caller
    // goes on. Userspace drops one the profile's rules do not explain (a
    // binary without its execute bit).
    let landlock_cls = match (deferred, call.family) {
        (Some(df), _) => df.class as usize,
        (None, Family::Exec) => class::EXEC,
        _ => class::COUNT,
    };
    let refused = pol.is_some() && file::landlock_refused(w.flags, landlock_cls, ret);
    if refused {
        ev.hdr.verdict = verdict::VIOLATION;
        ev.hdr.rule = landlock_rule(landlock_cls);
        ev.hdr.action = action::DENY_LANDLOCK;
    }
    // A call the LSM tier refused: the exit carries the decision (an exec's
    // entry record was sent before bprm_check_security judged it).
    if pol.is_some_and(|p| p.flags & flags::LSM != 0) {
        if let Some(d) = unsafe { DENY_NOW.get(&tid) }.copied() {
            let _ = DENY_NOW.remove(&tid);
            ev.hdr.verdict = verdict::VIOLATION;
            ev.hdr.rule = d.rule;
            ev.hdr.action = action::DENY;
        }
    }
    match call.family {
        Family::Net => net::read_exit(ev, &call, ret),
        // Paths unreadable at entry: the kernel has faulted them in by now.
        // Still unreadable after a call that read it and succeeded (the
        // caller keeps unmapping the page): nothing can judge the call;
        // enforce mode kills the caller before it returns to user code. A
        // call that failed (a bad pointer: EFAULT) changed nothing.
        // A file call left to userspace whose paths came only from its
        // exit has nothing that stands for what it used: unjudged as well
        // (an exec is judged by what ran, at sched_process_exec).
        Family::File | Family::Exec => {
            let nothing_judged = match file::reread_paths(ev, file::take_retry()) {
                Retried::Nothing => false,
                Retried::AfterCall => call.family == Family::File && entered.call & LEFT != 0,
                Retried::Unreadable => true,
            };
            if nothing_judged && ret >= 0 && ev.hdr.verdict != verdict::VIOLATION {
                if let Some(p) = pol {
                    unjudged(ev, p, w.agent_id, call.class);
                }
            }
        }
    }
    event::submit(ev);
    // A class whose action is kill loses its tree too: decided in a
    // program of its own (this one is at older verifiers' limit).
    if refused {
        unsafe { JUMPS.tail_call(ctx, JUMP_LANDLOCK_KILL) };
    }
    Ok(())
}

/// Starts a call's exit record: its result and, for an open, the kind of
/// file it reached (an O_CREAT open of a device creates nothing:
/// userspace reads the create access from this).
#[inline(always)]
fn exit_record(w: &WatchEntry, sysno: u32, ret: i64, opened: Ptr) -> Option<&'static mut RawEvent> {
    let ev = event::start(RecordKind::SysExit, w, sysno)?;
    ev.args[0] = ret as u64;
    if !opened.is_null() {
        ev.args[1] = unsafe { aw_file_type(opened) } as u64;
    }
    Some(ev)
}

/// A call that ran on names nothing judged (unreadable, or read only
/// after it ran): `rule::UNJUDGED`, acted on before it returns.
#[inline(always)]
fn unjudged(ev: &mut RawEvent, pol: &AgentPolicy, agent: u32, cls: usize) {
    let d = Decision::new(verdict::VIOLATION, rule::UNJUDGED, cls);
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    ev.hdr.action = enforce::act(pol, agent, &d, false);
}

/// Tail-called after a Landlock refusal (`try_sys_exit`,
/// `try_landlock_exit`): when the class's action is kill, the tree is
/// killed as the kernel kills it for any violation (the rest dies at its
/// next watched call). Only for EACCES: an EXDEV or the shield's errors
/// may be a plain cross-filesystem rename or a read-only filesystem, so
/// userspace judges those by their real paths and kills then. Fails open:
/// nothing else is done.
pub fn try_landlock_kill(ctx: &TracePointContext) -> Result<(), i64> {
    if syscall_ret(ctx) != -file::EACCES {
        return Ok(());
    }
    let Some(w) = pending_watch() else {
        return Ok(());
    };
    let call = calls::find(syscall_nr(ctx)).ok_or(1)?;
    let pol = enforce::policy(w.agent_id).ok_or(1)?;
    let d = Decision::new(verdict::VIOLATION, landlock_rule(call.class), call.class);
    if enforce::wanted(pol, &d) == action::KILL {
        enforce::act(pol, w.agent_id, &d, false);
    }
    Ok(())
}

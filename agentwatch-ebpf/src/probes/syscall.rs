//! The watched file, network and exec calls, from the classic per-syscall
//! tracepoints (`syscalls:sys_enter_*` / `sys_exit_*`). One entry program
//! and one exit program are attached to every call in
//! `agentwatch_common::calls::CALLS`; they look the call's row up and hand
//! it to its family (`file`, `net`), then decide, act and send here.
use agentwatch_common::{
    calls::{self, Call, Family, Judge},
    policy::{action, class, decided, epoch, flags, rule, verdict, AgentPolicy, Deferred},
    RawEvent, RecordKind,
};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext};

use super::{
    file::{self, Judged},
    net, read_args, syscall_nr, syscall_ret, task, watched_current,
};
use crate::{
    enforce::{self, Decision},
    event,
    maps::*,
    shim::*,
};

/// Bits of a SKIP_EXIT value's high word above the open flags (which use
/// bits 0..23): the allowed open is to be recorded at its exit.
const RECORD_TERRITORY: u64 = 1 << 30;
const RECORD_TAINT: u64 = 1 << 31;
const OPEN_FLAGS_MASK: u64 = (1 << 30) - 1;

/// Entry of a watched call. Fails open: any read that fails leaves a
/// field empty; the record is still sent.
pub fn try_sys_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((tgid, w)) = watched_current() else {
        return Ok(());
    };
    let sysno = syscall_nr(ctx);
    let Some(call) = calls::find(sysno) else {
        return Ok(());
    };
    let a = read_args(ctx);
    let ev = event::start(RecordKind::SysEnter, &w, sysno).ok_or(1)?;
    ev.args = a;
    match call.family {
        Family::Net => net::read_entry(ev, tgid, &call, &a),
        Family::File | Family::Exec => file::read_entry(ev, &call, &a),
    }
    if let Some(pol) = enforce::policy(w.agent_id) {
        if !decide_enter(pol, w.agent_id, ev, &call) {
            // Decided allowed in the kernel: neither entry nor exit crosses.
            // An open to record (a new name in a territory, a workspace
            // secret read) is sent from its exit, with the file it reached.
            let tid = bpf_get_current_pid_tgid() as u32;
            let record = match ev.hdr.rule {
                rule::TERRITORY => RECORD_TERRITORY,
                rule::TAINT => RECORD_TAINT,
                _ => 0,
            };
            let flags = call.open_flags_of(&ev.args) & OPEN_FLAGS_MASK;
            let v = sysno as u64 | (flags | record) << 32;
            let _ = SKIP_EXIT.insert(&tid, &v, 0);
            return Ok(());
        }
    }
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
    let Some((_, w)) = watched_current() else {
        return Ok(());
    };
    if ret >= 0 && call.is_open() {
        file::note_written(w.agent_id, ret);
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let pol = enforce::policy(w.agent_id);
    if let Some(p) = pol {
        if let Some(v) = unsafe { SKIP_EXIT.get(&tid) }.copied() {
            let _ = SKIP_EXIT.remove(&tid);
            if v as u32 == sysno {
                if ret >= 0 && p.flags & flags::PATHS != 0 && call.is_open() {
                    let high = v >> 32;
                    let record = match high & !OPEN_FLAGS_MASK {
                        RECORD_TERRITORY => rule::TERRITORY,
                        RECORD_TAINT => rule::TAINT,
                        _ => rule::NONE,
                    };
                    file::judge_opened(p, &w, sysno, ret, high & OPEN_FLAGS_MASK, record)
                        .ok_or(1)?;
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
        (Some(p), Some(df)) => file::judge_deferred(p, &w, &call, ret, &df),
        _ => None,
    };
    let ev = event::start(RecordKind::SysExit, &w, sysno).ok_or(1)?;
    ev.args[0] = ret as u64;
    if ret >= 0 && call.is_open() {
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
        Family::File | Family::Exec => {
            if file::retry_paths(ev) && ret >= 0 && ev.hdr.verdict != verdict::VIOLATION {
                if let Some(p) = pol {
                    let d = Decision::new(verdict::VIOLATION, rule::UNJUDGED, call.class);
                    ev.hdr.verdict = d.verdict;
                    ev.hdr.rule = d.rule;
                    ev.hdr.action = enforce::act(p, w.agent_id, &d, false);
                }
            }
        }
    }
    event::submit(ev);
    Ok(())
}

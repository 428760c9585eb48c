//! Process lifecycle: fork (inherit the agent), exec (selectors, path,
//! argv), exit (status; forget the process).
use agentwatch_common::{
    config, loss, slot, InodeKey, RecordKind, WatchEntry, SLOT_ARGV, SLOT_LEN,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::bpf_get_current_task,
    },
    programs::BtfTracePointContext,
};

use agentwatch_common::{
    policy::{access, class, exec_flags, flags, watch, AgentPolicy},
    RawEvent,
};

use crate::{enforce, event, maps::*, shim::*};

fn current_task() -> Ptr {
    unsafe { bpf_get_current_task() as Ptr }
}

/// sched_process_fork(parent, child): a child process of a watched one is
/// watched from its first instruction. Threads share the tgid: nothing to do.
pub fn try_fork(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(w) = watched(tgid) else {
        return Ok(());
    };
    let child: Ptr = ctx.arg(1);
    let child_tgid = unsafe { aw_task_tgid(child) };
    if child_tgid == tgid || child_tgid == 0 {
        return Ok(());
    }
    let mut w = w;
    // A child sharing its parent's file table: both are marked.
    let shared = unsafe { aw_task_files(child) == aw_task_files(current_task()) };
    if shared {
        w.flags |= watch::SHARES_FILES;
        if let Some(p) = WATCHED.get_ptr_mut(&tgid) {
            // SAFETY: a map value; concurrent writers only set bits.
            unsafe { (*p).flags |= watch::SHARES_FILES };
        }
    }
    gate_set(child_tgid);
    if WATCHED.insert(&child_tgid, &w, 0).is_err() {
        count_loss(loss::WATCH_MAP_FULL);
    }
    let ev = event::start(RecordKind::Fork, &w, 0).ok_or(1)?;
    ev.args[0] = child_tgid as u64;
    ev.args[1] = unsafe { aw_task_pid(child) } as u64;
    event::submit(ev);
    Ok(())
}

/// The agent an unwatched process joins at exec, if a selector matches.
fn selected(binary: Ptr) -> Option<WatchEntry> {
    if config(config::SELECTORS_ACTIVE) == 0 {
        return None;
    }
    let hit = |agent_id: u32| Some(WatchEntry { agent_id, flags: 0 });
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    if let Some(a) = unsafe { CGROUP_SELECTORS.get(&cgroup) } {
        return hit(*a);
    }
    let uid = bpf_get_current_uid_gid() as u32;
    if let Some(a) = unsafe { UID_SELECTORS.get(&uid) } {
        return hit(*a);
    }
    let key = InodeKey {
        dev: unsafe { aw_file_dev(binary) } as u64,
        ino: unsafe { aw_file_ino(binary) },
    };
    unsafe { EXE_SELECTORS.get(&key) }.and_then(|a| hit(*a))
}

/// sched_process_exec(p, old_pid, bprm): after a successful exec.
pub fn try_exec(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let bprm: Ptr = ctx.arg(2);
    let binary = unsafe { aw_bprm_file(bprm) };
    let (w, joined) = match watched(tgid) {
        Some(w) => (w, 0),
        None => {
            if tgid as u64 == config(config::SELF_TGID) {
                return Ok(());
            }
            let w = selected(binary).ok_or(0)?;
            gate_set(tgid);
            if WATCHED.insert(&tgid, &w, 0).is_err() {
                count_loss(loss::WATCH_MAP_FULL);
            }
            (w, exec_flags::SELECTED)
        }
    };
    let old_pid: i32 = ctx.arg(1);
    let task = current_task();
    let ev = event::start(RecordKind::Exec, &w, 0).ok_or(1)?;
    ev.args[0] = old_pid as u64;
    ev.args[1] = unsafe { aw_file_dev(binary) } as u64;
    ev.args[2] = unsafe { aw_file_ino(binary) };
    ev.args[4] = super::written::flags(w.agent_id, binary) | joined;
    if unsafe { aw_bprm_is_script(bprm) } != 0 {
        ev.args[4] |= exec_flags::SCRIPT;
    }
    ev.args[5] = super::written::stdin_type();
    exec_filename(ev, bprm, task);
    event::walk_path(ev, slot::BASE2, unsafe { aw_file_path(binary) });
    let start = unsafe { aw_task_arg_start(task) };
    let end = unsafe { aw_task_arg_end(task) };
    if end > start {
        event::user_bytes(ev, slot::PATH2, start, end - start, SLOT_ARGV);
        if end - start > SLOT_LEN as u64 {
            ev.args[3] = end - start; // full length, so userspace can say how much was cut
        }
    }
    if let Some(pol) = enforce::policy(w.agent_id) {
        decide_exec(pol, w.agent_id, ev);
    }
    event::submit(ev);
    Ok(())
}

/// The exec's filename as the caller gave it into PATH1, and the cwd into
/// BASE1 (a relative filename, and an interpreter's script argument, are
/// relative to it). Shared with the LSM tier's bprm_check_security, so both
/// judge the same path.
#[inline(always)]
pub fn exec_filename(ev: &mut RawEvent, bprm: Ptr, task: Ptr) {
    let filename = unsafe { aw_bprm_filename(bprm) };
    event::kernel_str(ev, slot::PATH1, filename);
    event::walk_path(ev, slot::BASE1, unsafe { aw_task_pwd(task) });
}

/// Judges an exec that has just replaced the image, before the new
/// program's first instruction: a signal sent here stops or kills it
/// before it runs. The record always crosses (the process tree needs it).
#[inline(always)]
fn decide_exec(pol: &AgentPolicy, agent: u32, ev: &mut RawEvent) {
    enforce::stop_if_paused(agent);
    let payload = if pol.flags & flags::PATHS != 0 {
        enforce::resolve(pol, ev, slot::PATH1, slot::BASE1, true)
    } else {
        None
    };
    let d = enforce::judge_path(agent, payload, access::EXEC, class::EXEC);
    let d = super::written::judge(payload, ev, d);
    let d = enforce::with_rate(pol, agent, d, class::EXEC, false);
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    if !d.allowed() {
        ev.hdr.action = enforce::act(pol, agent, &d, false);
    }
}

/// sched_process_exit(p): fires per thread; report when the last one goes.
pub fn try_exit(_ctx: &BtfTracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !gate_open(tgid) {
        return Ok(());
    }
    let task = current_task();
    let last = unsafe { aw_task_live_threads(task) } == 0;
    let Some(w) = (unsafe { WATCHED.get(&tgid) }).copied() else {
        // A bit left by a process no longer watched goes with it.
        if last {
            gate_clear(tgid);
        }
        return Ok(());
    };
    if enforce::policy(w.agent_id).is_some_and(|p| p.flags & flags::LSM != 0) {
        // A refused call whose exit never came (the thread was killed).
        let _ = DENY_NOW.remove(&(bpf_get_current_pid_tgid() as u32));
    }
    let _ = super::tamper::ia32_refused(&w, task);
    if !last {
        return Ok(());
    }
    let ev = event::start(RecordKind::Exit, &w, 0).ok_or(1)?;
    ev.args[0] = unsafe { aw_task_exit_code(task) } as u32 as u64;
    event::submit(ev);
    let _ = WATCHED.remove(&tgid);
    gate_clear(tgid);
    Ok(())
}

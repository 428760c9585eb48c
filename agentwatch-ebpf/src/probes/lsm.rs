//! The BPF LSM tier: refuses with EPERM, before the operation takes
//! effect, the file calls the syscall-entry program decided to deny
//! (DENY_NOW), and judges execs at bprm_check_security, before the old
//! image is replaced.
//!
//! Deciding at syscall entry and refusing here keeps one decision per call:
//! the alert userspace raises and the errno the process sees always agree.
use agentwatch_common::{
    policy::{access, action, class, decided, flags, verdict},
    slot, RecordKind,
};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::LsmContext};

use crate::{enforce, event, maps::*, shim::Ptr};

/// What an LSM program returns to refuse: -EPERM.
pub const EPERM: i32 = -1;

/// Refuses the current call if its entry was decided "deny".
#[inline(always)]
pub fn try_refuse() -> Result<i32, i32> {
    let tid = bpf_get_current_pid_tgid() as u32;
    if unsafe { DENY_NOW.get(&tid) }.is_some() {
        return Ok(EPERM);
    }
    Ok(0)
}

/// bprm_check_security(bprm): an exec the agent's profile denies fails
/// with EPERM and the caller keeps running. Other actions on execs (pause,
/// kill, alert) stay with sched_process_exec, which sees the same path.
#[inline(always)]
pub fn try_bprm_check(ctx: &LsmContext) -> Result<i32, i32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let w = crate::maps::watched(tgid).ok_or(0)?;
    let pol = enforce::policy(w.agent_id).ok_or(0)?;
    if pol.flags & flags::LSM == 0 || pol.flags & flags::PATHS == 0 {
        return Ok(0);
    }
    let bprm: Ptr = ctx.arg(0);
    // The scratch event only carries the path slots for the resolver; it
    // is not sent (the execve's own records report the attempt).
    let ev = event::start(RecordKind::Exec, &w, 0).ok_or(0)?;
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() } as Ptr;
    super::process::exec_filename(ev, bprm, task);
    let payload = enforce::resolve(pol, ev, slot::PATH1, slot::BASE1, true);
    let d = enforce::judge_path(w.agent_id, payload, access::EXEC, class::EXEC);
    if d.verdict != verdict::VIOLATION || enforce::wanted(pol, &d) != action::DENY {
        return Ok(0);
    }
    enforce::deny_now(&d);
    count(decided::acted(w.agent_id, class::EXEC));
    Ok(EPERM)
}

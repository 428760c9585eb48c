//! The BPF LSM tier: refuses with EPERM, before the operation takes
//! effect, the file calls the syscall-entry program decided to deny
//! (DENY_NOW), and judges execs at bprm_check_security, before the old
//! image is replaced.
//!
//! Deciding at syscall entry and refusing here keeps one decision per call:
//! the alert userspace raises and the errno the process sees always agree.
//! One exception: a call the entry allowed by the names it copied is
//! judged again here, by the kernel's own dentries, against the
//! guardrails (`try_recheck`; an open that writes, `try_open`). The names
//! are only a claim: a symlinked directory on the way leads elsewhere, and
//! the entry reads the caller's memory before the kernel does, so another
//! thread can rewrite them.
use agentwatch_common::{
    calls::{self, OpenFlags},
    open,
    policy::{access, action, class, decided, flags, hard_rule, rule, verdict},
    slot, RecordKind,
};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::LsmContext};

use super::syscall::{syscall_args_now, ALLOWED, OPEN_FLAGS_MASK, SYSNO_MASK};
use crate::{
    enforce::{self, Decision},
    event,
    maps::*,
    shim::*,
};

/// What an LSM program returns to refuse: -EPERM.
pub const EPERM: i32 = -1;

/// Whether the current thread's call was decided "deny" at its entry.
#[inline(always)]
fn denied_now() -> bool {
    let tid = bpf_get_current_pid_tgid() as u32;
    unsafe { DENY_NOW.get(&tid) }.is_some()
}

/// What a path hook is about to change: a dentry (a negative one for a
/// name being made) in a mount (`struct vfsmount *`).
#[derive(Clone, Copy)]
pub struct Target {
    pub dentry: Ptr,
    pub mnt: Ptr,
}

impl Target {
    /// The dentry `dentry` in the mount of `dir` (a `struct path *`).
    #[inline(always)]
    pub fn at(dir: Ptr, dentry: Ptr) -> Self {
        Self {
            dentry,
            mnt: if dir.is_null() {
                core::ptr::null_mut()
            } else {
                unsafe { aw_path_mnt(dir) }
            },
        }
    }

    /// What a `struct path *` names.
    #[inline(always)]
    pub fn of_path(path: Ptr) -> Self {
        let dentry = if path.is_null() {
            path
        } else {
            unsafe { aw_path_dentry(path) }
        };
        Self::at(path, dentry)
    }
}

/// The second name a rename or link changes, and the access it is judged
/// for (a link's new name is a creation; a rename's is a rename).
pub enum Second {
    None,
    Same(Target),
    Created(Target),
}

/// file_open(file): refuses an open its entry decided to deny; one it
/// allowed by the names it gave that writes or truncates is judged again
/// by the file the kernel reached (`try_recheck`), before the truncation
/// or any write: `: > gd/config` through a symlinked `.git`. A read's
/// real path is judged at its exit, before a byte of it is read. A
/// thread with nothing pending (every unwatched process) is let through
/// on its gate bit.
#[inline(always)]
pub fn try_open(file: Ptr) -> Result<i32, i32> {
    let (_, word, _) = pending_now().ok_or(0)?;
    if denied_now() {
        return Ok(EPERM);
    }
    let flags = (word >> 32) & OPEN_FLAGS_MASK;
    if word & ALLOWED == 0 || file.is_null() || !open::opened_for_write(flags) {
        return Ok(0);
    }
    let path = unsafe { aw_file_path(file) };
    recheck(Target::of_path(path), Second::None, access::WRITE)
}

/// A path hook: refuses a call its entry decided to deny;
/// else, for a call its entry allowed by the names it copied, judges what
/// the kernel reached (`first`, then `second`) by its real path against
/// the guardrails. A guardrail there is one the names did not lead the
/// entry to: the call is refused here, before the effect, unless the policy
/// only alerts; the guardrail's action is taken (a kill or a pause lands
/// on the return); a `Reached` record names the real paths and the call's
/// exit follows it. The profile's own rules are not judged again (they
/// name files as the agent names them, not as the kernel finds them).
/// Fails open: anything unreadable lets the call go, as its entry decided.
#[inline(always)]
pub fn try_recheck(first: Target, second: Second) -> Result<i32, i32> {
    // An open reaches a path hook only to create its file.
    recheck(first, second, access::CREATE)
}

/// `try_recheck`, an open judged for `open_access`.
#[inline(always)]
fn recheck(first: Target, second: Second, open_access: u64) -> Result<i32, i32> {
    let (slot_ptr, word, w) = pending_now().ok_or(0)?;
    if denied_now() {
        return Ok(EPERM);
    }
    if word & ALLOWED == 0 {
        return Ok(0);
    }
    let sysno = (word & SYSNO_MASK) as u32;
    let call = calls::find(sysno).ok_or(0)?;
    let pol = enforce::policy(w.agent_id).ok_or(0)?;
    if pol.flags & flags::LSM == 0 || pol.flags & flags::PATHS == 0 {
        return Ok(0);
    }
    let acc = if call.is_open() {
        open_access
    } else {
        call.access
    };
    let cls = call.class as usize;
    let ev = event::start(RecordKind::Reached, &w, sysno).ok_or(0)?;
    // The call's arguments (an open's flags, a mode, unlinkat's flags), as
    // its entry record would carry them; the paths come from the walks.
    if let Some(a) = syscall_args_now() {
        ev.args = a;
        if call.open_flags == OpenFlags::How2 {
            // openat2's flags, from its struct open_how, where the entry
            // puts them (`file::read_entry`).
            ev.args[5] =
                unsafe { aya_ebpf::helpers::bpf_probe_read_user(a[2] as *const u64) }.unwrap_or(0);
        }
    }
    // Both names walked, so the record names both.
    event::walk_dentry(ev, slot::BASE1, first.dentry, first.mnt);
    let second = match second {
        Second::None => None,
        Second::Same(t) => Some((t, acc)),
        Second::Created(t) => Some((t, access::CREATE)),
    };
    if let Some((t, _)) = second {
        event::walk_dentry(ev, slot::BASE2, t.dentry, t.mnt);
    }
    let judge = |ev: &agentwatch_common::RawEvent, path: usize, base: usize, acc: u64| {
        let payload = enforce::resolve(pol, ev, path, base, false);
        enforce::judge_path(w.agent_id, payload, acc, cls)
    };
    // A walk cut short (deeper than the walk goes, longer than a slot)
    // names no file a guardrail can be judged against: in enforce mode
    // the call does not run unjudged, as at the entry (`rule::UNJUDGED`).
    let unjudged = pol.enforce != 0 && super::file::cut_short(ev);
    let mut d = if unjudged {
        Decision::new(verdict::VIOLATION, rule::UNJUDGED, cls)
    } else {
        judge(ev, slot::PATH1, slot::BASE1, acc)
    };
    if let (false, false, Some((_, acc2))) = (unjudged, breached(&d), second) {
        d = judge(ev, slot::PATH2, slot::BASE2, acc2);
    }
    if !unjudged && !breached(&d) {
        return Ok(0);
    }
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    let done = enforce::act(pol, w.agent_id, &d, true);
    ev.hdr.action = done;
    event::submit(ev);
    // The entry was sent now: its exit is to be sent too.
    // SAFETY: the current task's own slot (non-null: `pending_now`).
    unsafe { (*slot_ptr).call = word & !ALLOWED };
    Ok(if done == action::ALERT { 0 } else { EPERM })
}

/// A guardrail (or a rule that holds like one) the reached path breaks.
#[inline(always)]
fn breached(d: &Decision) -> bool {
    d.verdict == verdict::VIOLATION && hard_rule(d.rule)
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

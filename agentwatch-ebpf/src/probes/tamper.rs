//! Tampering with agentwatch (signals aimed at it, a pidfd of it), the
//! escapes (`agentwatch_common::escape`: mounts, namespaces, file
//! handles, io_uring, ptrace, another process's memory, bpf, the kernel)
//! and setting file capabilities, by an agent with a policy.
use agentwatch_common::{escape, slot, syscalls as nr, RecordKind};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    programs::{BtfTracePointContext, TracePointContext},
};

use crate::{
    enforce::{self, Decision},
    event,
    probes::{
        file::{fd_path, path_arg},
        read_args, syscall_nr, watched_current,
    },
    shim::*,
};
use agentwatch_common::{
    policy::{class, rule, verdict, AgentPolicy},
    WatchEntry,
};

/// Does the user string at `name` say `security.capability` (file
/// capabilities, a guardrail like setuid bits)?
#[inline(always)]
fn sets_capability(name: u64) -> bool {
    const CAP: &[u8; 20] = b"security.capability\0";
    let mut buf = [0u8; 20];
    if unsafe { aw_read_user_max127(buf.as_mut_ptr(), 20, name as Ptr) } < 0 {
        return false;
    }
    buf == *CAP
}

/// Whether the calling process is in agentwatch's process group.
#[inline(always)]
fn in_agentwatch_group() -> bool {
    let group = crate::maps::config(agentwatch_common::config::SELF_PGID) as i32;
    group != 0 && unsafe { aw_task_pgid(super::task()) } == group
}

/// A call of a watched process whose agent has a policy.
struct Call {
    w: WatchEntry,
    pol: &'static AgentPolicy,
    sysno: u32,
    a: [u64; 6],
}

impl Call {
    #[inline(always)]
    fn of(ctx: &TracePointContext) -> Option<Call> {
        let (_, w) = watched_current()?;
        let pol = enforce::policy(w.agent_id)?;
        Some(Call {
            w,
            pol,
            sysno: syscall_nr(ctx),
            a: read_args(ctx),
        })
    }
}

/// Writes the violation of rule `r` into the record and acts on it as a
/// guardrail (hard rules take the guardrail action in every mode).
#[inline(always)]
fn violation(ev: &mut agentwatch_common::RawEvent, pol: &AgentPolicy, agent: u32, r: u8) {
    let d = Decision::new(verdict::VIOLATION, r, class::FILE);
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    ev.hdr.action = enforce::act(pol, agent, &d, false);
}

/// Entry of kill/tkill/tgkill/pidfd_open by a watched process with a
/// policy: a violation when aimed at agentwatch; of setxattr/lsetxattr/
/// fsetxattr: a violation when it sets file capabilities. (The escapes
/// are `try_escape`'s: one program for both made 6.1's verifier give up.)
pub fn try_tamper(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(Call { w, pol, sysno, a }) = Call::of(ctx) else {
        return Ok(());
    };
    let target = |v: u64| enforce::targets_agentwatch(v as i32 as i64);
    let xattr = matches!(sysno, nr::SETXATTR | nr::LSETXATTR | nr::FSETXATTR);
    let hit = match sysno {
        // kill(0): the caller's own process group, agentwatch's too when
        // the agent shares it.
        nr::KILL if a[0] as i32 == 0 => a[1] != 0 && in_agentwatch_group(),
        nr::KILL | nr::TKILL => a[1] != 0 && target(a[0]),
        nr::TGKILL => a[2] != 0 && target(a[0]),
        nr::PIDFD_OPEN => target(a[0]),
        _ if xattr => sets_capability(a[1]),
        _ => false,
    };
    if !hit {
        return Ok(());
    }
    reported_at_entry(sysno, &w);
    let ev = event::start(RecordKind::Tamper, &w, sysno).ok_or(1)?;
    ev.args = a;
    let r = if xattr {
        // The file whose capabilities are set, for the alert.
        if sysno == nr::FSETXATTR {
            fd_path(ev, slot::BASE1, a[0]);
        } else {
            // Read once: an alert's path, not a judgement to retry.
            let _ = path_arg(
                ev,
                slot::PATH1,
                slot::BASE1,
                nr::AT_FDCWD as i64 as u64,
                a[0],
            );
        }
        rule::GUARD_PRIVILEGE
    } else {
        rule::TAMPER
    };
    violation(ev, pol, w.agent_id, r);
    event::submit(ev);
    Ok(())
}

/// Entry of an escape (`escape::ESCAPES`, and clone3) by a watched
/// process with a policy: a violation (unshare, clone and clone3 only when
/// they ask for a new mount or user namespace), acted on as a guardrail.
/// Fails open (the call proceeds; the action is a signal to the caller).
pub fn try_escape(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(Call { w, pol, sysno, a }) = Call::of(ctx) else {
        return Ok(());
    };
    let r = if sysno == nr::CLONE3 {
        // Its flags are the first field of the struct it points at.
        let flags = unsafe { aya_ebpf::helpers::bpf_probe_read_user(a[0] as *const u64) };
        if flags.unwrap_or(0) & escape::NS_FLAGS == 0 {
            return Ok(());
        }
        rule::ESCAPE
    } else {
        match escape::find(sysno) {
            Some(e) if escape::escapes(&e, a[0], a[1], escape::Allowed::of_flags(pol.flags)) => {
                e.rule
            }
            _ => return Ok(()),
        }
    };
    reported_at_entry(sysno, &w);
    let ev = event::start(RecordKind::Tamper, &w, sysno).ok_or(1)?;
    ev.args = a;
    violation(ev, pol, w.agent_id, r);
    event::submit(ev);
    Ok(())
}

/// Marks the calling thread's call as reported at its entry, so its exit
/// (refused by the sandbox or not) is not reported again.
#[inline(always)]
fn reported_at_entry(sysno: u32, w: &WatchEntry) {
    crate::maps::pending_set(sysno as u64, w);
}

/// Exit of an escape or a signal by an agent started in agentwatch's
/// sandbox, refused with EPERM: the seccomp filter refused the escape
/// before its entry tracepoint ran, or Landlock's scoping refused a signal
/// aimed outside the agent (a thread of agentwatch, a pidfd of it), so
/// this is where it is seen. A record of the violation, already denied;
/// nothing else to do. A call its entry reported is not reported again.
/// Fails open (a record lost is an alert lost, the call was refused all
/// the same).
pub fn try_tamper_exit(ctx: &TracePointContext) -> Result<(), i64> {
    const EPERM: i64 = 1;
    let sysno = syscall_nr(ctx);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if crate::maps::pending_take_if(tgid, sysno as u64) {
        return Ok(());
    }
    if super::syscall_ret(ctx) != -EPERM {
        return Ok(());
    }
    let Some(w) = crate::maps::watched(tgid) else {
        return Ok(());
    };
    if w.flags & agentwatch_common::policy::watch::SANDBOXED == 0 {
        return Ok(());
    }
    let r = match sysno {
        nr::KILL | nr::TKILL | nr::TGKILL | nr::PIDFD_SEND_SIGNAL => rule::TAMPER,
        _ => match escape::find(sysno) {
            Some(e) if refused_as_escape(&e, &w) => e.rule,
            _ => return Ok(()),
        },
    };
    let ev = event::start(RecordKind::Tamper, &w, sysno).ok_or(1)?;
    ev.args = [0; 6];
    ev.args[5] = REFUSED_AT_LAUNCH;
    submit_refused(ev, r);
    Ok(())
}

/// Sends a record of a call the launch sandbox already refused: a
/// violation of `r`, denied, nothing left to act on.
#[inline(always)]
fn submit_refused(ev: &mut agentwatch_common::RawEvent, r: u8) {
    ev.hdr.verdict = verdict::VIOLATION;
    ev.hdr.rule = r;
    ev.hdr.action = agentwatch_common::policy::action::DENY;
    event::submit(ev);
}

/// Raw `sys_enter` (every call of every process): an ia32 call (`int 0x80`)
/// by an agent with a policy. No syscall tracepoint sees such a call, so
/// none of its paths or addresses is judged: an escape, acted on as a
/// guardrail. Fails open (the call proceeds; the action is a signal).
pub fn try_ia32_enter(ctx: &BtfTracePointContext) -> Result<(), i64> {
    // Every call of every process: the one load that tells an ia32 call
    // comes before anything else.
    if unsafe { aw_current_compat() } == 0 {
        return Ok(());
    }
    let Some((_, w)) = watched_current() else {
        return Ok(());
    };
    let Some(pol) = enforce::policy(w.agent_id) else {
        return Ok(());
    };
    let ia32_nr: i64 = ctx.arg(1);
    let ev = ia32_record(&w, ia32_nr as u64, escape::IA32).ok_or(1)?;
    violation(ev, pol, w.agent_id, rule::ESCAPE);
    event::submit(ev);
    Ok(())
}

/// Whether a call of `e` refused with EPERM was refused as an escape: a
/// call that is one only with some arguments (a namespace, a raw socket,
/// io_uring the profile does not allow) fails with EPERM for other reasons
/// too (no CAP_NET_RAW, io_uring disabled by sysctl); its arguments are
/// still in the registers its entry saved. Unreadable: taken as refused.
#[inline(always)]
fn refused_as_escape(e: &escape::Escape, w: &WatchEntry) -> bool {
    if e.when == escape::When::Always {
        return true;
    }
    let Some(r) = super::saved_regs() else {
        return true;
    };
    let [a0, a1, ..] = super::regs::ARGS;
    let allowed = enforce::policy(w.agent_id).map_or(escape::Allowed::default(), |p| {
        escape::Allowed::of_flags(p.flags)
    });
    escape::escapes(e, r[a0], r[a1], allowed)
}

/// At a watched thread's exit: a thread the sandbox's seccomp filter
/// killed (SIGSYS) in an ia32 call. The filter ran before any tracepoint,
/// so nothing else saw the call; it never ran. Fails open.
#[inline(always)]
pub fn ia32_refused(w: &WatchEntry, task: Ptr) -> Option<()> {
    const SIGSYS: i32 = 31;
    // The cheap test first: this runs at every watched thread's exit.
    if unsafe { aw_current_compat() } == 0 || unsafe { aw_task_exit_code(task) } & 0x7f != SIGSYS {
        return None;
    }
    enforce::policy(w.agent_id)?;
    let ia32_nr = super::saved_regs().map_or(u64::MAX, |r| r[super::regs::ORIG_AX]);
    let ev = ia32_record(w, ia32_nr, escape::IA32_REFUSED)?;
    submit_refused(ev, rule::ESCAPE);
    Some(())
}

/// A tamper record of an ia32 call (`escape::IA32`, `IA32_REFUSED`).
#[inline(always)]
fn ia32_record(
    w: &WatchEntry,
    ia32_nr: u64,
    how: u64,
) -> Option<&'static mut agentwatch_common::RawEvent> {
    let ev = event::start(RecordKind::Tamper, w, escape::IA32_SYSCALL_NR)?;
    ev.args = [0; 6];
    ev.args[4] = ia32_nr;
    ev.args[5] = how;
    Some(ev)
}

/// `args[5]` of a tamper record from the exit: the sandbox refused the call.
const REFUSED_AT_LAUNCH: u64 = agentwatch_common::escape::REFUSED;

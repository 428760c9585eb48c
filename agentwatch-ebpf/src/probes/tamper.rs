//! Tampering with agentwatch (signals and ptrace aimed at it, any bpf())
//! and setting file capabilities, by an agent with a policy.
use agentwatch_common::{slot, syscalls as nr, RecordKind};
use aya_ebpf::programs::TracePointContext;

use crate::{
    enforce::{self, Decision},
    event,
    probes::{
        file::{fd_path, path_arg},
        read_args, syscall_nr, watched_current,
    },
    shim::*,
};
use agentwatch_common::policy::{class, rule, verdict};

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

/// Entry of kill/tkill/tgkill/ptrace/bpf by a watched process with a
/// policy: a violation when aimed at agentwatch (any bpf() is); and of
/// setxattr/lsetxattr/fsetxattr: a violation when it sets file
/// capabilities.
pub fn try_tamper(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((_, w)) = watched_current() else {
        return Ok(());
    };
    let Some(pol) = enforce::policy(w.agent_id) else {
        return Ok(());
    };
    let sysno = syscall_nr(ctx);
    let a = read_args(ctx);
    let target = |v: u64| enforce::targets_agentwatch(v as i32 as i64);
    let xattr = matches!(sysno, nr::SETXATTR | nr::LSETXATTR | nr::FSETXATTR);
    let hit = match sysno {
        nr::KILL | nr::TKILL => a[1] != 0 && target(a[0]),
        nr::TGKILL => a[2] != 0 && target(a[0]),
        nr::PTRACE => target(a[1]),
        nr::BPF => true,
        _ if xattr => sets_capability(a[1]),
        _ => false,
    };
    if !hit {
        return Ok(());
    }
    let ev = event::start(RecordKind::Tamper, &w, sysno).ok_or(1)?;
    ev.args = a;
    let r = if xattr {
        // The file whose capabilities are set, for the alert.
        if sysno == nr::FSETXATTR {
            fd_path(ev, slot::BASE1, a[0]);
        } else {
            let mut retry = [0u64; 2];
            path_arg(
                ev,
                slot::PATH1,
                slot::BASE1,
                nr::AT_FDCWD as i64 as u64,
                a[0],
                &mut retry,
            );
        }
        rule::GUARD_PRIVILEGE
    } else {
        rule::TAMPER
    };
    let d = Decision::new(verdict::VIOLATION, r, class::FILE);
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    ev.hdr.action = enforce::act(pol, w.agent_id, &d, false);
    event::submit(ev);
    Ok(())
}

//! The seccomp filter of the launch sandbox: every call of
//! `agentwatch_common::escape::ESCAPES` refused with EPERM before it runs
//! (`unshare` and `clone` only when they ask for a new mount or user
//! namespace, `socket` only for a raw or packet socket), and `clone3` answered ENOSYS so the C library falls back to
//! `clone`, whose flags a filter can read.
use std::collections::BTreeMap;

use agentwatch_common::{
    escape::{self, Allowed, When, ESCAPES},
    syscalls as nr,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SandboxError;

/// The two programs, in the order they are installed; io_uring and raw
/// sockets are let through when the profile allows them.
pub fn filters(allowed: Allowed) -> Result<Vec<BpfProgram>, SandboxError> {
    let mut escapes = BTreeMap::new();
    for e in ESCAPES {
        let rules = match e.when {
            When::Uring if allowed.io_uring => continue,
            When::RawSocket if allowed.raw_sockets => continue,
            When::Always | When::Uring => Vec::new(),
            // Either flag: two rules, matched if either holds.
            When::NsFlags => [escape::CLONE_NEWNS, escape::CLONE_NEWUSER]
                .into_iter()
                .map(|flag| {
                    let c = SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(flag),
                        flag,
                    )?;
                    SeccompRule::new(vec![c])
                })
                .collect::<Result<_, _>>()
                .map_err(SandboxError::Seccomp)?,
            When::RawSocket => raw_socket_rules()?,
        };
        escapes.insert(i64::from(e.nr), rules);
    }
    let eperm = program(escapes, libc::EPERM)?;
    let clone3 = program(
        BTreeMap::from([(i64::from(nr::CLONE3), Vec::new())]),
        libc::ENOSYS,
    )?;
    Ok(vec![eperm, clone3])
}

/// `socket` making a raw or packet socket (`When::RawSocket`): any of
/// the three rules. Dword compares: the kernel reads the low 32 bits.
fn raw_socket_rules() -> Result<Vec<SeccompRule>, SandboxError> {
    let arg = |i: u8, op: SeccompCmpOp, v: u32| {
        SeccompCondition::new(i, SeccompCmpArgLen::Dword, op, u64::from(v))
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    let kind = |t: u32| {
        arg(
            1,
            SeccompCmpOp::MaskedEq(u64::from(escape::SOCK_TYPE_MASK)),
            t,
        )
    };
    [
        arg(0, SeccompCmpOp::Eq, escape::AF_PACKET),
        kind(escape::SOCK_RAW),
        kind(escape::SOCK_PACKET),
    ]
    .into_iter()
    .collect::<Result<_, _>>()
    .map_err(SandboxError::Seccomp)
}

fn program(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        TargetArch::x86_64,
    )
    .map_err(SandboxError::Seccomp)?;
    BpfProgram::try_from(filter).map_err(SandboxError::Seccomp)
}

/// Installs `prog` on the calling thread. Only a syscall: safe between
/// fork and exec.
///
/// # Safety
/// `prog` must outlive the call (the kernel copies it).
pub unsafe fn install(prog: &BpfProgram) -> std::io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    let r = libc::syscall(
        libc::SYS_seccomp,
        SECCOMP_SET_MODE_FILTER,
        0 as libc::c_ulong,
        &fprog as *const libc::sock_fprog,
    );
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

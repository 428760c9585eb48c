//! Landlock for the launch sandbox: this kernel's ABI, and the scoping
//! ruleset (ABI 6 and later) that keeps a launched agent from signalling
//! any process outside its own domain (agentwatch among them, whatever
//! the call: kill, tkill, tgkill, pidfd_send_signal, a process-group or
//! broadcast kill) and from connecting to abstract unix sockets created
//! outside it.
use std::os::fd::{AsRawFd, OwnedFd};

use landlock::{Access, Ruleset, RulesetAttr, Scope, ABI};

use super::SandboxError;

/// The Landlock ABI this kernel offers; None: no Landlock (not built, or
/// not in the `lsm=` list).
pub fn abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;
    // SAFETY: the version query reads no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as i32)
}

/// Scoping needs ABI 6.
pub const SCOPE_ABI: i32 = 6;

/// The scoping ruleset, as an fd to hand to the child; None when this
/// kernel's ABI has no scoping.
pub fn scope_ruleset(abi: Option<i32>) -> Result<Option<OwnedFd>, SandboxError> {
    if abi.is_none_or(|a| a < SCOPE_ABI) {
        return Ok(None);
    }
    let created = Ruleset::default()
        .scope(Scope::from_all(ABI::V6))
        .and_then(|r| r.create())
        .map_err(|e| SandboxError::Landlock(e.to_string()))?;
    Ok(created.into())
}

/// Restricts the calling thread (and what it execs) to `ruleset`. Only
/// syscalls: safe between fork and exec.
///
/// # Safety
/// Call in the child, after fork, before exec.
pub unsafe fn restrict_self(ruleset: &OwnedFd) -> std::io::Result<()> {
    let r = libc::syscall(
        libc::SYS_landlock_restrict_self,
        ruleset.as_raw_fd(),
        0 as libc::c_uint,
    );
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

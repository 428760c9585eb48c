//! Landlock for the launch sandbox: this kernel's ABI, and the ruleset:
//! the profile's file rules (`files.rs`), and scoping (ABI 6 and later)
//! that keeps a launched agent from signalling
//! any process outside its own domain (agentwatch among them, whatever
//! the call: kill, tkill, tgkill, pidfd_send_signal, a process-group or
//! broadcast kill) and from connecting to abstract unix sockets created
//! outside it.
use std::os::fd::{AsRawFd, OwnedFd};

use landlock::{Access, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI};

use super::{files::FileRules, SandboxError};

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

/// The launch ruleset, as an fd to hand to the child: the profile's file
/// rules (`files`) and, from ABI 6, scoping. None when there is neither.
pub fn ruleset(
    abi: Option<i32>,
    files: Option<&FileRules>,
) -> Result<Option<OwnedFd>, SandboxError> {
    let scoped = abi.is_some_and(|a| a >= SCOPE_ABI);
    if !scoped && files.is_none() {
        return Ok(None);
    }
    let err = |e: landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let mut r = Ruleset::default();
    if let Some(f) = files {
        r = r.handle_access(f.handled).map_err(err)?;
    }
    if scoped {
        r = r.scope(Scope::from_all(ABI::V6)).map_err(err)?;
    }
    let mut created = r.create().map_err(err)?;
    for (path, rights) in files.map(|f| f.rules.as_slice()).unwrap_or_default() {
        let fd = PathFd::new(path)
            .map_err(|e| SandboxError::Landlock(format!("cannot open {}: {e}", path.display())))?;
        created = created
            .add_rule(PathBeneath::new(fd, *rights))
            .map_err(err)?;
    }
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

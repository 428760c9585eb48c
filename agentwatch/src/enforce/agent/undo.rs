//! Effects a violation left behind that the kernel could only act on
//! after the call (no LSM hook refused it): taken back.
use tracing::{debug, warn};

use crate::event::{Detail, Event};

/// What a denied call the kernel could not refuse (no LSM tier: the
/// SIGKILL lands after the call) made or moved: taken back.
pub(super) fn undo_denied(ev: &Event) {
    match &ev.detail {
        Detail::Link { .. } => undo_link(ev),
        Detail::Make { .. } => undo_made(ev),
        Detail::Rename { .. } => undo_rename(ev),
        _ => {}
    }
}

/// A denied rename the kernel could not refuse (a payload moved onto
/// `.git/hooks/pre-commit`, a key moved out of `~/.ssh`) is moved back,
/// when it succeeded and nothing has taken its old name since (never
/// replacing: RENAME_NOREPLACE). A file it replaced at its new name is
/// gone; that is said, since it cannot be given back.
fn undo_rename(ev: &Event) {
    use nix::fcntl::{renameat2, RenameFlags};
    let Detail::Rename {
        from,
        to,
        result: Some(0),
        ..
    } = &ev.detail
    else {
        return;
    };
    // A rename sets the moved file's ctime: one older than the call is not
    // what it moved (the name the event holds was not the one the kernel
    // used), and stays where it is.
    let Ok(m) = std::fs::symlink_metadata(to) else {
        return;
    };
    if !changed_lately(&m) {
        warn!(path = %to, "not moving back a file the denied rename did not just move");
        return;
    }
    match renameat2(
        None,
        to.as_str(),
        None,
        from.as_str(),
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => warn!(
            from = %to,
            to = %from,
            "moved the denied rename back (a file it replaced, if any, is not restored)"
        ),
        Err(e) => warn!(from = %to, to = %from, error = %e, "cannot move the denied rename back"),
    }
}

/// A denied directory, symlink or node the call made: removed, when the
/// call succeeded (it made it) and it is still what the call makes (a
/// directory only while empty).
fn undo_made(ev: &Event) {
    let Detail::Make {
        path,
        syscall,
        result: Some(0),
    } = &ev.detail
    else {
        return;
    };
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return;
    };
    let removed = if m.is_dir() {
        std::fs::remove_dir(path)
    } else if m.file_type().is_symlink() || !m.is_file() {
        std::fs::remove_file(path)
    } else {
        return;
    };
    match removed {
        Ok(()) => warn!(path = %path, call = %syscall, "removed what the denied call made"),
        Err(e) => warn!(path = %path, error = %e, "cannot remove what the denied call made"),
    }
}

/// Whether `m`'s inode changed within the last minute (by its ctime).
fn changed_lately(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    now - m.ctime() < 60
}

/// A denied hard link the kernel could not refuse (no LSM tier: the
/// SIGKILL lands after the call) still made its second name; remove it,
/// but only while it is still the same file as the source.
fn undo_link(ev: &Event) {
    use std::os::unix::fs::MetadataExt as _;
    let Detail::Link { from, to, .. } = &ev.detail else {
        return;
    };
    let (Ok(a), Ok(b)) = (std::fs::metadata(from), std::fs::symlink_metadata(to)) else {
        return;
    };
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return;
    }
    match std::fs::remove_file(to) {
        Ok(()) => warn!(link = %to, target = %from, "removed the denied hard link"),
        Err(e) => warn!(link = %to, error = %e, "cannot remove the denied hard link"),
    }
}

/// Setuid/setgid bits or file capabilities the kernel could only catch
/// after the call (no LSM hook refused it) are taken off again: the
/// effect does not outlive the decision.
pub(super) fn undo_privilege(ev: &Event) {
    use std::os::unix::fs::PermissionsExt as _;
    match &ev.detail {
        Detail::Chmod { path, .. } => {
            let Ok(m) = std::fs::metadata(path) else {
                return;
            };
            let mode = m.permissions().mode();
            if mode & 0o6000 == 0 {
                return;
            }
            let safe = std::fs::Permissions::from_mode(mode & !0o6000 & 0o7777);
            match std::fs::set_permissions(path, safe) {
                Ok(()) => warn!(path = %path, "took off the setuid/setgid bits the agent set"),
                Err(e) => warn!(path = %path, error = %e, "cannot take off the setuid/setgid bits"),
            }
        }
        Detail::Tamper {
            path: Some(path), ..
        } => match nix::sys::stat::stat(path.as_str()).map(|_| remove_capability(path)) {
            Ok(Ok(())) => warn!(path = %path, "removed the file capabilities the agent set"),
            Ok(Err(e)) | Err(e) => {
                debug!(path = %path, error = %e, "no file capabilities to remove")
            }
        },
        _ => {}
    }
}

fn remove_capability(path: &str) -> Result<(), nix::Error> {
    let c = std::ffi::CString::new(path).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: both arguments are NUL-terminated strings we own.
    let r = unsafe { libc::removexattr(c.as_ptr(), c"security.capability".as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

//! The overlay of a profile that cannot be written: where `approve
//! --learn` puts what it learns when the profile file is on a read-only
//! mount (a Kubernetes ConfigMap) or otherwise not ours to write.
//!
//! An overlay is a profile document of its own (`<state dir>/overlays/
//! NAME.yaml`) holding only learned rules and their approvals. It is
//! applied on top of the configured profile whenever the daemon loads it
//! (start, reload) and by `profile show`; the configured profile itself is
//! never changed. To make the approvals permanent, merge them into the
//! profile's source and remove the overlay.
use std::path::{Path, PathBuf};

use super::{parse, Profile};

/// Where agent `agent`'s overlay lives under the state directory `base`.
pub fn path_for(base: &Path, agent: &str) -> PathBuf {
    base.join("overlays").join(format!("{agent}.yaml"))
}

/// The overlay at `path`, when there is one.
pub fn load(path: &Path) -> Result<Option<Profile>, parse::LintReport> {
    if !path.exists() {
        return Ok(None);
    }
    parse::load(path).map(Some)
}

/// Adds the overlay's rules and approvals to `profile` (those it already
/// has are not repeated). Actions and everything else stay the profile's.
pub fn apply(profile: &mut Profile, overlay: &Profile) {
    fn extend<T: PartialEq + Clone>(to: &mut Vec<T>, from: &[T]) {
        for x in from {
            if !to.contains(x) {
                to.push(x.clone());
            }
        }
    }
    extend(&mut profile.files, &overlay.files);
    extend(&mut profile.executables, &overlay.executables);
    extend(&mut profile.network, &overlay.network);
    extend(&mut profile.dns, &overlay.dns);
    extend(&mut profile.approvals, &overlay.approvals);
    super::pinned::union_models(&mut profile.models, &overlay.models);
    // The overlay's pin is a newer approval of the file.
    super::pinned::add_instructions(&mut profile.instructions, &overlay.instructions, false);
    profile.sort();
}

/// Whether a failed profile write means the file is not ours to write
/// (read-only mount, permissions, immutable), where an overlay stands in;
/// other failures (a full disk) are reported as they are.
pub fn stands_in_for(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Approval, DnsRule, FileRule};

    #[test]
    fn an_overlay_adds_its_rules_once_and_keeps_the_profiles_actions() {
        let mut base = Profile::empty("coder");
        base.dns.push(DnsRule {
            name: "github.com".into(),
            runs: 1,
        });
        let mut o = Profile::empty("coder");
        o.dns.push(DnsRule {
            name: "github.com".into(),
            runs: 1,
        });
        o.files.push(FileRule {
            path: "/etc/os-release".into(),
            access: crate::profile::AccessSet::of(&[crate::profile::Access::Read]),
            runs: 1,
        });
        o.approvals.push(Approval {
            id: "coder-1".into(),
            what: "read /etc/os-release".into(),
            by: "root".into(),
            at: "2026-11-27T10:00:00.000000Z".into(),
        });
        o.actions.per_class.insert(
            crate::profile::Class::File,
            crate::profile::ActionKind::Kill,
        );
        let actions = base.actions.clone();
        apply(&mut base, &o);
        assert_eq!(base.dns.len(), 1);
        assert_eq!(base.files.len(), 1);
        assert_eq!(base.approvals.len(), 1);
        assert_eq!(base.actions, actions);
        assert!(stands_in_for(&std::io::Error::from_raw_os_error(
            libc::EROFS
        )));
        assert!(!stands_in_for(&std::io::Error::from_raw_os_error(
            libc::ENOSPC
        )));
    }
}

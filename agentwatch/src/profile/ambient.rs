//! What every program reads without being asked to: the dynamic loader's
//! cache, the C library's name-service, time-zone and locale files, the
//! null and random devices. Allowed to every agent, like the parent
//! directories of its rules, and never written into a profile: listing
//! them would make each profile longer and no reviewer wiser, and a new
//! one (a program that first asks for the local time) is not a finding.
//!
//! Only reads (and writes to `/dev/null`): nothing here can be changed
//! through this list, and guardrails are judged before it.
use super::{Access, AccessSet};

/// Paths (globs, `**` for a subtree) and what is allowed on them.
pub const AMBIENT: &[(&str, &[Access])] = &[
    ("/etc/ld.so.cache", &[Access::Read]),
    ("/etc/ld.so.conf", &[Access::Read]),
    ("/etc/ld.so.conf.d/**", &[Access::Read]),
    ("/etc/localtime", &[Access::Read]),
    ("/etc/timezone", &[Access::Read]),
    ("/usr/share/zoneinfo/**", &[Access::Read]),
    ("/etc/nsswitch.conf", &[Access::Read]),
    ("/etc/passwd", &[Access::Read]),
    ("/etc/group", &[Access::Read]),
    ("/etc/hosts", &[Access::Read]),
    ("/etc/host.conf", &[Access::Read]),
    ("/etc/resolv.conf", &[Access::Read]),
    ("/etc/gai.conf", &[Access::Read]),
    ("/etc/locale.alias", &[Access::Read]),
    ("/etc/locale.conf", &[Access::Read]),
    ("/usr/lib/locale/**", &[Access::Read]),
    ("/usr/share/locale/**", &[Access::Read]),
    ("/etc/mime.types", &[Access::Read]),
    ("/proc/filesystems", &[Access::Read]),
    ("/proc/meminfo", &[Access::Read]),
    ("/proc/cpuinfo", &[Access::Read]),
    ("/proc/stat", &[Access::Read]),
    ("/sys/devices/system/cpu/**", &[Access::Read]),
    ("/dev/null", &[Access::Read, Access::Write]),
    ("/dev/zero", &[Access::Read]),
    ("/dev/urandom", &[Access::Read]),
    ("/dev/random", &[Access::Read]),
];

/// The ambient entries as (pattern, accesses).
pub fn entries() -> impl Iterator<Item = (&'static str, AccessSet)> {
    AMBIENT.iter().map(|(p, a)| (*p, AccessSet::of(a)))
}

/// Whether `access` on `path` (a normalised, absolute path) is ambient.
pub fn covers(path: &str, access: AccessSet) -> bool {
    entries().any(|(pat, allowed)| matches(pat, path) && access.minus(allowed).is_empty())
}

fn matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix("/**") {
        Some(dir) => path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
        None => pattern == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_and_libc_files_are_ambient_reads_and_nothing_more() {
        let read = AccessSet::of(&[Access::Read]);
        let write = AccessSet::of(&[Access::Write]);
        assert!(covers("/etc/localtime", read));
        assert!(covers("/usr/share/zoneinfo/Europe/Paris", read));
        assert!(covers("/dev/null", write));
        assert!(!covers("/etc/localtime", write));
        assert!(!covers("/etc/passwd", write));
        assert!(
            !covers("/usr/share/zoneinfo", read),
            "the tree, not its root"
        );
        assert!(!covers("/usr/share/zoneinfoX/a", read));
        assert!(!covers("/etc/shadow", read));
    }
}

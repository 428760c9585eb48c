//! Selectors: how an agent is recognised when agentwatch did not start it.
//! A selector is resolved to the key the kernel's exec hook looks up
//! (cgroup id, uid, or the binary's device and inode); processes already
//! running when the selector is installed are found in /proc.
use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    str::FromStr,
};

use agentwatch_common::InodeKey;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SelectorError {
    #[error("cgroup {path}: {reason}")]
    Cgroup { path: String, reason: String },
    #[error("no user named {0} (give a name from /etc/passwd or a numeric uid)")]
    UnknownUser(String),
    #[error("executable {path}: {reason}")]
    Exe { path: String, reason: String },
    #[error("no cgroup v2 hierarchy is mounted; cgroup selectors need one")]
    NoCgroup2,
    #[error("systemd unit {0} has no cgroup now (not running); it is watched once it starts")]
    UnitNotRunning(String),
}

/// A selector as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A cgroup-v2 directory: absolute, or relative to the cgroup2 mount.
    Cgroup(String),
    /// A user name or numeric uid.
    Uid(String),
    /// An executable path.
    Exe(PathBuf),
    /// A systemd unit: the cgroup it runs in (resolved again when the unit
    /// restarts into a new cgroup).
    SystemdUnit(String),
}

/// A selector resolved to what the kernel matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// cgroup id (inode of the cgroup2 directory).
    Cgroup(u64),
    Uid(u32),
    Exe(InodeKey),
}

impl FromStr for Selector {
    type Err = String;
    /// Parses `cgroup=PATH`, `uid=USER`, `exe=PATH` or `unit=NAME`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected cgroup=PATH, uid=USER or exe=PATH"))?;
        if v.is_empty() {
            return Err(format!("{s:?}: empty value"));
        }
        match k {
            "cgroup" => Ok(Selector::Cgroup(v.into())),
            "uid" | "user" => Ok(Selector::Uid(v.into())),
            "exe" => Ok(Selector::Exe(v.into())),
            "unit" => Ok(Selector::SystemdUnit(unit_name(v))),
            _ => Err(format!(
                "{s:?}: unknown selector {k:?}; use cgroup=, uid=, exe= or unit="
            )),
        }
    }
}

/// The kernel's encoding of a device number (MAJOR << 20 | MINOR), as in
/// `inode->i_sb->s_dev`, from the userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

impl std::fmt::Display for Selector {
    /// The form the user typed: `cgroup=PATH`, `uid=USER`, `exe=PATH`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Cgroup(p) => write!(f, "cgroup={p}"),
            Selector::Uid(u) => write!(f, "uid={u}"),
            Selector::Exe(p) => write!(f, "exe={}", p.display()),
            Selector::SystemdUnit(u) => write!(f, "unit={u}"),
        }
    }
}

impl Selector {
    pub fn resolve(&self, cgroup2: Option<&Path>) -> Result<Resolved, SelectorError> {
        match self {
            Selector::Cgroup(p) => {
                let root = cgroup2.ok_or(SelectorError::NoCgroup2)?;
                let full = if Path::new(p).starts_with(root) {
                    PathBuf::from(p)
                } else {
                    root.join(p.trim_start_matches('/'))
                };
                let md = fs::metadata(&full).map_err(|e| SelectorError::Cgroup {
                    path: full.display().to_string(),
                    reason: format!("{e} (create it, or name an existing cgroup v2 directory)"),
                })?;
                Ok(Resolved::Cgroup(md.ino()))
            }
            Selector::Uid(u) => {
                if let Ok(n) = u.parse::<u32>() {
                    return Ok(Resolved::Uid(n));
                }
                let user = nix::unistd::User::from_name(u)
                    .ok()
                    .flatten()
                    .ok_or_else(|| SelectorError::UnknownUser(u.clone()))?;
                Ok(Resolved::Uid(user.uid.as_raw()))
            }
            Selector::SystemdUnit(unit) => {
                let root = cgroup2.ok_or(SelectorError::NoCgroup2)?;
                let dir = unit_cgroup(root, unit)
                    .ok_or_else(|| SelectorError::UnitNotRunning(unit.clone()))?;
                let md =
                    fs::metadata(&dir).map_err(|_| SelectorError::UnitNotRunning(unit.clone()))?;
                Ok(Resolved::Cgroup(md.ino()))
            }
            Selector::Exe(p) => {
                let md = fs::metadata(p).map_err(|e| SelectorError::Exe {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                if !md.is_file() {
                    return Err(SelectorError::Exe {
                        path: p.display().to_string(),
                        reason: "not a regular file".into(),
                    });
                }
                Ok(Resolved::Exe(InodeKey {
                    dev: kernel_dev(md.dev()),
                    ino: md.ino(),
                }))
            }
        }
    }
}

impl Selector {
    /// The cgroup a cgroup or unit selector names, relative to the
    /// hierarchy's root (`system.slice/x.service`): where a daemon agent's
    /// resource budgets are held. None for other selectors, or a unit not
    /// running now.
    pub fn cgroup_path(&self, cgroup2: Option<&Path>) -> Option<String> {
        let root = cgroup2?;
        let full = match self {
            Selector::Cgroup(p) if Path::new(p).starts_with(root) => PathBuf::from(p),
            Selector::Cgroup(p) => root.join(p.trim_start_matches('/')),
            Selector::SystemdUnit(unit) => unit_cgroup(root, unit)?,
            _ => return None,
        };
        let rel = full.strip_prefix(root).ok()?;
        Some(rel.display().to_string())
    }
}

/// A unit name as systemctl reads it: without a type suffix, a service.
pub fn unit_name(u: &str) -> String {
    const TYPES: [&str; 3] = [".service", ".scope", ".slice"];
    if TYPES.iter().any(|t| u.ends_with(t)) {
        u.to_string()
    } else {
        format!("{u}.service")
    }
}

/// The cgroup directory systemd made for `unit`: system.slice/UNIT, or
/// the first directory of that name in the hierarchy (user and custom
/// slices), searched breadth first a few levels deep.
fn unit_cgroup(root: &Path, unit: &str) -> Option<PathBuf> {
    let direct = root.join("system.slice").join(unit);
    if direct.is_dir() {
        return Some(direct);
    }
    let mut level = vec![root.to_path_buf()];
    for _ in 0..5 {
        let mut next = Vec::new();
        for dir in &level {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if e.file_name() == unit {
                    return Some(e.path());
                }
                next.push(e.path());
            }
        }
        level = next;
    }
    None
}

/// Processes running now that match any of `selectors` (the kernel only
/// sees new execs). `cgroup2` is the hierarchy's mount point.
pub fn running_matches(selectors: &[Resolved], cgroup2: Option<&Path>) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| selectors.iter().any(|s| process_matches(*pid, s, cgroup2)))
        .collect()
}

fn process_matches(pid: u32, sel: &Resolved, cgroup2: Option<&Path>) -> bool {
    match sel {
        Resolved::Uid(uid) => real_uid(pid) == Some(*uid),
        Resolved::Exe(key) => fs::metadata(format!("/proc/{pid}/exe"))
            .is_ok_and(|m| kernel_dev(m.dev()) == key.dev && m.ino() == key.ino),
        Resolved::Cgroup(id) => {
            let Some(root) = cgroup2 else { return false };
            let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .and_then(|rel| fs::metadata(root.join(rel.trim_start_matches('/'))).ok())
                .is_some_and(|m| m.ino() == *id)
        }
    }
}

/// Real uid from /proc/PID/status (what bpf_get_current_uid_gid reports).
fn real_uid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selectors_and_rejects_unknown_kinds() {
        assert_eq!(
            "uid=1000".parse::<Selector>(),
            Ok(Selector::Uid("1000".into()))
        );
        assert_eq!(
            "cgroup=/agents/a".parse::<Selector>(),
            Ok(Selector::Cgroup("/agents/a".into()))
        );
        assert_eq!(
            "exe=/usr/bin/x".parse::<Selector>(),
            Ok(Selector::Exe("/usr/bin/x".into()))
        );
        assert_eq!(
            "unit=coder".parse::<Selector>(),
            Ok(Selector::SystemdUnit("coder.service".into()))
        );
        assert_eq!(unit_name("a.scope"), "a.scope");
        assert!("pod=x".parse::<Selector>().is_err());
        assert!("uid=".parse::<Selector>().is_err());
        assert!("uid".parse::<Selector>().is_err());
    }

    #[test]
    fn kernel_device_encoding() {
        // major 8, minor 1 (sda1): userspace 0x801, kernel 8 << 20 | 1.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        // minors above 255 split in the userspace encoding but not in the kernel's.
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }

    #[test]
    fn numeric_uid_and_root_name_resolve() {
        assert_eq!(
            Selector::Uid("42".into()).resolve(None).unwrap(),
            Resolved::Uid(42)
        );
        assert_eq!(
            Selector::Uid("root".into()).resolve(None).unwrap(),
            Resolved::Uid(0)
        );
        assert!(matches!(
            Selector::Uid("no-such-user-xyz".into()).resolve(None),
            Err(SelectorError::UnknownUser(_))
        ));
    }

    #[test]
    fn exe_resolves_to_the_inode_stat_reports() {
        let r = Selector::Exe("/bin/sh".into()).resolve(None).unwrap();
        let md = fs::metadata("/bin/sh").unwrap();
        assert_eq!(
            r,
            Resolved::Exe(InodeKey {
                dev: kernel_dev(md.dev()),
                ino: md.ino()
            })
        );
        assert!(Selector::Exe("/nonexistent/x".into())
            .resolve(None)
            .is_err());
    }
}

//! Landlock file rules compiled from the profile, for the agents
//! agentwatch starts. Landlock judges the real file hierarchy before the
//! effect, whatever the route (a symlinked directory, a hard link, a file
//! handle, io_uring), so what lies outside the profile's tree is refused
//! with EACCES (EXDEV for a link or rename across directories) instead of
//! being judged by its path string at a tracepoint.
//!
//! Landlock grants rights beneath a directory and cannot carve a hole in
//! a grant, so it is the outer wall: patterns become the literal directory
//! before their first wildcard, and guardrails inside a granted tree (a
//! workspace's `.env`, its `.git/hooks`) are still the eBPF judge's. It
//! holds only the classes whose action refuses (deny, kill) in enforce
//! mode: a class that pauses asks a person, and an approval cannot widen
//! a Landlock domain that is already in force.
use std::path::{Path, PathBuf};

use agentwatch_common::policy::{self as kp, AgentPolicy};
use landlock::{make_bitflags, Access as _, AccessFs, BitFlags, ABI};
use serde::Serialize;

use crate::profile::{anchors::Anchors, Access, AccessSet, Profile};

/// Landlock's REFER (links and renames across directories) came with ABI
/// 2; under ABI 1 every such call is refused, so files start there.
pub const FILES_ABI: i32 = 2;

/// The classes whose file calls Landlock holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    pub file: bool,
    pub delete: bool,
    pub exec: bool,
}

impl Held {
    /// The classes the agent's compiled policy refuses in enforce mode.
    pub fn of_policy(p: &AgentPolicy) -> Held {
        let refuses = |cls: usize| {
            p.enforce != 0 && matches!(p.actions[cls], kp::action::DENY | kp::action::KILL)
        };
        Held {
            file: refuses(kp::class::FILE),
            delete: refuses(kp::class::DELETE),
            exec: refuses(kp::class::EXEC),
        }
    }

    pub fn any(self) -> bool {
        self.file || self.delete || self.exec
    }

    /// The watch flags (`watch::LANDLOCK_*`) that tell the kernel which
    /// refusals are Landlock's.
    pub fn kernel_flags(self) -> u32 {
        let mut f = 0;
        for (held, cls) in [
            (self.file, kp::class::FILE),
            (self.delete, kp::class::DELETE),
            (self.exec, kp::class::EXEC),
        ] {
            if held {
                f |= kp::watch::landlock_of(cls);
            }
        }
        f
    }

    /// The classes `names` lists (as `names` gives them).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let has = |n: &str| names.iter().any(|x| x.as_ref() == n);
        Self {
            exec: has("exec"),
            file: has("file"),
            delete: has("delete"),
        }
    }

    /// The classes, by name.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.exec, "exec"),
            (self.file, "file"),
            (self.delete, "delete"),
        ]
        .into_iter()
        .filter_map(|(h, n)| h.then_some(n))
        .collect()
    }

    /// The rights the ruleset handles (refuses unless granted). Listing a
    /// directory is not handled: it shows names, never contents, and
    /// guardrails judge it.
    pub fn handled(self, abi: ABI) -> BitFlags<AccessFs> {
        let mut h = BitFlags::EMPTY;
        if self.file {
            h |= make_bitflags!(AccessFs::{ReadFile | WriteFile | Truncate | MakeReg | MakeDir
                | MakeSym | MakeFifo | MakeSock | MakeChar | MakeBlock | Refer});
        }
        if self.delete {
            h |= make_bitflags!(AccessFs::{RemoveFile | RemoveDir});
        }
        if self.exec {
            h |= AccessFs::Execute;
        }
        h & AccessFs::from_all(abi)
    }
}

/// One grant of the profile's tree: a path (a directory: all beneath it;
/// a file: itself) and the profile's accesses there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub path: String,
    pub access: AccessSet,
}

/// The profile's tree as grants, expanded with `anchors`: file rules,
/// territories, executables (and their `/usr` aliases) and what every
/// program reads. A pattern grants the literal directory before its first
/// wildcard; a literal file that may be created, deleted or renamed also
/// grants that on its directory (the call needs it there).
pub fn grants(profile: &Profile, anchors: &Anchors) -> Vec<Grant> {
    let mut out = Vec::new();
    let mut add = |pattern: &str, access: AccessSet| {
        let Some(expanded) = anchors.expand(pattern) else {
            return;
        };
        let (path, exact) = literal_prefix(&expanded);
        let names = AccessSet::of(&[Access::Create, Access::Delete, Access::Rename]);
        if exact && !access.intersection(names).is_empty() {
            if let Some(parent) = Path::new(&path).parent() {
                out.push(Grant {
                    path: parent.to_string_lossy().into_owned(),
                    access: access.intersection(names),
                });
            }
        }
        out.push(Grant { path, access });
    };
    for f in &profile.files {
        add(&f.path, f.access);
    }
    for t in &profile.territories {
        add(&t.pattern(), t.access.minus(AccessSet::of(&[Access::Exec])));
    }
    let run = AccessSet::of(&[Access::Exec, Access::Read]);
    for e in &profile.executables {
        add(&e.path, run);
        for alias in crate::paths::usr_aliases(&e.path) {
            add(&alias, run);
        }
    }
    for (pattern, access) in crate::profile::ambient::entries() {
        add(pattern, access);
    }
    out
}

/// The existing directories among `grants` where the agent may change
/// names or contents: where the guardrail shield looks (a granted file's
/// directory is granted too when the file may be made or moved).
pub fn writable_roots(grants: &[Grant]) -> Vec<PathBuf> {
    let changes = crate::profile::guardrails::mutating();
    grants
        .iter()
        .filter(|g| !g.access.intersection(changes).is_empty())
        .map(|g| PathBuf::from(&g.path))
        .filter(|p| p.is_dir())
        .collect()
}

/// The literal path before a pattern's first wildcard segment, and
/// whether that is the whole pattern.
fn literal_prefix(pattern: &str) -> (String, bool) {
    let mut lit = Vec::new();
    for seg in pattern.split('/') {
        if seg.contains('*') {
            let p = lit.join("/");
            return (if p.is_empty() { "/".into() } else { p }, false);
        }
        lit.push(seg);
    }
    (pattern.to_string(), true)
}

/// The Landlock rights a profile access needs.
fn rights(access: AccessSet) -> BitFlags<AccessFs> {
    let make = make_bitflags!(AccessFs::{MakeReg | MakeDir | MakeSym | MakeFifo | MakeSock});
    let remove = make_bitflags!(AccessFs::{RemoveFile | RemoveDir});
    let write = make_bitflags!(AccessFs::{WriteFile | Truncate});
    access
        .iter()
        .map(|a| match a {
            Access::Read => BitFlags::from(AccessFs::ReadFile),
            Access::Write => write,
            // Making a file is writing its content.
            Access::Create => make | write,
            Access::Delete => remove,
            Access::Rename => make | remove | AccessFs::Refer,
            // Landlock does not handle mode changes.
            Access::Chmod => BitFlags::EMPTY,
            Access::Exec => AccessFs::Execute | AccessFs::ReadFile,
        })
        .fold(BitFlags::EMPTY, |a, b| a | b)
}

/// The ruleset's rules: the grants resolved on this filesystem.
#[derive(Debug, Clone)]
pub struct FileRules {
    pub held: Held,
    pub handled: BitFlags<AccessFs>,
    pub rules: Vec<(PathBuf, BitFlags<AccessFs>)>,
    /// Grants for paths that do not exist yet, moved up to the nearest
    /// directory that does (the agent creates them there), or left out
    /// when that would be `/`.
    pub widened: Vec<String>,
}

/// Resolves `grants` for the `held` classes under `abi`. A path that does
/// not exist is granted at its nearest existing directory when the agent
/// may create there, and dropped otherwise (there is nothing to reach).
/// The dynamic loaders are granted too: the kernel opens a binary's
/// loader for exec, and no profile lists it.
pub fn resolve(grants: &[Grant], held: Held, abi: ABI) -> FileRules {
    let handled = held.handled(abi);
    let file_only = AccessFs::from_file(abi);
    let mut rules: Vec<(PathBuf, BitFlags<AccessFs>)> = Vec::new();
    let mut widened = Vec::new();
    let mut push = |path: PathBuf, r: BitFlags<AccessFs>| {
        if r.is_empty() {
            return;
        }
        match rules.iter_mut().find(|(p, _)| *p == path) {
            Some((_, have)) => *have |= r,
            None => rules.push((path, r)),
        }
    };
    for g in grants {
        let r = rights(g.access) & handled;
        let path = PathBuf::from(&g.path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => push(path, r),
            Ok(_) => push(path, r & file_only),
            // Never widened to the whole tree: such a path is left out
            // (the agent cannot create it under Landlock; the run says so).
            Err(_) if g.access.contains(Access::Create) => {
                match path.ancestors().skip(1).find(|a| a.is_dir()) {
                    Some(dir) if dir != Path::new("/") => {
                        widened.push(format!("{} (for {})", dir.display(), g.path));
                        push(dir.to_path_buf(), r);
                    }
                    _ => widened.push(format!("not granted: {} (nothing of it exists)", g.path)),
                }
            }
            Err(_) => {}
        }
    }
    let run = (AccessFs::Execute | AccessFs::ReadFile) & handled;
    for loader in loaders() {
        push(loader, run);
    }
    FileRules {
        held,
        handled,
        rules,
        widened,
    }
}

/// The dynamic loaders here (`ld-linux*`, `ld-musl*` in the library
/// directories).
fn loaders() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with("-linux-gnu")),
        );
    }
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("ld-linux") || name.starts_with("ld-musl") {
                out.push(e.path());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FileRule, Territory};

    fn profile() -> Profile {
        let mut p = Profile::empty("t");
        p.files.push(FileRule {
            path: "/usr/lib/**/*.so".into(),
            access: AccessSet::of(&[Access::Read]),
            runs: 1,
        });
        p.files.push(FileRule {
            path: "$WORKSPACE/out.txt".into(),
            access: AccessSet::of(&[Access::Create, Access::Write]),
            runs: 1,
        });
        p.files.push(FileRule {
            path: "$HOME/.cache/x".into(),
            access: AccessSet::of(&[Access::Read]),
            runs: 1,
        });
        p.territories.push(Territory {
            path: "$WORKSPACE/src".into(),
            access: AccessSet::of(&[Access::Read, Access::Write, Access::Exec]),
            runs: 1,
        });
        p
    }

    fn anchors() -> Anchors {
        Anchors::new(Some("/w".into()), None, None)
    }

    #[test]
    fn patterns_grant_their_literal_directory_and_created_files_their_parent() {
        let g = grants(&profile(), &anchors());
        let find = |p: &str| g.iter().filter(|x| x.path == p).collect::<Vec<_>>();
        assert_eq!(find("/usr/lib")[0].access, AccessSet::of(&[Access::Read]));
        // The file itself, and making it in its directory.
        assert_eq!(find("/w/out.txt").len(), 1);
        assert_eq!(find("/w")[0].access, AccessSet::of(&[Access::Create]));
        // A territory never grants exec (executables do).
        assert!(!find("/w/src")[0].access.contains(Access::Exec));
        // An unknown anchor grants nothing.
        assert!(g.iter().all(|x| !x.path.contains("$HOME")));
        // What every program reads is there.
        assert!(!find("/etc/ld.so.cache").is_empty());
    }

    #[test]
    fn literal_prefixes_stop_at_the_first_wildcard() {
        assert_eq!(literal_prefix("/a/b/*.c"), ("/a/b".into(), false));
        assert_eq!(literal_prefix("/a/**"), ("/a".into(), false));
        assert_eq!(literal_prefix("/**"), ("/".into(), false));
        assert_eq!(literal_prefix("/a/b"), ("/a/b".into(), true));
    }

    #[test]
    fn only_the_refused_classes_are_handled() {
        let held = Held {
            file: true,
            delete: false,
            exec: false,
        };
        let h = held.handled(ABI::V2);
        assert!(h.contains(AccessFs::ReadFile) && h.contains(AccessFs::Refer));
        assert!(!h.contains(AccessFs::RemoveFile) && !h.contains(AccessFs::Execute));
        // Listing is never handled; truncate needs ABI 3.
        assert!(!h.contains(AccessFs::ReadDir) && !h.contains(AccessFs::Truncate));
        assert!(Held::default().handled(ABI::V7).is_empty());
        assert_eq!(
            Held {
                exec: true,
                ..Held::default()
            }
            .kernel_flags(),
            kp::watch::LANDLOCK_EXEC
        );
    }

    #[test]
    fn held_classes_cross_the_wire_by_name() {
        let h = Held {
            exec: true,
            file: false,
            delete: true,
        };
        assert_eq!(Held::from_names(&h.names()), h);
        // A name this version does not know holds nothing.
        let only_file = Held {
            file: true,
            ..Held::default()
        };
        assert_eq!(Held::from_names(&["file", "network"]), only_file);
    }

    #[test]
    fn rights_follow_the_profile_accesses() {
        let r = rights(AccessSet::of(&[Access::Read]));
        assert_eq!(r, BitFlags::from(AccessFs::ReadFile));
        let r = rights(AccessSet::of(&[Access::Rename]));
        assert!(r.contains(AccessFs::Refer) && r.contains(AccessFs::RemoveFile));
        assert!(rights(AccessSet::of(&[Access::Chmod])).is_empty());
    }

    #[test]
    fn missing_paths_are_granted_at_an_existing_directory_only_for_creation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_string_lossy().into_owned();
        let g = vec![
            Grant {
                path: format!("{root}/new/deeper"),
                access: AccessSet::of(&[Access::Create, Access::Write]),
            },
            Grant {
                path: format!("{root}/gone"),
                access: AccessSet::of(&[Access::Read]),
            },
        ];
        let held = Held {
            file: true,
            ..Held::default()
        };
        let r = resolve(&g, held, ABI::V7);
        let at_root: Vec<_> = r.rules.iter().filter(|(p, _)| *p == dir.path()).collect();
        assert_eq!(at_root.len(), 1, "{:?}", r.rules);
        assert!(at_root[0].1.contains(AccessFs::MakeDir));
        assert_eq!(r.widened.len(), 1);
        assert!(r.rules.iter().all(|(p, _)| !p.ends_with("gone")));
    }
}

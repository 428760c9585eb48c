//! Executables as a profile lists them. Each path the agent ran, with the
//! sha256 of every binary seen there; except that where the agent used
//! tools open-endedly from one directory, the distribution's own binaries
//! there become one entry, `DIR/*` with `source: package`: any binary the
//! package database owns, unmodified. Binaries nobody packaged (pyenv's,
//! a download) stay pinned by hash.
use std::collections::{BTreeMap, BTreeSet};

use crate::profile::{ExecSource, Executable, Granularity};

/// Distinct packaged executables in one directory that make it a group.
pub const fn group_threshold(g: Granularity) -> Option<usize> {
    match g {
        Granularity::Strict => None,
        Granularity::Balanced => Some(3),
        Granularity::Open => Some(1),
    }
}

/// One executable entry before grouping: its hashes, whether its binary
/// is packaged (and unmodified), in how many runs it was seen.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub sha256: BTreeSet<String>,
    pub packaged: bool,
    pub runs: u32,
    /// Already a `source: package` entry (from an earlier profile).
    pub group: bool,
}

/// Lists `execs` (path -> what was seen), grouping packaged binaries by
/// directory where there are enough of them.
pub fn list(execs: BTreeMap<String, Seen>, g: Granularity) -> Vec<Executable> {
    let mut per_dir: BTreeMap<String, usize> = BTreeMap::new();
    for (path, s) in &execs {
        if let Some((dir, _)) = path.rsplit_once('/') {
            if s.group {
                *per_dir.entry(dir.to_string()).or_default() += usize::MAX / 2;
            } else if s.packaged {
                *per_dir.entry(dir.to_string()).or_default() += 1;
            }
        }
    }
    let grouped =
        |dir: &str| group_threshold(g).is_some_and(|t| per_dir.get(dir).is_some_and(|n| *n >= t));
    let mut groups: BTreeMap<String, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for (path, s) in execs {
        let dir = path.rsplit_once('/').map(|x| x.0).unwrap_or("");
        if (s.packaged || s.group) && grouped(dir) {
            let runs = groups.entry(format!("{dir}/*")).or_default();
            *runs = (*runs).max(s.runs);
            continue;
        }
        out.push(Executable {
            path,
            sha256: s.sha256.into_iter().collect(),
            source: None,
            runs: s.runs,
        });
    }
    for (path, runs) in groups {
        out.push(Executable {
            path,
            sha256: Vec::new(),
            source: Some(ExecSource::Package),
            runs,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(packaged: bool) -> Seen {
        Seen {
            sha256: ["ab".repeat(32)].into_iter().collect(),
            packaged,
            runs: 1,
            group: false,
        }
    }

    #[test]
    fn packaged_tools_of_one_directory_group() {
        let mut e = BTreeMap::new();
        for t in ["cat", "sed", "tar"] {
            e.insert(format!("/usr/bin/{t}"), seen(true));
        }
        e.insert("/usr/bin/local-tool".into(), seen(false));
        e.insert("$HOME/.pyenv/shims/python3".into(), seen(false));
        let l = list(e.clone(), Granularity::Balanced);
        let paths: Vec<&str> = l.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$HOME/.pyenv/shims/python3",
                "/usr/bin/*",
                "/usr/bin/local-tool"
            ]
        );
        assert_eq!(l[1].source, Some(ExecSource::Package));
        assert!(l[1].sha256.is_empty());
        // Strict pins every binary.
        assert_eq!(list(e, Granularity::Strict).len(), 5);
    }

    #[test]
    fn a_group_of_an_earlier_profile_takes_new_packaged_tools() {
        let mut e = BTreeMap::new();
        e.insert(
            "/usr/bin/*".to_string(),
            Seen {
                group: true,
                runs: 3,
                ..Seen::default()
            },
        );
        e.insert("/usr/bin/seq".into(), seen(true));
        let l = list(e, Granularity::Balanced);
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].path.as_str(), l[0].runs), ("/usr/bin/*", 3));
    }
}

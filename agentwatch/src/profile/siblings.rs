//! Merging sibling file rules into a pattern, only when their names share a
//! structure: a common stem (`sess-*`), a common extension (`*.log`), or
//! both (`run-*.log`). A name never becomes a bare `*` here, dot-files stay
//! as they are, and a pattern that would reach into a guardrail is not
//! made.
use std::collections::{BTreeMap, BTreeSet};

use super::{anchors::Anchors, glob::Glob, guardrails::Guardrails, AccessSet};

/// Path -> (access, runs).
pub type FileMap = BTreeMap<String, (AccessSet, u32)>;

/// Separators that end a stem: `sess-`, `run_`, `core.`.
const STEM_SEPS: &[char] = &['-', '_', '.'];

/// `(stem, extension)` of a name, either of which may be absent.
fn structure(name: &str) -> (Option<&str>, Option<&str>) {
    // Dot-files stay literal: profile wildcards never match a leading dot.
    if name.starts_with('.') {
        return (None, None);
    }
    let stem = name
        .find(STEM_SEPS)
        .filter(|i| *i >= 2 && *i + 1 < name.len())
        .map(|i| &name[..=i])
        .filter(|s| !s.contains('*'));
    let ext = name
        .rfind('.')
        .filter(|i| *i > 0 && name.len() - i <= 10 && name.len() - i >= 2)
        .map(|i| &name[i..])
        // A version number (`.6` of `libc.so.6`) is not a kind of file.
        .filter(|e| !e.contains('*') && e.bytes().any(|b| b.is_ascii_alphabetic()));
    (stem, ext)
}

/// Merges siblings sharing a structure when at least `min` of them do.
pub fn merge(files: FileMap, min: usize, anchors: &Anchors, guardrails: &Guardrails) -> FileMap {
    let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in files.keys() {
        if let Some((dir, name)) = path.rsplit_once('/') {
            by_dir
                .entry(dir.to_string())
                .or_default()
                .push(name.to_string());
        }
    }
    let mut out = files.clone();
    for (dir, names) in by_dir {
        if names.len() < min.max(2) {
            continue;
        }
        // Candidate patterns, most specific first, each with its members.
        let mut candidates: BTreeMap<(u8, String), BTreeSet<String>> = BTreeMap::new();
        for n in &names {
            let (stem, ext) = structure(n);
            if let (Some(s), Some(e)) = (stem, ext) {
                candidates
                    .entry((0, format!("{s}*{e}")))
                    .or_default()
                    .insert(n.clone());
            }
            if let Some(s) = stem {
                candidates
                    .entry((1, format!("{s}*")))
                    .or_default()
                    .insert(n.clone());
            }
            if let Some(e) = ext {
                candidates
                    .entry((2, format!("*{e}")))
                    .or_default()
                    .insert(n.clone());
            }
        }
        let mut taken: BTreeSet<String> = BTreeSet::new();
        for ((_, pat), members) in candidates {
            let free: Vec<&String> = members.iter().filter(|m| !taken.contains(*m)).collect();
            if free.len() < min {
                continue;
            }
            let pattern = format!("{dir}/{pat}");
            let Ok(glob) = Glob::parse(&pattern) else {
                continue;
            };
            let access = free.iter().fold(AccessSet::EMPTY, |a, m| {
                a.union(files[&format!("{dir}/{m}")].0)
            });
            if reaches_guardrail(&pattern, access, anchors, guardrails) {
                continue;
            }
            // Fold in every remaining sibling the pattern covers.
            let covered: Vec<&String> = names
                .iter()
                .filter(|n| !taken.contains(*n) && glob.matches(&format!("{dir}/{n}")))
                .collect();
            let mut acc = AccessSet::EMPTY;
            let mut runs = 0;
            for n in covered {
                let key = format!("{dir}/{n}");
                if let Some((a, r)) = out.remove(&key) {
                    acc = acc.union(a);
                    runs = runs.max(r);
                }
                taken.insert(n.clone());
            }
            let e = out.entry(pattern).or_insert((AccessSet::EMPTY, 0));
            e.0 = e.0.union(acc);
            e.1 = e.1.max(runs);
        }
    }
    out
}

/// Are this anchored pattern's own paths guarded (`guarding_pattern`)?
/// Such a pattern is not made; one that merely reaches a guarded path is,
/// and the guardrails carve it at match time.
pub fn reaches_guardrail(
    pattern: &str,
    access: AccessSet,
    anchors: &Anchors,
    guardrails: &Guardrails,
) -> bool {
    let expanded = anchors
        .expand(pattern)
        .unwrap_or_else(|| pattern.to_string());
    Glob::parse(&expanded).is_err() || guardrails.guarding_pattern(&expanded, access).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Access;

    fn files(names: &[&str]) -> FileMap {
        names
            .iter()
            .map(|n| (n.to_string(), (AccessSet::of(&[Access::Read]), 1)))
            .collect()
    }

    fn merged(names: &[&str]) -> Vec<String> {
        let anchors = Anchors::new(
            Some("/w".into()),
            Some("/home/a".into()),
            Some("/tmp".into()),
        );
        merge(files(names), 3, &anchors, &Guardrails::builtin())
            .into_keys()
            .collect()
    }

    #[test]
    fn shared_extension_merges() {
        assert_eq!(
            merged(&[
                "$WORKSPACE/logs/a.log",
                "$WORKSPACE/logs/b.log",
                "$WORKSPACE/logs/c.log"
            ]),
            vec!["$WORKSPACE/logs/*.log"]
        );
    }

    #[test]
    fn shared_stem_merges_and_keeps_the_rest() {
        assert_eq!(
            merged(&["$TMP/sess-a", "$TMP/sess-b", "$TMP/sess-c", "$TMP/other"]),
            vec!["$TMP/other", "$TMP/sess-*"]
        );
    }

    #[test]
    fn stem_and_extension_together_are_preferred() {
        assert_eq!(
            merged(&["/w/run-1.log", "/w/run-2.log", "/w/run-3.log", "/w/x.log"]),
            vec!["/w/run-*.log", "/w/x.log"]
        );
    }

    #[test]
    fn unrelated_names_never_become_a_bare_star() {
        let names = [
            "/etc/hosts",
            "/etc/nsswitch.conf",
            "/etc/passwd",
            "/etc/resolv.conf",
        ];
        assert_eq!(
            merged(&names),
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn version_numbers_are_not_extensions() {
        let names = ["/lib/libc.so.6", "/lib/libm.so.6", "/lib/libtinfo.so.6"];
        assert_eq!(merged(&names).len(), 3);
    }

    #[test]
    fn too_few_siblings_stay_literal() {
        assert_eq!(
            merged(&["$WORKSPACE/a.log", "$WORKSPACE/b.log"]),
            vec!["$WORKSPACE/a.log", "$WORKSPACE/b.log"]
        );
    }

    #[test]
    fn dotfiles_are_never_merged() {
        let names = ["$HOME/.a.rc", "$HOME/.b.rc", "$HOME/.c.rc"];
        assert_eq!(merged(&names).len(), 3);
    }

    #[test]
    fn never_a_pattern_whose_own_paths_are_guarded() {
        // Three keys under .ssh share a stem, but `.ssh/id_*` is guarded.
        let f = files(&["/h/.ssh/id_a", "/h/.ssh/id_b", "/h/.ssh/id_c"]);
        let anchors = Anchors::default();
        let out = merge(f, 3, &anchors, &Guardrails::builtin());
        assert_eq!(out.len(), 3, "{out:?}");
    }
}

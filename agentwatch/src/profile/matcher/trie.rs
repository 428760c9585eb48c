//! An index of path patterns by segment, so matching a path costs a walk
//! down its segments rather than a scan of every rule.
use std::collections::HashMap;

use crate::profile::glob::{segment_matches, Glob, Part};

#[derive(Debug, Default)]
struct Node {
    lit: HashMap<String, Node>,
    wild: Vec<(String, Node)>,
    /// What follows a `**` here.
    globstar: Option<Box<Node>>,
    /// Rules whose pattern ends here.
    rules: Vec<usize>,
}

/// Patterns -> rule ids. Profile semantics (wildcards skip leading dots)
/// unless built with `dotglob` (guardrails).
#[derive(Debug, Default)]
pub struct PathTrie {
    root: Node,
    dotglob: bool,
}

impl PathTrie {
    /// A trie whose wildcards also match dot-files.
    pub fn dotglob() -> Self {
        Self {
            root: Node::default(),
            dotglob: true,
        }
    }

    pub fn insert(&mut self, glob: &Glob, rule: usize) {
        let mut n = &mut self.root;
        for part in glob.parts() {
            n = match part {
                Part::Lit(l) => n.lit.entry(l.to_string()).or_default(),
                Part::Wild(w) => {
                    let i = match n.wild.iter().position(|(p, _)| p == w) {
                        Some(i) => i,
                        None => {
                            n.wild.push((w.to_string(), Node::default()));
                            n.wild.len() - 1
                        }
                    };
                    &mut n.wild[i].1
                }
                Part::Globstar => n.globstar.get_or_insert_with(Default::default),
            };
        }
        n.rules.push(rule);
    }

    /// Calls `hit` with every rule whose pattern matches `path`.
    pub fn matches(&self, path: &str, hit: &mut impl FnMut(usize)) {
        let names: Vec<&str> = path.split('/').collect();
        visit(&self.root, &names, 0, self.dotglob, hit);
    }
}

fn visit(n: &Node, names: &[&str], i: usize, dot: bool, hit: &mut impl FnMut(usize)) {
    if let Some(g) = &n.globstar {
        // `**` takes zero or more segments, none of them a dot-file.
        let mut k = i;
        loop {
            visit(g, names, k, dot, hit);
            if k == names.len() || (!dot && names[k].starts_with('.')) {
                break;
            }
            k += 1;
        }
    }
    let Some(name) = names.get(i) else {
        n.rules.iter().for_each(|r| hit(*r));
        return;
    };
    if let Some(c) = n.lit.get(*name) {
        visit(c, names, i + 1, dot, hit);
    }
    for (w, c) in &n.wild {
        if segment_matches(w, name, dot) {
            visit(c, names, i + 1, dot, hit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_agrees_with_glob_matching() {
        let pats = [
            "/etc/ld.so.cache",
            "/proc/*/status",
            "/w/logs/*.log",
            "/w/build/**",
            "/w/**/Cargo.toml",
            "/usr/lib/**",
        ];
        let mut t = PathTrie::default();
        let globs: Vec<Glob> = pats.iter().map(|p| Glob::parse(p).unwrap()).collect();
        for (i, g) in globs.iter().enumerate() {
            t.insert(g, i);
        }
        for path in [
            "/etc/ld.so.cache",
            "/proc/1/status",
            "/proc/1/task/2/status",
            "/w/logs/a.log",
            "/w/logs/.a.log",
            "/w/build",
            "/w/build/x/y.o",
            "/w/build/.hidden/y",
            "/w/Cargo.toml",
            "/w/a/b/Cargo.toml",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/etc/passwd",
        ] {
            let mut got = Vec::new();
            t.matches(path, &mut |r| got.push(r));
            got.sort();
            got.dedup();
            let want: Vec<usize> = (0..globs.len())
                .filter(|i| globs[*i].matches(path))
                .collect();
            assert_eq!(got, want, "{path}");
        }
    }
}

//! Generalisation: from the files an agent touched (one session, or the
//! union of many sessions' profiles) to rules a reviewer can read and a
//! normal session does not trip over.
//!
//! The rule, in three steps (docs/profile-format.md has the thresholds):
//!
//! 1. **Write territories.** Everything seen is laid out as a directory
//!    tree. A directory is *open-ended* when the agent created enough
//!    distinct names directly in it (files, or directories it filled
//!    itself), or when enough of its subdirectories are open-ended. The
//!    topmost open-ended directory that may be a territory (see
//!    [`eligible`]) becomes one subtree rule with the union of the accesses
//!    seen beneath it (never `exec`). Temp places (`$TMP`, `/tmp`,
//!    `/var/tmp`, `/dev/shm`) and directories `mktemp -d` made are
//!    territories as soon as anything is created in them.
//! 2. **Read territories.** A subtree the agent only read, with enough
//!    distinct entries, becomes a read territory at its topmost eligible
//!    directory (`/usr/lib/**`, `$HOME/.pyenv/**`).
//! 3. **Siblings.** What is left is merged by name structure (`siblings`),
//!    folding names into patterns other sessions already made, with the
//!    union of their accesses.
//!
//! Guardrails are not consulted for territories: they carve holes in them
//! at match time, whatever a territory says.
use std::collections::BTreeMap;

use super::{
    anchors::Anchors, glob::Glob, guardrails::Guardrails, siblings, Access, AccessSet, FileRule,
    Granularity, Override, Territory,
};

/// What generalisation starts from: file entries (anchored paths or
/// patterns) and territories already learned, each with its accesses and
/// how many sessions saw it.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    pub files: BTreeMap<String, (AccessSet, u32)>,
    pub territories: BTreeMap<String, (AccessSet, u32)>,
}

impl Entries {
    pub fn add_file(&mut self, path: &str, access: AccessSet, runs: u32) {
        let e = self.files.entry(path.to_string()).or_default();
        e.0 = e.0.union(access);
        e.1 = e.1.saturating_add(runs);
    }

    pub fn add_territory(&mut self, path: &str, access: AccessSet, runs: u32) {
        let e = self.territories.entry(path.to_string()).or_default();
        e.0 = e.0.union(access);
        e.1 = e.1.saturating_add(runs);
    }
}

/// How generalisation is tuned.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub granularity: Granularity,
    pub overrides: &'a [Override],
    /// Siblings sharing a name structure needed for a pattern.
    pub min_siblings: usize,
    /// Sessions in all: run counts never exceed it.
    pub sessions: u32,
}

/// Distinct names created directly in a directory that make it
/// open-ended, by granularity.
pub const fn created_threshold(g: Granularity) -> usize {
    match g {
        Granularity::Strict => 8,
        Granularity::Balanced => 3,
        Granularity::Open => 1,
    }
}

/// Distinct entries in a read-only subtree that make it a read territory.
pub const fn read_threshold(g: Granularity) -> usize {
    match g {
        Granularity::Strict => 64,
        Granularity::Balanced => 4,
        Granularity::Open => 1,
    }
}

/// The rules generalisation produces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub territories: Vec<Territory>,
    pub files: Vec<FileRule>,
}

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<String, Node>,
    /// A file rule ending exactly here.
    entry: Option<(AccessSet, u32)>,
    /// A territory already rooted here.
    territory: Option<(AccessSet, u32)>,
    info: Info,
}

/// What the bottom-up pass found about a subtree.
#[derive(Debug, Default, Clone, Copy)]
struct Info {
    /// Some access beneath changes things (write, create, delete, ...).
    mutating: bool,
    /// Some access beneath creates.
    creates: bool,
    /// Every leaf beneath was created (a directory the agent filled).
    wholly_created: bool,
    /// Weighted number of entries beneath (a pattern counts as several).
    weight: usize,
    write_open: bool,
    read_open: bool,
}

fn mutating(a: AccessSet) -> bool {
    !a.minus(AccessSet::of(&[Access::Read, Access::Exec]))
        .is_empty()
}

/// Generalises `seen` into territories and file rules.
pub fn generalise(
    seen: Entries,
    s: &Settings,
    anchors: &Anchors,
    guardrails: &Guardrails,
) -> Rules {
    let mut root = Node::default();
    // `**` patterns (hand-written) are kept as they are; what they cover
    // folds into them at the end.
    let mut opaque: BTreeMap<String, (AccessSet, u32)> = BTreeMap::new();
    for (path, v) in &seen.files {
        if path.split('/').any(|x| x == "**") {
            opaque.insert(path.clone(), *v);
            continue;
        }
        let n = node_at(&mut root, path);
        let e = n.entry.get_or_insert((AccessSet::EMPTY, 0));
        e.0 = e.0.union(v.0);
        e.1 = e.1.max(v.1);
    }
    for (path, v) in &seen.territories {
        let n = node_at(&mut root, path);
        let t = n.territory.get_or_insert((AccessSet::EMPTY, 0));
        t.0 = t.0.union(v.0);
        t.1 = t.1.max(v.1);
    }
    let mut segs = Vec::new();
    for (name, child) in root.children.iter_mut() {
        segs.push(name.clone());
        analyse(child, &mut segs, s);
        segs.pop();
    }

    let mut out = Rules::default();
    let mut leftovers: siblings::FileMap = BTreeMap::new();
    for (name, child) in root.children.iter() {
        segs.push(name.clone());
        choose(child, &mut segs, s, &mut out, &mut leftovers);
        segs.pop();
    }
    let mut files = siblings::merge(leftovers, s.min_siblings, anchors, guardrails);
    for (p, v) in opaque {
        let e = files.entry(p).or_default();
        e.0 = e.0.union(v.0);
        e.1 = e.1.max(v.1);
    }
    let reaches = |p: &str, a: AccessSet| siblings::reaches_guardrail(p, a, anchors, guardrails);
    let files = fold_covered(files, s.sessions, &reaches);
    out.files = files
        .into_iter()
        .map(|(path, (access, runs))| FileRule {
            path,
            access,
            runs: runs.min(s.sessions.max(1)),
        })
        .collect();
    for t in &mut out.territories {
        t.runs = t.runs.min(s.sessions.max(1));
    }
    out
}

/// The node for an anchored path, created on the way.
fn node_at<'a>(root: &'a mut Node, path: &str) -> &'a mut Node {
    let mut n = root;
    for seg in segments(path) {
        n = n.children.entry(seg.to_string()).or_default();
    }
    n
}

/// `$WORKSPACE/a/b` -> [$WORKSPACE, a, b]; `/usr/lib` -> ["", usr, lib];
/// `/` -> [""].
fn segments(path: &str) -> Vec<&str> {
    if path == "/" {
        return vec![""];
    }
    path.split('/').collect()
}

fn join(segs: &[String]) -> String {
    if segs.len() == 1 && segs[0].is_empty() {
        return "/".into();
    }
    segs.join("/")
}

/// Weight of one name: a pattern stands for several names.
fn weight(name: &str, s: &Settings) -> usize {
    if name.contains('*') {
        s.min_siblings.max(1)
    } else {
        1
    }
}

/// The granularity in force at a directory: the nearest override at or
/// above it, else the profile's.
fn granularity_at(path: &str, s: &Settings) -> Granularity {
    s.overrides
        .iter()
        .filter(|o| within(path, &o.path))
        .max_by_key(|o| o.path.len())
        .map(|o| o.granularity)
        .unwrap_or(s.granularity)
}

/// Is `path` the directory `dir` or beneath it?
fn within(path: &str, dir: &str) -> bool {
    path == dir
        || dir == "/"
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A territory rooted at `path` would cover a directory a reviewer set to
/// `strict` below it.
fn fenced(path: &str, s: &Settings) -> bool {
    s.overrides
        .iter()
        .any(|o| o.granularity == Granularity::Strict && o.path != path && within(&o.path, path))
}

/// Bottom-up: what each subtree holds and whether it is open-ended.
fn analyse(n: &mut Node, segs: &mut Vec<String>, s: &Settings) -> Info {
    let mut info = Info {
        wholly_created: true,
        ..Info::default()
    };
    let mut direct_created = 0usize;
    let mut open_children = 0usize;
    let names: Vec<String> = n.children.keys().cloned().collect();
    for name in names {
        let Some(child) = n.children.get_mut(&name) else {
            continue;
        };
        segs.push(name.clone());
        let c = analyse(child, segs, s);
        segs.pop();
        info.mutating |= c.mutating;
        info.creates |= c.creates;
        info.weight += c.weight;
        info.wholly_created &= c.wholly_created;
        let created_file = child.entry.is_some_and(|(a, _)| a.contains(Access::Create));
        let filled_dir = !child.children.is_empty() && c.wholly_created && c.creates;
        if c.write_open {
            open_children += 1;
        }
        // A directory the agent filled is one new name here, unless it
        // already counts as open-ended itself; a pattern stands for many.
        if (created_file || filled_dir) && (!c.write_open || name.contains('*')) {
            direct_created += weight(&name, s);
        }
    }
    if let Some((a, _)) = n.entry {
        info.mutating |= mutating(a);
        info.creates |= a.contains(Access::Create);
        info.weight += segs.last().map_or(1, |x| weight(x, s));
        // A directory the agent filled may also be listed (read); only
        // leaves decide whether it was created.
        if n.children.is_empty() && !a.contains(Access::Create) {
            info.wholly_created = false;
        }
    }
    if let Some((a, _)) = n.territory {
        info.mutating |= mutating(a);
        info.creates |= a.contains(Access::Create);
        info.weight += read_threshold(Granularity::Strict);
        if !a.contains(Access::Create) {
            info.wholly_created = false;
        }
    }
    if n.children.is_empty() && n.entry.is_none() && n.territory.is_none() {
        info.wholly_created = false;
    }
    let path = join(segs);
    let g = granularity_at(&path, s);
    let temp = is_temp_place(segs) && g != Granularity::Strict;
    let temp_dir = segs.last().is_some_and(|x| is_temp_name(x)) && info.wholly_created;
    let by_count = match g {
        Granularity::Strict => direct_created >= created_threshold(g),
        Granularity::Balanced => {
            direct_created >= created_threshold(g)
                || open_children >= 2
                || (open_children >= 1 && direct_created >= 1)
        }
        Granularity::Open => direct_created >= 1 || open_children >= 1,
    };
    let known = n.territory.is_some_and(|(a, _)| mutating(a));
    info.write_open = known
        || (info.mutating && (by_count || (temp && info.creates) || (temp_dir && info.creates)));
    let known_read = n.territory.is_some_and(|(a, _)| !mutating(a));
    // Territories are directories: a file alone never becomes one.
    let dir = !n.children.is_empty();
    info.write_open &= dir || known;
    info.read_open = !info.mutating && (known_read || (dir && info.weight >= read_threshold(g)));
    n.info = info;
    info
}

/// Top-down: the topmost open-ended directory on each path that may be a
/// territory becomes one; what no territory covers is left for siblings.
fn choose(
    n: &Node,
    segs: &mut Vec<String>,
    s: &Settings,
    out: &mut Rules,
    leftovers: &mut siblings::FileMap,
) {
    let path = join(segs);
    let view: Vec<&str> = segs.iter().map(String::as_str).collect();
    let forced_open = s
        .overrides
        .iter()
        .any(|o| o.path == path && o.granularity == Granularity::Open);
    if !fenced(&path, s) {
        if n.info.write_open && (eligible(&view, true) || forced_open) {
            territory(n, path, out, leftovers);
            return;
        }
        if n.info.read_open && (eligible(&view, false) || forced_open) {
            territory(n, path, out, leftovers);
            return;
        }
    }
    // What every program reads is allowed to every agent: it weighs in
    // the tree above (configuration read widely) but needs no rule.
    if let Some(e) = n.entry.filter(|e| !super::ambient::covers(&path, e.0)) {
        leftovers.insert(path, e);
    }
    if let Some(t) = n.territory {
        // A territory that may no longer stand (a new strict override)
        // is kept as the reviewer's, not silently dropped.
        out.territories.push(Territory {
            path: join(segs),
            access: t.0,
            runs: t.1,
        });
        // What beneath it asks for more than it grants keeps its rule.
        uncovered(n, segs, t.0, out, leftovers);
        return;
    }
    for (name, child) in &n.children {
        segs.push(name.clone());
        choose(child, segs, s, out, leftovers);
        segs.pop();
    }
}

/// Rules beneath a kept territory that need more than its `cover`: a file
/// written in a read territory (a database in a data tree) stays a file
/// rule, a territory of its own stays one.
fn uncovered(
    n: &Node,
    segs: &mut Vec<String>,
    cover: AccessSet,
    out: &mut Rules,
    leftovers: &mut siblings::FileMap,
) {
    for (name, child) in &n.children {
        segs.push(name.clone());
        let path = join(segs);
        let needed =
            |(a, _): &(AccessSet, u32)| !a.is_subset(cover) && !super::ambient::covers(&path, *a);
        if let Some(e) = child.entry.filter(needed) {
            leftovers.insert(path, e);
        }
        match child.territory.filter(|(a, _)| !a.is_subset(cover)) {
            Some(t) => out.territories.push(Territory {
                path: join(segs),
                access: t.0,
                runs: t.1,
            }),
            None => uncovered(child, segs, cover, out, leftovers),
        }
        segs.pop();
    }
}

/// Makes `n` a territory: the union of every access beneath it except
/// exec; entries that were executed keep an exec-only rule.
fn territory(n: &Node, path: String, out: &mut Rules, leftovers: &mut siblings::FileMap) {
    let mut access = AccessSet::EMPTY;
    let mut runs = 0;
    let mut execs = Vec::new();
    collect(n, &path, &mut access, &mut runs, &mut execs);
    let exec = AccessSet::of(&[Access::Exec]);
    for (p, r) in execs {
        leftovers.insert(p, (exec, r));
    }
    // Where the agent creates, it could give a new file any mode: a chmod
    // within adds nothing (setuid bits stay a guardrail). Where it both
    // creates and deletes, a rename within is the two in one call (an
    // atomic save, a compiled cache, pip's installer).
    if access.contains(Access::Create) {
        access = access.union(AccessSet::of(&[Access::Chmod]));
        if access.contains(Access::Delete) {
            access = access.union(AccessSet::of(&[Access::Rename]));
        }
    }
    out.territories.push(Territory {
        path,
        access: access.minus(exec),
        runs,
    });
}

fn collect(
    n: &Node,
    path: &str,
    access: &mut AccessSet,
    runs: &mut u32,
    execs: &mut Vec<(String, u32)>,
) {
    for (a, r) in n.entry.iter().chain(n.territory.iter()) {
        *access = access.union(*a);
        *runs = (*runs).max(*r);
        if a.contains(Access::Exec) && n.entry.is_some_and(|(e, _)| e.contains(Access::Exec)) {
            execs.push((path.to_string(), *r));
        }
    }
    for (name, child) in &n.children {
        collect(child, &format!("{path}/{name}"), access, runs, execs);
    }
}

/// May a territory be rooted at this directory? Never at `/`, `$HOME`
/// or a top-level system directory; writes only in the agent's own
/// places, temp places, and three levels or more below the root.
pub fn eligible(segs: &[&str], write: bool) -> bool {
    let Some((head, rest)) = segs.split_first() else {
        return false;
    };
    match *head {
        "$WORKSPACE" | "$TMP" => true,
        "$HOME" => match rest {
            [] => false,
            [first] => !write || *first == ".cache",
            _ => true,
        },
        "" => {
            let Some(top) = rest.first() else {
                return false;
            };
            if is_temp_place(segs) {
                return true;
            }
            if ["proc", "sys", "dev"].contains(top) {
                return false;
            }
            if write {
                const SYSTEM: [&str; 9] = [
                    "etc", "usr", "bin", "sbin", "lib", "lib64", "lib32", "boot", "root",
                ];
                rest.len() >= 3 && !SYSTEM.contains(top)
            } else if *top == "home" {
                rest.len() >= 3
            } else if *top == "etc" {
                // Configuration is read everywhere (os-release, nsswitch,
                // mime types); its secrets are guardrails, holes in the tree.
                true
            } else {
                rest.len() >= 2
            }
        }
        _ => false,
    }
}

/// `$TMP`, `/tmp`, `/var/tmp`, `/dev/shm`, or beneath one.
fn is_temp_place(segs: &[impl AsRef<str>]) -> bool {
    let v: Vec<&str> = segs.iter().map(AsRef::as_ref).collect();
    matches!(
        v.as_slice(),
        ["$TMP", ..] | ["", "tmp", ..] | ["", "var", "tmp", ..] | ["", "dev", "shm", ..]
    )
}

/// A directory name whose random part normalisation cut (`tmp.*` of
/// `mktemp -d`, `job.*` of a template): filled by the agent, it is a temp
/// directory.
fn is_temp_name(name: &str) -> bool {
    name.contains('*')
}

/// Folds entries a wider pattern covers into it: the union of accesses
/// when the two are siblings of one structure (`tests/test_*.py` takes
/// `tests/test_ops.py`), and only when its accesses already allow them
/// otherwise (a hand-written `**` grants what it grants).
fn fold_covered(
    mut files: siblings::FileMap,
    sessions: u32,
    reaches: &dyn Fn(&str, AccessSet) -> bool,
) -> siblings::FileMap {
    let patterns: Vec<(String, Glob)> = files
        .keys()
        .filter(|k| k.contains('*'))
        .filter_map(|k| Glob::parse(k).ok().map(|g| (k.clone(), g)))
        .collect();
    let mut keys: Vec<String> = files.keys().cloned().collect();
    // Literals first, so they fold before the patterns they sit in do.
    keys.sort_by_key(|k| k.contains('*'));
    for key in keys {
        let (Ok(glob), Some(&(access, runs))) = (Glob::parse(&key), files.get(&key)) else {
            continue;
        };
        let wider = patterns.iter().find(|(k, g)| {
            *k != key
                && g.covers(&glob)
                && !glob.covers(g)
                && files.get(k).is_some_and(|(a, _)| {
                    access.is_subset(*a)
                        || (same_dir(k, &key) && !k.contains("**") && !reaches(k, a.union(access)))
                })
        });
        if let Some((k, _)) = wider {
            files.remove(&key);
            if let Some(m) = files.get_mut(k) {
                m.0 = m.0.union(access);
                m.1 = (m.1 + runs).min(sessions.max(1));
            }
        }
    }
    files
}

fn same_dir(a: &str, b: &str) -> bool {
    a.rsplit_once('/').map(|x| x.0) == b.rsplit_once('/').map(|x| x.0)
}

#[cfg(test)]
mod tests;

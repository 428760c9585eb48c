//! Semantic differences between two profiles, in words a reviewer reads:
//! `new: /usr/bin/git -> connect github.com:443`,
//! `removed: write $WORKSPACE/build/**`. Run counts, stability and
//! provenance are not differences in what the agent may do, so they are
//! left out.
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{AccessSet, Class, NetRule, Profile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    New,
    Removed,
    Changed,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub change: ChangeKind,
    pub section: &'static str,
    pub text: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.change {
            ChangeKind::New => "new",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        };
        write!(f, "{k}: {}", self.text)
    }
}

fn push(out: &mut Vec<Change>, change: ChangeKind, section: &'static str, text: String) {
    out.push(Change {
        change,
        section,
        text,
    });
}

/// Keys present on one side only.
fn sides<'a, K: Ord + Clone, V>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = (&'a K, Option<&'a V>, Option<&'a V>)> {
    let keys: BTreeSet<&K> = old.keys().chain(new.keys()).collect();
    keys.into_iter().map(move |k| (k, old.get(k), new.get(k)))
}

fn short(h: &[String]) -> String {
    let v: Vec<String> = h
        .iter()
        .map(|x| format!("{}…", &x[..x.len().min(12)]))
        .collect();
    v.join(",")
}

/// Accesses gained and lost per path, each said by `say(accesses, path)`.
fn accesses(
    out: &mut Vec<Change>,
    section: &'static str,
    old: &BTreeMap<String, AccessSet>,
    new: &BTreeMap<String, AccessSet>,
    say: impl Fn(AccessSet, &str) -> String,
) {
    for (path, o, n) in sides(old, new) {
        let (o, n) = (
            o.copied().unwrap_or_default(),
            n.copied().unwrap_or_default(),
        );
        if !n.minus(o).is_empty() {
            push(out, ChangeKind::New, section, say(n.minus(o), path));
        }
        if !o.minus(n).is_empty() {
            push(out, ChangeKind::Removed, section, say(o.minus(n), path));
        }
    }
}

/// What changed from `old` to `new`, in section order.
pub fn diff(old: &Profile, new: &Profile) -> Vec<Change> {
    let mut out = Vec::new();
    executables(&mut out, old, new);
    pinned(&mut out, old, new);
    // Territories first: a reviewer weighs a subtree before its files.
    paths(&mut out, old, new);
    endpoints(&mut out, old, new);
    rates(&mut out, old, new);
    review(&mut out, old, new);
    out
}

/// Executables new, removed, or with other binaries.
fn executables(out: &mut Vec<Change>, old: &Profile, new: &Profile) {
    use ChangeKind::*;
    let ex = |p: &Profile| -> BTreeMap<String, Vec<String>> {
        p.executables
            .iter()
            .map(|e| (e.path.clone(), e.sha256.clone()))
            .collect()
    };
    for (path, o, n) in sides(&ex(old), &ex(new)) {
        match (o, n) {
            (None, Some(_)) => push(out, New, "executables", format!("exec {path}")),
            (Some(_), None) => push(out, Removed, "executables", format!("exec {path}")),
            (Some(a), Some(b)) if a != b => push(
                out,
                Changed,
                "executables",
                format!("exec {path} sha256 {} -> {}", short(a), short(b)),
            ),
            _ => {}
        }
    }
}

/// Approved models and pinned instruction files: new, removed, or with
/// other hashes (a model's whole section appearing is a change too: from
/// then on unapproved models are refused).
fn pinned(out: &mut Vec<Change>, old: &Profile, new: &Profile) {
    use ChangeKind::*;
    let models = |p: &Profile| -> BTreeMap<String, Vec<String>> {
        p.models
            .iter()
            .flatten()
            .map(|m| (m.path.clone(), m.sha256.clone()))
            .collect()
    };
    match (&old.models, &new.models) {
        (None, Some(_)) => push(
            out,
            New,
            "models",
            "models checked: only those listed load".into(),
        ),
        (Some(_), None) => push(
            out,
            Removed,
            "models",
            "models checked (any model loads)".into(),
        ),
        _ => {}
    }
    let pins = |p: &Profile| -> BTreeMap<String, Vec<String>> {
        p.instructions
            .iter()
            .map(|i| (i.path.clone(), vec![i.sha256.clone()]))
            .collect()
    };
    for (section, what, o, n) in [
        ("models", "model", models(old), models(new)),
        ("instructions", "instructions", pins(old), pins(new)),
    ] {
        for (path, a, b) in sides(&o, &n) {
            match (a, b) {
                (None, Some(_)) => push(out, New, section, format!("{what} {path}")),
                (Some(_), None) => push(out, Removed, section, format!("{what} {path}")),
                (Some(a), Some(b)) if a != b => push(
                    out,
                    Changed,
                    section,
                    format!("{what} {path} sha256 {} -> {}", short(a), short(b)),
                ),
                _ => {}
            }
        }
    }
}

/// Territories, then file rules, by access.
fn paths(out: &mut Vec<Change>, old: &Profile, new: &Profile) {
    let territories = |p: &Profile| -> BTreeMap<String, AccessSet> {
        p.territories
            .iter()
            .map(|t| (t.path.clone(), t.access))
            .collect()
    };
    accesses(
        out,
        "territories",
        &territories(old),
        &territories(new),
        |a, path| format!("{a} {path}/** (territory)"),
    );
    let files = |p: &Profile| -> BTreeMap<String, AccessSet> {
        p.files.iter().map(|f| (f.path.clone(), f.access)).collect()
    };
    accesses(out, "files", &files(old), &files(new), |a, path| {
        format!("{a} {path}")
    });
}

/// Endpoints (per executable that used them) and DNS names.
fn endpoints(out: &mut Vec<Change>, old: &Profile, new: &Profile) {
    use ChangeKind::*;
    let net = |p: &Profile| -> BTreeMap<String, ()> {
        p.network
            .iter()
            .flat_map(net_lines)
            .map(|l| (l, ()))
            .collect()
    };
    for (line, o, n) in sides(&net(old), &net(new)) {
        match (o, n) {
            (None, Some(_)) => push(out, New, "network", line.clone()),
            (Some(_), None) => push(out, Removed, "network", line.clone()),
            _ => {}
        }
    }

    let dns = |p: &Profile| -> BTreeMap<String, ()> {
        p.dns.iter().map(|d| (d.name.clone(), ())).collect()
    };
    for (name, o, n) in sides(&dns(old), &dns(new)) {
        match (o, n) {
            (None, Some(_)) => push(out, New, "dns", format!("resolve {name}")),
            (Some(_), None) => push(out, Removed, "dns", format!("resolve {name}")),
            _ => {}
        }
    }
}

/// Rate budgets.
fn rates(out: &mut Vec<Change>, old: &Profile, new: &Profile) {
    use ChangeKind::*;
    let rates = |p: &Profile| -> BTreeMap<Class, u64> {
        p.rates
            .per_minute
            .iter()
            .map(|(c, b)| (*c, b.budget))
            .collect()
    };
    for (class, o, n) in sides(&rates(old), &rates(new)) {
        match (o, n) {
            (Some(a), Some(b)) if a != b => push(
                out,
                Changed,
                "rates",
                format!("rate {class} budget {a}/min -> {b}/min"),
            ),
            (None, Some(b)) => push(out, New, "rates", format!("rate {class} budget {b}/min")),
            (Some(a), None) => push(
                out,
                Removed,
                "rates",
                format!("rate {class} budget {a}/min"),
            ),
            _ => {}
        }
    }
}

/// What awaits review, by access.
fn review(out: &mut Vec<Change>, old: &Profile, new: &Profile) {
    use ChangeKind::*;
    let review = |p: &Profile| -> BTreeMap<(String, String), AccessSet> {
        p.review
            .iter()
            .map(|r| ((r.path.clone(), r.guardrail.clone()), r.access))
            .collect()
    };
    for ((path, g), o, n) in sides(&review(old), &review(new)) {
        let (o, n) = (
            o.copied().unwrap_or_default(),
            n.copied().unwrap_or_default(),
        );
        if !n.minus(o).is_empty() {
            push(
                out,
                New,
                "review",
                format!("review {} {path} ({g} guardrail)", n.minus(o)),
            );
        }
        if !o.minus(n).is_empty() {
            push(
                out,
                Removed,
                "review",
                format!("review {} {path} ({g} guardrail)", o.minus(n)),
            );
        }
    }
}

/// `EXE -> connect host:port` for each executable of an endpoint.
fn net_lines(r: &NetRule) -> Vec<String> {
    let what = format!("{} {}", r.direction, r.target());
    if r.by.is_empty() {
        return vec![what];
    }
    r.by.iter().map(|b| format!("{b} -> {what}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Access, Direction, Executable, FileRule, NetRule};

    fn base() -> Profile {
        let mut p = Profile::empty("a");
        p.executables.push(Executable {
            path: "/usr/bin/git".into(),
            sha256: vec!["a".repeat(64)],
            source: None,
            runs: 1,
        });
        p.files.push(FileRule {
            path: "$WORKSPACE/build/**".into(),
            access: AccessSet::of(&[Access::Read, Access::Write]),
            runs: 1,
        });
        p
    }

    #[test]
    fn a_new_territory_and_a_widened_one_are_said() {
        use crate::profile::Territory;
        let mut old = base();
        old.territories.push(Territory {
            path: "/usr/lib".into(),
            access: AccessSet::of(&[Access::Read]),
            runs: 1,
        });
        let mut new = old.clone();
        new.territories[0].access = AccessSet::of(&[Access::Read, Access::Write]);
        new.territories.push(Territory {
            path: "$WORKSPACE".into(),
            access: AccessSet::of(&[Access::Read, Access::Create]),
            runs: 1,
        });
        let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "new: read,create $WORKSPACE/** (territory)".to_string(),
                "new: write /usr/lib/** (territory)".to_string(),
            ]
        );
    }

    #[test]
    fn reads_like_a_review() {
        let old = base();
        let mut new = base();
        new.files[0].access = AccessSet::of(&[Access::Read]);
        new.network.push(NetRule {
            model: false,
            direction: Direction::Connect,
            host: Some("github.com".into()),
            address: None,
            unix: None,
            port: Some(443),
            by: vec!["/usr/bin/git".into()],
            runs: 1,
        });
        new.executables[0].sha256 = vec!["b".repeat(64)];
        let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                format!(
                    "changed: exec /usr/bin/git sha256 {}… -> {}…",
                    "a".repeat(12),
                    "b".repeat(12)
                ),
                "removed: write $WORKSPACE/build/**".to_string(),
                "new: /usr/bin/git -> connect github.com:443".to_string(),
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }
}

#[cfg(test)]
mod pinned_tests {
    use super::*;
    use crate::profile::pinned::{Instruction, ModelRule};

    #[test]
    fn models_and_pins_are_differences_a_reviewer_sees() {
        let pin = |h: &str| Instruction {
            path: "$WORKSPACE/AGENTS.md".into(),
            sha256: h.repeat(64),
            size: 10,
        };
        let mut old = Profile::empty("a");
        old.instructions.push(pin("a"));
        let mut new = old.clone();
        new.instructions[0] = pin("b");
        new.models = Some(vec![ModelRule {
            path: "$HOME/m.gguf".into(),
            sha256: vec!["c".repeat(64)],
        }]);
        let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "new: models checked: only those listed load".to_string(),
                "new: model $HOME/m.gguf".to_string(),
                format!(
                    "changed: instructions $WORKSPACE/AGENTS.md sha256 {}… -> {}…",
                    "a".repeat(12),
                    "b".repeat(12)
                ),
            ]
        );
    }
}

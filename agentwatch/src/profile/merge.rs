//! Merging profiles of several runs or replicas of one agent: the union of
//! what each allowed, generalised again over everything seen, so siblings
//! created one per session become a pattern (or a territory) with the
//! union of their accesses; per entry, the number of runs that saw it.
use std::collections::BTreeMap;

use thiserror::Error;

use super::{
    anchors::Anchors,
    builder::execs,
    generalise::{self, Entries},
    guardrails::Guardrails,
    packages::Packages,
    AccessSet, Class, ClassStability, DnsRule, ExecSource, NetRule, Profile, RateBudget,
    ReviewItem,
};

#[derive(Debug, Error)]
pub enum MergeError {
    #[error("nothing to merge: give one profile (to generalise it again) or more")]
    Empty,
    #[error("profiles are of different agents ({0} and {1}); pass --agent NAME to merge them under one name")]
    Agents(String, String),
}

/// Merges `profiles` into one for `agent` (default: their common agent).
/// The first profile's granularity, actions and readiness settings lead;
/// overrides, guardrails and approvals are the union; io_uring and raw
/// sockets are allowed when any allows them (a reviewer said so); each
/// resource budget is the largest any profile sets.
pub fn merge(profiles: &[Profile], agent: Option<&str>) -> Result<Profile, MergeError> {
    let first = profiles.first().ok_or(MergeError::Empty)?;
    if agent.is_none() {
        if let Some(other) = profiles.iter().find(|p| p.agent != first.agent) {
            return Err(MergeError::Agents(first.agent.clone(), other.agent.clone()));
        }
    }
    let mut out = Profile::empty(agent.unwrap_or(&first.agent));
    out.granularity = first.granularity;
    out.actions = first.actions.clone();
    out.io_uring = profiles.iter().any(|p| p.io_uring);
    out.raw_sockets = profiles.iter().any(|p| p.raw_sockets);
    let sessions: u32 = profiles.iter().map(|p| p.provenance.sessions.max(1)).sum();

    let mut execs: BTreeMap<String, execs::Seen> = BTreeMap::new();
    let mut seen = Entries::default();
    let mut net: BTreeMap<(super::Direction, String), NetRule> = BTreeMap::new();
    let mut dns: BTreeMap<String, u32> = BTreeMap::new();
    let mut review: BTreeMap<(String, String), ReviewItem> = BTreeMap::new();
    for p in profiles {
        union_reviewed(&mut out, p);
        for e in &p.executables {
            let m = execs.entry(e.path.clone()).or_insert_with(|| execs::Seen {
                packaged: e.path.starts_with('/')
                    && !e.path.contains('*')
                    && Packages::host().owner_unmodified(&e.path).is_some(),
                ..execs::Seen::default()
            });
            m.sha256.extend(e.sha256.iter().cloned());
            m.group |= e.source == Some(ExecSource::Package);
            m.runs = (m.runs + e.runs).min(sessions);
        }
        for f in &p.files {
            seen.add_file(&f.path, f.access, f.runs);
        }
        for t in &p.territories {
            seen.add_territory(&t.path, t.access, t.runs);
        }
        for n in &p.network {
            add_endpoint(&mut net, n);
        }
        for d in &p.dns {
            *dns.entry(d.name.clone()).or_default() += d.runs;
        }
        for r in &p.review {
            let m = review
                .entry((r.path.clone(), r.guardrail.clone()))
                .or_insert_with(|| ReviewItem {
                    access: AccessSet::EMPTY,
                    runs: 0,
                    ..r.clone()
                });
            m.access = m.access.union(r.access);
            m.runs += r.runs;
        }
        union_numbers(&mut out, p);
    }
    out.provenance.sessions = sessions;

    let guardrails = Guardrails::builtin().with_profile(&out.guardrails, None);
    let rules = generalise::generalise(
        seen,
        &generalise::Settings {
            granularity: out.granularity,
            overrides: &out.overrides,
            min_siblings: 3,
            sessions,
        },
        &Anchors::default(),
        &guardrails,
    );
    out.territories = rules.territories;
    out.files = rules.files;
    out.executables = execs::list(execs, out.granularity);
    out.network = net
        .into_values()
        .map(|mut n| {
            n.runs = n.runs.min(sessions);
            n
        })
        .collect();
    super::builder::network::widen_by(&mut out.network, out.granularity);
    out.dns = dns
        .into_iter()
        .map(|(name, runs)| DnsRule {
            name,
            runs: runs.min(sessions),
        })
        .collect();
    out.review = review.into_values().collect();
    class_stability(&mut out, profiles);
    out.sort();
    Ok(out)
}

/// What reviewers wrote, once each: overrides, guardrails, approvals.
fn union_reviewed(out: &mut Profile, p: &Profile) {
    for o in &p.overrides {
        if !out.overrides.contains(o) {
            out.overrides.push(o.clone());
        }
    }
    for g in &p.guardrails {
        if !out.guardrails.contains(g) {
            out.guardrails.push(g.clone());
        }
    }
    for a in &p.approvals {
        if !out.approvals.iter().any(|x| x.id == a.id) {
            out.approvals.push(a.clone());
        }
    }
}

/// One endpoint into the union: its executables joined (empty `by` is
/// any executable, and stays so), runs added.
fn add_endpoint(net: &mut BTreeMap<(super::Direction, String), NetRule>, n: &NetRule) {
    let m = net.entry(n.key()).or_insert_with(|| NetRule {
        by: Vec::new(),
        runs: 0,
        model: false,
        ..n.clone()
    });
    let any = (m.runs > 0 && m.by.is_empty()) || n.by.is_empty();
    m.by.extend(n.by.iter().cloned());
    if any {
        m.by.clear();
    }
    m.model |= n.model;
    m.runs += n.runs;
}

/// Budgets and windows take the larger; models unite, instruction pins
/// stay the first's; provenance the union.
fn union_numbers(out: &mut Profile, p: &Profile) {
    // Each budget the larger any profile sets: what every session
    // needed (a reviewer lowers one after the merge).
    for (k, v) in &p.resources {
        let kept = match out.resources.get(k) {
            Some(old) => crate::budget::larger(k, old, v),
            None => v.clone(),
        };
        out.resources.insert(k.clone(), kept);
    }
    super::pinned::union_models(&mut out.models, &p.models);
    out.model_manifests
        .extend(p.model_manifests.iter().cloned());
    // A pin stays as first learned or approved: a changed file is
    // approved by a reviewer, not merged in.
    super::pinned::add_instructions(&mut out.instructions, &p.instructions, true);
    out.rates.headroom = out.rates.headroom.max(p.rates.headroom);
    for (c, b) in &p.rates.per_minute {
        let m = out
            .rates
            .per_minute
            .entry(*c)
            .or_insert(RateBudget { peak: 0, budget: 0 });
        m.peak = m.peak.max(b.peak);
        m.budget = m.budget.max(b.budget);
    }
    let pv = &p.provenance;
    out.provenance.hosts.extend(pv.hosts.iter().cloned());
    if out.provenance.started.is_empty()
        || (!pv.started.is_empty() && pv.started < out.provenance.started)
    {
        out.provenance.started = pv.started.clone();
    }
    out.provenance.ended = out.provenance.ended.clone().max(pv.ended.clone());
    for (c, n) in &pv.events {
        *out.provenance.events.entry(*c).or_default() += n;
    }
    out.stability.warmup_secs = out.stability.warmup_secs.max(p.stability.warmup_secs);
    out.stability.quiet_secs = out.stability.quiet_secs.max(p.stability.quiet_secs);
}

/// A class is stable when it was in every merged profile.
fn class_stability(out: &mut Profile, profiles: &[Profile]) {
    let entries = [
        (Class::Exec, out.executables.len()),
        (Class::File, out.files.len() + out.territories.len()),
        (Class::Network, out.network.len()),
        (Class::Dns, out.dns.len()),
    ];
    for (class, n) in entries {
        let stable = profiles
            .iter()
            .all(|p| p.stability.classes.get(&class).is_some_and(|s| s.stable));
        out.stability.classes.insert(
            class,
            ClassStability {
                stable,
                entries: n as u64,
                quiet_sessions: 0,
                novelty: Vec::new(),
            },
        );
    }
}

/// Sessions in a row with nothing new before a class is stable, unless
/// told otherwise (`learn --stable-sessions`, the daemon's
/// `stable_sessions`).
pub const DEFAULT_STABLE_SESSIONS: u32 = 2;

/// Adds one learned session to `base`: the merge of the two, with each
/// class's stability carried across sessions. `novelty` is, per class,
/// how many distinct things the session did that `base` would have
/// flagged; a class is stable once `stable_after` sessions in a row
/// brought nothing new.
pub fn append(
    base: &Profile,
    session: &Profile,
    novelty: &BTreeMap<Class, u64>,
    stable_after: u32,
) -> Result<Profile, MergeError> {
    let mut out = merge(&[base.clone(), session.clone()], Some(&base.agent))?;
    for class in Class::LEARNED {
        let before = base.stability.classes.get(&class);
        let n = novelty.get(&class).copied().unwrap_or(0);
        let mut history: Vec<u64> = before.map(|b| b.novelty.clone()).unwrap_or_default();
        history.push(n);
        let keep = history.len().saturating_sub(8);
        history.drain(..keep);
        let quiet = if n == 0 {
            before.map_or(0, |b| b.quiet_sessions) + 1
        } else {
            0
        };
        let entries = out.stability.classes.get(&class).map_or(0, |c| c.entries);
        out.stability.classes.insert(
            class,
            ClassStability {
                stable: quiet >= stable_after.max(1),
                entries,
                quiet_sessions: quiet,
                novelty: history,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Access;
    use crate::profile::FileRule;

    fn with_files(agent: &str, files: &[(&str, &[Access])]) -> Profile {
        let mut p = Profile::empty(agent);
        p.provenance.sessions = 1;
        p.files = files
            .iter()
            .map(|(path, a)| FileRule {
                path: path.to_string(),
                access: AccessSet::of(a),
                runs: 1,
            })
            .collect();
        p
    }

    #[test]
    fn union_with_run_counts() {
        use Access::*;
        let a = with_files(
            "x",
            &[("/etc/inputrc", &[Read]), ("$WORKSPACE/out", &[Write])],
        );
        let b = with_files(
            "x",
            &[("/etc/inputrc", &[Read]), ("$WORKSPACE/out", &[Create])],
        );
        let m = merge(&[a, b], None).unwrap();
        assert_eq!(m.provenance.sessions, 2);
        let hosts = m.files.iter().find(|f| f.path == "/etc/inputrc").unwrap();
        assert_eq!(hosts.runs, 2);
        let out = m.files.iter().find(|f| f.path == "$WORKSPACE/out").unwrap();
        assert_eq!(out.access, AccessSet::of(&[Write, Create]));
        assert_eq!(out.runs, 2);
    }

    #[test]
    fn siblings_created_one_per_session_become_one_pattern_with_every_access() {
        use Access::*;
        // The case: the pattern another run made keeps only read,
        // while two sessions each created one test file.
        let a = with_files("x", &[("$WORKSPACE/tests/test_*.py", &[Read])]);
        let b = with_files(
            "x",
            &[("$WORKSPACE/tests/test_strutil.py", &[Read, Write, Create])],
        );
        let c = with_files(
            "x",
            &[("$WORKSPACE/tests/test_ops.py", &[Read, Write, Create])],
        );
        let mut m = merge(&[a, b, c], None).unwrap();
        m.granularity = crate::profile::Granularity::Strict;
        assert_eq!(m.files.len(), 1, "{:?}", m.files);
        assert_eq!(m.files[0].path, "$WORKSPACE/tests/test_*.py");
        assert_eq!(m.files[0].access, AccessSet::of(&[Read, Write, Create]));
    }

    #[test]
    fn new_names_across_sessions_make_a_territory() {
        use Access::*;
        let rwc: &[Access] = &[Read, Write, Create];
        let a = with_files("x", &[("$WORKSPACE/README.md", rwc)]);
        let b = with_files("x", &[("$WORKSPACE/docs/api/index.md", rwc)]);
        let c = with_files("x", &[("$WORKSPACE/src/geometry.py", rwc)]);
        let m = merge(&[a, b, c], None).unwrap();
        assert!(m.files.is_empty(), "{:?}", m.files);
        assert_eq!(m.territories.len(), 1);
        assert_eq!(m.territories[0].path, "$WORKSPACE");
    }

    #[test]
    fn resource_budgets_survive_a_merge_the_first_leading() {
        let mut a = with_files("x", &[]);
        a.resources.insert("pids".into(), "64".into());
        let mut b = with_files("x", &[]);
        b.resources.insert("pids".into(), "8".into());
        b.resources.insert("memory".into(), "1G".into());
        let m = merge(&[a, b], None).unwrap();
        assert_eq!(m.resources.get("pids").map(String::as_str), Some("64"));
        assert_eq!(m.resources.get("memory").map(String::as_str), Some("1G"));
    }

    #[test]
    fn one_profile_is_generalised_again() {
        use Access::*;
        let rwc: &[Access] = &[Read, Write, Create];
        let a = with_files(
            "x",
            &[
                ("$WORKSPACE/a.txt", rwc),
                ("$WORKSPACE/b.md", rwc),
                ("$WORKSPACE/c.py", rwc),
            ],
        );
        let m = merge(&[a], None).unwrap();
        assert_eq!(m.territories.len(), 1);
    }

    #[test]
    fn literal_folds_into_a_pattern_of_another_run() {
        use Access::*;
        let a = with_files("x", &[("$WORKSPACE/logs/*.log", &[Write])]);
        let b = with_files("x", &[("$WORKSPACE/logs/a.log", &[Write])]);
        let m = merge(&[a, b], None).unwrap();
        assert_eq!(m.files.len(), 1);
        assert_eq!(
            (m.files[0].path.as_str(), m.files[0].runs),
            ("$WORKSPACE/logs/*.log", 2)
        );
    }

    #[test]
    fn narrower_pattern_folds_into_a_wider_one() {
        use Access::*;
        let a = with_files("x", &[("$WORKSPACE/*/out.log", &[Write])]);
        let b = with_files("x", &[("$WORKSPACE/sess-*/out.log", &[Write])]);
        let m = merge(&[a, b], None).unwrap();
        assert_eq!(m.files.len(), 1);
        assert_eq!(
            (m.files[0].path.as_str(), m.files[0].runs),
            ("$WORKSPACE/*/out.log", 2)
        );
    }

    #[test]
    fn stability_is_counted_across_sessions() {
        let base = with_files("x", &[]);
        let quiet: BTreeMap<Class, u64> = BTreeMap::new();
        let busy: BTreeMap<Class, u64> = [(Class::File, 3)].into_iter().collect();
        let a = append(&base, &with_files("x", &[]), &busy, 2).unwrap();
        let file = &a.stability.classes[&Class::File];
        assert_eq!(
            (file.stable, file.quiet_sessions, file.novelty.clone()),
            (false, 0, vec![3])
        );
        let b = append(&a, &with_files("x", &[]), &quiet, 2).unwrap();
        assert!(!b.stability.classes[&Class::File].stable);
        let c = append(&b, &with_files("x", &[]), &quiet, 2).unwrap();
        let file = &c.stability.classes[&Class::File];
        assert_eq!(
            (file.stable, file.quiet_sessions, file.novelty.clone()),
            (true, 2, vec![3, 0, 0])
        );
        assert_eq!(c.provenance.sessions, 4);
    }

    #[test]
    fn different_agents_need_a_name() {
        let a = with_files("x", &[]);
        let b = with_files("y", &[]);
        assert!(matches!(
            merge(&[a.clone(), b.clone()], None),
            Err(MergeError::Agents(..))
        ));
        assert_eq!(merge(&[a, b], Some("z")).unwrap().agent, "z");
    }
}

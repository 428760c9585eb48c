//! Merging profiles of several runs or replicas of one agent: the union of
//! what each allowed, with per entry the number of runs that saw it.
use std::collections::BTreeMap;

use thiserror::Error;

use super::{
    glob::Glob, AccessSet, Class, ClassStability, DnsRule, Executable, FileRule, NetRule, Profile,
    RateBudget, ReviewItem,
};

#[derive(Debug, Error)]
pub enum MergeError {
    #[error("nothing to merge: give two or more profiles")]
    Empty,
    #[error("profiles are of different agents ({0} and {1}); pass --agent NAME to merge them under one name")]
    Agents(String, String),
}

/// Merges `profiles` into one for `agent` (default: their common agent).
pub fn merge(profiles: &[Profile], agent: Option<&str>) -> Result<Profile, MergeError> {
    let first = profiles.first().ok_or(MergeError::Empty)?;
    if agent.is_none() {
        if let Some(other) = profiles.iter().find(|p| p.agent != first.agent) {
            return Err(MergeError::Agents(first.agent.clone(), other.agent.clone()));
        }
    }
    let mut out = Profile::empty(agent.unwrap_or(&first.agent));
    let sessions: u32 = profiles.iter().map(|p| p.provenance.sessions.max(1)).sum();

    let mut execs: BTreeMap<String, Executable> = BTreeMap::new();
    let mut files: BTreeMap<String, (AccessSet, u32)> = BTreeMap::new();
    let mut net: BTreeMap<(super::Direction, String), NetRule> = BTreeMap::new();
    let mut dns: BTreeMap<String, u32> = BTreeMap::new();
    let mut review: BTreeMap<(String, String), ReviewItem> = BTreeMap::new();
    for p in profiles {
        for e in &p.executables {
            let m = execs.entry(e.path.clone()).or_insert_with(|| Executable {
                path: e.path.clone(),
                sha256: Vec::new(),
                runs: 0,
            });
            m.sha256.extend(e.sha256.iter().cloned());
            m.runs += e.runs;
        }
        for f in &p.files {
            let m = files.entry(f.path.clone()).or_default();
            m.0 = m.0.union(f.access);
            m.1 += f.runs;
        }
        for n in &p.network {
            let m = net.entry(n.key()).or_insert_with(|| NetRule {
                by: Vec::new(),
                runs: 0,
                ..n.clone()
            });
            m.by.extend(n.by.iter().cloned());
            m.runs += n.runs;
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
    out.provenance.sessions = sessions;

    // An entry one run kept and another run generalised further folds
    // into the wider pattern: the runs of both saw it (never more than
    // all). Literals come first in key order, so they fold before the
    // patterns they sit in do.
    let patterns: Vec<(String, Glob)> = files
        .keys()
        .filter(|k| k.contains('*'))
        .filter_map(|k| Glob::parse(k).ok().map(|g| (k.clone(), g)))
        .collect();
    let mut keys: Vec<String> = files.keys().cloned().collect();
    keys.sort_by_key(|k| k.contains('*'));
    for key in keys {
        let (Ok(glob), Some(&(access, runs))) = (Glob::parse(&key), files.get(&key)) else {
            continue;
        };
        let wider = patterns.iter().find(|(k, g)| {
            *k != key
                && g.covers(&glob)
                && !glob.covers(g)
                && files.get(k).is_some_and(|(a, _)| access.is_subset(*a))
        });
        if let Some((k, _)) = wider {
            files.remove(&key);
            if let Some(m) = files.get_mut(k) {
                m.1 = (m.1 + runs).min(sessions);
            }
        }
    }

    out.executables = execs.into_values().collect();
    out.files = files
        .into_iter()
        .map(|(path, (access, runs))| FileRule { path, access, runs })
        .collect();
    out.network = net.into_values().collect();
    out.dns = dns
        .into_iter()
        .map(|(name, runs)| DnsRule { name, runs })
        .collect();
    out.review = review.into_values().collect();
    let entries = [
        (Class::Exec, out.executables.len()),
        (Class::File, out.files.len()),
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
            },
        );
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Access;

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
            &[("/etc/hosts", &[Read]), ("$WORKSPACE/out", &[Write])],
        );
        let b = with_files(
            "x",
            &[("/etc/hosts", &[Read]), ("$WORKSPACE/out", &[Create])],
        );
        let m = merge(&[a, b], None).unwrap();
        assert_eq!(m.provenance.sessions, 2);
        let hosts = m.files.iter().find(|f| f.path == "/etc/hosts").unwrap();
        assert_eq!(hosts.runs, 2);
        let out = m.files.iter().find(|f| f.path == "$WORKSPACE/out").unwrap();
        assert_eq!(out.access, AccessSet::of(&[Write, Create]));
        assert_eq!(out.runs, 2);
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

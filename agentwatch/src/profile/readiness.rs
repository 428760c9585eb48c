//! Is a profile ready to enforce? Estimated by leave-one-session-out
//! replay over recorded sessions: each session in turn is held out, a
//! profile is learned from the others (with the profile's own settings),
//! and the held-out session is judged against it. A session the others
//! would have flagged is a false alarm enforcement would have raised on a
//! normal session.
use std::path::PathBuf;

use serde::Serialize;

use super::{
    builder::LearnConfig,
    guardrails::Guardrails,
    matcher::{Finding, Matcher},
    session::{self, Session, SessionError},
    Profile, Readiness,
};

/// Sessions needed before a verdict can say "ready".
pub const MIN_SESSIONS: usize = 3;

/// One held-out session and what the others would have flagged in it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    pub session: PathBuf,
    pub events: usize,
    /// Distinct findings (rule and what).
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub held_out: Vec<HeldOut>,
    /// The profile in its file, judged against every session.
    pub current_profile_flags: usize,
    pub verdict: Readiness,
}

/// The learning settings a profile was made with.
pub fn config_of(p: &Profile) -> LearnConfig {
    let mut cfg = LearnConfig::new(&p.agent);
    cfg.granularity = p.granularity;
    cfg.overrides = p.overrides.clone();
    cfg.headroom = p.rates.headroom;
    cfg.model_endpoints = p
        .network
        .iter()
        .filter(|n| n.model)
        .map(|n| match n.port {
            Some(port) => format!(
                "{}:{port}",
                n.host.clone().or(n.address.clone()).unwrap_or_default()
            ),
            None => n.host.clone().or(n.address.clone()).unwrap_or_default(),
        })
        .collect();
    cfg
}

/// Distinct findings of `profile` over one session's events.
pub fn judge(profile: &Profile, s: &Session, guardrails: &Guardrails) -> Vec<Finding> {
    let mut m = Matcher::new(profile, s.header.anchors(), guardrails.clone());
    let mut out: Vec<Finding> = Vec::new();
    for ev in &s.events {
        for f in m.check(ev) {
            if !out.iter().any(|x| x.rule == f.rule && x.what == f.what) {
                out.push(f);
            }
        }
    }
    out
}

/// Holds out each session in turn.
pub fn leave_one_out(
    profile: &Profile,
    sessions: &[Session],
    guardrails: &Guardrails,
) -> Result<Report, SessionError> {
    let cfg = config_of(profile);
    let guardrails = guardrails.clone().with_profile(&profile.guardrails, None);
    let mut held_out = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let others: Vec<&Session> = sessions
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s)
            .collect();
        let findings = if others.is_empty() {
            Vec::new()
        } else {
            let learned = session::learn_all(&others, &cfg, &guardrails)?;
            judge(&learned, s, &guardrails)
        };
        held_out.push(HeldOut {
            session: s.path.clone(),
            events: s.events.len(),
            findings,
        });
    }
    let current_profile_flags = sessions
        .iter()
        .filter(|s| !judge(profile, s, &guardrails).is_empty())
        .count();
    let verdict = verdict(&held_out);
    Ok(Report {
        held_out,
        current_profile_flags,
        verdict,
    })
}

fn verdict(held_out: &[HeldOut]) -> Readiness {
    let n = held_out.len();
    let flagged = held_out.iter().filter(|h| !h.findings.is_empty()).count();
    let (ready, reason) = if n < MIN_SESSIONS {
        (
            false,
            format!("only {n} recorded session(s); at least {MIN_SESSIONS} are needed to hold one out and learn from the rest"),
        )
    } else if flagged == 0 {
        (
            true,
            format!("none of {n} held-out sessions would have been flagged by a profile learned from the others"),
        )
    } else {
        let mut rules: Vec<String> = held_out
            .iter()
            .flat_map(|h| h.findings.iter().map(|f| f.rule.name().into_owned()))
            .collect();
        rules.sort_unstable();
        rules.dedup();
        (
            false,
            format!(
                "{flagged} of {n} held-out sessions would have been flagged ({}); learn more sessions (learn --append) or widen with overrides",
                rules.join(", ")
            ),
        )
    };
    Readiness {
        verdict: if ready { "ready" } else { "not-ready" }.into(),
        sessions: n as u32,
        flagged: flagged as u32,
        reason,
        checked: crate::timestamp::profile_time(std::time::SystemTime::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::matcher::Finding;

    fn h(flags: usize) -> HeldOut {
        HeldOut {
            session: "s".into(),
            events: 1,
            findings: (0..flags)
                .map(|i| Finding {
                    rule: crate::profile::rule::Rule::FileUnknown,
                    class: crate::profile::Class::File,
                    what: format!("x{i}"),
                    reason: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_verdict_says_why() {
        let v = verdict(&[h(0), h(0)]);
        assert_eq!(v.verdict, "not-ready");
        assert!(v.reason.contains("at least 3"), "{}", v.reason);
        let v = verdict(&[h(0), h(0), h(0)]);
        assert_eq!((v.verdict.as_str(), v.flagged), ("ready", 0));
        let v = verdict(&[h(0), h(2), h(0), h(1)]);
        assert_eq!((v.verdict.as_str(), v.flagged), ("not-ready", 2));
        assert!(v.reason.contains("2 of 4") && v.reason.contains("file/unknown"));
    }
}

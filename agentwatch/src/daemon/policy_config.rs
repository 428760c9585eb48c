//! The daemon configuration's policy sections: `[alerts]` (repeated
//! alerts folded, the feeds budgeted) and `[identity]` (who agents may run
//! as), read into their types with problems at their lines.
use serde::Deserialize;
use toml::Spanned;

use super::config::Problems;
use crate::enforce::throttle::AlertPolicy;

/// `[alerts]`: how repeated alerts are folded and the feeds budgeted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsDoc {
    window: Option<Spanned<String>>,
    feed_budget: Option<u32>,
}

/// `[identity]`: who agents may run as (`crate::identity`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentityDoc {
    human: Option<Spanned<String>>,
    credentials: Option<Spanned<String>>,
    human_uids: Option<Spanned<String>>,
}

/// `[alerts]`, defaults where it is silent.
pub(super) fn alert_policy(p: &mut Problems, d: Option<&AlertsDoc>) -> AlertPolicy {
    let mut policy = AlertPolicy::default();
    let Some(d) = d else {
        return policy;
    };
    if let Some(w) = &d.window {
        match AlertPolicy::parse_window(w.get_ref()) {
            Ok(window) => policy.window = window,
            Err(e) => p.at(Some(w.span()), format!("alerts window: {e}")),
        }
    }
    if let Some(n) = d.feed_budget {
        policy.feed_budget = AlertPolicy::budget(n);
    }
    policy
}

/// `[identity]`, defaults where it is silent (alert on both).
pub(super) fn identity_policy(
    p: &mut Problems,
    d: Option<&IdentityDoc>,
) -> crate::identity::Policy {
    let mut policy = crate::identity::Policy::default();
    let Some(d) = d else {
        return policy;
    };
    for (field, slot) in [
        (&d.human, &mut policy.human),
        (&d.credentials, &mut policy.credentials),
    ] {
        if let Some(v) = field {
            match v.get_ref().parse() {
                Ok(act) => *slot = act,
                Err(e) => p.at(Some(v.span()), format!("identity: {e}")),
            }
        }
    }
    if let Some(r) = &d.human_uids {
        match crate::identity::parse_range(r.get_ref()) {
            Ok(range) => policy.human_uids = range,
            Err(e) => p.at(Some(r.span()), format!("identity human_uids: {e}")),
        }
    }
    policy
}

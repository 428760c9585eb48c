//! `doctor --config FILE`: who each configured agent runs as, read from
//! its selectors before it runs: a `user` selector names the account, a
//! systemd unit's `User=` does, and a cgroup inside a login session is a
//! person's. Judged as the daemon judges a running agent
//! (`crate::identity`) under the configuration's `[identity]`.
use serde::Serialize;

use crate::{
    daemon::config::Config,
    identity::{Account, Seen},
    selectors::Selector,
};

/// A UID no selector resolved to (none in any human range).
const UNKNOWN: u32 = u32::MAX;

#[derive(Debug, Serialize, PartialEq)]
pub struct AgentIdentity {
    pub agent: String,
    pub selector: String,
    pub uid: Option<u32>,
    pub user: Option<String>,
    /// A person's account, and why.
    pub human: bool,
    pub why: Vec<String>,
}

/// Every agent's selectors that say who it runs as.
pub fn check(cfg: &Config) -> Vec<AgentIdentity> {
    let mut out = Vec::new();
    for a in &cfg.agents {
        for s in &a.selectors {
            if let Some(seen) = seen_of(s) {
                let why = seen.human(&cfg.identity);
                out.push(AgentIdentity {
                    agent: a.name.clone(),
                    selector: describe(s),
                    uid: (seen.account.uid != UNKNOWN).then_some(seen.account.uid),
                    user: seen.account.name.clone(),
                    human: !why.is_empty(),
                    why,
                });
            }
        }
    }
    out
}

/// What a selector says of the identity; None when nothing (an exe).
fn seen_of(s: &Selector) -> Option<Seen> {
    match s {
        Selector::Uid(u) => Some(account_named(u)),
        Selector::SystemdUnit(unit) => {
            let out = std::process::Command::new("systemctl")
                .args(["show", "-p", "User", "--value", unit])
                .output()
                .ok()?;
            let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // No User= runs the unit as root.
            Some(account_named(if user.is_empty() { "root" } else { &user }))
        }
        Selector::Cgroup(path) => Some(Seen {
            account: Account {
                // The cgroup alone says only whether it is a session's.
                uid: UNKNOWN,
                ..Account::default()
            },
            cgroup: Some(path.clone()),
            ..Seen::default()
        }),
        Selector::Exe(_) => None,
    }
}

fn account_named(u: &str) -> Seen {
    let account = match Selector::Uid(u.to_string()).resolve(None) {
        Ok(crate::selectors::Resolved::Uid(uid)) => Account::of_uid(uid),
        _ => Account {
            uid: UNKNOWN,
            name: Some(u.to_string()),
            ..Account::default()
        },
    };
    Seen {
        account,
        ..Seen::default()
    }
}

fn describe(s: &Selector) -> String {
    match s {
        Selector::Uid(u) => format!("user={u}"),
        Selector::SystemdUnit(u) => format!("unit={u}"),
        Selector::Cgroup(c) => format!("cgroup={c}"),
        Selector::Exe(e) => format!("exe={}", e.display()),
    }
}

/// The lines `doctor` prints.
pub fn print(found: &[AgentIdentity]) {
    println!("\nagent identities (from the configuration's selectors):");
    if found.is_empty() {
        println!("  no selector names an account (exe selectors say nothing of it)");
    }
    for f in found {
        let who = f
            .user
            .clone()
            .unwrap_or_else(|| "an unknown account".into());
        if f.human {
            println!(
                "  NO   {} ({}) runs as {who}, a person's account: {}",
                f.agent,
                f.selector,
                f.why.join("; ")
            );
        } else {
            println!(
                "  ok   {} ({}) runs as {who}, not a person's account",
                f.agent, f.selector
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_names_the_account_and_a_person_is_told() {
        let policy = crate::identity::Policy::default();
        let root = seen_of(&Selector::Uid("root".into())).unwrap();
        assert_eq!(root.account.uid, 0);
        assert!(root.human(&policy).is_empty());
        let person = seen_of(&Selector::Uid("1500".into())).unwrap();
        assert_eq!(
            person.human(&policy).len(),
            1,
            "uid 1500 is in the human range"
        );
        let session = seen_of(&Selector::Cgroup(
            "/user.slice/user-1000.slice/session-2.scope".into(),
        ))
        .unwrap();
        assert!(session.human(&policy)[0].contains("login session"));
        assert!(seen_of(&Selector::Exe("/usr/bin/x".into())).is_none());
    }
}

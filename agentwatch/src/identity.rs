//! Who an agent runs as. Governance asks that an agent use a service
//! account, not a person's: this says when an agent's process runs as a
//! person's account (a UID in the human range, a login account with a home
//! under /home and a shell, or a process in an interactive login session)
//! and when a person's credentials are within its reach (an SSH agent
//! socket in its environment; a person's cloud, cluster, SSH or git
//! credentials in the home of the account it runs as).
//!
//! The `[identity]` policy (daemon) or `run --identity` turns a finding
//! into an alert, or a refusal (the agent's processes are killed), or
//! nothing; every identity an agent ran as is audited either way.
use std::{ops::RangeInclusive, path::Path};

use serde_json::{json, Value};
use thiserror::Error;

/// What a finding leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Act {
    Off,
    #[default]
    Alert,
    /// The agent's processes are killed.
    Refuse,
}

#[derive(Debug, Error, PartialEq)]
pub enum IdentityError {
    #[error("{0:?} is not an identity action: use off, alert or refuse")]
    Act(String),
    #[error("{0:?} is not a UID range: write FIRST-LAST, as 1000-60000")]
    Range(String),
}

impl std::str::FromStr for Act {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Act::Off),
            "alert" => Ok(Act::Alert),
            "refuse" => Ok(Act::Refuse),
            _ => Err(IdentityError::Act(s.into())),
        }
    }
}

impl Act {
    pub fn name(self) -> &'static str {
        match self {
            Act::Off => "off",
            Act::Alert => "alert",
            Act::Refuse => "refuse",
        }
    }
}

/// The `[identity]` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// An agent running as a person's account.
    pub human: Act,
    /// A person's credentials within the agent's reach.
    pub credentials: Act,
    /// UIDs that belong to people (Debian's and most distributions' range
    /// for accounts made by `adduser`).
    pub human_uids: RangeInclusive<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            human: Act::Alert,
            credentials: Act::Alert,
            human_uids: 1000..=60000,
        }
    }
}

/// "1000-60000" as a range.
pub fn parse_range(s: &str) -> Result<RangeInclusive<u32>, IdentityError> {
    let bad = || IdentityError::Range(s.into());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u32, u32) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

/// An account as /etc/passwd has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub name: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
}

impl Account {
    pub fn of_uid(uid: u32) -> Account {
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => Account {
                uid,
                name: Some(u.name),
                home: Some(u.dir.display().to_string()),
                shell: Some(u.shell.display().to_string()),
            },
            _ => Account {
                uid,
                ..Account::default()
            },
        }
    }

    fn login_shell(&self) -> bool {
        self.shell.as_deref().is_some_and(|s| {
            !s.is_empty() && !s.ends_with("/nologin") && !s.ends_with("/false") && s != "/bin/sync"
        })
    }
}

/// What is known of one process's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub account: Account,
    /// The process's cgroup path (v2), to spot a login session.
    pub cgroup: Option<String>,
    /// `SSH_AUTH_SOCK` from its environment.
    pub ssh_agent: Option<String>,
    /// A person's credential files in the account's home, as found.
    pub home_credentials: Vec<String>,
}

/// Credential files of a person, relative to their home.
const CREDENTIAL_FILES: &[&str] = &[
    ".aws/credentials",
    ".aws/config",
    ".kube/config",
    ".ssh/id_rsa",
    ".ssh/id_ed25519",
    ".ssh/id_ecdsa",
    ".config/gcloud/credentials.db",
    ".azure/accessTokens.json",
    ".docker/config.json",
    ".git-credentials",
    ".netrc",
];

impl Seen {
    /// Reads what /proc and the account's home say of `pid` running as
    /// `uid`. A process already gone leaves the environment and cgroup
    /// unknown; the account is still judged.
    pub fn of_process(pid: u32, uid: u32) -> Seen {
        let account = Account::of_uid(uid);
        let proc = Path::new("/proc").join(pid.to_string());
        let cgroup = std::fs::read_to_string(proc.join("cgroup"))
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .map(str::to_string)
            });
        let ssh_agent = std::fs::read(proc.join("environ")).ok().and_then(|env| {
            env.split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"SSH_AUTH_SOCK="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        let home_credentials = account
            .home
            .as_deref()
            .filter(|h| h.starts_with("/home/"))
            .map(|h| {
                CREDENTIAL_FILES
                    .iter()
                    .map(|f| format!("{h}/{f}"))
                    .filter(|p| Path::new(p).exists())
                    .collect()
            })
            .unwrap_or_default();
        Seen {
            account,
            cgroup,
            ssh_agent,
            home_credentials,
        }
    }

    /// Why the account is a person's (empty: it is not).
    pub fn human(&self, policy: &Policy) -> Vec<String> {
        let a = &self.account;
        let who = a.name.clone().unwrap_or_else(|| format!("uid {}", a.uid));
        let mut why = Vec::new();
        if policy.human_uids.contains(&a.uid) {
            why.push(format!(
                "uid {} is in the range of people's accounts ({}-{})",
                a.uid,
                policy.human_uids.start(),
                policy.human_uids.end()
            ));
        }
        if let Some(h) = a.home.as_deref().filter(|h| h.starts_with("/home/")) {
            if a.login_shell() {
                why.push(format!(
                    "{who} logs in: a home under /home ({h}) and a shell ({})",
                    a.shell.as_deref().unwrap_or("")
                ));
            }
        }
        if let Some(c) = self.cgroup.as_deref().filter(|c| is_login_session(c)) {
            why.push(format!("it runs in an interactive login session ({c})"));
        }
        why
    }

    /// A person's credentials within the agent's reach (empty: none).
    pub fn credentials(&self, human: bool) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(s) = &self.ssh_agent {
            found.push(format!("an SSH agent socket (SSH_AUTH_SOCK={s})"));
        }
        // A service account's own files are its own; a person's are not.
        if human {
            found.extend(self.home_credentials.iter().cloned());
        }
        found
    }

    /// The `identity` audit record, and the finding's words when one is to
    /// be raised under `policy`: (record, Some((rule, what, act))).
    pub fn judge(&self, agent: &str, policy: &Policy) -> (Value, Option<(String, String, Act)>) {
        let human = self.human(policy);
        let creds = self.credentials(!human.is_empty());
        let a = &self.account;
        let record = json!({
            "type": "identity",
            "agent": agent,
            "uid": a.uid,
            "user": a.name,
            "home": a.home,
            "human": !human.is_empty(),
            "why": human,
            "credentials": creds,
        });
        let who = a.name.clone().unwrap_or_else(|| format!("uid {}", a.uid));
        let finding = if !human.is_empty() && policy.human != Act::Off {
            let what = format!(
                "runs as {who}, a person's account, not a service account: {}",
                human.join("; ")
            );
            Some(("identity/human".to_string(), what, policy.human))
        } else if !creds.is_empty() && policy.credentials != Act::Off {
            let what = format!(
                "can reach a person's credentials as {who}: {}",
                creds.join(", ")
            );
            Some(("identity/credentials".to_string(), what, policy.credentials))
        } else {
            None
        };
        (record, finding)
    }
}

/// systemd puts login sessions in `user-UID.slice/session-N.scope`.
fn is_login_session(cgroup: &str) -> bool {
    cgroup.contains("/user.slice/")
        && cgroup
            .split('/')
            .any(|p| p.starts_with("session-") && p.ends_with(".scope"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(uid: u32, home: &str, shell: &str) -> Seen {
        Seen {
            account: Account {
                uid,
                name: Some("alice".into()),
                home: Some(home.into()),
                shell: Some(shell.into()),
            },
            ..Seen::default()
        }
    }

    #[test]
    fn a_person_is_told_from_a_service_account() {
        let p = Policy::default();
        let alice = seen(1000, "/home/alice", "/bin/bash");
        assert_eq!(alice.human(&p).len(), 2, "{:?}", alice.human(&p));
        let svc = seen(998, "/var/lib/agent", "/usr/sbin/nologin");
        assert!(svc.human(&p).is_empty());
        // Outside the range but a login account with a home under /home.
        let odd = seen(70000, "/home/bob", "/bin/zsh");
        assert_eq!(odd.human(&p).len(), 1);
        // A login shell alone (root) is not a person.
        assert!(seen(0, "/root", "/bin/bash").human(&p).is_empty());
        let mut session = svc.clone();
        session.cgroup = Some("/user.slice/user-998.slice/session-4.scope".into());
        assert_eq!(session.human(&p).len(), 1);
    }

    #[test]
    fn findings_follow_the_policy_and_the_record_is_always_there() {
        let mut alice = seen(1000, "/home/alice", "/bin/bash");
        alice.home_credentials = vec!["/home/alice/.aws/credentials".into()];
        let (rec, f) = alice.judge("bot", &Policy::default());
        assert_eq!(rec["human"], true);
        assert_eq!(rec["credentials"][0], "/home/alice/.aws/credentials");
        let (rule, what, act) = f.unwrap();
        assert_eq!((rule.as_str(), act), ("identity/human", Act::Alert));
        assert!(
            what.starts_with("runs as alice, a person's account"),
            "{what}"
        );

        let off = Policy {
            human: Act::Off,
            ..Policy::default()
        };
        let (_, f) = alice.judge("bot", &off);
        assert_eq!(f.unwrap().0, "identity/credentials");

        let mut svc = seen(998, "/var/lib/agent", "/usr/sbin/nologin");
        let (rec, f) = svc.judge("bot", &Policy::default());
        assert_eq!((rec["human"].clone(), f), (json!(false), None));
        svc.ssh_agent = Some("/tmp/ssh-x/agent.1".into());
        let (_, f) = svc.judge("bot", &Policy::default());
        assert_eq!(f.unwrap().0, "identity/credentials");
    }

    #[test]
    fn policy_words_parse_or_say_what_to_write() {
        assert_eq!("refuse".parse::<Act>(), Ok(Act::Refuse));
        assert!("block"
            .parse::<Act>()
            .unwrap_err()
            .to_string()
            .contains("off, alert or refuse"));
        assert_eq!(parse_range("1000-60000"), Ok(1000..=60000));
        assert!(parse_range("60000-1000").is_err());
        assert!(parse_range("1000").is_err());
    }
}

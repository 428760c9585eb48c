//! Approval requests: one per pause, listed by `agentwatch pending`,
//! resolved by `approve`, `deny` or the timeout (silence is a no).
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{
    event::Ancestor,
    profile::{AccessSet, NetRule},
};

impl Subject {
    /// What the person answering was shown of the context: it, and the
    /// sha256 of its JSON text. None without a context.
    pub fn shown(&self) -> Option<serde_json::Value> {
        let c = self.context.as_ref()?;
        let hash = crate::hex::sha256(c.to_string().as_bytes());
        Some(serde_json::json!({"sha256": hash, "context": c}))
    }
}

/// What `approve --learn` adds to the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnEntry {
    File {
        path: String,
        access: AccessSet,
    },
    Exec {
        path: String,
    },
    Net(NetRule),
    Dns {
        name: String,
    },
    /// A model file and its sha256, approved.
    Model(crate::profile::pinned::ModelRule),
    /// An instruction file pinned at its new content.
    Instruction(crate::profile::pinned::Instruction),
}

/// Who did what, and why it was stopped: what a request is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subject {
    pub agent: String,
    pub pid: u32,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub ancestry: Vec<Ancestor>,
    /// The rule that fired (`file/unknown`, `guardrail/secrets`, ...).
    pub rule: String,
    /// What the agent did, as a reviewer reads it.
    pub what: String,
    pub reason: String,
    /// The event that raised it, as `trace --json` writes events.
    pub evidence: serde_json::Value,
    /// Why the agent was doing it, as far as its model traffic tells
    /// (`crate::intent`): what the person deciding is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// What `approve --learn` adds (never for guardrails).
    #[serde(skip)]
    pub learn: Option<LearnEntry>,
    /// The guardrail shield's mount that refused the call (a guardrail's,
    /// or a directory's on the way to some), in the agent's mount
    /// namespace: approving lifts it, with what is bound beneath it, so a
    /// retry goes through (`sandbox::shield::lift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifts: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// `<agent>-<n>`: the agent routes `approve`/`deny` to its run.
    pub id: String,
    #[serde(flatten)]
    pub subject: Subject,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which the tree is killed.
    pub deadline: u64,
    /// Whether `--learn` can add an entry.
    pub learnable: bool,
    #[serde(skip)]
    expires: Option<Instant>,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Approved,
    Denied,
    TimedOut,
}

#[derive(Debug, Default)]
pub struct Approvals {
    next: u64,
    open: Vec<Request>,
    /// Where the open requests are kept, rewritten on every change (the
    /// daemon's, so a restart adopts them).
    file: Option<std::path::PathBuf>,
}

/// Open requests as the daemon's state file keeps them across restarts:
/// with what `--learn` would add, which `pending` does not show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub next: u64,
    pub open: Vec<StoredRequest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub request: serde_json::Value,
    pub learn: Option<LearnEntry>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Approvals {
    /// Opens a request that expires after `timeout`; returns its id.
    pub fn open(&mut self, subject: Subject, timeout: Duration) -> String {
        self.next += 1;
        let id = format!("{}-{}", subject.agent, self.next);
        let now = unix_now();
        self.open.push(Request {
            id: id.clone(),
            created: now,
            deadline: now + timeout.as_secs(),
            learnable: subject.learn.is_some(),
            subject,
            expires: Some(Instant::now() + timeout),
        });
        self.changed();
        id
    }

    pub fn list(&self) -> &[Request] {
        &self.open
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Removes and returns request `id`.
    pub fn take(&mut self, id: &str) -> Option<Request> {
        let i = self.open.iter().position(|r| r.id == id)?;
        let r = self.open.remove(i);
        self.changed();
        Some(r)
    }

    /// Removes every request (the tree was killed or resumed by hand).
    pub fn take_all(&mut self) -> Vec<Request> {
        let all = std::mem::take(&mut self.open);
        self.changed();
        all
    }

    /// Resolves every open request; their ids.
    pub fn take_all_ids(&mut self) -> Vec<String> {
        self.take_all().into_iter().map(|r| r.id).collect()
    }

    /// What to keep across a restart.
    pub fn stored(&self) -> Stored {
        Stored {
            next: self.next,
            open: self
                .open
                .iter()
                .map(|r| StoredRequest {
                    request: serde_json::to_value(r).unwrap_or_default(),
                    learn: r.subject.learn.clone(),
                })
                .collect(),
        }
    }

    /// Requests kept by `stored`, their deadlines running on from where
    /// they were (in wall-clock time). Unreadable ones are skipped.
    pub fn restore(s: Stored) -> Self {
        let now = unix_now();
        let open = s
            .open
            .into_iter()
            .filter_map(|sr| {
                let mut r: Request = serde_json::from_value(sr.request).ok()?;
                r.subject.learn = sr.learn;
                let left = Duration::from_secs(r.deadline.saturating_sub(now));
                r.expires = Some(Instant::now() + left);
                Some(r)
            })
            .collect();
        Self {
            next: s.next,
            open,
            file: None,
        }
    }

    /// Requests kept in `file`: with `adopt`, starting from what it holds
    /// (an unreadable file is said and starts empty); else empty. Every
    /// change is written to it before the change is acknowledged.
    pub fn kept_in(file: std::path::PathBuf, adopt: bool) -> Self {
        let stored = match std::fs::read_to_string(&file) {
            Ok(text) if adopt => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), error = %e, "cannot read the kept approval requests; starting with none");
                Stored::default()
            }),
            _ => Stored::default(),
        };
        let mut me = Self::restore(stored);
        me.file = Some(file);
        me.changed();
        me
    }

    /// Writes the open requests to the file they are kept in, if any.
    fn changed(&self) {
        let Some(file) = &self.file else { return };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = serde_json::to_string(&self.stored()).map_err(std::io::Error::other)?;
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, file)
        };
        if let Err(e) = write() {
            tracing::warn!(file = %file.display(), error = %e, "cannot keep the approval requests; a restart would not find them");
        }
    }

    /// Whether any request has passed its deadline.
    pub fn any_expired(&self) -> bool {
        let now = Instant::now();
        self.open
            .iter()
            .any(|r| r.expires.is_some_and(|e| e <= now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(agent: &str) -> Subject {
        Subject {
            agent: agent.into(),
            pid: 1,
            comm: "sh".into(),
            exe: None,
            ancestry: Vec::new(),
            rule: "file/unknown".into(),
            what: "write /x".into(),
            reason: "no rule".into(),
            evidence: serde_json::Value::Null,
            context: None,
            learn: None,
            lifts: None,
        }
    }

    #[test]
    fn stored_requests_come_back_with_their_ids_learn_entries_and_deadlines() {
        let mut a = Approvals::default();
        let mut s = req("bot");
        s.learn = Some(LearnEntry::File {
            path: "$WORKSPACE/x".into(),
            access: AccessSet::of(&[crate::profile::Access::Read]),
        });
        s.lifts = Some("/w/.git/hooks".into());
        a.open(s, Duration::from_secs(300));
        a.open(req("bot"), Duration::ZERO);
        let text = serde_json::to_string(&a.stored()).unwrap();
        let mut b = Approvals::restore(serde_json::from_str(&text).unwrap());
        assert_eq!(b.list().len(), 2);
        assert!(b.any_expired(), "the zero-timeout request expired already");
        let r = b.take("bot-1").unwrap();
        assert!(r.learnable);
        assert_eq!(r.subject.learn, a.list()[0].subject.learn);
        // What an approval lifts survives a restart too.
        assert_eq!(r.subject.lifts.as_deref(), Some("/w/.git/hooks"));
        assert_eq!(r.deadline, a.list()[0].deadline);
        // Numbering goes on after the restored ones.
        assert_eq!(b.open(req("bot"), Duration::from_secs(1)), "bot-3");
    }

    #[test]
    fn kept_requests_are_on_disk_at_every_change() {
        let file = std::env::temp_dir().join(format!("aw-approvals-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let mut a = Approvals::kept_in(file.clone(), false);
        a.open(req("bot"), Duration::from_secs(300));
        // A daemon killed now: its successor finds the request.
        let b = Approvals::kept_in(file.clone(), true);
        assert_eq!(b.list().len(), 1);
        a.take("bot-1");
        assert!(Approvals::kept_in(file.clone(), true).is_empty());
        // Not adopting starts empty, whatever the file says.
        a.open(req("bot"), Duration::from_secs(300));
        assert!(Approvals::kept_in(file.clone(), false).is_empty());
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn ids_name_the_agent_and_requests_expire() {
        let mut a = Approvals::default();
        let id = a.open(req("bot"), Duration::from_secs(300));
        assert_eq!(id, "bot-1");
        assert!(!a.any_expired());
        a.open(req("bot"), Duration::ZERO);
        assert!(a.any_expired());
        assert!(a.take("bot-1").is_some());
        assert!(a.take("bot-1").is_none());
        assert_eq!(a.take_all().len(), 1);
        assert!(a.is_empty());
    }
}

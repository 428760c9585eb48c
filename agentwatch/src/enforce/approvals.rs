//! Approval requests: one per pause, listed by `agentwatch pending`,
//! resolved by `approve`, `deny` or the timeout (silence is a no).
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::{
    event::Ancestor,
    profile::{AccessSet, NetRule},
};

/// What `approve --learn` adds to the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnEntry {
    File { path: String, access: AccessSet },
    Exec { path: String },
    Net(NetRule),
    Dns { name: String },
}

/// Who did what, and why it was stopped: what a request is about.
#[derive(Debug, Clone, Serialize)]
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
    /// What `approve --learn` adds (never for guardrails).
    #[serde(skip)]
    pub learn: Option<LearnEntry>,
}

#[derive(Debug, Clone, Serialize)]
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
        Some(self.open.remove(i))
    }

    /// Removes every request (the tree was killed or resumed by hand).
    pub fn take_all(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.open)
    }

    /// Resolves every open request; their ids.
    pub fn take_all_ids(&mut self) -> Vec<String> {
        self.take_all().into_iter().map(|r| r.id).collect()
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
            learn: None,
        }
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

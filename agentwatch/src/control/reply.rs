//! What a control socket answers, typed: one JSON object per line with
//! `ok` and, by request, a message, an error, the open approval
//! requests, one agent's status, or the daemon's.
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::enforce::{agent::Stats, approvals::Request as Approval};

/// One agent's state, as `agentwatch status` shows it.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    pub agent: String,
    pub mode: &'static str,
    pub paused: bool,
    /// Open approval requests.
    pub pending: usize,
    pub processes: usize,
    pub stats: Stats,
    /// Shadow learning's progress, when the agent learns.
    pub learning: Option<serde_json::Value>,
    /// The session under way: what the agent did so far within its
    /// profile (an `activity` record, `ended: false`).
    pub session: Option<serde_json::Value>,
}

/// A control socket's answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Done; what was done.
    Done(String),
    /// Refused or failed; why, and what to do.
    Failed(String),
    /// The open approval requests.
    Pending(Vec<Approval>),
    Status(Box<AgentStatus>),
    /// The daemon's status: its pid and every agent's.
    Daemon {
        pid: u32,
        agents: Vec<AgentStatus>,
    },
    /// What `agentwatch exec` starts an agent's process with.
    Launch {
        profile: String,
        mode: &'static str,
        /// The classes Landlock is to hold (`sandbox::Held::names`).
        held: Vec<&'static str>,
        /// The profile allows io_uring.
        io_uring: bool,
        /// The profile allows raw and packet sockets.
        raw_sockets: bool,
        /// The guardrails inside the agent's tree are to be bound
        /// read-only (`sandbox::shield`).
        shield: bool,
    },
}

/// An action's outcome: what was done, or why not (the error's text).
impl<E: std::fmt::Display> From<Result<String, E>> for Reply {
    fn from(r: Result<String, E>) -> Self {
        match r {
            Ok(m) => Reply::Done(m),
            Err(e) => Reply::Failed(e.to_string()),
        }
    }
}

impl Serialize for AgentStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("agent", &self.agent)?;
        if let Some(l) = &self.learning {
            m.serialize_entry("learning", l)?;
        }
        m.serialize_entry("mode", self.mode)?;
        m.serialize_entry("ok", &true)?;
        m.serialize_entry("paused", &self.paused)?;
        m.serialize_entry("pending", &self.pending)?;
        m.serialize_entry("processes", &self.processes)?;
        if let Some(a) = &self.session {
            m.serialize_entry("session", a)?;
        }
        m.serialize_entry("stats", &self.stats)?;
        m.end()
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Reply::Status(st) = self {
            return st.serialize(s);
        }
        let mut m = s.serialize_map(None)?;
        match self {
            Reply::Done(msg) => {
                m.serialize_entry("message", msg)?;
                m.serialize_entry("ok", &true)?;
            }
            Reply::Failed(err) => {
                m.serialize_entry("error", err)?;
                m.serialize_entry("ok", &false)?;
            }
            Reply::Pending(p) => {
                m.serialize_entry("ok", &true)?;
                m.serialize_entry("pending", p)?;
            }
            Reply::Daemon { pid, agents } => {
                m.serialize_entry("agents", agents)?;
                m.serialize_entry("daemon", &serde_json::json!({ "pid": pid }))?;
                m.serialize_entry("ok", &true)?;
            }
            Reply::Launch {
                profile,
                mode,
                held,
                io_uring,
                raw_sockets,
                shield,
            } => {
                m.serialize_entry("held", held)?;
                m.serialize_entry("io_uring", io_uring)?;
                m.serialize_entry("mode", mode)?;
                m.serialize_entry("ok", &true)?;
                m.serialize_entry("profile", profile)?;
                m.serialize_entry("raw_sockets", raw_sockets)?;
                m.serialize_entry("shield", shield)?;
            }
            Reply::Status(_) => {}
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format clients read: `ok` always, and the fields each
    /// request has always answered with.
    #[test]
    fn replies_keep_their_wire_fields() {
        let v = |r: Reply| serde_json::to_value(r).unwrap();
        assert_eq!(
            v(Reply::Done("x".into())),
            serde_json::json!({"ok": true, "message": "x"})
        );
        assert_eq!(
            v(Reply::Failed("no".into())),
            serde_json::json!({"ok": false, "error": "no"})
        );
        assert_eq!(
            v(Reply::Pending(Vec::new())),
            serde_json::json!({"ok": true, "pending": []})
        );
        let st = AgentStatus {
            agent: "coder".into(),
            mode: "enforce",
            paused: true,
            pending: 1,
            processes: 3,
            stats: Stats::default(),
            learning: None,
            session: None,
        };
        let d = v(Reply::Daemon {
            pid: 7,
            agents: vec![st.clone()],
        });
        assert_eq!(d["daemon"]["pid"], 7);
        assert_eq!(d["agents"][0]["agent"], "coder");
        assert_eq!(d["agents"][0]["pending"], 1);
        let s = v(Reply::Status(Box::new(st)));
        assert_eq!(s["ok"], true);
        assert_eq!(s["paused"], true);
        assert_eq!(s["processes"], 3);
        assert!(s.get("learning").is_none());
    }
}

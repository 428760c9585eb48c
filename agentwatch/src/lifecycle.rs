//! What `agentwatch run` and `agentwatch daemon` share from start to end:
//! the enforcers by agent name, the sink that hands each event to its
//! agent's enforcer (and audits what was lost), the signals that stop or
//! reload them told from an agent's own tampering, the periodic turn that
//! resolves timed-out approvals, and the end that drains the pipeline and
//! closes learning sessions.
//!
//! `run` is the one-agent case: it starts its command and ends with it;
//! the daemon starts every agent its configuration selects and ends on a
//! stop signal. Everything in between is here.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
};

use serde_json::json;
use tracing::warn;

use crate::{
    enforce::{agent::AgentEnforcer, audit_trail::SharedAudit},
    event::{Detail, Event},
    feeds::Feeds,
    pipeline::{Counts, Pipeline},
    sinks::Sink,
};

/// The enforcers by agent name, shared by the pipeline, control and main
/// threads.
pub type Agents = Arc<RwLock<BTreeMap<String, Arc<Mutex<AgentEnforcer>>>>>;

/// What the sink counted, for metrics.
#[derive(Default)]
pub struct SinkCounters {
    /// Events judged in userspace.
    pub events: AtomicU64,
    /// Lost records by (stage, reason).
    pub lost: Mutex<BTreeMap<(String, String), u64>>,
}

impl SinkCounters {
    pub fn lost(&self, stage: &str, reason: &str, count: u64) {
        if let Ok(mut m) = self.lost.lock() {
            *m.entry((stage.to_string(), reason.to_string()))
                .or_default() += count;
        }
    }
}

/// Judges every event in its agent's enforcer. A loss is warned about,
/// counted and appended to the audit log, so the log says where its
/// record of the agent has a hole.
pub struct AgentsSink {
    pub agents: Agents,
    pub audit: Option<SharedAudit>,
    /// The daemon's SOC feeds (every event goes to them); none in `run`.
    pub feeds: Option<Arc<Feeds>>,
    pub counters: Arc<SinkCounters>,
}

impl Sink for AgentsSink {
    fn emit(&mut self, ev: &Event) -> std::io::Result<()> {
        if let Detail::Loss {
            stage,
            reason,
            count,
        } = &ev.detail
        {
            warn!(%stage, %reason, count, "events lost");
            self.counters.lost(stage, reason, *count);
            record(
                self.audit.as_ref(),
                json!({"type": "loss", "stage": stage, "reason": reason, "count": count}),
            );
            return Ok(());
        }
        let enforcer = self
            .agents
            .read()
            .map_err(|_| std::io::Error::other("agents lock poisoned"))?
            .get(&ev.agent)
            .cloned();
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = &self.feeds {
            f.event(ev);
        }
        // None: the agent was removed by a reload while its events were in flight.
        if let Some(e) = enforcer {
            e.lock()
                .map_err(|_| std::io::Error::other("enforcer lock poisoned"))?
                .handle(ev);
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends a record of agentwatch itself (not of one agent) to the audit log.
pub fn record(audit: Option<&SharedAudit>, r: serde_json::Value) {
    if let Some(a) = audit {
        if let Ok(mut w) = a.lock() {
            w.record(r);
        }
    }
}

/// `f` on each agent's enforcer, in name order.
pub fn each_agent(agents: &Agents, mut f: impl FnMut(&mut AgentEnforcer)) {
    let all: Vec<_> = match agents.read() {
        Ok(a) => a.values().cloned().collect(),
        Err(_) => return,
    };
    for e in all {
        if let Ok(mut e) = e.lock() {
            f(&mut e);
        }
    }
}

/// What the signals caught since the last turn ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Nothing,
    /// Read the configuration again; the sender's pid.
    Reload(i32),
    /// End; the sender's pid.
    Stop(i32),
}

/// The signals a long-running command answers. Each records its sender,
/// so one sent by a process of an agent (trying to end its monitor) is
/// ignored and said instead of obeyed.
pub struct Signals {
    stop: &'static [libc::c_int],
    reload: &'static [libc::c_int],
}

impl Signals {
    /// Catches `stop` and `reload` from now on: one that arrives while
    /// loading is answered by the first turn, not by the default action.
    pub fn catch(stop: &'static [libc::c_int], reload: &'static [libc::c_int]) -> Self {
        crate::signals::catch(stop);
        crate::signals::catch(reload);
        Self { stop, reload }
    }

    /// What was asked since the last call; `is_agent` tells a sender that
    /// is a watched process.
    pub fn asked(&self, is_agent: impl Fn(u32) -> bool) -> Asked {
        let from_agent = |pid: i32| {
            let agent = pid > 1 && is_agent(pid as u32);
            if agent {
                warn!(pid, "ignored a signal from a process of an agent");
                eprintln!("agentwatch: ignored a signal from pid {pid}, a process of an agent");
            }
            agent
        };
        if let Some(pid) = crate::signals::take(self.stop).filter(|p| !from_agent(*p)) {
            return Asked::Stop(pid);
        }
        if let Some(pid) = crate::signals::take(self.reload).filter(|p| !from_agent(*p)) {
            return Asked::Reload(pid);
        }
        Asked::Nothing
    }
}

/// One turn of the main loop for every agent: requests past their
/// timeout are denied (the tree killed), requests of an agent with no
/// process left are closed, finished learning sessions appended; what
/// happened is said on stderr.
pub fn turn(agents: &Agents) {
    each_agent(agents, |e| {
        if let Some(msg) = e.check_timeouts() {
            eprintln!("agentwatch: {}: {msg}", e.name());
        }
    });
}

/// The end: every record the ring buffer holds is read and judged, then
/// the learning sessions under way are appended to their profiles.
/// Returns the pipeline's counts.
pub fn drain(pipeline: Pipeline, agents: &Agents) -> Counts {
    let counts = pipeline.finish();
    each_agent(agents, |e| {
        // A reader held for its pinned file's hash is never left held.
        e.finish_hashing(true);
        e.drain_alerts();
        // Budgets reached in the last second are reported too; then the
        // agent's cgroup goes (the process exits without dropping it).
        e.tick_bounds();
        e.end_bounds();
        e.finish_activity();
        for line in e.finish_learning() {
            eprintln!("agentwatch: {line}");
        }
    });
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_from_an_agent_is_ignored_and_one_from_elsewhere_obeyed() {
        static STOP: [libc::c_int; 1] = [libc::SIGURG];
        static RELOAD: [libc::c_int; 1] = [libc::SIGWINCH];
        let s = Signals::catch(&STOP, &RELOAD);
        let me = std::process::id();
        // SAFETY: raising a signal we catch.
        unsafe { libc::raise(libc::SIGURG) };
        assert_eq!(s.asked(|pid| pid == me), Asked::Nothing);
        unsafe { libc::raise(libc::SIGURG) };
        assert_eq!(s.asked(|_| false), Asked::Stop(me as i32));
        unsafe { libc::raise(libc::SIGWINCH) };
        assert_eq!(s.asked(|_| false), Asked::Reload(me as i32));
        assert_eq!(s.asked(|_| false), Asked::Nothing);
    }

    /// A loss reaches the audit log and the counters, whichever command
    /// runs the sink.
    #[test]
    fn a_loss_is_audited_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log =
            crate::audit::AuditLog::open(&path, crate::audit::Fsync::EveryRecord, None).unwrap();
        let counters: Arc<SinkCounters> = Default::default();
        let mut sink = AgentsSink {
            agents: Default::default(),
            audit: Some(crate::enforce::audit_trail::AuditWriter::shared(log)),
            feeds: None,
            counters: counters.clone(),
        };
        sink.emit(&crate::pipeline::loss_event("ring_buffer", "full", 7))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let r = &line["record"];
        assert_eq!(r["type"], "loss");
        assert_eq!(r["count"], 7);
        assert_eq!(r["stage"], "ring_buffer");
        let lost = counters.lost.lock().unwrap();
        assert_eq!(lost[&("ring_buffer".to_string(), "full".to_string())], 7);
    }
}

//! Shadow learning in a running agent (the daemon's `learn = true`): the
//! session recorder beside the enforcer, its appends reported and audited.
use serde_json::json;

use super::AgentEnforcer;
use crate::profile::shadow::{Appended, Shadow, ShadowConfig, ShadowError};

impl AgentEnforcer {
    /// Starts, changes or ends shadow learning. Ending it appends what
    /// was recorded; the kernel policy is rewritten by the caller's
    /// `install` (learning: nothing decided in the kernel).
    pub(super) fn set_shadow(&mut self, cfg: Option<ShadowConfig>) {
        match (self.shadow.take(), cfg) {
            (None, None) => {}
            (None, Some(c)) => self.shadow = Some(Shadow::new(c, self.guardrails.clone())),
            (Some(old), Some(c)) if old.config().sessions == c.sessions => {
                // Same recordings: the session under way goes on.
                let mut s = old;
                s.reconfigure(c);
                self.shadow = Some(s);
            }
            (Some(old), new) => {
                for r in old.finish() {
                    self.report_append(r);
                }
                self.shadow = new.map(|c| Shadow::new(c, self.guardrails.clone()));
            }
        }
    }

    /// Whether the agent is being learned in shadow.
    pub fn learning(&self) -> bool {
        self.shadow.is_some()
    }

    /// For `status`: the session under way.
    pub fn learning_status(&self) -> Option<serde_json::Value> {
        let s = self.shadow.as_ref()?;
        Some(json!({
            "profile": s.config().profile.display().to_string(),
            "sessions": s.config().sessions.display().to_string(),
            "session_events": s.session_events(),
        }))
    }

    /// Ends sessions that are over and reports appends that completed.
    pub(super) fn tick_learning(&mut self) -> Option<String> {
        let (maps, agent) = (&self.maps, self.agent_id);
        let r = self.shadow.as_mut()?.tick(|| maps.pids(agent).len())?;
        Some(self.report_append(r))
    }

    /// Ends learning (the daemon stops): the session under way is
    /// appended before it returns.
    pub fn finish_learning(&mut self) -> Vec<String> {
        // The drift log too: the agent's end.
        if let Some(k) = &mut self.drift {
            k.save();
        }
        let Some(s) = self.shadow.take() else {
            return Vec::new();
        };
        s.finish()
            .into_iter()
            .map(|r| self.report_append(r))
            .collect()
    }

    /// Audits an append and says it in one line.
    fn report_append(&mut self, r: Result<Appended, ShadowError>) -> String {
        match r {
            Ok(a) => {
                let verdict = a
                    .readiness
                    .as_ref()
                    .map_or("unknown".to_string(), |r| r.verdict.clone());
                if let Some(t) = &mut self.audit {
                    t.record(json!({
                        "type": "learned_session",
                        "agent": self.agent,
                        "session": a.session.display().to_string(),
                        "profile": a.written.display().to_string(),
                        "sessions": a.sessions,
                        "novelty": a.novelty,
                        "readiness": verdict,
                    }));
                }
                let new: u64 = a.novelty.values().sum();
                format!(
                    "learned session {} into {} ({} session(s), {new} new entries; readiness {verdict})",
                    a.session.display(),
                    a.written.display(),
                    a.sessions
                )
            }
            Err(e) => {
                if let Some(t) = &mut self.audit {
                    t.record(json!({
                        "type": "learned_session",
                        "agent": self.agent,
                        "error": e.to_string(),
                    }));
                }
                format!("learning failed: {e}")
            }
        }
    }
}

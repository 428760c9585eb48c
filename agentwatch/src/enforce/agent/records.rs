//! What the enforcer writes besides its verdicts: each decision handed to
//! its sinks (counters, alert output, audit log, feeds; repeats folded
//! by the throttle), and the audit log's `learned` and `taint` records.
use serde_json::json;

use super::AgentEnforcer;
use crate::{
    enforce::{
        decision::{DecidedBy, Decision, DecisionSink},
        throttle::Aggregate,
    },
    event::{Detail, Event},
    profile::matcher::Finding,
};

impl AgentEnforcer {
    /// Hands the decision to every sink: the counters, the alert output,
    /// the audit log, the SOC feeds.
    pub(super) fn alert(
        &mut self,
        ev: &Event,
        f: &Finding,
        action: &str,
        by: DecidedBy,
        approval: Option<String>,
    ) {
        let now = std::time::Instant::now();
        self.flush_alerts(now);
        // A secret file the agent reached: its content is never shown in
        // a context (nor sent to its model, under `content`).
        if f.rule == crate::profile::rule::Rule::GuardSecrets {
            self.note_secret_read(ev);
        }
        let context = self.intent.context();
        let mut d = Decision {
            agent: &self.agent,
            mode: self.mode,
            finding: f,
            action,
            by,
            approval: approval.as_deref(),
            event: ev,
            time: crate::timestamp::wall_of_monotonic(ev.ts_ns),
            repeat: None,
            audit: None,
            context: context.as_ref(),
        };
        // Every decision is counted and audited; the alert output and the
        // feeds get repeats folded (`throttle`), and where the audit log
        // put it.
        self.stats.decision(&d);
        if let Some(a) = &mut self.audit {
            d.audit = a.decision(&d);
        }
        if self.throttle.admit(&d, now) {
            self.alerts.decision(&d);
            if let Some(feeds) = &mut self.feeds {
                if self.throttle.feed_admit(now) {
                    feeds.decision(&d);
                }
            }
        }
        self.note_violation(f);
    }

    /// Sends the aggregate alerts whose window closed by `now`, and says
    /// how many alerts the feed budget kept back.
    pub(super) fn flush_alerts(&mut self, now: std::time::Instant) {
        let due = self.throttle.due(now);
        self.send_aggregates(due);
    }

    /// Sends every aggregate still open (the agent's end).
    pub fn drain_alerts(&mut self) {
        let all = self.throttle.drain();
        self.send_aggregates(all);
    }

    fn send_aggregates(&mut self, aggregates: Vec<Aggregate>) {
        for a in aggregates {
            let d = Decision {
                agent: &self.agent,
                mode: self.mode,
                finding: &a.sample.finding,
                action: &a.sample.action,
                by: a.sample.by,
                approval: None,
                event: &a.sample.event,
                time: a.repeat.first,
                repeat: Some(a.repeat),
                audit: None,
                context: None,
            };
            self.alerts.decision(&d);
            // The summary of a burst always reaches the feeds.
            if let Some(feeds) = &mut self.feeds {
                feeds.decision(&d);
            }
        }
        let over = self.throttle.take_over_budget();
        if over > 0 {
            tracing::warn!(agent = %self.agent, alerts = over, "feed budget reached: these alerts went to the audit log and the alert output only");
            if let Some(a) = &mut self.audit {
                a.record(json!({"type": "feed_budget", "agent": self.agent, "kept_back": over}));
            }
        }
    }

    /// A new name created inside a territory: allowed, and recorded once
    /// per normalised path in the audit log (`learned`).
    pub(super) fn record_novelty(&mut self, ev: &Event) {
        let Detail::Open { path, .. } = &ev.detail else {
            return;
        };
        let norm = crate::profile::normalise::path(path, &self.anchors, &Default::default())
            .unwrap_or_else(|| path.clone());
        if !self.novel.insert(norm.clone()) {
            return;
        }
        self.stats.learned += 1;
        let territory = self
            .profile
            .territories
            .iter()
            .filter(|t| {
                self.anchors
                    .expand(&t.path)
                    .is_some_and(|d| path.starts_with(&d) && path[d.len()..].starts_with('/'))
            })
            .max_by_key(|t| t.path.len())
            .map(|t| t.path.clone());
        if let Some(k) = &mut self.drift {
            k.learned(territory.as_deref().unwrap_or("(no territory)"));
        }
        if let Some(a) = &mut self.audit {
            a.record(json!({
                "type": "learned",
                "agent": self.agent,
                "what": format!("create {norm}"),
                "territory": territory,
                "pid": ev.pid,
                "comm": ev.comm,
                "event": ev,
            }));
        }
    }

    /// A secret inside the workspace was read: allowed, the reader is
    /// tainted; recorded in the audit log (`taint`).
    pub(super) fn record_taint(&mut self, ev: &Event) {
        self.stats.tainted += 1;
        self.note_secret_read(ev);
        let what = match &ev.detail {
            Detail::Open { path, .. } => format!("read {}", self.anchors.anchor(path)),
            _ => crate::sinks::human_line(ev),
        };
        if let Some(a) = &mut self.audit {
            a.record(json!({
                "type": "taint",
                "agent": self.agent,
                "what": what,
                "reason": "a secret in the workspace was read; the reading process may not send it to the model API or outside the profile, nor copy it out of the workspace",
                "pid": ev.pid,
                "comm": ev.comm,
                "event": ev,
            }));
        }
    }
}

impl AgentEnforcer {
    /// What drift counts of an event that crossed: the executable that
    /// ran, the name asked.
    pub(super) fn note_drift(&mut self, ev: &Event) {
        let Some(k) = &mut self.drift else {
            return;
        };
        match &ev.detail {
            Detail::Exec { path, .. } => {
                let norm =
                    crate::profile::normalise::path(path, &self.anchors, &Default::default())
                        .unwrap_or_else(|| path.clone());
                k.exec(&norm);
            }
            Detail::Dns { name, .. } => k.name(name),
            _ => {}
        }
    }

    /// A violation for drift (a guardrail and a rate are their own
    /// classes); a `drift` notice to the alerts, the feeds and the audit
    /// log when today's reach the threshold.
    fn note_violation(&mut self, f: &Finding) {
        let Some(k) = &mut self.drift else {
            return;
        };
        let class = if f.is_rate() {
            "rate".to_string()
        } else if f.hard() {
            "guardrail".to_string()
        } else {
            f.class.name().to_string()
        };
        let Some(notice) = k.violation(&self.agent, &class) else {
            return;
        };
        self.alerts.notice(&notice);
        if let Some(feeds) = &self.feeds {
            feeds.notice(&notice);
        }
        if let Some(a) = &mut self.audit {
            a.record(notice);
        }
    }
}

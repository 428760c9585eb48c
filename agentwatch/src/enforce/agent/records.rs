//! What the enforcer writes besides its verdicts: each decision handed to
//! its sinks (counters, alert output, audit log, feeds; repeats folded
//! by the throttle), and the audit log's `learned` and `taint` records.
use serde_json::json;

use super::AgentEnforcer;
use crate::{
    enforce::{
        decision::{DecidedBy, Decision, DecisionSink},
        steer::Refusal,
        throttle::Aggregate,
    },
    event::{Detail, Event},
    profile::{matcher::Finding, observe::Obs},
};
use tracing::debug;

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
        self.alert_with(ev, f, action, by, approval, None);
    }

    /// An alert with a pinned file's check (`pinned` in the record).
    pub(super) fn alert_with(
        &mut self,
        ev: &Event,
        f: &Finding,
        action: &str,
        by: DecidedBy,
        approval: Option<String>,
        pinned: Option<&serde_json::Value>,
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
            pinned,
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
        // What the agent is told: anything but an alert (it went on).
        if !action.starts_with("alert") {
            let rule = f.rule.to_string();
            let r = Refusal {
                rule: &rule,
                what: &f.what,
                reason: &f.reason,
                action,
                request: approval.as_deref(),
            };
            self.steers.refused(Some(ev), &r);
        }
    }

    /// The agent's launcher gave it the read end of `steer`'s pipe: every
    /// refusal, pause and answer of its process tree is written there. A
    /// daemon agent has one per `agentwatch exec`.
    pub fn set_steer(&mut self, steer: crate::enforce::steer::Steer) {
        self.steers.add(steer);
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
                pinned: None,
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
        if self.drift.is_none() {
            return;
        }
        let exec = match &ev.detail {
            Detail::Exec { path, .. } => Some(self.as_profile_path(path)),
            _ => None,
        };
        let Some(k) = &mut self.drift else {
            return;
        };
        match (&ev.detail, exec) {
            (_, Some(norm)) => k.exec(&norm),
            (Detail::Dns { name, .. }, _) => k.name(name),
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
        self.raise_notice(notice);
    }

    /// A notice that is no decision of a call (drift, identity, budget):
    /// to the alert output, every feed and the audit log.
    pub(super) fn raise_notice(&mut self, notice: serde_json::Value) {
        self.alerts.notice(&notice);
        if let Some(feeds) = &self.feeds {
            feeds.notice(&notice);
        }
        if let Some(a) = &mut self.audit {
            a.record(notice);
        }
    }

    /// Kills every process of the agent (a stopped one dies once resumed).
    pub(super) fn kill_tree(&self) {
        let pids = self.maps.pids(self.agent_id);
        crate::enforce::tree::kill(&pids);
        crate::enforce::tree::resume(&pids);
    }

    /// An executed path as the profile writes it (anchors put back).
    fn as_profile_path(&self, path: &str) -> String {
        crate::profile::normalise::path(path, &self.anchors, &Default::default())
            .unwrap_or_else(|| path.to_string())
    }
}

impl AgentEnforcer {
    /// What an event that crossed and was allowed adds to the session's
    /// activity (`enforce::activity`).
    pub(super) fn note_activity(&mut self, ev: &Event, findings: &[Finding]) {
        if findings.iter().any(|f| !f.is_rate()) {
            return;
        }
        let now = std::time::Instant::now();
        for obs in crate::profile::observe::observe(ev) {
            match obs {
                Obs::Exec { path } => {
                    let norm = self.as_profile_path(&path);
                    self.activity.exec(&norm, now);
                }
                Obs::Dns { name } => self.activity.name(&name, now),
                // The question's answer: counted with the question.
                Obs::DnsAnswer { .. } => {}
                other => self.activity.allowed(other.class(), now),
            }
        }
    }

    /// From the lifecycle turn, at most once a second: budgets reached,
    /// and the session's activity.
    pub(super) fn each_second(&mut self) {
        let now = std::time::Instant::now();
        if now.duration_since(self.second_checked) < std::time::Duration::from_secs(1) {
            return;
        }
        self.second_checked = now;
        self.steers.prune();
        self.tick_bounds();
        self.tick_activity(now);
    }

    /// The session's activity from the kernel's counters and the agent's
    /// processes; a record when one is due.
    fn tick_activity(&mut self, now: std::time::Instant) {
        let kernel = self.maps.decided(Some(self.agent_id)).allowed;
        // Walking the watch map costs a call per entry: only when quiet.
        let processes = if self.activity.busy(&kernel) {
            1
        } else {
            self.maps.pids(self.agent_id).len()
        };
        if let Some(r) = self.activity.tick(&self.agent, processes, kernel, now) {
            self.write_activity(r);
        }
    }

    /// The session under way ends (agentwatch stops, or stops watching
    /// the agent): its last `activity` record is written.
    pub fn finish_activity(&mut self) {
        let kernel = self.maps.decided(Some(self.agent_id)).allowed;
        if let Some(r) = self.activity.finish(&self.agent, kernel) {
            self.write_activity(r);
        }
    }

    /// The session under way, as its `activity` record would read now.
    pub fn session_now(&self) -> Option<serde_json::Value> {
        let kernel = self.maps.decided(Some(self.agent_id)).allowed;
        self.activity.current(&self.agent, kernel)
    }

    fn write_activity(&mut self, r: serde_json::Value) {
        debug!(agent = %self.agent, record = %r, "activity");
        if let Some(a) = &mut self.audit {
            a.record(r);
        }
    }
}

//! One typed decision about one event, and the sinks it flows to: the
//! run's counters, the alert output, the audit log and the SOC feeds
//! (`AgentEnforcer::alert` hands it to each in turn). Every sink reads
//! the same fields; each writes its own form of them.
use std::io::Write;

use serde::ser::{Serialize, SerializeMap, Serializer};
use tracing::warn;

use super::compile::Mode;
use crate::{event::Event, profile::matcher::Finding};

/// Who took the decision: the kernel program at the call, or userspace
/// after the event crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    Kernel,
    Userspace,
}

impl DecidedBy {
    pub fn name(self) -> &'static str {
        match self {
            DecidedBy::Kernel => "kernel",
            DecidedBy::Userspace => "userspace",
        }
    }
}

/// A violation found in one event and what was done about it.
pub struct Decision<'a> {
    pub agent: &'a str,
    pub mode: Mode,
    pub finding: &'a Finding,
    /// What was done, as alerts name it (`pause`, `deny (SIGKILL at the
    /// call)`); its first word is the action.
    pub action: &'a str,
    pub by: DecidedBy,
    /// The approval request a pause opened.
    pub approval: Option<&'a str>,
    pub event: &'a Event,
    /// When it happened, on the wall clock: computed once, so that the
    /// alert, the audit record and every feed say the same time.
    pub time: std::time::SystemTime,
    /// An aggregate alert: identical alerts after this one, folded
    /// (`super::throttle`).
    pub repeat: Option<super::throttle::Repeat>,
    /// Where the audit log put this decision (alerts and feed records
    /// carry it; the audit record itself does not).
    pub audit: Option<super::audit_trail::AuditLink>,
    /// Why the agent was doing it, from its model traffic (`crate::intent`).
    pub context: Option<&'a serde_json::Value>,
    /// A pinned file's check (`model/...`, `config/changed`): its path,
    /// sha256 and, for an instruction file, the sizes and hashes before
    /// and after.
    pub pinned: Option<&'a serde_json::Value>,
}

impl Decision<'_> {
    /// The action's name without the explanation (`deny`, `pause`).
    pub fn action_kind(&self) -> &str {
        self.action.split_whitespace().next().unwrap_or(self.action)
    }

    /// The decision as a JSON record of `kind`, with the audit log's
    /// extra fields when given.
    pub fn record<'b>(
        &'b self,
        kind: RecordKind,
        profile_sha256: Option<&'b str>,
        ts: Option<&'b str>,
    ) -> DecisionRecord<'b> {
        DecisionRecord {
            d: self,
            kind,
            profile_sha256,
            ts,
        }
    }
}

/// Which record a decision is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// An alert line (`--json`) and a feed's `alerts` format.
    Alert,
    /// An audit log record.
    Decision,
}

/// A decision serialised as one JSON object, keys in sorted order (as the
/// audit log has always written them), without an intermediate value.
pub struct DecisionRecord<'a> {
    d: &'a Decision<'a>,
    kind: RecordKind,
    profile_sha256: Option<&'a str>,
    ts: Option<&'a str>,
}

impl Serialize for DecisionRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.d;
        let f = d.finding;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("action", d.action)?;
        m.serialize_entry("agent", d.agent)?;
        m.serialize_entry("ancestry", &d.event.context.ancestry)?;
        m.serialize_entry("approval", &d.approval)?;
        if let (RecordKind::Alert, Some(link)) = (self.kind, &d.audit) {
            m.serialize_entry("audit", link)?;
        }
        m.serialize_entry("class", &f.class)?;
        m.serialize_entry("comm", &d.event.comm)?;
        if let Some(c) = d.context {
            m.serialize_entry("context", c)?;
        }
        if let Some(r) = &d.repeat {
            m.serialize_entry("count", &r.count)?;
        }
        m.serialize_entry("decided_by", d.by.name())?;
        m.serialize_entry("event", d.event)?;
        if let Some(r) = &d.repeat {
            m.serialize_entry("first", &crate::timestamp::micros(r.first))?;
        }
        m.serialize_entry("host", crate::origin::host())?;
        if let Some(r) = &d.repeat {
            m.serialize_entry("last", &crate::timestamp::micros(r.last))?;
        }
        m.serialize_entry("mode", d.mode.name())?;
        if let Some(node) = crate::origin::node() {
            m.serialize_entry("node", node)?;
        }
        m.serialize_entry("pid", &d.event.pid)?;
        if let Some(p) = d.pinned {
            m.serialize_entry("pinned", p)?;
        }
        if let Some(p) = self.profile_sha256 {
            m.serialize_entry("profile_sha256", p)?;
        }
        m.serialize_entry("reason", &f.reason)?;
        m.serialize_entry("rule", &f.rule)?;
        // When it happened (the event's own clock, on the wall clock);
        // `ts` is when the audit log wrote it.
        m.serialize_entry("time", &crate::timestamp::micros(d.time))?;
        if let Some(t) = self.ts {
            m.serialize_entry("ts", t)?;
        }
        let kind = match self.kind {
            RecordKind::Alert => "alert",
            RecordKind::Decision => "decision",
        };
        m.serialize_entry("type", kind)?;
        m.serialize_entry("what", &f.what)?;
        m.end()
    }
}

/// Something every decision is handed to.
pub trait DecisionSink {
    fn decision(&mut self, d: &Decision);
}

/// Where alert lines go: a human line each, or the alert record (`--json`).
pub struct AlertWriter {
    out: Box<dyn Write + Send>,
    json: bool,
}

impl AlertWriter {
    pub fn new(out: Box<dyn Write + Send>, json: bool) -> Self {
        Self { out, json }
    }

    /// One write per line, so agents sharing an output never interleave.
    pub fn line(&mut self, line: &str) {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        if let Err(e) = self
            .out
            .write_all(buf.as_bytes())
            .and_then(|_| self.out.flush())
        {
            warn!(error = %e, "cannot write to the alert output");
        }
    }
}

impl AlertWriter {
    /// A record that is not a decision (a `drift` notice): the record
    /// itself under `--json`, else its `what` on a line.
    pub fn notice(&mut self, r: &serde_json::Value) {
        let line = if self.json {
            r.to_string()
        } else {
            format!(
                "{} {}: {}",
                r["type"].as_str().unwrap_or("notice"),
                r["agent"].as_str().unwrap_or(""),
                r["what"].as_str().unwrap_or("")
            )
        };
        self.line(&line);
    }
}

impl DecisionSink for AlertWriter {
    fn decision(&mut self, d: &Decision) {
        let line = if self.json {
            match serde_json::to_string(&d.record(RecordKind::Alert, None, None)) {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "cannot serialise an alert");
                    return;
                }
            }
        } else {
            let f = d.finding;
            let ask = d
                .approval
                .map(|id| format!("; approve or deny {id}"))
                .unwrap_or_default();
            let again = d
                .repeat
                .map(|r| format!(" (again {} more time(s) since the first)", r.count))
                .unwrap_or_default();
            format!(
                "alert {:<22} {}  ({}; pid {} {}) -> {} [{}]{ask}{again}",
                f.rule,
                f.what,
                f.reason,
                d.event.pid,
                d.event.comm,
                d.action,
                d.by.name()
            )
        };
        self.line(&line);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        event::{Context, Detail},
        profile::Class,
    };

    /// An event for tests of what decisions turn into.
    pub(crate) fn event() -> Event {
        Event {
            ts_ns: 1,
            pid: 7,
            tid: 7,
            ppid: 1,
            uid: 0,
            gid: 0,
            comm: "cat".into(),
            agent: "coder".into(),
            cgroup_id: 0,
            context: Context::default(),
            kernel: None,
            detail: Detail::Exit {
                code: Some(0),
                signal: None,
            },
        }
    }

    /// The record has the fields the alert and audit formats have always
    /// had, keys sorted, the audit-only ones only when given; `node` only
    /// on Kubernetes.
    #[test]
    fn record_fields_are_the_alert_contract() {
        let f = Finding {
            rule: crate::profile::rule::Rule::FileUnknown,
            class: Class::File,
            what: "read /etc/shadow".into(),
            reason: "no file rule covers the path".into(),
        };
        let ev = event();
        let d = Decision {
            agent: "coder",
            mode: Mode::Enforce,
            finding: &f,
            action: "pause",
            by: DecidedBy::Kernel,
            approval: Some("r1"),
            event: &ev,
            time: std::time::SystemTime::now(),
            repeat: None,
            audit: None,
            context: None,
            pinned: None,
        };
        let alert = serde_json::to_value(d.record(RecordKind::Alert, None, None)).unwrap();
        let keys: Vec<_> = alert.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "action",
                "agent",
                "ancestry",
                "approval",
                "class",
                "comm",
                "decided_by",
                "event",
                "host",
                "mode",
                "pid",
                "reason",
                "rule",
                "time",
                "type",
                "what"
            ]
        );
        // When it happened, on the wall clock, to the microsecond.
        let time = alert["time"].as_str().unwrap();
        assert!(crate::timestamp::parse(time).is_some(), "{time}");
        assert_eq!(alert["host"], crate::origin::host());
        assert_eq!(alert["type"], "alert");
        assert_eq!(alert["class"], "file");
        assert_eq!(alert["decided_by"], "kernel");
        assert_eq!(alert["event"]["pid"], 7);
        let text =
            serde_json::to_string(&d.record(RecordKind::Decision, Some("ab"), Some("t"))).unwrap();
        let audit: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(audit["type"], "decision");
        assert_eq!(audit["profile_sha256"], "ab");
        assert_eq!(audit["ts"], "t");
        // Top-level keys sorted, as a serde_json::Value writes them.
        assert!(text.starts_with(r#"{"action":"pause","agent":"coder","#));
        assert!(text.ends_with(r#""ts":"t","type":"decision","what":"read /etc/shadow"}"#));
        assert_eq!(d.action_kind(), "pause");
    }
}

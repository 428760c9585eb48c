//! What an enforcing agent writes to the audit log: every decision with its
//! inputs (the event, agent, ancestry, profile version, rule, mode,
//! action), and every answer to an approval request with who gave it.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tracing::error;

use super::decision::{Decision, DecisionSink, RecordKind};
use crate::audit::{
    checkpoint::{Covered, Signer},
    AuditLog,
};

/// Records held while the log cannot be written (a full disk), oldest
/// first; past this many the oldest are dropped and counted.
const BACKLOG: usize = 100_000;

/// The audit log with its backlog, shared by every agent of a process.
pub struct AuditWriter {
    log: AuditLog,
    /// Serialised records, in order.
    backlog: std::collections::VecDeque<String>,
    dropped: u64,
    /// Set once a write failed: said loudly once, not per record.
    failing: bool,
    /// Since when the log has not been writable, and how many records
    /// were held meanwhile: recorded as a gap once it is writable again.
    outage: Option<(String, u64)>,
    anchor: Option<Anchor>,
}

/// Where the feeds take a checkpoint (`Feeds::checkpoint`).
pub type CheckpointSink = Box<dyn Fn(&Value) + Send>;

/// Signed checkpoints into the log (`crate::audit::checkpoint`): one when
/// `every` has passed and records came since the last, and a final one
/// when the writer closes the log.
pub struct Anchor {
    signer: Signer,
    every: Duration,
    last: Instant,
    /// Seq of the last checkpoint line written.
    line: Option<u64>,
    sink: Option<CheckpointSink>,
}

impl Anchor {
    pub fn new(signer: Signer, every: Duration) -> Self {
        Self {
            signer,
            every,
            last: Instant::now(),
            line: None,
            sink: None,
        }
    }
}

pub type SharedAudit = Arc<Mutex<AuditWriter>>;

/// What one agent writes: its records, naming its profile version.
pub struct AuditTrail {
    out: SharedAudit,
    /// sha256 of the profile file as loaded (and after each `--learn`).
    profile_sha256: String,
}

impl AuditTrail {
    pub fn new(out: SharedAudit, profile_bytes: &[u8]) -> Self {
        Self::with_hash(out, crate::audit::line_hash(profile_bytes))
    }

    pub fn with_hash(out: SharedAudit, profile_sha256: String) -> Self {
        Self {
            out,
            profile_sha256,
        }
    }

    /// The profile changed (approve --learn): later records name the new one.
    pub fn profile_changed(&mut self, profile_bytes: &[u8]) {
        self.profile_sha256 = crate::audit::line_hash(profile_bytes);
    }

    /// The profile was replaced by one with this hash (a reload).
    pub fn set_profile_hash(&mut self, sha256: &str) {
        self.profile_sha256 = sha256.to_string();
    }

    /// A decision: the alert's fields plus the profile version and time.
    /// Appends the decision; where it landed in the chain when it was
    /// written now (None while the log is not writable: it is held).
    pub fn decision(&mut self, d: &Decision) -> Option<AuditLink> {
        let ts = crate::timestamp::now();
        let view = d.record(RecordKind::Decision, Some(&self.profile_sha256), Some(&ts));
        match serde_json::to_string(&view) {
            Ok(json) => self.write_json(json),
            Err(e) => {
                error!(error = %e, "cannot serialise a decision for the audit log");
                None
            }
        }
    }

    /// Any other record (`learned`, `taint`), with the profile version.
    pub fn record(&mut self, r: Value) {
        let mut r = r;
        r["profile_sha256"] = json!(self.profile_sha256);
        self.write(r);
    }

    /// An answer to approval requests: `outcome` is approved, denied,
    /// timed_out, exited (no process left) or released (agent removed); `by` is who answered (a user name, or `timeout`).
    pub fn answer(&mut self, agent: &str, ids: &[String], outcome: &str, by: &str, learned: bool) {
        self.answer_shown(agent, ids, outcome, by, learned, None);
    }

    /// `answer`, with what the person who answered was shown: the
    /// request's intent context and its sha256 (`shown`).
    pub fn answer_shown(
        &mut self,
        agent: &str,
        ids: &[String],
        outcome: &str,
        by: &str,
        learned: bool,
        shown: Option<Value>,
    ) {
        let mut r = json!({
            "type": "approval",
            "agent": agent,
            "ids": ids,
            "outcome": outcome,
            "by": by,
            "learned": learned,
            "profile_sha256": self.profile_sha256,
        });
        if let Some(s) = shown {
            r["shown"] = s;
        }
        self.write(r);
    }

    pub fn sync_if_due(&mut self) {
        if let Ok(mut w) = self.out.lock() {
            w.sync_if_due();
        }
    }

    fn write(&mut self, r: Value) {
        match self.out.lock() {
            Ok(mut w) => w.record(r),
            Err(_) => error!("the audit writer stopped after an internal error"),
        }
    }

    fn write_json(&mut self, json: String) -> Option<AuditLink> {
        match self.out.lock() {
            Ok(mut w) => w.write(json),
            Err(_) => {
                error!("the audit writer stopped after an internal error");
                None
            }
        }
    }
}

impl AuditWriter {
    pub fn new(log: AuditLog) -> Self {
        Self {
            log,
            backlog: Default::default(),
            dropped: 0,
            failing: false,
            outage: None,
            anchor: None,
        }
    }

    /// Signs checkpoints into the log from now on.
    pub fn anchor(&mut self, a: Anchor) {
        self.anchor = Some(a);
    }

    /// Sends each checkpoint to `sink` (the feeds) too.
    pub fn send_checkpoints(&mut self, sink: CheckpointSink) {
        if let Some(a) = &mut self.anchor {
            a.sink = Some(sink);
        }
    }

    /// Writes a signed checkpoint covering the last record: when one is
    /// due, or the final one (`last`) as the writer closes the log. None
    /// while records are held back: what they will be is not known yet.
    fn checkpoint(&mut self, last: bool) {
        let Some(a) = &mut self.anchor else {
            return;
        };
        let Some(seq) = self.log.next_seq().checked_sub(1) else {
            return;
        };
        if self.outage.is_some() || !self.backlog.is_empty() {
            return;
        }
        let due = a.line.is_none_or(|l| seq > l) && a.last.elapsed() >= a.every;
        if !(last || due) {
            return;
        }
        let c = Covered {
            seq,
            hash: self.log.last_hash().to_string(),
            time: crate::timestamp::now(),
            last,
        };
        let r = a.signer.record(&c);
        a.last = Instant::now();
        match self.log.append(&r) {
            Ok(line) => {
                a.line = Some(line);
                if let Some(sink) = &a.sink {
                    sink(&r);
                }
            }
            Err(e) => self.failed(&e),
        }
    }

    pub fn shared(log: AuditLog) -> SharedAudit {
        Arc::new(Mutex::new(Self::new(log)))
    }

    /// Appends record `r`, stamped with the time (`ts`) unless it has one.
    pub fn record(&mut self, mut r: Value) {
        if r.get("ts").is_none() {
            r["ts"] = json!(crate::timestamp::now());
        }
        self.write(r.to_string());
    }

    /// The link of the record last written.
    fn link(&self) -> AuditLink {
        AuditLink {
            seq: self.log.next_seq().saturating_sub(1),
            hash: self.log.last_hash().to_string(),
        }
    }

    /// Syncs when the interval is up; while records are held back (the
    /// disk was full), tries to write them, so the gap is closed as soon
    /// as there is room, not at the next decision.
    pub fn sync_if_due(&mut self) {
        if (self.outage.is_some() || !self.backlog.is_empty()) && self.flush_backlog() {
            self.failing = false;
        }
        self.checkpoint(false);
        if let Err(e) = self.log.sync_if_due() {
            self.failed(&e);
        }
    }

    /// Writes what is held back, seals the log with a final checkpoint
    /// (when signing) and syncs: the writer is closing it.
    pub fn close(&mut self) {
        self.flush_backlog();
        self.checkpoint(true);
        if let Err(e) = self.log.sync() {
            self.failed(&e);
        }
    }

    /// Appends `r` after whatever is held back, keeping the order; holds
    /// it when the log cannot take it.
    /// Returns the record's link when it was written now.
    fn write(&mut self, r: String) -> Option<AuditLink> {
        let done = self.flush_backlog() && {
            match self.log.append_json(&r) {
                Ok(_) => true,
                Err(e) => {
                    self.failed(&e);
                    false
                }
            }
        };
        if done {
            self.failing = false;
            return Some(self.link());
        }
        if self.backlog.len() >= BACKLOG {
            self.backlog.pop_front();
            self.dropped += 1;
        }
        if let Some((_, held)) = &mut self.outage {
            *held += 1;
        }
        self.backlog.push_back(r);
        None
    }

    /// Writes what was held back (and a note of what was dropped); true
    /// when nothing is left.
    fn flush_backlog(&mut self) -> bool {
        if let Some((since, held)) = self.outage.clone() {
            // The log takes records again: first, what happened meanwhile.
            let now = crate::timestamp::now();
            let note = json!({"type": "audit_gap", "since": since, "until": now,
            "held": held, "dropped": self.dropped,
            "why": if self.dropped > 0 {
                "the audit log was not writable and the in-memory backlog overflowed: the oldest held records are missing"
            } else {
                "the audit log was not writable; the records that follow were held in memory, in order, and written late"
            }});
            if let Err(e) = self.log.append(&note) {
                self.failed(&e);
                return false;
            }
            eprintln!(
                "agentwatch: the audit log is writable again; {held} record(s) held since {since} are written now ({} dropped)",
                self.dropped
            );
            self.dropped = 0;
            self.outage = None;
        }
        while let Some(front) = self.backlog.front() {
            if let Err(e) = self.log.append_json(front) {
                self.failed(&e);
                return false;
            }
            self.backlog.pop_front();
        }
        true
    }

    fn failed(&mut self, e: &crate::audit::AuditError) {
        if self.outage.is_none() {
            let now = crate::timestamp::now();
            self.outage = Some((now, 0));
        }
        if !self.failing {
            error!(error = %e, "audit log write failed; enforcement goes on and records are held in memory");
            eprintln!("agentwatch: {e}");
            self.failing = true;
        }
    }
}

impl DecisionSink for AuditTrail {
    fn decision(&mut self, d: &Decision) {
        AuditTrail::decision(self, d);
    }
}

/// Where a record landed in the hash chain: its `seq` and the sha256 of
/// its line (the next line's `prev`). Feed records carry it, so a SOC can
/// match each alert to the audit log and check it there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditLink {
    pub seq: u64,
    pub hash: String,
}

//! What the daemon's Prometheus endpoint reports: events per stage and
//! losses, the kernel's own decisions, decisions by action, approvals,
//! BPF map fill, and each feed's delivery.
use agentwatch_common::names::map as kmap;
use std::sync::{atomic::Ordering, Arc, Mutex};

use crate::lifecycle::{Agents, SinkCounters};
use crate::{
    feeds::{metrics::Text, Feeds},
    profile::Class,
    sensors::PolicyMaps,
};

/// WATCHED's size in the eBPF object (`agentwatch-ebpf/src/maps.rs`).
const WATCHED_MAX: u64 = 65536;

pub struct Observed {
    pub agents: Agents,
    pub counters: Arc<SinkCounters>,
    pub pipeline: Arc<crate::pipeline::LiveCounts>,
    pub feeds: Arc<Feeds>,
    /// A handle of its own on the kernel maps (read only).
    pub maps: Mutex<PolicyMaps>,
}

impl Observed {
    pub fn render(&self) -> String {
        let mut t = Text::default();
        t.metric(
            "agentwatch_events_total",
            "counter",
            "Records and events per pipeline stage: read from the ring buffer, decoded and enriched, judged.",
        )
        .sample(
            "agentwatch_events_total",
            &[("stage", "ring_buffer")],
            self.pipeline.records.load(Ordering::Relaxed),
        )
        .sample(
            "agentwatch_events_total",
            &[("stage", "decoded")],
            self.pipeline.events.load(Ordering::Relaxed),
        )
        .sample(
            "agentwatch_events_total",
            &[("stage", "userspace")],
            self.counters.events.load(Ordering::Relaxed),
        );
        t.metric(
            "agentwatch_events_lost_total",
            "counter",
            "Records lost, by pipeline stage and reason.",
        );
        if let Ok(m) = self.counters.lost.lock() {
            for ((stage, reason), n) in m.iter() {
                t.sample(
                    "agentwatch_events_lost_total",
                    &[("stage", stage), ("reason", reason)],
                    *n,
                );
            }
        }
        if let Ok(maps) = self.maps.lock() {
            let d = maps.decided(None);
            t.metric(
                "agentwatch_kernel_decisions_total",
                "counter",
                "Events the kernel decided itself: allowed without crossing, or a violation it acted on.",
            );
            for c in Class::ALL {
                t.sample(
                    "agentwatch_kernel_decisions_total",
                    &[("class", c.name()), ("outcome", "allowed")],
                    d.allowed_of(c),
                );
                t.sample(
                    "agentwatch_kernel_decisions_total",
                    &[("class", c.name()), ("outcome", "acted")],
                    d.acted_of(c),
                );
            }
            let watched = maps.watched_count() as u64;
            t.metric(
                "agentwatch_bpf_map_entries",
                "gauge",
                "Entries in a BPF map.",
            )
            .sample(
                "agentwatch_bpf_map_entries",
                &[("map", kmap::WATCHED)],
                watched,
            );
            t.metric(
                "agentwatch_bpf_map_max_entries",
                "gauge",
                "Capacity of a BPF map.",
            )
            .sample(
                "agentwatch_bpf_map_max_entries",
                &[("map", kmap::WATCHED)],
                WATCHED_MAX,
            );
        }
        self.agents_metrics(&mut t);
        self.feed_metrics(&mut t);
        t.finish()
    }

    fn agents_metrics(&self, t: &mut Text) {
        let all: Vec<_> = match self.agents.read() {
            Ok(m) => m.iter().map(|(n, e)| (n.clone(), e.clone())).collect(),
            Err(_) => return,
        };
        let mut decisions = Vec::new();
        let mut answers = Vec::new();
        let mut pending = Vec::new();
        let mut drift = Vec::new();
        for (name, e) in all {
            let Ok(e) = e.lock() else { continue };
            if let Some(r) = e.drift_report(DRIFT_DAYS) {
                drift.push((name.clone(), r));
            }
            for (action, n) in &e.stats().by_action {
                decisions.push((name.clone(), action.clone(), *n));
            }
            for (outcome, n) in [
                ("approved", e.stats().approved),
                ("denied", e.stats().denied),
                ("timed_out", e.stats().timed_out),
            ] {
                answers.push((name.clone(), outcome, n));
            }
            pending.push((name, e.pending().len() as u64));
        }
        t.metric(
            "agentwatch_decisions_total",
            "counter",
            "Violations decided, by agent and action.",
        );
        for (agent, action, n) in &decisions {
            t.sample(
                "agentwatch_decisions_total",
                &[("agent", agent), ("action", action)],
                *n,
            );
        }
        t.metric(
            "agentwatch_approvals_total",
            "counter",
            "Approval requests answered, by agent and outcome.",
        );
        for (agent, outcome, n) in &answers {
            t.sample(
                "agentwatch_approvals_total",
                &[("agent", agent), ("outcome", outcome)],
                *n,
            );
        }
        t.metric(
            "agentwatch_pending_approvals",
            "gauge",
            "Approval requests open now.",
        );
        for (agent, n) in &pending {
            t.sample("agentwatch_pending_approvals", &[("agent", agent)], *n);
        }
        drift_metrics(t, &drift);
    }

    fn feed_metrics(&self, t: &mut Text) {
        let stats = self.feeds.stats();
        t.metric(
            "agentwatch_feed_records_total",
            "counter",
            "Records of a SOC feed: queued to its spool, delivered, dropped (spool full).",
        );
        for (name, s, _) in &stats {
            for (state, n) in [
                ("queued", &s.queued),
                ("delivered", &s.delivered),
                ("dropped", &s.dropped),
            ] {
                t.sample(
                    "agentwatch_feed_records_total",
                    &[("feed", name), ("state", state)],
                    n.load(Ordering::Relaxed),
                );
            }
        }
        t.metric(
            "agentwatch_feed_failures_total",
            "counter",
            "Failed deliveries (each retried).",
        );
        for (name, s, _) in &stats {
            t.sample(
                "agentwatch_feed_failures_total",
                &[("feed", name)],
                s.failures.load(Ordering::Relaxed),
            );
        }
        t.metric(
            "agentwatch_feed_backlog_bytes",
            "gauge",
            "Bytes spooled and not yet delivered.",
        );
        for (name, _, backlog) in &stats {
            t.sample("agentwatch_feed_backlog_bytes", &[("feed", name)], *backlog);
        }
    }
}

/// The window of the drift gauges, in days.
const DRIFT_DAYS: u64 = 7;

/// `agentwatch_profile_drift` and `agentwatch_unused_rules`, per agent.
fn drift_metrics(t: &mut Text, drift: &[(String, crate::enforce::drift::Report)]) {
    t.metric(
        "agentwatch_profile_drift",
        "gauge",
        "Violations outside the profile in the last 7 days, by agent and class (drift).",
    );
    for (agent, r) in drift {
        for (class, n) in &r.novel {
            t.sample(
                "agentwatch_profile_drift",
                &[("agent", agent), ("class", class)],
                *n,
            );
        }
    }
    t.metric(
        "agentwatch_unused_rules",
        "gauge",
        "Profile grants nothing used in the last 7 days, by agent and class (executable, dns): candidates to retire.",
    );
    for (agent, r) in drift {
        for class in ["executable", "dns"] {
            let n = r.unused.iter().filter(|u| u.class == class).count() as u64;
            t.sample(
                "agentwatch_unused_rules",
                &[("agent", agent), ("class", class)],
                n,
            );
        }
    }
}

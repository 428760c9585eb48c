//! Alert aggregation and the feeds' budget (issue 16). A loop repeating
//! one violation must not bury the alert output and every feed under
//! identical lines:
//! - The first alert of an (agent, rule, object) goes out at once;
//!   identical ones within the window after it are counted, and when the
//!   window closes one alert goes out with their `count` and the `first`
//!   and `last` times (`Repeat`).
//! - Each agent sends the feeds at most a budget of alerts per minute;
//!   what is over is counted and said (a warning and an audit record).
//!
//! The audit log is not throttled: it records every decision. A pause is
//! never folded into another: each opens its own approval request.
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use super::decision::{DecidedBy, Decision};
use crate::{event::Event, profile::matcher::Finding};

/// How alerts are aggregated and budgeted (daemon `[alerts]`, `run`'s
/// `--alert-window` and `--feed-budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Identical alerts within this long of the first become one (None:
    /// every alert goes out).
    pub window: Option<Duration>,
    /// Alerts per agent per minute the feeds get (None: no budget).
    pub feed_budget: Option<u32>,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            window: Some(Self::WINDOW),
            feed_budget: Some(Self::FEED_BUDGET),
        }
    }
}

impl AlertPolicy {
    pub const WINDOW: Duration = Duration::from_secs(10);
    pub const FEED_BUDGET: u32 = 600;
    /// Open bursts kept at most; beyond, alerts go out unaggregated
    /// rather than use memory without bound.
    const MAX_BURSTS: usize = 10_000;

    /// A window as written (`10s`, `1m`), or `off`.
    pub fn parse_window(s: &str) -> Result<Option<Duration>, String> {
        if s == "off" {
            return Ok(None);
        }
        crate::units::parse_duration(s)
            .map(Some)
            .map_err(|e| format!("{e} (or `off`)"))
    }

    /// A budget as written: alerts per minute, 0 for none.
    pub fn budget(n: u32) -> Option<u32> {
        (n > 0).then_some(n)
    }
}

/// Identical alerts folded into one: how many after the first that went
/// out, and when the first and last of them happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
}

/// The decision an aggregate alert repeats, kept from its first alert.
pub struct Sample {
    pub event: Event,
    pub finding: Finding,
    pub action: String,
    pub by: DecidedBy,
}

/// An aggregate alert to send: the sample and its repeats.
pub struct Aggregate {
    pub sample: Sample,
    pub repeat: Repeat,
}

struct Burst {
    opened: Instant,
    sample: Sample,
    repeat: Option<Repeat>,
}

type Key = (String, String);

/// One agent's open bursts and feed budget.
#[derive(Default)]
pub struct Throttle {
    policy: AlertPolicy,
    bursts: HashMap<Key, Burst>,
    /// Keys in the order their bursts opened: the front closes first.
    order: VecDeque<(Instant, Key)>,
    /// Aggregates of bursts replaced before `due` collected them.
    late: Vec<Aggregate>,
    minute: Option<Instant>,
    sent_this_minute: u32,
    over_budget: u64,
}

impl Throttle {
    pub fn new(policy: AlertPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Whether `d` goes to the alert output and the feeds now; one held
    /// back is counted into the burst it repeats.
    pub fn admit(&mut self, d: &Decision, now: Instant) -> bool {
        let Some(window) = self.policy.window else {
            return true;
        };
        if d.approval.is_some() {
            return true;
        }
        let key = (d.finding.rule.name().into_owned(), d.finding.what.clone());
        if let Some(b) = self.bursts.get_mut(&key) {
            if now.duration_since(b.opened) < window {
                let t = d.time;
                let r = b.repeat.get_or_insert(Repeat {
                    count: 0,
                    first: t,
                    last: t,
                });
                r.count += 1;
                r.last = t;
                return false;
            }
        }
        if self.bursts.len() >= AlertPolicy::MAX_BURSTS {
            return true;
        }
        let sample = Sample {
            event: d.event.clone(),
            finding: d.finding.clone(),
            action: d.action.to_string(),
            by: d.by,
        };
        // A burst whose window closed but was not yet collected is
        // replaced: `due` finds its order entry stale and skips it.
        if let Some(old) = self.bursts.insert(
            key.clone(),
            Burst {
                opened: now,
                sample,
                repeat: None,
            },
        ) {
            if let Some(repeat) = old.repeat {
                self.late.push(Aggregate {
                    sample: old.sample,
                    repeat,
                });
            }
        }
        self.order.push_back((now, key));
        true
    }

    /// The bursts whose window has closed by `now`, as aggregate alerts
    /// (those without repeats close silently).
    pub fn due(&mut self, now: Instant) -> Vec<Aggregate> {
        let mut out = std::mem::take(&mut self.late);
        let Some(window) = self.policy.window else {
            return out;
        };
        while let Some((opened, _)) = self.order.front() {
            if now.duration_since(*opened) < window {
                break;
            }
            let Some((opened, key)) = self.order.pop_front() else {
                break;
            };
            self.close(&key, opened, &mut out);
        }
        out
    }

    /// Every open burst, closed now (the agent's end).
    pub fn drain(&mut self) -> Vec<Aggregate> {
        let mut out = std::mem::take(&mut self.late);
        while let Some((opened, key)) = self.order.pop_front() {
            self.close(&key, opened, &mut out);
        }
        out
    }

    /// Closes the burst of `key` opened at `opened` (a later burst of the
    /// same key stays).
    fn close(&mut self, key: &Key, opened: Instant, out: &mut Vec<Aggregate>) {
        if self.bursts.get(key).map(|b| b.opened) != Some(opened) {
            return;
        }
        if let Some(b) = self.bursts.remove(key) {
            if let Some(repeat) = b.repeat {
                out.push(Aggregate {
                    sample: b.sample,
                    repeat,
                });
            }
        }
    }

    /// Whether one more alert may go to the feeds this minute.
    pub fn feed_admit(&mut self, now: Instant) -> bool {
        let Some(budget) = self.policy.feed_budget else {
            return true;
        };
        let fresh = self
            .minute
            .is_none_or(|m| now.duration_since(m) >= Duration::from_secs(60));
        if fresh {
            self.minute = Some(now);
            self.sent_this_minute = 0;
        }
        if self.sent_this_minute < budget {
            self.sent_this_minute += 1;
            true
        } else {
            self.over_budget += 1;
            false
        }
    }

    /// Alerts kept from the feeds by the budget since the last call.
    pub fn take_over_budget(&mut self) -> u64 {
        std::mem::take(&mut self.over_budget)
    }
}

#[cfg(test)]
mod tests;

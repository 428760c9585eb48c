//! Convergence: one stability clock per learned class, and per-class
//! sliding-window rates.
//!
//! A class is stable once learning has run past the warm-up and no novel
//! entry has appeared for the quiet period. The novelty rate is the count
//! of novel entries in the last minute (scaled while less than a minute has
//! passed). Times are CLOCK_MONOTONIC nanoseconds, the kernel's event clock.
use std::collections::BTreeMap;

use serde::Serialize;

use super::Class;

const MINUTE_NS: u64 = 60_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
pub struct ClockConfig {
    pub warmup_ns: u64,
    pub quiet_ns: u64,
}

/// The state of one class's clock, as `learn` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassProgress {
    pub class: Class,
    pub entries: u64,
    pub events: u64,
    pub stable: bool,
    /// Seconds since the last novel entry (or since learning began).
    pub quiet_secs: f64,
    /// Novel entries per minute, over the last minute.
    pub novelty_per_min: f64,
}

#[derive(Debug, Default, Clone)]
struct Clock {
    entries: u64,
    events: u64,
    last_novel_ns: Option<u64>,
    /// Times of novel entries within the last minute.
    recent: std::collections::VecDeque<u64>,
}

/// Stability clocks for the learned classes.
#[derive(Debug, Clone)]
pub struct Convergence {
    cfg: ClockConfig,
    start_ns: u64,
    clocks: BTreeMap<Class, Clock>,
}

impl Convergence {
    pub fn new(cfg: ClockConfig, start_ns: u64) -> Self {
        let clocks = Class::LEARNED
            .iter()
            .map(|c| (*c, Clock::default()))
            .collect();
        Self {
            cfg,
            start_ns,
            clocks,
        }
    }

    pub fn config(&self) -> ClockConfig {
        self.cfg
    }

    /// Records an event of `class` at `now`; `novel` when it added an entry.
    pub fn record(&mut self, class: Class, novel: bool, now: u64) {
        let class = if class == Class::Delete {
            Class::File
        } else {
            class
        };
        let Some(c) = self.clocks.get_mut(&class) else {
            return;
        };
        c.events += 1;
        if novel {
            c.entries += 1;
            c.last_novel_ns = Some(now);
            c.recent.push_back(now);
        }
    }

    /// The clocks at `now`.
    pub fn progress(&mut self, now: u64) -> Vec<ClassProgress> {
        let elapsed = now.saturating_sub(self.start_ns);
        let cfg = self.cfg;
        let start = self.start_ns;
        self.clocks
            .iter_mut()
            .map(|(class, c)| {
                while c
                    .recent
                    .front()
                    .is_some_and(|t| now.saturating_sub(*t) > MINUTE_NS)
                {
                    c.recent.pop_front();
                }
                let since = now.saturating_sub(c.last_novel_ns.unwrap_or(start));
                let window = elapsed.clamp(SECOND_NS, MINUTE_NS) as f64 / MINUTE_NS as f64;
                ClassProgress {
                    class: *class,
                    entries: c.entries,
                    events: c.events,
                    stable: elapsed >= cfg.warmup_ns && since >= cfg.quiet_ns,
                    quiet_secs: since as f64 / 1e9,
                    novelty_per_min: c.recent.len() as f64 / window,
                }
            })
            .collect()
    }
}

/// Peak count per class in any 60-second window, in one-second buckets
/// (so memory stays constant whatever the event rate).
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    classes: BTreeMap<Class, Buckets>,
}

#[derive(Debug, Clone, Default)]
struct Buckets {
    /// (second, count), oldest first, covering at most the last 60 seconds.
    secs: std::collections::VecDeque<(u64, u64)>,
    in_window: u64,
    peak: u64,
}

impl RateWindow {
    /// Counts one event of `class` at `ts_ns`; returns the count in the
    /// 60 s window ending now.
    pub fn add(&mut self, class: Class, ts_ns: u64) -> u64 {
        let b = self.classes.entry(class).or_default();
        let sec = ts_ns / SECOND_NS;
        while let Some(&(s, n)) = b.secs.front() {
            if s + 60 <= sec {
                b.secs.pop_front();
                b.in_window -= n;
            } else {
                break;
            }
        }
        match b.secs.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => b.secs.push_back((sec, 1)),
        }
        b.in_window += 1;
        b.peak = b.peak.max(b.in_window);
        b.in_window
    }

    pub fn peak(&self, class: Class) -> u64 {
        self.classes.get(&class).map_or(0, |b| b.peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SECOND_NS;

    #[test]
    fn a_class_settles_after_warmup_and_quiet() {
        let cfg = ClockConfig {
            warmup_ns: 10 * S,
            quiet_ns: 5 * S,
        };
        let mut c = Convergence::new(cfg, 0);
        c.record(Class::Exec, true, S);
        c.record(Class::Exec, false, 2 * S);
        let p = |c: &mut Convergence, t| {
            c.progress(t)
                .into_iter()
                .find(|p| p.class == Class::Exec)
                .unwrap()
        };
        assert!(!p(&mut c, 7 * S).stable, "still warming up");
        assert!(p(&mut c, 10 * S).stable);
        c.record(Class::Exec, true, 11 * S);
        assert!(
            !p(&mut c, 12 * S).stable,
            "a novel entry restarts the clock"
        );
        assert!(p(&mut c, 16 * S).stable);
        assert_eq!(p(&mut c, 16 * S).entries, 2);
        assert_eq!(p(&mut c, 16 * S).events, 3);
        assert!(
            c.progress(16 * S).iter().all(|p| p.stable),
            "quiet classes are stable too"
        );
    }

    #[test]
    fn novelty_rate_is_per_minute() {
        let cfg = ClockConfig {
            warmup_ns: 0,
            quiet_ns: 0,
        };
        let mut c = Convergence::new(cfg, 0);
        for i in 0..6 {
            c.record(Class::File, true, i * 10 * S);
        }
        let f = |c: &mut Convergence, t| {
            c.progress(t)
                .into_iter()
                .find(|p| p.class == Class::File)
                .unwrap()
        };
        assert_eq!(f(&mut c, 60 * S).novelty_per_min, 6.0);
        // 30 s in with 3 novel entries: 6 per minute.
        let mut c2 = Convergence::new(cfg, 0);
        for i in 0..3 {
            c2.record(Class::File, true, i * 10 * S);
        }
        assert_eq!(f(&mut c2, 30 * S).novelty_per_min, 6.0);
        assert_eq!(f(&mut c, 200 * S).novelty_per_min, 0.0);
    }

    #[test]
    fn rate_peak_over_sliding_minute() {
        let mut r = RateWindow::default();
        for i in 0..10 {
            r.add(Class::Exec, i * S);
        }
        // 50 s later the first ten are still in the window.
        for _ in 0..5 {
            r.add(Class::Exec, 55 * S);
        }
        assert_eq!(r.peak(Class::Exec), 15);
        // 2 minutes later only the new ones count.
        assert_eq!(r.add(Class::Exec, 180 * S), 1);
        assert_eq!(r.peak(Class::Exec), 15);
        assert_eq!(r.peak(Class::Dns), 0);
    }
}

//! What an agent did within its profile, a session at a time, for people
//! ("ran 14 programs, read or wrote 212 files, looked up api.example.com").
//!
//! A session begins when a process of the agent is seen (or the kernel
//! counted something for it) and ends once none has been left for `IDLE`,
//! or when agentwatch stops watching. Counts come from two places: the
//! kernel's per-agent counters of what it allowed without a record
//! crossing (`policy::decided`), and the records that crossed and were
//! allowed here (every exec, DNS names, calls judged in userspace).
//!
//! A session is written to the audit log as `activity` records, each
//! cumulative: the last one of a session stands for all of it. One is
//! written every `EVERY` while something changed, and one at the end.
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::profile::Class;

/// No process for this long ends a session.
pub const IDLE: Duration = Duration::from_secs(10);
/// How often a session under way is written, when something changed.
pub const EVERY: Duration = Duration::from_secs(300);
/// Distinct programs and names kept per session (the rest are counted).
const KEEP: usize = 20;

/// Counts per class, in `Class::kernel_index` order.
pub type Counts = [u64; Class::ALL.len()];

/// One agent's sessions.
#[derive(Debug, Default)]
pub struct Activity {
    /// The kernel's allowed counters as far as sessions have taken them.
    counted: Counts,
    session: Option<Session>,
    /// Something crossed since the last `busy`.
    noted: bool,
}

#[derive(Debug, Clone)]
struct Session {
    /// When it began (RFC 3339): its identity in the audit log.
    started: String,
    last_write: Instant,
    changed: bool,
    idle_since: Option<Instant>,
    within: Counts,
    programs: BTreeMap<String, u64>,
    names: BTreeSet<String>,
    more_names: u64,
}

impl Session {
    fn new(now: Instant) -> Self {
        Session {
            started: crate::timestamp::now(),
            last_write: now,
            changed: true,
            idle_since: None,
            within: Counts::default(),
            programs: BTreeMap::new(),
            names: BTreeSet::new(),
            more_names: 0,
        }
    }

    fn record(&self, agent: &str, ended: bool) -> Value {
        let within: serde_json::Map<String, Value> = Class::ALL
            .iter()
            .map(|c| (c.name().to_string(), json!(self.within[c.kernel_index()])))
            .collect();
        json!({
            "type": "activity",
            "agent": agent,
            "session": self.started,
            "until": crate::timestamp::now(),
            "ended": ended,
            "within_profile": within,
            "programs": self.programs,
            "names": self.names,
            "more_names": self.more_names,
        })
    }
}

impl Activity {
    /// The session under way, begun now if there is none.
    fn session(&mut self, now: Instant) -> &mut Session {
        self.noted = true;
        let s = self.session.get_or_insert_with(|| Session::new(now));
        s.changed = true;
        s.idle_since = None;
        s
    }

    /// A crossed record of `class` that was allowed.
    pub fn allowed(&mut self, class: Class, now: Instant) {
        self.session(now).within[class.kernel_index()] += 1;
    }

    /// A program ran (allowed): `path` as the profile writes it.
    pub fn exec(&mut self, path: &str, now: Instant) {
        let s = self.session(now);
        s.within[Class::Exec.kernel_index()] += 1;
        if let Some(n) = s.programs.get_mut(path) {
            *n += 1;
        } else if s.programs.len() < KEEP {
            s.programs.insert(path.to_string(), 1);
        } else {
            // Counted among the execs; its name is not kept.
            *s.programs.entry("(others)".into()).or_insert(0) += 1;
        }
    }

    /// A name the agent looked up (allowed).
    pub fn name(&mut self, name: &str, now: Instant) {
        let s = self.session(now);
        s.within[Class::Dns.kernel_index()] += 1;
        if s.names.len() < KEEP {
            s.names.insert(name.to_string());
        } else if !s.names.contains(name) {
            s.more_names += 1;
        }
    }

    /// Whether the agent did anything since the last call (a record
    /// crossed, or the kernel counted): then it had a process, and the
    /// caller need not look for one.
    pub fn busy(&mut self, kernel: &Counts) -> bool {
        std::mem::take(&mut self.noted) || *kernel != self.counted
    }

    /// Every second or so: how many processes the agent has and the
    /// kernel's allowed counters for it. Returns the record to write when
    /// one is due (the session ended, or `EVERY` passed with news).
    pub fn tick(
        &mut self,
        agent: &str,
        processes: usize,
        kernel: Counts,
        now: Instant,
    ) -> Option<Value> {
        let grew = kernel.iter().zip(self.counted).any(|(k, c)| *k > c);
        if self.session.is_none() && (processes > 0 || grew) {
            self.session = Some(Session::new(now));
        }
        self.absorb(kernel);
        let s = self.session.as_mut()?;
        if processes == 0 {
            let since = *s.idle_since.get_or_insert(now);
            if now.duration_since(since) >= IDLE {
                return self.finish(agent, kernel);
            }
        } else {
            s.idle_since = None;
        }
        if s.changed && now.duration_since(s.last_write) >= EVERY {
            s.changed = false;
            s.last_write = now;
            return Some(s.record(agent, false));
        }
        None
    }

    /// The session under way as its record would read now (for a live
    /// view), without taking anything from the kernel's counters.
    pub fn current(&self, agent: &str, kernel: Counts) -> Option<Value> {
        let mut s = self.session.clone()?;
        for (i, k) in kernel.iter().enumerate() {
            s.within[i] += k.saturating_sub(self.counted[i]);
        }
        Some(s.record(agent, false))
    }

    /// The session under way ends (its agent is gone, or agentwatch stops
    /// watching): its last record, if there was one.
    pub fn finish(&mut self, agent: &str, kernel: Counts) -> Option<Value> {
        self.absorb(kernel);
        self.session.take().map(|s| s.record(agent, true))
    }

    /// What the kernel counted since the last look goes to the session.
    fn absorb(&mut self, kernel: Counts) {
        let Some(s) = &mut self.session else {
            return;
        };
        for (i, k) in kernel.iter().enumerate() {
            let grown = k.saturating_sub(self.counted[i]);
            if grown > 0 {
                s.within[i] += grown;
                s.changed = true;
            }
        }
        self.counted = kernel;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(file: u64, net: u64) -> Counts {
        let mut c = Counts::default();
        c[Class::File.kernel_index()] = file;
        c[Class::Network.kernel_index()] = net;
        c
    }

    #[test]
    fn a_session_takes_what_the_kernel_counted_and_what_crossed() {
        let t = Instant::now();
        let mut a = Activity::default();
        assert!(a.tick("bot", 0, Counts::default(), t).is_none());
        assert!(a.session.is_none(), "nothing seen, no session");
        a.exec("/usr/bin/git", t);
        a.exec("/usr/bin/git", t);
        a.name("api.example.com", t);
        a.allowed(Class::Delete, t);
        assert!(a.tick("bot", 2, counts(212, 3), t).is_none());
        let live = a.current("bot", counts(215, 4)).unwrap();
        assert_eq!(
            (
                live["ended"].clone(),
                live["within_profile"]["file"].clone()
            ),
            (json!(false), json!(215))
        );
        let r = a.finish("bot", counts(215, 4)).unwrap();
        assert_eq!(r["type"], "activity");
        assert_eq!(r["ended"], true);
        assert_eq!(r["within_profile"]["exec"], 2);
        assert_eq!(r["within_profile"]["file"], 215);
        assert_eq!(r["within_profile"]["network"], 4);
        assert_eq!(r["within_profile"]["delete"], 1);
        assert_eq!(r["within_profile"]["dns"], 1);
        assert_eq!(r["programs"]["/usr/bin/git"], 2);
        assert_eq!(r["names"], json!(["api.example.com"]));
        assert!(
            a.finish("bot", counts(215, 4)).is_none(),
            "one end per session"
        );
    }

    #[test]
    fn sessions_end_when_the_agent_has_been_gone_a_while_and_the_next_counts_afresh() {
        let t = Instant::now();
        let mut a = Activity::default();
        assert!(a.busy(&counts(10, 0)));
        assert!(a.tick("bot", 1, counts(10, 0), t).is_none());
        assert!(!a.busy(&counts(10, 0)), "nothing new");
        assert!(a
            .tick("bot", 0, counts(12, 0), t + Duration::from_secs(1))
            .is_none());
        let end = a.tick("bot", 0, counts(12, 0), t + IDLE + Duration::from_secs(1));
        assert_eq!(end.unwrap()["within_profile"]["file"], 12);
        // The kernel counted while no process was seen: a new session.
        let next = t + IDLE * 3;
        assert!(a.tick("bot", 0, counts(15, 0), next).is_none());
        let r = a.finish("bot", counts(15, 0)).unwrap();
        assert_eq!(r["within_profile"]["file"], 3, "only what is new");
    }

    #[test]
    fn a_long_session_is_written_as_it_goes_only_when_something_changed() {
        let t = Instant::now();
        let mut a = Activity::default();
        a.tick("bot", 1, counts(1, 0), t);
        let mid = a.tick("bot", 1, counts(2, 0), t + EVERY).unwrap();
        assert_eq!(mid["ended"], false);
        assert_eq!(mid["within_profile"]["file"], 2);
        assert!(
            a.tick("bot", 1, counts(2, 0), t + EVERY * 2).is_none(),
            "no news"
        );
    }

    #[test]
    fn programs_and_names_are_bounded_and_the_rest_counted() {
        let t = Instant::now();
        let mut a = Activity::default();
        for i in 0..KEEP + 5 {
            a.exec(&format!("/bin/p{i}"), t);
            a.name(&format!("h{i}.example"), t);
        }
        let r = a.finish("bot", Counts::default()).unwrap();
        assert_eq!(r["programs"].as_object().unwrap().len(), KEEP + 1);
        assert_eq!(r["programs"]["(others)"], 5);
        assert_eq!(r["names"].as_array().unwrap().len(), KEEP);
        assert_eq!(r["more_names"], 5);
        assert_eq!(r["within_profile"]["exec"], (KEEP + 5) as u64);
    }
}

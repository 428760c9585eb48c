//! Drift: how an agent's behaviour moves away from its profile over days.
//!
//! The daemon keeps, per agent and per UTC day, what crossed to userspace
//! against the profile: violations by class (novelty), names learned in
//! place in each territory, and which executables ran and which DNS names
//! were asked (so grants unused for N days can be retired: least
//! privilege). Allowed file opens and connects are decided in the kernel
//! and never cross, so file and network rules' use is not known here.
//! The log is a JSON file per agent in the state directory, written as
//! the daemon turns and when it stops, pruned to `KEEP_DAYS`.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::profile::{glob::Glob, Profile};

/// Days kept in the log.
pub const KEEP_DAYS: usize = 90;
/// Distinct executables and names kept per day (the rest are counted).
const CAP: usize = 2000;

#[derive(Debug, Error)]
pub enum DriftError {
    #[error("drift log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("drift log {path} is not a drift log ({why}); move it aside and the daemon starts a new one")]
    Malformed { path: PathBuf, why: String },
}

/// One day of an agent's activity against its profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// Violations by class (`file`, `network`, ..., `rate`, `guardrail`).
    #[serde(default)]
    pub novel: BTreeMap<String, u64>,
    /// New names created in a territory and allowed, by territory.
    #[serde(default)]
    pub learned: BTreeMap<String, u64>,
    /// Executables that ran (normalised paths).
    #[serde(default)]
    pub execs: BTreeSet<String>,
    /// DNS names asked.
    #[serde(default)]
    pub names: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftLog {
    #[serde(default)]
    pub days: BTreeMap<String, Day>,
}

/// The report of a window of days.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub since: String,
    pub until: String,
    /// Days in the window with anything recorded.
    pub days_seen: usize,
    /// Violations in the window by class, and on its last day.
    pub novel: BTreeMap<String, u64>,
    pub novel_last_day: BTreeMap<String, u64>,
    /// Names learned in place, by territory.
    pub learned: BTreeMap<String, u64>,
    /// Grants nothing used in the window: `executable` and `dns` rules.
    pub unused: Vec<Unused>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unused {
    pub class: &'static str,
    pub rule: String,
}

impl Report {
    /// Violations in the window, all classes.
    pub fn total_novel(&self) -> u64 {
        self.novel.values().sum()
    }

    /// Reviewer lines.
    pub fn lines(&self, agent: &str) -> Vec<String> {
        let mut out = vec![format!(
            "{agent}: {} to {} ({} day(s) with activity)",
            self.since, self.until, self.days_seen
        )];
        if self.novel.is_empty() {
            out.push("nothing outside the profile".into());
        }
        for (class, n) in &self.novel {
            let last = self.novel_last_day.get(class).copied().unwrap_or(0);
            out.push(format!(
                "{class}: {n} violation(s) outside the profile ({last} on the last day)"
            ));
        }
        for (t, n) in &self.learned {
            out.push(format!("territory {t}: {n} new name(s) learned in place"));
        }
        for u in &self.unused {
            out.push(format!(
                "unused since {}: {} {} (a grant to retire?)",
                self.since, u.class, u.rule
            ));
        }
        out.push(
            "file and network rules: their use is decided in the kernel and not counted here"
                .into(),
        );
        out
    }
}

/// The window of the last `days` days, today included: (since, until).
pub fn window(days: u64) -> (String, String) {
    let now = SystemTime::now();
    let back = std::time::Duration::from_secs(86_400 * days.saturating_sub(1));
    (day_of(now.checked_sub(back).unwrap_or(now)), day_of(now))
}

/// The UTC day of `t` (`YYYY-MM-DD`).
pub fn day_of(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::timestamp::format_utc(secs)[..10].to_string()
}

impl DriftLog {
    /// The log at `path`; empty when there is none yet.
    pub fn load(path: &Path) -> Result<Self, DriftError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(DriftError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| DriftError::Malformed {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    }

    /// Writes the log whole (or not at all), keeping the last `KEEP_DAYS`.
    pub fn save(&mut self, path: &Path) -> Result<(), DriftError> {
        while self.days.len() > KEEP_DAYS {
            self.days.pop_first();
        }
        let io = |source| DriftError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string(self).map_err(|e| io(std::io::Error::other(e)))?;
        crate::atomic::write(path, text.as_bytes()).map_err(|e| io(e.source))
    }

    fn day(&mut self, day: &str) -> &mut Day {
        self.days.entry(day.to_string()).or_default()
    }

    pub fn note_violation(&mut self, day: &str, class: &str) {
        *self.day(day).novel.entry(class.to_string()).or_default() += 1;
    }

    pub fn note_learned(&mut self, day: &str, territory: &str) {
        *self
            .day(day)
            .learned
            .entry(territory.to_string())
            .or_default() += 1;
    }

    pub fn note_exec(&mut self, day: &str, path: &str) {
        let d = self.day(day);
        if d.execs.len() < CAP {
            d.execs.insert(path.to_string());
        }
    }

    pub fn note_name(&mut self, day: &str, name: &str) {
        let d = self.day(day);
        if d.names.len() < CAP {
            d.names
                .insert(name.trim_end_matches('.').to_ascii_lowercase());
        }
    }

    /// What days `since..=until` hold against `profile`.
    pub fn report(&self, profile: &Profile, since: &str, until: &str) -> Report {
        let mut r = Report {
            since: since.to_string(),
            until: until.to_string(),
            ..Report::default()
        };
        let window: Vec<&Day> = self
            .days
            .range(since.to_string()..=until.to_string())
            .map(|(_, d)| d)
            .collect();
        r.days_seen = window.len();
        let mut execs = BTreeSet::new();
        let mut names = BTreeSet::new();
        for d in &window {
            for (c, n) in &d.novel {
                *r.novel.entry(c.clone()).or_default() += n;
            }
            for (t, n) in &d.learned {
                *r.learned.entry(t.clone()).or_default() += n;
            }
            execs.extend(d.execs.iter().cloned());
            names.extend(d.names.iter().cloned());
        }
        r.novel_last_day = self
            .days
            .get(until)
            .map(|d| d.novel.clone())
            .unwrap_or_default();
        for e in &profile.executables {
            let used = Glob::parse(&e.path).is_ok_and(|g| execs.iter().any(|x| g.matches(x)));
            if !used {
                r.unused.push(Unused {
                    class: "executable",
                    rule: e.path.clone(),
                });
            }
        }
        for d in &profile.dns {
            let want = d.name.trim_end_matches('.').to_ascii_lowercase();
            let used = match want.strip_prefix("*.") {
                Some(suffix) => names.iter().any(|n| n.ends_with(&format!(".{suffix}"))),
                None => names.contains(&want),
            };
            if !used {
                r.unused.push(Unused {
                    class: "dns",
                    rule: d.name.clone(),
                });
            }
        }
        r
    }
}

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;

/// An agent's drift log as the daemon keeps it: noted as events come,
/// saved every minute and when the agent ends, and a `drift` notice the
/// first time a day's violations reach the threshold.
pub struct Keeper {
    log: DriftLog,
    path: PathBuf,
    saved: std::time::Instant,
    dirty: bool,
    pub threshold: Option<u64>,
    /// The day a notice was raised (one a day).
    warned: Option<String>,
}

impl Keeper {
    /// The log at `path`. One that does not read is moved aside (kept,
    /// named in the warning) and a new one begins: drift is advice, and
    /// enforcement does not wait for it.
    pub fn open(path: PathBuf, threshold: Option<u64>) -> Self {
        let log = DriftLog::load(&path).unwrap_or_else(|e| {
            let aside = path.with_extension("json.unreadable");
            let _ = std::fs::rename(&path, &aside);
            tracing::warn!(error = %e, kept = %aside.display(), "drift log unreadable; starting a new one");
            DriftLog::default()
        });
        Self {
            log,
            path,
            saved: std::time::Instant::now(),
            dirty: false,
            threshold,
            warned: None,
        }
    }

    fn today() -> String {
        day_of(SystemTime::now())
    }

    pub fn log(&self) -> &DriftLog {
        &self.log
    }

    /// A violation of `class`; the drift notice when today's violations
    /// reach the threshold.
    pub fn violation(&mut self, agent: &str, class: &str) -> Option<serde_json::Value> {
        let today = Self::today();
        self.log.note_violation(&today, class);
        self.dirty = true;
        let limit = self.threshold?;
        let n: u64 = self.log.days.get(&today)?.novel.values().sum();
        if n < limit || self.warned.as_deref() == Some(today.as_str()) {
            return None;
        }
        self.warned = Some(today.clone());
        Some(serde_json::json!({
            "type": "drift",
            "agent": agent,
            "day": today,
            "violations": n,
            "threshold": limit,
            "by_class": self.log.days.get(&today).map(|d| d.novel.clone()).unwrap_or_default(),
            "what": format!("{n} violations outside the profile today (threshold {limit}): the agent drifts from its profile; see `agentwatch drift {agent}`"),
            "time": crate::timestamp::now(),
            "host": crate::origin::host(),
        }))
    }

    pub fn learned(&mut self, territory: &str) {
        self.log.note_learned(&Self::today(), territory);
        self.dirty = true;
    }

    pub fn exec(&mut self, path: &str) {
        self.log.note_exec(&Self::today(), path);
        self.dirty = true;
    }

    pub fn name(&mut self, name: &str) {
        self.log.note_name(&Self::today(), name);
        self.dirty = true;
    }

    /// Saves when a minute has passed since the last save.
    pub fn save_if_due(&mut self) {
        if self.dirty && self.saved.elapsed() >= std::time::Duration::from_secs(60) {
            self.save();
        }
    }

    pub fn save(&mut self) {
        self.saved = std::time::Instant::now();
        if !self.dirty {
            return;
        }
        match self.log.save(&self.path) {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot save the drift log; kept in memory, tried again in a minute")
            }
        }
    }
}

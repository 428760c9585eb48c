//! What an agent used, for `learn`: the command runs in a cgroup of its
//! own with no limits, where the kernel counts its memory (`memory.peak`
//! on v2, v1's `memory.max_usage_in_bytes`) and its processes
//! (`pids.current`, sampled: neither hierarchy keeps a peak everywhere).
//! The learned budgets are the peaks with headroom, as rate budgets are,
//! above floors that leave room for a session that does more.
use std::{collections::BTreeMap, path::PathBuf};

use super::{hierarchy, Cgroup, Hierarchy};

/// The least memory budget learning writes: a small session's peak says
/// little about the next one's.
const MEMORY_FLOOR: u64 = 256 << 20;
/// The least process budget learning writes.
const PIDS_FLOOR: u64 = 64;

/// The agent's cgroup while it is learned, and the peaks seen.
pub struct Meter {
    cgroup: Cgroup,
    memory_peak: Option<PathBuf>,
    pids_current: Option<PathBuf>,
    pids_peak: u64,
}

impl Meter {
    /// A cgroup named `name` in each hierarchy that has the memory or
    /// pids controller; None when neither is anywhere (nothing to learn).
    pub fn create(name: &str) -> Option<Self> {
        let mut cgroup = Cgroup::empty();
        let memory = hierarchy("memory").and_then(|h| {
            let dir = cgroup.dir_for("memory", name).ok()?;
            Some(match h {
                Hierarchy::V2(_) => dir.join("memory.peak"),
                Hierarchy::V1(_) => dir.join("memory.max_usage_in_bytes"),
            })
        });
        let pids = hierarchy("pids")
            .and_then(|_| cgroup.dir_for("pids", name).ok())
            .map(|d| d.join("pids.current"));
        if memory.is_none() && pids.is_none() {
            return None;
        }
        Some(Self {
            cgroup,
            memory_peak: memory,
            pids_current: pids,
            pids_peak: 0,
        })
    }

    /// The `cgroup.procs` files the command writes itself into.
    pub fn procs_files(&self) -> Vec<std::ffi::CString> {
        self.cgroup.procs_files()
    }

    /// Notes the processes there now.
    pub fn sample(&mut self) {
        if let Some(f) = &self.pids_current {
            self.pids_peak = self.pids_peak.max(read_number(f));
        }
    }

    /// The budgets learned: each peak times `headroom`, above its floor;
    /// as the profile's `resources` write them.
    pub fn learned(&mut self, headroom: f64) -> BTreeMap<String, String> {
        self.sample();
        let mut out = BTreeMap::new();
        let with = |peak: u64| (peak as f64 * headroom).ceil() as u64;
        if let Some(f) = &self.memory_peak {
            let peak = read_number(f);
            if peak > 0 {
                let mib = with(peak).max(MEMORY_FLOOR).div_ceil(1 << 20);
                out.insert("memory".into(), format!("{mib}M"));
            }
        }
        if self.pids_current.is_some() && self.pids_peak > 0 {
            let n = with(self.pids_peak).max(PIDS_FLOOR);
            out.insert("pids".into(), n.to_string());
        }
        out
    }
}

fn read_number(f: &std::path::Path) -> u64 {
    std::fs::read_to_string(f)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// The larger of two values of budget `kind` as profiles write them (a
/// merge keeps what every session needed); `a` when they do not compare.
pub fn larger(kind: &str, a: &str, b: &str) -> String {
    let size = |v: &str| super::parse_size(v).map(|n| n as f64);
    let number = |v: &str| v.parse::<f64>().ok();
    let duration = |v: &str| {
        crate::units::parse_duration(v)
            .ok()
            .map(|d| d.as_secs_f64())
    };
    let value = |v: &str| match kind {
        "memory" => size(v),
        "runtime" => duration(v),
        _ => number(v),
    };
    match (value(a), value(b)) {
        (Some(x), Some(y)) if y > x => b.to_string(),
        _ => a.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_budget_of_each_kind_is_kept() {
        assert_eq!(larger("memory", "512M", "1G"), "1G");
        assert_eq!(larger("memory", "2G", "1G"), "2G");
        assert_eq!(larger("pids", "64", "100"), "100");
        assert_eq!(larger("runtime", "90m", "2h"), "2h");
        assert_eq!(larger("cpu", "0.5", "0.25"), "0.5");
        assert_eq!(larger("pids", "64", "junk"), "64");
    }
}

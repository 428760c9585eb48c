//! Resource budgets for an agent agentwatch starts: memory, processes and
//! CPU enforced by the kernel through a cgroup of the agent's own, open
//! files by `RLIMIT_NOFILE`, wall-clock run time by the supervisor.
//!
//! The cgroup is v2 where the controller is enabled in the v2 hierarchy
//! (a pure v2 host: Debian 12, systemd's default), else the controller's
//! own v1 hierarchy (hybrid hosts such as this one: v2 mounted beside v1
//! controllers, which then cannot be delegated in v2). `doctor` says which
//! each controller gets. A budget reached is counted by the kernel
//! (`pids.events`, `memory.events` or v1's `memory.failcnt`); `Cgroup::hits`
//! reads what is new, and the enforcer makes it a `budget/<kind>`
//! violation.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

mod meter;
pub use meter::{larger, Meter};

#[derive(Debug, Error)]
pub enum BudgetError {
    #[error("{0:?} is not a budget: write KIND=VALUE with KIND one of memory, pids, cpu, files, runtime, restarts")]
    Kind(String),
    #[error("budget {kind}: {value:?} is not {want}")]
    Value {
        kind: &'static str,
        value: String,
        want: &'static str,
    },
    #[error("no cgroup hierarchy has the {0} controller here (`agentwatch doctor` says what this host delegates); drop the budget or enable the controller")]
    NoController(&'static str),
    #[error("cannot set up the agent's cgroup at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What reaching a budget does (`run --budget-action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Reported; the agent goes on (the kernel's limit still holds).
    Alert,
    /// The agent's processes are stopped until `agentwatch resume`.
    #[default]
    Pause,
    /// The agent's processes are killed.
    Kill,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Pause => "pause",
            Action::Kill => "kill",
        }
    }
}

/// What an agent may use. None: no budget.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    /// Bytes of memory (page cache included, as the kernel counts it).
    pub memory: Option<u64>,
    /// Processes and threads at once.
    pub pids: Option<u64>,
    /// CPUs' worth of time (0.5: half of one CPU).
    pub cpu: Option<f64>,
    /// Open files per process.
    pub files: Option<u64>,
    /// Wall-clock time from start.
    pub runtime: Option<Duration>,
    /// Restarts allowed within a window: more is a loop that keeps
    /// relaunching.
    pub restarts: Option<Restarts>,
}

/// A restart budget: at most `limit` starts again within `window`.
#[derive(Debug, Clone, PartialEq)]
pub struct Restarts {
    pub limit: u32,
    pub window: Duration,
    /// As written (`5/10m`), for messages.
    pub written: String,
}

impl Budgets {
    /// The budgets of a profile's `resources` section whose kinds `keep`
    /// accepts (a selected agent has no run time; a kernel without the
    /// controller holds none).
    pub fn from_resources(
        resources: &std::collections::BTreeMap<String, String>,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<Self, BudgetError> {
        let mut b = Self::default();
        for (kind, value) in resources.iter().filter(|(k, _)| keep(k)) {
            b.set(&format!("{kind}={value}"))?;
        }
        Ok(b)
    }

    /// Adds one `KIND=VALUE` (`run --budget`).
    pub fn set(&mut self, spec: &str) -> Result<(), BudgetError> {
        let (kind, value) = spec
            .split_once('=')
            .ok_or_else(|| BudgetError::Kind(spec.into()))?;
        let bad = |kind, want| BudgetError::Value {
            kind,
            value: value.into(),
            want,
        };
        match kind {
            "memory" => {
                self.memory =
                    Some(parse_size(value).ok_or_else(|| bad("memory", "a size (512M, 2G)"))?)
            }
            "pids" => self.pids = Some(value.parse().map_err(|_| bad("pids", "a count"))?),
            "files" => self.files = Some(value.parse().map_err(|_| bad("files", "a count"))?),
            "cpu" => {
                let c: f64 = value.parse().map_err(|_| bad("cpu", "CPUs (0.5, 2)"))?;
                if !(c > 0.0 && c.is_finite()) {
                    return Err(bad("cpu", "CPUs (0.5, 2)"));
                }
                self.cpu = Some(c);
            }
            "runtime" => {
                self.runtime = Some(
                    crate::units::parse_duration(value)
                        .map_err(|_| bad("runtime", "a duration (30m, 2h)"))?,
                )
            }
            "restarts" => {
                let want = "RESTARTS/WINDOW (5/10m)";
                let (n, w) = value.split_once('/').ok_or_else(|| bad("restarts", want))?;
                let n = n.trim().parse().map_err(|_| bad("restarts", want))?;
                let w =
                    crate::units::parse_duration(w.trim()).map_err(|_| bad("restarts", want))?;
                self.restarts = Some(Restarts {
                    limit: n,
                    window: w,
                    written: value.to_string(),
                });
            }
            _ => return Err(BudgetError::Kind(spec.into())),
        }
        Ok(())
    }

    /// Whether the kernel needs a cgroup for these.
    pub fn needs_cgroup(&self) -> bool {
        self.memory.is_some() || self.pids.is_some() || self.cpu.is_some()
    }
}

/// "512M" as bytes (K, M, G, T: powers of 1024; a plain number is bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return None,
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Where a controller is, here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Enabled in the v2 hierarchy mounted at this root.
    V2(PathBuf),
    /// Its own v1 hierarchy at this mount.
    V1(PathBuf),
}

impl Hierarchy {
    pub fn describe(&self) -> String {
        match self {
            Hierarchy::V2(p) => format!("cgroup v2 ({})", p.display()),
            Hierarchy::V1(p) => format!("cgroup v1 ({}): not delegable in v2 here", p.display()),
        }
    }
}

/// Each budget controller and where it can be used here (`doctor`).
pub fn delegation() -> Vec<(&'static str, String)> {
    ["memory", "pids", "cpu"]
        .into_iter()
        .map(|c| {
            let at = hierarchy(c).map_or_else(
                || "not available: budgets of this kind are refused".to_string(),
                |h| h.describe(),
            );
            (c, at)
        })
        .collect()
}

/// Where `controller` (pids, memory, cpu) can be used on this host.
pub fn hierarchy(controller: &str) -> Option<Hierarchy> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v1 = None;
    for line in mounts.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = pre.split(' ').nth(4).unwrap_or("");
        let mut f = post.split(' ');
        let (fstype, opts) = (f.next().unwrap_or(""), f.nth(1).unwrap_or(""));
        if fstype == "cgroup2" {
            let root = PathBuf::from(mount_point);
            let available =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            if available.split_whitespace().any(|c| c == controller) {
                return Some(Hierarchy::V2(root));
            }
        } else if fstype == "cgroup" && opts.split(',').any(|o| o == controller) {
            v1 = Some(Hierarchy::V1(PathBuf::from(mount_point)));
        }
    }
    v1
}

/// The agent's cgroup: one directory per hierarchy its budgets need,
/// removed on drop (once its processes are gone).
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Counter files of reached budgets: (kind, file, key in it, seen).
    counters: Vec<Counter>,
    limits: Vec<(&'static str, String)>,
    /// An adopted cgroup (a daemon agent's own) is not ours to remove:
    /// the limit files and what they held before, put back on drop.
    adopted: bool,
    restore: Vec<(PathBuf, String)>,
}

#[derive(Debug)]
struct Counter {
    kind: &'static str,
    file: PathBuf,
    /// The line's key ("max", "oom_kill"); None: the file is one number.
    key: Option<&'static str>,
    seen: u64,
}

/// A budget the agent reached since the last look.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub kind: &'static str,
    /// The limit as written to the kernel.
    pub limit: String,
    /// How many times since the last look.
    pub times: u64,
}

impl Cgroup {
    /// Makes `agentwatch/NAME` under each hierarchy the budgets need and
    /// writes the limits.
    pub fn create(name: &str, b: &Budgets) -> Result<Self, BudgetError> {
        let mut cg = Cgroup::empty();
        cg.limit(b, &mut |cg, controller| cg.dir_for(controller, name))?;
        Ok(cg)
    }

    pub(super) fn empty() -> Self {
        Cgroup {
            dirs: Vec::new(),
            counters: Vec::new(),
            limits: Vec::new(),
            adopted: false,
            restore: Vec::new(),
        }
    }

    /// The budgets held on a cgroup that exists and is not ours (a daemon
    /// agent's service): `path` relative to each hierarchy's root (as
    /// systemd lays the same tree out in each). Its limits are put back as
    /// they were when the budgets end.
    pub fn adopt(path: &str, b: &Budgets) -> Result<Self, BudgetError> {
        let rel = path.trim_start_matches('/');
        let mut cg = Cgroup::empty();
        cg.adopted = true;
        cg.limit(b, &mut |_, controller| {
            let root = match hierarchy(controller).ok_or(BudgetError::NoController(controller))? {
                Hierarchy::V2(root) => root,
                Hierarchy::V1(mount) => mount,
            };
            let dir = root.join(rel);
            if !dir.is_dir() {
                return Err(BudgetError::Io {
                    path: dir,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("the agent's cgroup has no {controller} directory (is the service running?)"),
                    ),
                });
            }
            Ok(dir)
        })?;
        Ok(cg)
    }

    /// Writes the limits of `b` into the directory `dir_of` gives for each
    /// controller they need.
    fn limit(
        &mut self,
        b: &Budgets,
        dir_of: &mut dyn FnMut(&mut Cgroup, &'static str) -> Result<PathBuf, BudgetError>,
    ) -> Result<(), BudgetError> {
        let cg = self;
        if let Some(n) = b.pids {
            let dir = dir_of(cg, "pids")?;
            cg.write(&dir, "pids.max", &n.to_string())?;
            cg.limits.push(("pids", n.to_string()));
            cg.counter("pids", dir.join("pids.events"), Some("max"));
        }
        if let Some(bytes) = b.memory {
            let dir = dir_of(cg, "memory")?;
            if dir.join("memory.max").exists() {
                cg.write(&dir, "memory.max", &bytes.to_string())?;
                // No swap beyond the budget: the limit is the limit.
                let _ = cg.write(&dir, "memory.swap.max", "0");
                cg.counter("memory", dir.join("memory.events"), Some("max"));
            } else {
                cg.write(&dir, "memory.limit_in_bytes", &bytes.to_string())?;
                cg.counter("memory", dir.join("memory.failcnt"), None);
            }
            cg.limits.push(("memory", bytes.to_string()));
        }
        if let Some(cpus) = b.cpu {
            let dir = dir_of(cg, "cpu")?;
            let period = 100_000u64;
            let quota = ((cpus * period as f64) as u64).max(1000);
            if dir.join("cpu.max").exists() {
                cg.write(&dir, "cpu.max", &format!("{quota} {period}"))?;
            } else {
                cg.write(&dir, "cpu.cfs_period_us", &period.to_string())?;
                cg.write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            cg.limits.push(("cpu", format!("{cpus}")));
        }
        Ok(())
    }

    fn dir_for(&mut self, controller: &'static str, name: &str) -> Result<PathBuf, BudgetError> {
        let h = hierarchy(controller).ok_or(BudgetError::NoController(controller))?;
        let dir = match &h {
            Hierarchy::V2(root) => {
                // The controller must be on for the children of each level.
                let parent = root.join("agentwatch");
                self.mkdir(&parent)?;
                let on = format!("+{controller}");
                let _ = std::fs::write(root.join("cgroup.subtree_control"), &on);
                self.write(&parent, "cgroup.subtree_control", &on)?;
                parent.join(name)
            }
            Hierarchy::V1(mount) => mount.join("agentwatch").join(name),
        };
        if !self.dirs.contains(&dir) {
            self.mkdir(&dir)?;
            self.dirs.push(dir.clone());
        }
        Ok(dir)
    }

    fn mkdir(&self, dir: &Path) -> Result<(), BudgetError> {
        match std::fs::create_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(source) => Err(BudgetError::Io {
                path: dir.to_path_buf(),
                source,
            }),
        }
    }

    fn write(&mut self, dir: &Path, file: &str, value: &str) -> Result<(), BudgetError> {
        if self.adopted {
            // Not a directory of ours: what it held goes back at the end.
            if let Ok(old) = std::fs::read_to_string(dir.join(file)) {
                self.restore.push((dir.join(file), old.trim().to_string()));
            }
        }
        std::fs::write(dir.join(file), value).map_err(|source| BudgetError::Io {
            path: dir.join(file),
            source,
        })
    }

    fn counter(&mut self, kind: &'static str, file: PathBuf, key: Option<&'static str>) {
        let seen = read_counter(&file, key);
        self.counters.push(Counter {
            kind,
            file,
            key,
            seen,
        });
    }

    /// Moves `pid` into the cgroup (every hierarchy): its children follow.
    pub fn add(&self, pid: u32) -> Result<(), BudgetError> {
        for d in &self.dirs {
            let procs = d.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(|source| BudgetError::Io {
                path: procs,
                source,
            })?;
        }
        Ok(())
    }

    /// The budgets reached since the last call.
    pub fn hits(&mut self) -> Vec<Hit> {
        let mut out = Vec::new();
        for c in &mut self.counters {
            let now = read_counter(&c.file, c.key);
            if now > c.seen {
                let limit = self
                    .limits
                    .iter()
                    .find(|(k, _)| *k == c.kind)
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                out.push(Hit {
                    kind: c.kind,
                    limit,
                    times: now - c.seen,
                });
                c.seen = now;
            }
        }
        out
    }

    /// The `cgroup.procs` files a process writes itself into.
    pub fn procs_files(&self) -> Vec<std::ffi::CString> {
        self.dirs
            .iter()
            .filter_map(|d| {
                std::ffi::CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes())
                    .ok()
            })
            .collect()
    }
}

fn read_counter(file: &Path, key: Option<&str>) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    match key {
        None => text.trim().parse().unwrap_or(0),
        Some(k) => text
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0),
    }
}

/// Removes the cgroup `dir`, killing the processes still in it first;
/// waits up to a second for them to go.
fn remove_ending_stragglers(dir: &Path) -> std::io::Result<()> {
    if std::fs::remove_dir(dir).is_ok() {
        return Ok(());
    }
    let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let pids: Vec<i32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
    if !pids.is_empty() {
        tracing::info!(dir = %dir.display(), processes = pids.len(), "the agent's processes left at the end of its run are ended with it");
    }
    for p in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let mut last = Ok(());
    for _ in 0..20 {
        last = std::fs::remove_dir(dir);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for (file, old) in self.restore.iter().rev() {
            if let Err(e) = std::fs::write(file, old) {
                tracing::warn!(file = %file.display(), error = %e, "cannot put the agent's cgroup limit back");
            }
        }
        // A cgroup with processes cannot go. What is left in it is the
        // agent's, outliving its run (a background job the command left
        // behind): it ends with the run rather than go on unwatched.
        for d in &self.dirs {
            if let Err(e) = remove_ending_stragglers(d) {
                tracing::warn!(dir = %d.display(), error = %e, "the agent's cgroup stays: a process of it outlived the run and would not end");
            } else if let Some(parent) = d.parent() {
                // `agentwatch/` too once no run uses it (busy otherwise).
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_errors_say_what_to_write() {
        let mut b = Budgets::default();
        for s in [
            "memory=512M",
            "pids=64",
            "cpu=0.5",
            "files=1024",
            "runtime=30m",
            "restarts=5/10m",
        ] {
            b.set(s).unwrap();
        }
        assert_eq!(
            b.restarts,
            Some(Restarts {
                limit: 5,
                window: Duration::from_secs(600),
                written: "5/10m".to_string()
            })
        );
        for bad in ["restarts=5", "restarts=x/10m", "restarts=5/soon"] {
            let e = b.set(bad).unwrap_err().to_string();
            assert!(e.contains("RESTARTS/WINDOW"), "{e}");
        }
        assert_eq!(b.memory, Some(512 << 20));
        assert_eq!((b.pids, b.files, b.cpu), (Some(64), Some(1024), Some(0.5)));
        assert_eq!(b.runtime, Some(Duration::from_secs(1800)));
        assert!(b.needs_cgroup());
        assert!(b
            .set("disk=1G")
            .unwrap_err()
            .to_string()
            .contains("memory, pids, cpu"));
        assert!(b
            .set("memory=lots")
            .unwrap_err()
            .to_string()
            .contains("a size"));
        assert!(b.set("cpu=0").is_err());
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1X"), None);
    }

    #[test]
    fn counters_read_keyed_lines_and_plain_numbers() {
        let dir = std::env::temp_dir().join(format!("aw-budget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("events"), "low 0\nmax 7\noom_kill 1\n").unwrap();
        std::fs::write(dir.join("failcnt"), "12\n").unwrap();
        assert_eq!(read_counter(&dir.join("events"), Some("max")), 7);
        assert_eq!(read_counter(&dir.join("events"), Some("oom_kill")), 1);
        assert_eq!(read_counter(&dir.join("failcnt"), None), 12);
        assert_eq!(read_counter(&dir.join("missing"), None), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

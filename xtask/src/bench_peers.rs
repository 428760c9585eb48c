//! `cargo xtask bench --peers-only` (and part of a full run): agentwatch
//! against the tools a security team would otherwise use, on the same
//! workloads in one invocation. Configurations, alternating round by round,
//! each workload in a fresh process pinned to CPU 1 (monitors on CPU 0):
//! no monitor; empty BPF programs on the same hooks (the floor);
//! `agentwatch run --mode monitor` and `--mode enforce`; auditd with rules
//! for the same syscalls of the same process tree; bpftrace printing every
//! such call of the tree. Writes a section of docs/benchmarks.md, the raw
//! numbers as docs/benchmarks-peers.json and a plot as
//! docs/benchmarks-peers.png.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    bench::{load_floor, parse_ns, Bench},
    bench_daemon::{cpu_secs, rss_mib},
    peers::{self, Auditd},
};

pub const HEADING: &str = "\n## Against peers: auditd and bpftrace";

/// The configurations, in table order.
pub(crate) const CONFIGS: [Config; 8] = [
    Config::None,
    Config::Floor,
    Config::FloorRaw,
    Config::Unwatched,
    Config::Monitor,
    Config::Enforce,
    Config::Auditd,
    Config::Bpftrace,
];

pub(crate) const WORKLOADS: [&str; 4] = ["open", "exec", "connect", "macro"];

/// Where the macro workload's crate is (read by the inner `macro` loop).
const MACRO_ENV: &str = "AGENTWATCH_BENCH_MACRO";

/// Paths the latency workload opens (absent; one per sample).
pub(crate) const MARK: &str = "/tmp/agentwatch-bench-mark";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Config {
    None,
    Floor,
    FloorRaw,
    /// Unwatched, beside an agent under `run --mode enforce`.
    Unwatched,
    Monitor,
    Enforce,
    Auditd,
    Bpftrace,
}

impl Config {
    /// Its column in [`CONFIGS`] (and in a grid's rows).
    pub fn index(self) -> usize {
        CONFIGS.iter().position(|c| *c == self).unwrap_or(0)
    }

    pub fn name(self) -> &'static str {
        match self {
            Config::None => "no monitor",
            Config::Floor => "empty BPF floor",
            Config::FloorRaw => "empty raw_syscalls floor",
            Config::Unwatched => "agentwatch, unwatched",
            Config::Monitor => "agentwatch monitor",
            Config::Enforce => "agentwatch enforce",
            Config::Auditd => "auditd",
            Config::Bpftrace => "bpftrace",
        }
    }
    pub fn key(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::Floor => "floor",
            Config::FloorRaw => "floor_raw",
            Config::Unwatched => "unwatched",
            Config::Monitor => "monitor",
            Config::Enforce => "enforce",
            Config::Auditd => "auditd",
            Config::Bpftrace => "bpftrace",
        }
    }
}

/// The inner `macro` workload: a clean, offline, single-job debug build
/// of a small crate (serde_json and its dependencies).
pub fn macro_build() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::var_os(MACRO_ENV).context("macro workload needs its crate")?);
    let st = Command::new("cargo")
        .args(["build", "--offline", "-q", "-j", "1"])
        .current_dir(&dir)
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .status()
        .context("running cargo")?;
    if !st.success() {
        bail!("the macro build failed: {st}");
    }
    Ok(())
}

/// Scratch space: profiles, the macro crate, tool outputs. Removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("agentwatch-peers-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("crate/src"))?;
        Ok(Self(dir))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn krate(&self) -> PathBuf {
        self.0.join("crate")
    }
    /// A fresh target directory before each build (created, so cargo does
    /// not make it under a random name).
    fn reset_target(&self) -> anyhow::Result<()> {
        let t = self.krate().join("target");
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(&t)?;
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn prepare_crate(s: &Scratch) -> anyhow::Result<()> {
    std::fs::write(
        s.krate().join("Cargo.toml"),
        "[package]\nname = \"peers-macro\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nserde_json = \"1\"\n\n[workspace]\n",
    )?;
    std::fs::write(
        s.krate().join("src/lib.rs"),
        "pub fn answer() -> String {\n    serde_json::json!({\"answer\": 42}).to_string()\n}\n",
    )?;
    let st = Command::new("cargo")
        .args(["generate-lockfile", "--offline", "-q"])
        .current_dir(s.krate())
        .status()?;
    if !st.success() {
        bail!("cannot resolve serde_json offline: build agentwatch once first (it fetches it)");
    }
    Ok(())
}

/// The loops' profile: the enforcement benchmark's plus `/bin/true`.
fn loops_profile(bench: &Bench) -> String {
    crate::bench_enforce::profile(&bench.xtask).replace(
        "executables:\n",
        "executables:\n  - path: \"/usr/bin/true\"\n  - path: \"/bin/true\"\n  - path: \"/usr/bin/sleep\"\n  - path: \"/bin/sleep\"\n",
    )
}

/// The macro workload's profile, learned as a user would: three runs of
/// `agentwatch learn`, merged. Its actions alert (see the caveats).
fn learn_macro(bench: &Bench, s: &Scratch) -> anyhow::Result<PathBuf> {
    let mut runs = Vec::new();
    for i in 0..3 {
        s.reset_target()?;
        let out = s.path(&format!("learn-{i}.yaml"));
        let st = Command::new(&bench.agentwatch)
            .args(["learn", "--agent", "macro", "--force", "--json", "--out"])
            .arg(&out)
            .arg("--")
            .args(bench.loop_cmd("macro"))
            .current_dir(s.krate())
            .env(MACRO_ENV, s.krate())
            .env_remove("LD_LIBRARY_PATH")
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("agentwatch learn of the macro workload failed: {st}");
        }
        runs.push(out);
    }
    let merged = Command::new(&bench.agentwatch)
        .args(["profile", "merge"])
        .args(&runs)
        .output()?;
    if !merged.status.success() {
        bail!(
            "profile merge failed: {}",
            String::from_utf8_lossy(&merged.stderr)
        );
    }
    let mut text = String::from_utf8(merged.stdout)?;
    let built = build_scripts(&s.krate())?;
    text = match text.find("executables:\n") {
        Some(i) => {
            let at = i + "executables:\n".len();
            format!("{}{built}{}", &text[..at], &text[at..])
        }
        None => format!("{text}executables:\n{built}"),
    };
    text.push_str(
        "actions:\n  exec: alert\n  file: alert\n  delete: alert\n  network: alert\n  rate: alert\n",
    );
    let path = s.path("macro.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Profile rows for the build scripts the last learning run compiled and
/// ran. Running a binary the agent wrote is `exec/written`, a hard rule
/// (it pauses even in monitor mode) unless the profile lists the binary by
/// path and sha256; each build compiles the same scripts to the same
/// bytes, so listing them is what a reviewer would approve.
fn build_scripts(krate: &Path) -> anyhow::Result<String> {
    let mut rows = String::new();
    let dir = krate.join("target/debug/build");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("build-script-build"))
        })
        .collect();
    found.sort();
    for p in found {
        let out = Command::new("sha256sum").arg(&p).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(hash) = text.split_whitespace().next().filter(|h| h.len() == 64) else {
            bail!("sha256sum {} failed", p.display());
        };
        rows.push_str(&format!(
            "  - path: \"{}\"\n    sha256: [\"{hash}\"]\n",
            p.display()
        ));
    }
    Ok(rows)
}

/// One run: the workload's ns/op (for `macro`, the build's wall time), the
/// monitor's CPU seconds and peak RSS, and the events the monitor wrote.
#[derive(Default, Clone, Copy)]
pub(crate) struct Sample {
    pub ns: f64,
    pub cpu_s: f64,
    pub rss_mib: f64,
    pub events: u64,
    pub alerts: u64,
}

/// Samples the CPU and peak RSS of `pid` (a monitor that starts the
/// workload) every 20 ms until stopped. CPU counts from the moment the
/// workload exists: loading programs and compiling the profile before it
/// are start-up, outside the timed region for every tool alike.
struct Poller {
    stop: Arc<AtomicBool>,
    last: Arc<Mutex<(f64, f64)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new((0.0f64, 0.0f64)));
        let (st, la) = (stop.clone(), last.clone());
        let children = format!("/proc/{pid}/task/{pid}/children");
        let thread = std::thread::spawn(move || {
            let mut since: Option<f64> = None;
            while !st.load(Ordering::Relaxed) {
                let cpu = cpu_secs(pid);
                if since.is_none() {
                    let kids = std::fs::read_to_string(&children).unwrap_or_default();
                    if !kids.trim().is_empty() {
                        since = Some(cpu);
                    }
                }
                let hwm = rss_mib(pid).1;
                if let Ok(mut l) = la.lock() {
                    if let Some(s) = since {
                        l.0 = l.0.max(cpu - s);
                    }
                    l.1 = l.1.max(hwm);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            last,
            thread: Some(thread),
        }
    }
    fn finish(mut self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.last.lock().map(|l| *l).unwrap_or((0.0, 0.0))
    }
}

pub(crate) struct Runner<'a> {
    pub bench: &'a Bench,
    scratch: &'a Scratch,
    pub loops_profile: PathBuf,
    macro_profile: PathBuf,
    pub script: PathBuf,
}

impl Runner<'_> {
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    pub fn command(&self, argv: &[String]) -> Command {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        self.prepare(&mut c);
        c
    }

    pub fn prepare(&self, c: &mut Command) {
        c.current_dir(self.scratch.krate())
            .env(MACRO_ENV, self.scratch.krate())
            .env_remove("LD_LIBRARY_PATH");
        peers::with_auid(c);
    }

    pub fn agentwatch_run(
        &self,
        mode: &str,
        profile: &Path,
        alerts: &Path,
        argv: &[String],
    ) -> Command {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"])
            .arg(&self.bench.agentwatch)
            .args(["run", "--json", "--mode", mode, "--profile"])
            .arg(profile)
            .arg("-o")
            .arg(alerts)
            .arg("--")
            .args(argv);
        self.prepare(&mut c);
        c
    }

    /// Runs `c`, sampling its process (a monitor holding the workload)
    /// when `poll`; returns ns/op and the sampled (cpu, rss).
    fn timed(&self, mut c: Command, poll: bool) -> anyhow::Result<(f64, (f64, f64))> {
        let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let poller = poll.then(|| Poller::start(child.id()));
        let out = child.wait_with_output()?;
        let used = poller.map(Poller::finish).unwrap_or((0.0, 0.0));
        if !out.status.success() {
            bail!(
                "workload failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((parse_ns(&String::from_utf8_lossy(&out.stdout))?, used))
    }

    fn run(&self, cfg: Config, workload: &str) -> anyhow::Result<Sample> {
        if workload == "macro" {
            self.scratch.reset_target()?;
        }
        let argv = self.bench.loop_cmd(workload);
        let profile = if workload == "macro" {
            &self.macro_profile
        } else {
            &self.loops_profile
        };
        let out = self.scratch.path("out.txt");
        let _ = std::fs::remove_file(&out);
        let mut s = Sample::default();
        match cfg {
            Config::None => s.ns = self.timed(self.command(&argv), false)?.0,
            Config::Floor | Config::FloorRaw => {
                let _floor = load_floor(&self.bench.agentwatch, cfg == Config::FloorRaw)?;
                s.ns = self.timed(self.command(&argv), false)?.0;
            }
            Config::Unwatched => {
                // The idle agent's own profile lists `sleep`; what the
                // loop costs does not depend on it.
                let alerts = self.scratch.path("idle-alerts.jsonl");
                let _agent = crate::bench::hold_idle_agent(
                    &self.bench.agentwatch,
                    &[
                        "run",
                        "--mode",
                        "enforce",
                        "--profile",
                        &self.loops_profile.to_string_lossy(),
                        "-o",
                        &alerts.to_string_lossy(),
                    ],
                )?;
                s.ns = self.timed(self.command(&argv), false)?.0;
            }
            Config::Monitor | Config::Enforce => {
                let mode = if cfg == Config::Monitor {
                    "monitor"
                } else {
                    "enforce"
                };
                let c = self.agentwatch_run(mode, profile, &out, &argv);
                let (ns, (cpu, rss)) = self.timed(c, true)?;
                s.ns = ns;
                s.cpu_s = cpu;
                s.rss_mib = rss;
                s.alerts = count_lines(&out, "\"type\":\"alert\"");
            }
            Config::Auditd => {
                let a = Auditd::start(&self.scratch.path("auditd"))?;
                let kaudit = peers::kauditd_pid();
                let k0 = kaudit.map(cpu_secs).unwrap_or(0.0);
                let a0 = cpu_secs(a.pid());
                s.ns = self.timed(self.command(&argv), false)?.0;
                // Let auditd drain the kernel's backlog before reading it.
                wait_quiet(&a.log());
                s.cpu_s = cpu_secs(a.pid()) - a0 + kaudit.map(cpu_secs).unwrap_or(0.0) - k0;
                s.rss_mib = rss_mib(a.pid()).1;
                s.events = count_lines(&a.log(), "type=SYSCALL");
                let _ = std::fs::remove_file(a.log());
            }
            Config::Bpftrace => {
                let mut c = peers::bpftrace_cmd(&self.script, Some(&out), &argv);
                self.prepare(&mut c);
                let (ns, (cpu, rss)) = self.timed(c, true)?;
                s.ns = ns;
                s.cpu_s = cpu;
                s.rss_mib = rss;
                s.events = count_lines(&out, "");
            }
        }
        Ok(s)
    }
}

/// Waits until `file` stops growing (100 ms without change, 10 s at most).
pub(crate) fn wait_quiet(file: &Path) {
    let size = || std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = size();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = size();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Lines of `file` containing `needle` (every line for "").
pub(crate) fn count_lines(file: &Path, needle: &str) -> u64 {
    let Ok(f) = std::fs::File::open(file) else {
        return 0;
    };
    BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|l| needle.is_empty() || l.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .count() as u64
}

/// Only the detection latency of each tool (`--latency-only`): the last
/// table of the comparison, without the rounds before it. Prints one
/// line per tool; rewrites nothing.
pub fn latency_only(bench: &Bench, samples: u64) -> anyhow::Result<String> {
    peers::install()?;
    let scratch = Scratch::new()?;
    std::fs::write(scratch.path("loops.yaml"), loops_profile(bench))?;
    std::fs::write(scratch.path("peers.bt"), peers::bpftrace_script())?;
    let runner = Runner {
        bench,
        scratch: &scratch,
        loops_profile: scratch.path("loops.yaml"),
        // The latency workload runs under the loops profile only.
        macro_profile: scratch.path("unused.yaml"),
        script: scratch.path("peers.bt"),
    };
    let rows = crate::bench_peers_load::latency(&runner, samples)?;
    let mut out = format!("detection latency, {samples} samples per tool (µs)\n");
    for r in rows {
        out.push_str(&format!(
            "{:<11} p50 {:>7.0}  p99 {:>7.0}  max {:>7.0}  seen {}  missed {}\n",
            r.tool, r.p50_us, r.p99_us, r.max_us, r.seen, r.missed
        ));
    }
    Ok(out)
}

/// Per workload and configuration, every round's sample.
pub(crate) type Grid = Vec<Vec<Vec<Sample>>>;

pub fn run(
    bench: &Bench,
    rounds: usize,
    samples: u64,
) -> anyhow::Result<crate::bench_peers_report::Report> {
    peers::install()?;
    let scratch = Scratch::new()?;
    prepare_crate(&scratch)?;
    std::fs::write(scratch.path("loops.yaml"), loops_profile(bench))?;
    std::fs::write(scratch.path("peers.bt"), peers::bpftrace_script())?;
    std::fs::write(crate::bench::OPEN_TARGET, b"x")?;
    eprintln!("peers: learning the macro workload's profile (3 runs)");
    let runner = Runner {
        bench,
        scratch: &scratch,
        loops_profile: scratch.path("loops.yaml"),
        macro_profile: learn_macro(bench, &scratch)?,
        script: scratch.path("peers.bt"),
    };
    let mut grid: Grid = vec![vec![Vec::new(); CONFIGS.len()]; WORKLOADS.len()];
    for round in 0..rounds {
        for (wi, w) in WORKLOADS.iter().enumerate() {
            // Each round starts at the next configuration, so none always
            // runs first (after the target is reset, on colder caches).
            for k in 0..CONFIGS.len() {
                let ci = (k + round) % CONFIGS.len();
                let cfg = &CONFIGS[ci];
                let s = runner
                    .run(*cfg, w)
                    .with_context(|| format!("{w} under {}", cfg.name()))?;
                grid[wi][ci].push(s);
            }
        }
        eprintln!("peers: round {}/{rounds}", round + 1);
    }
    eprintln!("peers: throughput and loss");
    let throughput = crate::bench_peers_load::throughput(&runner)?;
    eprintln!("peers: detection latency, {samples} samples per tool");
    let latency = crate::bench_peers_load::latency(&runner, samples)?;
    let _ = std::fs::remove_file(crate::bench::OPEN_TARGET);
    Ok(crate::bench_peers_report::render(
        &grid,
        rounds,
        bench,
        &throughput,
        &latency,
    ))
}

//! The enforcement part of `cargo xtask bench` (issue 4):
//!
//! - overhead per operation of the foundation loops (open, connect) run
//!   unwatched, under `agentwatch run --mode monitor` and `--mode enforce`
//!   with a profile that allows everything they do (and, for reference,
//!   under `trace`, where every event crosses), as ratios against the
//!   unwatched loop of the same round;
//! - time from a violating syscall's entry to the process, and to its whole
//!   tree, being stopped (pause): the in-kernel path (SIGSTOP from the
//!   kernel at the call) against the userspace fallback (the kernel only
//!   senses; userspace judges the event and stops the tree), p50/p99 from
//!   an hdrhistogram.
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;

use crate::bench::{median, parse_ns, ratio_stats, Bench};

/// The path the latency workload opens: not in the profile, so a pause.
const VIOLATION: &str = "/tmp/agentwatch-bench-violation";

/// CLOCK_MONOTONIC in ns: the clock both the workload and the harness read.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The inner workloads of this benchmark; false when `workload` is not one.
pub fn inner(workload: &str, ops: u64) -> anyhow::Result<bool> {
    match workload {
        // A sibling in the agent's tree that makes no watched call: only a
        // sweep of the whole tree stops it.
        "idle" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        "violate" => {
            let me = std::env::current_exe()?;
            let mut idle = Command::new(me)
                .args(["bench", "--inner", "idle"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?;
            let mut out = std::io::stdout().lock();
            let mut go = String::new();
            writeln!(out, "pids {} {}", std::process::id(), idle.id())?;
            out.flush()?;
            for _ in 0..ops {
                let t0 = monotonic_ns();
                // Stopped at this call (in-kernel path) or soon after it
                // (userspace), until the harness approves.
                let _ = std::fs::File::open(VIOLATION);
                writeln!(out, "t0 {t0}")?;
                out.flush()?;
                // One violation per sample: wait for the harness.
                go.clear();
                if std::io::stdin().read_line(&mut go)? == 0 {
                    break;
                }
            }
            let _ = idle.kill();
            let _ = idle.wait();
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A profile that allows everything the loops do; file violations pause.
pub(crate) fn profile(xtask: &Path) -> String {
    format!(
        r#"apiVersion: agentwatch.dev/v1
kind: Profile
agent: bench
executables:
  - path: "/usr/bin/taskset"
  - path: "{xtask}"
files:
  - path: "/tmp/agentwatch-bench-target"
    access: [read]
  - path: "/usr/**"
    access: [read, exec]
  - path: "/lib/**"
    access: [read, exec]
  - path: "/lib64/**"
    access: [read, exec]
  - path: "/etc/ld.so.cache"
    access: [read]
  - path: "/proc/**"
    access: [read]
  - path: "/sys/devices/system/cpu/**"
    access: [read]
  - path: "/dev/null"
    access: [read, write]
network:
  - direction: bind
    address: "127.0.0.1"
  - direction: connect
    address: "127.0.0.1"
  - direction: accept
    address: "127.0.0.1"
actions:
  file: pause
"#,
        xtask = xtask.display()
    )
}

/// A temporary directory for the profile and alert files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(xtask: &Path) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("agentwatch-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("profile.yaml"), profile(xtask))?;
        Ok(Self(dir))
    }
    fn profile(&self) -> PathBuf {
        self.0.join("profile.yaml")
    }
    fn alerts(&self) -> PathBuf {
        self.0.join("alerts.jsonl")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `agentwatch run` arguments before `--`, pinned to CPU 0 as in (d).
fn run_cmd(bench: &Bench, scratch: &Scratch, mode: &str, userspace: bool) -> Command {
    agentwatch_run(
        bench,
        &scratch.profile(),
        &scratch.alerts(),
        mode,
        userspace,
    )
}

/// `agentwatch run` of `profile` in `mode`, alerts to `alerts`, pinned to
/// CPU 0, up to and with `--`.
pub(crate) fn agentwatch_run(
    bench: &Bench,
    profile: &Path,
    alerts: &Path,
    mode: &str,
    userspace: bool,
) -> Command {
    let mut c = Command::new("taskset");
    // cargo's library path would send the loader probing its directories,
    // which the profile rightly does not allow.
    c.env_remove("LD_LIBRARY_PATH")
        .args(["-c", "0"])
        .arg(&bench.agentwatch)
        .args(["run", "--json", "--mode", mode, "--profile"])
        .arg(profile)
        .arg("-o")
        .arg(alerts);
    if userspace {
        c.arg("--decide-in-userspace");
    }
    c.arg("--");
    c
}

/// Alerts a run raised (the loops should raise none).
fn alert_count(scratch: &Scratch) -> usize {
    std::fs::read_to_string(scratch.alerts())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"type\":\"alert\""))
        .count()
}

pub struct OverheadRow {
    pub workload: &'static str,
    pub unwatched: f64,
    pub monitor: f64,
    pub enforce: f64,
    pub trace: f64,
    pub monitor_over: (f64, f64, f64),
    pub enforce_over: (f64, f64, f64),
    pub trace_over: (f64, f64, f64),
    pub alerts: usize,
}

fn run_loop_under(
    bench: &Bench,
    scratch: &Scratch,
    mode: &str,
    workload: &str,
) -> anyhow::Result<(f64, usize)> {
    let argv = bench.loop_cmd(workload);
    let out = run_cmd(bench, scratch, mode, false).args(&argv).output()?;
    if !out.status.success() {
        bail!(
            "loop under run --mode {mode} failed: {}\nalerts:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(scratch.alerts()).unwrap_or_default()
        );
    }
    Ok((
        parse_ns(&String::from_utf8_lossy(&out.stdout))?,
        alert_count(scratch),
    ))
}

/// Unwatched, monitor, enforce and trace, alternating round by round.
pub fn overhead(
    bench: &Bench,
    workload: &'static str,
    rounds: usize,
) -> anyhow::Result<OverheadRow> {
    let scratch = Scratch::new(&bench.xtask)?;
    let (mut a, mut m, mut e, mut t) = (vec![], vec![], vec![], vec![]);
    let mut alerts = 0;
    for round in 0..rounds {
        a.push(bench.run_plain(workload)?);
        let (ns, n) = run_loop_under(bench, &scratch, "monitor", workload)?;
        m.push(ns);
        alerts += n;
        let (ns, n) = run_loop_under(bench, &scratch, "enforce", workload)?;
        e.push(ns);
        alerts += n;
        t.push(bench.run_watched(workload)?);
        eprint!("\r{workload} (enforcement): round {}/{rounds}", round + 1);
    }
    eprintln!();
    Ok(OverheadRow {
        workload,
        monitor_over: ratio_stats(&m, &a),
        enforce_over: ratio_stats(&e, &a),
        trace_over: ratio_stats(&t, &a),
        unwatched: median(&mut a),
        monitor: median(&mut m),
        enforce: median(&mut e),
        trace: median(&mut t),
        alerts,
    })
}

/// Process state letter from /proc/PID/stat ('T' when stopped).
fn state(pid: u32) -> Option<u8> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|b| *b == b')')?;
    s.get(close + 2).copied()
}

/// Stop latencies of one path, in ns.
pub struct Latency {
    pub violator: Histogram<u64>,
    pub tree: Histogram<u64>,
}

/// Kills the run (and so its tree) if the benchmark fails half way.
struct RunGuard(Child);

impl Drop for RunGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agentwatch_json(bench: &Bench, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(&bench.agentwatch).args(args).output()?;
    if !out.status.success() {
        bail!(
            "agentwatch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

/// The id of the one open approval request, waiting for it to appear.
fn pending_id(bench: &Bench) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let v = agentwatch_json(bench, &["pending", "--json"])?;
        if let Some(id) = v[0]["id"].as_str() {
            return Ok(id.to_string());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("no approval request appeared within 30 s")
}

fn read_line(r: &mut BufReader<ChildStdout>) -> anyhow::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("the workload ended early");
    }
    Ok(line.trim().to_string())
}

/// Runs the violating workload `samples` times under `run --mode enforce`
/// and times each stop from the workload's clock reading before the call.
pub fn latency(bench: &Bench, samples: u64, userspace: bool) -> anyhow::Result<Latency> {
    let scratch = Scratch::new(&bench.xtask)?;
    let mut cmd = run_cmd(bench, &scratch, "enforce", userspace);
    cmd.args(["taskset", "-c", "1"])
        .arg(&bench.xtask)
        .args(["bench", "--inner", "violate", "--ops"])
        .arg(samples.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut guard = RunGuard(cmd.spawn()?);
    let mut out = BufReader::new(guard.0.stdout.take().context("workload stdout")?);
    let mut go = guard.0.stdin.take().context("workload stdin")?;
    let pids = read_line(&mut out)?;
    let ids: Vec<u32> = pids
        .strip_prefix("pids ")
        .context("workload did not report its pids")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let (violator, idle) = (ids[0], ids[1]);
    let mut lat = Latency {
        violator: Histogram::new_with_bounds(1_000, 600_000_000_000, 3)?,
        tree: Histogram::new_with_bounds(1_000, 600_000_000_000, 3)?,
    };
    for _ in 0..samples {
        // Busy-poll /proc, yielding so agentwatch (same CPU) still runs.
        let (mut t_violator, mut t_tree) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while t_tree.is_none() {
            if Instant::now() > deadline {
                bail!("the workload was not stopped within 30 s");
            }
            let v = state(violator) == Some(b'T');
            if v && t_violator.is_none() {
                t_violator = Some(monotonic_ns());
            }
            if v && state(idle) == Some(b'T') {
                t_tree = Some(monotonic_ns());
            }
            std::thread::yield_now();
        }
        let id = pending_id(bench)?;
        agentwatch_json(bench, &["approve", &id])?;
        let t0: u64 = read_line(&mut out)?
            .strip_prefix("t0 ")
            .context("workload did not report t0")?
            .parse()?;
        let (tv, tt) = (t_violator.unwrap_or(0), t_tree.unwrap_or(0));
        lat.violator.record(tv.saturating_sub(t0).max(1_000))?;
        lat.tree.record(tt.saturating_sub(t0).max(1_000))?;
        // Both must be running again before the next sample.
        while state(idle) == Some(b'T') || state(violator) == Some(b'T') {
            std::thread::yield_now();
        }
        writeln!(go, "go")?;
        go.flush()?;
    }
    drop(go);
    drop(out);
    let _ = guard.0.wait();
    Ok(lat)
}

const fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

pub const HEADING: &str = "\n## Enforcement: overhead and violation-to-stop latency";

pub fn render(rows: &[OverheadRow], rounds: usize, kernel: &Latency, user: &Latency) -> String {
    let mut s = format!(
        "{HEADING}\n\nGenerated by `cargo xtask bench` (or `--enforce-only`). The loops of the table above, {rounds} rounds, each configuration in a fresh process in every round; ratios are medians of per-round ratios against the unwatched loop of the same round, interquartile range in brackets. The profile allows everything the loops do, so monitor and enforce decide every event in the kernel; `trace` (every event crosses to userspace) is there for reference.\n\n| loop | unwatched ns/op | monitor ns/op | enforce ns/op | trace ns/op | monitor/unwatched | enforce/unwatched | trace/unwatched | alerts |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    let f = |t: (f64, f64, f64)| format!("{:.3} [{:.3}-{:.3}]", t.0, t.1, t.2);
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |\n",
            r.workload,
            r.unwatched,
            r.monitor,
            r.enforce,
            r.trace,
            f(r.monitor_over),
            f(r.enforce_over),
            f(r.trace_over),
            r.alerts
        ));
    }
    s.push_str(&format!(
        "\nViolation to stop: a workload pinned to CPU 1 reads CLOCK_MONOTONIC, then opens a path outside the profile (action `pause`); the harness busy-polls /proc for state T of the violating process and of an idle sibling in the same tree, then approves and takes the next sample. {} samples per path.\n\n| path | violator stopped p50 µs | p99 µs | max µs | whole tree stopped p50 µs | p99 µs | max µs |\n|---|---|---|---|---|---|---|\n",
        kernel.violator.len()
    ));
    for (name, l) in [
        ("in-kernel (SIGSTOP at the call)", kernel),
        ("userspace fallback (`--decide-in-userspace`)", user),
    ] {
        s.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            us(l.violator.value_at_quantile(0.5)),
            us(l.violator.value_at_quantile(0.99)),
            us(l.violator.max()),
            us(l.tree.value_at_quantile(0.5)),
            us(l.tree.value_at_quantile(0.99)),
            us(l.tree.max()),
        ));
    }
    let ratio = |q: f64| {
        user.violator.value_at_quantile(q) as f64
            / kernel.violator.value_at_quantile(q).max(1) as f64
    };
    s.push_str(&format!(
        "\nThe userspace fallback takes {:.1}x (p50) and {:.1}x (p99) the in-kernel path's time to stop the violating process.\n\nCaveats: the harness's poll adds a few µs to every sample (one /proc read per process per turn). In both paths the violating open itself completes before the stop (tier 3: the signal lands on the return to user space); the in-kernel path stops the process there, the fallback only after its event crossed and was judged. The idle sibling makes no watched call, so in both paths it is stopped by userspace's sweep of the tree.\n",
        ratio(0.5),
        ratio(0.99)
    ));
    s
}

//! `cargo xtask bench --open-cost-only`: where a watched, allowed open's
//! time goes under `run --mode enforce`, by path length. The kernel's own
//! accounting (`kernel.bpf_stats_enabled`) gives `opens_enter` (the
//! opens' entry program) and `sys_exit` run time per run, sampled while the loop runs (the programs
//! go when agentwatch exits); the loop's ns/op against the same loop
//! unwatched, alternating in one invocation, gives the ratio.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::bench::{median, parse_ns, Bench, OPEN_TARGET};
use crate::bench_kernel::BpfStats;

pub const HEADING: &str = "\n## Kernel-measured program cost (open loop, watched, enforce)";

/// A directory whose files make a long path (the `open-long` loop's).
const LONG_DIR: &str = "/tmp/agentwatch-bench-long";
/// Opens per loop: long enough to sample the programs mid-run.
const OPS: u64 = 4_000_000;

/// The long path, about 100 bytes.
fn long_target() -> String {
    format!(
        "{LONG_DIR}/{}/{}/target",
        "a-directory-name-of-some-length", "another-directory-name-of-length"
    )
}

/// The inner workload of this benchmark; false when `workload` is not it.
pub fn inner(workload: &str, ops: u64) -> anyhow::Result<bool> {
    if workload != "open-long" {
        return Ok(false);
    }
    let path = long_target();
    let start = std::time::Instant::now();
    for _ in 0..ops {
        drop(std::fs::File::open(&path)?);
    }
    println!(
        "ns_per_op {}",
        start.elapsed().as_nanos() as f64 / ops.max(1) as f64
    );
    Ok(true)
}

/// One path's row: its length, the programs' ns per run, the ratio.
struct Row {
    bytes: usize,
    enter_ns: f64,
    exit_ns: f64,
    ratio: f64,
}

fn loop_argv(bench: &Bench, workload: &str) -> Vec<String> {
    let mut argv = bench.loop_cmd("open");
    if let Some(w) = argv.iter().position(|a| a == "open") {
        argv[w] = workload.into();
    }
    if let Some(o) = argv.iter().position(|a| a == "--ops") {
        argv[o + 1] = OPS.to_string();
    }
    argv
}

fn plain(bench: &Bench, workload: &str) -> anyhow::Result<f64> {
    crate::bench::run_loop(&loop_argv(bench, workload))
}

/// The loop under enforce: its ns/op, and the entry and exit programs'
/// ns per run sampled from 1.5 s to 3.5 s into it.
fn enforced(
    bench: &Bench,
    stats: &BpfStats,
    profile: &Path,
    workload: &str,
) -> anyhow::Result<(f64, f64, f64)> {
    let alerts = profile.with_file_name("alerts.jsonl");
    let child = Command::new("taskset")
        .env_remove("LD_LIBRARY_PATH")
        .args(["-c", "0"])
        .arg(&bench.agentwatch)
        .args(["run", "--json", "--mode", "enforce", "--profile"])
        .arg(profile)
        .arg("-o")
        .arg(&alerts)
        .arg("--")
        .args(loop_argv(bench, workload))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting agentwatch run")?;
    std::thread::sleep(Duration::from_millis(1500));
    let (e0, x0) = (stats.read(&["opens_enter"])?, stats.read(&["sys_exit"])?);
    std::thread::sleep(Duration::from_secs(2));
    let (e1, x1) = (stats.read(&["opens_enter"])?, stats.read(&["sys_exit"])?);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "agentwatch run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let per = |a: (u64, u64), b: (u64, u64)| {
        (b.0.saturating_sub(a.0)) as f64 / (b.1.saturating_sub(a.1)).max(1) as f64
    };
    let ns = parse_ns(&String::from_utf8_lossy(&out.stdout))?;
    Ok((ns, per(e0, e1), per(x0, x1)))
}

/// The section; writes `OPEN_TARGET`, which the caller removes.
pub fn section(bench: &Bench, rounds: usize) -> anyhow::Result<String> {
    let scratch = tempfile::tempdir()?;
    let long = long_target();
    let parent = Path::new(&long).parent().context("long path")?;
    std::fs::create_dir_all(parent)?;
    std::fs::write(&long, b"x")?;
    std::fs::write(OPEN_TARGET, b"x")?;
    let profile = scratch.path().join("profile.yaml");
    let yaml = crate::bench_enforce::profile(&bench.xtask).replacen(
        "files:\n",
        &format!("files:\n  - path: \"{LONG_DIR}/**\"\n    access: [read]\n"),
        1,
    );
    std::fs::write(&profile, yaml)?;
    let stats = BpfStats::enable()?;
    let mut rows = Vec::new();
    for (workload, path) in [("open", OPEN_TARGET.to_string()), ("open-long", long)] {
        let (mut enter, mut exit, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            let base = plain(bench, workload)?;
            let (ns, e, x) = enforced(bench, &stats, &profile, workload)?;
            ratios.push(ns / base);
            enter.push(e);
            exit.push(x);
        }
        rows.push(Row {
            bytes: path.len(),
            enter_ns: median(&mut enter),
            exit_ns: median(&mut exit),
            ratio: median(&mut ratios),
        });
    }
    let _ = std::fs::remove_dir_all(LONG_DIR);
    Ok(render(&rows, rounds))
}

fn render(rows: &[Row], rounds: usize) -> String {
    let mut s = format!(
        "{HEADING}\n\nGenerated by `cargo xtask bench --open-cost-only`: an open+close loop of one allowed file ({OPS} opens, pinned to CPU 1) under `agentwatch run --mode enforce` (CPU 0), for two lengths of the path opened; `kernel.bpf_stats_enabled=1`, `run_time_ns / run_cnt` of `opens_enter` (the opens' entry program) and `sys_exit` sampled between 1.5 s and 3.5 s into the loop (they include the stats' own overhead, about 30 ns a run); the ratio is the loop's ns/op against the same loop unwatched, alternating in this invocation. Medians of {rounds} rounds.\n\n| path bytes | opens_enter ns/run | sys_exit ns/run | open+close ratio to unwatched |\n|---|---|---|---|\n"
    );
    for r in rows {
        s += &format!(
            "| {} | {:.1} | {:.1} | {:.2} |\n",
            r.bytes, r.enter_ns, r.exit_ns, r.ratio
        );
    }
    s
}

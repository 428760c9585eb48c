//! The load half of the peers benchmark: how many events each tool takes
//! with zero loss and what it loses past that (a paced open loop), and how
//! long an event takes from the syscall to the tool's output (detection
//! latency), for agentwatch, auditd and bpftrace alike.
use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;

use crate::{
    bench::{parse_ns, OPEN_TARGET},
    bench_enforce::monotonic_ns,
    bench_peers::{count_lines, wait_quiet, Runner, MARK},
    peers::{self, Auditd},
};

/// Paced rates of the open loop (0: as fast as it goes).
pub const RATES: [u64; 4] = [50_000, 100_000, 200_000, 0];

/// Tools the load runs compare.
pub const TOOLS: [&str; 3] = ["agentwatch", "auditd", "bpftrace"];

pub struct Throughput {
    pub tool: &'static str,
    /// Paced rate asked for (0: unpaced).
    pub rate: u64,
    pub ops: u64,
    /// Opens per second the loop reached under the tool.
    pub achieved: f64,
    /// Events of the loop's target the tool wrote out.
    pub delivered: u64,
    /// Events the tool itself reports lost.
    pub lost: u64,
}

/// The inner workload `mark`: `ops` opens of a path unique to each (the
/// harness creates them: a failed open of a missing file changed nothing
/// and is no violation), each after printing its CLOCK_MONOTONIC time (on
/// stderr), each waiting for a line on stdin (the harness has seen the
/// event).
pub fn inner(workload: &str, ops: u64) -> anyhow::Result<bool> {
    if workload != "mark" {
        return Ok(false);
    }
    let mut out = std::io::stderr().lock();
    let mut go = String::new();
    for i in 0..ops {
        let t0 = monotonic_ns();
        let _ = std::fs::File::open(format!("{MARK}-{i}-end"));
        writeln!(out, "t0 {i} {t0}")?;
        out.flush()?;
        go.clear();
        if std::io::stdin().read_line(&mut go)? == 0 {
            break;
        }
    }
    Ok(true)
}

/// `taskset -c 1 xtask bench --ops OPS [--pace RATE] --inner WORKLOAD`.
fn inner_cmd(r: &Runner, workload: &str, ops: u64, rate: u64) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "taskset".into(),
        "-c".into(),
        "1".into(),
        r.bench.xtask.display().to_string(),
        "bench".into(),
        "--ops".into(),
        ops.to_string(),
    ];
    if rate > 0 {
        v.extend(["--pace".into(), rate.to_string()]);
    }
    v.extend(["--inner".into(), workload.into()]);
    v
}

/// Sum of the `count` fields of `trace`'s loss records in `file`.
fn trace_losses(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"kind\":\"loss\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["count"].as_u64().unwrap_or(0))
        .sum()
}

/// bpftrace's own "Lost N events" reports in `text`.
fn bpftrace_losses(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("Lost ")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

fn run_ok(mut c: Command) -> anyhow::Result<(String, String)> {
    let out = c.stdin(Stdio::null()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("load run failed ({}): {stderr}", out.status);
    }
    Ok((stdout, stderr))
}

pub fn throughput(r: &Runner) -> anyhow::Result<Vec<Throughput>> {
    let mut rows = Vec::new();
    let out = r.scratch_path("load.txt");
    for tool in TOOLS {
        for rate in RATES {
            let ops = if rate == 0 { 400_000 } else { rate * 2 };
            let argv = inner_cmd(r, "open", ops, rate);
            let _ = std::fs::remove_file(&out);
            let (ns, delivered, lost) = match tool {
                "agentwatch" => {
                    let mut c = Command::new("taskset");
                    c.args(["-c", "0"])
                        .arg(&r.bench.agentwatch)
                        .args(["trace", "--json", "-o"])
                        .arg(&out)
                        .arg("--")
                        .args(&argv);
                    r.prepare(&mut c);
                    let (stdout, _) = run_ok(c)?;
                    (
                        parse_ns(&stdout)?,
                        count_lines(&out, OPEN_TARGET),
                        trace_losses(&out),
                    )
                }
                "auditd" => {
                    let a = Auditd::start(&r.scratch_path("auditd"))?;
                    let lost0 = peers::audit_status("lost");
                    let (stdout, _) = run_ok(r.command(&argv))?;
                    wait_quiet(&a.log());
                    let lost = peers::audit_status("lost").saturating_sub(lost0);
                    let delivered = count_lines(&a.log(), OPEN_TARGET);
                    let _ = std::fs::remove_file(a.log());
                    (parse_ns(&stdout)?, delivered, lost)
                }
                _ => {
                    let mut c = peers::bpftrace_cmd(&r.script, Some(&out), &argv);
                    r.prepare(&mut c);
                    let (stdout, stderr) = run_ok(c)?;
                    let text = std::fs::read_to_string(&out).unwrap_or_default();
                    let lost = bpftrace_losses(&text) + bpftrace_losses(&stderr);
                    (parse_ns(&stdout)?, count_lines(&out, OPEN_TARGET), lost)
                }
            };
            let achieved = 1e9 / ns;
            eprintln!(
                "  {tool} at {}: {achieved:.0} opens/s, {delivered}/{ops} written, {lost} lost",
                if rate == 0 {
                    "full speed".to_string()
                } else {
                    format!("{rate}/s")
                }
            );
            rows.push(Throughput {
                tool,
                rate,
                ops,
                achieved,
                delivered,
                lost,
            });
        }
    }
    let _ = std::fs::remove_file(&out);
    Ok(rows)
}

pub struct Latency {
    pub tool: &'static str,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub seen: u64,
    pub missed: u64,
}

/// Follows a growing file, finding whole lines that contain a needle.
struct Tail {
    file: Option<std::fs::File>,
    path: std::path::PathBuf,
    buf: String,
}

impl Tail {
    fn new(path: &Path) -> Self {
        Self {
            file: None,
            path: path.to_path_buf(),
            buf: String::new(),
        }
    }

    /// True once a line containing `needle` has been written.
    fn seen(&mut self, needle: &str) -> bool {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        let Some(f) = self.file.as_mut() else {
            return false;
        };
        let mut chunk = Vec::new();
        let _ = f.read_to_end(&mut chunk);
        self.buf.push_str(&String::from_utf8_lossy(&chunk));
        let found = self.buf.contains(needle);
        // Keep only the unfinished last line for the next call.
        if let Some(i) = self.buf.rfind('\n') {
            self.buf.drain(..=i);
        }
        found
    }
}

/// The files the `mark` workload opens, removed on drop.
struct Marks(u64);

impl Marks {
    fn create(n: u64) -> anyhow::Result<Self> {
        let marks = Marks(n);
        for i in 0..n {
            std::fs::write(format!("{MARK}-{i}-end"), b"x")?;
        }
        Ok(marks)
    }
}

impl Drop for Marks {
    fn drop(&mut self) {
        for i in 0..self.0 {
            let _ = std::fs::remove_file(format!("{MARK}-{i}-end"));
        }
    }
}

/// Detection latency: the `mark` workload under each tool; each sample is
/// the time from just before the open to the harness finding its line in
/// the tool's output (agentwatch: the alert; auditd: the PATH record;
/// bpftrace: the printed line).
pub fn latency(r: &Runner, samples: u64) -> anyhow::Result<Vec<Latency>> {
    let _marks = Marks::create(samples)?;
    let mut rows = Vec::new();
    let argv = inner_cmd(r, "mark", samples, 0);
    for tool in TOOLS {
        let out = r.scratch_path("latency.txt");
        let _ = std::fs::remove_file(&out);
        let mut auditd = None;
        let (mut c, watched) = match tool {
            "agentwatch" => (
                r.agentwatch_run("monitor", &r.loops_profile, &out, &argv),
                out.clone(),
            ),
            "auditd" => {
                let a = Auditd::start(&r.scratch_path("auditd"))?;
                let log = a.log();
                auditd = Some(a);
                (r.command(&argv), log)
            }
            _ => {
                // bpftrace's own stdout, flushed per line, is the file.
                let mut c = peers::bpftrace_cmd(&r.script, None, &argv);
                r.prepare(&mut c);
                c.stdout(std::fs::File::create(&out)?);
                (c, out.clone())
            }
        };
        if tool != "bpftrace" {
            c.stdout(Stdio::null());
        }
        // The workload reports on stderr: under bpftrace its stdout is
        // bpftrace's, the file being watched.
        let mut child = c.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let mut stdin = child.stdin.take().context("stdin")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("t0 "));
        let mut tail = Tail::new(&watched);
        let mut hist = Histogram::<u64>::new(3)?;
        let mut missed = 0;
        let mut result = Ok(());
        for _ in 0..samples {
            let Some(line) = lines.next() else {
                result = Err(anyhow::anyhow!("the {tool} latency workload ended early"));
                break;
            };
            let mut f = line.split_whitespace().skip(1);
            let (Some(i), Some(t0)) = (f.next(), f.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            let needle = format!("{MARK}-{i}-end");
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                if tail.seen(&needle) {
                    hist.record((monotonic_ns().saturating_sub(t0) / 1000).max(1))?;
                    break;
                }
                if Instant::now() > deadline {
                    missed += 1;
                    break;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            writeln!(stdin, "go")?;
        }
        drop(stdin);
        let _ = child.wait();
        drop(auditd);
        result?;
        let _ = std::fs::remove_file(&out);
        eprintln!(
            "  {tool}: p50 {} µs, p99 {} µs, {missed} missed",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99)
        );
        rows.push(Latency {
            tool,
            p50_us: hist.value_at_quantile(0.5) as f64,
            p99_us: hist.value_at_quantile(0.99) as f64,
            max_us: hist.max() as f64,
            seen: hist.len(),
            missed,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_loss_lines_are_summed() {
        assert_eq!(bpftrace_losses("x\nLost 12 events\n  Lost 3 events\n"), 15);
        assert_eq!(bpftrace_losses("nothing lost here"), 0);
    }
}

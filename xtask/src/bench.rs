//! `cargo xtask bench`: what agentwatch costs, as ratios against baselines
//! measured in the same invocation (timing noise here is 10-40% between
//! runs, so configurations alternate round by round and we report the
//! median of per-round ratios with its spread).
//!
//! Configurations, each running the same loop in a fresh process:
//! - `a` unwatched, agentwatch not loaded;
//! - `b` unwatched while `agentwatch trace` watches another process;
//! - `c` unwatched while empty programs sit on the same hooks (the floor);
//! - `d` watched: the loop runs under `agentwatch trace -o /dev/null`.
//!
//! Then a paced run under `trace` measures events/s sustained with zero
//! loss. Everything stays on loopback; every loop is bounded.
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::bench_kernel::{kernel_cost, render_kernel_cost};
use crate::bench_profile::{profile_bench, PROFILE_HEADING};

#[derive(clap::Args)]
pub struct Options {
    /// Alternating rounds per configuration.
    #[arg(long, default_value_t = DEFAULT_ROUNDS)]
    rounds: usize,
    /// Operations per loop run.
    #[arg(long, default_value_t = 20_000)]
    ops: u64,
    /// Events per second for the zero-loss run.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Internal: run one loop (`open`, `connect`, `exec`, `macro`) and
    /// print ns/op.
    #[arg(long, hide = true, value_name = "WORKLOAD")]
    inner: Option<String>,
    /// Only the profile benchmarks (building and matching); rewrites their
    /// section of docs/benchmarks.md.
    #[arg(long)]
    profile_only: bool,
    /// Internal: pace the inner loop to this many operations per second.
    #[arg(long, hide = true)]
    pace: Option<u64>,
    /// Only the enforcement benchmarks (overhead of monitor and enforce,
    /// violation-to-stop latency); rewrites their section of
    /// docs/benchmarks.md.
    #[arg(long)]
    enforce_only: bool,
    /// Violations timed per path in the latency benchmark.
    #[arg(long, default_value_t = 200)]
    samples: u64,
    /// Only the daemon benchmark (throughput into the audit log, CPU and
    /// RSS at 1k and 10k events/s); rewrites its section of
    /// docs/benchmarks.md.
    #[arg(long)]
    daemon_only: bool,
    /// Events of the daemon benchmark's unpaced run.
    #[arg(long, default_value_t = 100_000)]
    daemon_ops: u64,
    /// Only the comparison with auditd and bpftrace (installs them when
    /// missing); rewrites its section of docs/benchmarks.md,
    /// docs/benchmarks-peers.json and docs/benchmarks-peers.png.
    #[arg(long)]
    peers_only: bool,
    /// Rounds of the comparison with auditd and bpftrace (6: each
    /// configuration runs first in one round).
    #[arg(long, default_value_t = 6)]
    peer_rounds: usize,
    /// Only the cost of intent capture's TLS uprobes (an HTTPS loop
    /// unwatched, beside an enforced agent, and as the agent at each
    /// `--context`); rewrites its section of docs/benchmarks.md.
    #[arg(long)]
    intent_only: bool,
    /// Requests per HTTPS loop of the intent benchmark.
    #[arg(long, default_value_t = 2000)]
    intent_requests: u64,
    /// Only an approved model's check (first open hashed, against
    /// `sha256sum`; repeated opens cached); rewrites its section.
    #[arg(long)]
    pins_only: bool,
    #[arg(long, default_value_t = 1024, help = "MiB of the pins model")]
    pins_mib: u64,
    /// Only what the guardrail shield adds to a launch (a workspace of
    /// `--shield-files` files walked and bound, against a launch without
    /// the shield); rewrites its section of docs/benchmarks.md.
    #[arg(long)]
    shield_only: bool,
    #[arg(
        long,
        default_value_t = 50_000,
        help = "files of the shield benchmark's workspace"
    )]
    shield_files: usize,
    /// Only where a watched, allowed open's time goes under enforce, by
    /// path length (the kernel's per-program accounting); rewrites its
    /// section of docs/benchmarks.md.
    #[arg(long)]
    open_cost_only: bool,
    /// Only the detection latency of agentwatch, auditd and bpftrace (the
    /// last part of the comparison); prints it, rewrites nothing.
    #[arg(long)]
    latency_only: bool,
}

/// Rounds of a full run; only a full run rewrites docs/benchmarks.md.
pub use crate::stats::{median, ratio_stats};

const DEFAULT_ROUNDS: usize = 15;

pub(crate) const OPEN_TARGET: &str = "/tmp/agentwatch-bench-target";

/// The inner loop: `ops` open+close pairs, or connect+accept+close on a
/// loopback listener of its own (self-contained: a listener in another
/// process lets the backlog fill, and SYN retries add whole seconds).
/// Prints `ns_per_op N`.
fn inner(workload: &str, ops: u64, pace: Option<u64>) -> anyhow::Result<()> {
    let listener = match workload {
        "connect" => Some(TcpListener::bind("127.0.0.1:0")?),
        _ => None,
    };
    let start = Instant::now();
    let gap = pace.map(|r| Duration::from_nanos(1_000_000_000 / r.max(1)));
    for i in 0..ops {
        match workload {
            "open" => drop(std::fs::File::open(OPEN_TARGET)?),
            "open-long" => drop(std::fs::File::open(crate::bench_open_cost::LONG_TARGET)?),
            "exec" => {
                let st = std::process::Command::new("/bin/true").status()?;
                if !st.success() {
                    bail!("/bin/true failed: {st}");
                }
            }
            "macro" => crate::bench_peers::macro_build()?,
            "connect" => {
                let l = listener.as_ref().context("connect loop has a listener")?;
                let c = std::net::TcpStream::connect(l.local_addr()?)?;
                let (a, _) = l.accept()?;
                drop((c, a));
            }
            other => bail!("unknown workload {other}"),
        }
        if let Some(g) = gap {
            let due = start + g * (i as u32 + 1);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / ops as f64;
    println!("ns_per_op {ns:.1}");
    Ok(())
}

pub fn parse_ns(out: &str) -> anyhow::Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix("ns_per_op "))
        .context("the loop printed no ns_per_op")?
        .trim()
        .parse()
        .context("bad ns_per_op")
}

#[derive(Clone)]
pub struct Bench {
    pub xtask: PathBuf,
    pub agentwatch: PathBuf,
    pub ops: u64,
}

impl Bench {
    pub fn loop_cmd(&self, workload: &str) -> Vec<String> {
        // Fewer connects: tens of thousands per run exhaust ephemeral ports
        // (TIME_WAIT) and measure that instead.
        // An exec costs ~100x an open: fewer of them. The macro workload
        // is one build.
        let ops = match workload {
            "connect" => (self.ops / 10).max(500),
            "exec" => (self.ops / 20).max(200),
            "macro" => 1,
            _ => self.ops,
        };
        vec![
            "taskset".into(),
            "-c".into(),
            "1".into(),
            self.xtask.display().to_string(),
            "bench".into(),
            "--ops".into(),
            ops.to_string(),
            "--inner".into(),
            workload.into(),
        ]
    }

    pub fn run_plain(&self, workload: &str) -> anyhow::Result<f64> {
        let argv = self.loop_cmd(workload);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .env_remove("LD_LIBRARY_PATH")
            .output()?;
        if !out.status.success() {
            bail!("loop failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        parse_ns(&String::from_utf8_lossy(&out.stdout))
    }

    pub fn run_watched(&self, workload: &str) -> anyhow::Result<f64> {
        // agentwatch on CPU 0, the loop on CPU 1: we measure what watching
        // costs the watched process, not a CPU shared with our pipeline.
        let out = Command::new("taskset")
            .env_remove("LD_LIBRARY_PATH")
            .args(["-c", "0"])
            .arg(&self.agentwatch)
            .args(["trace", "--json", "-o", "/dev/null", "--"])
            .args(self.loop_cmd(workload))
            .output()?;
        if !out.status.success() {
            bail!(
                "watched loop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse_ns(&String::from_utf8_lossy(&out.stdout))
    }
}

/// A background process holding programs on the hooks, stopped on drop:
/// `watched_pid` (the idle agent of (b)) is killed first so `trace` exits
/// by itself; the floor loader (c) exits when its stdin closes.
pub(crate) struct Loaded {
    holder: Child,
    watched_pid: Option<u32>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some(pid) = self.watched_pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        drop(self.holder.stdin.take());
        let _ = self.holder.wait();
    }
}

/// (b): agentwatch tracing an idle `sleep`; ready once that child exists
/// (trace spawns it only after its programs are attached).
fn load_sensors(agentwatch: &Path) -> anyhow::Result<Loaded> {
    hold_idle_agent(agentwatch, &["trace", "-o", "/dev/null"])
}

/// agentwatch running `command` (its arguments before `--`) on an idle
/// `sleep`, so that everything else runs unwatched beside it; ready once
/// that child exists (agentwatch spawns it only after its programs are
/// attached).
pub(crate) fn hold_idle_agent(agentwatch: &Path, command: &[&str]) -> anyhow::Result<Loaded> {
    // On CPU 0, as in (d): its pipeline's polling must not land on the
    // loop's CPU and be counted as hook cost.
    let holder = Command::new("taskset")
        .args(["-c", "0"])
        .arg(agentwatch)
        .args(command)
        .args(["--", "sleep", "3600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let children = format!("/proc/{0}/task/{0}/children", holder.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kids = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = kids.split_whitespace().next() {
            return Ok(Loaded {
                holder,
                watched_pid: Some(pid.parse()?),
            });
        }
        if Instant::now() > deadline {
            bail!("agentwatch {} did not start within 60 s", command.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (c): the empty floor programs on the same syscall hooks.
pub(crate) fn load_floor(agentwatch: &Path, raw: bool) -> anyhow::Result<Loaded> {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(agentwatch)
        .arg("bench-floor")
        .args(raw.then_some("--raw"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("floor stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("floor programs did not load");
    }
    Ok(Loaded {
        holder: child,
        watched_pid: None,
    })
}

pub(crate) struct Row {
    workload: &'static str,
    pub a: f64,
    b: f64,
    pub c: f64,
    d: f64,
    b_over_a: (f64, f64, f64),
    c_over_a: (f64, f64, f64),
    d_over_a: (f64, f64, f64),
}

fn measure(bench: &Bench, workload: &'static str, rounds: usize) -> anyhow::Result<Row> {
    let (mut a, mut b, mut c, mut d) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        a.push(bench.run_plain(workload)?);
        {
            let _loaded = load_sensors(&bench.agentwatch)?;
            b.push(bench.run_plain(workload)?);
        }
        {
            let _floor = load_floor(&bench.agentwatch, false)?;
            c.push(bench.run_plain(workload)?);
        }
        d.push(bench.run_watched(workload)?);
        eprint!("\r{workload}: round {}/{rounds}", round + 1);
    }
    eprintln!();
    Ok(Row {
        workload,
        b_over_a: ratio_stats(&b, &a),
        c_over_a: ratio_stats(&c, &a),
        d_over_a: ratio_stats(&d, &a),
        a: median(&mut a.clone()),
        b: median(&mut b.clone()),
        c: median(&mut c.clone()),
        d: median(&mut d.clone()),
    })
}

/// Paced open loop under trace: events/s reached and losses reported.
fn zero_loss(bench: &Bench, rate: u64) -> anyhow::Result<(f64, u64, u64)> {
    let events_file = std::env::temp_dir().join("agentwatch-bench-events.jsonl");
    let ops = rate * 3; // three seconds
    let out = Command::new(&bench.agentwatch)
        .args(["trace", "--json", "-o"])
        .arg(&events_file)
        .arg("--")
        .arg(&bench.xtask)
        .args([
            "bench",
            "--ops",
            &ops.to_string(),
            "--pace",
            &rate.to_string(),
            "--inner",
            "open",
        ])
        .output()?;
    if !out.status.success() {
        bail!("paced run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let loop_ns = parse_ns(&String::from_utf8_lossy(&out.stdout))?;
    let text = std::fs::read_to_string(&events_file)?;
    let _ = std::fs::remove_file(&events_file);
    let mut opens = 0u64;
    let mut lost = 0u64;
    for l in text.lines() {
        if l.contains("\"kind\":\"open\"") && l.contains(OPEN_TARGET) {
            opens += 1;
        } else if l.contains("\"kind\":\"loss\"") {
            let v: serde_json::Value = serde_json::from_str(l)?;
            lost += v["count"].as_u64().unwrap_or(0);
        }
    }
    let events_per_s = opens as f64 / (loop_ns * ops as f64 / 1e9);
    Ok((events_per_s, opens, lost))
}

pub fn run(o: Options) -> anyhow::Result<()> {
    if let Some(workload) = &o.inner {
        if crate::bench_enforce::inner(workload, o.ops)?
            || crate::bench_peers_load::inner(workload, o.ops)?
        {
            return Ok(());
        }
        return inner(workload, o.ops, o.pace);
    }
    let ws = crate::workspace();
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "agentwatch", "-p", "xtask"])
        .current_dir(&ws)
        .status()?;
    if !status.success() {
        bail!("release build failed");
    }
    if o.latency_only {
        print!(
            "{}",
            crate::bench_peers::latency_only(&bench_of(&ws, o.ops), o.samples.min(1000))?
        );
        return Ok(());
    }
    if o.peers_only {
        let section = peers(&ws, &bench_of(&ws, o.ops), o.peer_rounds, o.samples)?;
        print!("{section}");
        return Ok(());
    }
    if o.intent_only {
        let b = bench_of(&ws, o.ops);
        let section = crate::bench_intent::section(&b, o.peer_rounds, o.intent_requests)?;
        return crate::bench_docs::write_section(&ws, crate::bench_intent::HEADING, &section);
    }
    if o.open_cost_only {
        let s = crate::bench_open_cost::section(&bench_of(&ws, o.ops), o.rounds.min(5));
        let _ = std::fs::remove_file(OPEN_TARGET);
        return crate::bench_docs::write_section(&ws, crate::bench_open_cost::HEADING, &s?);
    }
    if o.pins_only {
        let s = crate::bench_pins::section(&bench_of(&ws, o.ops), o.rounds.min(5), o.pins_mib)?;
        return crate::bench_docs::write_section(&ws, crate::bench_pins::HEADING, &s);
    }
    if o.shield_only {
        let b = bench_of(&ws, o.ops);
        let s = crate::bench_shield::section(&b, o.rounds.min(7), o.shield_files)?;
        return crate::bench_docs::write_section(&ws, crate::bench_shield::HEADING, &s);
    }
    if o.daemon_only {
        let section = crate::bench_daemon::section(&bench_of(&ws, o.ops), o.daemon_ops)?;
        return crate::bench_docs::write_section(&ws, crate::bench_daemon::HEADING, &section);
    }
    if o.enforce_only {
        std::fs::write(OPEN_TARGET, b"x")?;
        let section = enforce_section(&bench_of(&ws, o.ops), o.rounds, o.samples);
        let _ = std::fs::remove_file(OPEN_TARGET);
        let section = section?;
        print!("{section}");
        if o.rounds < DEFAULT_ROUNDS {
            eprintln!("short run: docs/benchmarks.md left as it was");
            return Ok(());
        }
        let path = ws.join("docs/benchmarks.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, crate::bench_docs::splice_enforce(&old, &section))?;
        eprintln!("enforcement section written to {}", path.display());
        return Ok(());
    }
    let profile_section = profile_bench(&ws.join("target/release/agentwatch"))?;
    if o.profile_only {
        print!("{profile_section}");
        let path = ws.join("docs/benchmarks.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let kept = old.split(PROFILE_HEADING).next().unwrap_or("").trim_end();
        std::fs::write(&path, format!("{kept}\n{profile_section}"))?;
        eprintln!("profile section written to {}", path.display());
        return Ok(());
    }
    std::fs::write(OPEN_TARGET, b"x")?;
    let bench = bench_of(&ws, o.ops);
    let rows = vec![
        measure(&bench, "open", o.rounds)?,
        measure(&bench, "connect", o.rounds)?,
    ];
    let (eps, opens, lost) = zero_loss(&bench, o.rate)?;
    let sensors = kernel_cost(
        &bench,
        &|| load_sensors(&bench.agentwatch),
        &[
            "sys_enter",
            "opens_enter",
            "names_enter",
            "sys_exit",
            "dns_send",
        ],
    )?;
    let floor = kernel_cost(
        &bench,
        &|| load_floor(&bench.agentwatch, false),
        &["floor_tracepoi"],
    )?;
    let open_cost = crate::bench_open_cost::section(&bench, o.rounds.min(5))?;
    let enforce = enforce_section(&bench, o.rounds, o.samples)?;
    let _ = std::fs::remove_file(OPEN_TARGET);
    let daemon = crate::bench_daemon::section(&bench, o.daemon_ops)?;
    let peers = peers(&ws, &bench, o.peer_rounds, o.samples)?;
    let mut report = render(&rows, o.rounds, o.ops, o.rate, eps, opens, lost);
    report.push_str(&render_kernel_cost(&rows[0], &sensors, &floor));
    report.push_str(&open_cost);
    report.push_str(&enforce);
    report.push_str(&daemon);
    report.push_str(&peers);
    report.push_str(&profile_section);
    print!("{report}");
    if o.rounds < DEFAULT_ROUNDS {
        eprintln!(
            "short run ({} rounds): docs/benchmarks.md left as it was",
            o.rounds
        );
        return Ok(());
    }
    let path = ws.join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let kept = crate::bench_docs::keep_sections(
        &old,
        &report,
        &[
            crate::bench_intent::HEADING,
            crate::bench_pins::HEADING,
            crate::bench_shield::HEADING,
        ],
    );
    std::fs::write(&path, kept)?;
    eprintln!("written to {}", path.display());
    Ok(())
}

/// Runs the comparison with auditd and bpftrace, writes its JSON and plot
/// beside docs/benchmarks.md and splices its section in; returns it.
fn peers(ws: &Path, bench: &Bench, rounds: usize, samples: u64) -> anyhow::Result<String> {
    let r = crate::bench_peers::run(bench, rounds, samples.min(100))?;
    let docs = ws.join("docs");
    std::fs::write(
        docs.join("benchmarks-peers.json"),
        serde_json::to_string_pretty(&r.json)? + "\n",
    )?;
    crate::bench_peers_report::plot(&r.plot_data, &docs.join("benchmarks-peers.png"))?;
    let path = docs.join("benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(
        &path,
        crate::bench_docs::splice(&old, crate::bench_peers::HEADING, &r.section),
    )?;
    eprintln!(
        "peers section, benchmarks-peers.json and benchmarks-peers.png written to {}",
        docs.display()
    );
    Ok(r.section)
}

fn bench_of(ws: &Path, ops: u64) -> Bench {
    Bench {
        xtask: ws.join("target/release/xtask"),
        agentwatch: ws.join("target/release/agentwatch"),
        ops,
    }
}

fn enforce_section(bench: &Bench, rounds: usize, samples: u64) -> anyhow::Result<String> {
    use crate::bench_enforce as be;
    let rows = vec![
        be::overhead(bench, "open", rounds)?,
        be::overhead(bench, "connect", rounds)?,
    ];
    eprintln!("latency: in-kernel path, {samples} samples");
    let kernel = be::latency(bench, samples, false)?;
    eprintln!("latency: userspace fallback, {samples} samples");
    let user = be::latency(bench, samples, true)?;
    Ok(be::render(&rows, rounds, &kernel, &user))
}

fn render(
    rows: &[Row],
    rounds: usize,
    ops: u64,
    rate: u64,
    eps: f64,
    opens: u64,
    lost: u64,
) -> String {
    let mut s = String::new();
    s.push_str("# Benchmarks\n\nGenerated by `cargo xtask bench`. Each loop runs in a fresh process pinned to CPU 1 (`taskset -c 1`).\n");
    s.push_str(&format!(
        "Configurations alternate round by round ({rounds} rounds of {ops} operations each). Ratios are medians of per-round ratios\nagainst (a), measured in the same round; the interquartile range is in brackets.\n\n"
    ));
    s.push_str("- (a) unwatched, agentwatch not loaded\n- (b) unwatched, agentwatch loaded and watching another process\n- (c) unwatched, empty programs on the same syscall hooks (the floor)\n- (d) watched, under `agentwatch trace --json -o /dev/null`\n\n");
    s.push_str("| loop | (a) ns/op | (b) ns/op | (c) ns/op | (d) ns/op | b/a | c/a | d/a | (b/a-1)/(c/a-1) |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        // Overhead of (b) relative to the floor's, from the median ratios.
        let over = if r.c_over_a.0 > 1.0 {
            format!("{:.2}", (r.b_over_a.0 - 1.0) / (r.c_over_a.0 - 1.0))
        } else {
            "n/a (floor within noise)".to_string()
        };
        let f = |t: (f64, f64, f64)| format!("{:.3} [{:.3}-{:.3}]", t.0, t.1, t.2);
        s.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |\n",
            r.workload,
            r.a,
            r.b,
            r.c,
            r.d,
            f(r.b_over_a),
            f(r.c_over_a),
            f(r.d_over_a),
            over
        ));
    }
    s.push_str(&format!(
        "\nZero-loss run: an open loop paced at {rate} opens/s for 3 s under `trace --json` into a file: {opens} open events of the target file delivered, {eps:.0} events/s sustained, {lost} records reported lost.\n"
    ));
    s.push_str("\nTargets (issue 2): b within 1.5x of the floor's overhead, d/a at most 2x for open/close, zero loss at 100k events/s.\n");
    s.push_str("\nCaveats: timing on this 2-core VM is noisy. In (d) agentwatch is pinned to CPU 0 and the loop to CPU 1, so (d) is the cost the watched process pays, not a shared CPU. The connect loop is connect+accept+close in one process (two watched syscalls per operation). The floor attaches empty programs to the syscall tracepoints only (the sched tp_btf hooks do not fire in these loops).\n");
    s
}

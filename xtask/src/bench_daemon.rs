//! The daemon under load: events/s it sustains into its audit log (fsync
//! once a second) with zero loss, and its CPU and RSS at 1k and 10k
//! events/s. The agent is selected by cgroup; every open of the loop is
//! a violation in monitor mode, so each one crosses to userspace, is
//! judged, alerted and written as a hash-chained audit record: the
//! daemon's whole path per event.
use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::bench::Bench;

pub const HEADING: &str = "## Daemon: throughput into the audit log, CPU and RSS";

/// The sustained rate before the daemon's path was reworked (issue 14:
/// the kernel woke the reader for every violation, one channel message
/// and one `serde_json::Value` per record), measured by this benchmark on
/// this host: the reference the new figure is reported beside.
const BEFORE: &str =
    "18208 events/s when issue 14 was filed; 26322 events/s on the main just before the rework";

/// Everything the run creates, removed on drop (daemon stopped, pins and
/// cgroup gone), also when the run fails.
struct Setup {
    dir: PathBuf,
    cgroup: PathBuf,
    pins: PathBuf,
    daemon: Option<Child>,
    /// How far the audit log has been counted: (bytes, decisions, losses).
    /// Counting only what was appended keeps the harness's own reads from
    /// costing more than the daemon's writes as the log grows.
    counted: std::cell::Cell<(u64, u64, u64)>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&self.pins);
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cgroup2() -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?;
            (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mount))
        })
        .context("no cgroup2 mount")
}

impl Setup {
    fn start(bench: &Bench) -> anyhow::Result<Self> {
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("agentwatch-bench-daemon-{id}"));
        std::fs::create_dir_all(&dir)?;
        let cgroup = cgroup2()?.join(format!("agentwatch-bench-{id}"));
        std::fs::create_dir_all(&cgroup)?;
        let mut s = Self {
            dir,
            cgroup,
            pins: PathBuf::from(format!("/sys/fs/bpf/agentwatch-bench-{id}")),
            daemon: None,
            counted: Default::default(),
        };
        let target = "  - path: \"/tmp/agentwatch-bench-target\"\n    access: [read]\n";
        let full = crate::bench_enforce::profile(&bench.xtask);
        let profile = full.replace(target, "");
        if profile == full {
            bail!("the bench profile no longer lists the open target");
        }
        std::fs::write(s.dir.join("bench.yaml"), profile)?;
        std::fs::write(
            s.dir.join("agentwatch.toml"),
            format!(
                "[daemon]\nalerts = \"/dev/null\"\npin_dir = {:?}\nstate_file = \"state.json\"\nring_buffer_mb = 64\n[audit]\npath = \"audit.jsonl\"\nfsync = \"1s\"\n[[agent]]\nname = \"bench\"\nprofile = \"bench.yaml\"\nmode = \"monitor\"\n[agent.select]\ncgroup = {:?}\n",
                s.pins.display().to_string(),
                s.cgroup.display().to_string()
            ),
        )?;
        let child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(&bench.agentwatch)
            .args(["daemon", "--config"])
            .arg(s.dir.join("agentwatch.toml"))
            .env("AGENTWATCH_SOCKET", s.dir.join("agentwatch.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the daemon")?;
        s.daemon = Some(child);
        let t = Instant::now();
        while !s.dir.join("agentwatch.sock").exists() {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("the daemon did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Runs the open loop in the agent's cgroup on CPU 1.
    fn run_loop(&self, bench: &Bench, ops: u64, pace: Option<u64>) -> anyhow::Result<()> {
        let mut script = format!(
            "echo $$ > {}/cgroup.procs && exec taskset -c 1 {} bench --inner open --ops {ops}",
            self.cgroup.display(),
            bench.xtask.display()
        );
        if let Some(p) = pace {
            script.push_str(&format!(" --pace {p}"));
        }
        let st = Command::new("sh")
            .args(["-c", &script])
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("the loop failed");
        }
        Ok(())
    }

    /// (decision records, loss records) in the audit log.
    fn audited(&self) -> (u64, u64) {
        use std::io::{Read as _, Seek as _};
        let (mut offset, mut d, mut l) = self.counted.get();
        let mut text = Vec::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("audit.jsonl")) {
            let _ = f.seek(std::io::SeekFrom::Start(offset));
            let _ = f.read_to_end(&mut text);
        }
        // Only whole lines: the daemon may be midway through one.
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in String::from_utf8_lossy(&text[..whole]).lines() {
            if line.contains("\"type\":\"decision\"") {
                d += 1;
            } else if line.contains("\"type\":\"loss\"") {
                l += 1;
            }
        }
        offset += whole as u64;
        self.counted.set((offset, d, l));
        (d, l)
    }

    /// Waits until the log holds `want` decisions (or nothing new came
    /// for 5 s); the count and when the last one was seen.
    fn wait_for(&self, want: u64) -> (u64, Instant) {
        let mut last = (0, Instant::now());
        loop {
            let (d, _) = self.audited();
            if d != last.0 {
                last = (d, Instant::now());
            }
            if d >= want || last.1.elapsed() > Duration::from_secs(5) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// CPU seconds (user + system) of `pid` so far.
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // Fields after the comm: state is [0], utime [11], stime [12].
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// (VmRSS, VmHWM, RssAnon) of `pid` in MiB. VmRSS includes the ring
/// buffer's mapping (its data pages are mapped twice); RssAnon is the
/// daemon's own memory.
pub(crate) fn rss_mib(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"), kb("RssAnon:"))
}

struct Paced {
    rate: u64,
    sent: u64,
    audited: u64,
    cpu_pct: f64,
    rss: f64,
    anon: f64,
}

pub fn section(bench: &Bench, max_ops: u64) -> anyhow::Result<String> {
    std::fs::write("/tmp/agentwatch-bench-target", b"x")?;
    let s = Setup::start(bench)?;
    let pid = s.pid();
    let mut paced = Vec::new();
    let mut expected = 0;
    for rate in [1_000u64, 10_000] {
        let secs = 5;
        let ops = rate * secs;
        eprintln!("daemon: {rate} events/s for {secs} s");
        let (c0, t0) = (cpu_secs(pid), Instant::now());
        s.run_loop(bench, ops, Some(rate))?;
        expected += ops;
        let (audited, _) = s.wait_for(expected);
        let (c1, t1) = (cpu_secs(pid), Instant::now());
        let (rss, _, anon) = rss_mib(pid);
        paced.push(Paced {
            rate,
            sent: ops,
            audited: audited - (expected - ops),
            cpu_pct: 100.0 * (c1 - c0) / (t1 - t0).as_secs_f64(),
            rss,
            anon,
        });
    }
    eprintln!("daemon: {max_ops} events as fast as the loop goes");
    let (c0, t0) = (cpu_secs(pid), Instant::now());
    s.run_loop(bench, max_ops, None)?;
    expected += max_ops;
    let (audited, last) = s.wait_for(expected);
    let sustained = (audited + max_ops - expected) as f64 / (last - t0).as_secs_f64();
    let max_cpu = 100.0 * (cpu_secs(pid) - c0) / (last - t0).as_secs_f64();
    let (_, losses) = s.audited();
    let (_, hwm, anon) = rss_mib(pid);
    let verify = Command::new(&bench.agentwatch)
        .args(["audit", "verify"])
        .arg(s.dir.join("audit.jsonl"))
        .output()?;
    let _ = std::fs::remove_file("/tmp/agentwatch-bench-target");
    drop(s);
    let mut out = format!(
        "\n{HEADING}\n\n`agentwatch daemon` (CPU 0) with one agent selected by cgroup, in monitor mode, and a loop (CPU 1) whose every open is a violation: each event crosses to userspace, is judged, alerted (to /dev/null) and written to the hash-chained audit log with `fsync = \"1s\"`. Loss is what the log lacks against what the loop did, and the log's `loss` records. The ring buffer is 64 MiB; RSS counts its mapping (the kernel maps its data pages twice), so the daemon's own memory is the anonymous part.\n\n| load | events | audited | lost | daemon CPU (% of a core) | RSS: anonymous / total |\n|---|---|---|---|---|---|\n"
    );
    for p in &paced {
        let _ = writeln!(
            out,
            "| {} events/s | {} | {} | {} | {:.1} | {:.1} / {:.1} MiB |",
            p.rate,
            p.sent,
            p.audited,
            p.sent.saturating_sub(p.audited),
            p.cpu_pct,
            p.anon,
            p.rss
        );
    }
    let _ = writeln!(
        out,
        "| unpaced | {max_ops} | {} | {} | {max_cpu:.1} | {anon:.1} / {hwm:.1} MiB (peak) |\n\nSustained into the audit log: **{sustained:.0} events/s** (before: {BEFORE}); `loss` records: {losses}; `audit verify`: {}.",
        audited + max_ops - expected,
        expected.saturating_sub(audited),
        if verify.status.success() { "the chain holds" } else { "FAILED" }
    );
    Ok(out)
}

//! The kernel's own accounting of the sensor programs' run time
//! (`kernel.bpf_stats_enabled`), for the bench's least noisy number.
use std::process::Command;

use anyhow::Context as _;

use crate::bench::{Bench, Loaded, Row};

/// Turns the kernel's per-program accounting on, and off again on drop.
pub(crate) struct BpfStats;

impl BpfStats {
    pub(crate) fn enable() -> anyhow::Result<Self> {
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")
            .context("enabling kernel.bpf_stats_enabled")?;
        Ok(Self)
    }

    /// Total run time (ns) and runs of the loaded programs whose name
    /// starts with one of `prefixes` (the kernel keeps 15 characters).
    pub(crate) fn read(&self, prefixes: &[&str]) -> anyhow::Result<(u64, u64)> {
        let out = Command::new("bpftool")
            .args(["-j", "prog", "show"])
            .output()
            .context("running bpftool")?;
        let progs: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("bpftool JSON")?;
        let mut total = (0, 0);
        for p in progs.as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default();
            if prefixes.iter().any(|x| name.starts_with(x)) {
                total.0 += p["run_time_ns"].as_u64().unwrap_or(0);
                total.1 += p["run_cnt"].as_u64().unwrap_or(0);
            }
        }
        Ok(total)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    }
}

/// Kernel-measured program cost on unwatched calls during one open loop:
/// (ns per program run, program runs per operation).
pub struct ProgCost {
    ns_per_run: f64,
    runs_per_op: f64,
}

pub fn kernel_cost(
    bench: &Bench,
    holder: &dyn Fn() -> anyhow::Result<Loaded>,
    prefixes: &[&str],
) -> anyhow::Result<ProgCost> {
    let stats = BpfStats::enable()?;
    let _loaded = holder()?;
    let before = stats.read(prefixes)?;
    bench.run_plain("open")?;
    let after = stats.read(prefixes)?;
    let (ns, runs) = (after.0 - before.0, after.1 - before.1);
    Ok(ProgCost {
        ns_per_run: ns as f64 / runs.max(1) as f64,
        runs_per_op: runs as f64 / bench.ops as f64,
    })
}

/// The (b) overhead derived from the floor's measured overhead plus the
/// kernel-measured extra run time of the sensor programs per operation:
/// far less noisy than a wall-clock difference of two small numbers.
pub fn render_kernel_cost(open: &Row, sensors: &ProgCost, floor: &ProgCost) -> String {
    let floor_overhead = open.c - open.a;
    let extra = (sensors.ns_per_run - floor.ns_per_run) * sensors.runs_per_op;
    let ratio = if floor_overhead > 0.0 {
        format!("{:.2}", (floor_overhead + extra) / floor_overhead)
    } else {
        "n/a (floor within noise)".into()
    };
    format!(
        "\n## Kernel-measured program cost (open loop, unwatched)\n\n`kernel.bpf_stats_enabled=1`, per-program `run_time_ns / run_cnt` from bpftool, over one open loop while (b) and then (c) are loaded. It includes the stats overhead itself (about 30 ns a run here).\n\n| programs | ns per run | runs per open+close |\n|---|---|---|\n| (b) sensors: sys_enter, opens_enter, names_enter, sys_exit, dns_send (unwatched path) | {:.1} | {:.2} |\n| (c) floor: empty programs | {:.1} | {:.2} |\n\nDerived (b) hook overhead relative to the floor's: (floor overhead {:.0} ns + {:.0} ns of extra program time) / floor overhead = **{ratio}** (target at most 1.5).\n",
        sensors.ns_per_run, sensors.runs_per_op, floor.ns_per_run, floor.runs_per_op, floor_overhead, extra
    )
}

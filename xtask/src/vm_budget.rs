//! The guest half of `cargo xtask vm-test` for resource budgets on a pure
//! cgroup v2 kernel (this host's controllers are v1): `doctor` must put
//! memory, pids and cpu in v2, and `agentwatch run --budget pids=6` must
//! hold the agent there: forks past six fail, `budget/pids` is reported,
//! and the agent's cgroup is gone after the run (the background sleeps
//! the shell left are ended with it).
use anyhow::ensure;

/// Shell lines for the guest's /init.
pub const INIT_PART: &str = r#"echo "=== AW-BUDGET-BEGIN"
/agentwatch run --json --mode monitor --no-sandbox --profile /lsm-profile.yaml --workspace /work/ws -o /work/budget.jsonl --budget pids=6 --budget-action alert -- /bin/sh -c 'i=0; while [ $i -lt 12 ]; do sleep 5 & i=$((i+1)); done; wait' 2>&1
echo "=== AW-BUDGET-END status=$?"
cat /work/budget.jsonl
echo "=== AW-BUDGET-ALERTS-END"
echo "=== AW-BUDGET-LEFT $(ls -d /sys/fs/cgroup/agentwatch/*/ 2>/dev/null | wc -l)"
"#;

/// What must hold: v2 for every controller, the budget reached and
/// reported, the forks past it refused, nothing left behind. The run is
/// unsandboxed, so it also loads and attaches the ia32 guard (on the raw
/// `sys_enter`) on 6.1; `doctor` must say the guest runs ia32 calls, or
/// the guard would not have been attached.
pub fn check(
    doctor: &serde_json::Value,
    run: &str,
    alerts: &[serde_json::Value],
    left: &str,
) -> anyhow::Result<()> {
    let ia32 = doctor["classes"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|r| r["class"].as_str().is_some_and(|n| n.contains("ia32")))
        })
        .map(|r| r["selected"].to_string())
        .unwrap_or_default();
    ensure!(
        ia32.contains("ia32 guard"),
        "the guest must run ia32 calls, so that the unsandboxed run attaches the ia32 guard: {ia32}"
    );
    let budgets = doctor["budgets"].as_array().cloned().unwrap_or_default();
    for c in ["memory", "pids", "cpu"] {
        let at = budgets
            .iter()
            .find(|b| b[0] == c)
            .and_then(|b| b[1].as_str())
            .unwrap_or("(missing)");
        ensure!(
            at.starts_with("cgroup v2"),
            "{c} must be v2 in the guest: {at}"
        );
    }
    println!("vm-test: budget: doctor puts memory, pids and cpu in cgroup v2");
    // busybox's sh gives up at the first fork refused; its background
    // sleeps outlive it and end with the run.
    ensure!(
        run.contains("can't fork"),
        "forks past pids=6 must fail: {run}"
    );
    let hit = alerts
        .iter()
        .find(|a| a["rule"] == "budget/pids")
        .ok_or_else(|| anyhow::anyhow!("no budget/pids alert in {alerts:?}"))?;
    ensure!(hit["limit"] == "6", "the limit written: {hit}");
    ensure!(
        left.trim() == "0",
        "the agent's cgroup outlived the run: {left} left"
    );
    println!("vm-test: budget: pids=6 held in cgroup v2: {}", hit["what"]);
    Ok(())
}

//! Privileged tests of resource budgets (`run --budget`): an agent over
//! its process budget is stopped by the kernel's limit, paused and
//! audited, while another agent runs on untouched; the cgroup goes with
//! the run.
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{privileged, run::*, TempDir};

/// Forks 12 children that sleep 2 s; says how many forks failed.
const FORKER: &str = "/usr/bin/python3 -c '
import os, time
made, failed = [], 0
for i in range(12):
    try:
        pid = os.fork()
    except BlockingIOError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    made.append(pid)
print(\"failed\", failed, flush=True)
for p in made:
    os.waitpid(p, 0)
print(\"a-done\", flush=True)
'";

/// The agent's cgroup directories left under the v1 or v2 hierarchies.
fn leftover(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for root in [
        "/sys/fs/cgroup/pids/agentwatch",
        "/sys/fs/cgroup/agentwatch",
        "/sys/fs/cgroup/unified/agentwatch",
    ] {
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) {
                found.push(format!("{root}/{name}"));
            }
        }
    }
    found
}

#[test]
fn an_agent_over_its_process_budget_is_paused_and_audited_while_another_runs_on() {
    let Some(_g) = privileged() else { return };
    let logs = TempDir::new("budget-audit");
    let audit = logs.join("audit.jsonl");
    let a = Run::start(
        "budget-a",
        &profile("budget-a", 9, ""),
        "monitor",
        &["--budget", "pids=6", "--audit", &audit],
        FORKER,
    );
    let b = Run::start(
        "budget-b",
        &profile("budget-b", 9, ""),
        "monitor",
        &[],
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 0.3 & done; wait; echo b-done",
    );
    a.wait_ready("budget-a");
    // The kernel refused the forks past the budget; agentwatch saw it
    // and stopped the agent.
    a.wait_stopped("python3");
    let st: Value =
        serde_json::from_str(&control(&["status", "budget-a", "--json"])).expect("status");
    assert_eq!(st["paused"], true, "{st}");
    let db = b.finish();
    assert_eq!(db.status, 0, "{}", db.stderr);
    assert!(db.stdout.contains("b-done"), "{}", db.stdout);
    assert!(
        !db.alerts.iter().any(|x| x["type"] == "budget"),
        "the other agent was touched: {:?}",
        db.alerts
    );
    control(&["resume", "budget-a"]);
    let da = a.finish();
    assert_eq!(da.status, 0, "{}", da.stderr);
    assert!(da.stdout.contains("a-done"), "{}", da.stdout);
    let failed: u32 = da
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("failed "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(failed >= 5, "the kernel held the budget: {}", da.stdout);
    let hit = da
        .alerts
        .iter()
        .find(|x| x["type"] == "budget")
        .unwrap_or_else(|| panic!("no budget alert: {:?}", da.alerts));
    assert_eq!(hit["rule"], "budget/pids");
    assert_eq!(hit["action"], "pause");
    assert_eq!(hit["limit"], "6");
    let recs = support::daemon::audit_records(std::path::Path::new(&audit));
    assert!(
        recs.iter()
            .any(|r| r["type"] == "budget" && r["rule"] == "budget/pids"),
        "not audited: {recs:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        leftover("budget-a-").is_empty(),
        "{:?}",
        leftover("budget-a-")
    );
}

#[test]
fn a_bad_budget_is_a_usage_error_that_says_what_to_write() {
    let Some(_g) = privileged() else { return };
    let d = Run::start(
        "budget-bad",
        &profile("budget-bad", 9, ""),
        "monitor",
        &["--budget", "disk=1G"],
        "true",
    )
    .finish();
    assert_eq!(d.status, 2, "{}", d.stderr);
    assert!(d.stderr.contains("memory, pids, cpu"), "{}", d.stderr);
}

#[test]
fn an_agent_over_its_memory_budget_is_held_by_the_kernel_and_reported() {
    let Some(_g) = privileged() else { return };
    // 200 MiB written, against the profile's 48 MiB budget: the kernel's
    // OOM killer ends the process in the agent's cgroup.
    let d = Run::start(
        "budget-mem",
        &profile("budget-mem", 9, "resources:\n  memory: 48M\n"),
        "monitor",
        &["--budget-action", "alert"],
        "/usr/bin/python3 -c 'b = b\"x\" * (200 << 20); print(\"allocated\", len(b))'; echo \"rc=$?\"",
    )
    .finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(!d.stdout.contains("allocated"), "{}", d.stdout);
    assert!(
        d.stdout.contains("rc=137"),
        "killed by the OOM killer: {}",
        d.stdout
    );
    let hit = d
        .alerts
        .iter()
        .find(|x| x["type"] == "budget")
        .unwrap_or_else(|| panic!("no budget alert: {:?}", d.alerts));
    assert_eq!(hit["rule"], "budget/memory");
    assert_eq!(hit["action"], "alert");
    assert_eq!(hit["limit"], (48u64 << 20).to_string());
}

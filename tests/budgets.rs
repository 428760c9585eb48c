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
        "/sys/fs/cgroup/memory/agentwatch",
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

/// Holds 200 MiB and 40 sleeping children for a second.
const HUNGRY: &str = "/usr/bin/python3 -c '
import os, time
hold = bytearray(200 << 20)
for i in range(0, len(hold), 4096):
    hold[i] = 1
kids = []
for i in range(40):
    pid = os.fork()
    if pid == 0:
        time.sleep(1.5)
        os._exit(0)
    kids.append(pid)
for p in kids:
    os.waitpid(p, 0)
'";

#[test]
fn learn_writes_budgets_from_the_peaks_it_measured() {
    let Some(_g) = privileged() else { return };
    let dir = TempDir::new("budget-learn");
    let out = dir.join("learned.yaml");
    let o = support::agentwatch()
        .args(["learn", "--agent", "budget-learn", "--out", &out])
        .args(["--", "sh", "-c", HUNGRY])
        .current_dir(dir.path())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("learn");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let yaml = std::fs::read_to_string(&out).expect("profile");
    let field = |k: &str| -> u64 {
        let line = yaml
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{k}:")) && l.starts_with("  "))
            .unwrap_or_else(|| panic!("no {k} budget in\n{yaml}"));
        let v = line
            .split(':')
            .nth(1)
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        v.trim_end_matches('M').parse().expect("a number")
    };
    assert!(yaml.contains("resources:"), "{yaml}");
    // 200 MiB held, doubled (headroom 2): above the 256 MiB floor.
    let mib = field("memory");
    assert!((400..2048).contains(&mib), "memory {mib}M\n{yaml}");
    // 41 processes at once, doubled: above the floor of 64.
    let pids = field("pids");
    assert!((80..400).contains(&pids), "pids {pids}\n{yaml}");
    assert!(
        leftover("learn-budget-learn").is_empty(),
        "{:?}",
        leftover("learn-budget-learn")
    );
}

/// A directory of the v1 pids hierarchy, removed on drop.
struct V1Pids(std::path::PathBuf);

impl Drop for V1Pids {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_daemon_agent_s_budget_is_held_on_its_own_cgroup_and_given_back() {
    let Some((_k, cg)) = support::privileged_with_cgroup("budget-daemon") else {
        return;
    };
    let Some(name) = cg.0.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    // This host's pids controller is v1: the service's cgroup there has
    // the same path, as systemd lays out every hierarchy.
    let v1_root = std::path::Path::new("/sys/fs/cgroup/pids");
    let v1 = if v1_root.join("cgroup.procs").exists() {
        let d = V1Pids(v1_root.join(&name));
        std::fs::create_dir_all(&d.0).expect("v1 pids cgroup");
        Some(d)
    } else {
        None
    };
    let pids_max = v1
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or_else(|| cg.0.clone())
        .join("pids.max");
    let yaml = profile("dmn-budget", 9, "resources:\n  pids: 6\n");
    let d = support::daemon::Daemon::prepare("budget-daemon", "", &[("dmn-budget.yaml", &yaml)]);
    d.write_config(&format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n\n[[agent]]\nname = \"dmn-budget\"\nprofile = \"dmn-budget.yaml\"\nmode = \"monitor\"\nworkspace = \"WS\"\nbudget_action = \"pause\"\n[agent.select]\ncgroup = \"{}\"\n",
        cg.0.display()
    ));
    let mut d = d.start();
    support::daemon::wait_for("the budget on the cgroup", Duration::from_secs(20), || {
        std::fs::read_to_string(&pids_max).is_ok_and(|t| t.trim() == "6")
    });
    let join_v1 = v1
        .as_ref()
        .map(|v| format!("echo $$ > {}/cgroup.procs; ", v.0.display()))
        .unwrap_or_default();
    d.workload(&cg.0, &format!("{join_v1}exec {FORKER}"));
    support::daemon::wait_for("budget/pids", Duration::from_secs(30), || {
        d.alerts().iter().any(|a| a["rule"] == "budget/pids")
    });
    let st = d.json(&["status", "dmn-budget"]);
    assert_eq!(st["paused"], true, "{st}");
    let hit = d
        .alerts()
        .into_iter()
        .find(|a| a["rule"] == "budget/pids")
        .expect("alert");
    assert_eq!(hit["limit"], "6", "{hit}");
    assert_eq!(hit["action"], "pause", "{hit}");
    d.json(&["resume", "dmn-budget"]);
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    // The service's cgroup is given back as it was.
    let after = std::fs::read_to_string(&pids_max).unwrap_or_default();
    assert_eq!(after.trim(), "max", "pids.max after the daemon stopped");
}

#[test]
fn a_daemon_agent_that_keeps_restarting_is_paused() {
    let Some((_k, cg)) = support::privileged_with_cgroup("budget-restarts") else {
        return;
    };
    let yaml = profile("dmn-restarts", 9, "resources:\n  restarts: \"2/1m\"\n");
    let d =
        support::daemon::Daemon::prepare("budget-restarts", "", &[("dmn-restarts.yaml", &yaml)]);
    d.write_config(&format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n[audit]\npath = \"audit.jsonl\"\n\n[[agent]]\nname = \"dmn-restarts\"\nprofile = \"dmn-restarts.yaml\"\nmode = \"monitor\"\nworkspace = \"WS\"\n[agent.select]\ncgroup = \"{}\"\n",
        cg.0.display()
    ));
    let mut d = d.start();
    // A supervisor outside the agent starts it again and again: each
    // start joins by the cgroup selector.
    for i in 0..3 {
        d.workload(&cg.0, &format!("echo run-{i} > run-{i}.txt"));
        assert_eq!(
            d.wait_workload(Duration::from_secs(20)),
            Some(0),
            "start {i}"
        );
        assert!(
            !d.alerts().iter().any(|a| a["rule"] == "budget/restarts"),
            "two restarts are within the budget: {:?}",
            d.alerts()
        );
    }
    d.workload(&cg.0, "echo run-3 > run-3.txt");
    support::daemon::wait_for("budget/restarts", Duration::from_secs(20), || {
        d.alerts().iter().any(|a| a["rule"] == "budget/restarts")
    });
    let hit = d
        .alerts()
        .into_iter()
        .find(|a| a["rule"] == "budget/restarts")
        .expect("alert");
    assert_eq!(hit["limit"], "2/1m", "{hit}");
    assert_eq!(hit["times"], 3, "{hit}");
    let st = d.json(&["status", "dmn-restarts"]);
    assert_eq!(st["paused"], true, "{st}");
    d.json(&["resume", "dmn-restarts"]);
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    let recs = support::daemon::audit_records(&d.dir.0.join("audit.jsonl"));
    assert!(
        recs.iter()
            .any(|r| r["type"] == "budget" && r["rule"] == "budget/restarts"),
        "no budget record in the audit log"
    );
}

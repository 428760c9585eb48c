//! Privileged tests of the audit log as `agentwatch run --audit` writes
//! it against this host's kernel: every decision and approval is recorded
//! with its inputs, `audit verify` accepts the log and names the record a
//! change breaks, and a log whose writer was killed with SIGKILL while
//! writing still verifies up to its last complete record.
mod support;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{agentwatch, privileged, run::*, TempDir};

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read audit log")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["record"].clone())
        .collect()
}

/// `audit verify` on `files`: (exit code, stdout).
fn verify(files: &[&Path]) -> (i32, String) {
    let out = agentwatch()
        .args(["audit", "verify"])
        .args(files)
        .output()
        .expect("audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn decisions_and_approvals_are_chained_and_a_change_is_named() {
    let Some(_g) = privileged() else { return };
    let script = "cat /etc/os-release > /dev/null; echo after-approve";
    // Outside the run's own directory, which goes when the run ends.
    let keep = TempDir::new("audit-chain-log");
    let log = keep.path().join("audit.jsonl");
    let run = Run::start(
        "audit-chain",
        &profile("audit-chain", 9, ""),
        "enforce",
        &["--audit", &log.to_string_lossy()],
        script,
    );
    run.wait_ready("audit-chain");
    run.wait_stopped("cat");
    approve_rule("audit-chain", "file/unknown");
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(d.stdout.contains("after-approve"));

    let r = records(&log);
    let decision = r
        .iter()
        .find(|x| x["type"] == "decision" && x["rule"] == "file/unknown")
        .unwrap_or_else(|| panic!("no decision record: {r:?}"));
    assert_eq!(decision["what"], "read /etc/os-release");
    assert_eq!(decision["agent"], "audit-chain");
    assert_eq!(decision["mode"], "enforce");
    assert_eq!(decision["action"], "pause");
    assert_eq!(decision["event"]["path"], "/etc/os-release");
    assert!(!decision["ancestry"]
        .as_array()
        .expect("ancestry")
        .is_empty());
    assert_eq!(decision["profile_sha256"].as_str().map(str::len), Some(64));
    let answer = r
        .iter()
        .find(|x| x["type"] == "approval")
        .unwrap_or_else(|| panic!("no approval record: {r:?}"));
    assert_eq!(answer["outcome"], "approved");
    assert_eq!(answer["by"], "root");
    assert_eq!(answer["ids"][0], decision["approval"]);

    let (code, out) = verify(&[&log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok:"), "{out}");

    // Rewrite the decision's action: verify names the record after it.
    let text = std::fs::read_to_string(&log).expect("read");
    let at = text
        .lines()
        .position(|l| l.contains("\"action\":\"pause\""))
        .expect("the decision's line");
    let altered = text.replacen("\"action\":\"pause\"", "\"action\":\"alert\"", 1);
    std::fs::write(&log, altered).expect("write");
    let (code, out) = verify(&[&log]);
    assert_eq!(code, 1, "{out}");
    let named = format!("audit.jsonl:{}:", at + 2);
    assert!(
        out.contains("BROKEN") && out.contains(&named),
        "{named}: {out}"
    );
}

#[test]
fn a_log_killed_mid_write_verifies_up_to_its_last_complete_record() {
    let Some(_g) = privileged() else { return };
    // Monitor mode: every read of os-release is an alert and a record.
    let script = "while :; do cat /etc/os-release > /dev/null; done";
    let keep = TempDir::new("audit-kill-log");
    let log = keep.path().join("audit.jsonl");
    let mut run = Run::start(
        "audit-kill",
        &profile("audit-kill", 9, ""),
        "monitor",
        &["--audit", &log.to_string_lossy(), "--audit-fsync", "50ms"],
        script,
    );
    run.wait_ready("audit-kill");
    let t = Instant::now();
    while records(&log).len() < 200 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the log did not grow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-KILL", &run.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = run.child.wait();
    let (code, out) = verify(&[&log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok:"), "{out}");
    println!("after SIGKILL: {}", out.trim());

    // A new writer continues the same chain.
    drop(run);
    let kept = log;
    let again = Run::start(
        "audit-kill2",
        &profile("audit-kill2", 9, ""),
        "monitor",
        &["--audit", &kept.to_string_lossy()],
        "cat /etc/os-release > /dev/null",
    );
    let d = again.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    let (code, out) = verify(&[&kept]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("cut short"), "{out}");
}

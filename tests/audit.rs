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
    // Work within the profile first (what the session's activity counts),
    // then one read outside it.
    let script = "for i in $(seq 1 30); do echo x > f$i; done; cat f* > /dev/null; rm f1 f2; \
                  cat /etc/os-release > /dev/null; echo after-approve";
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

    // The session: what it did within its profile, counted by the kernel
    // (writes, reads, deletes it allowed) and from the execs that crossed.
    let sessions: Vec<&Value> = r.iter().filter(|x| x["type"] == "activity").collect();
    let last = sessions
        .last()
        .unwrap_or_else(|| panic!("no activity record: {r:?}"));
    assert_eq!(last["agent"], "audit-chain");
    assert_eq!(last["ended"], true, "{last}");
    let within = &last["within_profile"];
    assert!(within["file"].as_u64().unwrap_or(0) >= 31, "{last}");
    assert!(within["delete"].as_u64().unwrap_or(0) >= 2, "{last}");
    assert!(within["exec"].as_u64().unwrap_or(0) >= 3, "{last}");
    for program in ["seq", "rm"] {
        assert!(
            last["programs"]
                .as_object()
                .is_some_and(|m| m.keys().any(|p| p.ends_with(&format!("/{program}")))),
            "{program} not among the programs: {last}"
        );
    }

    let (code, out) = verify(&[&log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok:"), "{out}");

    // The log as a page people read (`report --html`), rendered by a
    // real browser: the violation and its answer in plain words.
    let page = keep.path().join("report.html");
    let made = agentwatch()
        .args(["report", "--html"])
        .arg(&page)
        .arg(&log)
        .output()
        .expect("report");
    assert!(made.status.success(), "{made:?}");
    if let Some(chrome) = support::browser::chromium() {
        let url = format!("file://{}", page.display());
        let dom = support::browser::dump_dom(&chrome, &url);
        for said in [
            "tried to read /etc/os-release: outside its profile; paused for a decision",
            "approved by root at",
            "the hash chain holds",
            "Agent audit-chain",
            "1 session(s)",
            "within its profile",
        ] {
            assert!(dom.contains(said), "{said:?} not on the page:\n{dom}");
        }
        let png = support::browser::screenshot(&chrome, &url, "audit-report");
        println!("screenshot of the report: {}", png.display());
    }

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

/// A run given a key signs checkpoints as it goes and a final one at its
/// end: `audit verify --key` accepts the sealed log, and catches its tail
/// cut off at a checkpoint, a log rewritten without the key, and a key
/// that is not the writer's. A key others can read is refused up front.
#[test]
fn a_signed_log_is_sealed_and_a_cut_tail_or_a_rewrite_is_caught() {
    let Some(_g) = privileged() else { return };
    let keep = TempDir::new("audit-signed-keys");
    let keys = keep.path().join("audit");
    let made = agentwatch()
        .args(["audit", "keygen"])
        .arg(&keys)
        .output()
        .expect("keygen");
    assert!(made.status.success(), "{made:?}");
    let (key, public) = (keys.with_extension("key"), keys.with_extension("pub"));
    let log = keep.path().join("audit.jsonl");
    let d = Run::start(
        "audit-signed",
        &profile("audit-signed", 9, ""),
        "monitor",
        &[
            "--audit",
            &log.to_string_lossy(),
            "--audit-key",
            &key.to_string_lossy(),
            "--audit-checkpoint",
            "200ms",
        ],
        "for i in 1 2 3 4; do cat /etc/os-release > /dev/null; sleep 0.3; done",
    )
    .finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    let verify_key = |pub_key: &Path| {
        let out = agentwatch()
            .args(["audit", "verify", "--key"])
            .arg(pub_key)
            .arg(&log)
            .output()
            .expect("audit verify");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = verify_key(&public);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("closes the log"), "{out}");
    let recs = records(&log);
    let checkpoints: Vec<&Value> = recs.iter().filter(|r| r["type"] == "checkpoint").collect();
    assert!(checkpoints.len() >= 2, "{recs:#?}");
    assert_eq!(checkpoints.last().unwrap()["final"], true);

    // The tail cut back to an earlier checkpoint: no longer sealed.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let earlier = lines
        .iter()
        .rposition(|l| l.contains("\"type\":\"checkpoint\"") && l.contains("\"final\":false"))
        .expect("an earlier checkpoint");
    std::fs::write(&log, lines[..=earlier].join("\n") + "\n").unwrap();
    let (code, out) = verify_key(&public);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tail was cut"), "{out}");
    // Another key does not vouch for it.
    let other = keep.path().join("other");
    let made = agentwatch()
        .args(["audit", "keygen"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    std::fs::write(&log, text).unwrap();
    let (code, out) = verify_key(&other.with_extension("pub"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not by the key given"), "{out}");

    // A key that others can read is refused before anything runs.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = keep.path().join("p.yaml");
    std::fs::write(&p, profile("audit-signed", 9, "")).unwrap();
    let other_log = keep.path().join("other.jsonl");
    let out = agentwatch()
        .arg("run")
        .arg("--profile")
        .arg(&p)
        .arg("--audit")
        .arg(&other_log)
        .arg("--audit-key")
        .arg(&key)
        .args(["--", "true"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !other_log.exists(),
        "the log was opened before the key was checked"
    );
}

/// A loop repeating one violation: the alert output folds the identical
/// alerts into the first and one aggregate with their count and times;
/// the audit log still has every decision, each with its true wall-clock
/// time (microseconds) and the host.
#[test]
fn repeated_alerts_are_folded_and_every_decision_is_audited() {
    let Some(_g) = privileged() else { return };
    let script = "i=0; while [ $i -lt 200 ]; do cat /etc/os-release > /dev/null; i=$((i+1)); done";
    let keep = TempDir::new("audit-fold-log");
    let log = keep.path().join("audit.jsonl");
    let started = std::time::SystemTime::now();
    let run = Run::start(
        "audit-fold",
        &profile("audit-fold", 9, ""),
        "monitor",
        &["--audit", &log.to_string_lossy(), "--alert-window", "1h"],
        script,
    );
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    let reads: Vec<&Value> = d
        .alerts
        .iter()
        .filter(|a| a["type"] == "alert" && a["what"] == "read /etc/os-release")
        .collect();
    assert_eq!(reads.len(), 2, "the first, then one aggregate: {reads:?}");
    assert!(reads[0].get("count").is_none(), "{}", reads[0]);
    assert_eq!(reads[1]["count"], 199, "{}", reads[1]);
    let at = |v: &Value, k: &str| {
        let s = v[k].as_str().unwrap_or_else(|| panic!("no {k}: {v}"));
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{k} {s:?} is not RFC 3339: {e}"));
        std::time::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64)
    };
    assert!(at(reads[1], "first") <= at(reads[1], "last"));
    assert!(at(reads[0], "time") <= at(reads[1], "first"));
    // The summary counts every one.
    let alerts = d.summary()["stats"]["alerts"].as_u64().unwrap_or(0);
    assert!(alerts >= 200, "{}", d.summary());

    let decisions: Vec<Value> = records(&log)
        .into_iter()
        .filter(|r| r["type"] == "decision" && r["what"] == "read /etc/os-release")
        .collect();
    assert_eq!(decisions.len(), 200, "every decision is audited");
    // The alert names its record in the chain: the line with its seq, and
    // that line's sha256 (what the next line's `prev` holds).
    let link = &reads[0]["audit"];
    let seq = link["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no audit link: {}", reads[0]));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["seq"] == seq))
        .expect("the linked line");
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(line.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(link["hash"], hex.as_str());
    let linked: Value = serde_json::from_str(line).unwrap();
    assert_eq!(linked["record"]["what"], "read /etc/os-release");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for r in [&decisions[0], &decisions[199]] {
        assert_eq!(r["host"], host.trim(), "{r}");
        // True time, not clamped, to the microsecond.
        let t = at(r, "time");
        let ago = std::time::SystemTime::now().duration_since(t).unwrap();
        assert!(
            t >= started - Duration::from_secs(1) && ago < Duration::from_secs(120),
            "{r}"
        );
        assert!(r["ts"].as_str().is_some_and(|s| s.contains('.')), "{r}");
    }
}

/// A directory made immutable (as a read-only ConfigMap mount is for the
/// daemon): nothing can be created or renamed in it. Undone on drop, also
/// when the test fails.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Option<Self> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// `approve --learn` when the profile cannot be written is all or
/// nothing: it fails (exit 4) saying the request stays open, the agent
/// stays paused, the profile and the log say nothing was approved; a
/// plain approve then resumes it, audited once.
#[test]
fn approve_learn_that_cannot_write_the_profile_changes_nothing() {
    let Some(_g) = privileged() else { return };
    let keep = TempDir::new("audit-ro-log");
    let log = keep.path().join("audit.jsonl");
    let run = Run::start(
        "audit-ro",
        &profile("audit-ro", 9, ""),
        "enforce",
        &["--audit", &log.to_string_lossy(), "--pause-timeout", "60s"],
        "cat /etc/os-release > /dev/null; echo resumed",
    );
    run.wait_ready("audit-ro");
    let cat = run.wait_stopped("cat");
    let id = request_for("audit-ro", "file/unknown");
    let profile_path = run.dir.path().join("profile.yaml");
    let before = std::fs::read_to_string(&profile_path).unwrap();
    let Some(ro) = Immutable::set(run.dir.path()) else {
        eprintln!("SKIP: chattr +i is not supported on this filesystem");
        return;
    };
    let out = support::agentwatch()
        .args(["approve", &id, "--learn"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("stays open"), "{err}");
    assert!(pending("audit-ro").iter().any(|(i, _)| *i == id));
    assert_eq!(Run::state(cat), Some('T'), "the agent must stay paused");
    drop(ro);
    assert_eq!(std::fs::read_to_string(&profile_path).unwrap(), before);
    assert!(
        !records(&log).iter().any(|r| r["type"] == "approval"),
        "nothing was approved yet"
    );

    control(&["approve", &id]);
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(d.stdout.contains("resumed"));
    let answers: Vec<Value> = records(&log)
        .into_iter()
        .filter(|r| r["type"] == "approval")
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["outcome"], "approved");
    assert_eq!(answers[0]["learned"], false);
}

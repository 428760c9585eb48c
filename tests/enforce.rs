//! Privileged tests of `agentwatch run` against this host's kernel: a real
//! workload of benign and violating steps under a profile; each test
//! asserts the kernel's outcome as the process sees it (errno, state T,
//! process gone) and that the benign steps still succeed unflagged.
//! The BPF LSM tier is tested in the qemu VM (`cargo xtask vm-test`).
mod support;

use std::{net::TcpListener, time::Duration};

use serde_json::Value;
use support::{privileged, run::*, TempDir};

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().expect("addr").port();
    (l, p)
}

#[test]
fn monitor_alerts_on_violations_and_blocks_nothing() {
    let Some(_g) = privileged() else { return };
    let (_ok, ok_port) = listener();
    let (_other, other_port) = listener();
    let script = format!(
        "echo hi > notes.txt; cat notes.txt > /dev/null; \
         bash -c 'echo ~root' > /dev/null; \
         cat /etc/os-release > /dev/null && echo read-ok; \
         bash -c 'echo > /dev/tcp/127.0.0.1/{ok_port}' && echo allowed-ok; \
         bash -c 'echo > /dev/tcp/127.0.0.1/{other_port}' && echo other-ok"
    );
    let run = Run::start("mon", &profile("mon", ok_port, ""), "monitor", &[], &script);
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    for step in ["read-ok", "allowed-ok", "other-ok"] {
        assert!(d.stdout.contains(step), "{step} missing: {}", d.stdout);
    }
    assert_eq!(
        d.only_alert_rules(),
        ["file/unknown", "network/unknown"],
        "{}",
        d.brief()
    );
    let f = &d.alerts_by("file/unknown")[0];
    assert_eq!(f["what"], "read /etc/os-release");
    assert_eq!(f["action"], "alert");
    assert_eq!(f["decided_by"], "kernel");
    assert!(!f["ancestry"].as_array().expect("ancestry").is_empty());
    let n = &d.alerts_by("network/unknown")[0];
    assert!(n["what"]
        .as_str()
        .unwrap_or("")
        .contains(&other_port.to_string()));
    let s = d.summary();
    assert!(
        s["decided_in_kernel"].as_u64().unwrap_or(0) > 10,
        "known-good events should be decided in the kernel: {s}"
    );
}

#[test]
fn enforce_denies_connects_outside_the_profile_with_eperm() {
    let Some(_g) = privileged() else { return };
    let (_ok, ok_port) = listener();
    let (_other, other_port) = listener();
    let script = format!(
        "bash -c 'echo > /dev/tcp/127.0.0.1/{ok_port}' && echo allowed-ok; \
         bash -c 'echo > /dev/tcp/127.0.0.1/{other_port}' 2> err.txt || echo refused; \
         cat err.txt"
    );
    let run = Run::start(
        "deny-net",
        &profile("deny-net", ok_port, ""),
        "enforce",
        &[],
        &script,
    );
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(d.stdout.contains("allowed-ok"), "{}", d.stdout);
    assert!(d.stdout.contains("refused"), "{}", d.stdout);
    assert!(
        d.stdout.contains("Operation not permitted"),
        "connect should fail with EPERM: {}",
        d.stdout
    );
    let a = &d.alerts_by("network/unknown")[0];
    assert_eq!(a["action"], "deny");
    assert_eq!(d.only_alert_rules(), ["network/unknown"]);
}

#[test]
fn enforce_deny_of_a_file_falls_back_to_sigkill_at_the_call_here() {
    let Some(_g) = privileged() else { return };
    let extra = "actions:\n  file: deny\n";
    // Then the agent reads why, from the descriptor agentwatch gave it
    // (bash: dash takes single-digit descriptors only).
    let script = "echo hi > notes.txt; cat notes.txt; cat /etc/os-release; echo \"rc=$?\"; \
                  bash -c 'timeout 10 head -n 1 <&$AGENTWATCH_REASONS_FD'";
    let run = Run::start(
        "deny-file",
        &profile("deny-file", 9, extra),
        "enforce",
        &[],
        script,
    );
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(
        d.stdout.starts_with("hi\n"),
        "benign steps run: {}",
        d.stdout
    );
    assert!(
        d.stdout.contains("rc=137"),
        "cat killed by SIGKILL: {}",
        d.stdout
    );
    assert!(!d.stdout.contains("PRETTY_NAME"), "{}", d.stdout);
    let a = &d.alerts_by("file/unknown")[0];
    assert_eq!(a["action"], "deny (SIGKILL at the call)");
    let told: serde_json::Value = d
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the agent read no reason: {}", d.stdout));
    assert_eq!(told["rule"], "file/unknown", "{told}");
    assert_eq!(told["what"], "read /etc/os-release", "{told}");
    assert_eq!(told["outcome"], "blocked", "{told}");
    assert!(
        told["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{told}"
    );
}

#[test]
fn pause_stops_the_tree_and_approve_learn_resumes_it_and_extends_the_profile() {
    let Some(_g) = privileged() else { return };
    // Pinned to one CPU, so the reopens after the approval meet the
    // kernel's per-CPU name cache that the first open filled: the
    // approval's new policy must not be answered by the old verdict.
    let script = "taskset -pc 0 $$ > /dev/null; echo hi > notes.txt; \
                  cat /etc/os-release > /dev/null; \
                  : < /etc/os-release; : < /etc/os-release; echo after-approve";
    let run = Run::start(
        "pause-ok",
        &profile("pause-ok", 9, ""),
        "enforce",
        &[],
        script,
    );
    let cat = run.wait_stopped("cat");
    // The shell waits in wait4 (no watched call): userspace's sweep stops it.
    run.wait_stopped("sh");
    let pending: Value = serde_json::from_str(&control(&["pending", "--json"])).expect("json");
    let req = pending
        .as_array()
        .and_then(|a| a.iter().find(|r| r["agent"] == "pause-ok"))
        .unwrap_or_else(|| panic!("no request in {pending}"))
        .clone();
    assert_eq!(req["pid"], cat);
    assert_eq!(req["rule"], "file/unknown");
    assert_eq!(req["what"], "read /etc/os-release");
    assert_eq!(req["evidence"]["kind"], "open");
    let id = req["id"].as_str().expect("id").to_string();
    control(&["approve", &id, "--learn"]);
    let yaml = std::fs::read_to_string(run.dir.0.join("profile.yaml")).expect("profile");
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(d.stdout.contains("after-approve"), "{}", d.stdout);
    assert_eq!(d.alerts_by("file/unknown").len(), 1, "{}", d.brief());
    assert!(yaml.contains("path: \"/etc/os-release\""), "{yaml}");
    assert!(yaml.contains("by: \"root\""), "{yaml}");
    // The run's directory is gone by now: lint a copy, in a directory
    // removed on drop.
    let keep = TempDir::new("pause-learn-lint");
    let copy = keep.path().join("profile.yaml");
    std::fs::write(&copy, &yaml).expect("write");
    support::assert_lints(&copy);
}

/// The kernel caches the automaton's verdict on recent absolute names
/// (`enforce::names`). A name one byte away from a cached one, of the
/// same length, at its first or last bytes, and names longer than the
/// cache holds, are each judged on their own.
#[test]
fn the_kernels_name_cache_never_lends_a_verdict_to_another_name() {
    let Some(_g) = privileged() else { return };
    let dir = TempDir::new("name-cache-files");
    let long = dir.0.join("d".repeat(120));
    std::fs::create_dir_all(&long).expect("dir");
    // Allowed: names that begin with `ok` or end in `.ok`. Each pair is
    // one allowed and one unlisted name of the same length.
    let mut pairs = Vec::new();
    for i in 0..8 {
        for base in [&dir.0, &long] {
            pairs.push((base.join(format!("ok.{i}")), base.join(format!("nk.{i}"))));
            pairs.push((base.join(format!("a{i}.ok")), base.join(format!("a{i}.no"))));
            pairs.push((
                base.join(format!("okpadding{i}.x")),
                base.join(format!("nkpadding{i}.x")),
            ));
        }
    }
    let mut script = String::from("taskset -pc 0 $$ > /dev/null; ");
    for (ok, no) in &pairs {
        std::fs::write(ok, "s").expect("write");
        std::fs::write(no, "s").expect("write");
        let (ok, no) = (ok.display(), no.display());
        script += &format!(": < {ok}; : < {no}; : < {ok}; : < {no}; ");
    }
    script += "echo done";
    let rules = format!(
        "files:\n  - path: \"{d}/**/ok*\"\n    access: [read]\n  - path: \"{d}/**/*.ok\"\n    access: [read]\n",
        d = dir.0.display()
    );
    let yaml = profile("names", 9, "").replacen("files:\n", &rules, 1);
    let run = Run::start(
        "names",
        &yaml,
        "monitor",
        &["--alert-window", "off"],
        &script,
    );
    let d = run.finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(d.stdout.contains("done"), "{}", d.stdout);
    // Alerts name the files under `$TMP`: compare from the directory on.
    let top = dir.0.parent().expect("parent");
    let times = |p: &std::path::Path| {
        let rel = p.strip_prefix(top).expect("under the temp dir");
        let tail = format!("/{}", rel.display());
        d.alerts_by("file/unknown")
            .iter()
            .filter(|a| a["what"].as_str().is_some_and(|w| w.ends_with(&tail)))
            .count()
    };
    for (ok, no) in &pairs {
        // Both opens of each unlisted name, the second after the first
        // had filled the cache, and neither of the allowed one.
        assert_eq!(times(no), 2, "{}: {}", no.display(), d.brief());
        assert_eq!(times(ok), 0, "{}: {}", ok.display(), d.brief());
    }
}

#[test]
fn deny_and_timeout_kill_the_paused_tree() {
    let Some(_g) = privileged() else { return };
    let script = "cat /etc/os-release > /dev/null; echo survived";
    let run = Run::start(
        "pause-deny",
        &profile("pause-deny", 9, ""),
        "enforce",
        &[],
        script,
    );
    run.wait_stopped("cat");
    control(&["deny", &request_for("pause-deny", "")]);
    let d = run.finish();
    assert!(!d.stdout.contains("survived"), "{}", d.stdout);
    assert!(d.status != 0);

    let run = Run::start(
        "pause-timeout",
        &profile("pause-timeout", 9, ""),
        "enforce",
        &["--pause-timeout", "1s"],
        script,
    );
    run.wait_stopped("cat");
    let d = run.finish();
    assert!(!d.stdout.contains("survived"), "{}", d.stdout);
    assert_eq!(d.summary()["stats"]["timed_out"], 1, "{}", d.brief());
}

#[test]
fn kill_action_kills_the_tree_before_an_unknown_binary_runs() {
    let Some(_g) = privileged() else { return };
    let extra = "actions:\n  exec: kill\n";
    // A binary the profile does not list, already in the checkout (a copy
    // the agent made itself would be exec/written, a guardrail).
    let script = "./myecho UNKNOWN-RAN; echo tree-survived";
    let run = Run::start_prepared(
        "kill-exec",
        &profile("kill-exec", 9, extra),
        "enforce",
        &[],
        script,
        |ws| {
            std::fs::copy("/bin/echo", ws.join("myecho")).expect("copy echo");
        },
    );
    let d = run.finish();
    assert!(!d.stdout.contains("UNKNOWN-RAN"), "{}", d.stdout);
    assert!(!d.stdout.contains("tree-survived"), "{}", d.stdout);
    // Landlock holds exec (its action refuses; no BPF LSM here): the exec
    // fails before it runs, and the kill action ends the tree.
    let rule = if d.summary()["file_deny"] == "bpf_lsm" {
        "exec/unknown"
    } else {
        "landlock/exec"
    };
    assert_eq!(d.only_alert_rules(), [rule], "{}", d.brief());
    let a = &d.alerts_by(rule)[0];
    assert_eq!(a["action"], "kill");
}

#[test]
fn guardrails_hold_in_monitor_mode_and_exfiltration_is_refused() {
    let Some(_g) = privileged() else { return };
    let (_ok, ok_port) = listener();
    let (_evil, evil_port) = listener();
    let home = TempDir::new("guard-home");
    std::fs::create_dir_all(home.0.join(".ssh")).expect("ssh dir");
    std::fs::write(home.0.join(".ssh/id_test"), "SECRET").expect("key");
    let script = format!(
        "cat \"$HOME/.ssh/id_test\" > k.txt; \
         bash -c 'echo > /dev/tcp/127.0.0.1/{evil_port}' 2> err.txt; cat err.txt; echo end"
    );
    let run = Run::start(
        "guard",
        &profile("guard", ok_port, ""),
        "monitor",
        &["--home", &home.join("")],
        &script,
    );
    // The secret read stops the agent even in monitor mode.
    run.wait_stopped("cat");
    approve_rule("guard", "guardrail/secrets");
    // The connect that follows is exfiltration: refused, and paused again.
    run.wait_stopped("bash");
    approve_rule("guard", "guardrail/exfiltrate");
    let d = run.finish();
    assert!(d.stdout.contains("Operation not permitted"), "{}", d.stdout);
    assert_eq!(
        d.only_alert_rules(),
        ["guardrail/secrets", "guardrail/exfiltrate"],
        "{}",
        d.brief()
    );
}

#[test]
fn a_burst_of_deletes_over_the_budget_pauses_the_agent() {
    let Some(_g) = privileged() else { return };
    let extra = "rates:\n  perMinute:\n    delete: {peak: 5, budget: 10}\n";
    let script = "for i in $(seq 1 40); do touch f$i; done; for i in $(seq 1 40); do rm f$i; done; echo done";
    let run = Run::start("rate", &profile("rate", 9, extra), "enforce", &[], script);
    run.wait_stopped("rm");
    let left = std::fs::read_dir(run.ws()).expect("ws").count();
    assert!(left >= 29, "stopped at the 11th delete, {left} files left");
    control(&["deny", &request_for("rate", "rate/delete")]);
    let d = run.finish();
    assert!(!d.stdout.contains("done"));
    assert_eq!(d.alerts_by("rate/delete").len(), 1, "{}", d.brief());
}

#[test]
fn signalling_agentwatch_is_tampering() {
    let Some(_g) = privileged() else { return };
    let script = "kill -USR1 $PPID; echo after";
    let run = Run::start("tamper", &profile("tamper", 9, ""), "monitor", &[], script);
    run.wait_stopped("sh");
    control(&["deny", &request_for("tamper", "")]);
    let d = run.finish();
    assert!(!d.stdout.contains("after"), "{}", d.stdout);
    assert_eq!(d.only_alert_rules(), ["guardrail/tamper"], "{}", d.brief());
    assert!(
        d.summary()["stats"]["denied"] == 1,
        "agentwatch survived the signal and wrote its summary"
    );
}

#[test]
fn persistence_writes_agentwatch_files_and_bpf_calls_are_guardrails_in_monitor_mode() {
    let Some(_g) = privileged() else { return };
    // The profile allows writes anywhere in the workspace; guardrails win.
    // `../profile.yaml` is the profile this run enforces.
    let script = "echo ok > notes.txt; echo benign-ok; \
                  echo 'alias ls=evil' >> .bashrc; echo rc-written; \
                  echo '# x' >> ../profile.yaml; echo profile-written; \
                  /usr/sbin/bpftool prog show > /dev/null 2>&1; echo after-bpf";
    // Without the launch sandbox, whose seccomp filter would refuse bpf()
    // before it runs (tests/sandbox.rs): here the eBPF guard pauses it.
    let run = Run::start(
        "guards",
        &profile("guards", 9, ""),
        "monitor",
        &["--no-sandbox"],
        script,
    );
    run.wait_ready("guards");
    approve_rule("guards", "guardrail/persistence");
    approve_rule("guards", "guardrail/agentwatch");
    // bpftool makes one bpf() call after another: deny ends it.
    control(&["deny", &request_for("guards", "guardrail/tamper")]);
    let d = run.finish();
    for step in ["benign-ok", "rc-written", "profile-written"] {
        assert!(d.stdout.contains(step), "{step} missing: {}", d.stdout);
    }
    assert!(!d.stdout.contains("after-bpf"), "{}", d.stdout);
    let rules = d.only_alert_rules();
    let guards: Vec<&str> = rules
        .iter()
        .map(String::as_str)
        .filter(|r| r.starts_with("guardrail/"))
        .collect();
    assert_eq!(
        guards,
        [
            "guardrail/persistence",
            "guardrail/agentwatch",
            "guardrail/tamper"
        ],
        "{}",
        d.brief()
    );
    for a in d.alerts.iter().filter(|a| a["type"] == "alert") {
        assert!(
            !a["what"].as_str().unwrap_or("").contains("notes.txt"),
            "a benign step was flagged: {a}"
        );
        if a["rule"]
            .as_str()
            .is_some_and(|r| r.starts_with("guardrail/"))
        {
            assert_eq!(a["action"], "pause", "{a}");
            assert_eq!(a["decided_by"], "kernel", "{a}");
        }
    }
}

#[test]
fn mode_pause_and_resume_at_runtime() {
    let Some(_g) = privileged() else { return };
    let script =
        "while [ ! -e go ]; do sleep 0.05; done; cat /etc/os-release > /dev/null; echo end";
    let run = Run::start(
        "runtime",
        &profile("runtime", 9, ""),
        "monitor",
        &[],
        script,
    );
    run.wait_ready("runtime");
    std::thread::sleep(Duration::from_millis(200));
    control(&["pause", "runtime"]);
    // A SIGSTOP lands when its target next runs: give a busy host a moment.
    let stopped = |pids: &[u32]| pids.iter().all(|p| Run::state(*p) == Some('T'));
    let t = std::time::Instant::now();
    let mut sh = run.pids("sh");
    while (sh.is_empty() || !stopped(&sh)) && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
        sh = run.pids("sh");
    }
    assert!(!sh.is_empty() && stopped(&sh), "not all stopped: {sh:?}");
    control(&["resume", "runtime"]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(sh.iter().all(|p| Run::state(*p) != Some('T')));
    control(&["mode", "runtime", "enforce"]);
    std::fs::write(run.ws().join("go"), "").expect("go");
    run.wait_stopped("cat");
    approve_rule("runtime", "file/unknown");
    let d = run.finish();
    assert!(d.stdout.contains("end"));
    assert_eq!(d.alerts_by("file/unknown")[0]["action"], "pause");
}

//! The guest half of `cargo xtask vm-test` for enforcement: `agentwatch run
//! --mode enforce` with file, delete and exec set to deny, on a kernel
//! booted with BPF LSM. Each violating step must fail with EPERM and leave
//! nothing changed; the benign steps must succeed unflagged; the workload
//! must survive to its end (no SIGKILL fallback).
use anyhow::{ensure, Context as _};

/// The profile the guest runs under (written to /lsm-profile.yaml).
pub const PROFILE: &str = r#"apiVersion: agentwatch.dev/v1
kind: Profile
agent: vm-lsm
executables:
  - path: "/bin/*"
  # busybox sh runs its applets through its own binary.
  - path: "/proc/self/exe"
files:
  - path: "/bin/**"
    access: [read, exec]
  - path: "/lib/**"
    access: [read, exec]
  - path: "/etc/passwd"
    access: [read]
  - path: "/dev/**"
    access: [read, write]
  - path: "/proc/**"
    access: [read]
  - path: "$WORKSPACE/**"
    access: [read, write, create, delete, rename, chmod]
actions:
  exec: deny
  file: deny
  delete: deny
  guardrails: deny
"#;

/// The workload (written to /work/ws/workload.sh). Every step prints one
/// `STEP name: output` line.
pub const WORKLOAD: &str = r#"cd /work/ws
step() { name=$1; shift; out=$("$@" 2>&1); echo "STEP $name: rc=$? $out"; }
step write sh -c 'echo benign > a.txt'
step read cat a.txt
step rename-in mv a.txt b.txt
step delete-in rm b.txt
step open-out cat /data/other.txt
step create-out sh -c 'echo x > /data/new.txt'
[ -e /data/new.txt ] && echo "STEP created-anyway: yes"
step delete-out rm /data/keep.txt
[ -e /data/keep.txt ] && echo "STEP keep-still-there: yes"
echo y > c.txt
step rename-out mv /work/ws/c.txt /data/c.txt
[ -e /work/ws/c.txt ] && echo "STEP c-still-there: yes"
step chmod-out chmod 600 /data/keep.txt
step exec-out /data/tool
step link-secret ln /data/.ssh/id /work/ws/hard
[ -e /work/ws/hard ] && echo "STEP linked-anyway: yes"
# A relative path, resolved in the kernel against the cwd.
(cd /data && step rel-out cat other.txt)
ln -s /data/.ssh/id /work/ws/soft
step symlink-secret cat /work/ws/soft
# An escape: the launch sandbox's seccomp filter refuses it.
step escape-ns unshare -m true
# A persistence path planted by symlink or mkdir: each has an LSM hook.
step symlink-hook ln -s /x /data/repo/.git/hooks/pre-commit
step mkdir-hook mkdir /data/repo/.git/hooks/sub
[ -L /data/repo/.git/hooks/pre-commit ] || [ -e /data/repo/.git/hooks/sub ] && echo "STEP planted-anyway: yes"
echo "STEP survived: yes"
"#;

/// Shell lines for the guest's /init: set up /data, run the workload under
/// `agentwatch run`, print its alerts between markers.
pub const INIT_PART: &str = r#"mkdir -p /data /work/ws /run
echo keep > /data/keep.txt
echo other > /data/other.txt
printf '#!/bin/sh\necho ran\n' > /data/tool && chmod +x /data/tool
mkdir -p /data/.ssh && echo secret-key > /data/.ssh/id
mkdir -p /data/repo/.git/hooks
cp /lsm-workload.sh /work/ws/workload.sh
echo "=== AW-RUN-BEGIN"
/agentwatch run --json --mode enforce --profile /lsm-profile.yaml --workspace /work/ws -o /work/alerts.jsonl -- /bin/sh /work/ws/workload.sh
echo "=== AW-RUN-END status=$?"
echo "=== AW-ALERTS-BEGIN"
cat /work/alerts.jsonl
echo "=== AW-ALERTS-END"
"#;

/// What must hold in the guest's output.
pub fn check(run: &str, alerts: &[serde_json::Value]) -> anyhow::Result<()> {
    let step = |name: &str| -> &str {
        run.lines()
            .find_map(|l| l.split(&format!("STEP {name}: ")).nth(1))
            .unwrap_or("(missing)")
    };
    for ok in ["write", "read", "rename-in", "delete-in"] {
        ensure!(
            step(ok).starts_with("rc=0"),
            "benign step {ok} must succeed: {}",
            step(ok)
        );
    }
    for denied in [
        "open-out",
        "create-out",
        "delete-out",
        "rename-out",
        "chmod-out",
        "exec-out",
        "link-secret",
        "rel-out",
        "escape-ns",
        "symlink-hook",
        "mkdir-hook",
    ] {
        let s = step(denied);
        ensure!(
            !s.starts_with("rc=0") && s.contains("not permitted"),
            "{denied} must fail with EPERM: {s}"
        );
        println!("vm-test: lsm: {denied}: {s}");
    }
    ensure!(
        !run.contains("created-anyway")
            && !run.contains("\nran")
            && !run.contains("linked-anyway")
            && !run.contains("planted-anyway"),
        "a denied create, exec, link, symlink or mkdir took effect"
    );
    // Through a symlink the open is judged at its exit, by the file it
    // reached: too late for EPERM, so the reader is killed before it reads.
    let s = step("symlink-secret");
    ensure!(
        !s.starts_with("rc=0") && !s.contains("secret-key"),
        "the secret was read through a symlink: {s}"
    );
    println!("vm-test: lsm: symlink-secret: {s}");
    for kept in ["keep-still-there", "c-still-there", "survived"] {
        ensure!(
            step(kept) == "yes",
            "{kept} missing: the workload's output was\n{run}"
        );
    }

    let deny: Vec<&serde_json::Value> = alerts.iter().filter(|a| a["type"] == "alert").collect();
    for a in &deny {
        let killed = a["action"] == "deny (SIGKILL at the call)";
        ensure!(
            (a["action"] == "deny" || killed) && a["decided_by"] == "kernel",
            "every alert is a kernel deny: {a}"
        );
        ensure!(
            !killed || a["what"] == "read /data/.ssh/id",
            "only the read through the symlink is denied after the call: {a}"
        );
        ensure!(
            !a["what"].as_str().unwrap_or("").contains("/work/ws"),
            "a benign step was flagged: {a}"
        );
    }
    let mut whats: Vec<(&str, &str)> = deny
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or(""),
                a["what"].as_str().unwrap_or(""),
            )
        })
        .collect();
    whats.sort();
    // One alert per violating step, each naming its rule and path.
    let expected = [
        ("exec/unknown", "exec /data/tool"),
        ("file/unknown", "chmod /data/keep.txt"),
        ("file/unknown", "delete /data/keep.txt"),
        ("file/unknown", "read /data/other.txt"),
        ("file/unknown", "read /data/other.txt"),
        ("file/unknown", "rename /data/c.txt"),
        ("file/unknown", "write,create /data/new.txt"),
        ("guardrail/escape", "unshare"),
        (
            "guardrail/persistence",
            "create /data/repo/.git/hooks/pre-commit",
        ),
        ("guardrail/persistence", "create /data/repo/.git/hooks/sub"),
        ("guardrail/secrets", "read /data/.ssh/id"),
        ("guardrail/secrets", "read,write /data/.ssh/id"),
    ];
    ensure!(whats == expected, "deny alerts: {whats:?}");
    let summary = alerts
        .iter()
        .find(|a| a["type"] == "summary")
        .context("no summary in the alerts")?;
    ensure!(
        summary["file_deny"] == "bpf_lsm",
        "the run must use the LSM tier: {summary}"
    );
    // Debian 12's 6.1 has Landlock without scoping (ABI 6): the sandbox
    // is the seccomp filter alone, and says so.
    let sandbox = &summary["sandbox"];
    ensure!(
        sandbox["seccomp"] == true && sandbox["scoped"] == false,
        "the 6.1 guest's sandbox: seccomp, no Landlock scoping: {sandbox}"
    );
    println!("vm-test: lsm: sandbox {sandbox}");
    // The intent capture's uprobe programs load on 6.1 (the guest has no
    // libssl to attach them to).
    let intent = &summary["intent"];
    ensure!(
        intent["error"].is_null(),
        "the TLS uprobe programs must load on 6.1: {intent}"
    );
    println!("vm-test: lsm: intent {intent}");
    println!(
        "vm-test: lsm: {} kernel denies, {} events decided in the kernel",
        deny.len(),
        summary["decided_in_kernel"]
    );
    Ok(())
}

//! The guest half of `cargo xtask vm-test` for names the entry judged
//! that do not lead where the kernel goes, under `agentwatch run --mode
//! enforce` with guardrails denied, on a kernel booted with BPF LSM:
//! - a rename and an O_CREAT open through a symlinked directory (`sd` ->
//!   `.git/hooks`), which the entry judges by the names given: the LSM
//!   hooks judge the dentries the kernel reached and refuse them
//!   (`kernel.real_paths`; the open's alert keeps its flags);
//! - an O_TRUNC open of `.git/config` through a symlinked `.git` (`gd`):
//!   `file_open` judges the file reached and refuses it before the
//!   truncation (the open's exit alone would find it already emptied);
//! - a rename through a symlink (`dd`) into the hooks of a repository
//!   nested deeper than the kernel's walk goes: the real path cannot be
//!   judged, so enforce mode refuses it (`rule::UNJUDGED`) rather than
//!   let it through;
//! - `tests/tools/race.c`: a rename whose destination a second thread keeps
//!   rewriting (mostly benign, briefly `.git/hooks/pre-commit`), so the
//!   entry may copy one name and the kernel the other. Without the LSM
//!   hooks' second look it planted the hook at try 116 in one run here;
//!   nothing may be planted.
use std::{fs, path::Path, process::Command};

use anyhow::{ensure, Context as _};

/// The profile the race runs under (written to /race-profile.yaml): the
/// enforcement test's, every class denied, with the helper listed.
fn profile() -> String {
    crate::vm_enforce::PROFILE
        .replace("agent: vm-lsm", "agent: vm-race")
        .replace("executables:\n", "executables:\n  - path: \"/race\"\n")
}

/// Tries the helper makes.
const TRIES: u32 = 4000;

/// Shell lines for the guest's /init.
pub fn init_part() -> String {
    format!(
        r#"mkdir -p /work/race/.git/hooks
echo "[core]" > /work/race/.git/config
deep=/work/race/deep; i=0; while [ $i -lt 50 ]; do deep=$deep/d; i=$((i+1)); done
mkdir -p $deep/.git/hooks && ln -s $deep/.git/hooks /work/race/dd
echo "=== AW-RACE-BEGIN"
cd /work/race && /agentwatch run --json --mode enforce --profile /race-profile.yaml --workspace /work/race -o /work/race.jsonl -- /bin/sh -c 'ln -s .git/hooks sd; ln -s .git gd; echo x > p2; out=$(mv p2 sd/pre-commit 2>&1); echo "SYMLINKED rc=$? $out"; out=$( (echo x > sd/post-commit) 2>&1); echo "SYMLINKED-CREATE rc=$? $out"; out=$( (: > gd/config) 2>&1); echo "SYMLINKED-TRUNC rc=$? $out"; echo x > p3; out=$(mv p3 dd/pre-commit 2>&1); echo "DEEP rc=$? $out"; /race .git/hooks/pre-commit {TRIES}' 2>&1
echo "=== AW-RACE-END status=$?"
cd /
[ -e /work/race/.git/hooks/pre-commit ] && echo "=== AW-RACE-PLANTED"
grep -q core /work/race/.git/config && echo "=== AW-RACE-CONFIG-KEPT"
[ -e $deep/.git/hooks/pre-commit ] && echo "=== AW-RACE-DEEP-PLANTED"
echo "=== AW-RACE-CHANGED $(grep -c '"real_paths":true' /work/race.jsonl)"
grep '"real_paths":true' /work/race.jsonl | head -n 2
grep '"real_paths":true' /work/race.jsonl | grep '/.git/config"' | head -n 1
grep '"type":"alert"' /work/race.jsonl | head -n 1
grep '"type":"summary"' /work/race.jsonl
echo "=== AW-RACE-ALERTS-END"
"#
    )
}

/// Builds the helper, static (the guest has no C library), into `root`.
pub fn build_helper(root: &Path) -> anyhow::Result<()> {
    let src = crate::workspace().join("tests/tools/race.c");
    let out = Command::new("cc")
        .args(["-static", "-O2", "-pthread", "-o"])
        .arg(root.join("race"))
        .arg(&src)
        .output()
        .context("running cc (build-essential; scripts/setup.sh installs it)")?;
    ensure!(
        out.status.success(),
        "building {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(root.join("race-profile.yaml"), profile())?;
    Ok(())
}

/// What must hold in the guest's output: `run` the workload's output and
/// agentwatch's, `alerts` the first alert judged by real paths, the first
/// alert and the summary, `changed` the count of alerts judged by real
/// paths.
pub fn check(
    run: &str,
    status: &str,
    planted_marker: bool,
    config_kept: bool,
    deep_planted: bool,
    changed: &str,
    alerts: &[serde_json::Value],
) -> anyhow::Result<()> {
    let line = run
        .lines()
        .find_map(|l| l.split("RACE ").nth(1))
        .context("the race helper printed no result")?;
    let field = |name: &str| -> anyhow::Result<u32> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("no {name} in {line:?}"))?
            .trim()
            .parse()
            .with_context(|| format!("{name} in {line:?}"))
    };
    println!("vm-test: race: {line}");
    ensure!(status.contains("status=0"), "the race run: {status}");
    ensure!(
        field("tries")? == TRIES && field("planted")? == 0 && !planted_marker,
        "a rename planted .git/hooks/pre-commit: {line}"
    );
    ensure!(field("refused")? > 0, "no rename was refused: {line}");
    refused_step(run, "SYMLINKED", "rename")?;
    // Judged by what the kernel reached: the real paths, flagged so.
    let a = alerts
        .iter()
        .find(|a| a["type"] == "alert" && a["event"]["kernel"]["real_paths"] == true)
        .with_context(|| format!("no alert judged by real paths among {alerts:?}"))?;
    ensure!(
        a["rule"] == "guardrail/persistence"
            && a["action"] == "deny"
            && a["event"]["to"] == "/work/race/.git/hooks/pre-commit",
        "the alert names the guardrail the kernel reached: {a}"
    );
    // An O_CREAT open through sd/: refused at path_mknod, reported with
    // the open's own flags (the record carries the call's arguments).
    refused_step(run, "SYMLINKED-CREATE", "create")?;
    let c = alerts
        .iter()
        .find(|a| {
            a["event"]["kernel"]["real_paths"] == true
                && a["event"]["path"] == "/work/race/.git/hooks/post-commit"
        })
        .with_context(|| format!("no real-paths alert for the create among {alerts:?}"))?;
    ensure!(
        c["event"]["access"]
            .as_array()
            .is_some_and(|a| a.contains(&serde_json::json!("create"))),
        "the create's alert carries the open's flags: {c}"
    );
    // An O_TRUNC open of .git/config through gd/: refused at file_open,
    // before the truncation.
    refused_step(run, "SYMLINKED-TRUNC", "truncate")?;
    ensure!(config_kept, ".git/config was emptied through gd/");
    // A rename into hooks deeper than the walk goes: refused unjudged.
    refused_step(run, "DEEP", "rename deeper than the walk")?;
    ensure!(
        !deep_planted,
        "a hook was planted deeper than the walk goes"
    );
    ensure!(
        alerts
            .iter()
            .any(|a| a["event"]["kernel"]["real_paths"] == true
                && a["event"]["path"] == "/work/race/.git/config"),
        "no real-paths alert for the truncation among {alerts:?}"
    );
    // How many of the race's renames met a rewritten name is up to the
    // scheduler (none, in some emulated runs); planted must stay 0.
    let real: u32 = changed.trim().parse().context("real-paths count")?;
    println!(
        "vm-test: race: {} calls refused at the LSM hook by the real path (the three through sd/ and gd/ included)",
        real
    );
    let summary = alerts
        .iter()
        .find(|a| a["type"] == "summary")
        .context("no summary of the race run")?;
    ensure!(
        summary["file_deny"] == "bpf_lsm",
        "the race run must use the LSM tier: {summary}"
    );
    Ok(())
}

/// The workload's `MARKER rc=N output` line for a `what` through `sd/`
/// into `.git/hooks`, which must have failed with EPERM.
fn refused_step(run: &str, marker: &str, what: &str) -> anyhow::Result<()> {
    let line = run
        .lines()
        .find_map(|l| l.split(&format!("{marker} ")).nth(1))
        .with_context(|| format!("the {what} through a symlinked directory printed nothing"))?;
    println!("vm-test: race: {what} through a symlinked directory: {line}");
    ensure!(
        !line.starts_with("rc=0") && line.contains("not permitted"),
        "the {what} through sd/ into .git/hooks must fail with EPERM: {line}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_race_profile_is_the_enforcement_one_with_the_helper_listed() {
        let p = super::profile();
        assert!(p.contains("agent: vm-race\n"), "{p}");
        assert!(p.contains("executables:\n  - path: \"/race\"\n"), "{p}");
        assert!(p.contains("guardrails: deny"), "{p}");
    }
}

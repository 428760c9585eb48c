//! Privileged tests of the guardrail shield (issue 15): for an agent
//! `agentwatch run` starts on a kernel without the BPF LSM tier, the
//! guardrails inside its workspace (`.git/hooks`, `.git/config`, `.env`)
//! are read-only mounts in its own mount namespace. A rename, create,
//! symlink or mkdir that reaches one through a symlinked directory, or
//! with a name another thread rewrites under the call, is refused by the
//! kernel before the effect and alerted under the guardrail; the agent's
//! own work and the host's view of the files are untouched.
mod support;

use support::{privileged, run::*};

const DENY: &str = "actions:\n  guardrails: deny\n";

/// Whether the shield is the tier that holds here (no BPF LSM: with it,
/// the LSM path hooks judge real paths instead; tests/evasion.rs).
fn shield_tier() -> bool {
    let out = support::agentwatch()
        .args(["doctor", "--json"])
        .output()
        .expect("run agentwatch doctor");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if r["enforcement"][0]["available"] == true {
        eprintln!("skipped: this kernel has the BPF LSM tier, which judges real paths itself (the shield is not used); tests/evasion.rs covers it there");
        return false;
    }
    true
}

/// The open request `id`, as `pending --json` lists it.
fn listed(id: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&control(&["pending", "--json"])).expect("pending json");
    all.as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {all}"))
        .clone()
}

fn with_hooks(ws: &std::path::Path) {
    std::fs::create_dir_all(ws.join(".git/hooks")).expect("hooks");
    std::fs::write(ws.join(".git/config"), "[core]\n").expect("config");
    std::fs::write(ws.join(".env"), "TOKEN=1\n").expect(".env");
}

#[test]
fn guardrails_inside_the_tree_are_read_only_whatever_name_reaches_them() {
    let Some(_g) = privileged() else { return };
    if !shield_tier() {
        return;
    }
    // Every route a name-based judge misses: a symlinked directory for a
    // rename, a create, a symlink, a mkdir and a hard link; the bound
    // files replaced through one; `.git` moved aside. Then the agent's
    // own work goes on.
    let script = "ln -s .git/hooks sd && ln -s .git gd && ln -s . top\n\
                  echo payload > p\n\
                  (mv p sd/pre-commit) || echo rename-refused\n\
                  (echo x > sd/post-commit) || echo create-refused\n\
                  (ln -s /x sd/pre-push) || echo symlink-refused\n\
                  (mkdir sd/sub) || echo mkdir-refused\n\
                  (ln p sd/post-merge) || echo link-refused\n\
                  echo y > c; (mv c gd/config) || echo config-refused\n\
                  (rm top/.env) || echo env-refused\n\
                  (mv top/.git moved) || echo move-refused\n\
                  cat top/.env\n\
                  echo hi > a && mv a b && mkdir d && cat b";
    let run = Run::start_prepared(
        "sh-routes",
        &profile("sh-routes", 1, DENY),
        "enforce",
        &[],
        script,
        with_hooks,
    );
    let (d, dir) = run.finish_keeping_dir();
    let ws = dir.0.join("ws");
    for what in [
        "rename", "create", "symlink", "mkdir", "link", "config", "env", "move",
    ] {
        assert!(
            d.stdout.contains(&format!("{what}-refused")),
            "{what}: {}",
            d.brief()
        );
    }
    // Nothing landed; the payload stayed; the bound files are as they
    // were; the agent could still read its .env and do its work.
    for name in ["pre-commit", "post-commit", "pre-push", "sub", "post-merge"] {
        assert!(
            std::fs::symlink_metadata(ws.join(".git/hooks").join(name)).is_err(),
            "{name} landed: {}",
            d.brief()
        );
    }
    let read = |p: &str| std::fs::read_to_string(ws.join(p)).unwrap_or_default();
    assert_eq!(read("p"), "payload\n", "{}", d.brief());
    assert_eq!(read(".git/config"), "[core]\n", "{}", d.brief());
    assert_eq!(read(".env"), "TOKEN=1\n", "{}", d.brief());
    assert!(d.stdout.contains("TOKEN=1"), "{}", d.brief());
    assert!(d.stdout.lines().any(|l| l == "hi"), "{}", d.brief());
    assert!(ws.join("d").is_dir(), "{}", d.brief());
    // Each refusal is alerted under its guardrail, by the real path.
    let persistence = d.alerts_by("guardrail/persistence");
    for name in ["pre-commit", "post-commit", "pre-push", "sub", "post-merge"] {
        let real = format!("$WORKSPACE/.git/hooks/{name}");
        assert!(
            persistence
                .iter()
                .any(|a| a["what"].as_str().unwrap_or("").contains(&real)
                    && a["action"]
                        .as_str()
                        .unwrap_or("")
                        .contains("before the effect")),
            "{name}: {}",
            d.brief()
        );
    }
    // Moving .git aside (to make it again around an unbound hooks) is
    // refused: the directories on the way are mount points.
    assert!(ws.join(".git/hooks").is_dir() && !ws.join("moved").exists());
    assert!(
        d.alerts_by("guardrail/tamper").iter().any(|a| a["reason"]
            .as_str()
            .unwrap_or("")
            .contains("move or remove")),
        "{}",
        d.brief()
    );
    let secrets = d.alerts_by("guardrail/secrets");
    assert!(
        secrets
            .iter()
            .any(|a| a["what"].as_str().unwrap_or("").contains("/.env")),
        "{}",
        d.brief()
    );
    // The summary names what was bound.
    let bound: Vec<String> = d.summary()["sandbox"]["shield"]["paths"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for p in [".git/hooks", ".git/config", ".env"] {
        assert!(
            bound.contains(&ws.join(p).display().to_string()),
            "{p}: {bound:?}"
        );
    }
}

#[test]
fn a_rename_whose_name_is_rewritten_under_the_call_cannot_plant_a_hook() {
    let Some(_g) = privileged() else { return };
    if !shield_tier() {
        return;
    }
    race_plants_nothing("sh-race", DENY);
}

#[test]
fn with_landlock_holding_files_a_raced_rename_is_still_refused() {
    let Some(_g) = privileged() else { return };
    if !shield_tier() {
        return;
    }
    // Landlock's own EXDEV (a rename between directories whose rules
    // differ) looks like the mount's; the race renames within one
    // directory, where Landlock never gives it, so a raced try the mount
    // refused is still told apart (`explain::rewritten`).
    race_plants_nothing("sh-race-ll", "actions:\n  guardrails: deny\n  file: deny\n");
}

/// tests/tools/race.c flips a rename's destination to
/// .git/hooks/pre-commit between the entry's copy and the kernel's. A
/// try the entry catches by name kills the racer (deny here is SIGKILL at
/// the call), so it is started again, as an attacker would: before the
/// shield, it planted the hook here within three runs.
fn race_plants_nothing(agent: &str, actions: &str) {
    let bin = support::race_tool();
    let yaml = profile(agent, 1, actions).replace(
        "executables:\n",
        &format!("executables:\n  - path: \"{bin}\"\n"),
    );
    let script = format!(
        "for i in $(seq 10); do ({bin} .git/hooks/pre-commit 4000); done\n\
         test -e .git/hooks/pre-commit && echo hook-planted || echo hook-absent"
    );
    let run = Run::start_prepared(agent, &yaml, "enforce", &[], &script, with_hooks);
    let (d, dir) = run.finish_keeping_dir();
    let hook = dir.0.join("ws/.git/hooks/pre-commit");
    assert!(
        d.stdout.contains("hook-absent"),
        "{}\n{}",
        d.stdout,
        d.brief()
    );
    assert!(
        !d.stdout.contains("planted=1"),
        "{}\n{}",
        d.stdout,
        d.brief()
    );
    assert!(std::fs::symlink_metadata(&hook).is_err(), "{}", d.brief());
    // Which tries the kernel refused, and which the entry caught by name,
    // is the scheduler's; say it. A refused raced try is a tamper alert:
    // its names, read again at the exit, lead to no read-only mount.
    let by_name = d.alerts_by("guardrail/persistence").len();
    let raced = d.alerts_by("guardrail/tamper");
    eprintln!(
        "race ({agent}): {by_name} alerts by name at the entry, {} raced tries refused by the read-only mount\n{}",
        raced.len(),
        d.stdout.trim()
    );
    for a in &raced {
        assert!(
            a["action"]
                .as_str()
                .unwrap_or("")
                .contains("before the effect"),
            "{a}"
        );
    }
}

#[test]
fn a_refused_guardrail_call_pauses_the_agent_and_an_approval_lifts_that_mount() {
    let Some(_g) = privileged() else { return };
    if !shield_tier() {
        return;
    }
    // Guardrails that pause (the default) get the shield too. A directory
    // made in `.git/hooks` through a symlinked one (mkdir: one call, where
    // mv falls back to a copy and an unlink) is refused before the effect
    // and the agent stopped (the sweep comes a moment after the refusal:
    // the script sleeps meanwhile); approving lifts `.git/hooks`' mount in the
    // agent's namespace, so the retry lands. `.git/config` stays bound:
    // replacing it is refused and paused again, and denying that ends
    // the agent.
    let script = "ln -s .git/hooks sd && ln -s .git gd\n\
                  (mkdir sd/sub) || echo first-refused\n\
                  sleep 2; (mkdir sd/sub) && echo retry-landed\n\
                  echo y > c; (mv c gd/config) || echo config-refused\n\
                  sleep 2; echo after-deny";
    let run = Run::start_prepared(
        "sh-pause",
        &profile("sh-pause", 1, "actions:\n  guardrails: pause\n"),
        "enforce",
        &[],
        script,
        with_hooks,
    );
    let hooks = run.ws().join(".git/hooks");
    run.wait_stopped("sh");
    let id = request_for("sh-pause", "guardrail/persistence");
    let req = listed(&id);
    assert_eq!(req["lifts"], hooks.display().to_string(), "{req}");
    assert!(std::fs::symlink_metadata(hooks.join("sub")).is_err());
    let answer = control(&["approve", &id]);
    assert!(answer.contains("is lifted for the agent"), "{answer}");
    run.wait_stopped("sh");
    let config = request_for("sh-pause", "guardrail/persistence");
    control(&["deny", &config]);
    let (d, dir) = run.finish_keeping_dir();
    let ws = dir.0.join("ws");
    assert!(d.stdout.contains("first-refused"), "{}", d.brief());
    assert!(d.stdout.contains("retry-landed"), "{}", d.brief());
    assert!(!d.stdout.contains("after-deny"), "{}", d.brief());
    let read = |p: &str| std::fs::read_to_string(ws.join(p)).unwrap_or_default();
    assert!(ws.join(".git/hooks/sub").is_dir(), "{}", d.brief());
    assert_eq!(read(".git/config"), "[core]\n", "{}", d.brief());
    // Each refused call is alerted as paused; mv tries `.git/config`
    // more than one way before the sweep stops it.
    let paused = d.alerts_by("guardrail/persistence");
    let what = |a: &&serde_json::Value| a["what"].as_str().unwrap_or("").to_string();
    assert_eq!(
        paused.first().map(what).as_deref(),
        Some("create $WORKSPACE/.git/hooks/sub"),
        "{}",
        d.brief()
    );
    assert!(
        paused
            .iter()
            .any(|a| what(a) == "rename $WORKSPACE/.git/config"),
        "{}",
        d.brief()
    );
    for a in paused {
        assert!(
            a["action"].as_str().unwrap_or("").starts_with("pause")
                && a["action"]
                    .as_str()
                    .unwrap_or("")
                    .contains("before the effect"),
            "{a}"
        );
    }
}

#[test]
fn an_approval_lifts_a_pinned_directory_with_the_guardrails_beneath_it() {
    let Some(_g) = privileged() else { return };
    if !shield_tier() {
        return;
    }
    // Moving `sub` (a directory on the way to the guardrail `sub/.env`,
    // pinned as a mount point) is refused and, guardrails pausing, the
    // agent stopped; approving lifts the pin and the guardrail bound
    // beneath it, so the retry moves it. (Not `.git`: a wildcard of the
    // profile does not match a leading dot, so moving it is outside the
    // profile as well.)
    let script = "(mv sub moved) || echo move-refused\n\
                  sleep 2; (mv sub moved) && echo move-landed";
    let run = Run::start_prepared(
        "sh-pin",
        &profile("sh-pin", 1, "actions:\n  guardrails: pause\n"),
        "enforce",
        &[],
        script,
        |ws| {
            std::fs::create_dir_all(ws.join("sub")).expect("sub");
            std::fs::write(ws.join("sub/.env"), "TOKEN=1\n").expect(".env");
        },
    );
    let sub = run.ws().join("sub");
    run.wait_stopped("sh");
    let id = request_for("sh-pin", "guardrail/tamper");
    let req = listed(&id);
    assert_eq!(req["lifts"], sub.display().to_string(), "{req}");
    let answer = control(&["approve", &id]);
    assert!(answer.contains("is lifted for the agent"), "{answer}");
    let (d, dir) = run.finish_keeping_dir();
    let ws = dir.0.join("ws");
    assert!(d.stdout.contains("move-refused"), "{}", d.brief());
    assert!(d.stdout.contains("move-landed"), "{}", d.brief());
    assert!(ws.join("moved/.env").is_file(), "{}", d.brief());
    assert_eq!(d.only_alert_rules(), ["guardrail/tamper"], "{}", d.brief());
    let tamper = d.alerts_by("guardrail/tamper");
    assert!(
        tamper[0]["action"]
            .as_str()
            .unwrap_or("")
            .starts_with("pause"),
        "{}",
        tamper[0]
    );
}

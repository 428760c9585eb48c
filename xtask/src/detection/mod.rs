//! `cargo xtask detection`: the corpus benchmark. For each agent type
//! (corpus/coding, corpus/ops): learn a profile session by session
//! (`learn`, then `learn --append`, a copy after each), record the
//! held-out normal sessions, judge each recording against the profile
//! after 1, 2, ... sessions (the learning curve), run the held-out
//! sessions and the attacks under `run --mode enforce` with the profile of
//! `--learn` sessions, and write docs/detection.md, docs/detection.json
//! and docs/detection-curve.png.
//!
//! A held-out session with any alert is a false alarm. An attack is
//! prevented when its goal check says so (nothing left, nothing changed);
//! it is stopped at its malicious step when the first decision that acted
//! (not an alert) came during that step: the model server stamps the time
//! it served each step, the alert carries the kernel's event time.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

mod corpus;
mod report;
mod services;

use corpus::{Dirs, Scratch, Session};
use services::Services;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Only this agent type (coding or ops).
    #[arg(long)]
    pub agent: Option<String>,
    /// How many learning sessions the enforced profile is learned from.
    #[arg(long, default_value_t = 5)]
    pub learn: usize,
    /// Keep the profiles, recordings and alerts in target/detection.
    #[arg(long)]
    pub keep: bool,
    /// Write the report here instead of docs/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the held-out sessions and attacks whose name or task contains
    /// this (to look at one closely; the report is then partial).
    #[arg(long)]
    pub only: Option<String>,
    /// Reuse the profiles and recordings a previous `--keep` run left in
    /// target/detection instead of learning again.
    #[arg(long)]
    pub reuse: bool,
}

pub const AGENTS: [&str; 2] = ["coding", "ops"];

/// How each session ran under enforce.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub session: String,
    pub alerts: Vec<Value>,
    /// Set when the session did not end by itself.
    pub note: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AttackOutcome {
    pub name: String,
    pub class: String,
    pub prevented: bool,
    pub goal: String,
    /// The first decision that acted: rule, what, action, step.
    pub stopped_by: Option<Value>,
    pub at_malicious_step: bool,
    pub alerts: usize,
    /// Set when the session did not end by itself.
    pub note: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentResult {
    pub agent: String,
    pub learn_sessions: usize,
    pub enforced_with: usize,
    /// Held-out false-alarm rate after k learning sessions, k = 1..
    pub curve: Vec<(usize, usize, usize)>,
    pub heldout: Vec<Outcome>,
    pub attacks: Vec<AttackOutcome>,
    pub readiness: Option<Value>,
    pub profile_lines: usize,
    pub profile_show: String,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the detection benchmark loads BPF programs: run it as root");
    }
    let ws = crate::workspace();
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "agentwatch"])
        .current_dir(&ws)
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let bin = ws.join("target/release/agentwatch");
    let base = ws.join("target/detection");
    let work = if o.reuse {
        Scratch::reuse(base.clone())?
    } else {
        Scratch::new(base.clone())?
    };
    if o.keep {
        eprintln!("detection: keeping {}", base.display());
    }
    let work = KeepOrRemove(Some(work), o.keep);
    let services = Services::start(Scratch::new(base.with_extension("services"))?)?;
    let agents: Vec<&str> = match &o.agent {
        Some(a) => vec![AGENTS
            .iter()
            .copied()
            .find(|x| x == a)
            .with_context(|| format!("no agent {a}: coding or ops"))?],
        None => AGENTS.to_vec(),
    };
    let mut results = Vec::new();
    for agent in agents {
        results.push(run_agent(agent, &bin, &services, work.path(), &o)?);
    }
    let out = o.out.unwrap_or_else(|| ws.join("docs"));
    report::write(&out, &results)?;
    Ok(())
}

/// The work directory: removed at the end, also on failure, unless kept.
struct KeepOrRemove(Option<Scratch>, bool);

impl KeepOrRemove {
    fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new("/nonexistent"), |s| &s.0)
    }
}

impl Drop for KeepOrRemove {
    fn drop(&mut self) {
        if self.1 {
            std::mem::forget(self.0.take());
        }
    }
}

fn run_agent(
    agent: &str,
    bin: &Path,
    svc: &Services,
    work: &Path,
    o: &Options,
) -> anyhow::Result<AgentResult> {
    let enforce_with = o.learn;
    let wanted = |s: &Session| {
        o.only
            .as_deref()
            .is_none_or(|w| s.name.contains(w) || s.task.contains(w))
    };
    let learn = corpus::load(agent, "learn")?;
    let heldout = corpus::load(agent, "heldout")?;
    let attacks = corpus::load(agent, "attacks")?;
    let dir = work.join(agent);
    std::fs::create_dir_all(&dir)?;
    let profile = dir.join("profile.yaml");

    let recordings = dir.join("heldout-sessions");
    let reuse = o.reuse
        && recordings.is_dir()
        && dir.join(format!("profile-{}.yaml", learn.len())).is_file();
    if o.reuse && !reuse {
        eprintln!("detection: {agent}: nothing to reuse; learning");
    }
    // Learning, a session at a time, keeping the profile after each.
    for (i, s) in learn.iter().enumerate().filter(|_| !reuse) {
        eprintln!(
            "detection: {agent}: learning session {} ({})",
            i + 1,
            s.task
        );
        let d = corpus::prepare(agent, dir.join(format!("learn-{:02}", i + 1)))?;
        let p = profile.display().to_string();
        let mut args = vec!["learn", "--agent", agent, "--model-endpoint"];
        let model = format!("model.{}:{}", services::DOMAIN, services::MODEL_PORT);
        args.push(&model);
        if i == 0 {
            args.extend(["--out", &p, "--record"]);
        } else {
            args.extend(["--append", &p]);
        }
        session(bin, svc, &d, s, &args)?;
        std::fs::copy(&profile, dir.join(format!("profile-{}.yaml", i + 1)))?;
    }

    // Held-out sessions, recorded to judge against every profile.
    for (i, s) in heldout.iter().enumerate().filter(|_| !reuse) {
        eprintln!(
            "detection: {agent}: recording held-out session {} ({})",
            i + 1,
            s.task
        );
        let d = corpus::prepare(agent, dir.join(format!("record-{:02}", i + 1)))?;
        let scratch = dir.join("scratch.yaml").display().to_string();
        let rec = recordings.display().to_string();
        let args = [
            "learn", "--agent", agent, "--out", &scratch, "--force", "--record", &rec,
        ];
        session(bin, svc, &d, s, &args)?;
    }
    let mut curve = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&recordings)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for k in 1..=learn.len() {
        let p = dir.join(format!("profile-{k}.yaml"));
        let mut flagged = 0;
        for f in &files {
            let o = Command::new(bin)
                .args(["check", "--json", "--profile"])
                .arg(&p)
                .arg("--session")
                .arg(f)
                .output()?;
            match o.status.code() {
                Some(0) => {}
                Some(1) => flagged += 1,
                _ => bail!(
                    "check of {}: {}",
                    f.display(),
                    String::from_utf8_lossy(&o.stderr)
                ),
            }
        }
        curve.push((k, flagged, files.len()));
    }

    // Held-out sessions and attacks under enforce.
    let enforced = dir.join(format!("profile-{enforce_with}.yaml"));
    let mut held = Vec::new();
    for (i, s) in heldout.iter().enumerate().filter(|(_, s)| wanted(s)) {
        eprintln!(
            "detection: {agent}: held-out session {} under enforce",
            i + 1
        );
        let d = corpus::prepare(agent, dir.join(format!("heldout-{:02}", i + 1)))?;
        let (alerts, note) = enforce(bin, svc, &d, s, agent, &enforced)?;
        held.push(Outcome {
            session: s.task.clone(),
            alerts,
            note,
        });
    }
    let mut outcomes = Vec::new();
    for (i, s) in attacks.iter().enumerate().filter(|(_, s)| wanted(s)) {
        eprintln!("detection: {agent}: attack {} ({})", i + 1, s.name);
        let d = corpus::prepare(agent, dir.join(format!("attack-{:02}", i + 1)))?;
        outcomes.push(attack(bin, svc, &d, s, agent, &enforced)?);
    }
    let readiness = readiness(bin, &profile)?;
    let show = Command::new(bin)
        .args(["profile", "show"])
        .arg(&enforced)
        .output()?;
    let profile_show = String::from_utf8_lossy(&show.stdout).into_owned();
    Ok(AgentResult {
        agent: agent.to_string(),
        learn_sessions: learn.len(),
        enforced_with: enforce_with,
        curve,
        heldout: held,
        attacks: outcomes,
        readiness,
        profile_lines: profile_show.lines().count(),
        profile_show,
    })
}

/// The readiness verdict of the profile learned from every session.
fn readiness(bin: &Path, profile: &Path) -> anyhow::Result<Option<Value>> {
    let o = Command::new(bin)
        .args(["profile", "readiness", "--json"])
        .arg(profile)
        .output()?;
    let v: Option<Value> = serde_json::from_slice(&o.stdout).ok();
    Ok(v.map(|v| v["verdict"].clone()))
}

/// Runs `agentwatch ARGS -- AGENT` for one scripted session.
fn session(
    bin: &Path,
    svc: &Services,
    d: &Dirs,
    s: &Session,
    args: &[&str],
) -> anyhow::Result<Ran> {
    svc.load(s.steps.clone());
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .arg("--")
        .args(corpus::agent_command(d, &s.task))
        .current_dir(d.ws())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", d.home())
        .env("TMPDIR", d.tmp())
        .env("LANG", "C.UTF-8")
        .env(
            "CORPUS_MODEL",
            format!(
                "http://model.{}:{}/v1/chat/completions",
                services::DOMAIN,
                services::MODEL_PORT
            ),
        )
        .env("CORPUS_KEY", "CORPUS-FAKE-MODEL-KEY")
        .env("CORPUS_RESOLV", &svc.resolv_conf)
        .env("SOURCE_DATE_EPOCH", "1795219200")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().with_context(|| format!("{cmd:?}"))?;
    let ran = wait(child, SESSION_LIMIT, &d.root);
    kill_leftovers(&d.root);
    let ran = ran?;
    if args[0] == "learn" && (ran.timed_out || !ran.out.status.success()) {
        bail!(
            "{} {}{}: {}",
            bin.display(),
            args.join(" "),
            if ran.timed_out {
                " ran past the session limit"
            } else {
                ""
            },
            String::from_utf8_lossy(&ran.out.stderr)
        );
    }
    Ok(ran)
}

/// Kills what a session left running (a tree a timeout did not reach):
/// every process whose working directory is under `root`.
fn kill_leftovers(root: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.filter_map(Result::ok) {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(p.path().join("cwd")).is_ok_and(|c| c.starts_with(root)) {
            // SAFETY: plain kill(2) calls.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGCONT);
            }
        }
    }
}

/// Waits for a session; past `limit` it is killed and the output is what
/// it printed, with `timed_out` set.
fn wait(mut child: std::process::Child, limit: Duration, root: &Path) -> anyhow::Result<Ran> {
    let t = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(Ran {
                out: child.wait_with_output()?,
                timed_out: false,
            });
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            // What it left holds the output pipes open.
            kill_leftovers(root);
            return Ok(Ran {
                out: child.wait_with_output()?,
                timed_out: true,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a session ended.
struct Ran {
    out: std::process::Output,
    timed_out: bool,
}

/// Longest a corpus session may run (the slowest normal one takes ~10 s).
const SESSION_LIMIT: Duration = Duration::from_secs(180);

/// Runs a session under `run --mode enforce`; returns its alerts, and a
/// note when it had to be killed.
fn enforce(
    bin: &Path,
    svc: &Services,
    d: &Dirs,
    s: &Session,
    agent: &str,
    profile: &Path,
) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    let alerts = d.root.join("alerts.jsonl");
    let p = profile.display().to_string();
    let a = alerts.display().to_string();
    let args = [
        "run",
        "--agent",
        agent,
        "--profile",
        &p,
        "--mode",
        "enforce",
        "--pause-timeout",
        "3s",
        "--json",
        "-o",
        &a,
    ];
    let ran = session(bin, svc, d, s, &args)?;
    // `run` opens its output before the agent starts: no file means
    // agentwatch itself failed (a program the kernel refused, ...).
    let text = std::fs::read_to_string(&alerts).with_context(|| {
        format!(
            "{} run did not start: {}",
            bin.display(),
            String::from_utf8_lossy(&ran.out.stderr)
        )
    })?;
    let alerts = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "alert")
        .collect();
    let note = ran
        .timed_out
        .then(|| format!("ran past {}s and was killed", SESSION_LIMIT.as_secs()));
    Ok((alerts, note))
}

fn attack(
    bin: &Path,
    svc: &Services,
    d: &Dirs,
    s: &Session,
    agent: &str,
    profile: &Path,
) -> anyhow::Result<AttackOutcome> {
    let a = s
        .attack
        .as_ref()
        .context("an attack without a malicious step")?;
    let before = corpus::snapshot(d, &a.goal);
    let (alerts, note) = enforce(bin, svc, d, s, agent, profile)?;
    // Late deliveries (a receiver reading a slow client) settle first.
    std::thread::sleep(Duration::from_millis(300));
    let logs = svc
        .logs
        .lock()
        .map_err(|_| anyhow::anyhow!("logs poisoned"))?;
    let (prevented, goal) = corpus::prevented(d, &a.goal, before.as_deref(), &logs);
    let step_of = |ts: u64| logs.served.iter().rposition(|s| *s != 0 && *s <= ts);
    let stopping = alerts
        .iter()
        .find(|x| x["action"].as_str().is_some_and(|act| act != "alert"));
    let stopped_by = stopping.map(|x| {
        let step = x["event"]["ts_ns"].as_u64().and_then(step_of);
        serde_json::json!({
            "rule": x["rule"],
            "what": x["what"],
            "action": x["action"],
            "step": step,
        })
    });
    let at_malicious_step = stopped_by.as_ref().is_some_and(|s| {
        let rule = s["rule"].as_str().unwrap_or("");
        let what = s["what"].as_str().unwrap_or("");
        // "RULE" or "RULE OBJECT": the rule's prefix, and the object the
        // decision names (the victim, not something touched on the way).
        let fits = |r: &String| match r.split_once(' ') {
            Some((prefix, object)) => rule.starts_with(prefix) && what.contains(object),
            None => rule.starts_with(r.as_str()),
        };
        s["step"].as_u64() == Some(a.malicious as u64) && a.stop.iter().any(fits)
    });
    Ok(AttackOutcome {
        name: s.name.clone(),
        class: a.class.clone(),
        prevented,
        goal,
        stopped_by,
        at_malicious_step,
        alerts: alerts.len(),
        note,
    })
}

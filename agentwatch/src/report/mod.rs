//! `agentwatch report --html FILE LOG...`: an audit log as a page people
//! can read, for an incident write-up. The chain is verified first and the
//! result heads the page; then, per agent, what it tried and what happened
//! to it, in plain words (`words`), on a timeline, with each record's raw
//! JSON one click away. One self-contained file (`html`): no script, no
//! fonts or styles from elsewhere.
pub mod html;
pub mod words;

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::Value;

use crate::audit::verify_files;

/// How an entry looks: what happened to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Blocked,
    Paused,
    Reported,
    Approved,
    Info,
    /// A session: what the agent did within its profile.
    Session,
}

/// One line of a timeline.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: String,
    pub text: String,
    /// Why the agent did it, from the decision's intent context.
    pub why: Option<String>,
    pub rule: Option<String>,
    pub tone: Tone,
    pub raw: Value,
}

/// One agent's part of the log.
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    pub name: String,
    pub entries: Vec<Entry>,
    /// Sessions seen (`activity` records), each also on the timeline.
    pub sessions: u64,
    pub violations: u64,
    pub blocked: u64,
    pub paused: u64,
    pub approved: u64,
    pub learned: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: Vec<PathBuf>,
    /// The chain's verdict, as `audit verify` says it.
    pub chain: String,
    pub chain_ok: bool,
    pub checkpoints: u64,
    /// agentwatch's own life: runs and daemons started and stopped, lost
    /// events, audit gaps.
    pub log: Vec<Entry>,
    pub agents: Vec<AgentView>,
}

/// Reads and verifies the log files; an unreadable file is an error.
pub fn build(files: &[PathBuf]) -> std::io::Result<Report> {
    let verified = verify_files(files, None)?;
    let mut r = Report {
        files: files.to_vec(),
        chain_ok: verified.ok(),
        chain: match &verified.finding {
            None => format!("the hash chain holds: {} record(s)", verified.records),
            Some(f) => format!("BROKEN: {f}"),
        },
        checkpoints: verified.checkpoints,
        ..Report::default()
    };
    let mut records: Vec<Value> = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f)?.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                records.push(v);
            }
        }
    }
    let (log, agents) = views(records);
    r.log = log;
    r.agents = agents;
    Ok(r)
}

/// agentwatch's own entries and each agent's view, from audit records
/// (`{"seq", "record"}` lines) in any order.
pub fn views(mut records: Vec<Value>) -> (Vec<Entry>, Vec<AgentView>) {
    records.sort_by_key(|v| v["seq"].as_u64().unwrap_or(u64::MAX));
    let mut own = Vec::new();
    let mut agents: BTreeMap<String, AgentView> = BTreeMap::new();
    let mut learned: BTreeMap<(String, String), (u64, String, Value)> = BTreeMap::new();
    // A session's records are cumulative: the last one stands for it.
    let mut sessions: BTreeMap<(String, String), Value> = BTreeMap::new();
    for v in records {
        let rec = &v["record"];
        let agent = rec["agent"].as_str().unwrap_or("").to_string();
        let time = time_of(rec);
        match rec["type"].as_str().unwrap_or("") {
            "decision" => decision(view(&mut agents, &agent), rec, time),
            "approval" => approval(view(&mut agents, &agent), rec, time),
            "learned" => {
                let t = rec["territory"]
                    .as_str()
                    .unwrap_or("outside any territory")
                    .to_string();
                let e = learned
                    .entry((agent, t))
                    .or_insert((0, String::new(), Value::Null));
                e.0 += 1;
                e.1 = time;
                e.2 = rec.clone();
            }
            "budget" | "identity" => {
                let (text, tone) = words::bounds(rec);
                let rule = rec["rule"].as_str().map(str::to_string);
                view(&mut agents, &agent)
                    .entries
                    .push(entry(time, text, rule, tone, rec));
            }
            "activity" => {
                let started = rec["session"].as_str().unwrap_or("").to_string();
                sessions.insert((agent, started), rec.clone());
            }
            "drift" => {
                let text = rec["what"].as_str().unwrap_or("drift").to_string();
                view(&mut agents, &agent).entries.push(entry(
                    time,
                    text,
                    None,
                    Tone::Reported,
                    rec,
                ));
            }
            other => {
                if let Some(text) = log_words(other, rec) {
                    own.push(entry(time, text, None, Tone::Info, rec));
                }
            }
        }
    }
    for ((agent, territory), (n, time, raw)) in learned {
        let a = view(&mut agents, &agent);
        a.learned += n;
        let text = format!("created {n} new name(s) in {territory}, allowed and learned");
        a.entries.push(entry(time, text, None, Tone::Info, &raw));
    }
    for ((agent, started), rec) in sessions {
        let a = view(&mut agents, &agent);
        a.sessions += 1;
        let text = format!(
            "{}: {}",
            session_span(&started, &rec),
            words::activity(&rec).join("; ")
        );
        a.entries
            .push(entry(started, text, None, Tone::Session, &rec));
    }
    for a in agents.values_mut() {
        a.entries.sort_by(|x, y| x.time.cmp(&y.time));
    }
    (own, agents.into_values().collect())
}

/// A decision on the agent's timeline, counted.
fn decision(a: &mut AgentView, rec: &Value, time: String) {
    let action = rec["action"].as_str().unwrap_or("");
    let tone = tone_of(action);
    a.violations += 1;
    match tone {
        Tone::Blocked => a.blocked += 1,
        Tone::Paused => a.paused += 1,
        _ => {}
    }
    let rule = rec["rule"].as_str().unwrap_or("").to_string();
    let text = words::decision(&rule, rec["what"].as_str().unwrap_or(""), action);
    let mut e = entry(time, text, Some(rule), tone, rec);
    e.why = words::why(&rec["context"]);
    a.entries.push(e);
}

/// "session from 14:02 to 14:37" (or "until 14:37 so far" while it lasts).
fn session_span(started: &str, rec: &Value) -> String {
    let hhmm = |t: &str| t.get(11..16).unwrap_or(t).to_string();
    let until = rec["until"].as_str().unwrap_or("");
    if rec["ended"].as_bool().unwrap_or(false) {
        format!("session from {} to {}", hhmm(started), hhmm(until))
    } else {
        format!(
            "session from {}, until {} so far",
            hhmm(started),
            hhmm(until)
        )
    }
}

/// An answer to approval requests on the agent's timeline.
fn approval(a: &mut AgentView, rec: &Value, time: String) {
    let outcome = rec["outcome"].as_str().unwrap_or("");
    if outcome == "approved" {
        a.approved += 1;
    }
    let ids: Vec<&str> = rec["ids"]
        .as_array()
        .map(|x| x.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let said = words::answer(
        outcome,
        rec["by"].as_str().unwrap_or("?"),
        &time,
        rec["learned"].as_bool().unwrap_or(false),
    );
    let tone = if outcome == "approved" {
        Tone::Approved
    } else {
        Tone::Blocked
    };
    let text = format!("request {}: {said}", ids.join(", "));
    a.entries.push(entry(time, text, None, tone, rec));
}

fn view<'a>(agents: &'a mut BTreeMap<String, AgentView>, name: &str) -> &'a mut AgentView {
    agents.entry(name.to_string()).or_insert_with(|| AgentView {
        name: name.to_string(),
        ..AgentView::default()
    })
}

fn entry(time: String, text: String, rule: Option<String>, tone: Tone, raw: &Value) -> Entry {
    Entry {
        time,
        text,
        why: None,
        rule,
        tone,
        raw: raw.clone(),
    }
}

/// When a record's event happened (`time`), else when it was written.
fn time_of(rec: &Value) -> String {
    rec["time"]
        .as_str()
        .or_else(|| rec["ts"].as_str())
        .unwrap_or("")
        .to_string()
}

fn tone_of(action: &str) -> Tone {
    match action.split_whitespace().next().unwrap_or("") {
        "alert" => Tone::Reported,
        "pause" => Tone::Paused,
        _ => Tone::Blocked,
    }
}

/// agentwatch's own records in words; None for those the page leaves out
/// (checkpoints are counted in the header).
fn log_words(kind: &str, rec: &Value) -> Option<String> {
    let s = |k: &str| rec[k].as_str().unwrap_or("").to_string();
    Some(match (kind, s("event").as_str()) {
        ("run", "started") => format!("agentwatch run started (pid {}) with profile {}", rec["pid"], s("profile")),
        ("daemon", "started") => format!("the agentwatch daemon started (pid {})", rec["pid"]),
        ("daemon", "stopped") => "the agentwatch daemon stopped".to_string(),
        ("config", e) => format!("configuration {e} by {}", s("by")),
        ("loss", _) => format!(
            "{} event(s) were lost ({}, {}): what happened then is not all here",
            rec["count"], s("stage"), s("reason")
        ),
        ("audit_gap", _) => format!(
            "the audit log could not be written from {} to {}; {} record(s) were held and written late, {} dropped",
            s("since"), s("until"), rec["held"], rec["dropped"]
        ),
        _ => return None,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

//! `agentwatch pending | approve | deny | mode | pause | resume | status`:
//! clients of the control sockets of running agents (`crate::control`).
use serde_json::Value;

use crate::{
    control::{self, ControlError, Request},
    enforce::compile::Mode,
    exit,
};

fn print(v: &Value, json: bool) {
    if json {
        println!("{v}");
    } else if let Some(m) = v["message"].as_str() {
        println!("{m}");
    }
}

/// A request that did not get through (no agent: exit 3) or that the
/// agent refused (exit 4); see `crate::exit`.
fn fail(e: ControlError) -> anyhow::Result<i32> {
    Err(e.into())
}

/// Lists open approval requests of every running agent (`run`s and the
/// daemon's).
pub fn pending(json: bool) -> anyhow::Result<i32> {
    let mut all = Vec::new();
    let mut asked = 0;
    for agent in control::agents() {
        match control::request_agent(&agent, &Request::Pending) {
            Ok(v) => {
                asked += 1;
                all.extend(v["pending"].as_array().cloned().unwrap_or_default());
            }
            // A socket left by a run that was killed: nothing to ask.
            Err(ControlError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                tracing::debug!(%agent, "stale control socket skipped");
            }
            Err(e) => eprintln!("agentwatch: {agent}: {e}"),
        }
    }
    let daemon = control::daemon_socket();
    if daemon.exists() {
        match control::request(&daemon, &Request::Pending) {
            Ok(v) => {
                asked += 1;
                all.extend(v["pending"].as_array().cloned().unwrap_or_default());
            }
            Err(e) => eprintln!("agentwatch: daemon: {e}"),
        }
    }
    if asked == 0 {
        return Err(exit::environment(format!(
            "nothing to ask: no `agentwatch run` answers in {} and no daemon at {}",
            control::run_dir().display(),
            daemon.display()
        )));
    }
    if json {
        println!("{}", Value::Array(all));
        return Ok(0);
    }
    if all.is_empty() {
        println!("no pending approval requests");
        return Ok(0);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for r in &all {
        let left = r["deadline"].as_u64().unwrap_or(0).saturating_sub(now);
        println!(
            "{}  {} pid {} {}  {}  {}\n    why: {}; killed in {left}s unless approved{}",
            r["id"].as_str().unwrap_or("?"),
            r["agent"].as_str().unwrap_or("?"),
            r["pid"],
            r["comm"].as_str().unwrap_or(""),
            r["rule"].as_str().unwrap_or(""),
            r["what"].as_str().unwrap_or(""),
            r["reason"].as_str().unwrap_or(""),
            if r["learnable"] == Value::Bool(true) {
                " (--learn adds it to the profile)"
            } else {
                ""
            },
        );
    }
    Ok(0)
}

fn agent_of(id: &str) -> anyhow::Result<&str> {
    control::agent_of(id).ok_or_else(|| {
        exit::usage(format!(
            "{id:?} is not an approval id (AGENT-N); see `agentwatch pending`"
        ))
    })
}

pub fn approve(id: &str, learn: bool, json: bool) -> anyhow::Result<i32> {
    let req = Request::Approve {
        id: id.into(),
        learn,
    };
    match control::request_agent(agent_of(id)?, &req) {
        Ok(v) => {
            print(&v, json);
            Ok(0)
        }
        Err(e) => fail(e),
    }
}

pub fn deny(id: &str, json: bool) -> anyhow::Result<i32> {
    match control::request_agent(agent_of(id)?, &Request::Deny { id: id.into() }) {
        Ok(v) => {
            print(&v, json);
            Ok(0)
        }
        Err(e) => fail(e),
    }
}

/// `agentwatch reload`: the daemon re-reads its configuration.
pub fn reload(json: bool) -> anyhow::Result<i32> {
    let path = control::daemon_socket();
    if !path.exists() {
        return Err(exit::environment(format!(
            "no daemon socket at {} (is `agentwatch daemon` running?)",
            path.display()
        )));
    }
    match control::request(&path, &Request::Reload) {
        Ok(v) => {
            print(&v, json);
            Ok(0)
        }
        // The new configuration is not valid: bad input; the daemon keeps
        // the running one.
        Err(ControlError::Refused(m)) => {
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": m}));
            }
            Err(exit::usage(m))
        }
        Err(e) => fail(e),
    }
}

/// `status AGENT`, or without one, every agent of the daemon.
pub fn status(agent: Option<&str>, json: bool) -> anyhow::Result<i32> {
    if let Some(a) = agent {
        return to_agent(a, Request::Status, json);
    }
    let path = control::daemon_socket();
    let v = match control::request(&path, &Request::Status) {
        Ok(v) => v,
        Err(e) => {
            let running = control::agents();
            return Err(exit::environment(format!(
                "{e}; name an agent of `agentwatch run` (running: {})",
                if running.is_empty() {
                    "none".into()
                } else {
                    running.join(", ")
                }
            )));
        }
    };
    if json {
        println!("{v}");
        return Ok(0);
    }
    println!("daemon pid {}", v["daemon"]["pid"]);
    for a in v["agents"].as_array().into_iter().flatten() {
        print_status(a);
    }
    Ok(0)
}

fn print_status(v: &Value) {
    let mode = match v["learning"]["session_events"].as_u64() {
        Some(n) => format!("learning (shadow, {n} events this session)"),
        None => format!("{} mode", v["mode"].as_str().unwrap_or("?")),
    };
    println!(
        "{}: {mode}, {}, {} process(es), {} pending",
        v["agent"].as_str().unwrap_or("?"),
        if v["paused"] == Value::Bool(true) {
            "paused"
        } else {
            "running"
        },
        v["processes"],
        v["pending"]
    );
}

/// `mode`, `pause`, `resume`, `status` for one agent.
pub fn to_agent(agent: &str, req: Request, json: bool) -> anyhow::Result<i32> {
    match control::request_agent(agent, &req) {
        Ok(v) => {
            if matches!(req, Request::Status) && !json {
                print_status(&v);
            } else {
                print(&v, json);
            }
            Ok(0)
        }
        Err(e) => fail(e),
    }
}

pub fn mode(agent: &str, mode: Mode, json: bool) -> anyhow::Result<i32> {
    to_agent(agent, Request::Mode { mode }, json)
}

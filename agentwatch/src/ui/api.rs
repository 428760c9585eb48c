//! What the UI's page asks for: `/api/state` (the agents, the open
//! requests in plain words, each agent's recent timeline from the audit
//! log) and `/api/approve`, `/api/deny`. Every answer goes through the
//! same `control::Handler` as the CLI's control socket, so a decision in
//! the browser is the decision `agentwatch approve` makes, audited alike.
use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use serde_json::{json, Value};

use super::http::{Request as HttpRequest, Response};
use crate::{
    control::{agent_of, Envelope, Handler, Request},
    report::{self, words},
};

/// How much of the audit log's end the timeline reads: the live view is
/// recent; `agentwatch report --html` renders a whole log.
const TIMELINE_TAIL_BYTES: u64 = 1024 * 1024;
/// Entries shown per agent, the latest.
const ENTRIES_PER_AGENT: usize = 200;

/// Days of drift a trend shows.
const DRIFT_DAYS: u64 = 14;

/// The page's data, all of it in one answer (the page polls it).
pub fn state(src: &super::Source) -> Response {
    let (handler, audit) = (src.handler.as_ref(), src.audit.as_deref());
    let status = reply(handler, None, Request::Status);
    let pending = reply(handler, None, Request::Pending);
    let mut pending = pending["pending"].as_array().cloned().unwrap_or_default();
    for p in &mut pending {
        let text = words::decision(
            p["rule"].as_str().unwrap_or(""),
            p["what"].as_str().unwrap_or(""),
            "pause",
        );
        p["words"] = json!(text);
        if let Some(w) = words::why(&p["context"]) {
            p["why"] = json!(w);
        }
    }
    // One agent (`run`) answers with its status; the daemon with all.
    let agents = match status.get("agents") {
        Some(a) => a.clone(),
        None if status["ok"] == json!(true) => json!([status]),
        None => json!([]),
    };
    Response::json(
        "200 OK",
        &json!({
            "agents": agents,
            "pending": pending,
            "timeline": timeline(audit, &agents),
            "drift": drift(&src.drift),
        }),
    )
}

/// Approves or denies the request the body's `id` names.
pub fn answer(handler: &dyn Handler, req: &HttpRequest, approve: bool, by: &str) -> Response {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let Some(id) = body["id"].as_str().map(str::to_string) else {
        return Response::json(
            "400 Bad Request",
            &json!({"ok": false, "error": "send {\"id\": \"<request id>\"}"}),
        );
    };
    let agent = agent_of(&id).map(str::to_string);
    let r = if approve {
        let learn = body["learn"].as_bool().unwrap_or(false);
        Request::Approve { id, learn }
    } else {
        Request::Deny { id }
    };
    let v = reply_by(handler, agent, r, by);
    let status = if v["ok"] == json!(true) {
        "200 OK"
    } else {
        "409 Conflict"
    };
    Response::json(status, &v)
}

fn reply(handler: &dyn Handler, agent: Option<String>, req: Request) -> Value {
    reply_by(handler, agent, req, "ui")
}

fn reply_by(handler: &dyn Handler, agent: Option<String>, req: Request, by: &str) -> Value {
    let r = handler.handle(Envelope { agent, req }, by);
    serde_json::to_value(&r).unwrap_or(Value::Null)
}

/// Each agent's latest entries from the end of the audit log, in plain
/// words, with the counts the page heads them with.
fn timeline(audit: Option<&Path>, status: &Value) -> Value {
    let Some(path) = audit else {
        return json!({"source": null, "agents": []});
    };
    let mut records = match tail_records(path) {
        Ok(r) => r,
        Err(e) => {
            return json!({"source": path.display().to_string(), "error": e.to_string(), "agents": []})
        }
    };
    // Each session under way, as it stands now, after the log's records.
    for a in status.as_array().into_iter().flatten() {
        if a["session"].is_object() {
            records.push(json!({"seq": u64::MAX, "record": a["session"]}));
        }
    }
    let (_, agents) = report::views(records);
    let agents: Vec<Value> = agents
        .iter()
        .map(|a| {
            let skip = a.entries.len().saturating_sub(ENTRIES_PER_AGENT);
            let entries: Vec<Value> = a.entries[skip..]
                .iter()
                .map(|e| {
                    json!({"time": e.time, "text": e.text, "why": e.why, "rule": e.rule, "tone": report::html::tone_class(e.tone)})
                })
                .collect();
            json!({
                "agent": a.name, "sessions": a.sessions, "violations": a.violations, "blocked": a.blocked,
                "paused": a.paused, "approved": a.approved, "learned": a.learned,
                "entries": entries,
            })
        })
        .collect();
    json!({"source": path.display().to_string(), "agents": agents})
}

/// Each agent's violations and names learned a day over the last
/// `DRIFT_DAYS` days, oldest first (days with nothing recorded are 0).
fn drift(logs: &[(String, std::path::PathBuf)]) -> Value {
    let now = std::time::SystemTime::now();
    let days: Vec<String> = (0..DRIFT_DAYS)
        .rev()
        .map(|k| {
            let t = now.checked_sub(std::time::Duration::from_secs(86_400 * k));
            crate::enforce::drift::day_of(t.unwrap_or(now))
        })
        .collect();
    let mut out = serde_json::Map::new();
    for (agent, path) in logs {
        let Ok(log) = crate::enforce::drift::DriftLog::load(path) else {
            continue;
        };
        let trend: Vec<Value> = days
            .iter()
            .map(|day| {
                let d = log.days.get(day);
                json!({"day": day,
                    "violations": d.map_or(0, |d| d.novel.values().sum::<u64>()),
                    "learned": d.map_or(0, |d| d.learned.values().sum::<u64>())})
            })
            .collect();
        out.insert(agent.clone(), json!(trend));
    }
    Value::Object(out)
}

/// The audit records in the last `TIMELINE_TAIL_BYTES` of `path` (the
/// first, partial line dropped when the read starts mid-file).
fn tail_records(path: &Path) -> std::io::Result<Vec<Value>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TIMELINE_TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.lines();
    if start > 0 {
        lines.next();
    }
    Ok(lines
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Reply;

    /// A handler that answers like `agentwatch run`'s, with one request.
    struct One;
    impl Handler for One {
        fn handle(&self, env: Envelope, by: &str) -> Reply {
            match env.req {
                Request::Pending => Reply::Pending(Vec::new()),
                Request::Approve { id, .. } if id == "bot-1" => {
                    Reply::Done(format!("approved {id} by {by}"))
                }
                Request::Approve { id, .. } => Reply::Failed(format!("no request {id}")),
                _ => Reply::Failed("not here".into()),
            }
        }
    }

    #[test]
    fn drift_is_each_agents_days_in_the_window() {
        let dir = std::env::temp_dir().join(format!("aw-ui-drift-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bot.json");
        let (_, today) = crate::enforce::drift::window(1);
        std::fs::write(
            &path,
            format!(r#"{{"days":{{"2001-01-01":{{"novel":{{"file":9}}}},"{today}":{{"novel":{{"file":2,"network":1}},"learned":{{"$WORKSPACE":4}}}}}}}}"#),
        )
        .unwrap();
        let v = drift(&[("bot".into(), path)]);
        let _ = std::fs::remove_dir_all(&dir);
        let days = v["bot"].as_array().unwrap();
        assert_eq!(days.len(), DRIFT_DAYS as usize);
        assert_eq!(days[0]["violations"], 0);
        assert_eq!(
            days[days.len() - 1],
            json!({"day": today, "violations": 3, "learned": 4})
        );
    }

    #[test]
    fn answers_go_through_the_handler_with_who_asked() {
        let req = HttpRequest {
            body: br#"{"id":"bot-1"}"#.to_vec(),
            ..HttpRequest::default()
        };
        let r = answer(&One, &req, true, "ui");
        assert_eq!(r.status, "200 OK");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["message"], "approved bot-1 by ui");
        let req = HttpRequest {
            body: br#"{"id":"bot-9"}"#.to_vec(),
            ..HttpRequest::default()
        };
        assert_eq!(answer(&One, &req, true, "ui").status, "409 Conflict");
        assert_eq!(
            answer(&One, &HttpRequest::default(), true, "ui").status,
            "400 Bad Request"
        );
    }

    #[test]
    fn the_timeline_reads_the_log_end_in_plain_words() {
        let dir = std::env::temp_dir().join(format!("aw-ui-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        let mut text = String::new();
        // Enough filler that the read starts mid-file.
        for i in 0..20_000u64 {
            text.push_str(&format!(
                "{{\"seq\":{i},\"record\":{{\"type\":\"checkpoint\",\"pad\":\"{}\"}}}}\n",
                "x".repeat(40)
            ));
        }
        text.push_str(r#"{"seq":20000,"record":{"type":"decision","agent":"bot","rule":"guardrail/secrets","what":"read /root/.ssh/id_rsa","action":"pause","time":"2026-11-27T14:00:00.000000Z"}}"#);
        text.push('\n');
        std::fs::write(&log, text).unwrap();
        // The session under way comes from the agent's status, not the log.
        let status = json!([{"agent": "bot", "session": {"type": "activity", "agent": "bot",
            "session": "2026-11-27T13:59:00.000000Z", "until": "2026-11-27T14:01:00.000000Z",
            "ended": false, "within_profile": {"file": 7}}}]);
        let t = timeline(Some(&log), &status);
        let _ = std::fs::remove_dir_all(&dir);
        let a = &t["agents"][0];
        assert_eq!(a["agent"], "bot");
        assert_eq!(a["paused"], 1);
        assert_eq!(a["sessions"], 1);
        assert_eq!(
            a["entries"][0]["text"],
            "session from 13:59, until 14:01 so far: read or wrote 7 files within its profile"
        );
        assert_eq!(a["entries"][0]["tone"], "session");
        assert_eq!(
            a["entries"][1]["text"],
            "tried to read /root/.ssh/id_rsa: a secret (keys, tokens, credentials); paused for a decision"
        );
        assert_eq!(a["entries"][1]["tone"], "paused");
        let missing = timeline(Some(Path::new("/nonexistent/audit.jsonl")), &json!([]));
        assert!(missing["error"].is_string(), "{missing}");
    }
}

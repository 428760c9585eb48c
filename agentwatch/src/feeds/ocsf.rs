//! Events and decisions as OCSF 1.5.0: process activity (1007), file
//! system activity (1001) and network activity (4001) for what a process
//! did, detection finding (2004) for each decision. Checked against the
//! OCSF schema by `tests/tools/ocsf_validate.py` (the `ocsf-json-schema`
//! package from PyPI).
use serde_json::{json, Map, Value};

use crate::{
    enforce::decision::Decision,
    event::{Detail, Endpoint, Event, Family},
};

pub const VERSION: &str = "1.5.0";

/// What every OCSF record of this host shares.
#[derive(Debug, Clone)]
pub struct Source {
    pub hostname: String,
    /// Wall-clock ms at boot: kernel timestamps are since boot.
    pub boot_ms: i64,
}

impl Source {
    pub fn here() -> Self {
        let hostname = crate::origin::host().to_string();
        let now = |id| {
            nix::time::clock_gettime(id)
                .map(|t| t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000)
                .unwrap_or(0)
        };
        let boot_ms =
            now(nix::time::ClockId::CLOCK_REALTIME) - now(nix::time::ClockId::CLOCK_MONOTONIC);
        Self { hostname, boot_ms }
    }

    fn time(&self, ev: &Event) -> i64 {
        self.boot_ms + (ev.ts_ns / 1_000_000) as i64
    }

    fn metadata(&self, ev: &Event) -> Value {
        json!({
            "version": VERSION,
            "product": {"name": "agentwatch", "vendor_name": "agentwatch", "version": env!("CARGO_PKG_VERSION")},
            "labels": [format!("agent:{}", ev.agent)],
        })
    }

    fn device(&self) -> Value {
        // type_id 1: server.
        json!({"hostname": self.hostname, "type_id": 1})
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// An OCSF file object (type_id 1: regular file).
fn file(path: &str) -> Value {
    json!({"name": file_name(path), "path": path, "type_id": 1})
}

/// The process that acted.
fn process(ev: &Event) -> Value {
    let mut p = Map::new();
    p.insert("pid".into(), json!(ev.pid));
    p.insert("name".into(), json!(ev.comm));
    p.insert("uid".into(), json!(ev.tid.to_string()));
    let mut user = Map::new();
    user.insert("uid".into(), json!(ev.uid.to_string()));
    if let Some(n) = &ev.context.user {
        user.insert("name".into(), json!(n));
    }
    p.insert("user".into(), Value::Object(user));
    if let Some(exe) = &ev.context.exe {
        p.insert("file".into(), file(exe));
    }
    if ev.ppid != 0 {
        p.insert("parent_process".into(), json!({"pid": ev.ppid}));
    }
    if let Some(c) = &ev.context.container_id {
        p.insert("container".into(), json!({"uid": c, "name": c}));
    }
    Value::Object(p)
}

fn endpoint(e: &Endpoint) -> Value {
    match e.family {
        Family::Unix => json!({"name": e.path.clone().unwrap_or_default()}),
        _ => {
            let mut m = Map::new();
            if let Some(a) = &e.addr {
                m.insert("ip".into(), json!(a));
            }
            if let Some(p) = e.port {
                m.insert("port".into(), json!(p));
            }
            Value::Object(m)
        }
    }
}

/// status_id 1 success, 2 failure, by the call's result.
fn status(result: Option<i64>) -> u8 {
    match result {
        Some(r) if r < 0 => 2,
        _ => 1,
    }
}

/// An event's OCSF class, category and activity ids, and the fields
/// proper to its class; None for events with no OCSF activity.
fn activity_fields(ev: &Event) -> Option<(u32, u32, u32, Map<String, Value>)> {
    Some(match &ev.detail {
        Detail::Exec {
            path, argv, result, ..
        } => {
            let mut p = process(ev);
            p["file"] = file(path);
            p["cmd_line"] = json!(argv.join(" "));
            let mut m = Map::new();
            m.insert("process".into(), p);
            m.insert("status_id".into(), json!(status(*result)));
            (1007, 1, 1, m)
        }
        Detail::Open {
            path,
            access,
            result,
            ..
        } => {
            let id = if access.create {
                1
            } else if access.write || access.truncate {
                3
            } else {
                2
            };
            let mut m = Map::new();
            m.insert("file".into(), file(path));
            m.insert("status_id".into(), json!(status(*result)));
            (1001, 1, id, m)
        }
        Detail::Unlink { path, result, .. } => {
            let mut m = Map::new();
            m.insert("file".into(), file(path));
            m.insert("status_id".into(), json!(status(*result)));
            (1001, 1, 4, m)
        }
        // File System Activity: Create.
        Detail::Make { path, result, .. } => {
            let mut m = Map::new();
            m.insert("file".into(), file(path));
            m.insert("status_id".into(), json!(status(*result)));
            (1001, 1, 1, m)
        }
        Detail::Rename {
            from, to, result, ..
        } => {
            let mut m = Map::new();
            m.insert("file".into(), file(from));
            m.insert("file_result".into(), file(to));
            m.insert("status_id".into(), json!(status(*result)));
            (1001, 1, 5, m)
        }
        // OCSF File System Activity has no "link" activity: Create of
        // the new name, with the file it names as the source.
        Detail::Link {
            from, to, result, ..
        } => {
            let mut m = Map::new();
            m.insert("file".into(), file(to));
            m.insert("file_result".into(), file(from));
            m.insert("status_id".into(), json!(status(*result)));
            (1001, 1, 1, m)
        }
        Detail::Chmod { path, result, .. } | Detail::Chown { path, result, .. } => {
            let mut m = Map::new();
            m.insert("file".into(), file(path));
            m.insert("status_id".into(), json!(status(*result)));
            (1001, 1, 7, m)
        }
        Detail::Connect {
            endpoint: e,
            result,
        }
        | Detail::Bind {
            endpoint: e,
            result,
        }
        | Detail::Accept {
            endpoint: e,
            result,
        } => {
            // 1 Open; 5 Refuse when the call failed.
            let id = if status(*result) == 2 { 5 } else { 1 };
            let mut m = Map::new();
            let key = if matches!(ev.detail, Detail::Connect { .. }) {
                "dst_endpoint"
            } else {
                "src_endpoint"
            };
            m.insert(key.into(), endpoint(e));
            m.insert("status_id".into(), json!(status(*result)));
            (4001, 4, id, m)
        }
        // Network Activity: Traffic (a datagram out).
        Detail::Datagram { endpoint: e, .. } => {
            let mut m = Map::new();
            m.insert("dst_endpoint".into(), endpoint(e));
            (4001, 4, 6, m)
        }
        Detail::Listen {
            endpoint: e,
            result,
            ..
        } => {
            let mut m = Map::new();
            m.insert("src_endpoint".into(), endpoint(e));
            m.insert("status_id".into(), json!(status(*result)));
            (4001, 4, 7, m)
        }
        _ => return None,
    })
}

/// The activity record of `ev`, or None for kinds OCSF has no activity
/// class for here (fork, exit, DNS, losses, tampering: the finding
/// carries those).
pub fn activity(src: &Source, ev: &Event) -> Option<Value> {
    let (class_uid, category_uid, activity_id, mut fields) = activity_fields(ev)?;
    fields.insert("class_uid".into(), json!(class_uid));
    fields.insert("category_uid".into(), json!(category_uid));
    fields.insert("activity_id".into(), json!(activity_id));
    fields.insert("type_uid".into(), json!(class_uid * 100 + activity_id));
    fields.insert("severity_id".into(), json!(1));
    fields.insert("time".into(), json!(src.time(ev)));
    fields.insert("metadata".into(), src.metadata(ev));
    fields.insert("device".into(), src.device());
    fields.insert("actor".into(), json!({"process": process(ev)}));
    if class_uid == 4001 {
        // Network activity has actor and device through the host profile.
        fields["metadata"]["profiles"] = json!(["host"]);
    }
    fields.insert(
        "unmapped".into(),
        json!({"agent": ev.agent, "cgroup": ev.context.cgroup, "pod_uid": ev.context.pod_uid}),
    );
    Some(Value::Object(fields))
}

/// The detection finding for a decision: what was seen, the rule, and
/// what was done.
pub fn finding(src: &Source, d: &Decision) -> Value {
    let ev = d.event;
    let f = d.finding;
    let action = d.action;
    // Severity: 4 high when the agent was stopped, denied or killed; 3 medium for an alert.
    let severity_id = if action == "alert" { 3 } else { 4 };
    let rule = f.rule.name();
    let rule = rule.as_ref();
    let uid = d
        .approval
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}-{}-{}-{}", ev.agent, ev.pid, ev.tid, ev.ts_ns));
    let mut evidence = Map::new();
    // The activity already carries the process (as its actor): take it
    // from there rather than building it twice.
    let mut a = activity(src, ev);
    let actor = a
        .as_mut()
        .and_then(|a| a.get_mut("actor"))
        .and_then(|actor| actor.get_mut("process"))
        .map(Value::take);
    evidence.insert("process".into(), actor.unwrap_or_else(|| process(ev)));
    if let Some(a) = a {
        for key in ["file", "dst_endpoint", "src_endpoint"] {
            if let Some(v) = a.get(key) {
                evidence.insert(key.into(), v.clone());
            }
        }
    }
    let mut v = json!({
        "class_uid": 2004,
        "category_uid": 2,
        "activity_id": 1,
        "type_uid": 200401,
        "severity_id": severity_id,
        "time": src.time(ev),
        "metadata": src.metadata(ev),
        "device": src.device(),
        "message": format!("{}: {} ({})", rule, f.what, f.reason),
        "finding_info": {
            "uid": uid,
            "title": format!("{rule}: {}", f.what),
            "desc": f.reason,
            "analytic": {"name": rule, "type_id": 1, "uid": rule},
            "types": [f.class.name()],
        },
        "evidences": [Value::Object(evidence)],
        // What was done goes in `unmapped`: OCSF's action_id and
        // disposition_id belong to the security_control profile.
        "unmapped": {
            "agent": ev.agent,
            "action": action,
            "decided_by": d.by.name(),
            "mode": d.mode.name(),
            "approval": d.approval,
        },
    });
    if let Some(link) = &d.audit {
        v["unmapped"]["audit"] = json!(link);
    }
    // An aggregate of repeated alerts: OCSF's own count and time range.
    if let Some(r) = &d.repeat {
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        v["count"] = json!(r.count);
        v["start_time"] = json!(ms(r.first));
        v["end_time"] = json!(ms(r.last));
    }
    v
}

/// A record that is not a decision as an OCSF base event (class 0): a
/// signed audit checkpoint (`crate::audit::checkpoint`), a `drift`
/// notice. OCSF has no class for them; the record itself is in
/// `unmapped`, under its type, as the audit log has it (with its `host`:
/// the base event has no `device`).
pub fn notice(r: &Value) -> Value {
    let kind = r["type"].as_str().unwrap_or("notice");
    let time = r["time"]
        .as_str()
        .and_then(crate::timestamp::parse)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    json!({
        "class_uid": 0,
        "category_uid": 0,
        "activity_id": 0,
        "type_uid": 0,
        "severity_id": 1,
        "time": time,
        "metadata": {
            "version": VERSION,
            "product": {"name": "agentwatch", "vendor_name": "agentwatch", "version": env!("CARGO_PKG_VERSION")},
            "labels": [format!("agentwatch:{kind}")],
        },
        "message": match kind {
            "checkpoint" => format!(
                "audit checkpoint: records up to {} signed by key {}",
                r["covers"]["seq"], r["key"].as_str().unwrap_or("")
            ),
            _ => r["what"].as_str().unwrap_or(kind).to_string(),
        },
        "unmapped": {kind: r},
    })
}

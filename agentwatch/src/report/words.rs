//! Audit records in plain words, for people who do not read rule names:
//! "tried to read /root/.ssh/id_rsa, a secret: blocked".

/// What a decision's rule means, in a few words.
pub fn kind_of(rule: &str) -> String {
    let (family, detail) = rule.split_once('/').unwrap_or((rule, ""));
    match (family, detail) {
        ("guardrail", "secrets") => "a secret (keys, tokens, credentials)".into(),
        ("guardrail", "persistence") => "a place that runs code at login or boot".into(),
        ("guardrail", "agentwatch") => "agentwatch's own files".into(),
        ("guardrail", "privilege") => "privilege bits (setuid, capabilities)".into(),
        ("guardrail", "tamper") => "agentwatch itself or another process's memory".into(),
        ("guardrail", "escape") => "a way out of its sandbox".into(),
        ("guardrail", "exfiltrate") => "sending data out after reading a secret".into(),
        ("exec", "written") => "a program it wrote itself".into(),
        ("exec", "hash") => "a program whose content changed".into(),
        ("exec", _) => "a program its profile does not list".into(),
        ("file", _) | ("landlock", _) => "outside its profile".into(),
        ("network", _) => "an endpoint its profile does not list".into(),
        ("dns", "forged") => "a forged DNS answer".into(),
        ("dns", _) => "a name its profile does not list".into(),
        ("rate", c) => format!("more {c} actions a minute than its budget"),
        ("path", "unjudged") => "a path too long to judge".into(),
        ("paused", _) => "a pause whose reason was lost in a restart".into(),
        ("budget", k) => format!("its {k} budget"),
        ("model", "changed") => "a model whose content changed since it was approved".into(),
        ("model", _) => "a model its profile does not approve".into(),
        ("config", _) => "an instruction file whose content changed since it was pinned".into(),
        ("identity", "human") => "a person's account".into(),
        ("identity", _) => "a person's credentials".into(),
        _ => format!("rule {rule}"),
    }
}

/// The action in words: what happened to the agent.
pub fn outcome_of(action: &str) -> &'static str {
    match action.split_whitespace().next().unwrap_or("") {
        "alert" => "allowed, and reported",
        "pause" => "paused for a decision",
        "kill" => "stopped (the agent was killed)",
        _ if action.contains("Landlock") => "blocked before it happened",
        "deny" | "deny_kill" => "blocked",
        _ => "acted on",
    }
}

/// "read /etc/shadow" as "read /etc/shadow"; "write,create /x" as
/// "write to /x"; "connect 1.2.3.4:443" as "connect to 1.2.3.4:443".
pub fn attempt(what: &str) -> String {
    let (verbs, object) = what.split_once(' ').unwrap_or((what, ""));
    let verb = verbs.split(',').next().unwrap_or(verbs);
    let phrase = match verb {
        "write" => "write to",
        "chmod" => "change the mode of",
        "exec" => "run",
        "connect" | "sendto" | "datagram" => "connect to",
        "bind" | "listen" => "listen on",
        "accept" => "accept a connection from",
        "query" | "dns" => "look up",
        v => v,
    };
    if object.is_empty() {
        phrase.to_string()
    } else {
        format!("{phrase} {object}")
    }
}

/// A decision in one sentence.
pub fn decision(rule: &str, what: &str, action: &str) -> String {
    format!(
        "tried to {}: {}; {}",
        attempt(what),
        kind_of(rule),
        outcome_of(action)
    )
}

/// Why the agent did it, from an alert's or request's intent `context`:
/// "its model M at E last asked for read_file ({...}); it was told: ...".
/// None without one.
pub fn why(context: &serde_json::Value) -> Option<String> {
    let c = context.as_object()?;
    let tools: Vec<&str> = c
        .get("tools")
        .and_then(|t| t.as_array())
        .map(|t| t.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let mut s = format!(
        "its model {} at {} last asked for {}",
        c.get("model").and_then(|m| m.as_str()).unwrap_or("?"),
        c.get("endpoint").and_then(|m| m.as_str()).unwrap_or("?"),
        if tools.is_empty() {
            "no tool".to_string()
        } else {
            tools.join(", ")
        }
    );
    if let Some(calls) = c.get("tool_calls").and_then(|t| t.as_array()) {
        let shown: Vec<String> = calls
            .iter()
            .map(|t| {
                format!(
                    "{} {}",
                    t["name"].as_str().unwrap_or("?"),
                    t["input"].as_str().unwrap_or("")
                )
            })
            .collect();
        if !shown.is_empty() {
            s.push_str(&format!(" ({})", shown.join("; ")));
        }
    }
    if let Some(i) = c.get("instruction").and_then(|i| i.as_str()) {
        s.push_str(&format!("; it was told: \"{i}\""));
    }
    Some(s)
}

/// A session's `activity` record as what the agent did within its
/// profile, one phrase per kind of thing: "ran 3 programs its profile
/// allows (git ×2, python3)", "read or wrote 212 files within its
/// profile", "looked up api.example.com".
pub fn activity(rec: &serde_json::Value) -> Vec<String> {
    let n = |class: &str| rec["within_profile"][class].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    if n("exec") > 0 {
        let mut progs: Vec<(&str, u64)> = rec["programs"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(p, c)| (p.rsplit('/').next().unwrap_or(p), c.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        progs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = progs
            .iter()
            .take(5)
            .map(|(p, c)| {
                if *c > 1 {
                    format!("{p} ×{c}")
                } else {
                    p.to_string()
                }
            })
            .collect();
        let more = if progs.len() > 5 { ", …" } else { "" };
        out.push(format!(
            "ran {} its profile allows ({}{more})",
            plural(n("exec"), "program"),
            shown.join(", ")
        ));
    }
    if n("file") > 0 {
        out.push(format!(
            "read or wrote {} within its profile",
            plural(n("file"), "file")
        ));
    }
    if n("delete") > 0 {
        out.push(format!(
            "deleted or renamed {} within its profile",
            plural(n("delete"), "file")
        ));
    }
    if n("network") > 0 {
        out.push(format!(
            "made {} its profile allows",
            plural(n("network"), "connection")
        ));
    }
    let names: Vec<&str> = rec["names"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if !names.is_empty() {
        let more = rec["more_names"].as_u64().unwrap_or(0);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        out.push(format!("looked up {}{more}", names.join(", ")));
    }
    if out.is_empty() {
        out.push("did nothing agentwatch watches".into());
    }
    out
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A `budget` or `identity` record in words, with its tone: what was
/// reached or who the agent ran as, and what happened.
pub fn bounds(rec: &serde_json::Value) -> (String, super::Tone) {
    use super::Tone;
    let what = rec["what"].as_str().unwrap_or("");
    if rec["type"] == "identity" && rec.get("rule").is_none() {
        let who = rec["user"].as_str().unwrap_or("an unknown account");
        return (format!("ran as {who} (uid {})", rec["uid"]), Tone::Info);
    }
    let (said, tone) = match rec["action"].as_str().unwrap_or("") {
        "pause" => ("paused until someone resumes it", Tone::Paused),
        "kill" => ("stopped (the agent was killed)", Tone::Blocked),
        _ => ("reported", Tone::Reported),
    };
    (format!("{what}; {said}"), tone)
}

/// An approval answer in one sentence; `at` is an RFC 3339 time.
pub fn answer(outcome: &str, by: &str, at: &str, learned: bool) -> String {
    let hhmm = at.get(11..16).unwrap_or(at);
    let learned = if learned {
        " and added to its profile"
    } else {
        ""
    };
    match outcome {
        "approved" => format!("approved by {by} at {hhmm}{learned}; the agent went on"),
        "denied" => format!("denied by {by} at {hhmm}; the agent was stopped"),
        "timed_out" => format!("nobody answered in time ({hhmm}); the agent was stopped"),
        "exited" => format!("the agent had exited when it was answered ({hhmm})"),
        "released" => format!("released at {hhmm}: the agent left the configuration"),
        o => format!("{o} by {by} at {hhmm}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_as_sentences() {
        assert_eq!(
            decision(
                "guardrail/secrets",
                "read /root/.ssh/id_rsa",
                "deny (SIGKILL at the call)"
            ),
            "tried to read /root/.ssh/id_rsa: a secret (keys, tokens, credentials); blocked"
        );
        assert_eq!(
            decision("network/unknown", "connect 10.0.0.5:22", "pause"),
            "tried to connect to 10.0.0.5:22: an endpoint its profile does not list; paused for a decision"
        );
        assert_eq!(
            decision("file/unknown", "write,create /etc/cron.d/x", "alert"),
            "tried to write to /etc/cron.d/x: outside its profile; allowed, and reported"
        );
        assert_eq!(
            outcome_of("deny (Landlock, before the effect)"),
            "blocked before it happened"
        );
        assert_eq!(
            kind_of("rate/delete"),
            "more delete actions a minute than its budget"
        );
        assert_eq!(
            decision("model/unapproved", "load /m/x.gguf (GGUF, sha256 0a1b)", "deny"),
            "tried to load /m/x.gguf (GGUF, sha256 0a1b): a model its profile does not approve; blocked"
        );
        assert_eq!(
            decision("config/changed", "read $WORKSPACE/AGENTS.md", "pause"),
            "tried to read $WORKSPACE/AGENTS.md: an instruction file whose content changed since it was pinned; paused for a decision"
        );
    }

    #[test]
    fn the_context_says_why_in_one_sentence() {
        let c = serde_json::json!({"model": "claude-x", "endpoint": "api.example.com",
            "tools": ["read_file"], "tool_calls": [{"name": "read_file", "input": "{\"path\":\"/x\"}"}],
            "instruction": "fix the build"});
        assert_eq!(
            why(&c).unwrap(),
            "its model claude-x at api.example.com last asked for read_file (read_file {\"path\":\"/x\"}); it was told: \"fix the build\""
        );
        let meta = serde_json::json!({"model": "m", "endpoint": "e", "tools": []});
        assert_eq!(
            why(&meta).unwrap(),
            "its model m at e last asked for no tool"
        );
        assert!(why(&serde_json::Value::Null).is_none());
    }

    #[test]
    fn activity_reads_as_what_it_did() {
        let rec = serde_json::json!({"within_profile": {"exec": 3, "file": 212, "delete": 0, "network": 1, "dns": 2},
            "programs": {"/usr/bin/git": 2, "/usr/bin/python3": 1},
            "names": ["api.example.com", "github.com"], "more_names": 0});
        assert_eq!(
            activity(&rec),
            [
                "ran 3 programs its profile allows (git ×2, python3)",
                "read or wrote 212 files within its profile",
                "made 1 connection its profile allows",
                "looked up api.example.com, github.com",
            ]
        );
        assert_eq!(
            activity(&serde_json::json!({})),
            ["did nothing agentwatch watches"]
        );
    }

    #[test]
    fn budgets_and_identities_read_as_what_happened() {
        let hit = serde_json::json!({"type": "budget", "rule": "budget/pids", "action": "pause",
            "what": "reached its budget of 6 processes at once 2 time(s): forks past it failed"});
        assert_eq!(
            bounds(&hit),
            (
                "reached its budget of 6 processes at once 2 time(s): forks past it failed; paused until someone resumes it".to_string(),
                super::super::Tone::Paused
            )
        );
        let ran = serde_json::json!({"type": "identity", "uid": 0, "user": "root", "human": false});
        assert_eq!(bounds(&ran).0, "ran as root (uid 0)");
    }

    #[test]
    fn answers_say_who_and_when() {
        assert_eq!(
            answer("approved", "alice", "2026-11-27T14:02:11.000000Z", true),
            "approved by alice at 14:02 and added to its profile; the agent went on"
        );
        assert_eq!(
            answer("timed_out", "timeout", "2026-11-27T14:07:11.000000Z", false),
            "nobody answered in time (14:07); the agent was stopped"
        );
    }
}

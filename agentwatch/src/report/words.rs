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

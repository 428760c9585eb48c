//! A report built from a real chained log: grouped by agent, in words,
//! escaped, and honest about the chain.
use serde_json::json;

use super::*;
use crate::audit::{AuditLog, Fsync};

fn log_with(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("audit.jsonl");
    let mut log = AuditLog::open(&p, Fsync::EveryRecord, None).unwrap();
    for r in [
        json!({"type": "run", "event": "started", "pid": 7, "profile": "p.yaml", "ts": "2026-11-27T10:00:00.000000Z"}),
        json!({"type": "decision", "agent": "coder", "rule": "guardrail/secrets", "what": "read /root/.ssh/id_rsa", "action": "deny (SIGKILL at the call)", "time": "2026-11-27T10:01:00.000000Z"}),
        json!({"type": "decision", "agent": "coder", "rule": "file/unknown", "what": "read /etc/<script>", "action": "pause", "approval": "coder-1", "time": "2026-11-27T10:02:00.000000Z"}),
        json!({"type": "approval", "agent": "coder", "ids": ["coder-1"], "outcome": "approved", "by": "alice", "learned": true, "ts": "2026-11-27T10:03:00.000000Z"}),
        json!({"type": "learned", "agent": "coder", "territory": "$WORKSPACE", "what": "create $WORKSPACE/a", "ts": "2026-11-27T10:04:00.000000Z"}),
        json!({"type": "learned", "agent": "coder", "territory": "$WORKSPACE", "what": "create $WORKSPACE/b", "ts": "2026-11-27T10:05:00.000000Z"}),
        json!({"type": "activity", "agent": "coder", "session": "2026-11-27T10:00:30.000000Z", "until": "2026-11-27T10:05:00.000000Z", "ended": false, "within_profile": {"exec": 1, "file": 5}, "programs": {"/usr/bin/git": 1}}),
        json!({"type": "activity", "agent": "coder", "session": "2026-11-27T10:00:30.000000Z", "until": "2026-11-27T10:09:00.000000Z", "ended": true, "within_profile": {"exec": 2, "file": 212}, "programs": {"/usr/bin/git": 2}}),
        json!({"type": "decision", "agent": "ops", "rule": "network/unknown", "what": "connect 10.0.0.5:22", "action": "alert", "time": "2026-11-27T10:06:00.000000Z"}),
    ] {
        log.append(&r).unwrap();
    }
    p
}

#[test]
fn a_log_reads_per_agent_in_plain_words() {
    let dir = std::env::temp_dir().join(format!("aw-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = log_with(&dir);
    let r = build(std::slice::from_ref(&p)).unwrap();
    assert!(r.chain_ok, "{}", r.chain);
    assert_eq!(r.agents.len(), 2);
    let coder = &r.agents[0];
    assert_eq!(
        (
            coder.violations,
            coder.blocked,
            coder.paused,
            coder.approved,
            coder.learned
        ),
        (2, 1, 1, 1, 2)
    );
    let texts: Vec<&str> = coder.entries.iter().map(|e| e.text.as_str()).collect();
    // The session, once (its last record), first: it began before the rest.
    assert_eq!(coder.sessions, 1);
    assert_eq!(
        texts[0],
        "session from 10:00 to 10:09: ran 2 programs its profile allows (git ×2); read or wrote 212 files within its profile"
    );
    assert_eq!(
        texts[1],
        "tried to read /root/.ssh/id_rsa: a secret (keys, tokens, credentials); blocked"
    );
    assert!(texts.contains(
        &"request coder-1: approved by alice at 10:03 and added to its profile; the agent went on"
    ));
    assert!(texts.contains(&"created 2 new name(s) in $WORKSPACE, allowed and learned"));
    assert_eq!(r.log.len(), 1);

    let page = html::render(&r);
    assert!(
        page.contains("tried to read /etc/&lt;script&gt;"),
        "not escaped"
    );
    assert!(!page.contains("<script>"), "a log's text became markup");
    assert!(page.contains("class=\"chain ok\""));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "fetches something"
    );

    // A record altered: the page says the chain is broken.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("alice", "mallory");
    std::fs::write(&p, text).unwrap();
    let r = build(&[p]).unwrap();
    assert!(!r.chain_ok && r.chain.starts_with("BROKEN"), "{}", r.chain);
    assert!(html::render(&r).contains("class=\"chain broken\""));
    let _ = std::fs::remove_dir_all(&dir);
}

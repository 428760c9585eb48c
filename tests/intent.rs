//! Intent capture against this host's kernel and its OpenSSL: an agent
//! (Debian's python3, whose ssl module is the system libssl) asks a local
//! HTTPS model stand-in (a certificate of a private CA only the agent
//! trusts) what to do; the model answers with a tool call to read a file
//! outside the profile. The pause that follows carries the tool call and
//! the instruction in its alert and its approval request: with
//! `--context content` as redacted text, with the default `metadata` as
//! names and sizes only. The approval record keeps what was shown.
mod support;

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use support::{
    pki::Pki,
    privileged,
    receiver::{free_port, HttpReceiver},
    run::{control, profile, request_for, Run},
    TempDir,
};

/// Every agent's start: a connection to its model, trusting the test CA.
const CONNECT: &str = r#"import http.client, json, ssl, sys, time
# Capture follows a process from a tick (20 ms) after it appears; real
# agents take longer than this to start (docs/enforcing.md).
time.sleep(0.1)
port = int(sys.argv[1])
ctx = ssl.create_default_context(cafile="ca.pem")
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
"#;

/// The agent: one request to its model, then the tool call it got.
const AGENT: &str = r#"
ask = {"model": "claude-test", "max_tokens": 100, "messages": [
    {"role": "user", "content": "Find out this machine's name; the token is sk-abcdefghijklmnopqrstuv"}]}
c.request("POST", "/v1/messages", json.dumps(ask), {"Content-Type": "application/json"})
answer = json.loads(c.getresponse().read())
call = [b for b in answer["content"] if b["type"] == "tool_use"][0]
text = open(call["input"]["path"]).read()
open("after.txt", "w").write(text)
"#;

/// The model: every request gets a tool call to read /etc/hostname.
fn model(pki: &Pki) -> HttpReceiver {
    HttpReceiver::start_tls_with(
        free_port(),
        pki.server_config(),
        Arc::new(|_| {
            (
                "200 OK",
                r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","content":[{"type":"text","text":"I will read it."},{"type":"tool_use","id":"toolu_1","name":"read_file","input":{"path":"/etc/hostname"}}],"stop_reason":"tool_use"}"#.to_string(),
            )
        }),
    )
}

/// The run's profile: the model's address marked `model: true`; python's
/// library and OpenSSL's configuration readable; /etc/hostname not.
fn yaml(name: &str, port: u16) -> String {
    profile(name, port, "")
        .replacen(
            &format!("    port: {port}\n"),
            &format!("    port: {port}\n    model: true\n"),
            1,
        )
        .replace(
            "files:\n",
            // Node.js also reads its cgroup's limits and looks for a
            // package.json in every directory up from its script.
            "files:\n  - path: \"/etc/ssl/**\"\n    access: [read]\n  - path: \"/etc/localtime\"\n    access: [read]\n  - path: \"/sys/**\"\n    access: [read]\n  - path: \"/**/package.json\"\n    access: [read]\n",
        )
}

/// `agentwatch run` of `script` (the agent) in enforce mode, with the
/// test CA and `files` (name, content) in its workspace.
fn start(name: &str, port: u16, extra: &[&str], pki: &Pki, files: &[(&str, &str)]) -> Run {
    let ca = pki.ca.clone();
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    Run::start_prepared(
        name,
        &yaml(name, port),
        "enforce",
        extra,
        &match files.iter().any(|(n, _)| n == "agent.js") {
            true => format!("/usr/bin/node agent.js {port}"),
            false => format!("/usr/bin/python3 agent.py {port}"),
        },
        |ws| {
            for (n, c) in &files {
                let c = if n == "agent.py" {
                    format!("{CONNECT}{c}")
                } else {
                    c.clone()
                };
                std::fs::write(ws.join(n), c).expect("workspace file");
            }
            std::fs::copy(&ca, ws.join("ca.pem")).expect("ca");
        },
    )
}

/// The run's first approval request, as `pending --json` shows it: its id
/// and the whole request.
fn first_request(r: &Run, name: &str) -> (String, Value) {
    r.wait_ready(name);
    let id = request_for(name, "");
    let all: Value = serde_json::from_str(&control(&["pending", "--json"])).expect("json");
    let req = all
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["id"] == id.as_str())
        .cloned()
        .expect("the request");
    (id, req)
}

/// A session's pending request, alerts, audit records and HTML report.
type Session = (Value, Vec<Value>, Vec<Value>, String);

/// Runs the agent under `level`; the pending request, the run's alerts
/// and its audit records after approving it.
fn session(name: &str, level: &str) -> Option<Session> {
    let certs = TempDir::new(&format!("{name}-pki"));
    let pki = Pki::make(&certs.0)?;
    let m = model(&pki);
    let logs = TempDir::new(&format!("{name}-audit"));
    let audit = logs.join("audit.jsonl");
    let r = start(
        name,
        m.port,
        &["--context", level, "--audit", &audit],
        &pki,
        &[("agent.py", AGENT)],
    );
    let (id, req) = first_request(&r, name);
    control(&["approve", &id]);
    let done = r.finish();
    assert_eq!(done.status, 0, "{}", done.stderr);
    std::thread::sleep(Duration::from_millis(100));
    let recs = support::daemon::audit_records(std::path::Path::new(&audit));
    let html = logs.join("report.html");
    let out = support::agentwatch()
        .args(["report", "--html", &html, &audit])
        .output()
        .expect("agentwatch report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(&html).expect("the report");
    Some((req, done.alerts, recs, report))
}

/// `session` when this host can run it (root, Debian's python3).
fn session_here(name: &str, level: &str) -> Option<Session> {
    let _k = privileged()?;
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIP: no /usr/bin/python3 (Debian's, linked to the system libssl)");
        return None;
    }
    session(name, level)
}

#[test]
fn the_models_tool_call_and_instruction_are_the_context_of_the_pause_it_caused() {
    let Some((req, alerts, recs, report)) = session_here("intent-content", "content") else {
        return;
    };
    assert!(
        req["what"].as_str().unwrap_or("").contains("/etc/hostname"),
        "{req}"
    );
    let c = &req["context"];
    assert_eq!(c["level"], "content", "{req}");
    assert_eq!(c["model"], "claude-test", "{c}");
    assert_eq!(c["tools"], serde_json::json!(["read_file"]), "{c}");
    assert_eq!(c["tool_calls"][0]["name"], "read_file", "{c}");
    assert!(
        c["tool_calls"][0]["input"]
            .as_str()
            .unwrap_or("")
            .contains("/etc/hostname"),
        "{c}"
    );
    let instruction = c["instruction"].as_str().unwrap_or("");
    assert!(instruction.contains("this machine's name"), "{c}");
    assert!(
        !instruction.contains("sk-abcdefghijklmnopqrstuv") && instruction.contains("[redacted]"),
        "the token was shown: {c}"
    );
    let alert = alerts
        .iter()
        .find(|a| a["rule"].as_str().unwrap_or("").starts_with("file/"))
        .expect("the pause's alert");
    assert_eq!(alert["context"]["tool_calls"], c["tool_calls"], "{alert}");
    let approval = recs
        .iter()
        .find(|r| r["type"] == "approval")
        .expect("the approval record");
    assert_eq!(approval["shown"]["context"], *c, "{approval}");
    assert_eq!(approval["shown"]["sha256"].as_str().map(str::len), Some(64));
    // The timeline for people says why beside the pause.
    assert!(
        report.contains("Why: its model claude-test at 127.0.0.1:") && report.contains("read_file"),
        "the report's timeline has no context"
    );
}

#[test]
fn metadata_context_names_the_tool_and_keeps_no_text() {
    let Some((req, alerts, _, _)) = session_here("intent-meta", "metadata") else {
        return;
    };
    let c = &req["context"];
    assert_eq!(c["level"], "metadata", "{req}");
    assert_eq!(c["tools"], serde_json::json!(["read_file"]), "{c}");
    assert!(c["request_bytes"].as_u64().unwrap_or(0) > 100, "{c}");
    assert!(
        c.get("instruction").is_none() && c.get("tool_calls").is_none(),
        "{c}"
    );
    for a in &alerts {
        let text = a["context"].to_string();
        assert!(
            !text.contains("machine's name") && !text.contains("/etc/hostname"),
            "metadata let text through: {a}"
        );
    }
}

/// A model that keeps its connection open (HTTP/1.1 keep-alive), answers
/// the n-th request with `answers[n]` (the last one after that), and keeps
/// every request body.
struct KeptAliveModel {
    port: u16,
    got: Arc<std::sync::Mutex<Vec<String>>>,
}

fn kept_alive_model(pki: &Pki, answers: Vec<&'static str>) -> KeptAliveModel {
    use std::io::{BufRead, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the model");
    let port = l.local_addr().expect("its port").port();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (cfg, g) = (pki.server_config(), got.clone());
    std::thread::spawn(move || {
        let mut n = 0;
        for conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
            let Ok(tls) = rustls::ServerConnection::new(cfg.clone()) else {
                continue;
            };
            let mut r = std::io::BufReader::new(rustls::StreamOwned::new(tls, conn));
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                let mut head = 0;
                while r.read_line(&mut line).is_ok_and(|k| k > 0) {
                    head += 1;
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                if head == 0 {
                    break;
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    break;
                }
                if let Ok(mut g) = g.lock() {
                    g.push(String::from_utf8_lossy(&body).into_owned());
                }
                let a = answers[n.min(answers.len() - 1)];
                n += 1;
                let out = r.get_mut();
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{a}",
                    a.len()
                );
                let _ = out.flush();
            }
        }
    });
    KeptAliveModel { port, got }
}

/// The agent of the exfiltration case: it asks, is told to read the
/// workspace's .env, reads it (tainted from then on) and sends it back
/// as the tool's result on the connection it opened before.
const EXFILTRATING_AGENT: &str = r#"
msgs = [{"role": "user", "content": "Set up the project"}]
c.request("POST", "/v1/messages", json.dumps({"model": "claude-test", "messages": msgs}), {"Content-Type": "application/json"})
answer = json.loads(c.getresponse().read())
call = [b for b in answer["content"] if b["type"] == "tool_use"][0]
secret = open(call["input"]["path"]).read()
msgs.append({"role": "assistant", "content": answer["content"]})
msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": secret}]})
c.request("POST", "/v1/messages", json.dumps({"model": "claude-test", "messages": msgs}), {"Content-Type": "application/json"})
c.getresponse().read()
open("after.txt", "w").write("sent")
"#;

const SECRET_LINE: &str = "DB_PASSWORD=correct-horse-battery-staple";

#[test]
fn a_secret_sent_to_the_model_on_a_connection_opened_before_is_stopped_before_it_leaves() {
    let Some(_k) = privileged() else {
        return;
    };
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIP: no /usr/bin/python3 (Debian's, linked to the system libssl)");
        return;
    }
    let name = "intent-exfil";
    let certs = TempDir::new(&format!("{name}-pki"));
    let Some(pki) = Pki::make(&certs.0) else {
        return;
    };
    let m = kept_alive_model(
        &pki,
        vec![
            r#"{"type":"message","model":"claude-test","content":[{"type":"tool_use","id":"toolu_1","name":"read_file","input":{"path":".env"}}]}"#,
            r#"{"type":"message","model":"claude-test","content":[{"type":"text","text":"thanks"}]}"#,
        ],
    );
    let secret = format!("{SECRET_LINE}\n");
    let r = start(
        name,
        m.port,
        &["--context", "content"],
        &pki,
        &[("agent.py", EXFILTRATING_AGENT), (".env", &secret)],
    );
    r.wait_ready(name);
    // The guardrail's action here is pause: the agent stops, a person is
    // asked; meanwhile nothing of the write has left.
    let id = request_for(name, "guardrail/exfiltrate");
    std::thread::sleep(Duration::from_millis(300));
    let held = m.got.lock().map(|g| g.len()).unwrap_or(0);
    assert_eq!(held, 1, "the held write reached the model");
    control(&["deny", &id]);
    let (done, dir) = r.finish_keeping_dir();
    let got = m.got.lock().map(|g| g.clone()).unwrap_or_default();
    assert_eq!(
        got.len(),
        1,
        "the model got more than the first request: {got:?}"
    );
    assert!(
        got.iter().all(|b| !b.contains("correct-horse")),
        "the secret reached the model: {got:?}"
    );
    assert!(
        !dir.0.join("ws/after.txt").exists(),
        "the agent went on after sending"
    );
    let exfil = done
        .alerts
        .iter()
        .find(|a| a["rule"] == "guardrail/exfiltrate")
        .unwrap_or_else(|| panic!("no exfiltration alert: {:?}\n{}", done.alerts, done.stderr));
    assert!(
        exfil["what"].as_str().unwrap_or("").contains("127.0.0.1"),
        "{exfil}"
    );
    assert_eq!(
        exfil["context"]["tools"],
        serde_json::json!(["read_file"]),
        "{exfil}"
    );
    assert!(
        !exfil.to_string().contains("correct-horse"),
        "the alert shows the secret: {exfil}"
    );
}

/// The Node.js agent: Node embeds OpenSSL and exports its symbols; its
/// executable is probed like a library.
const NODE_AGENT: &str = r#"
const https = require("https"), fs = require("fs");
const port = +process.argv[2];
// Capture follows a process from a tick after it appears (docs/enforcing.md).
setTimeout(() => {
  const body = JSON.stringify({model: "claude-test", messages: [{role: "user", content: "Find out this machine's name"}]});
  const req = https.request({host: "127.0.0.1", port, path: "/v1/messages", method: "POST", ca: fs.readFileSync("ca.pem"),
    headers: {"Content-Type": "application/json", "Content-Length": Buffer.byteLength(body)}}, res => {
    let data = "";
    res.on("data", d => data += d);
    res.on("end", () => {
      const call = JSON.parse(data).content.find(b => b.type === "tool_use");
      fs.writeFileSync("after.txt", fs.readFileSync(call.input.path, "utf8"));
    });
  });
  req.end(body);
}, 300);
"#;

#[test]
fn a_nodejs_agent_with_its_own_openssl_is_read_too() {
    let Some(_k) = privileged() else {
        return;
    };
    if !std::path::Path::new("/usr/bin/node").exists() {
        eprintln!("SKIP: no /usr/bin/node");
        return;
    }
    let name = "intent-node";
    let certs = TempDir::new(&format!("{name}-pki"));
    let Some(pki) = Pki::make(&certs.0) else {
        return;
    };
    let m = model(&pki);
    let r = start(
        name,
        m.port,
        &["--context", "content"],
        &pki,
        &[("agent.js", NODE_AGENT)],
    );
    let (id, req) = first_request(&r, name);
    control(&["deny", &id]);
    drop(r.finish());
    assert!(
        req["what"].as_str().unwrap_or("").contains("/etc/hostname"),
        "{req}"
    );
    assert_eq!(
        req["context"]["tool_calls"][0]["name"], "read_file",
        "{req}"
    );
    assert_eq!(
        req["context"]["instruction"], "Find out this machine's name",
        "{req}"
    );
}

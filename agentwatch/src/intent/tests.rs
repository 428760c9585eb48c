use super::*;

const PROFILE: &str = r#"apiVersion: agentwatch.dev/v1
kind: Profile
agent: bot
network:
  - direction: connect
    host: "api.model.test"
    model: true
  - direction: connect
    address: "127.0.0.1"
    port: 8443
    model: true
"#;

fn log(level: Level) -> IntentLog {
    let (p, findings) = crate::profile::parse::parse(PROFILE);
    IntentLog::new(level, &p.unwrap_or_else(|| panic!("{findings:?}")))
}

fn tls(ssl: u64, write: bool, data: &[u8]) -> Event {
    Event {
        detail: Detail::Tls {
            ssl,
            write,
            len: data.len() as u64,
            offset: 0,
            data: data.to_vec(),
        },
        ..crate::enforce::decision::tests::event()
    }
}

fn request(host: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const ASK: &str = r#"{"model":"claude-x","messages":[{"role":"user","content":"please read /etc/hostname and the key sk-abcdefghijklmnopqrstu"}]}"#;
const TOOL: &str =
    r#"{"content":[{"type":"tool_use","name":"read_file","input":{"path":"/etc/hostname"}}]}"#;

#[test]
fn an_exchange_with_a_model_becomes_the_context_at_each_level() {
    let mut l = log(Level::Content);
    assert_eq!(
        l.feed(&tls(1, true, &request("127.0.0.1:8443", ASK))),
        Fed::Nothing
    );
    assert_eq!(l.feed(&tls(1, false, &response(TOOL))), Fed::Nothing);
    let c = l.context().expect("a context");
    assert_eq!(c["endpoint"], "127.0.0.1:8443");
    assert_eq!(c["model"], "claude-x");
    assert_eq!(c["tools"], json!(["read_file"]));
    assert_eq!(
        c["instruction"],
        "please read /etc/hostname and the key [redacted]"
    );
    assert_eq!(c["tool_calls"][0]["input"], r#"{"path":"/etc/hostname"}"#);

    let mut m = log(Level::Metadata);
    m.feed(&tls(1, true, &request("API.model.test", ASK)));
    m.feed(&tls(1, false, &response(TOOL)));
    let c = m.context().expect("a context");
    assert_eq!(c["tools"], json!(["read_file"]));
    let text = c.to_string();
    assert!(
        !text.contains("hostname") && c.get("instruction").is_none(),
        "metadata keeps no text: {c}"
    );
}

#[test]
fn other_connections_are_set_aside_and_leave_no_context() {
    let mut l = log(Level::Content);
    assert_eq!(
        l.feed(&tls(9, true, &request("example.org", ASK))),
        Fed::NotModel { pid: 7, ssl: 9 }
    );
    // The wrong port of a model's address is not the model.
    assert_eq!(
        l.feed(&tls(10, true, &request("127.0.0.1:9999", ASK))),
        Fed::NotModel { pid: 7, ssl: 10 }
    );
    assert!(l.context().is_none());
    let mut off = log(Level::Off);
    assert_eq!(
        off.feed(&tls(1, true, &request("api.model.test", ASK))),
        Fed::Nothing
    );
    assert!(off.context().is_none());
}

#[test]
fn a_kept_alive_connection_reads_each_exchange_in_turn() {
    let mut l = log(Level::Content);
    l.feed(&tls(1, true, &request("api.model.test", ASK)));
    l.feed(&tls(1, false, &response(TOOL)));
    let second =
        r#"{"model":"claude-x","messages":[{"role":"user","content":"now list the files"}]}"#;
    l.feed(&tls(1, true, &request("api.model.test", second)));
    let c = l.context().unwrap();
    assert_eq!(c["instruction"], "now list the files");
    // An event stream without a length ends when the next request starts.
    let sse = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"shell\"}}\n\n";
    l.feed(&tls(1, false, sse.as_bytes()));
    l.feed(&tls(1, true, &request("api.model.test", second)));
    assert_eq!(l.context().unwrap()["tools"], json!(["shell"]));
}

#[test]
fn secret_files_read_are_never_shown() {
    let mut l = log(Level::Content);
    l.note_secret("DB_PASSWORD=correct-horse-battery\n");
    let ask = r#"{"model":"m","messages":[{"role":"user","content":"send correct-horse-battery to me"}]}"#;
    l.feed(&tls(1, true, &request("api.model.test", ask)));
    assert_eq!(l.context().unwrap()["instruction"], "send [redacted] to me");
}

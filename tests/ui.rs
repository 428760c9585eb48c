//! The live page, in a real browser against a real daemon: an agent
//! selected by cgroup is paused by this host's kernel for reading a file
//! outside its profile; headless chromium (driven over the DevTools
//! protocol) shows the request and the timeline in plain words, its
//! Approve button resumes the agent, and the approval is audited. The
//! screenshots are kept under target/test-output.
mod support;

use std::{
    io::{Read, Write},
    time::Duration,
};

use support::{
    browser,
    daemon::Daemon,
    privileged, privileged_with_cgroup,
    run::{profile, Run},
    TempDir,
};

const AGENT: &str = "ui-coder";

fn config(cgroup: &std::path::Path) -> String {
    format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\npause_timeout = \"120s\"\nrescan = \"200ms\"\n\
         [audit]\npath = \"audit.jsonl\"\nfsync = \"100ms\"\n\
         [ui]\nlisten = \"127.0.0.1:0\"\nurl_file = \"ui.url\"\n\
         [[agent]]\nname = \"{AGENT}\"\nprofile = \"{AGENT}.yaml\"\nmode = \"enforce\"\nworkspace = \"WS\"\n\
         [agent.select]\ncgroup = \"{}\"\n",
        cgroup.display()
    )
}

/// One raw HTTP request to the UI (`head`: request line and headers, then
/// `body`); the status line and the body of the answer.
fn http(addr: &str, head: &str, body: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the UI");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.lines().next().unwrap_or("").to_string();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

#[test]
fn the_live_page_shows_a_pause_in_plain_words_and_its_approve_button_resumes_the_agent() {
    let Some((_k, cg)) = privileged_with_cgroup("ui-page") else {
        return;
    };
    let Some(bin) = browser::chromium() else {
        return;
    };
    let yaml = profile(AGENT, 1, "");
    let d = Daemon::prepare("ui-page", "", &[(&format!("{AGENT}.yaml"), &yaml)]);
    d.write_config(&config(&cg.0));
    // Two earlier days of drift, for the trend the page draws.
    let day = |ago: u32| {
        let out = std::process::Command::new("date")
            .args(["-u", "+%F", "-d", &format!("{ago} days ago")])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    std::fs::create_dir_all(d.dir.0.join("drift")).unwrap();
    std::fs::write(
        d.dir.0.join(format!("drift/{AGENT}.json")),
        format!(
            r#"{{"days":{{"{}":{{"novel":{{"file":2}}}},"{}":{{"novel":{{"network":6}}}}}}}}"#,
            day(3),
            day(1)
        ),
    )
    .unwrap();
    let mut d = d.start();

    // The address, token included, as `agentwatch ui` prints it.
    let out = d.cli(&["ui", "--config", d.config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (addr, token) = split_url(&url);
    let addr = addr.as_str();
    assert!(addr.starts_with("127.0.0.1:"), "{url}");
    let file = d.dir.0.join("ui.url");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the token's file is root's only");

    // The API answers only with the token and only to the loopback name.
    let host = format!("Host: {addr}");
    let (st, _) = http(addr, &format!("GET /api/state HTTP/1.1\r\n{host}"), "");
    assert!(st.contains("401"), "{st}");
    let (st, _) = http(
        addr,
        &format!(
            "GET /api/state HTTP/1.1\r\nHost: rebound.example\r\nAuthorization: Bearer {token}"
        ),
        "",
    );
    assert!(st.contains("421"), "{st}");
    let (st, body) = http(
        addr,
        &format!("GET /api/state HTTP/1.1\r\n{host}\r\nAuthorization: Bearer {token}"),
        "",
    );
    assert!(st.contains("200"), "{st}");
    assert!(body.contains(AGENT), "{body}");

    d.workload(&cg.0, "cat /etc/hostname; echo after > after.txt");
    let req = d.request_of(AGENT);
    let id = req["id"].as_str().expect("id").to_string();

    let mut b = browser::Cdp::launch(&bin);
    b.navigate(&url);
    let words = b.wait_for(
        "document.querySelector('.request .words')?.textContent || ''",
        |s| s.contains("/etc/hostname"),
    );
    assert_eq!(
        words,
        format!("{AGENT} tried to read /etc/hostname: outside its profile; paused for a decision")
    );
    let row = b.wait_for(
        "[...document.querySelectorAll('section.timeline tr.paused td.what')].map(e => e.textContent).join('\\n')",
        |s| s.contains("/etc/hostname"),
    );
    assert!(row.contains("paused for a decision"), "{row}");
    let state = b.eval("document.querySelector('#agents tr.agent')?.innerText || ''");
    assert!(
        state.as_str().unwrap_or("").contains("paused"),
        "the agents table says the agent is paused: {state}"
    );
    let drift = b.wait_for(
        "document.querySelector('section.timeline .drift')?.textContent || ''",
        |s| s.contains("violations a day"),
    );
    // Fourteen days, the window's ends named: 2 violations three days ago
    // (a bar 3/7 of the busiest's), none two days ago, 6 yesterday.
    assert!(
        drift.contains(&day(13)) && drift.contains("▄·█") && drift.contains("in all)"),
        "the drift trend: {drift}"
    );
    // The session under way, live from the daemon: what the agent did
    // within its profile so far (the programs it ran).
    let session = b.wait_for(
        "document.querySelector('section.timeline tr.session td.what')?.textContent || ''",
        |s| s.contains("its profile allows"),
    );
    assert!(
        session.starts_with("session from")
            && session.contains("so far")
            && session.contains("cat"),
        "the session row: {session}"
    );
    let shot = b.screenshot("ui-pending");
    assert!(shot.exists());
    assert!(
        !d.ws().join("after.txt").exists(),
        "the agent ran on while paused"
    );

    // The button, as a person clicks it.
    let clicked = b.eval(&format!(
        "(() => {{ const b = document.querySelector('.request[data-id=\"{id}\"] button.approve'); if (!b) return false; b.click(); return true; }})()"
    ));
    assert_eq!(
        clicked,
        serde_json::json!(true),
        "no approve button for {id}"
    );
    let code = d.wait_workload(Duration::from_secs(20));
    assert_eq!(code, Some(0), "alerts {:?}\n{}", d.alerts(), d.stderr());
    assert!(d.ws().join("after.txt").exists());
    let answered = b.wait_for(
        "[...document.querySelectorAll('section.timeline tr.approved td.what')].map(e => e.textContent).join('\\n')",
        |s| s.contains("approved by ui"),
    );
    assert!(answered.contains(&id), "{answered}");
    b.wait_for(
        "document.getElementById('pending-none').hidden ? 'no' : 'yes'",
        |s| s == "yes",
    );
    b.screenshot("ui-approved");
    drop(b);

    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    assert!(!file.exists(), "the UI's address outlived the daemon");
    let recs = support::daemon::audit_records(&d.dir.0.join("audit.jsonl"));
    let approval = recs
        .iter()
        .find(|r| r["type"] == "approval")
        .expect("an approval record");
    assert_eq!(approval["outcome"], "approved");
    assert_eq!(approval["by"], "ui");
    // The session's end is in the log once the daemon stops.
    let ended = recs
        .iter()
        .rfind(|r| r["type"] == "activity" && r["agent"] == AGENT)
        .expect("an activity record");
    assert_eq!(ended["ended"], true, "{ended}");
    assert!(
        ended["within_profile"]["exec"].as_u64().unwrap_or(0) >= 2,
        "{ended}"
    );
}

#[test]
fn ui_without_a_ui_section_says_how_to_add_one() {
    let Some((_k, cg)) = privileged_with_cgroup("ui-none") else {
        return;
    };
    let yaml = profile(AGENT, 1, "");
    let d = Daemon::prepare("ui-none", "", &[(&format!("{AGENT}.yaml"), &yaml)]);
    let text = config(&cg.0).replace(
        "[ui]\nlisten = \"127.0.0.1:0\"\nurl_file = \"ui.url\"\n",
        "",
    );
    d.write_config(&text);
    let out = d.cli(&["ui", "--config", d.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no [ui] section") && err.contains("listen = \"127.0.0.1:7878\""),
        "{err}"
    );
    // Configured, but no daemon serving it.
    d.write_config(&config(&cg.0).replace("127.0.0.1:0", "127.0.0.1:7878"));
    let out = d.cli(&["ui", "--config", d.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not serving its UI"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A non-loopback address is a configuration error at its line.
    d.write_config(&config(&cg.0).replace("127.0.0.1:0", "0.0.0.0:7878"));
    let out = d.cli(&["daemon", "--check", "--config", d.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("serves only this host"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The token and address of a URL `http://ADDR/#token=T`.
fn split_url(url: &str) -> (String, String) {
    let (addr, token) = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once("/#token="))
        .unwrap_or_else(|| panic!("not a loopback URL with a token: {url}"));
    (addr.to_string(), token.to_string())
}

#[test]
fn run_serves_its_own_page_and_a_decision_there_resumes_the_agent() {
    let Some(_k) = privileged() else {
        return;
    };
    let logs = TempDir::new("ui-run-audit");
    let audit = logs.join("audit.jsonl");
    let mut r = Run::start(
        "ui-run",
        &profile("ui-run", 1, ""),
        "enforce",
        &["--ui", "127.0.0.1:0", "--audit", &audit],
        "cat /etc/hostname; echo after > after.txt",
    );
    let err = r.child.stderr.take().expect("run's stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(err));
    let url = loop {
        let l = lines
            .next()
            .expect("run ended before saying where its page is")
            .expect("read run's stderr");
        if let Some(u) = l.split("the live page is at ").nth(1) {
            break u.trim().to_string();
        }
    };
    // The rest of stderr is drained so that run never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    let (addr, token) = split_url(&url);
    let get = format!("GET /api/state HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}");
    let t = std::time::Instant::now();
    let req = loop {
        let (_, body) = http(&addr, &get, "");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON state");
        if let Some(p) = v["pending"].as_array().and_then(|p| p.first()) {
            assert_eq!(v["agents"][0]["agent"], "ui-run", "{v}");
            break p.clone();
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no request: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        req["words"]
            .as_str()
            .unwrap_or("")
            .contains("tried to read /etc/hostname"),
        "{req}"
    );
    let id = req["id"].as_str().expect("id");
    // "Approve and learn": the grant goes into the profile as well.
    let body = format!("{{\"id\":\"{id}\",\"learn\":true}}");
    let (st, answer) = http(
        &addr,
        &format!("POST /api/approve HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}"),
        &body,
    );
    assert!(st.contains("200"), "{st}: {answer}");
    let (done, dir) = r.finish_keeping_dir();
    assert_eq!(done.status, 0, "{}", done.stderr);
    assert!(
        dir.0.join("ws/after.txt").exists(),
        "the approved agent did not go on"
    );
    let recs = support::daemon::audit_records(std::path::Path::new(&audit));
    let approval = recs
        .iter()
        .find(|r| r["type"] == "approval")
        .expect("approval");
    assert_eq!(approval["by"], "ui");
    assert_eq!(approval["learned"], true, "{approval}");
    let learned = std::fs::read_to_string(dir.0.join("profile.yaml")).expect("the profile");
    assert!(learned.contains("/etc/hostname"), "{learned}");
}

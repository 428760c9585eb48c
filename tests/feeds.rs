//! Privileged tests of the daemon's SOC feeds against real receivers on
//! loopback: OCSF records a webhook and a Splunk HEC receive, checked by
//! the OCSF schema validator from PyPI; RFC 5424 messages rsyslog parses;
//! a receiver that is down (also across a daemon restart) loses nothing
//! and gets every record in order; Prometheus metrics.
mod support;

use std::{io::Read, io::Write, path::Path, time::Duration};

use serde_json::Value;
use support::{
    agentwatch,
    daemon::{wait_for, Daemon},
    pki::Pki,
    privileged, privileged_with_cgroup,
    receiver::{free_port, ocsf_python, HttpReceiver, Rsyslog},
    run::profile,
    Cgroup,
};

fn agent_toml(name: &str, cg: &Path) -> String {
    format!(
        "\n[[agent]]\nname = \"{name}\"\nprofile = \"{name}.yaml\"\nmode = \"monitor\"\nworkspace = \"WS\"\n[agent.select]\ncgroup = \"{}\"\n",
        cg.display()
    )
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    r
}

/// The value of the sample `name{labels}` in exposition text.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

const VIOLATIONS: &str =
    "cat /etc/hostname > /dev/null; python3 -c \"import socket; socket.socket().connect_ex((\\\"127.0.0.1\\\", 9))\"";

#[test]
fn ocsf_reaches_a_webhook_and_splunk_hec_validates_and_metrics_count_it() {
    let Some(_k) = privileged() else { return };
    let Some(py) = ocsf_python() else { return };
    let Some(cg) = Cgroup::new("feed-ocsf") else {
        eprintln!("SKIP: no cgroup v2 hierarchy to select by");
        return;
    };
    let port = free_port();
    let rx = HttpReceiver::start(port);
    let mport = free_port();
    let yaml = profile("fd-ocsf", 1, "");
    let d = Daemon::prepare("feed-ocsf", "", &[("fd-ocsf.yaml", &yaml)]);
    // Secrets in files of their own (mounted Secrets), relative to the
    // configuration's directory.
    std::fs::write(d.dir.0.join("hec-token"), "test-token\n").unwrap();
    std::fs::write(d.dir.0.join("hook-token"), "hook-secret\n").unwrap();
    // The audit log signs checkpoints, which go to the feeds too.
    let keygen = agentwatch()
        .args(["audit", "keygen"])
        .arg(d.dir.0.join("audit"))
        .output()
        .expect("audit keygen");
    assert!(keygen.status.success(), "{keygen:?}");
    d.write_config(&format!(
        r#"[daemon]
alerts = "alerts.jsonl"
rescan = "200ms"
[audit]
path = "audit.jsonl"
key = "audit.key"
checkpoint = "300ms"
[metrics]
listen = "127.0.0.1:{mport}"
[[feed]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
events = "all"
spool_dir = "spool-hook"
token_file = "hook-token"
headers = {{ X-Tenant = "acme" }}
[[feed]]
name = "hec"
kind = "splunk_hec"
url = "http://127.0.0.1:{port}/services/collector/event"
token_file = "hec-token"
spool_dir = "spool-hec"
{}"#,
        agent_toml("fd-ocsf", &cg.0)
    ));
    let mut d = d.start();
    d.workload(&cg.0, VIOLATIONS);
    assert_eq!(
        d.wait_workload(Duration::from_secs(30)),
        Some(0),
        "{:?}",
        d.alerts()
    );

    let classes = |lines: &[Value]| -> Vec<u64> {
        let mut c: Vec<u64> = lines
            .iter()
            .filter_map(|l| l["class_uid"].as_u64())
            .collect();
        c.sort();
        c.dedup();
        c
    };
    let rule_names = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["class_uid"] == 2004)
            .filter_map(|f| f["finding_info"]["analytic"]["name"].as_str())
            .map(str::to_string)
            .collect()
    };
    // An activity is spooled before its finding, so a delivery batch can end
    // between the two: wait for both findings, not just for the classes.
    wait_for("OCSF on the webhook", Duration::from_secs(30), || {
        let lines = rx.lines("/hook");
        let rules = rule_names(&lines);
        classes(&lines) == vec![0, 1001, 1007, 2004, 4001]
            && rules.iter().any(|r| r.starts_with("file/"))
            && rules.iter().any(|r| r.starts_with("network/"))
    });
    let hook = rx.lines("/hook");
    let checkpoint = hook
        .iter()
        .find(|l| l["class_uid"] == 0)
        .map(|l| l["unmapped"]["checkpoint"].clone())
        .expect("a checkpoint");
    assert!(
        checkpoint["signature"]
            .as_str()
            .is_some_and(|s| s.len() == 128),
        "{checkpoint}"
    );
    for r in rx.requests().iter().filter(|r| r.path == "/hook") {
        assert_eq!(r.header("X-Tenant"), Some("acme"));
        assert_eq!(r.header("Authorization"), Some("Bearer hook-secret"));
    }
    let file = d.dir.0.join("hook.jsonl");
    let text: Vec<String> = hook.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/tools/ocsf_validate.py"
        ))
        .arg(&file)
        .output()
        .expect("run the OCSF validator");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "OCSF validation failed:\n{said}");
    for class in [
        "base_event",
        "process_activity",
        "file_activity",
        "network_activity",
        "detection_finding",
    ] {
        assert!(said.contains(class), "{class} not validated: {said}");
    }
    let rules = rule_names(&hook);
    assert!(rules.iter().any(|r| r.starts_with("file/")), "{rules:?}");
    assert!(rules.iter().any(|r| r.starts_with("network/")), "{rules:?}");

    // Splunk HEC: the token, and each finding wrapped as HEC wants. Both
    // findings (file and network) may come in separate requests.
    let hec_events = || -> (Vec<String>, Vec<Value>) {
        let hec: Vec<_> = rx
            .requests()
            .into_iter()
            .filter(|r| r.path == "/services/collector/event")
            .collect();
        let auth = hec
            .iter()
            .map(|r| r.header("Authorization").unwrap_or_default().to_string())
            .collect();
        let events = hec
            .iter()
            .flat_map(|r| {
                serde_json::Deserializer::from_str(&r.body)
                    .into_iter::<Value>()
                    .map(|v| v.expect("HEC JSON"))
                    .collect::<Vec<_>>()
            })
            .collect();
        (auth, events)
    };
    let findings = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["event"]["class_uid"] == 2004)
            .cloned()
            .collect()
    };
    wait_for("both findings at the HEC", Duration::from_secs(30), || {
        findings(&hec_events().1).len() >= 2
    });
    let (auth, events) = hec_events();
    assert!(auth.iter().all(|a| a == "Splunk test-token"), "{auth:?}");
    for e in &findings(&events) {
        assert_eq!(e["sourcetype"], "agentwatch:ocsf");
        assert_eq!(e["event"]["class_uid"], 2004);
        assert!(e["time"].as_f64().is_some() && e["host"].is_string());
    }

    // A batch is counted delivered once the receiver has answered, a moment
    // after it has been seen above.
    let delivered = |m: &str| {
        sample(
            m,
            r#"agentwatch_feed_records_total{feed="hook",state="delivered"}"#,
        )
    };
    wait_for(
        "the webhook's deliveries counted",
        Duration::from_secs(10),
        || delivered(&scrape(mport)).is_some_and(|n| n >= 4),
    );
    let m = scrape(mport);
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    let alerts = sample(
        &m,
        r#"agentwatch_decisions_total{agent="fd-ocsf",action="alert"}"#,
    );
    assert!(alerts.is_some_and(|n| n >= 2), "{m}");
    assert_eq!(
        sample(&m, r#"agentwatch_pending_approvals{agent="fd-ocsf"}"#),
        Some(0),
        "{m}"
    );
    assert!(
        sample(&m, r#"agentwatch_bpf_map_max_entries{map="WATCHED"}"#).is_some(),
        "{m}"
    );
    assert!(
        sample(&m, r#"agentwatch_events_total{stage="userspace"}"#).is_some_and(|n| n > 0),
        "{m}"
    );
    assert!(
        m.contains(r#"agentwatch_kernel_decisions_total{class="file",outcome="allowed"}"#),
        "{m}"
    );
    assert_eq!(d.stop(), Some(0));
    // The daemon sealed its log as it stopped; the feeds' checkpoint is
    // one of the log's.
    let log = d.dir.0.join("audit.jsonl");
    let out = agentwatch()
        .args(["audit", "verify", "--json", "--key"])
        .arg(d.dir.0.join("audit.pub"))
        .arg(&log)
        .output()
        .expect("audit verify");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["sealed"], true, "{report}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(checkpoint["signature"].as_str().unwrap()),
        "the feed's checkpoint is not in the log"
    );
}

#[test]
fn syslog_findings_are_rfc5424_that_rsyslog_parses_over_udp_and_tcp() {
    let Some((_k, cg)) = privileged_with_cgroup("feed-syslog") else {
        return;
    };
    let yaml = profile("fd-sys", 1, "");
    let d = Daemon::prepare("feed-syslog", "", &[("fd-sys.yaml", &yaml)]);
    let Some(rs) = Rsyslog::start(&d.dir.0) else {
        return;
    };
    d.write_config(&format!(
        r#"[daemon]
alerts = "alerts.jsonl"
rescan = "200ms"
[[feed]]
name = "sys-udp"
kind = "syslog"
address = "127.0.0.1:{}"
spool_dir = "spool-udp"
[[feed]]
name = "sys-tcp"
kind = "syslog"
transport = "tcp"
address = "127.0.0.1:{}"
format = "alerts"
spool_dir = "spool-tcp"
{}"#,
        rs.udp,
        rs.tcp,
        agent_toml("fd-sys", &cg.0)
    ));
    let mut d = d.start();
    d.workload(&cg.0, "cat /etc/hostname > /dev/null");
    assert_eq!(d.wait_workload(Duration::from_secs(30)), Some(0));
    wait_for("two messages at rsyslog", Duration::from_secs(30), || {
        rs.received().len() >= 2
    });
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut msgids = Vec::new();
    for line in rs.received() {
        // version|hostname|app-name|procid|msgid|structured-data|msg
        let f: Vec<&str> = line.splitn(7, '|').collect();
        assert_eq!(f.len(), 7, "{line}");
        assert_eq!(
            (f[0], f[1], f[2]),
            ("1", host.as_str(), "agentwatch"),
            "{line}"
        );
        assert!(
            f[5].starts_with(
                r#"[agentwatch@32473 agent="fd-sys" rule="file/unknown" action="alert"]"#
            ),
            "{line}"
        );
        let msg: Value = serde_json::from_str(f[6].trim()).expect("the record as the message");
        match f[4] {
            "finding" => assert_eq!(msg["class_uid"], 2004),
            "alert" => assert_eq!(msg["rule"], "file/unknown"),
            other => panic!("unexpected msgid {other}: {line}"),
        }
        msgids.push(f[4].to_string());
    }
    msgids.sort();
    assert_eq!(msgids, vec!["alert", "finding"]);
    assert_eq!(d.stop(), Some(0));
}

/// Receivers over TLS, verified against the feed's `ca_file` (a private
/// CA): an HTTPS webhook and syslog over TLS (RFC 5425, rsyslog's openssl
/// driver) get their records; the same HTTPS receiver without `ca_file`
/// (Mozilla's roots) is refused, its records kept in the spool and the
/// failures counted. A `ca_file` on a plain http:// feed is a
/// configuration error.
#[test]
fn tls_receivers_are_verified_against_the_ca_file() {
    let Some((_k, cg)) = privileged_with_cgroup("feed-tls") else {
        return;
    };
    let yaml = profile("fd-tls", 1, "");
    let d = Daemon::prepare("feed-tls", "", &[("fd-tls.yaml", &yaml)]);
    let Some(pki) = Pki::make(&d.dir.0) else {
        return;
    };
    let Some(rs) = Rsyslog::start_with_tls(&d.dir.0, Some(&pki)) else {
        return;
    };
    let tls_port = rs.tls.expect("a TLS port");
    let port = free_port();
    let rx = HttpReceiver::start_tls(port, pki.server_config());
    let mport = free_port();
    let feeds = format!(
        r#"[metrics]
listen = "127.0.0.1:{mport}"
[[feed]]
name = "hook-ca"
kind = "webhook"
url = "https://127.0.0.1:{port}/ca"
format = "alerts"
ca_file = "ca.pem"
spool_dir = "spool-ca"
[[feed]]
name = "hook-noca"
kind = "webhook"
url = "https://localhost:{port}/noca"
format = "alerts"
spool_dir = "spool-noca"
[[feed]]
name = "sys-tls"
kind = "syslog"
transport = "tls"
address = "127.0.0.1:{tls_port}"
format = "alerts"
ca_file = "ca.pem"
spool_dir = "spool-tls"
"#
    );
    // A ca_file where there is no TLS is refused with the reason.
    d.write_config(&format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\n[[feed]]\nname = \"plain\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/\"\nca_file = \"ca.pem\"\n{}",
        agent_toml("fd-tls", &cg.0)
    ));
    let check = d.cli(&["daemon", "--check", "--config", d.config.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{said}");
    assert!(said.contains("ca_file verifies TLS receivers"), "{said}");

    d.write_config(&format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n{feeds}{}",
        agent_toml("fd-tls", &cg.0)
    ));
    let mut d = d.start();
    d.workload(&cg.0, "cat /etc/hostname > /dev/null");
    assert_eq!(d.wait_workload(Duration::from_secs(30)), Some(0));
    wait_for(
        "the alert over HTTPS and syslog TLS",
        Duration::from_secs(30),
        || !rx.lines("/ca").is_empty() && !rs.received_tls().is_empty(),
    );
    assert_eq!(rx.lines("/ca")[0]["rule"], "file/unknown");
    let line = &rs.received_tls()[0];
    assert!(line.starts_with("1|"), "{line}");
    assert!(line.contains("|alert|"), "{line}");
    // Without the CA the receiver's certificate is unknown: refused,
    // counted, kept.
    let failures = |m: &str| sample(m, r#"agentwatch_feed_failures_total{feed="hook-noca"}"#);
    wait_for(
        "the unverified receiver's failures counted",
        Duration::from_secs(20),
        || failures(&scrape(mport)).is_some_and(|n| n > 0),
    );
    assert!(
        rx.lines("/noca").is_empty(),
        "a receiver nobody can verify got records"
    );
    assert!(
        d.stderr().contains("hook-noca"),
        "the refusal was not said: {}",
        d.stderr()
    );
    assert_eq!(d.stop(), Some(0));
}

/// Alert records as the receiver got them: (event ts_ns) in arrival order.
fn arrived(rx: &HttpReceiver) -> Vec<u64> {
    rx.lines("/late")
        .iter()
        .map(|a| a["event"]["ts_ns"].as_u64().expect("ts_ns"))
        .collect()
}

#[test]
fn a_receiver_that_is_down_loses_nothing_even_across_a_daemon_restart() {
    let Some((_k, cg)) = privileged_with_cgroup("feed-down") else {
        return;
    };
    let port = free_port();
    let yaml = profile("fd-late", 1, "");
    let d = Daemon::prepare("feed-down", "", &[("fd-late.yaml", &yaml)]);
    d.write_config(&format!(
        r#"[daemon]
alerts = "alerts.jsonl"
rescan = "200ms"
# Every one of the identical alerts is counted on the way.
[alerts]
window = "off"
[[feed]]
name = "late"
kind = "webhook"
url = "http://127.0.0.1:{port}/late"
format = "alerts"
spool_dir = "spool-late"
{}"#,
        agent_toml("fd-late", &cg.0)
    ));
    let mut d = d.start();
    let loop_of = |n: u32| format!("for i in $(seq 1 {n}); do cat /etc/hostname > /dev/null; done");
    let spooled = |d: &Daemon| {
        std::fs::read_to_string(d.dir.0.join("spool-late/records.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    // Down: 15 alerts wait in the spool.
    d.workload(&cg.0, &loop_of(15));
    assert_eq!(d.wait_workload(Duration::from_secs(30)), Some(0));
    wait_for("15 spooled records", Duration::from_secs(20), || {
        spooled(&d) >= 15
    });
    // Back: delivered, in order.
    let rx = HttpReceiver::start(port);
    wait_for("15 delivered", Duration::from_secs(40), || {
        arrived(&rx).len() >= 15
    });
    drop(rx);

    // Down again, and the daemon restarts meanwhile.
    d.workload(&cg.0, &loop_of(15));
    assert_eq!(d.wait_workload(Duration::from_secs(30)), Some(0));
    wait_for("15 more spooled", Duration::from_secs(20), || {
        spooled(&d) >= 15
    });
    assert_eq!(d.stop(), Some(0));
    let rx = HttpReceiver::start(port);
    let mut d = d.start();
    wait_for("15 more delivered", Duration::from_secs(40), || {
        arrived(&rx).len() >= 15
    });
    std::thread::sleep(Duration::from_millis(500));

    let alerts: Vec<u64> = d
        .alerts()
        .iter()
        .filter(|a| a["type"] == "alert")
        .map(|a| a["event"]["ts_ns"].as_u64().unwrap())
        .collect();
    assert_eq!(alerts.len(), 30, "alerts raised");
    // The second receiver got exactly the second 15, in the order raised.
    assert_eq!(arrived(&rx), alerts[15..].to_vec());
    assert_eq!(d.stop(), Some(0));
}

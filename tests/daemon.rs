//! Privileged tests of `agentwatch daemon` against this host's kernel:
//! agents selected by cgroup are enforced with no `agentwatch run` in
//! sight, the CLI reaches them through the daemon's control socket
//! (refusing and logging peers that may not), and a reload swaps a valid
//! configuration in or keeps the running one and says why.
mod support;

use std::{os::unix::fs::MetadataExt, os::unix::process::CommandExt, time::Duration};

use serde_json::Value;
use support::{daemon::Daemon, privileged, privileged_with_cgroup, run::profile, Cgroup};

fn config(audit: bool, agents: &[(&str, &str, &std::path::Path)], extra: &str) -> String {
    let mut s = format!("[daemon]\nalerts = \"alerts.jsonl\"\npause_timeout = \"60s\"\nrescan = \"200ms\"\n{extra}\n");
    if audit {
        s.push_str("[audit]\npath = \"audit.jsonl\"\nfsync = \"100ms\"\n");
    }
    for (name, mode, cgroup) in agents {
        s.push_str(&format!(
            "\n[[agent]]\nname = \"{name}\"\nprofile = \"{name}.yaml\"\nmode = \"{mode}\"\nworkspace = \"WS\"\n[agent.select]\ncgroup = \"{}\"\n",
            cgroup.display()
        ));
    }
    s
}

fn write_config(d: &Daemon, text: &str) {
    d.write_config(text);
}

fn records(d: &Daemon) -> Vec<Value> {
    support::daemon::audit_records(&d.dir.0.join("audit.jsonl"))
}

#[test]
fn a_selected_agent_is_paused_approved_and_audited_through_the_daemon() {
    let Some((_k, cg)) = privileged_with_cgroup("daemon-coder") else {
        return;
    };
    let yaml = profile("dmn-coder", 1, "");
    let d = Daemon::prepare("daemon-coder", "", &[("dmn-coder.yaml", &yaml)]);
    write_config(&d, &config(true, &[("dmn-coder", "enforce", &cg.0)], ""));
    let check = d.cli(&["daemon", "--check", "--config", d.config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut d = d.start();

    // Nothing of agentwatch starts the workload: it joins the cgroup.
    d.workload(&cg.0, "cat /etc/hostname; echo after > after.txt");
    let req = d.request_of("dmn-coder");
    assert!(
        req["rule"].as_str().unwrap_or("").starts_with("file/"),
        "{req}"
    );
    assert!(
        req["what"].as_str().unwrap_or("").contains("/etc/hostname"),
        "{req}"
    );
    assert!(
        !d.ws().join("after.txt").exists(),
        "the agent ran on while paused"
    );

    let status = d.json(&["status"]);
    let agents = status["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 1, "{status}");
    assert_eq!(agents[0]["agent"], "dmn-coder");
    assert_eq!(agents[0]["mode"], "enforce");
    assert_eq!(agents[0]["pending"], 1);

    let id = req["id"].as_str().expect("id");
    let reply = d.json(&["approve", id]);
    assert_eq!(reply["ok"], true, "{reply}");
    let code = d.wait_workload(Duration::from_secs(20));
    assert_eq!(
        code,
        Some(0),
        "pending {}; alerts {:?}",
        d.json(&["pending"]),
        d.alerts()
    );
    assert!(d.ws().join("after.txt").exists());

    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    assert!(!d.socket.exists(), "the control socket outlived the daemon");
    let recs = records(&d);
    let kinds: Vec<&str> = recs.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"daemon"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"daemon"), "{kinds:?}");
    let decision = recs
        .iter()
        .find(|r| r["type"] == "decision")
        .expect("a decision record");
    assert_eq!(decision["agent"], "dmn-coder");
    assert_eq!(decision["action"], "pause");
    assert_eq!(decision["approval"], id);
    let sha = support::daemon::sha256_hex(&std::fs::read(d.dir.0.join("dmn-coder.yaml")).unwrap());
    assert_eq!(decision["profile_sha256"], sha);
    let answer = recs
        .iter()
        .find(|r| r["type"] == "approval")
        .expect("an approval record");
    assert_eq!(
        (answer["outcome"].as_str(), answer["by"].as_str()),
        (Some("approved"), Some("root"))
    );
    let verify = d.cli(&[
        "audit",
        "verify",
        d.dir.0.join("audit.jsonl").to_str().unwrap(),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// A read-only bind mount of a directory over itself; on drop, undone
/// and the directory removed.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn mount(dir: &std::path::Path) -> Option<Self> {
        let ok = |args: &[&str]| {
            std::process::Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["--bind"]) {
            let _ = std::fs::remove_dir_all(dir);
            return None;
        }
        let guard = Self(dir.to_path_buf());
        ok(&["-o", "remount,bind,ro"]).then_some(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The DaemonSet's case: the profile is on a read-only mount. `approve
/// --learn` writes the learned rule into the overlay in the state
/// directory instead, the agent resumes, the rule holds at once and after
/// a reload, `profile show` applies it, and the profile is untouched.
#[test]
fn approve_learn_on_a_read_only_profile_goes_to_the_overlay() {
    let Some((_k, cg)) = privileged_with_cgroup("daemon-overlay") else {
        return;
    };
    let yaml = profile("dmn-ovl", 1, "");
    let d = Daemon::prepare("daemon-overlay", "", &[]);
    // Outside the daemon's directory: the guard that removes that
    // directory is dropped before the mount is undone.
    let ro = std::env::temp_dir().join(format!("aw-test-ro-profile-{}", std::process::id()));
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("dmn-ovl.yaml"), &yaml).unwrap();
    let Some(_mount) = ReadOnly::mount(&ro) else {
        eprintln!("SKIP: cannot bind-mount a directory read-only here");
        return;
    };
    assert!(
        std::fs::write(ro.join("probe"), "x").is_err(),
        "the mount is writable"
    );
    let text = config(true, &[("dmn-ovl", "enforce", &cg.0)], "").replace(
        "profile = \"dmn-ovl.yaml\"",
        &format!(
            "profile = {:?}",
            ro.join("dmn-ovl.yaml").display().to_string()
        ),
    );
    write_config(&d, &text);
    let mut d = d.start();

    d.workload(&cg.0, "cat /etc/hostname; echo after > after.txt");
    let req = d.request_of("dmn-ovl");
    let id = req["id"].as_str().expect("id").to_string();
    let reply = d.json(&["approve", &id, "--learn"]);
    assert_eq!(reply["ok"], true, "{reply}");
    let said = reply.to_string();
    assert!(said.contains("overlay"), "{said}");
    assert_eq!(
        d.wait_workload(Duration::from_secs(20)),
        Some(0),
        "{:?}",
        d.alerts()
    );
    assert!(d.ws().join("after.txt").exists());

    let overlay = d.dir.0.join("overlays/dmn-ovl.yaml");
    let o = std::fs::read_to_string(&overlay).expect("the overlay");
    assert!(o.contains("/etc/hostname") && o.contains(&id), "{o}");
    assert_eq!(
        std::fs::read_to_string(ro.join("dmn-ovl.yaml")).unwrap(),
        yaml
    );
    let answer = records(&d)
        .into_iter()
        .find(|r| r["type"] == "approval")
        .expect("an approval record");
    assert_eq!(
        (answer["outcome"].as_str(), answer["learned"].as_bool()),
        (Some("approved"), Some(true))
    );

    // The learned rule holds now, and after a reload reads the
    // configuration (and the overlay) again.
    for round in ["now", "after a reload"] {
        if round != "now" {
            assert_eq!(d.json(&["reload"])["ok"], true);
        }
        d.workload(&cg.0, "cat /etc/hostname > /dev/null");
        assert_eq!(
            d.wait_workload(Duration::from_secs(20)),
            Some(0),
            "{round}: pending {}",
            d.json(&["pending"])
        );
    }
    assert_eq!(d.json(&["pending"]).as_array().map(Vec::len), Some(0));

    let shown = d.cli(&[
        "profile",
        "show",
        ro.join("dmn-ovl.yaml").to_str().unwrap(),
        "--config",
        d.config.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(out.starts_with("overlay: 1 approval(s)"), "{out}");
    assert!(out.contains("hostname"), "{out}");
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
}

#[test]
fn reload_swaps_a_valid_config_in_and_keeps_the_running_one_otherwise() {
    let Some(_k) = privileged() else { return };
    let (Some(cga), Some(cgb)) = (Cgroup::new("reload-a"), Cgroup::new("reload-b")) else {
        eprintln!("SKIP: no cgroup v2 hierarchy to select by");
        return;
    };
    let ya = profile("dmn-a", 1, "");
    let yb = profile("dmn-b", 1, "");
    let d = Daemon::prepare(
        "daemon-reload",
        "",
        &[("dmn-a.yaml", &ya), ("dmn-b.yaml", &yb)],
    );
    let one = config(false, &[("dmn-a", "monitor", &cga.0)], "");
    write_config(&d, &one);
    let mut d = d.start();

    // A broken file: refused with its line, nothing changes.
    write_config(&d, &one.replace("mode = \"monitor\"", "mode = \"block\""));
    let out = d.cli(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let err = reply["error"].as_str().unwrap_or("");
    let written = std::fs::read_to_string(&d.config).unwrap();
    let line = written.lines().position(|l| l.starts_with("mode")).unwrap() + 1;
    assert!(err.contains(&format!("agentwatch.toml:{line}:")), "{err}");
    assert!(err.contains("the running one stays"), "{err}");
    // The same through SIGHUP: said on stderr, after the refusal above
    // (which the daemon logged too). Waiting for the second one keeps the
    // SIGHUP's reload from landing after the next configuration is written.
    support::daemon::signal(d.child.as_ref().unwrap().id() as i32, libc::SIGHUP);
    let refusals = |d: &Daemon| d.stderr().matches("not applied").count();
    let t = std::time::Instant::now();
    while refusals(&d) < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refusals(&d) >= 2, "{}", d.stderr());
    let st = d.json(&["status", "dmn-a"]);
    assert_eq!(st["mode"], "monitor");

    // Valid: dmn-a switches to enforce, dmn-b joins.
    let two = config(
        false,
        &[("dmn-a", "enforce", &cga.0), ("dmn-b", "enforce", &cgb.0)],
        "",
    );
    write_config(&d, &two);
    let reply = d.json(&["reload"]);
    let msg = reply["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("added dmn-b") && msg.contains("changed dmn-a"),
        "{msg}"
    );
    let st = d.json(&["status"]);
    let modes: Vec<(String, String)> = st["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent"].as_str().unwrap().into(),
                a["mode"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        vec![
            ("dmn-a".into(), "enforce".into()),
            ("dmn-b".into(), "enforce".into())
        ]
    );
    // The new agent is enforced: its violation pauses it, deny kills it.
    d.workload(&cgb.0, "cat /etc/hostname; echo after > after-b.txt");
    let req = d.request_of("dmn-b");
    d.json(&["deny", req["id"].as_str().unwrap()]);
    assert_ne!(d.wait_workload(Duration::from_secs(20)), Some(0));
    assert!(!d.ws().join("after-b.txt").exists());

    // dmn-b leaves the configuration.
    write_config(&d, &config(false, &[("dmn-a", "enforce", &cga.0)], ""));
    let reply = d.json(&["reload"]);
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or("")
            .contains("removed dmn-b"),
        "{reply}"
    );
    let out = d.cli(&["status", "dmn-b"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent named dmn-b"));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn the_control_socket_admits_root_and_the_group_and_logs_refusals() {
    let Some((_k, cg)) = privileged_with_cgroup("daemon-access") else {
        return;
    };
    let Some(adm) = nix::unistd::Group::from_name("adm").ok().flatten() else {
        eprintln!("SKIP: no group adm on this host to configure");
        return;
    };
    let nobody = 65534;
    let yaml = profile("dmn-acc", 1, "");
    let as_user = |d: &Daemon, gid: u32| {
        let mut c = d.cli_cmd(&["status", "--json"]);
        c.uid(nobody).gid(gid);
        c.output().expect("run the CLI as another user")
    };

    let d = Daemon::prepare("daemon-access", "", &[("dmn-acc.yaml", &yaml)]);
    write_config(
        &d,
        &config(
            false,
            &[("dmn-acc", "monitor", &cg.0)],
            "control_group = \"adm\"",
        ),
    );
    let mut d = d.start();
    let md = std::fs::metadata(&d.socket).unwrap();
    assert_eq!((md.mode() & 0o777, md.gid()), (0o660, adm.gid.as_raw()));
    let member = as_user(&d, adm.gid.as_raw());
    assert!(
        member.status.success(),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    let other = as_user(&d, nobody);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("ermission denied"));
    assert_eq!(d.stop(), Some(0));

    // No group configured: root's group can connect, but only root may.
    write_config(&d, &config(false, &[("dmn-acc", "monitor", &cg.0)], ""));
    let d = d.start();
    let md = std::fs::metadata(&d.socket).unwrap();
    assert_eq!((md.mode() & 0o777, md.gid()), (0o660, 0));
    let refused = as_user(&d, 0);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only root may control agentwatch"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let log = d.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("control request refused") && l.contains("65534")),
        "{log}"
    );
}

/// The systemd notification protocol, against a NOTIFY_SOCKET this test
/// owns: READY once serving, WATCHDOG pings at half of WATCHDOG_USEC,
/// RELOADING then READY around a SIGHUP reload, STOPPING on SIGTERM.
#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let Some((_k, cg)) = privileged_with_cgroup("daemon-notify") else {
        return;
    };
    let yaml = profile("dmn-notify", 1, "");
    let d = Daemon::prepare("daemon-notify", "", &[("dmn-notify.yaml", &yaml)]);
    write_config(&d, &config(false, &[("dmn-notify", "monitor", &cg.0)], ""));
    let notify = d.dir.0.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).expect("bind NOTIFY_SOCKET");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut d = d.start_with_env(&[
        ("NOTIFY_SOCKET", notify.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let pid = d.child.as_ref().unwrap().id();
    let ready = recv();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(ready.contains(&format!("MAINPID={pid}")), "{ready}");
    // Pings keep coming (the main loop sends them at half the interval).
    assert_eq!(recv(), "WATCHDOG=1");
    assert_eq!(recv(), "WATCHDOG=1");

    support::daemon::signal(pid as i32, libc::SIGHUP);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("READY=1")) {
        let m = recv();
        if m != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert!(
        seen[0].contains("RELOADING=1") && seen[0].contains("MONOTONIC_USEC="),
        "{seen:?}"
    );
    assert_eq!(d.stop(), Some(0));
    let mut last = String::new();
    while let Ok(n) = {
        let mut buf = [0u8; 4096];
        sock.recv(&mut buf)
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    } {
        if n.contains("STOPPING") {
            last = n;
            break;
        }
    }
    assert!(last.contains("STOPPING=1"), "no STOPPING=1");
}

/// Process state letter (R, S, T, ...) from /proc.
fn proc_state(pid: u64) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

/// Pids of processes whose cgroup.procs lists them.
fn members(cg: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// SIGKILL the daemon mid-enforcement: its pinned programs keep pausing
/// violators with no userspace at all, and a restarted daemon adopts the
/// pins, the agents' slots, the open request (same id, approvable) and
/// the records the ring buffer held meanwhile. `--unload` then removes
/// everything.
#[test]
fn enforcement_outlives_the_daemon_and_a_restart_adopts_it() {
    let Some(_k) = privileged() else { return };
    let (Some(cga), Some(cgb)) = (Cgroup::new("keep-a"), Cgroup::new("keep-b")) else {
        eprintln!("SKIP: no cgroup v2 hierarchy to select by");
        return;
    };
    let ya = profile("dmn-keep", 1, "");
    let yb = profile("dmn-late", 1, "");
    let d = Daemon::prepare(
        "daemon-keep",
        "",
        &[("dmn-keep.yaml", &ya), ("dmn-late.yaml", &yb)],
    );
    write_config(
        &d,
        &config(
            true,
            &[
                ("dmn-keep", "enforce", &cga.0),
                ("dmn-late", "enforce", &cgb.0),
            ],
            "",
        ),
    );
    let mut d = d.start();
    d.workload(&cga.0, "cat /etc/hostname; echo after > after.txt");
    let req = d.request_of("dmn-keep");
    let id = req["id"].as_str().expect("id").to_string();

    // kill -9: nothing of userspace is left.
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        std::fs::read_dir(d.pin_dir.join("links")).is_ok_and(|mut l| l.next().is_some()),
        "no pinned links in {}",
        d.pin_dir.display()
    );
    let stopped = req["pid"].as_u64().unwrap();
    assert_eq!(proc_state(stopped), Some('T'), "the paused process ran on");

    // The kernel alone still selects, judges and pauses a new violator.
    d.workload(&cgb.0, "cat /etc/hostname; echo late > late.txt");
    let t = std::time::Instant::now();
    let paused = loop {
        let m = members(&cgb.0);
        if m.iter().any(|p| proc_state(*p) == Some('T')) {
            break true;
        }
        if t.elapsed() > Duration::from_secs(10) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        paused,
        "no process of the second agent was paused by the kernel"
    );
    assert!(!d.ws().join("late.txt").exists());

    // A restart adopts: the same request, approvable; the buffered violation.
    let mut d = d.start();
    assert!(
        d.stderr().contains("adopted the sensors pinned"),
        "{}",
        d.stderr()
    );
    let again = d.request_of("dmn-keep");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["rule"], req["rule"]);
    let late = d.request_of("dmn-late");
    assert!(
        late["rule"].as_str().unwrap_or("").starts_with("file/"),
        "the buffered record was not judged: {late}"
    );
    assert_eq!(d.json(&["approve", &id])["ok"], true);
    assert_eq!(
        d.json(&["approve", late["id"].as_str().unwrap()])["ok"],
        true
    );
    let t = std::time::Instant::now();
    while !(d.ws().join("after.txt").exists() && d.ws().join("late.txt").exists())
        && t.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.ws().join("after.txt").exists() && d.ws().join("late.txt").exists());

    // One chain across both daemons.
    assert_eq!(d.stop(), Some(0));
    let verify = d.cli(&[
        "audit",
        "verify",
        d.dir.0.join("audit.jsonl").to_str().unwrap(),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let starts = records(&d)
        .iter()
        .filter(|r| r["type"] == "daemon" && r["event"] == "started")
        .count();
    assert_eq!(starts, 2);

    // Stopped, the pins stay; --unload removes them.
    assert!(d.pin_dir.join("links").is_dir());
    let out = d.cli(&["daemon", "--unload", "--config", d.config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.pin_dir.exists());
}

/// The `learned_session` records of the audit log.
fn learned(d: &Daemon) -> Vec<Value> {
    records(d)
        .into_iter()
        .filter(|r| r["type"] == "learned_session")
        .collect()
}

#[test]
fn a_learning_agent_is_learned_session_by_session_with_guardrails_still_watched() {
    let Some((_k, cg)) = privileged_with_cgroup("daemon-learner") else {
        return;
    };
    let d = Daemon::prepare("daemon-learner", "", &[]);
    let text = format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n[audit]\npath = \"audit.jsonl\"\nfsync = \"100ms\"\n\
         [[agent]]\nname = \"learner\"\nprofile = \"learner.yaml\"\nlearn = true\nlearn_idle = \"1s\"\nworkspace = \"WS\"\n\
         [agent.select]\ncgroup = \"{}\"\n",
        cg.0.display()
    );
    write_config(&d, &text);
    let profile = d.dir.0.join("learner.yaml");
    assert!(!profile.exists());
    let mut d = d.start();
    let status = d.json(&["status"]);
    assert!(
        status["agents"][0]["learning"]["session_events"].is_u64(),
        "{status}"
    );

    // Three sessions, each with names the others never used.
    let sessions = [
        "mkdir -p out && echo one > out/a.txt && cat /etc/hostname > /dev/null",
        "mkdir -p notes && echo two > notes/b.txt && cat /etc/hostname > /dev/null",
        "mkdir -p build/x && echo three > build/x/c.txt && cat out/a.txt > /dev/null",
    ];
    for (i, script) in sessions.iter().enumerate() {
        d.workload(&cg.0, script);
        assert_eq!(d.wait_workload(Duration::from_secs(20)), Some(0));
        let t = std::time::Instant::now();
        while learned(&d).len() <= i {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "session {} never appended: {:?}\n{}",
                i + 1,
                learned(&d),
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let rec = &learned(&d)[i];
        assert_eq!(rec["agent"], "learner", "{rec}");
        assert_eq!(rec["sessions"], i as u64 + 1, "{rec}");
        assert!(rec.get("error").is_none(), "{rec}");
        assert_eq!(rec["profile"], profile.display().to_string(), "{rec}");
    }
    let recs = learned(&d);
    // Novelty was judged against the profile of the sessions before.
    assert!(
        recs[1]["novelty"]
            .as_object()
            .is_some_and(|n| !n.is_empty()),
        "{:?}",
        recs[1]
    );
    // Three sessions are enough for a leave-one-out verdict.
    assert_ne!(recs[2]["readiness"], "unknown", "{:?}", recs[2]);
    let yaml = std::fs::read_to_string(&profile).expect("the learned profile");
    assert!(yaml.contains("sessions: 3"), "{yaml}");
    let lint = d.cli(&["profile", "lint", profile.to_str().unwrap()]);
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );

    // Nothing of the profile was enforced or alerted while learning.
    assert!(d.alerts().is_empty(), "{:?}", d.alerts());

    // Guardrails still act: a read of /etc/shadow is a violation (the
    // pause it asks for is answered if the reader did not exit first).
    d.workload(
        &cg.0,
        "cat /etc/passwd > /dev/null; cat /etc/shadow > /dev/null",
    );
    support::daemon::wait_for("the guardrail alert", Duration::from_secs(20), || {
        d.alerts().iter().any(|a| a["rule"] == "guardrail/secrets")
    });
    if let Some(r) = d
        .json(&["pending"])
        .as_array()
        .and_then(|a| a.first().cloned())
    {
        d.json(&["deny", r["id"].as_str().expect("id")]);
    }
    d.wait_workload(Duration::from_secs(20));
    let rules: Vec<String> = d
        .alerts()
        .iter()
        .filter_map(|a| a["rule"].as_str().map(String::from))
        .collect();
    assert!(
        rules.iter().all(|r| r.starts_with("guardrail/")),
        "{rules:?}"
    );

    // Stopping the daemon appends the session under way.
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    let recs = learned(&d);
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert_eq!(recs[3]["sessions"], 4, "{:?}", recs[3]);
    let yaml = std::fs::read_to_string(&profile).expect("the learned profile");
    // A guardrail's subject is listed for review, never allowed.
    let (allowed, review) = yaml.split_once("\nreview:").expect("a review list");
    assert!(
        !allowed.contains("/etc/shadow"),
        "a guardrail subject was learned:\n{yaml}"
    );
    assert!(review.contains("guardrail: secrets"), "{yaml}");
}

/// An `agentwatch exec` launch of `agent` that says `ready`, then, five
/// seconds on, prints what its reasons descriptor heard meanwhile.
fn listening_launch(
    d: &Daemon,
    agent: &str,
) -> (
    support::ChildGuard,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut child = d
        .cli_cmd(&[
            "exec",
            "--agent",
            agent,
            "--",
            "bash",
            "-c",
            "echo ready; sleep 5; timeout 2 cat <&$AGENTWATCH_REASONS_FD; echo done",
        ])
        .current_dir(d.ws())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("agentwatch exec");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let child = support::ChildGuard(child);
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut out, &mut ready).expect("the launch");
    assert_eq!(ready.trim(), "ready", "{}", d.stderr());
    (child, out)
}

/// The reasons a `listening_launch` heard, once it is done.
fn heard_by(
    child: support::ChildGuard,
    mut out: std::io::BufReader<std::process::ChildStdout>,
) -> Vec<Value> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).expect("the launch");
    drop(child);
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn exec_starts_a_process_of_a_daemon_agent_watched_and_sandboxed() {
    let Some(_g) = privileged() else { return };
    // Two launches within a minute are one restart more than it may have.
    let strict = "actions:\n  exec: deny\n  file: deny\n  delete: deny\n  guardrails: deny\nresources:\n  restarts: \"0/1m\"\n";
    let yaml = profile("dmn-exec", 1, strict);
    let d = Daemon::prepare("daemon-exec", "", &[("dmn-exec.yaml", &yaml)]);
    write_config(
        &d,
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n\n[[agent]]\nname = \"dmn-exec\"\nprofile = \"dmn-exec.yaml\"\nmode = \"enforce\"\nworkspace = \"WS\"\nbudget_action = \"alert\"\n[agent.select]\nlaunched = true\n",
    );
    let d = d.start();
    let home = support::TempDir::new("daemon-exec-home");
    std::fs::write(home.0.join("notes.txt"), "notes").unwrap();
    // What a systemd unit's ExecStart runs: no `agentwatch run` in sight.
    // The agent reads why from the descriptor exec gave it (bash: dash
    // takes single-digit descriptors only).
    let script = format!(
        "(cat {}/notes.txt) || echo read-refused\n\
         bash -c 'timeout 10 head -n 1 <&$AGENTWATCH_REASONS_FD'\n\
         (unshare -m true) || echo unshare-refused\n\
         ln -s .git/hooks sd; (echo x > sd/pre-commit) || echo hook-refused\n\
         echo hi > a.txt && cat a.txt",
        home.0.display()
    );
    // A guardrail inside the workspace: a read-only mount for the agent.
    std::fs::create_dir_all(d.ws().join(".git/hooks")).unwrap();
    // Another launch, under way while the first is refused.
    let (other, other_out) = listening_launch(&d, "dmn-exec");
    let out = d
        .cli_cmd(&["exec", "--agent", "dmn-exec", "--", "sh", "-c", &script])
        .current_dir(d.ws())
        .output()
        .expect("agentwatch exec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", d.stderr());
    for line in ["read-refused", "unshare-refused", "hook-refused", "hi"] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line}: {stdout}\n{stderr}"
        );
    }
    let told: Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no reason on AGENTWATCH_REASONS_FD: {stdout}\n{stderr}"));
    assert_eq!(told["rule"], "landlock/file", "{told}");
    assert!(
        told["what"]
            .as_str()
            .is_some_and(|w| w.contains("notes.txt")),
        "{told}"
    );
    // The daemon judged it as the agent: Landlock's refusal and the
    // escape are its alerts.
    let t = std::time::Instant::now();
    let rules = loop {
        let rules: Vec<String> = d
            .alerts()
            .iter()
            .filter_map(|a| a["rule"].as_str().map(String::from))
            .collect();
        let done = ["landlock/file", "guardrail/escape", "guardrail/persistence"]
            .iter()
            .all(|want| rules.iter().any(|r| r == want));
        if done || t.elapsed() > Duration::from_secs(10) {
            break rules;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(rules.iter().any(|r| r == "landlock/file"), "{rules:?}");
    assert!(rules.iter().any(|r| r == "guardrail/escape"), "{rules:?}");
    // Without the BPF LSM tier, the hook made through sd/ was refused by
    // the read-only mount; with it, by the LSM path hook. Either way it
    // is alerted and absent.
    assert!(
        rules.iter().any(|r| r == "guardrail/persistence"),
        "{rules:?}"
    );
    assert!(!d.ws().join(".git/hooks/pre-commit").exists());
    // The other launch heard what concerns the whole agent (the first
    // launch's start was one restart too many) and none of the first's
    // refusals.
    let heard = heard_by(other, other_out);
    assert!(
        heard.iter().any(|l| l["rule"] == "budget/restarts"),
        "{heard:?}"
    );
    assert!(
        heard
            .iter()
            .all(|l| l["rule"] != "landlock/file" && l["rule"] != "guardrail/escape"),
        "another launch's refusals: {heard:?}"
    );
    // As another user: the daemon takes the pid as root, then exec drops.
    let out = d
        .cli_cmd(&[
            "exec", "--agent", "dmn-exec", "--user", "nobody", "--", "sh", "-c", "id -u",
        ])
        .current_dir(d.ws())
        .output()
        .expect("agentwatch exec --user");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "65534",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each launch is a start: the second is over `restarts: 0/1m`.
    support::daemon::wait_for("budget/restarts", Duration::from_secs(10), || {
        d.alerts().iter().any(|a| a["rule"] == "budget/restarts")
    });
    // An agent the daemon does not have: the command never starts.
    let out = d
        .cli_cmd(&["exec", "--agent", "nope", "--", "sh", "-c", "echo started"])
        .output()
        .expect("agentwatch exec");
    assert_eq!(out.status.code(), Some(3));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("started"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no agent named nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drift over two periods: a first day within the profile (recorded by a
/// real daemon, then moved back a day in its log), and a second where the
/// agent reads files outside it. The drift notice goes out when the day's
/// violations reach the threshold; the gauges and `agentwatch drift` say
/// what changed, and which grants nothing used.
#[test]
fn drift_shows_behaviour_that_changed_between_two_periods() {
    let Some((_k, cg)) = privileged_with_cgroup("daemon-drift") else {
        return;
    };
    let yaml = profile("dmn-drift", 1, "dns:\n  - name: \"never.example.com\"\n");
    let d = Daemon::prepare("daemon-drift", "", &[("dmn-drift.yaml", &yaml)]);
    let mport = support::receiver::free_port();
    let text = config(true, &[("dmn-drift", "monitor", &cg.0)], "").replace(
        "profile = \"dmn-drift.yaml\"",
        "profile = \"dmn-drift.yaml\"\ndrift_threshold = 3",
    ) + &format!("\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n");
    write_config(&d, &text);
    let mut d = d.start();
    // Day one: within the profile.
    d.workload(&cg.0, "ls /usr > /dev/null; cat /etc/passwd > /dev/null");
    assert_eq!(d.wait_workload(Duration::from_secs(20)), Some(0));
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    let log = d.dir.0.join("drift/dmn-drift.json");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&log).expect("the drift log")).unwrap();
    let days = v["days"].as_object_mut().expect("days");
    assert_eq!(days.len(), 1, "{days:?}");
    let (today, day_one) = days
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    assert!(
        day_one["execs"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == "/usr/bin/ls")),
        "{day_one}"
    );
    assert!(
        day_one["novel"].as_object().is_none_or(|n| n.is_empty()),
        "{day_one}"
    );
    // Moved back a day: the first period.
    let yesterday = {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", "yesterday", "+%Y-%m-%d"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    days.remove(&today);
    days.insert(yesterday.clone(), day_one);
    std::fs::write(&log, v.to_string()).unwrap();

    // Day two: the agent reads what its profile does not have.
    let mut d = d.start();
    d.workload(
        &cg.0,
        "cat /etc/hostname /etc/hosts /etc/os-release > /dev/null; head -c1 /etc/shells > /dev/null",
    );
    assert_eq!(d.wait_workload(Duration::from_secs(20)), Some(0));
    support::daemon::wait_for("the drift notice", Duration::from_secs(10), || {
        d.alerts().iter().any(|a| a["type"] == "drift")
    });
    let notice = d
        .alerts()
        .into_iter()
        .find(|a| a["type"] == "drift")
        .unwrap();
    assert_eq!(
        (notice["agent"].as_str(), notice["threshold"].as_u64()),
        (Some("dmn-drift"), Some(3))
    );
    assert!(
        notice["by_class"]["file"].as_u64().is_some_and(|n| n >= 3),
        "{notice}"
    );
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", mport)).expect("metrics");
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    let drift_line = metrics
        .lines()
        .find(|l| l.starts_with(r#"agentwatch_profile_drift{agent="dmn-drift",class="file"}"#))
        .unwrap_or_else(|| panic!("no drift gauge: {metrics}"));
    assert!(
        drift_line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 3),
        "{drift_line}"
    );
    assert!(
        metrics.contains(r#"agentwatch_unused_rules{agent="dmn-drift",class="dns"} 1"#),
        "{metrics}"
    );
    // The log is saved every minute and when the daemon stops.
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    let report = d.json(&[
        "drift",
        "dmn-drift",
        "--since",
        "2d",
        "--config",
        d.config.to_str().unwrap(),
    ]);
    assert_eq!(report["days_seen"], 2, "{report}");
    assert!(
        report["novel"]["file"].as_u64().is_some_and(|n| n >= 3),
        "{report}"
    );
    assert_eq!(
        report["novel_last_day"]["file"], report["novel"]["file"],
        "{report}"
    );
    let unused: Vec<String> = report["unused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["class"].as_str().unwrap(),
                u["rule"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        unused.contains(&"dns never.example.com".to_string()),
        "{unused:?}"
    );
    assert!(
        !unused.contains(&"executable /usr/bin/*".to_string()),
        "{unused:?}"
    );
    // Today alone: one day, with the violations.
    let one = d.cli(&[
        "drift",
        "dmn-drift",
        "--since",
        "1d",
        "--config",
        d.config.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&one.stdout);
    assert!(said.contains("file: "), "{said}");
}

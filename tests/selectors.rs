//! Privileged tests of agent selectors: processes agentwatch did not start
//! are watched when they exec inside a cgroup, as a uid, or as a binary,
//! and processes already running that match are picked up from /proc.
mod support;

use std::process::Command;

use support::*;

fn pids_of<'a>(events: &'a [serde_json::Value], kind: &'a str, path: &'a str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["path"] == path)
        .filter_map(|e| e["pid"].as_u64())
        .collect()
}

#[test]
fn cgroup_selector_watches_processes_that_exec_inside_it() {
    let Some(_k) = privileged() else { return };
    let Some(cg) = Cgroup::new("sel") else {
        eprintln!("SKIP: cannot create a cgroup v2 directory here");
        return;
    };
    let dir = TempDir::new("sel-cgroup");
    let w = Watching::start(
        &[format!("cgroup={}", cg.0.display())],
        dir.0.join("ev.jsonl"),
        3,
    );
    let inside = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && exec /bin/cat /etc/hostname",
                cg.0.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        inside.status.success(),
        "{}",
        String::from_utf8_lossy(&inside.stderr)
    );
    let outside = Command::new("/bin/cat")
        .arg("/etc/hostname")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let outside_pid = outside.id() as u64;
    let _ = outside.wait_with_output();
    let events = w.finish();

    let execs = pids_of(&events, "exec", "/bin/cat");
    assert_eq!(
        execs.len(),
        1,
        "exactly the cat inside the cgroup: {execs:?}"
    );
    assert!(!execs.contains(&outside_pid));
    let cat = events
        .iter()
        .find(|e| e["kind"] == "exec" && e["path"] == "/bin/cat")
        .unwrap();
    let rel = format!("/{}", cg.0.file_name().unwrap().to_string_lossy());
    assert_eq!(cat["cgroup"], rel.as_str(), "enriched with the cgroup path");
    assert_eq!(cat["agent"], "selected-agent");
    assert!(events
        .iter()
        .any(|e| e["kind"] == "open" && e["path"] == "/etc/hostname" && e["pid"] == cat["pid"]));
}

#[test]
fn uid_selector_watches_processes_that_exec_as_that_user() {
    let Some(_k) = privileged() else { return };
    let dir = TempDir::new("sel-uid");
    let w = Watching::start(&["uid=65534".into()], dir.0.join("ev.jsonl"), 3);
    let as_nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/cat",
            "/etc/hostname",
        ])
        .output()
        .unwrap();
    assert!(
        as_nobody.status.success(),
        "{}",
        String::from_utf8_lossy(&as_nobody.stderr)
    );
    let as_root = Command::new("/bin/cat")
        .arg("/etc/hostname")
        .output()
        .unwrap();
    assert!(as_root.status.success());
    let events = w.finish();
    let cats: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "exec" && e["path"] == "/bin/cat")
        .collect();
    assert_eq!(cats.len(), 1, "only the cat run as uid 65534: {cats:?}");
    assert_eq!(cats[0]["uid"], 65534);
    assert_eq!(
        cats[0]["argv"],
        serde_json::json!(["/bin/cat", "/etc/hostname"])
    );
}

#[test]
fn exe_selector_watches_new_and_already_running_instances_of_a_binary() {
    let Some(_k) = privileged() else { return };
    let dir = TempDir::new("sel-exe");
    let agent_bin = dir.join("agent-sleep");
    std::fs::copy("/bin/sleep", &agent_bin).unwrap();
    // Running before agentwatch starts: found through /proc. It lives
    // until it is killed below (agentwatch's start takes seconds on a
    // loaded machine), and dies with the test if that fails first.
    let mut early = ChildGuard(Command::new(&agent_bin).arg("60").spawn().unwrap());
    let w = Watching::start(&[format!("exe={agent_bin}")], dir.0.join("ev.jsonl"), 3);
    let late = Command::new(&agent_bin).arg("0.1").output().unwrap();
    assert!(late.status.success());
    let other = Command::new("/bin/sleep").arg("0.1").spawn().unwrap();
    let other_pid = other.id() as u64;
    let _ = other.wait_with_output();
    let _ = early.0.kill();
    let _ = early.0.wait();
    let early_pid = early.0.id() as u64;
    let events = w.finish();

    let new_execs = pids_of(&events, "exec", &agent_bin);
    assert_eq!(
        new_execs.len(),
        1,
        "the instance started after the selector: {new_execs:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "exit" && e["pid"] == early_pid),
        "the instance already running was watched until it exited"
    );
    assert!(
        events.iter().all(|e| e["pid"] != other_pid),
        "plain /bin/sleep is not the agent"
    );
}

#[test]
fn without_root_trace_says_what_is_missing() {
    let Some(_k) = privileged() else { return };
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_agentwatch"))
        .args(["trace", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
}

/// `run --select` with no command: the profile is enforced on processes
/// agentwatch did not start, from their exec into the cgroup, until it is
/// told to stop; a process outside the cgroup is not judged.
#[test]
fn run_enforces_a_profile_on_a_selected_cgroup_without_a_command() {
    let Some(_k) = privileged() else { return };
    let Some(cg) = Cgroup::new("run-sel") else {
        eprintln!("SKIP: cannot create a cgroup v2 directory here");
        return;
    };
    let dir = TempDir::new("run-select");
    let prof = dir.0.join("p.yaml");
    std::fs::write(&prof, run::profile("run-sel", 1, "")).unwrap();
    let alerts = dir.0.join("alerts.jsonl");
    let err = std::fs::File::create(dir.0.join("stderr")).unwrap();
    let mut run = agentwatch()
        .arg("run")
        .arg("--profile")
        .arg(&prof)
        .args(["--json", "--alert-window", "off", "--workspace"])
        .arg(&dir.0)
        .arg("-o")
        .arg(&alerts)
        .arg("--select")
        .arg(format!("cgroup={}", cg.0.display()))
        .stderr(err)
        .spawn()
        .expect("run");
    let said = || std::fs::read_to_string(dir.0.join("stderr")).unwrap_or_default();
    let t = std::time::Instant::now();
    while !said().contains("enforcing run-sel") {
        assert!(t.elapsed().as_secs() < 20, "run did not start: {}", said());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let inside = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && exec /bin/cat /etc/hostname",
                cg.0.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(inside.status.success(), "monitor mode stops nothing");
    let outside = Command::new("/bin/cat")
        .arg("/etc/hostname")
        .output()
        .unwrap();
    assert!(outside.status.success());
    let hostname_alerts = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|a| {
                a["type"] == "alert"
                    && a["what"]
                        .as_str()
                        .is_some_and(|w| w.contains("/etc/hostname"))
            })
            .collect()
    };
    let t = std::time::Instant::now();
    while hostname_alerts().is_empty() {
        assert!(t.elapsed().as_secs() < 20, "no alert: {}", said());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let status = run.wait().expect("wait run");
    assert_eq!(status.code(), Some(0), "{}", said());
    let found = hostname_alerts();
    assert_eq!(found.len(), 1, "only the cat in the cgroup: {found:?}");
    assert_eq!(found[0]["rule"], "file/unknown");
    let text = std::fs::read_to_string(&alerts).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"type\":\"summary\"")),
        "{text}"
    );
}

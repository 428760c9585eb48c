//! Privileged fault tests of the daemon: the audit disk fills up, an agent
//! dies while paused, a reload brings a corrupt profile, and the ring
//! buffer overflows under a flood. Enforcement must go on in each case,
//! say what happened, and lose nothing it could keep.
mod support;

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use support::{
    daemon::{audit_records, wait_for, Daemon},
    privileged_with_cgroup,
    run::profile,
};

/// A tmpfs of `kib` KiB mounted at a directory; unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u32) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }

    /// Writes a filler file until the filesystem is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    fn drain(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn agent(name: &str, cg: &Path, mode: &str, actions: &str) -> String {
    format!(
        "\n[[agent]]\nname = \"{name}\"\nprofile = \"{name}.yaml\"\nmode = \"{mode}\"\nworkspace = \"WS\"\n[agent.select]\ncgroup = \"{}\"\n{actions}",
        cg.display()
    )
}

/// Writes a Python script into the workspace for a workload to run.
fn script(d: &Daemon, name: &str, text: &str) {
    std::fs::write(d.ws().join(name), text).unwrap();
}

const CONNECT_9: &str =
    "import socket, sys\nprint(socket.socket().connect_ex((\"127.0.0.1\", 9)))\n";

#[test]
fn a_full_audit_disk_keeps_enforcement_going_says_so_and_records_the_gap() {
    let Some((_k, cg)) = privileged_with_cgroup("fault-disk") else {
        return;
    };
    let yaml = profile("ft-disk", 1, "");
    let d = Daemon::prepare("fault-disk", "", &[("ft-disk.yaml", &yaml)]);
    // Beside the daemon's directory, not in it: the daemon's guard, dropped
    // first, could not remove a directory with a mount in it.
    let at = std::env::temp_dir().join(format!("aw-test-fault-auditfs-{}", std::process::id()));
    let Some(fs) = Tmpfs::mount(&at, 512) else {
        eprintln!("SKIP: cannot mount a tmpfs");
        return;
    };
    d.write_config(&format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n[alerts]\nwindow = \"off\"\n[audit]\npath = \"{}\"\nfsync = \"record\"\n{}",
        fs.0.join("audit.jsonl").display(),
        agent("ft-disk", &cg.0, "enforce", "[agent.actions]\nfile = \"alert\"\n")
    ));
    let mut d = d.start();
    let log = fs.0.join("audit.jsonl");
    script(&d, "connect.py", CONNECT_9);

    fs.fill();
    // The disk is full: decisions go on (an alert per read, EPERM for the
    // connect) and the daemon says the log cannot take them.
    d.workload(
        &cg.0,
        "for i in 1 2 3 4 5; do cat /etc/hostname > /dev/null; done; /usr/bin/python3 connect.py > connect.out",
    );
    let code = d.wait_workload(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "pending {}; alerts {:?}",
        d.json(&["pending"]),
        d.alerts()
            .iter()
            .map(|a| (a["rule"].clone(), a["what"].clone(), a["action"].clone()))
            .collect::<Vec<_>>()
    );
    let errno = std::fs::read_to_string(d.ws().join("connect.out")).unwrap();
    assert_eq!(
        errno.trim(),
        "1",
        "the connect was not refused (EPERM) while the disk was full"
    );
    wait_for("the loud message", Duration::from_secs(10), || {
        d.stderr().contains("audit log")
    });
    let alerts_during = d.alerts().len();
    assert!(alerts_during >= 6, "{:?}", d.alerts());

    // Room again: the held records are written, after a gap record.
    fs.drain();
    // A write that got through while the disk was full can close one
    // outage early (a gap record) before the next refusal opens another:
    // wait for the last held record, not for the first gap.
    let decisions_in = |recs: &[Value]| recs.iter().filter(|r| r["type"] == "decision").count();
    wait_for("every held record written", Duration::from_secs(10), || {
        let recs = audit_records(&log);
        recs.iter().any(|r| r["type"] == "audit_gap") && decisions_in(&recs) >= alerts_during
    });
    let recs = audit_records(&log);
    let gap = recs.iter().position(|r| r["type"] == "audit_gap").unwrap();
    assert_eq!(recs[gap]["dropped"], 0);
    // What the full disk refused was held (a write cut short frees its
    // page, so some records may get through between refusals).
    let held: u64 = recs
        .iter()
        .filter(|r| r["type"] == "audit_gap")
        .filter_map(|r| r["held"].as_u64())
        .sum();
    assert!(held >= 1, "{}", recs[gap]);
    assert_eq!(
        decisions_in(&recs),
        alerts_during,
        "every decision reached the log"
    );
    assert!(d.stderr().contains("writable again"), "{}", d.stderr());
    let verify = d.cli(&["audit", "verify", log.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(d.stop(), Some(0));
    drop(d);
}

#[test]
fn an_agent_killed_while_paused_has_its_request_closed_and_is_not_left_paused() {
    let Some((_k, cg)) = privileged_with_cgroup("fault-exit") else {
        return;
    };
    let yaml = profile("ft-exit", 1, "");
    let d = Daemon::prepare("fault-exit", "", &[("ft-exit.yaml", &yaml)]);
    d.write_config(&format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n[audit]\npath = \"audit.jsonl\"\n{}",
        agent("ft-exit", &cg.0, "enforce", "")
    ));
    let mut d = d.start();
    d.workload(&cg.0, "cat /etc/hostname; echo after > after.txt");
    let req = d.request_of("ft-exit");
    // Someone kills the paused tree by hand.
    for pid in std::fs::read_to_string(cg.0.join("cgroup.procs"))
        .unwrap()
        .lines()
    {
        let pid: i32 = pid.trim().parse().unwrap();
        support::daemon::signal(pid, libc::SIGKILL);
    }
    wait_for("the request to close", Duration::from_secs(10), || {
        d.json(&["pending"])
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    let st = d.json(&["status", "ft-exit"]);
    assert_eq!(st["paused"], false, "{st}");
    let answer = audit_records(&d.dir.0.join("audit.jsonl"))
        .into_iter()
        .find(|r| r["type"] == "approval")
        .expect("an approval record");
    assert_eq!(answer["outcome"], "exited");
    assert_eq!(answer["ids"][0], req["id"]);
    // The agent's next process runs: it is not stopped at its first call.
    d.workload(&cg.0, "echo again > again.txt");
    assert_eq!(d.wait_workload(Duration::from_secs(20)), Some(0));
    assert!(d.ws().join("again.txt").exists());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_corrupt_profile_on_reload_keeps_the_running_one_in_force() {
    let Some((_k, cg)) = privileged_with_cgroup("fault-reload") else {
        return;
    };
    let yaml = profile("ft-rel", 1, "");
    let d = Daemon::prepare("fault-reload", "", &[("ft-rel.yaml", &yaml)]);
    d.write_config(&format!(
        "[daemon]\nalerts = \"alerts.jsonl\"\nrescan = \"200ms\"\n{}",
        agent("ft-rel", &cg.0, "enforce", "")
    ));
    let mut d = d.start();
    std::fs::write(d.dir.0.join("ft-rel.yaml"), "agent: [unclosed\n  - {{\n").unwrap();
    let out = d.cli(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = reply["error"].as_str().unwrap_or("");
    assert!(
        err.contains("ft-rel.yaml") && err.contains("the running one stays"),
        "{err}"
    );
    // The old profile still rules: a benign step runs, a violation pauses.
    d.workload(&cg.0, "echo ok > ok.txt; cat /etc/hostname");
    let req = d.request_of("ft-rel");
    assert!(req["what"].as_str().unwrap_or("").contains("/etc/hostname"));
    assert!(d.ws().join("ok.txt").exists());
    d.json(&["deny", req["id"].as_str().unwrap()]);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn kernel_decisions_hold_while_the_ring_buffer_overflows_and_losses_are_audited() {
    let Some((_k, cg)) = privileged_with_cgroup("fault-flood") else {
        return;
    };
    let yaml = profile("ft-flood", 1, "");
    let d = Daemon::prepare("fault-flood", "", &[("ft-flood.yaml", &yaml)]);
    d.write_config(&format!(
        "[daemon]\nalerts = \"/dev/null\"\nrescan = \"200ms\"\nring_buffer_mb = 1\n[audit]\npath = \"audit.jsonl\"\nfsync = \"1s\"\n{}",
        agent("ft-flood", &cg.0, "enforce", "[agent.actions]\nfile = \"alert\"\n")
    ));
    let mut d = d.start();
    // Reads outside the profile (an alert record each) as fast as Python
    // goes, with a connect outside it every 2,000: each connect must be
    // refused in the kernel whatever the ring buffer's state.
    script(
        &d,
        "flood.py",
        "import socket\nconnects = refused = 0\nfor i in range(200000):\n    open('/etc/hostname').close()\n    if i % 2000 == 0:\n        connects += 1\n        refused += socket.socket().connect_ex(('127.0.0.1', 9)) == 1\nprint(connects, refused)\n",
    );
    d.workload(&cg.0, "/usr/bin/python3 flood.py > flood.out");
    assert_eq!(d.wait_workload(Duration::from_secs(120)), Some(0));
    let out = std::fs::read_to_string(d.ws().join("flood.out")).unwrap();
    let n: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(n[0], 100);
    assert_eq!(
        n[1], n[0],
        "a connect got through while the ring buffer was full"
    );
    let log = d.dir.0.join("audit.jsonl");
    wait_for("a loss record", Duration::from_secs(20), || {
        audit_records(&log)
            .iter()
            .any(|r| r["type"] == "loss" && r["reason"] == "ring_buffer_full")
    });
    let lost: u64 = audit_records(&log)
        .iter()
        .filter(|r| r["type"] == "loss")
        .filter_map(|r| r["count"].as_u64())
        .sum();
    let decided = audit_records(&log)
        .iter()
        .filter(|r| r["type"] == "decision")
        .count() as u64;
    eprintln!("flood: {decided} decisions audited, {lost} records lost and audited as lost");
    assert!(lost > 0);
    assert_eq!(d.stop(), Some(0));
}

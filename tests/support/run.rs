//! `agentwatch run` as the enforcement and audit tests drive it: one run
//! of a shell workload in a fresh workspace, its alerts, and the control
//! commands (pending, approve) that answer it.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{agentwatch, TempDir};

/// A profile that lets sh, bash and coreutils run in `ws`, read the usual
/// system files, and connect to 127.0.0.1:`port`.
pub fn profile(name: &str, port: u16, extra: &str) -> String {
    format!(
        r#"apiVersion: agentwatch.dev/v1
kind: Profile
agent: {name}
executables:
  - path: "/usr/bin/*"
  - path: "/bin/*"
files:
  - path: "/usr/**"
    access: [read, exec]
  - path: "/lib/**"
    access: [read, exec]
  - path: "/lib64/**"
    access: [read, exec]
  - path: "/etc/ld.so.cache"
    access: [read]
  - path: "/etc/nsswitch.conf"
    access: [read]
  - path: "/etc/passwd"
    access: [read]
  - path: "/dev/null"
    access: [read, write, create]
  - path: "/bin/**"
    access: [read, exec]
  - path: "/dev/tty"
    access: [read, write]
  - path: "/proc/**"
    access: [read]
  - path: "$WORKSPACE/**"
    access: [read, write, create, delete, rename, chmod]
network:
  - direction: connect
    address: "127.0.0.1"
    port: {port}
  # glibc asks nscd first for user and service lookups; on hosts without
  # nscd the connect fails, but it is still made.
  - direction: connect
    unix: "/var/run/nscd/socket"
  - direction: connect
    unix: "/run/nscd/socket"
{extra}"#
    )
}

/// One `agentwatch run` of `script` (sh -c) in a fresh workspace. Drop
/// kills the run and every process of the workload, also on failure.
pub struct Run {
    pub child: Child,
    pub dir: TempDir,
    pub tag: String,
    pub alerts: PathBuf,
    /// The agent's name (its control socket's).
    pub name: String,
}

pub struct Done {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub alerts: Vec<Value>,
}

impl Run {
    pub fn start(name: &str, profile_yaml: &str, mode: &str, extra: &[&str], script: &str) -> Run {
        Self::start_prepared(name, profile_yaml, mode, extra, script, |_| {})
    }

    /// `start`, with `prepare` given the workspace before the agent runs
    /// (files the agent finds there, but did not write).
    pub fn start_prepared(
        name: &str,
        profile_yaml: &str,
        mode: &str,
        extra: &[&str],
        script: &str,
        prepare: impl FnOnce(&std::path::Path),
    ) -> Run {
        let dir = TempDir::new(name);
        let prof = dir.join("profile.yaml");
        std::fs::write(&prof, profile_yaml).expect("write profile");
        let alerts = dir.0.join("alerts.jsonl");
        let ws = dir.join("ws");
        std::fs::create_dir_all(&ws).expect("workspace");
        prepare(std::path::Path::new(&ws));
        let tag = format!("{name}-{}", std::process::id());
        let child = agentwatch()
            .args(["run", "--json", "--mode", mode, "--profile", &prof])
            .args(["--workspace", &ws, "-o"])
            .arg(&alerts)
            .args(extra)
            .args(["--", "sh", "-c", script])
            .current_dir(&ws)
            .env("AW_TEST_TAG", &tag)
            // cargo's library path would send every exec probing its dirs.
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agentwatch run");
        Run {
            child,
            dir,
            tag,
            alerts,
            name: name.to_string(),
        }
    }

    /// Waits until the run answers on its control socket.
    pub fn wait_ready(&self, name: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            let ok = agentwatch()
                .args(["status", name])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agentwatch run for {name} never answered on its control socket");
    }

    pub fn ws(&self) -> PathBuf {
        self.dir.0.join("ws")
    }

    /// Pids of the workload's processes named `comm`.
    pub fn pids(&self, comm: &str) -> Vec<u32> {
        let needle = format!("AW_TEST_TAG={}", self.tag);
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|b| b.split(|c| *c == 0).any(|v| v == needle.as_bytes()))
                    .unwrap_or(false)
                    && (comm.is_empty()
                        || std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .map(|c| c.trim() == comm)
                            .unwrap_or(false))
            })
            .collect()
    }

    pub fn state(pid: u32) -> Option<char> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        s.rsplit_once(") ")?.1.chars().next()
    }

    /// Waits until a process named `comm` of the workload is stopped (T).
    pub fn wait_stopped(&self, comm: &str) -> u32 {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Some(p) = self
                .pids(comm)
                .into_iter()
                .find(|p| Run::state(*p) == Some('T'))
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no stopped {comm} within 20 s; alerts: {:?}",
            self.read_alerts()
                .iter()
                .map(|a| a["what"].clone())
                .collect::<Vec<_>>()
        );
    }

    pub fn read_alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.alerts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn finish(self) -> Done {
        self.finish_keeping_dir().0
    }

    /// `finish`, and the run's directory (its workspace in `ws`), kept
    /// until the caller drops it: what the run left there can be checked.
    pub fn finish_keeping_dir(mut self) -> (Done, TempDir) {
        let done = self.wait_done();
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        (done, dir)
    }

    fn wait_done(&mut self) -> Done {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait run") {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "agentwatch run did not end; alerts: {:?}",
                self.read_alerts()
                    .iter()
                    .map(|a| a["what"].clone())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        let mut err = String::new();
        use std::io::Read;
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        Done {
            status: status.code().unwrap_or(-1),
            stdout: out,
            stderr: err,
            alerts: self.read_alerts(),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in self.pids("") {
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status();
            let _ = Command::new("kill")
                .args(["-CONT", &p.to_string()])
                .status();
        }
        // A run killed with SIGKILL leaves its control socket behind.
        let sock =
            std::path::Path::new("/run/agentwatch/agents").join(format!("{}.sock", self.name));
        if std::os::unix::net::UnixStream::connect(&sock).is_err() {
            let _ = std::fs::remove_file(&sock);
        }
    }
}

impl Done {
    pub fn alerts_by(&self, rule: &str) -> Vec<&Value> {
        self.alerts
            .iter()
            .filter(|a| a["type"] == "alert" && a["rule"] == rule)
            .collect()
    }
    pub fn only_alert_rules(&self) -> Vec<String> {
        self.alerts
            .iter()
            .filter(|a| a["type"] == "alert")
            .map(|a| a["rule"].as_str().unwrap_or("").to_string())
            .collect()
    }
    /// rule: what -> action, one per line, for failure messages.
    pub fn brief(&self) -> String {
        self.alerts
            .iter()
            .map(|a| {
                format!(
                    "{} {}: {} -> {}",
                    a["type"], a["rule"], a["what"], a["action"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn summary(&self) -> &Value {
        self.alerts
            .iter()
            .find(|a| a["type"] == "summary")
            .unwrap_or_else(|| panic!("no summary; stderr: {}", self.stderr))
    }
}

pub fn control(args: &[&str]) -> String {
    let out = agentwatch()
        .args(args)
        .output()
        .expect("agentwatch control");
    assert!(
        out.status.success(),
        "agentwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Open requests of `agent`: (id, rule).
pub fn pending(agent: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&control(&["pending", "--json"])).expect("json");
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["agent"] == agent)
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_string(),
                r["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Approves the open request of `agent` for `rule`.
pub fn approve_rule(agent: &str, rule: &str) {
    control(&["approve", &request_for(agent, rule)]);
}

/// The id of `agent`'s open request for `rule` ("" for any), waiting for
/// userspace to have read the kernel's record.
pub fn request_for(agent: &str, rule: &str) -> String {
    let t = Instant::now();
    loop {
        let hit = pending(agent)
            .into_iter()
            .find(|(_, r)| rule.is_empty() || r == rule);
        if let Some((id, _)) = hit {
            return id;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no {rule} request for {agent}: {:?}",
            pending(agent)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

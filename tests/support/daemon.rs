//! `agentwatch daemon` under test: a configuration in a temp dir, its own
//! control socket, the CLI pointed at it. Drop stops the daemon and every
//! workload process, also when the test fails.
use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{agentwatch, TempDir};

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: TempDir,
    /// Where this test's daemon pins its sensors (removed on drop).
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// Workloads started with `workload`, killed on drop.
    workloads: Vec<Child>,
}

impl Daemon {
    /// Writes `config` (TOML) and `profiles` (name, YAML) into a fresh
    /// directory, without starting anything.
    pub fn prepare(tag: &str, config: &str, profiles: &[(&str, &str)]) -> Self {
        let dir = TempDir::new(tag);
        for (name, yaml) in profiles {
            std::fs::write(dir.0.join(name), yaml).expect("write profile");
        }
        std::fs::create_dir_all(dir.0.join("ws")).expect("workspace");
        let config_path = dir.0.join("agentwatch.toml");
        std::fs::write(&config_path, config).expect("write config");
        Daemon {
            child: None,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/aw-test-{tag}-{}", std::process::id())),
            socket: dir.0.join("agentwatch.sock"),
            config: config_path,
            dir,
            workloads: Vec::new(),
        }
    }

    /// Writes the configuration: `text` with "WS" as the workspace, and
    /// this test's pin directory and state file added to `[daemon]`.
    pub fn write_config(&self, text: &str) {
        let text = text
            .replace("\"WS\"", &format!("{:?}", self.ws().display().to_string()))
            .replacen(
                "[daemon]\n",
                &format!(
                    "[daemon]\npin_dir = {:?}\nstate_file = \"state.json\"\n",
                    self.pin_dir.display().to_string()
                ),
                1,
            );
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Starts the daemon and waits until it answers `status`.
    pub fn start(self) -> Self {
        self.start_with_env(&[])
    }

    /// `start` with extra environment variables for the daemon.
    pub fn start_with_env(mut self, env: &[(&str, &str)]) -> Self {
        let out = std::fs::File::create(self.dir.0.join("daemon.out")).expect("out");
        let err = std::fs::File::create(self.dir.0.join("daemon.err")).expect("err");
        let child = agentwatch()
            .args(["daemon", "--config"])
            .arg(&self.config)
            .env("AGENTWATCH_SOCKET", &self.socket)
            .env("AGENTWATCH_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start agentwatch daemon");
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if self.cli(&["status", "--json"]).status.success() {
                return self;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the daemon exited with {st}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon never answered: {}", self.stderr());
    }

    pub fn ws(&self) -> PathBuf {
        self.dir.0.join("ws")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("daemon.err")).unwrap_or_default()
    }

    /// The alerts file the test configs name.
    pub fn alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.0.join("alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `agentwatch ARGS` against this daemon's socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_cmd(args).output().expect("agentwatch cli")
    }

    pub fn cli_cmd(&self, args: &[&str]) -> Command {
        let mut c = agentwatch();
        c.args(args)
            .env("AGENTWATCH_SOCKET", &self.socket)
            // No `agentwatch run` sockets of other tests.
            .env("AGENTWATCH_RUN_DIR", self.dir.0.join("no-runs"));
        c
    }

    /// `agentwatch ARGS --json`, which must succeed; its JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "agentwatch {a:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON reply")
    }

    /// Runs `script` (sh -c) after moving itself into `cgroup`: the exec
    /// that follows is what the daemon's cgroup selector catches.
    pub fn workload(&mut self, cgroup: &std::path::Path, script: &str) {
        let procs = cgroup.join("cgroup.procs");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {} && exec sh -c '{}'",
                procs.display(),
                script.replace('\'', r"'\''")
            ))
            .current_dir(self.ws())
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start workload");
        self.workloads.push(child);
    }

    /// Waits for the last workload; its exit code.
    pub fn wait_workload(&mut self, within: Duration) -> Option<i32> {
        let c = self.workloads.last_mut()?;
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Open requests as `pending --json` lists them, waiting until one of
    /// `agent` is there.
    pub fn request_of(&self, agent: &str) -> Value {
        let t = Instant::now();
        loop {
            let all = self.json(&["pending"]);
            if let Some(r) = all
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["agent"] == agent)
            {
                return r.clone();
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no request of {agent}; alerts: {:?}\n{}",
                self.alerts(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait; the daemon's exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let c = self.child.as_mut()?;
        signal(c.id() as i32, libc::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Sends `sig` to `pid` (negative: a process group).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid, sig) };
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for w in &mut self.workloads {
            // The whole group: stopped members die once continued.
            let pg = -(w.id() as i32);
            signal(pg, libc::SIGKILL);
            signal(pg, libc::SIGCONT);
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The pins keep the programs attached after the daemon is gone.
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// sha256 of `bytes` as lowercase hex (the audit log's profile version).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits until `done`, failing the test after `within`.
pub fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The records of an audit log (each line's `record`).
pub fn audit_records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["record"].clone())
        .collect()
}

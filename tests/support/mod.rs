//! Helpers for the privileged integration tests: run the real `agentwatch`
//! binary, parse its JSON events, and clean up after ourselves.
#![allow(dead_code)]

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Mutex, MutexGuard},
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;

/// Tests that load BPF programs run one at a time: they share the kernel's
/// tracepoints and the machine has two cores.
static KERNEL: Mutex<()> = Mutex::new(());

/// Returns a guard serialising kernel tests, or None (after printing why)
/// when this host cannot run them.
pub fn privileged() -> Option<MutexGuard<'static, ()>> {
    if !nix_is_root() {
        eprintln!("SKIP: needs root to load BPF programs (run the suite with sudo)");
        return None;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("SKIP: kernel has no BTF (/sys/kernel/btf/vmlinux)");
        return None;
    }
    Some(KERNEL.lock().unwrap_or_else(|p| p.into_inner()))
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub fn agentwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agentwatch"))
}

/// Result of `agentwatch trace --json -- CMD`.
pub struct Trace {
    pub status: i32,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl Trace {
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["kind"] == kind)
    }

    /// The first event of `kind` whose `field` equals `value`; panics with
    /// the events of that kind when there is none.
    pub fn find(&self, kind: &str, field: &str, value: &str) -> &Value {
        let hit = self
            .events
            .iter()
            .find(|e| e["kind"] == kind && e[field] == value);
        hit.unwrap_or_else(|| {
            let seen: Vec<String> = self.of_kind(kind).map(|e| e[field].to_string()).collect();
            panic!(
                "no {kind} event with {field}={value}; saw {field} = {seen:?}\nstderr: {}",
                self.stderr
            )
        })
    }
}

/// Runs `agentwatch trace --json -- argv...` in `cwd`.
pub fn trace(cwd: &Path, argv: &[&str]) -> Trace {
    let out = agentwatch()
        .args(["trace", "--json", "--agent", "test-agent", "--"])
        .args(argv)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run agentwatch");
    parse(out)
}

pub fn parse(out: Output) -> Trace {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    Trace {
        status: out.status.code().unwrap_or(-1),
        events,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A directory under /tmp removed on drop, also when the test fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("aw-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        // Canonical, so expected paths match what the kernel reports.
        Self(std::fs::canonicalize(&p).expect("canonicalize"))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> String {
        self.0.join(p).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny DNS responder on a loopback address, port 53: answers every
/// query with NXDOMAIN so resolvers return at once. Stops on drop.
pub struct DnsResponder {
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResponder {
    pub fn start() -> Self {
        let (sock, addr) = ["127.0.0.1", "127.0.0.153", "127.0.0.154"]
            .iter()
            .find_map(|a| UdpSocket::bind((*a, 53)).ok().map(|s| (s, a.to_string())))
            .expect("no free loopback address for a test DNS responder on port 53");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    if n >= 12 {
                        buf[2] |= 0x80; // response
                        buf[3] = (buf[3] & 0xf0) | 3; // NXDOMAIN
                        let _ = sock.send_to(&buf[..n], peer);
                    }
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A DNS query for `name` (type A), as bytes.
pub fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

pub const PYTHON: &str = "/usr/bin/python3";

/// Mount point of the cgroup v2 hierarchy, from mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// A cgroup v2 directory removed on drop (after its processes are gone).
pub struct Cgroup(pub PathBuf);

impl Cgroup {
    pub fn new(tag: &str) -> Option<Self> {
        let root = cgroup2_mount()?;
        let p = root.join(format!("aw-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&p).ok()?;
        Some(Self(p))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `agentwatch trace --json --select ... --duration SECS -o FILE`, returned
/// once it reports that it is watching; `finish` waits and parses events.
pub struct Watching {
    child: std::process::Child,
    out: PathBuf,
}

impl Watching {
    pub fn start(selectors: &[String], out: PathBuf, secs: u32) -> Self {
        use std::io::BufRead;
        let mut cmd = agentwatch();
        cmd.args([
            "trace",
            "--json",
            "--agent",
            "selected-agent",
            "--duration",
            &secs.to_string(),
            "-o",
        ])
        .arg(&out);
        for s in selectors {
            cmd.args(["--select", s]);
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start agentwatch");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("watching"));
        assert!(ready.is_some(), "agentwatch did not start watching");
        // Keep draining stderr so the child never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, out }
    }

    pub fn finish(mut self) -> Vec<Value> {
        let status = self.child.wait().expect("wait agentwatch");
        assert!(
            status.success(),
            "agentwatch trace --select exited with {status}"
        );
        let text = std::fs::read_to_string(&self.out).expect("events file");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Helpers for the privileged integration tests: run the real `agentwatch`
//! binary, parse its JSON events, and clean up after ourselves.
#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod pki;
pub mod receiver;
pub mod run;

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

/// `agentwatch profile lint PATH` must pass; its report otherwise.
pub fn assert_lints(path: &std::path::Path) {
    let lint = agentwatch()
        .args(["profile", "lint"])
        .arg(path)
        .output()
        .expect("lint");
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
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

/// A child process killed and reaped on drop, also when a test fails.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tiny DNS responder on a loopback address, port 53: answers every
/// query with NXDOMAIN so resolvers return at once (`start`), or with one
/// A record (`answering`). Stops on drop.
pub struct DnsResponder {
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResponder {
    pub fn start() -> Self {
        Self::with(None)
    }

    /// Answers every query with `addr` for `ttl` seconds.
    pub fn answering(addr: [u8; 4], ttl: u32) -> Self {
        Self::with(Some((addr, ttl)))
    }

    fn with(answer: Option<([u8; 4], u32)>) -> Self {
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
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                let mut r = buf[..n].to_vec();
                match answer {
                    Some((a, ttl)) => {
                        r[2] = 0x81;
                        r[3] = 0x80;
                        r[6..8].copy_from_slice(&[0, 1]);
                        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
                        r.extend_from_slice(&ttl.to_be_bytes());
                        r.extend_from_slice(&[0, 4]);
                        r.extend_from_slice(&a);
                    }
                    None => {
                        r[2] |= 0x80; // response
                        r[3] = (r[3] & 0xf0) | 3; // NXDOMAIN
                    }
                }
                let _ = sock.send_to(&r, peer);
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

/// A DNS responder answering every A query with its own loopback address,
/// and a TCP server on `port` of that address that answers "ok". The
/// agent's resolver reaches them through a private mount namespace whose
/// /etc/resolv.conf is `resolv_conf`. Stops on drop.
pub struct LocalServices {
    pub addr: String,
    pub port: u16,
    pub resolv_conf: TempDir,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LocalServices {
    pub fn start(port: u16) -> Self {
        use std::sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        };
        let (udp, tcp, addr) = ["127.0.0.155", "127.0.0.156", "127.0.0.157"]
            .iter()
            .find_map(|a| {
                let u = UdpSocket::bind((*a, 53)).ok()?;
                let t = std::net::TcpListener::bind((*a, port)).ok()?;
                Some((u, t, a.to_string()))
            })
            .expect("no free loopback address for test DNS and TCP services");
        let octets: [u8; 4] = addr.parse::<std::net::Ipv4Addr>().unwrap().octets();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = stop.clone();
        let dns = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s1.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                    if let Some(r) = answer(&buf[..n], octets) {
                        let _ = udp.send_to(&r, peer);
                    }
                }
            }
        });
        let s2 = stop.clone();
        let srv = std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !s2.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut b = [0u8; 64];
                        let _ = c.read(&mut b);
                        let _ = c.write_all(b"ok");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let resolv_conf = TempDir::new(&format!("resolv-{port}"));
        std::fs::write(
            resolv_conf.path().join("resolv.conf"),
            format!("nameserver {addr}\noptions attempts:1 timeout:2\n"),
        )
        .unwrap();
        Self {
            addr,
            port,
            resolv_conf,
            stop,
            threads: vec![dns, srv],
        }
    }

    pub fn resolv_conf(&self) -> String {
        self.resolv_conf.join("resolv.conf")
    }
}

/// An answer to an A query (one record, `addr`); other types get none.
fn answer(q: &[u8], addr: [u8; 4]) -> Option<Vec<u8>> {
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += 1 + *q.get(i)? as usize;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let mut r = q.get(..i + 5)?.to_vec();
    r[2] = 0x84 | (q[2] & 1);
    r[3] = 0;
    r[6..12].copy_from_slice(&[0; 6]);
    if qtype == 1 {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&addr);
    }
    Some(r)
}

impl Drop for LocalServices {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
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

/// The kernel-test guard and a fresh cgroup to select agents by, or None
/// (after printing why) when this host cannot run such a test.
pub fn privileged_with_cgroup(tag: &str) -> Option<(MutexGuard<'static, ()>, Cgroup)> {
    let k = privileged()?;
    match Cgroup::new(tag) {
        Some(cg) => Some((k, cg)),
        None => {
            eprintln!("SKIP: no cgroup v2 hierarchy to select by");
            None
        }
    }
}

/// `open(path, O_RDONLY)` made through the ia32 entry (`int 0x80`) by this
/// 64-bit python, from code in a page below 4 GiB (MAP_32BIT): the classic
/// syscall tracepoints never see such a call. Prints the bytes read.
pub const IA32_OPEN: &str = "import ctypes, mmap, os, sys
page = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40, prot=7)
base = ctypes.addressof(ctypes.c_char.from_buffer(page))
code = b\"\\x53\\xb8\\x05\\x00\\x00\\x00\\xbb\" + (base + 64).to_bytes(4, \"little\") + b\"\\x31\\xc9\\x31\\xd2\\xcd\\x80\\x5b\\xc3\"
page[0:len(code)] = code
page[64:65 + len(sys.argv[1])] = sys.argv[1].encode() + b\"\\0\"
fd = ctypes.CFUNCTYPE(ctypes.c_int)(base)()
print(\"ia32-read\", os.read(fd, 64) if fd >= 0 else fd, flush=True)";

/// Whether this kernel runs ia32 calls; says why a test skips when not.
pub fn ia32_calls_run() -> bool {
    let runs = agentwatch::sensors::host::runs_ia32_syscalls();
    if !runs {
        eprintln!("skipped: this kernel runs no ia32 system calls");
    }
    runs
}

/// An alert of the ia32 open above (`guardrail/escape`, the call named by
/// its ia32 number) with `action`.
pub fn ia32_alerted(d: &run::Done, action: &str) -> bool {
    d.alerts.iter().any(|a| {
        a["rule"] == "guardrail/escape"
            && a["what"]
                .as_str()
                .is_some_and(|w| w.contains("ia32 call 5"))
            && a["action"].as_str().is_some_and(|x| x.starts_with(action))
    })
}

/// `tests/tools/race.c` built beside the agentwatch binary (not in a
/// temp place: running a binary from one is `exec/written`); its path.
pub fn race_tool() -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_agentwatch"))
        .with_file_name("race-tool")
        .display()
        .to_string();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tools/race.c");
    let cc = Command::new("cc")
        .args(["-O2", "-pthread", "-o", &bin, src])
        .status()
        .expect("run cc");
    assert!(cc.success(), "building {src}");
    bin
}

/// Whether the BPF LSM tier loads here (`doctor`'s tier 1); says why a
/// test skips when not.
pub fn bpf_lsm_tier(what: &str) -> bool {
    let out = agentwatch()
        .args(["doctor", "--json"])
        .output()
        .expect("run agentwatch doctor");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let available = r["enforcement"][0]["available"] == true;
    if !available {
        eprintln!(
            "skipped: no BPF LSM tier on this kernel ({}); {what}",
            r["enforcement"][0]["why"]
                .as_str()
                .unwrap_or("doctor said nothing")
        );
    }
    available
}

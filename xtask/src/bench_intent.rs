//! `cargo xtask bench --intent-only`: what intent capture's TLS uprobes
//! cost. A keep-alive HTTPS loop (Debian's python3, whose ssl module is
//! the system libssl, pinned to CPU 1) against a local HTTPS server (CPU 0),
//! in alternating rounds:
//! - unwatched, agentwatch not loaded (the baseline);
//! - unwatched while `agentwatch run` enforces another agent, with
//!   capture off and on: what a process that is not an agent's pays (the
//!   uprobes go on agent processes only);
//! - as the agent, with `--context off`, `metadata` and `content`.
//!
//! Reports ns per request and the median of per-round ratios against the
//! baseline of the same round, with the interquartile range.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::bench::{median, parse_ns, ratio_stats, Bench};

pub const HEADING: &str = "\n## Intent capture: the TLS uprobes";

const SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"content":[{"type":"tool_use","name":"read_file","input":{"path":"README.md"}}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("cert.pem", "key.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

const CLIENT: &str = r#"
import http.client, json, socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(cafile="cert.pem")
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
c.connect()
# Headers and body go in two writes: without this, delayed ACKs make
# every request 40 ms.
c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "x" * 1000}]})
def one():
    c.request("POST", "/v1/messages", body, {"Content-Type": "application/json"})
    c.getresponse().read()
one()
t = time.perf_counter_ns()
for _ in range(n):
    one()
print("ns_per_op %.1f" % ((time.perf_counter_ns() - t) / n))
"#;

/// Scratch space with the certificate, scripts and profile; removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch() -> anyhow::Result<Scratch> {
    let dir = std::env::temp_dir().join(format!("agentwatch-intent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let s = Scratch(dir);
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .current_dir(&s.0)
        .stderr(Stdio::null())
        .status()
        .context("running openssl")?;
    if !st.success() {
        bail!("openssl could not make the benchmark's certificate");
    }
    std::fs::write(s.0.join("server.py"), SERVER)?;
    std::fs::write(s.0.join("client.py"), CLIENT)?;
    Ok(s)
}

/// The HTTPS server on CPU 0; its port.
fn server(dir: &Path) -> anyhow::Result<(Killed, u16)> {
    let mut c = Command::new("taskset")
        .args(["-c", "0", "/usr/bin/python3", "server.py"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the HTTPS server")?;
    let mut line = String::new();
    BufReader::new(c.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let port = line.trim().parse().context("the server's port")?;
    Ok((Killed(c), port))
}

fn profile(dir: &Path, port: u16) -> String {
    format!(
        "apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: intent-bench\nexecutables:\n  - path: \"/usr/bin/*\"\nfiles:\n  - path: \"/usr/**\"\n    access: [read, exec]\n  - path: \"/etc/**\"\n    access: [read]\n  - path: \"{}/**\"\n    access: [read]\n  - path: \"/proc/**\"\n    access: [read]\n  - path: \"/sys/**\"\n    access: [read]\n  - path: \"/dev/null\"\n    access: [read, write]\nnetwork:\n  - direction: connect\n    address: \"127.0.0.1\"\n    port: {port}\n    model: true\n",
        dir.display()
    )
}

/// The client loop's argv (CPU 1).
fn client(port: u16, n: u64) -> Vec<String> {
    ["taskset", "-c", "1", "/usr/bin/python3", "client.py"]
        .iter()
        .map(|s| s.to_string())
        .chain([port.to_string(), n.to_string()])
        .collect()
}

fn timed(mut c: Command) -> anyhow::Result<f64> {
    let out = c.env_remove("LD_LIBRARY_PATH").output()?;
    if !out.status.success() {
        bail!(
            "the HTTPS loop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_ns(&String::from_utf8_lossy(&out.stdout))
}

/// `agentwatch run` of `argv` as the benchmark's agent, at `level`.
fn run_cmd(bench: &Bench, dir: &Path, level: &str, argv: &[String]) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", "0"])
        .arg(&bench.agentwatch)
        .args([
            "run",
            "--mode",
            "monitor",
            "--context",
            level,
            "--profile",
            "profile.yaml",
        ])
        .args(["-o", "/dev/null", "--"])
        .args(argv)
        .current_dir(dir);
    c
}

/// Another agent enforced (an idle `sleep`) at `level`: with any level but
/// off, the uprobes are on libssl.
fn other_agent(bench: &Bench, dir: &Path, level: &str) -> anyhow::Result<Killed> {
    let sleep = vec!["sleep".to_string(), "3600".to_string()];
    let holder = run_cmd(bench, dir, level, &sleep)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let children = format!("/proc/{0}/task/{0}/children", holder.id());
    let holder = Killed(holder);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&children)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("agentwatch run did not start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(holder)
}

const CONFIGS: [&str; 6] = [
    "unwatched",
    "unwatched, another agent enforced with --context off (no uprobes)",
    "unwatched, another agent enforced with --context metadata (uprobes on its processes)",
    "agent, --context off",
    "agent, --context metadata",
    "agent, --context content",
];

/// Measures and renders the section.
pub fn section(bench: &Bench, rounds: usize, requests: u64) -> anyhow::Result<String> {
    if !Path::new("/usr/bin/python3").exists() {
        bail!("the intent benchmark needs Debian's /usr/bin/python3 (linked to the system libssl)");
    }
    let s = scratch()?;
    let (_server, port) = server(&s.0)?;
    std::fs::write(s.0.join("profile.yaml"), profile(&s.0, port))?;
    let argv = client(port, requests);
    let plain = || {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]).current_dir(&s.0);
        c
    };
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        ns[0].push(timed(plain())?);
        for (i, level) in ["off", "metadata"].iter().enumerate() {
            let _other = other_agent(bench, &s.0, level)?;
            ns[1 + i].push(timed(plain())?);
        }
        for (i, level) in ["off", "metadata", "content"].iter().enumerate() {
            ns[3 + i].push(timed(run_cmd(bench, &s.0, level, &argv))?);
        }
        eprint!("\rintent: round {}/{rounds}", round + 1);
    }
    eprintln!();
    Ok(render(&ns, rounds, requests))
}

fn render(ns: &[Vec<f64>], rounds: usize, requests: u64) -> String {
    let mut o = format!(
        "{HEADING}\n\nGenerated by `cargo xtask bench --intent-only`: a keep-alive HTTPS loop ({requests} POSTs of a 1 KiB JSON body, a small JSON answer) by Debian's python3 (the system libssl, CPU 1) against a local python HTTPS server (CPU 0), {rounds} alternating rounds; medians of per-round ratios against the unwatched loop of the same round, interquartile range in brackets. Each request is two or three SSL calls (a write, one or two reads).\n\n| configuration | ns/request | ratio |\n|---|---|---|\n"
    );
    for (i, name) in CONFIGS.iter().enumerate() {
        let (m, lo, hi) = ratio_stats(&ns[i], &ns[0]);
        o.push_str(&format!(
            "| {name} | {:.0} | {m:.3} [{lo:.3}-{hi:.3}] |\n",
            median(&mut ns[i].clone())
        ));
    }
    let (m, lo, hi) = ratio_stats(&ns[2], &ns[1]);
    let (am, alo, ahi) = ratio_stats(&ns[4], &ns[3]);
    o.push_str(&format!("\nThe uprobes alone, for a process that is not an agent's (row 3 over row 2, same round): **{m:.3}** [{lo:.3}-{hi:.3}]. For the agent, capture on against off (row 5 over row 4): **{am:.3}** [{alo:.3}-{ahi:.3}].\n\nWhat the rows say: intent capture attaches its uprobes to each process of an agent (not to the library for every process), so a process that is not an agent's has no breakpoint to trap on: row 3 against row 2 is noise. An agent pays a breakpoint trap per SSL call plus, with capture on, one ring-buffer record of up to 8 KiB per call, parsed by userspace on another CPU; on this tight local loop that is tens of microseconds a request, against a model's answer that takes hundreds of milliseconds. `content` differs from `metadata` only in what userspace keeps, unless the process read a secret (then each write is held until read: not measured here). Rows 2 to 6 also carry the cost of the enforcing sensors on every syscall of the loop (the syscall tracepoints; issue 15's benchmark), which is why capture is compared with its own absence.\n"));
    o
}

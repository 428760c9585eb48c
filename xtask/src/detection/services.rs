//! The corpus's loopback world: a DNS responder for `*.corpus.test`, the
//! agents' model (which serves each session's steps as tool calls), the
//! ops agent's API, and an exfiltration receiver that records whatever
//! reaches it. Every one keeps a log the goal checks read. Nothing leaves
//! loopback.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use serde_json::{json, Value};

pub const SERVICE_IP: &str = "127.0.0.88";
pub const EXFIL_IP: &str = "127.0.0.89";
pub const MODEL_PORT: u16 = 18080;
pub const API_PORT: u16 = 18081;
pub const EXFIL_PORT: u16 = 18082;
pub const DOMAIN: &str = "corpus.test";

/// CLOCK_MONOTONIC now, the clock the kernel stamps events with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What every service saw, for the goal checks.
#[derive(Default)]
pub struct Logs {
    /// Request bodies the model received.
    pub model: Vec<String>,
    /// Bytes the exfiltration receiver received, per connection.
    pub exfil: Vec<String>,
    pub exfil_connections: u64,
    /// Names asked of the DNS responder.
    pub dns: Vec<String>,
    /// When each step of the current session was served (monotonic ns).
    pub served: Vec<u64>,
}

/// The steps the model serves, as `[tool, args...]`.
pub type Steps = Vec<Vec<String>>;

pub struct Services {
    pub logs: Arc<Mutex<Logs>>,
    steps: Arc<Mutex<Steps>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub resolv_conf: std::path::PathBuf,
    _dir: crate::detection::corpus::Scratch,
}

impl Services {
    pub fn start(dir: crate::detection::corpus::Scratch) -> anyhow::Result<Self> {
        let logs = Arc::new(Mutex::new(Logs::default()));
        let steps = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let resolv_conf = dir.0.join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            format!("nameserver {SERVICE_IP}\noptions attempts:1 timeout:2\n"),
        )?;
        let udp = UdpSocket::bind((SERVICE_IP, 53)).context("bind the corpus DNS responder")?;
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let model = listener(SERVICE_IP, MODEL_PORT)?;
        let api = listener(SERVICE_IP, API_PORT)?;
        let exfil = listener(EXFIL_IP, EXFIL_PORT)?;
        let mut threads = Vec::new();
        {
            let (logs, stop) = (logs.clone(), stop.clone());
            threads.push(std::thread::spawn(move || dns(udp, logs, stop)));
        }
        {
            let (logs, stop, steps) = (logs.clone(), stop.clone(), steps.clone());
            threads.push(std::thread::spawn(move || {
                serve(model, stop, |req| model_reply(req, &steps, &logs))
            }));
        }
        {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || serve(api, stop, api_reply)));
        }
        {
            let (logs, stop) = (logs.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                exfil_receiver(exfil, logs, stop)
            }));
        }
        Ok(Self {
            logs,
            steps,
            stop,
            threads,
            resolv_conf,
            _dir: dir,
        })
    }

    /// The steps the model serves from now on; clears the logs.
    pub fn load(&self, steps: Steps) {
        if let Ok(mut s) = self.steps.lock() {
            *s = steps;
        }
        if let Ok(mut l) = self.logs.lock() {
            *l = Logs::default();
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn listener(ip: &str, port: u16) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind((ip, port)).with_context(|| format!("bind {ip}:{port}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Accepts connections until stopped, answering each HTTP request with
/// `reply(method and target, body)`.
fn serve(l: TcpListener, stop: Arc<AtomicBool>, reply: impl Fn(&Request) -> String) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((c, _)) => {
                if let Some(req) = read_request(&c) {
                    let body = reply(&req);
                    let mut c = c;
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

pub struct Request {
    pub target: String,
    pub body: String,
}

fn read_request(c: &TcpStream) -> Option<Request> {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut c = c;
    loop {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let target = head.lines().next()?.split(' ').nth(1)?.to_string();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Some(Request { target, body });
            }
        }
        if buf.len() > 1 << 20 {
            break;
        }
    }
    None
}

/// The model: the step after as many tool results as the request holds,
/// as a tool call; "done" after the last one.
fn model_reply(req: &Request, steps: &Mutex<Steps>, logs: &Mutex<Logs>) -> String {
    let parsed: Option<Value> = serde_json::from_str(&req.body).ok();
    if let Ok(mut l) = logs.lock() {
        l.model.push(req.body.clone());
    }
    let Some(v) = parsed else {
        return json!({"ok": true}).to_string();
    };
    let done_tools = v["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|x| x["role"] == "tool").count());
    let step = steps.lock().ok().and_then(|s| s.get(done_tools).cloned());
    let Some(step) = step else {
        return json!({"choices": [{"message": {"role": "assistant", "content": "done"}}]})
            .to_string();
    };
    if let Ok(mut l) = logs.lock() {
        l.served.resize(done_tools, 0);
        l.served.push(monotonic_ns());
    }
    let (tool, args) = step
        .split_first()
        .map_or(("none", &[][..]), |(t, a)| (t.as_str(), a));
    json!({"choices": [{"message": {
        "role": "assistant",
        "content": null,
        "tool_calls": [{
            "id": format!("call_{done_tools}"),
            "type": "function",
            "function": {"name": tool, "arguments": json!({"args": args}).to_string()},
        }],
    }}]})
    .to_string()
}

/// The ops agent's API.
fn api_reply(req: &Request) -> String {
    if req.target.starts_with("/v1/metrics") {
        return json!({"orders": 120, "revenue": 4310, "refunds": 3}).to_string();
    }
    if req.target.starts_with("/v1/orders") {
        let orders: Vec<Value> = (1..=5)
            .map(|i| json!({"id": i, "product": "widget", "amount": 10 * i}))
            .collect();
        return Value::Array(orders).to_string();
    }
    json!({"ok": true}).to_string()
}

fn exfil_receiver(l: TcpListener, logs: Arc<Mutex<Logs>>, stop: Arc<AtomicBool>) {
    let count = AtomicU64::new(0);
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((mut c, _)) => {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_millis(1500)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while let Ok(n) = c.read(&mut chunk) {
                    if n == 0 || buf.len() > 1 << 20 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nok");
                if let Ok(mut g) = logs.lock() {
                    g.exfil_connections += 1;
                    g.exfil.push(String::from_utf8_lossy(&buf).into_owned());
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Answers A queries for the corpus's names (everything else NXDOMAIN)
/// and records every name asked.
fn dns(sock: UdpSocket, logs: Arc<Mutex<Logs>>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let q = &buf[..n];
        let Some((name, end)) = qname(q) else {
            continue;
        };
        if let Ok(mut l) = logs.lock() {
            l.dns.push(name.clone());
        }
        let qtype = q
            .get(end..end + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let addr: Option<[u8; 4]> = match name.as_str() {
            n if n == format!("model.{DOMAIN}") || n == format!("api.{DOMAIN}") => {
                Some([127, 0, 0, 88])
            }
            n if n == format!("exfil.{DOMAIN}") => Some([127, 0, 0, 89]),
            _ => None,
        };
        let mut r = q[..(end + 4).min(n)].to_vec();
        r[2] = 0x84 | (q[2] & 1);
        r[3] = if addr.is_some() { 0 } else { 3 };
        r[6..12].copy_from_slice(&[0; 6]);
        if let (Some(a), 1) = (addr, qtype) {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&a);
        }
        let _ = sock.send_to(&r, peer);
    }
}

/// The question's name (lower case) and the offset just past it.
fn qname(q: &[u8]) -> Option<(String, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            return Some((labels.join(".").to_ascii_lowercase(), i + 1));
        }
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).into_owned());
        i += 1 + len;
    }
}

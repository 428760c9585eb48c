//! `agentwatch demo`: traces a small built-in agent that execs, opens,
//! writes, deletes, renames, resolves a name and connects, without leaving
//! loopback. A DNS responder and a TCP server run on 127.0.0.77 inside this
//! process; the agent resolves through them in a private mount namespace
//! whose /etc/resolv.conf points there.
use std::{
    io::{Read, Write},
    net::{TcpListener, UdpSocket},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;

use super::{
    check, learn,
    trace::{self, TraceOptions},
};

const DEMO_ADDR: [u8; 4] = [127, 0, 0, 77];
const DEMO_PORT: u16 = 8077;

const SCRIPT: &str = r#"#!/bin/sh
# The demo agent: a few steps a coding agent might take.
set -e
mount --bind "$AW_DEMO/resolv.conf" /etc/resolv.conf   # private mount namespace only
cd "$AW_DEMO/workspace"
echo "draft" > notes.txt                 # create + write
cat notes.txt > /dev/null                # exec + read
mv notes.txt notes-final.txt             # rename
chmod 600 notes-final.txt                # chmod
rm notes-final.txt                       # delete
python3 .agent/client.py                 # DNS + connect
"#;

/// The demo agent's client: it resolves the API's name and connects.
const CLIENT: &str = r#"import socket
s = socket.create_connection(("api.demo.agentwatch.test", 8077), timeout=5)
s.sendall(b"hello\n"); s.recv(16); s.close()
"#;

/// The same agent after a change, for the worked example: it builds
/// objects, peeks at an SSH key, stops chmod-ing, and tries a second port.
const CHANGED_SCRIPT: &str = r#"#!/bin/sh
set -e
mount --bind "$AW_DEMO/resolv.conf" /etc/resolv.conf   # private mount namespace only
cd "$AW_DEMO/workspace"
echo "draft" > notes.txt
cat notes.txt > /dev/null
mv notes.txt notes-final.txt
rm notes-final.txt
mkdir -p build
for i in 1 2 3 4; do echo obj > "build/obj-$i.o"; done
cat "$HOME/.ssh/id_ed25519" > /dev/null 2>&1 || true
python3 .agent/client.py
"#;

/// The changed client also tries a second port.
const CHANGED_CLIENT: &str = r#"import socket
s = socket.create_connection(("api.demo.agentwatch.test", 8077), timeout=5)
s.sendall(b"hello\n"); s.recv(16); s.close()
try:
    socket.create_connection(("api.demo.agentwatch.test", 8078), timeout=5)
except OSError:
    pass
"#;

/// What `demo` does with the agent.
pub enum DemoMode {
    /// Print its events (the default).
    Trace { json: bool },
    /// Learn its profile into this file.
    Learn { out: PathBuf },
    /// Check it against this profile.
    Check { profile: PathBuf, json: bool },
}

/// Removes the demo directory on drop.
struct DemoDir(PathBuf);
impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(mode: DemoMode, changed: bool) -> anyhow::Result<i32> {
    let dir = DemoDir(std::env::temp_dir().join(format!("agentwatch-demo-{}", std::process::id())));
    // The agent's programs sit in its workspace, written by the demo (not
    // by the agent): a program in a temp place, or fed to an interpreter
    // through a pipe, would be `exec/written`.
    let programs = dir.0.join("workspace/.agent");
    std::fs::create_dir_all(&programs).context("creating the demo directory")?;
    std::fs::write(
        programs.join("agent.sh"),
        if changed { CHANGED_SCRIPT } else { SCRIPT },
    )?;
    std::fs::write(
        programs.join("client.py"),
        if changed { CHANGED_CLIENT } else { CLIENT },
    )?;
    std::fs::write(
        dir.0.join("resolv.conf"),
        "nameserver 127.0.0.77\noptions attempts:1 timeout:2\n",
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let dns = UdpSocket::bind((std::net::Ipv4Addr::from(DEMO_ADDR), 53))
        .context("the demo DNS responder needs 127.0.0.77:53 free")?;
    let tcp = TcpListener::bind((std::net::Ipv4Addr::from(DEMO_ADDR), DEMO_PORT))
        .context("the demo server needs 127.0.0.77:8077 free")?;
    let servers = [spawn_dns(dns, stop.clone())?, spawn_tcp(tcp, stop.clone())?];

    std::env::set_var("AW_DEMO", &dir.0);
    let cmd: Vec<std::ffi::OsString> = ["unshare", "-m", "--", "/bin/sh"]
        .iter()
        .map(Into::into)
        .chain(std::iter::once(programs.join("agent.sh").into_os_string()))
        .collect();
    // Paths given relative to where the user is, before moving into the
    // agent's workspace (which learn and check take as $WORKSPACE).
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let status = match mode {
        DemoMode::Trace { json } => trace::run(TraceOptions {
            json,
            agent: Some("demo-agent".into()),
            ring_buffer_mb: 8,
            output: None,
            select: Vec::new(),
            duration: None,
            cmd,
        }),
        DemoMode::Learn { out } => {
            let out = absolute(out);
            std::env::set_current_dir(dir.0.join("workspace"))?;
            let mut o = learn::LearnOptions::from_args(&["--agent", "demo-agent", "--force"])?;
            o.out = Some(out);
            o.cmd = cmd;
            learn::run(o)
        }
        DemoMode::Check { profile, json } => {
            let profile = absolute(profile);
            std::env::set_current_dir(dir.0.join("workspace"))?;
            let mut o = check::CheckOptions::from_args(&["--profile", "-"])?;
            o.profile = profile;
            o.json = json;
            o.cmd = cmd;
            check::run(o)
        }
    };
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        let _ = s.join();
    }
    status
}

fn spawn_dns(
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                if let Some(reply) = dns_reply(&buf[..n]) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        }
    }))
}

/// Answers A queries with 127.0.0.77 and anything else with no records.
fn dns_reply(q: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += 1 + *q.get(i)? as usize;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let end = i + 5;
    let mut r = q.get(..end)?.to_vec();
    r[2] = 0x84 | (q[2] & 0x01); // response, authoritative, keep RD
    r[3] = 0x00;
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if qtype == 1 {
        r[7] = 1; // one answer
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&DEMO_ADDR);
    }
    Some(r)
}

fn spawn_tcp(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut b = [0u8; 64];
                    let _ = s.read(&mut b);
                    let _ = s.write_all(b"ok\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_queries_with_the_demo_address() {
        let q = crate::net::build_query("api.demo.agentwatch.test", 1);
        let r = dns_reply(&q).unwrap();
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &DEMO_ADDR);
        let aaaa = dns_reply(&crate::net::build_query("x.test", 28)).unwrap();
        assert_eq!(&aaaa[6..8], &[0, 0], "no AAAA records");
    }
}

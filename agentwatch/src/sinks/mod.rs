//! Sinks: where finished events go. Each sink writes whole events and
//! reports write errors; the pipeline counts them as losses.
use std::io::{self, Write};

use crate::event::{Detail, Endpoint, Event};

pub trait Sink: Send {
    fn emit(&mut self, ev: &Event) -> io::Result<()>;
    /// Called when the pipeline has nothing queued, so output is timely
    /// without a flush per event.
    fn flush(&mut self) -> io::Result<()>;
}

/// One JSON object per line.
pub struct JsonLines<W: Write + Send>(pub W);

impl<W: Write + Send> Sink for JsonLines<W> {
    fn emit(&mut self, ev: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.0, ev).map_err(io::Error::other)?;
        self.0.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// One readable line per event.
pub struct HumanLines<W: Write + Send>(pub W);

impl<W: Write + Send> Sink for HumanLines<W> {
    fn emit(&mut self, ev: &Event) -> io::Result<()> {
        writeln!(self.0, "{}", human_line(ev))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn result(r: &Option<i64>) -> String {
    match r {
        Some(0) => String::new(),
        Some(r) if *r > 0 => format!(" = {r}"),
        Some(r) => format!(" = {}", errno_name(-*r as i32)),
        None => " (no result)".into(),
    }
}

fn errno_name(e: i32) -> String {
    let name = nix::errno::Errno::from_raw(e);
    format!("-{name:?}")
}

fn endpoint(e: &Endpoint) -> String {
    match (&e.addr, e.port, &e.path) {
        (Some(a), Some(p), _) if a.contains(':') => format!("[{a}]:{p}"),
        (Some(a), Some(p), _) => format!("{a}:{p}"),
        (_, _, Some(path)) => format!("unix:{path}"),
        _ => format!("{:?}", e.family).to_lowercase(),
    }
}

/// The human form of an event: `agent pid comm kind details`.
pub fn human_line(ev: &Event) -> String {
    let what = what_happened(ev);
    format!("{:<10} {:>7} {:<15} {what}", ev.agent, ev.pid, ev.comm)
}

/// What an event did, in words (`kind details`).
pub fn what_happened(ev: &Event) -> String {
    match &ev.detail {
        Detail::Exec {
            path,
            result: r @ Some(e),
            ..
        } if *e < 0 => format!("exec {path}{}", result(r)),
        Detail::Exec {
            path,
            argv,
            argv_truncated,
            ..
        } => {
            let more = if *argv_truncated { " …" } else { "" };
            format!("exec {path} {:?}{more}", argv)
        }
        Detail::Fork { child_pid } => format!("fork -> {child_pid}"),
        Detail::Tamper {
            syscall,
            target,
            signal,
            path,
            ..
        } => match (signal, path) {
            (Some(s), _) => format!("{syscall} pid {target} signal {s}"),
            (None, Some(p)) => format!("{syscall} {p} security.capability"),
            (None, None) if *target == 0 => syscall.to_string(),
            (None, None) => format!("{syscall} {target}"),
        },
        Detail::DnsAnswer { name, addrs, .. } => {
            format!("dns answer {name} -> {}", addrs.join(", "))
        }
        Detail::Exit { code: Some(c), .. } => format!("exit {c}"),
        Detail::Exit { signal, .. } => format!("exit signal {}", signal.unwrap_or(0)),
        Detail::Open {
            path,
            access,
            result: r,
            ..
        } => {
            format!("open {path} [{}]{}", access.names().join(","), result(r))
        }
        Detail::Unlink {
            path, result: r, ..
        } => format!("unlink {path}{}", result(r)),
        Detail::Make {
            path,
            syscall,
            result: r,
        } => format!("{syscall} {path}{}", result(r)),
        Detail::Rename {
            from,
            to,
            result: r,
            ..
        } => format!("rename {from} -> {to}{}", result(r)),
        Detail::Link {
            from,
            to,
            result: r,
            ..
        } => format!("link {from} -> {to}{}", result(r)),
        Detail::Chmod {
            path,
            mode,
            result: r,
            ..
        } => format!("chmod {path} {mode:o}{}", result(r)),
        Detail::Chown {
            path,
            owner,
            group,
            result: r,
            ..
        } => {
            format!("chown {path} {owner}:{group}{}", result(r))
        }
        Detail::Connect {
            endpoint: e,
            result: r,
        } => format!("connect {}{}", endpoint(e), result(r)),
        Detail::Bind {
            endpoint: e,
            result: r,
        } => format!("bind {}{}", endpoint(e), result(r)),
        Detail::Datagram {
            endpoint: e,
            syscall,
        } => format!("{syscall} {}", endpoint(e)),
        Detail::Listen {
            endpoint: e,
            result: r,
            ..
        } => format!("listen {}{}", endpoint(e), result(r)),
        Detail::Accept {
            endpoint: e,
            result: r,
        } => format!("accept {}{}", endpoint(e), result(r)),
        Detail::Dns { name, qtype, .. } => format!("dns {name} {qtype}"),
        Detail::Tls { write, len, .. } => {
            format!("tls {} {len} bytes", ["read", "write"][*write as usize])
        }
        Detail::Loss {
            stage,
            reason,
            count,
        } => format!("LOSS {count} records at {stage} ({reason})"),
    }
}

/// One output shared by several writers (the daemon's agents): each
/// `write` goes through whole under the lock, so a line written with one
/// `write_all` never interleaves with another.
#[derive(Clone)]
pub struct SharedWriter(std::sync::Arc<std::sync::Mutex<Box<dyn Write + Send>>>);

impl SharedWriter {
    pub fn new(w: Box<dyn Write + Send>) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(w)))
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut w = self
            .0
            .lock()
            .map_err(|_| io::Error::other("output lock poisoned"))?;
        w.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("output lock poisoned"))?
            .flush()
    }
}

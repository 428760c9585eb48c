//! The systemd notification protocol (sd_notify): READY, RELOADING,
//! STOPPING, STATUS and WATCHDOG datagrams to $NOTIFY_SOCKET. Without
//! that variable (not started by systemd) every call does nothing.
use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    time::{Duration, Instant},
};

use tracing::{debug, warn};

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half of WATCHDOG_USEC, when the watchdog is on for this process.
    watchdog: Option<Duration>,
    last_ping: Instant,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID.
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|path| match address(&path) {
                Ok(addr) => UnixDatagram::unbound().ok().map(|s| (s, addr)),
                Err(e) => {
                    warn!(socket = %path, error = %e, "NOTIFY_SOCKET is not usable; systemd will not hear from us");
                    None
                }
            });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Self {
            socket,
            watchdog,
            last_ping: Instant::now(),
        }
    }

    fn send(&self, msg: &str) {
        if let Some((s, addr)) = &self.socket {
            if let Err(e) = s.send_to_addr(msg.as_bytes(), addr) {
                warn!(error = %e, "cannot notify systemd");
            } else {
                debug!(msg, "notified systemd");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ));
    }

    /// A reload started; `ready` ends it.
    pub fn reloading(&self) {
        let now = crate::clock::monotonic_ns() / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// Pings the watchdog when half its interval has passed. Called from
    /// the main loop, so a wedged loop stops the pings and systemd
    /// restarts us.
    pub fn watchdog_if_due(&mut self) {
        if let Some(every) = self.watchdog {
            if self.last_ping.elapsed() >= every {
                self.send("WATCHDOG=1");
                self.last_ping = Instant::now();
            }
        }
    }
}

/// NOTIFY_SOCKET: a path, or `@name` for the abstract namespace.
fn address(path: &str) -> std::io::Result<SocketAddr> {
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(path),
    }
}

//! The control socket of a running agent: `agentwatch pending`, `approve`,
//! `deny`, `mode`, `pause`, `resume` talk to the `agentwatch run` that
//! enforces the agent. One unix socket per agent in the run directory,
//! mode 0600, root only (peer credentials checked; others refused and
//! logged). One JSON request line, one JSON response line.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixListener, net::UnixStream},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;
use tracing::warn;

use crate::enforce::{agent::AgentEnforcer, approvals::Outcome, compile::Mode};

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another `agentwatch run` already enforces agent {0} (its control socket answers)")]
    InUse(String),
    #[error("no running agent named {0} (no control socket in {1}); is `agentwatch run --agent {0}` running?")]
    NoAgent(String, String),
    #[error("talking to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// A command to a running agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Status,
    Pending,
    Approve {
        id: String,
        #[serde(default)]
        learn: bool,
    },
    Deny {
        id: String,
    },
    Mode {
        mode: Mode,
    },
    Pause,
    Resume,
}

/// Where control sockets live ($AGENTWATCH_RUN_DIR overrides).
pub fn run_dir() -> PathBuf {
    std::env::var_os("AGENTWATCH_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/agentwatch/agents"))
}

pub fn socket_path(agent: &str) -> PathBuf {
    run_dir().join(format!("{agent}.sock"))
}

/// Removes the socket file when the server goes away.
pub struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves `agent`'s control socket on a thread.
pub fn serve(agent: &str, enforcer: Arc<Mutex<AgentEnforcer>>) -> Result<Server, ControlError> {
    let path = socket_path(agent);
    let bind_err = |source| ControlError::Bind {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(ControlError::InUse(agent.into()));
        }
        let _ = std::fs::remove_file(&path); // left by a run that died
    }
    let listener = UnixListener::bind(&path).map_err(bind_err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    std::thread::Builder::new()
        .name("aw-control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = answer(conn, &enforcer) {
                    warn!(error = %e, "control connection failed");
                }
            }
        })
        .map_err(bind_err)?;
    Ok(Server { path })
}

fn answer(conn: UnixStream, enforcer: &Arc<Mutex<AgentEnforcer>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = conn.try_clone()?;
    let cred = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    if cred.uid() != 0 {
        warn!(
            uid = cred.uid(),
            pid = cred.pid(),
            "control request refused: not root"
        );
        let r = json!({"ok": false, "error": "only root may control agentwatch"});
        return writeln!(out, "{r}");
    }
    let by = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(cred.uid()))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {}", cred.uid()));
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match enforcer.lock() {
            Ok(mut e) => dispatch(&mut e, req, &by),
            Err(_) => json!({"ok": false, "error": "the enforcer stopped after an internal error"}),
        },
        Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    writeln!(out, "{reply}")
}

fn dispatch(e: &mut AgentEnforcer, req: Request, by: &str) -> Value {
    let done = |r: Result<String, String>| match r {
        Ok(m) => json!({"ok": true, "message": m}),
        Err(m) => json!({"ok": false, "error": m}),
    };
    match req {
        Request::Status => json!({
            "ok": true,
            "agent": e.agent,
            "mode": e.mode.name(),
            "paused": e.maps.paused(e.agent_id),
            "pending": e.approvals.list().len(),
            "processes": e.maps.pids(e.agent_id).len(),
            "stats": e.stats,
        }),
        Request::Pending => json!({"ok": true, "pending": e.approvals.list()}),
        Request::Approve { id, learn } => done(e.approve(&id, learn, by)),
        Request::Deny { id } => done(e.deny(Some(&id), Outcome::Denied, by)),
        Request::Mode { mode } => done(e.set_mode(mode)),
        Request::Pause => done(Ok(e.pause())),
        Request::Resume => done(e.resume()),
    }
}

/// Sends `req` to the socket at `path`; returns the reply.
pub fn request(path: &Path, req: &Request) -> Result<Value, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(path).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let line = serde_json::to_string(req).map_err(|e| io(std::io::Error::other(e)))?;
    writeln!(s, "{line}").map_err(io)?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).map_err(io)?;
    let v: Value = serde_json::from_str(&reply).map_err(|e| io(std::io::Error::other(e)))?;
    if v["ok"] == json!(false) {
        return Err(ControlError::Refused(
            v["error"].as_str().unwrap_or("refused").to_string(),
        ));
    }
    Ok(v)
}

/// Sends `req` to agent `agent`'s run.
pub fn request_agent(agent: &str, req: &Request) -> Result<Value, ControlError> {
    let path = socket_path(agent);
    if !path.exists() {
        return Err(ControlError::NoAgent(
            agent.into(),
            run_dir().display().to_string(),
        ));
    }
    request(&path, req)
}

/// Names of agents with a control socket.
pub fn agents() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(run_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".sock").map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

/// The agent an approval id (`<agent>-<n>`) belongs to.
pub fn agent_of(id: &str) -> Option<&str> {
    id.rsplit_once('-')
        .filter(|(_, n)| n.parse::<u64>().is_ok())
        .map(|(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_ids_route_to_their_agent() {
        assert_eq!(agent_of("my-bot-12"), Some("my-bot"));
        assert_eq!(agent_of("bot"), None);
        assert_eq!(agent_of("bot-x"), None);
    }

    #[test]
    fn requests_read_back() {
        let r: Request =
            serde_json::from_str(r#"{"op":"approve","id":"a-1","learn":true}"#).unwrap();
        assert!(matches!(r, Request::Approve { learn: true, .. }));
        let r: Request = serde_json::from_str(r#"{"op":"mode","mode":"enforce"}"#).unwrap();
        assert!(matches!(
            r,
            Request::Mode {
                mode: Mode::Enforce
            }
        ));
    }
}

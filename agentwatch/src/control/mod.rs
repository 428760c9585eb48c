//! Control sockets: `agentwatch pending`, `approve`, `deny`, `mode`,
//! `pause`, `resume`, `status` and `reload` talk to the process that
//! enforces an agent. `agentwatch run` serves one socket per agent in the
//! run directory (mode 0600, root only); `agentwatch daemon` serves one
//! socket for all its agents (mode 0660, root and a configured group).
//! Peer credentials are checked on every connection; others are refused
//! and logged. One JSON request line, one JSON response line.
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
use tracing::{info, warn};

mod reply;

pub use reply::{AgentStatus, Reply};

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
    #[error("no running agent named {0}: no control socket in {1} and no daemon socket (is `agentwatch run --agent {0}` or `agentwatch daemon` running?)")]
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
    /// Re-read the daemon's configuration and swap it in (daemon only).
    Reload,
    /// What `agentwatch exec` needs to start a process of the agent in
    /// its sandbox: the profile and the classes Landlock is to hold
    /// (daemon only).
    LaunchInfo,
    /// Watch `pid` as the agent from now on: an `agentwatch exec` about to
    /// exec the agent's command, in the sandbox (`landlock`: the
    /// `watch::LANDLOCK_*` its file rules hold, and `watch::SHIELDED` when
    /// its guardrails are read-only mounts) or not (None). Root only
    /// (daemon only).
    Launch {
        pid: u32,
        #[serde(default)]
        landlock: Option<u32>,
        /// The write end of the agent's reasons pipe, a descriptor of
        /// `pid` (`enforce::steer`).
        #[serde(default)]
        reasons_fd: Option<i32>,
    },
}

/// A request on the wire: the daemon's socket serves many agents, so a
/// request names its agent (none: all of them, for status and pending).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(flatten)]
    pub req: Request,
}

/// What answers requests on a control socket.
pub trait Handler: Send + Sync + 'static {
    /// `by`: the peer's user name, for the audit log.
    fn handle(&self, req: Envelope, by: &str) -> Reply;
}

/// Who may use a socket besides root.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Mode 0600: root only (`agentwatch run`).
    RootOnly,
    /// Mode 0660, owned by `group` (root's when None); root and members of
    /// the group (primary or supplementary) may. Members of root's group
    /// who are not root can connect, and are refused and logged.
    Group(Option<u32>),
}

impl Access {
    fn allows(self, uid: u32, groups: impl FnOnce() -> Vec<u32>) -> bool {
        match self {
            _ if uid == 0 => true,
            Access::Group(Some(g)) => groups().contains(&g),
            _ => false,
        }
    }
}

/// Where `agentwatch run` puts its per-agent sockets
/// ($AGENTWATCH_RUN_DIR overrides).
pub fn run_dir() -> PathBuf {
    std::env::var_os("AGENTWATCH_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/agentwatch/agents"))
}

pub fn socket_path(agent: &str) -> PathBuf {
    run_dir().join(format!("{agent}.sock"))
}

/// The daemon's socket ($AGENTWATCH_SOCKET overrides).
pub fn daemon_socket() -> PathBuf {
    std::env::var_os("AGENTWATCH_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/agentwatch/agentwatch.sock"))
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

/// One agent of `agentwatch run`.
struct OneAgent(Arc<Mutex<AgentEnforcer>>);

impl Handler for OneAgent {
    fn handle(&self, env: Envelope, by: &str) -> Reply {
        match self.0.lock() {
            Ok(mut e) => dispatch(&mut e, env.req, by),
            Err(_) => Reply::Failed("the enforcer stopped after an internal error".into()),
        }
    }
}

/// `agentwatch run`'s one agent as a handler (for its live page).
pub fn one_agent(enforcer: Arc<Mutex<AgentEnforcer>>) -> Arc<dyn Handler> {
    Arc::new(OneAgent(enforcer))
}

/// Serves `agent`'s control socket (root only) on a thread.
pub fn serve(agent: &str, enforcer: Arc<Mutex<AgentEnforcer>>) -> Result<Server, ControlError> {
    serve_at(
        &socket_path(agent),
        Access::RootOnly,
        Arc::new(OneAgent(enforcer)),
    )
    .map_err(|e| match e {
        ControlError::InUse(_) => ControlError::InUse(agent.into()),
        e => e,
    })
}

/// Serves `handler` on a unix socket at `path` with the mode and group
/// `access` says.
pub fn serve_at(
    path: &Path,
    access: Access,
    handler: Arc<dyn Handler>,
) -> Result<Server, ControlError> {
    let bind_err = |source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.display().to_string()));
        }
        let _ = std::fs::remove_file(path); // left by a process that died
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    let server = Server {
        path: path.to_path_buf(),
    };
    let mode = match access {
        Access::Group(gid) => {
            let gid = nix::unistd::Gid::from_raw(gid.unwrap_or(0));
            nix::unistd::chown(path, None, Some(gid)).map_err(|e| bind_err(e.into()))?;
            0o660
        }
        Access::RootOnly => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
    std::thread::Builder::new()
        .name("aw-control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = answer(conn, access, handler.as_ref()) {
                    warn!(error = %e, "control connection failed");
                }
            }
        })
        .map_err(bind_err)?;
    Ok(server)
}

/// The groups of the socket's peer (SO_PEERGROUPS), primary included.
fn peer_groups(conn: &UnixStream, primary: u32) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    let mut groups = vec![0u32; 256];
    let mut len = (groups.len() * std::mem::size_of::<u32>()) as libc::socklen_t;
    // SAFETY: the buffer and its length describe valid memory.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        groups.clear();
    } else {
        groups.truncate(len as usize / std::mem::size_of::<u32>());
    }
    groups.push(primary);
    groups
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn answer(conn: UnixStream, access: Access, handler: &dyn Handler) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = conn.try_clone()?;
    let cred = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    let allowed = access.allows(cred.uid(), || peer_groups(&conn, cred.gid()));
    let by = user_name(cred.uid());
    // Read the request first, even one to refuse, so the peer's write
    // never meets a closed socket and it gets the refusal. Bounded: the
    // peer may not be trusted.
    let mut line = String::new();
    BufReader::new(std::io::Read::take(&conn, 64 * 1024)).read_line(&mut line)?;
    if !allowed {
        warn!(
            uid = cred.uid(),
            gid = cred.gid(),
            pid = cred.pid(),
            user = %by,
            "control request refused: not root and not in the control group"
        );
        let who = if matches!(access, Access::Group(Some(_))) {
            "root and members of the configured control group"
        } else {
            "only root"
        };
        let r = Reply::Failed(format!("permission denied: {who} may control agentwatch"));
        return write_reply(&mut out, &r);
    }
    let reply = match serde_json::from_str::<Envelope>(&line) {
        Ok(req) => {
            if !matches!(req.req, Request::Status | Request::Pending) {
                info!(user = %by, pid = cred.pid(), request = %line.trim(), "control request");
            }
            handler.handle(req, &by)
        }
        Err(e) => Reply::Failed(format!("bad request: {e}")),
    };
    write_reply(&mut out, &reply)
}

/// One reply line.
fn write_reply(out: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")
}

/// Answers `req` for one agent's enforcer (`by`: who asked).
pub fn dispatch(e: &mut AgentEnforcer, req: Request, by: &str) -> Reply {
    match req {
        Request::Status => Reply::Status(Box::new(status(e))),
        Request::Pending => Reply::Pending(e.pending().to_vec()),
        Request::Approve { id, learn } => e.approve(&id, learn, by).into(),
        Request::Deny { id } => e.deny(Some(&id), Outcome::Denied, by).into(),
        Request::Mode { mode } => e.set_mode(mode).into(),
        Request::Pause => Reply::Done(e.pause()),
        Request::Resume => e.resume().into(),
        Request::Reload => Reply::Failed(
            "reload is for `agentwatch daemon`; `agentwatch run` takes its profile once".into(),
        ),
        Request::LaunchInfo | Request::Launch { .. } => Reply::Failed(
            "`agentwatch exec` starts agents the daemon enforces; `agentwatch run` starts its own command".into(),
        ),
    }
}

/// One agent's status.
pub fn status(e: &AgentEnforcer) -> AgentStatus {
    AgentStatus {
        agent: e.name().to_string(),
        mode: e.mode().name(),
        paused: e.paused(),
        pending: e.pending().len(),
        processes: e.pids().len(),
        stats: e.stats().clone(),
        learning: e.learning_status(),
        session: e.session_now(),
    }
}

/// Sends `req` to the socket at `path`; returns the reply.
pub fn request(path: &Path, req: &Request) -> Result<Value, ControlError> {
    request_env(
        path,
        &Envelope {
            agent: None,
            req: req.clone(),
        },
    )
}

/// Sends `env` to the socket at `path`; returns the reply.
pub fn request_env(path: &Path, req: &Envelope) -> Result<Value, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(path).map_err(io)?;
    // A reload loads and compiles every agent's profile before it answers.
    let wait = match req.req {
        Request::Reload => Duration::from_secs(120),
        _ => Duration::from_secs(10),
    };
    s.set_read_timeout(Some(wait)).map_err(io)?;
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

/// Sends `req` to whoever enforces `agent`: its `agentwatch run`, else
/// the daemon.
pub fn request_agent(agent: &str, req: &Request) -> Result<Value, ControlError> {
    let path = socket_path(agent);
    if path.exists() {
        return request(&path, req);
    }
    let daemon = daemon_socket();
    if daemon.exists() {
        return request_env(
            &daemon,
            &Envelope {
                agent: Some(agent.into()),
                req: req.clone(),
            },
        );
    }
    Err(ControlError::NoAgent(
        agent.into(),
        run_dir().display().to_string(),
    ))
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
    fn root_always_and_the_group_only_when_configured() {
        let groups = || vec![4, 100];
        assert!(Access::RootOnly.allows(0, Vec::new));
        assert!(!Access::RootOnly.allows(1000, groups));
        assert!(Access::Group(Some(4)).allows(1000, groups));
        assert!(!Access::Group(Some(5)).allows(1000, groups));
        // Root's group may connect to a 0660 socket, but is not root.
        assert!(!Access::Group(None).allows(1000, || vec![0]));
        assert!(Access::Group(None).allows(0, Vec::new));
    }

    #[test]
    fn envelopes_carry_the_agent_beside_the_op() {
        let e: Envelope = serde_json::from_str(r#"{"op":"pause","agent":"coder"}"#).unwrap();
        assert_eq!(e.agent.as_deref(), Some("coder"));
        assert!(matches!(e.req, Request::Pause));
        let e: Envelope = serde_json::from_str(r#"{"op":"reload"}"#).unwrap();
        assert!(e.agent.is_none() && matches!(e.req, Request::Reload));
        let line = serde_json::to_string(&Envelope {
            agent: None,
            req: Request::Status,
        })
        .unwrap();
        assert_eq!(line, r#"{"op":"status"}"#);
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

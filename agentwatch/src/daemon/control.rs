//! The daemon's control socket: requests that name an agent go to its
//! enforcer; status and pending without one cover every agent; reload is
//! handed to the main thread, which owns the configuration.
use std::{
    sync::{mpsc, Mutex},
    time::Duration,
};

use super::{Agents, ReloadAsk};
use crate::control::{dispatch, status, AgentStatus, Envelope, Handler, Reply, Request};

/// How long `agentwatch reload` waits for the main thread.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

pub struct DaemonControl {
    agents: Agents,
    reload: Mutex<mpsc::Sender<ReloadAsk>>,
}

impl DaemonControl {
    pub fn new(agents: Agents, reload: mpsc::Sender<ReloadAsk>) -> Self {
        Self {
            agents,
            reload: Mutex::new(reload),
        }
    }

    fn reload(&self, by: &str) -> Reply {
        let (tx, rx) = mpsc::channel();
        let sent = self.reload.lock().ok().and_then(|s| {
            s.send(ReloadAsk {
                by: by.to_string(),
                reply: tx,
            })
            .ok()
        });
        if sent.is_none() {
            return Reply::Failed("the daemon is shutting down".into());
        }
        match rx.recv_timeout(RELOAD_WAIT) {
            Ok(r) => r.into(),
            Err(_) => Reply::Failed("the daemon did not answer the reload in time".into()),
        }
    }

    /// Every agent's status, in name order.
    fn statuses(&self) -> Vec<AgentStatus> {
        self.each(status)
    }

    /// `f` of each agent's enforcer, in name order.
    fn each<T>(&self, f: impl Fn(&crate::enforce::agent::AgentEnforcer) -> T) -> Vec<T> {
        let all: Vec<_> = match self.agents.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return Vec::new(),
        };
        all.iter()
            .filter_map(|e| e.lock().ok().map(|e| f(&e)))
            .collect()
    }
}

impl Handler for DaemonControl {
    fn handle(&self, env: Envelope, by: &str) -> Reply {
        match (env.agent, env.req) {
            (_, Request::Reload) => self.reload(by),
            (None, Request::Status) => Reply::Daemon {
                pid: std::process::id(),
                agents: self.statuses(),
            },
            (None, Request::Pending) => {
                Reply::Pending(self.each(|e| e.pending().to_vec()).concat())
            }
            (None, _) => Reply::Failed("name the agent this request is for".into()),
            (Some(_), Request::Launch { .. }) if by != "root" => {
                Reply::Failed("only root may launch a process as an agent".into())
            }
            (Some(name), req @ (Request::LaunchInfo | Request::Launch { .. })) => {
                self.with_agent(&name, |e| launch(e, req))
            }
            (Some(name), req) => self.with_agent(&name, |e| dispatch(e, req, by)),
        }
    }
}

impl DaemonControl {
    /// `f` of agent `name`'s enforcer, or why there is none.
    fn with_agent(
        &self,
        name: &str,
        f: impl FnOnce(&mut crate::enforce::agent::AgentEnforcer) -> Reply,
    ) -> Reply {
        let e = self.agents.read().ok().and_then(|m| m.get(name).cloned());
        match e {
            Some(e) => match e.lock() {
                Ok(mut e) => f(&mut e),
                Err(_) => Reply::Failed("the enforcer stopped after an internal error".into()),
            },
            None => {
                let known: Vec<String> = self
                    .agents
                    .read()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                Reply::Failed(format!(
                    "the daemon has no agent named {name} (its agents: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ))
            }
        }
    }
}

/// `agentwatch exec`'s two requests: what to start the process with (the
/// profile, and the classes Landlock is to hold: those the policy
/// refuses, unless the BPF LSM tier refuses them itself or every event
/// crosses to userspace); then watching it.
fn launch(e: &mut crate::enforce::agent::AgentEnforcer, req: Request) -> Reply {
    match req {
        Request::LaunchInfo => {
            let held = match e.lsm_tier() {
                Ok(()) => crate::sandbox::Held::default(),
                Err(_) if !e.decides_in_kernel() => crate::sandbox::Held::default(),
                Err(_) => crate::sandbox::Held::of_policy(&e.compiled().policy),
            };
            let allowed = crate::sandbox::Allowed::of_flags(e.compiled().policy.flags);
            let shield = crate::sandbox::shield::wanted(&e.compiled().policy)
                && e.lsm_tier().is_err()
                && e.decides_in_kernel();
            Reply::Launch {
                profile: e.profile_path().display().to_string(),
                mode: e.mode().name(),
                held: held.names(),
                io_uring: allowed.io_uring,
                raw_sockets: allowed.raw_sockets,
                shield,
            }
        }
        Request::Launch {
            pid,
            landlock,
            reasons_fd,
        } => e.launched(pid, landlock, reasons_fd).into(),
        _ => Reply::Failed("not a launch request".into()),
    }
}

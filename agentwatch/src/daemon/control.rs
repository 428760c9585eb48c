//! The daemon's control socket: requests that name an agent go to its
//! enforcer; status and pending without one cover every agent; reload is
//! handed to the main thread, which owns the configuration.
use std::{
    sync::{mpsc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};

use super::{Agents, ReloadAsk};
use crate::control::{dispatch, Envelope, Handler, Request};

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

    fn reload(&self, by: &str) -> Value {
        let (tx, rx) = mpsc::channel();
        let sent = self.reload.lock().ok().and_then(|s| {
            s.send(ReloadAsk {
                by: by.to_string(),
                reply: tx,
            })
            .ok()
        });
        if sent.is_none() {
            return json!({"ok": false, "error": "the daemon is shutting down"});
        }
        match rx.recv_timeout(RELOAD_WAIT) {
            Ok(Ok(m)) => json!({"ok": true, "message": m}),
            Ok(Err(m)) => json!({"ok": false, "error": m}),
            Err(_) => json!({"ok": false, "error": "the daemon did not answer the reload in time"}),
        }
    }

    /// `req` for each agent, in name order.
    fn each(&self, req: &Request, by: &str) -> Vec<Value> {
        let all: Vec<_> = match self.agents.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return Vec::new(),
        };
        all.iter()
            .filter_map(|e| e.lock().ok().map(|mut e| dispatch(&mut e, req.clone(), by)))
            .collect()
    }
}

impl Handler for DaemonControl {
    fn handle(&self, env: Envelope, by: &str) -> Value {
        match (env.agent, env.req) {
            (_, Request::Reload) => self.reload(by),
            (None, Request::Status) => json!({
                "ok": true,
                "daemon": {"pid": std::process::id()},
                "agents": self.each(&Request::Status, by),
            }),
            (None, Request::Pending) => {
                let all: Vec<Value> = self
                    .each(&Request::Pending, by)
                    .into_iter()
                    .flat_map(|v| v["pending"].as_array().cloned().unwrap_or_default())
                    .collect();
                json!({"ok": true, "pending": all})
            }
            (None, _) => json!({"ok": false, "error": "name the agent this request is for"}),
            (Some(name), req) => {
                let e = self.agents.read().ok().and_then(|m| m.get(&name).cloned());
                match e {
                    Some(e) => match e.lock() {
                        Ok(mut e) => dispatch(&mut e, req, by),
                        Err(_) => {
                            json!({"ok": false, "error": "the enforcer stopped after an internal error"})
                        }
                    },
                    None => {
                        let known: Vec<String> = self
                            .agents
                            .read()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        json!({"ok": false, "error": format!(
                            "the daemon has no agent named {name} (its agents: {})",
                            if known.is_empty() { "none".into() } else { known.join(", ") }
                        )})
                    }
                }
            }
        }
    }
}

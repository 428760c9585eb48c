//! The agent's intent log (`crate::intent`) as the enforcer keeps it:
//! TLS chunks fed in, connections that are not to a model set aside in
//! the kernel, secrets the agent read remembered so no context shows them.
use super::AgentEnforcer;
use crate::{
    event::{Detail, Event},
    intent::{Fed, IntentLog, Level},
    profile::{matcher::Finding, rule::Rule, Class},
};

/// Bytes of a secret file read to know what never to show.
const SECRET_FILE_BYTES: u64 = 64 * 1024;

impl AgentEnforcer {
    /// A TLS chunk of the agent's: read into the intent log. True when
    /// `ev` was one (nothing else is done with it).
    pub(super) fn take_tls(&mut self, ev: &Event) -> bool {
        if !matches!(ev.detail, Detail::Tls { .. }) {
            return false;
        }
        if let Fed::NotModel { pid, ssl } = self.intent.feed(ev) {
            if let Err(e) = self.maps.ignore_tls(pid, ssl) {
                tracing::debug!(error = %e, "cannot set a connection aside: its plain text keeps coming");
            }
        }
        // A tainted process's write, held by the kernel until read here:
        // a secret it read, on its way to the model, goes no further.
        if ev
            .kernel
            .is_some_and(|k| k.action == agentwatch_common::policy::action::HOLD)
        {
            let Detail::Tls { ssl, .. } = ev.detail else {
                return true;
            };
            let findings: Vec<Finding> = self
                .intent
                .leak(ev.pid, ssl)
                .map(|to| Finding {
                    rule: Rule::GuardExfiltrate,
                    class: Class::Network,
                    what: format!("send a secret it read to {to}"),
                    reason: "a secret the agent read is in what it was sending to its model: exfiltration through the allowed channel".into(),
                })
                .into_iter()
                .collect();
            self.judge_in_userspace(ev, &findings, true);
        }
        true
    }

    /// The agent read a secret (allowed, in its workspace): its content is
    /// never shown in a context.
    pub(super) fn note_secret_read(&mut self, ev: &Event) {
        if self.intent.level() == Level::Off {
            return;
        }
        let Detail::Open { path, .. } = &ev.detail else {
            return;
        };
        // Never blocks: a FIFO or device named like a secret is not read.
        use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
        let mut text = String::new();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path);
        if let Ok(f) = file {
            if f.metadata().is_ok_and(|m| m.is_file()) {
                let _ = f.take(SECRET_FILE_BYTES).read_to_string(&mut text);
            }
        }
        self.intent.note_secret(&text);
    }

    /// How much of its model traffic the agent's context keeps.
    pub fn intent_level(&self) -> Level {
        self.intent.level()
    }

    /// Sets the intent level (and the profile's model endpoints), in the
    /// kernel too.
    pub(super) fn set_intent(&mut self, level: Level) {
        self.intent = IntentLog::new(level, &self.profile);
        if let Err(e) = self.maps.set_intent(self.agent_id, level.kernel()) {
            tracing::warn!(agent = %self.agent, error = %e, "cannot turn intent capture on in the kernel");
        }
    }
}

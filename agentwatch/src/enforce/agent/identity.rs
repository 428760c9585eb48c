//! Who the agent's processes run as (`crate::identity`): judged once per
//! UID an agent is seen with, at an exec; always audited, raised as an
//! alert or acted on as the `[identity]` policy says.
use serde_json::json;
use tracing::warn;

use super::AgentEnforcer;
use crate::{
    event::{Detail, Event},
    identity::{Act, Seen},
};

impl AgentEnforcer {
    /// The policy agents are judged under (`run --identity`, `[identity]`).
    pub fn set_identity(&mut self, policy: crate::identity::Policy) {
        self.identity = policy;
    }

    /// An exec that crossed: the first one under a UID judges who it is.
    pub(super) fn note_identity(&mut self, ev: &Event) {
        if !matches!(ev.detail, Detail::Exec { .. }) || !self.identities.insert(ev.uid) {
            return;
        }
        let seen = Seen::of_process(ev.pid, ev.uid);
        let (mut record, finding) = seen.judge(&self.agent, &self.identity);
        record["pid"] = json!(ev.pid);
        record["time"] = json!(crate::timestamp::micros(
            crate::timestamp::wall_of_monotonic(ev.ts_ns)
        ));
        if let Some((rule, what, act)) = finding {
            let action = if act == Act::Refuse { "kill" } else { "alert" };
            record["rule"] = json!(rule);
            record["what"] = json!(what);
            record["action"] = json!(action);
            record["host"] = json!(crate::origin::host());
            warn!(agent = %self.agent, %rule, uid = ev.uid, "{what}");
            self.raise_notice(record);
            if act == Act::Refuse {
                self.kill_tree();
            }
        } else if let Some(a) = &mut self.audit {
            a.record(record);
        }
    }
}

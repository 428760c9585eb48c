//! Pausing an agent for a decision: its whole tree stopped (a sweep that
//! catches what forks meanwhile) and an approval request opened, with
//! what `approve --learn` would add.
use super::{
    explain::{learn_entry, namespace, namespace_of, pinned_name, shield_mount},
    AgentEnforcer,
};
use crate::{
    enforce::{
        approvals::{LearnEntry, Subject},
        tree,
    },
    event::Event,
    profile::{matcher::Finding, rule::Rule},
};

impl AgentEnforcer {
    /// Stops every process of the agent. A process may be forking as the
    /// sweep passes: its child joins the watch map during the fork, so
    /// the sweep repeats until a pass finds no process it has not stopped
    /// (a stopped process forks no more). Returns how many it stopped.
    pub(super) fn stop_tree(&self) -> usize {
        let mut stopped = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let new: Vec<u32> = self
                .maps
                .pids(self.agent_id)
                .into_iter()
                .filter(|p| !stopped.contains(p))
                .collect();
            if new.is_empty() {
                break;
            }
            tree::stop(&new);
            stopped.extend(new);
        }
        stopped.len()
    }

    /// Makes sure the whole tree is stopped and opens an approval request.
    pub(super) fn pause_for(&mut self, ev: &Event, f: &Finding) -> String {
        // Learning never allows a hard rule's subject.
        let learn = if f.hard() {
            None
        } else {
            learn_entry(ev, f.class, &self.anchors)
        };
        self.pause_with(ev, f, learn)
    }

    /// As `pause_for`, with what `approve --learn` adds given.
    pub(super) fn pause_with(
        &mut self,
        ev: &Event,
        f: &Finding,
        learn: Option<LearnEntry>,
    ) -> String {
        let _ = self.maps.set_paused(self.agent_id, true);
        self.stop_tree();
        // A call the shield refused: approving lifts the mount that
        // refused it (a guardrail's, or a directory's on the way to some).
        // Only in a namespace agentwatch made: never a container's mount.
        let shielded = namespace_of(ev).is_some_and(|n| self.shield_namespaces.contains(&n));
        let lifts = match f.rule {
            _ if !shielded => None,
            Rule::GuardSecrets | Rule::GuardPersistence | Rule::GuardAgentwatch => shield_mount(ev),
            Rule::GuardTamper => pinned_name(ev),
            _ => None,
        };
        self.approvals.open(
            Subject {
                agent: self.agent.clone(),
                pid: ev.pid,
                comm: ev.comm.clone(),
                exe: ev.context.exe.clone(),
                ancestry: ev.context.ancestry.clone(),
                rule: f.rule.name().into_owned(),
                what: f.what.clone(),
                reason: f.reason.clone(),
                evidence: serde_json::to_value(ev).unwrap_or_default(),
                context: self.intent.context(),
                learn,
                lifts,
            },
            self.timeout,
        )
    }

    /// Process `pid` was launched in the guardrail shield's mount
    /// namespace: requests from that namespace may lift its mounts.
    pub fn shielded_launch(&mut self, pid: u32) {
        let ours = namespace(std::process::id());
        match namespace(pid) {
            Some(ns) if Some(&ns) != ours.as_ref() => {
                self.shield_namespaces.insert(ns);
            }
            _ => {
                tracing::warn!(agent = %self.agent, pid, "the launched agent is not in a mount namespace of its own: approvals lift nothing")
            }
        }
    }
}

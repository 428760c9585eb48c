//! What callers outside the enforcer read of it: its identity, mode,
//! counters, open requests and the kernel's view of its processes.
use super::{AgentEnforcer, Mode, Stats};

impl AgentEnforcer {
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.agent
    }

    /// The agent's id in the kernel's maps.
    pub fn id(&self) -> u32 {
        self.agent_id
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The open approval requests.
    pub fn pending(&self) -> &[crate::enforce::approvals::Request] {
        self.approvals.list()
    }

    /// Whether the agent's tree is paused (the kernel's flag).
    pub fn paused(&self) -> bool {
        self.maps.paused(self.agent_id)
    }

    /// The agent's processes, as the kernel's watch map has them.
    pub fn pids(&self) -> Vec<u32> {
        self.maps.pids(self.agent_id)
    }

    /// The kernel's decision counters.
    pub fn decided(&self) -> crate::sensors::policy_maps::Decided {
        self.maps.decided()
    }

    /// Whether the LSM tier is attached (file deny refuses the call), or
    /// why not.
    pub fn lsm_tier(&self) -> Result<(), &str> {
        self.maps.lsm_tier()
    }
}

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

    /// Drift over the last `days` days (the daemon's agents).
    pub fn drift_report(&self, days: u64) -> Option<crate::enforce::drift::Report> {
        let k = self.drift.as_ref()?;
        let (since, until) = crate::enforce::drift::window(days);
        Some(k.log().report(&self.profile, &since, &until))
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

    /// The kernel's decision counters for this agent.
    pub fn decided(&self) -> crate::sensors::policy_maps::Decided {
        self.maps.decided(Some(self.agent_id))
    }

    /// Whether the LSM tier is attached (file deny refuses the call), or
    /// why not.
    pub fn lsm_tier(&self) -> Result<(), &str> {
        self.maps.lsm_tier()
    }

    /// The profile file the agent is enforced with.
    /// The profile it enforces, as loaded (overlay applied).
    pub fn profile(&self) -> &crate::profile::Profile {
        &self.profile
    }

    pub fn profile_path(&self) -> &std::path::Path {
        &self.profile_path
    }

    /// Whether the kernel decides (false: every event crosses, as in
    /// shadow learning or the userspace fallback).
    pub fn decides_in_kernel(&self) -> bool {
        self.kernel_decisions && self.shadow.is_none()
    }

    /// A process `agentwatch exec` is about to turn into the agent's
    /// command: watched as the agent from now on. In the sandbox
    /// (`landlock`: the classes its file rules hold), the policy says so,
    /// so the kernel reports what the sandbox refused.
    pub fn launched(
        &mut self,
        pid: u32,
        landlock: Option<u32>,
        reasons_fd: Option<i32>,
    ) -> Result<String, crate::sensors::SensorError> {
        use agentwatch_common::policy::watch;
        let held =
            watch::LANDLOCK_FILE | watch::LANDLOCK_DELETE | watch::LANDLOCK_EXEC | watch::SHIELDED;
        let flags = landlock.map_or(0, |l| watch::SANDBOXED | (l & held));
        self.maps.watch(pid, self.agent_id, flags)?;
        if flags & watch::SHIELDED != 0 {
            self.shielded_launch(pid);
        }
        self.started();
        if let Some(fd) = reasons_fd {
            match crate::enforce::steer::Steer::open_launched(pid, fd) {
                Ok(s) => self.set_steer(s),
                Err(e) => {
                    tracing::warn!(agent = %self.agent, pid, error = %e, "the launched agent gets no reasons")
                }
            }
        }
        tracing::info!(agent = %self.agent, pid, sandboxed = landlock.is_some(), "launched");
        Ok(format!("pid {pid} runs as agent {}", self.agent))
    }
}

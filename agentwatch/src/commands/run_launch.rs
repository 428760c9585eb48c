//! What the agent `run` starts gets at launch besides the watch and the
//! sandbox: its resource budgets (a cgroup of its own, `RLIMIT_NOFILE`,
//! the run-time clock), the pipe it reads why it was refused from, and the
//! identity policy it is judged under.
use std::{
    process::Child,
    sync::{Arc, Mutex},
};

use super::{run::RunOptions, session::Session};
use crate::{
    budget::Budgets,
    enforce::agent::{AgentEnforcer, Bounds},
    sandbox::Sandbox,
    spawn::SpawnError,
};

/// The profile's `resources`, then `--budget`s over them; a bad one is a
/// usage error that says what to write.
fn budgets_of(
    resources: &std::collections::BTreeMap<String, String>,
    opts: &RunOptions,
) -> anyhow::Result<Budgets> {
    let mut b = Budgets::default();
    let from_profile = resources.iter().map(|(k, v)| format!("{k}={v}"));
    for spec in from_profile.chain(opts.budgets.iter().cloned()) {
        b.set(&spec)
            .map_err(|e| crate::exit::usage(e.to_string()))?;
    }
    Ok(b)
}

/// The command's budgets: a cgroup of its own for the kernel's (made
/// now, so that the child moves itself into it before exec).
fn bounds_for(agent: &str, b: &Budgets, action: crate::budget::Action) -> anyhow::Result<Bounds> {
    let cgroup = if b.needs_cgroup() {
        let name = format!("{agent}-{}", std::process::id());
        Some(crate::budget::Cgroup::create(&name, b)?)
    } else {
        None
    };
    Ok(Bounds {
        cgroup,
        runtime: b.runtime,
        started: std::time::Instant::now(),
        action,
        runtime_reached: false,
    })
}

/// Starts the command watched, in the sandbox if any, within its budgets
/// (`bounds_for`) and with the reasons pipe (`steer_for`). A bad budget is
/// an error before anything starts; a spawn failure is the inner error.
pub(super) fn start_command(
    agent: &str,
    opts: &RunOptions,
    s: &mut Session,
    sandbox: Option<&Arc<Sandbox>>,
    enforcer: &Mutex<AgentEnforcer>,
) -> anyhow::Result<Result<Child, SpawnError>> {
    let resources = match enforcer.lock() {
        Ok(e) => e.profile().resources.clone(),
        Err(_) => anyhow::bail!("the enforcer stopped after an internal error"),
    };
    let budgets = budgets_of(&resources, opts)?;
    let bounds = bounds_for(agent, &budgets, opts.budget_action)?;
    s.launch.cgroups = bounds
        .cgroup
        .as_ref()
        .map(|c| c.procs_files())
        .unwrap_or_default();
    s.launch.files = budgets.files;
    if let Ok(mut e) = enforcer.lock() {
        e.set_bounds(bounds);
    }
    let reasons = steer_for(enforcer);
    s.launch.reasons = reasons.as_ref().map(|r| r.raw());
    let spawned = match sandbox {
        Some(sb) => s.spawn_in(&opts.cmd, sb.clone()),
        None => s.spawn(&opts.cmd),
    };
    // The agent holds its end now: ours goes, so that the pipe's reader
    // is the agent alone.
    drop(reasons);
    Ok(spawned)
}

impl RunOptions {
    /// `--identity` for both findings, `--human-uids`.
    pub(super) fn identity_policy(&self) -> crate::identity::Policy {
        crate::identity::Policy {
            human: self.identity,
            credentials: self.identity,
            human_uids: self.human_uids.clone(),
        }
    }
}

/// The pipe through which the agent learns why it was refused: the
/// enforcer writes, the agent's end is returned for the launch. None (and
/// a warning) when no pipe can be made: the run goes on without it.
fn steer_for(enforcer: &Mutex<AgentEnforcer>) -> Option<crate::enforce::steer::ReasonsEnd> {
    let (steer, end) = match crate::enforce::steer::Steer::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("agentwatch: no reasons pipe for the agent ({e}); it runs without one");
            return None;
        }
    };
    enforcer.lock().ok()?.set_steer(steer);
    Some(end)
}

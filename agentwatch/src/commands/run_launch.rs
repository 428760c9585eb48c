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
    let given = |k: &str| opts.budgets.iter().any(|s| s.split('=').next() == Some(k));
    // A profile learned on a host whose kernel has the controller may run
    // where it has not: its budget is said to be off, not a failed start.
    let held = |k: &str| {
        let kernel = matches!(k, "memory" | "pids" | "cpu");
        let here = !kernel || given(k) || crate::budget::hierarchy(k).is_some();
        if !here {
            eprintln!("agentwatch: note: the profile's {k} budget is not held here: no cgroup hierarchy has the {k} controller (`agentwatch doctor`)");
        }
        here
    };
    let usage = |e: crate::budget::BudgetError| crate::exit::usage(e.to_string());
    let mut b = Budgets::from_resources(resources, held).map_err(usage)?;
    for spec in &opts.budgets {
        b.set(spec).map_err(usage)?;
    }
    Ok(b)
}

/// The command's budgets: a cgroup of its own for the kernel's (made
/// now, so that the child moves itself into it before exec).
fn bounds_for(
    agent: &str,
    b: &Budgets,
    action: crate::budget::Action,
) -> anyhow::Result<Option<Bounds>> {
    let cgroup = if b.needs_cgroup() {
        let name = format!("{agent}-{}", std::process::id());
        Some(crate::budget::Cgroup::create(&name, b)?)
    } else {
        None
    };
    Ok(Bounds::of(cgroup, b, action))
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
        .as_ref()
        .and_then(|b| b.cgroup.as_ref())
        .map(|c| c.procs_files())
        .unwrap_or_default();
    s.launch.files = budgets.files;
    if let (Some(b), Ok(mut e)) = (bounds, enforcer.lock()) {
        e.set_bounds(b);
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
    // Spawned means exec'd: the child is in the shield's namespace.
    if let (Ok(child), Some(sb)) = (&spawned, sandbox) {
        if sb.shield_flags() != 0 {
            if let Ok(mut e) = enforcer.lock() {
                e.shielded_launch(child.id());
            }
        }
    }
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

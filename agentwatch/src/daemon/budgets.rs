//! A daemon agent's resource budgets: the profile's `resources` held on
//! the cgroup its selectors name (`select.cgroup`, `select.systemd_unit`),
//! which is the service's own and is left as it was when the agent ends
//! (`budget::Cgroup::adopt`). An agent selected otherwise has no cgroup of
//! its own to hold them on: said once, at its start.
use tracing::{info, warn};

use super::{cgroup2_mount, config::AgentConfig};
use crate::{
    budget::{Budgets, Cgroup},
    enforce::agent::Bounds,
};

/// The bounds of agent `a`, when its profile has kernel-held budgets and
/// its selectors name a cgroup.
pub(super) fn bounds_of(a: &AgentConfig) -> Option<Bounds> {
    // Run time and open files are a launch's (`run`, `exec`), not a
    // selected agent's. Checked when the profile was loaded.
    let selected = |k: &str| matches!(k, "memory" | "pids" | "cpu" | "restarts");
    let b = match Budgets::from_resources(&a.profile.resources, selected) {
        Ok(b) => b,
        Err(e) => {
            warn!(agent = %a.name, error = %e, "the profile's budgets are not held");
            return None;
        }
    };
    let cgroup = if b.needs_cgroup() {
        cgroup_of(a, &b)
    } else {
        None
    };
    Bounds::of(cgroup, &b, a.budget_action)
}

/// The kernel-held budgets of `b` on the cgroup `a`'s selectors name.
fn cgroup_of(a: &AgentConfig, b: &Budgets) -> Option<Cgroup> {
    let root = cgroup2_mount();
    let paths: Vec<String> = a
        .selectors
        .iter()
        .filter_map(|s| s.cgroup_path(root.as_deref()))
        .collect();
    let Some(path) = paths.first() else {
        warn!(agent = %a.name, "the profile's memory, pids and cpu budgets are not held: select the agent by cgroup or systemd_unit to hold them on its cgroup");
        return None;
    };
    if paths.len() > 1 {
        warn!(agent = %a.name, cgroup = %path, "the agent's selectors name several cgroups; its budgets are held on the first");
    }
    match Cgroup::adopt(path, b) {
        Ok(cgroup) => {
            info!(agent = %a.name, cgroup = %path, "resource budgets held on the agent's cgroup");
            Some(cgroup)
        }
        Err(e) => {
            warn!(agent = %a.name, error = %e, "the profile's resource budgets are not held");
            None
        }
    }
}

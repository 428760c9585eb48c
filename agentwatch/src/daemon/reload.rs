//! The daemon's agents over time: started from the configuration, their
//! selectors resolved again on every rescan, and the whole set swapped on
//! reload. A reload validates and compiles everything before it touches
//! the kernel; a configuration that fails keeps the running one.
use agentwatch_common::names::map as kmap;
use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
};

use serde_json::json;
use tracing::{info, warn};

use super::{config, config::AgentConfig, Config, Daemon, Slot};
use crate::{
    control,
    enforce::{
        agent::{AgentEnforcer, Kept, Reconfig, Setup},
        audit_trail::AuditTrail,
        compile::{self, Compiled},
        own_files,
    },
    profile::guardrails::Guardrails,
    selectors,
    sensors::{DfaCapacity, SensorError},
};

/// Every agent of a configuration compiled, with the kernel id each gets.
pub(super) struct Plan {
    pub agents: Vec<(AgentConfig, Compiled)>,
    pub ids: BTreeMap<String, u32>,
    pub guardrails: Guardrails,
}

/// What a reload did to one agent.
enum Applied {
    Added,
    Changed,
    Same,
}

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is wrong: nothing of it was applied.
    #[error("configuration {} not applied; the running one stays:\n{why}", config.display())]
    Refused {
        config: std::path::PathBuf,
        why: String,
    },
    /// The kernel refused one agent's maps part way: the agents before
    /// it run the new configuration.
    #[error("agent {agent}: {why}")]
    Agent { agent: String, why: String },
}

/// What agentwatch guards from the agents of `cfg`.
fn guardrails(cfg: &Config) -> Guardrails {
    let sock = control::daemon_socket();
    let mut files: Vec<&Path> = vec![cfg.file.as_path(), sock.as_path()];
    files.extend(cfg.agents.iter().map(|a| a.profile_path.as_path()));
    files.extend(cfg.audit.as_ref().and_then(|a| a.key.as_deref()));
    let keys: Vec<std::path::PathBuf> = cfg
        .agents
        .iter()
        .flat_map(|a| crate::pins::manifest::keys(&a.profile, &a.anchors))
        .collect();
    files.extend(keys.iter().map(|k| k.as_path()));
    own_files::guardrails(&files, cfg.audit.as_ref().map(|a| a.path.as_path()), &[])
}

/// Compiles every agent of `cfg`; agents in `current` keep their ids,
/// new ones take the lowest free.
pub(super) fn compile_all(
    cfg: &Config,
    current: &BTreeMap<String, u32>,
    slots: u32,
) -> Result<Plan, SensorError> {
    let guardrails = guardrails(cfg);
    let mut ids = BTreeMap::new();
    let mut used: Vec<u32> = cfg
        .agents
        .iter()
        .filter_map(|a| current.get(&a.name).copied())
        .collect();
    let mut agents = Vec::new();
    for a in &cfg.agents {
        let id = match current.get(&a.name) {
            Some(id) => *id,
            None => {
                let free = (0..slots)
                    .find(|i| !used.contains(i))
                    .ok_or_else(|| SensorError::Map {
                        map: kmap::AGENT_POLICY,
                        reason: format!("the kernel maps were sized for {slots} agents at start; restart the daemon to add more"),
                    })?;
                used.push(free);
                free
            }
        };
        ids.insert(a.name.clone(), id);
        let c = compile::compile(id, &a.profile, &a.anchors, &guardrails, a.mode);
        for s in &c.skipped {
            warn!(agent = %a.name, pattern = %s, "the pattern names an anchor the agent's config does not set (workspace, home, tmp); it matches nothing");
        }
        if let Some(e) = &c.dfa_error {
            warn!(agent = %a.name, error = %e, "every file and exec event of the agent crosses to userspace and is judged there");
        }
        agents.push((a.clone(), c));
    }
    Ok(Plan {
        agents,
        ids,
        guardrails,
    })
}

/// Automaton room for the largest agent of `plan`, with headroom, for
/// twice as many agents (at least 4): reloads can add agents and grow
/// profiles up to that without a restart.
pub(super) fn capacity_for(plan: &Plan) -> DfaCapacity {
    let largest = plan
        .agents
        .iter()
        .filter_map(|(_, c)| c.dfa.as_ref())
        .max_by_key(|d| d.trans.len());
    DfaCapacity::for_dfa(largest).for_agents((plan.agents.len() as u32 * 2).max(4))
}

/// sha256 of a file's bytes ("" when unreadable).
pub(super) fn file_sha256(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| crate::audit::line_hash(&b))
        .unwrap_or_default()
}

impl Daemon {
    pub(super) fn start_agent(
        &mut self,
        a: &AgentConfig,
        id: u32,
        compiled: Compiled,
        guardrails: &Guardrails,
        adopt: bool,
    ) -> Result<(), SensorError> {
        let maps = self.template.reopen()?;
        let audit = self
            .audit
            .as_ref()
            .map(|w| AuditTrail::with_hash(w.clone(), a.profile_sha256.clone()));
        let e = AgentEnforcer::start(
            Setup {
                agent: a.name.clone(),
                agent_id: id,
                mode: a.mode,
                shadow: a.shadow.clone(),
                profile: a.profile.clone(),
                profile_path: a.profile_path.clone(),
                overlay: Some(a.overlay.clone()),
                file_actions: Some(a.file_actions.clone()),
                anchors: a.anchors.clone(),
                guardrails: guardrails.clone(),
                compiled,
                timeout: self.cfg.pause_timeout,
                alerts: Box::new(self.alerts.clone()),
                json: self.cfg.alerts_json,
                audit,
                kernel_decisions: true,
                feeds: Some(self.feeds.clone()),
                alert_policy: self.cfg.alert_policy,
                kept: Some(Kept {
                    approvals_file: super::state::approvals_file(&self.cfg.state_file, &a.name),
                    adopt,
                }),
                drift: Some(crate::enforce::drift::Keeper::open(
                    a.drift.clone(),
                    a.drift_threshold,
                )),
                context: a.context,
            },
            maps,
        )?;
        let mut e = e;
        e.set_identity(self.cfg.identity.clone());
        if let Some(b) = super::budgets::bounds_of(a) {
            e.set_bounds(b);
        }
        if let Ok(mut n) = self.names.write() {
            n.insert(id, a.name.clone());
        }
        if let Ok(mut m) = self.agents.write() {
            m.insert(a.name.clone(), Arc::new(Mutex::new(e)));
        }
        self.slots.insert(
            a.name.clone(),
            Slot {
                id,
                installed: Vec::new(),
            },
        );
        info!(agent = %a.name, id, mode = a.mode.name(), "agent started");
        Ok(())
    }

    /// Ends enforcement of `name`: selectors out of the kernel, requests
    /// released, processes resumed and no longer watched.
    fn remove_agent(&mut self, name: &str, by: &str) {
        let Some(slot) = self.slots.remove(name) else {
            return;
        };
        for r in slot.installed {
            if let Err(e) = self.sensors.remove_selector(r) {
                warn!(agent = %name, error = %e, "cannot remove a selector");
            }
        }
        let e = self.agents.write().ok().and_then(|mut m| m.remove(name));
        if let Some(e) = e {
            if let Ok(mut e) = e.lock() {
                let n = e.release_agent(by);
                info!(agent = %name, processes = n, "agent removed; its processes are no longer watched");
            }
        }
        if let Ok(mut n) = self.names.write() {
            n.remove(&slot.id);
        }
        let _ = std::fs::remove_file(super::state::approvals_file(&self.cfg.state_file, name));
    }

    /// Resolves every selector again (a unit restarted into a new cgroup,
    /// a binary replaced) and watches running processes that match.
    pub(super) fn rescan(&mut self) {
        // Pod selectors: one walk of the hierarchy for every agent.
        let pod_dirs = match (
            &self.cgroup2,
            self.cfg.agents.iter().any(|a| a.pods.is_some()),
        ) {
            (Some(root), true) => crate::k8s::pod_cgroups(root),
            _ => Default::default(),
        };
        // A kernel key selects one agent: the first to install it keeps it.
        let taken: Vec<(crate::selectors::Resolved, String)> = self
            .slots
            .iter()
            .flat_map(|(n, s)| s.installed.iter().map(move |r| (*r, n.clone())))
            .collect();
        for a in &self.cfg.agents {
            let Some(slot) = self.slots.get_mut(&a.name) else {
                continue;
            };
            let mut now = Vec::new();
            if let Some(sel) = &a.pods {
                for pod in self.pods.matching(sel) {
                    for dir in pod_dirs.get(&pod.uid).into_iter().flatten() {
                        if let Ok(md) = std::fs::metadata(dir) {
                            use std::os::unix::fs::MetadataExt;
                            now.push(crate::selectors::Resolved::Cgroup(md.ino()));
                        }
                    }
                }
            }
            for sel in &a.selectors {
                match sel.resolve(self.cgroup2.as_deref()) {
                    Ok(r) => {
                        self.reported.remove(&format!("{}/{sel}", a.name));
                        now.push(r);
                    }
                    Err(e) => {
                        if self.reported.insert(format!("{}/{sel}", a.name)) {
                            warn!(agent = %a.name, selector = %sel, error = %e, "selector does not resolve now; retried at every rescan");
                        }
                    }
                }
            }
            now.retain(|r| match taken.iter().find(|(k, n)| k == r && *n != a.name) {
                Some((_, other)) => {
                    if self.reported.insert(format!("{}/{r:?}", a.name)) {
                        warn!(agent = %a.name, %other, selector = ?r, "this agent's selector picks a cgroup, user or binary another agent has; it stays with that agent");
                    }
                    false
                }
                None => true,
            });
            for r in now.iter().filter(|r| !slot.installed.contains(r)) {
                if let Err(e) = self.sensors.add_selector(*r, slot.id) {
                    warn!(agent = %a.name, error = %e, "cannot install a selector");
                }
            }
            for r in slot.installed.iter().filter(|r| !now.contains(r)) {
                let _ = self.sensors.remove_selector(*r);
            }
            slot.installed = now;
            for pid in selectors::running_matches(&slot.installed, self.cgroup2.as_deref()) {
                if self.sensors.is_watched(pid) {
                    continue;
                }
                match self.sensors.watch(pid, slot.id) {
                    Ok(()) => info!(agent = %a.name, pid, "watching a running process"),
                    Err(e) => warn!(agent = %a.name, pid, error = %e, "cannot watch a process"),
                }
            }
        }
    }

    /// Re-reads the configuration and swaps it in, or keeps the running
    /// one and says why. `by`: who asked (a user, or SIGHUP).
    pub(super) fn reload(&mut self, by: &str) -> Result<String, ReloadError> {
        self.notifier.reloading();
        let r = self.try_reload(by);
        let status = self.status_line();
        self.notifier.ready(&status);
        match &r {
            Ok(m) => info!(by, "{m}"),
            Err(m) => warn!(by, "{m}"),
        }
        let (outcome, message) = match &r {
            Ok(m) => ("reloaded", m.clone()),
            Err(e) => ("refused", e.to_string()),
        };
        self.record(json!({
            "type": "config", "event": outcome, "by": by,
            "config": self.cfg.file.display().to_string(),
            "config_sha256": file_sha256(&self.cfg.file),
            "message": message,
        }));
        r
    }

    /// Reconfigures a running agent, or starts a new one; `Err` says why
    /// the kernel or the enforcer refused.
    fn apply_agent(
        &mut self,
        a: AgentConfig,
        id: u32,
        compiled: Compiled,
        guardrails: &Guardrails,
        timeout: std::time::Duration,
    ) -> Result<Applied, String> {
        let existing = self
            .agents
            .read()
            .ok()
            .and_then(|m| m.get(&a.name).cloned());
        let Some(e) = existing else {
            self.start_agent(&a, id, compiled, guardrails, false)
                .map_err(|e| e.to_string())?;
            return Ok(Applied::Added);
        };
        let old = self.cfg.agent(&a.name);
        let applied = if old.is_none_or(|o| differs(o, &a)) {
            Applied::Changed
        } else {
            Applied::Same
        };
        let mut e = e
            .lock()
            .map_err(|_| "its enforcer stopped after an internal error".to_string())?;
        // The old limits go back before the new ones are taken.
        e.end_bounds();
        if let Some(b) = super::budgets::bounds_of(&a) {
            e.set_bounds(b);
        }
        e.reconfigure(Reconfig {
            profile: a.profile,
            file_actions: a.file_actions,
            profile_path: a.profile_path,
            overlay: Some(a.overlay),
            profile_sha256: a.profile_sha256,
            mode: a.mode,
            anchors: a.anchors,
            guardrails: guardrails.clone(),
            compiled,
            timeout,
            shadow: a.shadow,
            drift_threshold: a.drift_threshold,
            context: a.context,
        })
        .map_err(|e| e.to_string())?;
        Ok(applied)
    }

    fn try_reload(&mut self, by: &str) -> Result<String, ReloadError> {
        let file = self.cfg.file.clone();
        let keep = |why: String| ReloadError::Refused {
            config: file.clone(),
            why,
        };
        let new = config::load(&file).map_err(|r| keep(r.to_string()))?;
        let current: BTreeMap<String, u32> =
            self.slots.iter().map(|(n, s)| (n.clone(), s.id)).collect();
        let cap = self.template.capacity();
        let plan = compile_all(&new, &current, cap.agents).map_err(|e| keep(e.to_string()))?;
        for (a, c) in &plan.agents {
            if let Some(d) = &c.dfa {
                if d.trans.len() as u64 > cap.trans as u64 || d.states() as u64 > cap.states as u64
                {
                    return Err(keep(format!(
                        "agent {}: its profile compiles to {} automaton states, past the {} the kernel maps were sized for at start; restart the daemon to apply it",
                        a.name,
                        d.states(),
                        cap.states
                    )));
                }
            }
        }
        let mut notes = restart_only(&self.cfg, &new);
        let removed: Vec<String> = self
            .slots
            .keys()
            .filter(|n| new.agent(n).is_none())
            .cloned()
            .collect();
        for name in &removed {
            self.remove_agent(name, by);
        }
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        let guardrails = plan.guardrails.clone();
        for (a, compiled) in plan.agents {
            let id = plan.ids[&a.name];
            let name = a.name.clone();
            let applied = self.apply_agent(a, id, compiled, &guardrails, new.pause_timeout);
            match applied.map_err(|why| ReloadError::Agent {
                agent: name.clone(),
                why,
            })? {
                Applied::Added => added.push(name),
                Applied::Changed => changed.push(name),
                Applied::Same => {}
            }
        }
        // Selectors of changed agents are re-resolved from scratch.
        for name in &changed {
            if let Some(slot) = self.slots.get_mut(name) {
                for r in slot.installed.drain(..) {
                    let _ = self.sensors.remove_selector(r);
                }
            }
        }
        self.cfg = new;
        self.rescan();
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        notes.insert(
            0,
            format!(
                "reloaded {}: added {}; changed {}; removed {}",
                file.display(),
                list(&added),
                list(&changed),
                list(&removed)
            ),
        );
        Ok(notes.join("; "))
    }
}

/// Whether an agent's definition changed (profile, mode, anchors,
/// selectors or actions).
fn differs(old: &AgentConfig, new: &AgentConfig) -> bool {
    old.profile_sha256 != new.profile_sha256
        || old.profile_path != new.profile_path
        || old.mode != new.mode
        || old.anchors != new.anchors
        || old.selectors != new.selectors
        || old.profile.actions != new.profile.actions
        || old.shadow.is_some() != new.shadow.is_some()
        || old.budget_action != new.budget_action
}

/// Settings a reload cannot change in a running daemon, named.
fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.ring_buffer_mb != new.ring_buffer_mb {
        out.push("ring_buffer_mb");
    }
    if old.audit != new.audit {
        out.push("[audit]");
    }
    if old.alerts != new.alerts || old.alerts_json != new.alerts_json {
        out.push("alerts");
    }
    if old.control_group != new.control_group {
        out.push("control_group");
    }
    if old.feeds != new.feeds {
        out.push("[[feed]]");
    }
    if old.metrics != new.metrics {
        out.push("[metrics]");
    }
    if old.kubernetes != new.kubernetes {
        out.push("[kubernetes]");
    }
    if old.pin_dir != new.pin_dir || old.state_file != new.state_file {
        out.push("pin_dir, state_file");
    }
    if out.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{} changed but take(s) effect only when the daemon restarts",
        out.join(", ")
    )]
}

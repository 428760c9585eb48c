//! What people and the daemon do to a running agent: answer its approval
//! requests (approve, with `--learn` into the profile; deny; the timeout),
//! pause and resume it, switch its mode, swap in a reloaded profile, and
//! release it.
use tracing::{info, warn};

use super::{AgentEnforcer, Reconfig};
use crate::{
    enforce::{
        approvals::{LearnEntry, Outcome, Subject},
        compile::{self, Mode},
        tree,
    },
    profile::{overlay, Approval, DnsRule, Executable, FileRule, Profile},
    sensors::SensorError,
};

/// Why an operator's action on an agent was refused or failed. Each says
/// what to do; the control socket sends it as the reply's `error`.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no pending request {0} (see `agentwatch pending`)")]
    NoSuchRequest(String),
    #[error("{0} has pending approval requests; approve or deny them (agentwatch pending)")]
    RequestsPending(String),
    #[error("{0} is being learned (learn = true): nothing of its profile is enforced while it learns; set learn = false and mode = \"enforce\" in the configuration, then `agentwatch reload`")]
    Learning(String),
    #[error("{source}; request {id} stays open: approve it without --learn, deny it, or make the profile writable and try again")]
    ProfileWrite {
        id: String,
        source: crate::atomic::WriteError,
    },
    #[error(transparent)]
    Kernel(#[from] SensorError),
}

impl AgentEnforcer {
    /// For an adopted agent, once the kernel's buffered records are read:
    /// if it is paused in the kernel but no request says why (the daemon
    /// died between the pause and saving its state), open one, so a
    /// person decides, as for any pause.
    pub fn ask_if_paused_unexplained(&mut self) {
        if !self.maps.paused(self.agent_id) || !self.approvals.is_empty() {
            return;
        }
        let pids = self.maps.pids(self.agent_id);
        tree::stop(&pids);
        let id = self.approvals.open(
            Subject {
                agent: self.agent.clone(),
                pid: pids.first().copied().unwrap_or(0),
                comm: String::new(),
                exe: None,
                ancestry: Vec::new(),
                rule: crate::profile::rule::Rule::PausedUnexplained.name().into_owned(),
                what: format!("{} process(es) paused", pids.len()),
                reason: "the agent was paused while agentwatch was restarting and the request that paused it was not saved; see the audit log".into(),
                evidence: serde_json::Value::Null,
                context: None,
                learn: None,
                lifts: None,
            },
            self.timeout,
        );
        warn!(agent = %self.agent, request = %id, "adopted a paused agent without its request; opened one");
    }

    /// Resolves request `id`. With `learn`, the entry joins the profile
    /// (file rewritten, kernel maps recompiled) with who approved it.
    /// All or nothing: with `learn`, the profile is written first; if it
    /// cannot be, the request stays open (its timeout still runs) and
    /// nothing is audited as approved.
    pub fn approve(&mut self, id: &str, learn: bool, by: &str) -> Result<String, OperatorError> {
        let entry = self
            .approvals
            .list()
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| OperatorError::NoSuchRequest(id.into()))?
            .subject
            .clone();
        let learned_into = match (&entry.learn, learn) {
            (Some(e), true) => Some(self.learn(e, id, &entry.what, by)?),
            _ => None,
        };
        let learned = learned_into.is_some();
        let req = self
            .approvals
            .take(id)
            .ok_or_else(|| OperatorError::NoSuchRequest(id.into()))?;
        self.stats.approved += 1;
        if let Some(a) = &mut self.audit {
            a.answer_shown(
                &self.agent,
                std::slice::from_ref(&req.id),
                "approved",
                by,
                learned,
                req.subject.shown(),
            );
        }
        self.steers
            .answered(std::slice::from_ref(&req.id), "approved", by);
        let mut msg = format!("approved {id}: {}", req.subject.what);
        if let Some(into) = &learned_into {
            msg.push_str(&format!("; added to {}", into.display()));
            if *into != self.profile_path {
                msg.push_str(&format!(
                    " (the overlay of {}, which cannot be written: `agentwatch profile show` applies it)",
                    self.profile_path.display()
                ));
            }
        } else if learn {
            msg.push_str(
                "; not learned: guardrails hold whatever the profile says, so this was a one-time approval",
            );
        }
        if let Some(mount) = &req.subject.lifts {
            msg.push_str(&self.lift_shield(mount));
        }
        if self.approvals.is_empty() {
            self.resume_tree();
            msg.push_str("; the agent resumes");
        } else {
            msg.push_str("; the agent stays paused: other requests are pending");
        }
        Ok(msg)
    }

    /// Kills the tree and resolves every request of the agent.
    /// `by`: who answered (a user name, `timeout`, or agentwatch itself).
    pub fn deny(
        &mut self,
        id: Option<&str>,
        outcome: Outcome,
        by: &str,
    ) -> Result<String, OperatorError> {
        if let Some(id) = id {
            if !self.approvals.list().iter().any(|r| r.id == id) {
                return Err(OperatorError::NoSuchRequest(id.into()));
            }
        }
        // What the person who denied was shown: the request they named.
        let shown = id.and_then(|id| {
            self.approvals
                .list()
                .iter()
                .find(|r| r.id == id)
                .and_then(|r| r.subject.shown())
        });
        let ids = self.approvals.take_all_ids();
        let n = ids.len() as u64;
        let name = match outcome {
            Outcome::TimedOut => {
                self.stats.timed_out += n;
                "timed_out"
            }
            _ => {
                self.stats.denied += n;
                "denied"
            }
        };
        if let Some(a) = &mut self.audit {
            a.answer_shown(&self.agent, &ids, name, by, false, shown);
        }
        // Read by the agent's launcher after the tree died.
        self.steers.answered(&ids, name, by);
        let pids = self.maps.pids(self.agent_id);
        tree::kill(&pids);
        // A stopped process dies only once it runs again.
        tree::resume(&pids);
        let _ = self.maps.set_paused(self.agent_id, false);
        Ok(format!(
            "{}: killed {} process(es) of {}",
            match outcome {
                Outcome::TimedOut => "timed out",
                _ => "denied",
            },
            pids.len(),
            self.agent
        ))
    }

    /// Kills the tree when a request outlived the timeout.
    pub fn check_timeouts(&mut self) -> Option<String> {
        if let Some(a) = &mut self.audit {
            a.sync_if_due();
        }
        if let Some(k) = &mut self.drift {
            k.save_if_due();
        }
        self.expire_answers();
        self.finish_hashing(false);
        self.flush_alerts(std::time::Instant::now());
        self.each_second();
        // An append is audited as it completes; its line gives way to a
        // timeout's, which matters more to whoever reads the output.
        let learned = self.tick_learning();
        if self.approvals.any_expired() {
            return self.deny(None, Outcome::TimedOut, "timeout").ok();
        }
        if !self.approvals.is_empty() && self.maps.pids(self.agent_id).is_empty() {
            return Some(self.resolve_exited());
        }
        learned
    }

    /// Every process of a paused agent is gone (killed by hand, or it
    /// exited): nothing is left to approve. The requests are closed as
    /// `exited` and the pause lifted, so the agent's next process is not
    /// stopped at its first call.
    fn resolve_exited(&mut self) -> String {
        let ids = self.approvals.take_all_ids();
        if let Some(a) = &mut self.audit {
            a.answer(
                &self.agent,
                &ids,
                "exited",
                "agentwatch (no process left)",
                false,
            );
        }
        let _ = self.maps.set_paused(self.agent_id, false);
        format!(
            "{} exited while paused; closed {}",
            self.agent,
            ids.join(", ")
        )
    }

    /// Lifts the guardrail shield's read-only `mount` in the agent's
    /// namespace (an approved call it refused); what the answer says of it.
    fn lift_shield(&self, mount: &str) -> String {
        let Some(pid) = self.maps.pids(self.agent_id).into_iter().next() else {
            return format!("; {mount} stays read-only: no process of the agent is left");
        };
        match crate::sandbox::shield::lift(pid, std::path::Path::new(mount)) {
            Ok(()) => {
                info!(agent = %self.agent, mount, "guardrail shield lifted on approval");
                format!("; the shield's mount at {mount} is lifted for the agent (it refused the call before its effect: a retry goes through, and later calls there are judged by the names they give)")
            }
            // Another approved request of the same sweep lifted it.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                format!("; {mount} is no mount in the agent's namespace now (lifted already)")
            }
            Err(e) => {
                warn!(agent = %self.agent, mount, error = %e, "could not lift the guardrail shield");
                format!("; {mount} stays read-only: lifting its mount failed ({e})")
            }
        }
    }

    fn resume_tree(&mut self) {
        let _ = self.maps.set_paused(self.agent_id, false);
        tree::resume(&self.maps.pids(self.agent_id));
    }

    /// The kill switch.
    pub fn pause(&mut self) -> String {
        let _ = self.maps.set_paused(self.agent_id, true);
        let n = self.stop_tree();
        format!("paused {}: {n} process(es) stopped", self.agent)
    }

    pub fn resume(&mut self) -> Result<String, OperatorError> {
        if !self.approvals.is_empty() {
            return Err(OperatorError::RequestsPending(self.agent.clone()));
        }
        self.resume_tree();
        Ok(format!("resumed {}", self.agent))
    }

    pub fn set_mode(&mut self, mode: Mode) -> Result<String, OperatorError> {
        if self.learning() && mode == Mode::Enforce {
            return Err(OperatorError::Learning(self.agent.clone()));
        }
        self.mode = mode;
        let mut p = self.maps.policy(self.agent_id)?;
        p.enforce = u8::from(mode == Mode::Enforce);
        self.maps.set_policy(self.agent_id, &p)?;
        Ok(format!("{} is now in {} mode", self.agent, mode.name()))
    }

    /// Swaps in a new profile, mode and anchors (the daemon's reload):
    /// the matcher, the audit's profile version and the kernel maps (the
    /// automaton into the idle half, endpoints rewritten). Open approval
    /// requests stay open.
    pub fn reconfigure(&mut self, r: Reconfig) -> Result<(), SensorError> {
        self.profile = r.profile;
        self.file_actions = r.file_actions;
        self.profile_path = r.profile_path;
        self.overlay = r.overlay;
        self.mode = r.mode;
        self.anchors = r.anchors;
        self.guardrails = r.guardrails;
        self.compiled = r.compiled;
        self.timeout = r.timeout;
        if let Some(k) = &mut self.drift {
            k.threshold = r.drift_threshold;
        }
        self.recompile_judges();
        self.set_shadow(r.shadow);
        self.set_intent(r.context);
        if let Some(a) = &mut self.audit {
            a.set_profile_hash(&r.profile_sha256);
        }
        self.maps.clear_endpoints(self.agent_id)?;
        self.install()
    }

    /// Stops enforcing (the agent left the configuration): open requests
    /// are resolved as released by `by`, the tree resumes, and the kernel
    /// forgets the agent's policy and processes. Returns how many
    /// processes were let go.
    pub fn release_agent(&mut self, by: &str) -> usize {
        for m in self.finish_learning() {
            warn!(agent = %self.agent, "{m}");
        }
        self.finish_activity();
        if let Some(k) = &mut self.drift {
            k.save();
        }
        let ids = self.approvals.take_all_ids();
        if !ids.is_empty() {
            if let Some(a) = &mut self.audit {
                a.answer(&self.agent, &ids, "released", by, false);
            }
        }
        let pids = self.maps.pids(self.agent_id);
        if let Err(e) = self.maps.clear_agent(self.agent_id) {
            warn!(error = %e, agent = %self.agent, "cannot clear the agent's policy");
        }
        tree::resume(&pids);
        self.maps.unwatch_agent(self.agent_id);
        pids.len()
    }

    /// Adds `entry` (approved as request `id`) to the profile, writes it,
    /// and recompiles; returns the file written: the profile, or the
    /// overlay when the profile is not ours to write.
    fn learn(
        &mut self,
        entry: &LearnEntry,
        id: &str,
        what: &str,
        by: &str,
    ) -> Result<std::path::PathBuf, OperatorError> {
        let approval = Approval {
            id: id.into(),
            what: what.into(),
            by: by.into(),
            at: crate::timestamp::now(),
        };
        // On a copy: the profile in use changes only once it is written.
        let mut p = self.profile.clone();
        add_learned(&mut p, entry, &approval);
        let mut on_file = p.clone();
        on_file.actions = self.file_actions.clone();
        let yaml = crate::profile::yaml::to_yaml(&on_file);
        let written = match (
            crate::atomic::write(&self.profile_path, yaml.as_bytes()),
            &self.overlay,
        ) {
            (Ok(()), _) => Ok((self.profile_path.clone(), yaml)),
            // Not ours to write (a ConfigMap): the overlay takes it.
            // The version is the file as it is plus the overlay, as the
            // daemon's configuration hashes them at a reload.
            (Err(e), Some(o)) if overlay::stands_in_for(&e.source) => {
                write_overlay(o, &self.agent, entry, &approval).map(|y| {
                    let file = std::fs::read_to_string(&self.profile_path).unwrap_or_default();
                    (o.clone(), file + &y)
                })
            }
            (Err(e), _) => Err(e),
        };
        let (written, version) = written.map_err(|source| OperatorError::ProfileWrite {
            id: id.into(),
            source,
        })?;
        self.profile = p;
        if let Some(a) = &mut self.audit {
            a.profile_changed(version.as_bytes());
        }
        self.compiled = compile::compile(
            self.agent_id,
            &self.profile,
            &self.anchors,
            &self.guardrails,
            self.mode,
        );
        self.recompile_judges();
        self.install()?;
        Ok(written)
    }
}

/// Adds a learned entry and its approval to `p`.
fn add_learned(p: &mut Profile, entry: &LearnEntry, approval: &Approval) {
    match entry.clone() {
        LearnEntry::File { path, access } => p.files.push(FileRule {
            path,
            access,
            runs: 1,
        }),
        LearnEntry::Exec { path } => p.executables.push(Executable {
            path,
            sha256: Vec::new(),
            source: None,
            runs: 1,
        }),
        LearnEntry::Net(r) => p.network.push(r),
        LearnEntry::Dns { name } => p.dns.push(DnsRule { name, runs: 1 }),
        LearnEntry::Model(m) => {
            crate::profile::pinned::union_models(&mut p.models, &Some(vec![m]));
        }
        LearnEntry::Instruction(i) => {
            crate::profile::pinned::add_instructions(&mut p.instructions, &[i], false);
        }
    }
    p.approvals.push(approval.clone());
    p.sort();
}

/// Adds a learned entry to agent `agent`'s overlay at `path` (made when
/// absent); returns what was written.
fn write_overlay(
    path: &std::path::Path,
    agent: &str,
    entry: &LearnEntry,
    approval: &Approval,
) -> Result<String, crate::atomic::WriteError> {
    let fail = |source| crate::atomic::WriteError {
        path: path.to_path_buf(),
        source,
    };
    let mut o = match overlay::load(path) {
        Ok(o) => o.unwrap_or_else(|| Profile::empty(agent)),
        // A broken overlay is not overwritten: what it holds was approved.
        Err(r) => return Err(fail(std::io::Error::other(r.to_string()))),
    };
    add_learned(&mut o, entry, approval);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let yaml = crate::profile::yaml::to_yaml(&o);
    crate::atomic::write(path, yaml.as_bytes())?;
    Ok(yaml)
}

//! One agent under enforcement: its profile, compiled policy and kernel
//! maps, its open approval requests, and what userspace does with each
//! event that crosses from the kernel (alerts, pauses, holds released,
//! host-name endpoints allowed, decisions the kernel could not make).
use std::{io::Write, path::PathBuf, time::Duration};

use agentwatch_common::policy::{action as ka, verdict, AgentPolicy};
use tracing::{debug, warn};

use explain::explain;
use undo::{undo_denied, undo_privilege};

mod answers;
mod budget;
pub use budget::Bounds;
mod explain;
mod identity;
mod intent;
mod learning;
mod operator;
mod pause;
mod pinned;
mod records;
mod undo;
mod view;

use super::{
    approvals::Approvals,
    audit_trail::AuditTrail,
    compile::{Compiled, Mode},
    decision::{AlertWriter, DecidedBy, Decision, DecisionSink},
    tree,
};
use crate::{
    event::{Detail, Event, KernelDecision},
    profile::{
        anchors::Anchors,
        guardrails::Guardrails,
        matcher::{Finding, Matcher},
        observe,
        rule::Rule,
        ActionKind, Actions, Class, Profile,
    },
    sensors::{PolicyMaps, SensorError},
};

/// Counts for the end-of-run summary; the metrics' decision sink.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    pub alerts: u64,
    /// Violations the kernel acted on (pause, kill, deny).
    pub kernel_actions: u64,
    /// Violations userspace acted on (the kernel could not decide them).
    pub userspace_actions: u64,
    /// Held processes released after userspace judged them allowed.
    pub released: u64,
    pub approved: u64,
    pub denied: u64,
    pub timed_out: u64,
    /// Decisions by action (alert, deny, pause, kill).
    pub by_action: std::collections::BTreeMap<String, u64>,
    /// New names created inside a territory (allowed, recorded).
    pub learned: u64,
    /// Reads of a secret inside the workspace (allowed; the reader is
    /// tainted).
    pub tainted: u64,
}

impl DecisionSink for Stats {
    fn decision(&mut self, d: &Decision) {
        self.alerts += 1;
        // Counted on every alert: allocate a key only for a new action.
        match self.by_action.get_mut(d.action_kind()) {
            Some(n) => *n += 1,
            None => {
                self.by_action.insert(d.action_kind().to_string(), 1);
            }
        }
    }
}

pub struct AgentEnforcer {
    agent: String,
    agent_id: u32,
    mode: Mode,
    profile: Profile,
    profile_path: PathBuf,
    overlay: Option<PathBuf>,
    /// The actions the profile file itself says (the daemon's config may
    /// override them in `profile`); what `--learn` writes back.
    file_actions: Actions,
    anchors: Anchors,
    guardrails: Guardrails,
    matcher: Matcher,
    compiled: Compiled,
    maps: PolicyMaps,
    approvals: Approvals,
    timeout: Duration,
    stats: Stats,
    alerts: AlertWriter,
    kernel_decisions: bool,
    audit: Option<AuditTrail>,
    feeds: Option<std::sync::Arc<crate::feeds::Feeds>>,
    throttle: super::throttle::Throttle,
    /// Territory novelty already recorded this run (normalised paths).
    novel: std::collections::HashSet<String>,
    /// Shadow learning (the daemon's `learn = true`): every event is
    /// recorded and only hard rules act.
    shadow: Option<crate::profile::shadow::Shadow>,
    /// The agent's DNS queries, and the endpoints its answers allowed.
    resolutions: super::resolutions::Resolutions<answers::AllowedKey>,
    drift: Option<super::drift::Keeper>,
    /// The agent's model traffic, for the context of alerts and requests.
    intent: crate::intent::IntentLog,
    /// What it did within its profile, a session at a time.
    activity: super::activity::Activity,
    /// The last `each_second` turn.
    second_checked: std::time::Instant,
    /// Where the agent reads why it was refused (`run`'s launch, each
    /// `agentwatch exec`).
    steers: super::steer::Steers,
    /// Who it may run as, and the UIDs already judged.
    identity: crate::identity::Policy,
    identities: std::collections::HashSet<u32>,
    /// Its resource budgets (`run --budget`).
    bounds: Option<budget::Bounds>,
    /// Its approved models and pinned instruction files.
    pins: crate::pins::Pins,
    /// Pinned files being hashed, with the read that asked and whether
    /// its reader is held.
    hasher: crate::pins::hasher::Hasher<(Event, bool)>,
    /// The mount namespaces its launches got from the guardrail shield.
    shield_namespaces: std::collections::HashSet<String>,
}

/// A matcher for `profile` that asks the kernel's WRITTEN map whether the
/// agent wrote a file (writes decided in the kernel never cross).
fn matcher_for(
    profile: &Profile,
    anchors: &Anchors,
    guardrails: &Guardrails,
    maps: &PolicyMaps,
    agent_id: u32,
) -> Matcher {
    let m = Matcher::new(profile, anchors.clone(), guardrails.clone());
    match maps.written_oracle(agent_id) {
        Ok(o) => m.with_written_oracle(o),
        Err(e) => {
            warn!(error = %e, "cannot read the kernel's record of written files; exec/written is judged from the events seen");
            m
        }
    }
}

/// The action a finding gets from userspace: `policy::wanted`, as the
/// kernel chooses it, under the agent's compiled policy and mode.
fn wanted(policy: &AgentPolicy, mode: Mode, f: &Finding) -> ActionKind {
    let mut pol = *policy;
    pol.enforce = u8::from(mode == Mode::Enforce);
    match agentwatch_common::policy::wanted(&pol, f.kernel_rule(), f.class.kernel_index()) {
        ka::DENY => ActionKind::Deny,
        ka::PAUSE => ActionKind::Pause,
        ka::KILL => ActionKind::Kill,
        _ => ActionKind::Alert,
    }
}

/// A refused call as the matcher judges it: as if it had run.
fn attempted(ev: &Event) -> Event {
    let mut attempt = ev.clone();
    match &mut attempt.detail {
        Detail::Exec { result, .. } => *result = Some(0),
        d => {
            if let Some(r) = d.result_mut() {
                *r = None;
            }
        }
    }
    attempt
}

/// The action as an alert names it: the event's name, spelled out for the
/// SIGKILL fallback of deny.
fn kernel_action(k: &KernelDecision) -> &'static str {
    match k.action {
        ka::DENY_KILL => "deny (SIGKILL at the call)",
        ka::DENY_LANDLOCK => "deny (Landlock, before the effect)",
        _ => k.action_name(),
    }
}

pub struct Setup {
    pub agent: String,
    pub agent_id: u32,
    pub mode: Mode,
    pub profile: Profile,
    pub profile_path: PathBuf,
    /// Where `approve --learn` writes when the profile cannot be written
    /// (the daemon's; `run` has none and reports the failure).
    pub overlay: Option<PathBuf>,
    /// The profile file's own actions when `profile.actions` overrides
    /// them (None: the same).
    pub file_actions: Option<Actions>,
    pub anchors: Anchors,
    pub guardrails: Guardrails,
    pub compiled: Compiled,
    pub timeout: Duration,
    pub alerts: Box<dyn Write + Send>,
    pub json: bool,
    /// Where every decision and approval answer is recorded, if anywhere.
    pub audit: Option<AuditTrail>,
    /// False: the kernel only senses and every decision is taken here (the
    /// userspace fallback, measured by `cargo xtask bench`).
    pub kernel_decisions: bool,
    /// Where open approval requests are kept (the daemon's), and whether
    /// the agent's kernel state and kept requests are adopted rather than
    /// reset (a restarted daemon taking over pinned maps).
    pub kept: Option<Kept>,
    /// SOC feeds that get every decision (the daemon's).
    pub feeds: Option<std::sync::Arc<crate::feeds::Feeds>>,
    /// How repeated alerts are folded and the feeds budgeted.
    pub alert_policy: super::throttle::AlertPolicy,
    /// Learn the agent in shadow (the daemon's `learn = true`): the
    /// kernel only senses, every session is appended to the profile.
    pub shadow: Option<crate::profile::shadow::ShadowConfig>,
    /// The drift log (the daemon's, in its state directory).
    pub drift: Option<super::drift::Keeper>,
    /// How much of its model traffic the agent's context keeps.
    pub context: crate::intent::Level,
}

pub struct Kept {
    pub approvals_file: PathBuf,
    pub adopt: bool,
}

/// What `AgentEnforcer::reconfigure` swaps in.
pub struct Reconfig {
    pub profile: Profile,
    pub file_actions: Actions,
    pub profile_path: PathBuf,
    pub overlay: Option<PathBuf>,
    pub profile_sha256: String,
    pub mode: Mode,
    pub anchors: Anchors,
    pub guardrails: Guardrails,
    pub compiled: Compiled,
    pub timeout: Duration,
    pub shadow: Option<crate::profile::shadow::ShadowConfig>,
    pub drift_threshold: Option<u64>,
    pub context: crate::intent::Level,
}

impl AgentEnforcer {
    /// Writes the compiled policy into the kernel maps and starts judging.
    /// With `s.kept` adopting, the agent's kernel state is kept (a restarted
    /// daemon taking over pinned maps): rate windows, the pause flag, and
    /// the open requests it restores.
    pub fn start(s: Setup, mut maps: PolicyMaps) -> Result<Self, SensorError> {
        let adopt = s.kept.as_ref().is_some_and(|k| k.adopt);
        if !adopt {
            maps.reset_state(s.agent_id)?;
            maps.set_paused(s.agent_id, false)?;
        }
        let matcher = matcher_for(&s.profile, &s.anchors, &s.guardrails, &maps, s.agent_id);
        let pins = crate::pins::Pins::new(&s.profile, &s.anchors);
        let file_actions = s
            .file_actions
            .clone()
            .unwrap_or_else(|| s.profile.actions.clone());
        let mut me = Self {
            agent: s.agent,
            agent_id: s.agent_id,
            mode: s.mode,
            profile: s.profile,
            profile_path: s.profile_path,
            overlay: s.overlay,
            file_actions,
            anchors: s.anchors,
            guardrails: s.guardrails,
            matcher,
            compiled: s.compiled,
            maps,
            approvals: s
                .kept
                .map(|k| Approvals::kept_in(k.approvals_file, k.adopt))
                .unwrap_or_default(),
            timeout: s.timeout,
            stats: Stats::default(),
            alerts: AlertWriter::new(s.alerts, s.json),
            kernel_decisions: s.kernel_decisions,
            audit: s.audit,
            feeds: s.feeds,
            throttle: super::throttle::Throttle::new(s.alert_policy),
            novel: std::collections::HashSet::new(),
            shadow: None,
            resolutions: Default::default(),
            drift: s.drift,
            intent: Default::default(),
            activity: Default::default(),
            second_checked: std::time::Instant::now(),
            steers: super::steer::Steers::default(),
            identity: Default::default(),
            identities: Default::default(),
            bounds: None,
            pins,
            hasher: Default::default(),
            shield_namespaces: Default::default(),
        };
        me.set_intent(s.context);
        me.set_shadow(s.shadow);
        me.install()?;
        Ok(me)
    }

    /// A matcher for the current profile, told of the kernel's writes.
    fn new_matcher(&self) -> Matcher {
        matcher_for(
            &self.profile,
            &self.anchors,
            &self.guardrails,
            &self.maps,
            self.agent_id,
        )
    }

    /// The userspace judges for a changed profile, keeping what the run
    /// has shown so far (taint, writes, names, rates, digests).
    fn recompile_judges(&mut self) {
        let fresh = self.new_matcher();
        let old = std::mem::replace(&mut self.matcher, fresh);
        self.matcher.carry_over(old);
        self.pins.reconfigure(&self.profile, &self.anchors);
    }

    /// Writes `self.compiled` to the kernel: automaton (into the idle
    /// half), endpoints, then the policy that switches to them.
    pub(super) fn install(&mut self) -> Result<(), SensorError> {
        let mut policy = self.compiled.policy;
        policy.enforce = u8::from(self.mode == Mode::Enforce);
        if let Some(dfa) = &self.compiled.dfa {
            let (t, a, c) = self.maps.write_dfa(self.agent_id, dfa)?;
            policy.trans_base = t;
            policy.accept_base = a;
            policy.class_base = c;
        }
        for e in &self.compiled.endpoints {
            self.maps.allow_endpoint(e.any_port, &e.key, e.model)?;
        }
        self.maps.allow_names(&self.compiled.dns_names)?;
        // Learning in shadow, every event must cross: none is decided here.
        if !self.kernel_decisions || self.shadow.is_some() {
            policy.active = 0;
        }
        self.maps.set_policy(self.agent_id, &policy)
    }

    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Judges one event that crossed from the kernel.
    pub fn handle(&mut self, ev: &Event) {
        self.finish_hashing(false);
        if self.take_tls(ev) {
            return;
        }
        if let Some(s) = &mut self.shadow {
            s.observe(ev);
        }
        // A forged answer allows nothing, here nor in the matcher (which
        // would otherwise map the name to its addresses).
        self.note_drift(ev);
        self.note_identity(ev);
        self.note_start(ev);
        self.steers.follow(ev);
        let forged = match &ev.detail {
            Detail::Dns { .. } => {
                self.note_query(ev);
                false
            }
            Detail::DnsAnswer { .. } => !self.allow_answer(ev),
            _ => false,
        };
        let mut findings: Vec<Finding> = match (&ev.kernel, &ev.detail) {
            _ if forged => Vec::new(),
            // An exec the LSM tier or Landlock refused failed; the matcher
            // judges what was attempted, as it would have judged the exec.
            (
                Some(_),
                Detail::Exec {
                    result: Some(r), ..
                },
            ) if *r != 0 => self.matcher.check(&attempted(ev)),
            // A file call the kernel refused (the LSM tier's deny,
            // Landlock) failed because of the violation: its attempt is
            // what is judged.
            (Some(k), _)
                if k.verdict == verdict::VIOLATION
                    && matches!(k.action, ka::DENY | ka::DENY_LANDLOCK)
                    && observe::failed(ev) =>
            {
                self.matcher.check(&attempted(ev))
            }
            _ => self.matcher.check(ev),
        };
        self.note_activity(ev, &findings);
        // Learning: what the profile does not have yet is what is learned.
        if self.shadow.is_some() {
            findings.retain(Finding::hard);
        }

        let Some(k) = ev.kernel else {
            // Not decided in the kernel (accept, listen, a failed exec).
            self.judge_in_userspace(ev, &findings, false);
            return;
        };
        match k.verdict {
            verdict::ALLOW if k.rule == agentwatch_common::policy::rule::TERRITORY => {
                self.record_novelty(ev);
            }
            verdict::ALLOW if k.rule == agentwatch_common::policy::rule::TAINT => {
                self.record_taint(ev);
            }
            verdict::ALLOW if k.rule == agentwatch_common::policy::rule::PINNED => {
                self.judge_pinned(ev, k.action == ka::HOLD);
            }
            verdict::ALLOW => {
                if let Some(f) = findings.iter().find(|f| !f.is_rate()) {
                    debug!(rule = %f.rule, what = %f.what, "kernel allowed what the matcher flags");
                }
            }
            verdict::VIOLATION => self.kernel_violation(ev, k, findings),
            _ => {
                let held = k.action == ka::HOLD;
                self.judge_in_userspace(ev, &findings, held);
            }
        }
    }

    /// Acts on a violation the kernel decided (and mostly acted on): the
    /// rest of the action (the tree swept, an approval request opened,
    /// what a kill after the call left undone), the alert, and a held
    /// caller released when the action leaves it running.
    fn kernel_violation(&mut self, ev: &Event, k: KernelDecision, mut findings: Vec<Finding>) {
        // The launch sandbox judged the real hierarchy: what the names
        // the call gave do not explain, its real paths may (a symlinked
        // directory), or the mounts the names lead to (names rewritten
        // under the call). None: the failure was not the sandbox's (a
        // binary without its execute bit, a read-only filesystem).
        let landlock = matches!(Rule::from_kernel(k.rule), Rule::Landlock(_));
        let mut by_sandbox = None;
        if landlock {
            if findings.iter().all(Finding::is_rate) {
                findings = explain::by_real_paths(ev)
                    .map(|real| self.matcher.check(&attempted(&real)))
                    .unwrap_or_default();
            }
            let files_held = crate::sandbox::Held::of_policy(&self.compiled.policy).file;
            by_sandbox = explain::by_shield(ev, &findings)
                .or_else(|| explain::pinned(ev, &self.anchors))
                .or_else(|| {
                    findings
                        .iter()
                        .all(Finding::is_rate)
                        .then(|| explain::rewritten(ev, files_held, &self.anchors))
                        .flatten()
                });
            if by_sandbox.is_none() && findings.iter().all(Finding::is_rate) {
                if k.held {
                    self.release(ev.pid);
                }
                return;
            }
        }
        let mut action = kernel_action(&k);
        // A guardrail whose action pauses: refused all the same (the
        // shield is a mount), and the agent stopped for a person, whose
        // approval lifts the mount for a retry (`pause_for`).
        let mut shield_pause = false;
        let f = match by_sandbox {
            Some(f) => {
                shield_pause = wanted(&self.compiled.policy, self.mode, &f) == ActionKind::Pause;
                action = if shield_pause {
                    "pause (launch sandbox refused it before the effect)"
                } else {
                    "deny (launch sandbox, before the effect)"
                };
                f
            }
            None => explain(Rule::from_kernel(k.rule), &findings, ev, &self.anchors),
        };
        if k.action != ka::ALERT {
            self.stats.kernel_actions += 1;
        }
        let mut approval = None;
        if k.rule == agentwatch_common::policy::rule::GUARD_PRIVILEGE {
            undo_privilege(ev);
        }
        // Whether the caller goes on after the action (a call held
        // at its entry must then be released).
        let goes_on = match k.action {
            _ if shield_pause => {
                approval = Some(self.pause_for(ev, &f));
                false
            }
            ka::PAUSE => {
                approval = Some(self.pause_for(ev, &f));
                false
            }
            ka::KILL => {
                tree::kill(&self.maps.pids(self.agent_id));
                let _ = self.maps.set_paused(self.agent_id, false);
                false
            }
            ka::DENY_KILL => {
                undo_denied(ev);
                false
            }
            // Landlock refused the call; a class whose action is
            // kill loses its tree as well.
            ka::DENY_LANDLOCK
                if wanted(&self.compiled.policy, self.mode, &f) == ActionKind::Kill =>
            {
                tree::kill(&self.maps.pids(self.agent_id));
                action = "kill";
                false
            }
            _ => true,
        };
        if k.held && goes_on {
            self.release(ev.pid);
        }
        self.alert(ev, &f, action, DecidedBy::Kernel, approval.clone());
        // A budget's record stands in for what the kernel would
        // otherwise have left to userspace (a binary to hash, a
        // path it could not judge): what userspace finds in the
        // same event is reported too, under the same action.
        if f.is_rate() {
            for other in findings.iter().filter(|x| !x.is_rate()) {
                let by = DecidedBy::Userspace;
                self.alert(ev, other, kernel_action(&k), by, approval.clone());
            }
        }
    }

    /// Acts on what the kernel left to userspace. A held process is
    /// released when nothing is wrong.
    fn judge_in_userspace(&mut self, ev: &Event, findings: &[Finding], held: bool) {
        let Some(f) = findings.iter().find(|f| !f.is_rate()).cloned() else {
            if held {
                self.release(ev.pid);
            }
            return;
        };
        self.act_in_userspace(ev, &f, held, None, None);
    }

    /// Takes the action the class sets for a finding of userspace's, and
    /// alerts. `learn`: what `approve --learn` adds (None: read from the
    /// event); `detail`: the alert's `pinned` record.
    fn act_in_userspace(
        &mut self,
        ev: &Event,
        f: &Finding,
        held: bool,
        learn: Option<super::approvals::LearnEntry>,
        detail: Option<&serde_json::Value>,
    ) {
        let act = wanted(&self.compiled.policy, self.mode, f);
        let mut approval = None;
        match act {
            ActionKind::Alert => {
                if held {
                    self.release(ev.pid);
                }
            }
            // A DNS query for a name outside the profile was dropped as it
            // left (the DNS egress hook): the resolver saw EPERM.
            ActionKind::Deny if f.class == Class::Dns => {}
            // No hook refused it in time (or it is held at the open's
            // return): end the process that did it.
            ActionKind::Deny => {
                tree::kill(&[ev.pid]);
            }
            ActionKind::Pause => {
                approval = Some(match learn {
                    Some(l) => self.pause_with(ev, f, Some(l)),
                    None => self.pause_for(ev, f),
                });
            }
            ActionKind::Kill => self.kill_tree(),
        }
        if act != ActionKind::Alert {
            self.stats.userspace_actions += 1;
        }
        self.alert_with(ev, f, act.name(), DecidedBy::Userspace, approval, detail);
    }

    fn release(&mut self, pid: u32) {
        if !self.maps.paused(self.agent_id) {
            tree::resume(&[pid]);
            self.stats.released += 1;
        }
    }

    /// Writes a line where alerts go (the run's summary).
    pub fn write_line(&mut self, line: &str) {
        self.alerts.line(line);
    }
}

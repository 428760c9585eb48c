//! One agent under enforcement: its profile, compiled policy and kernel
//! maps, its open approval requests, and what userspace does with each
//! event that crosses from the kernel (alerts, pauses, holds released,
//! host-name endpoints allowed, decisions the kernel could not make).
use std::{io::Write, path::PathBuf, time::Duration};

use agentwatch_common::policy::{action as ka, verdict};
use serde_json::json;
use tracing::{debug, warn};

mod operator;

use super::{
    approvals::{Approvals, LearnEntry, Subject},
    audit_trail::AuditTrail,
    compile::{host_key, Compiled, Mode},
    tree,
};
use crate::{
    event::{Detail, Event, KernelDecision},
    profile::{
        anchors::Anchors,
        guardrails::Guardrails,
        matcher::{Finding, Matcher},
        observe::{self, Obs, Peer},
        ActionKind, Actions, Class, NetRule, Profile,
    },
    sensors::{PolicyMaps, SensorError},
};

/// Counts for the end-of-run summary.
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
}

pub struct AgentEnforcer {
    pub agent: String,
    pub agent_id: u32,
    pub mode: Mode,
    pub profile: Profile,
    pub profile_path: PathBuf,
    /// The actions the profile file itself says (the daemon's config may
    /// override them in `profile`); what `--learn` writes back.
    file_actions: Actions,
    anchors: Anchors,
    guardrails: Guardrails,
    matcher: Matcher,
    compiled: Compiled,
    pub maps: PolicyMaps,
    pub approvals: Approvals,
    pub timeout: Duration,
    pub stats: Stats,
    alerts: Box<dyn Write + Send>,
    json: bool,
    kernel_decisions: bool,
    audit: Option<AuditTrail>,
    feeds: Option<std::sync::Arc<crate::feeds::Feeds>>,
}

/// The action a finding gets from userspace, by rule and mode.
fn wanted(p: &Profile, mode: Mode, f: &Finding) -> ActionKind {
    if f.rule.starts_with("guardrail/") {
        p.actions.guardrails
    } else if mode == Mode::Monitor {
        ActionKind::Alert
    } else if f.rule.starts_with("rate/") {
        p.actions.rate
    } else {
        p.actions.for_class(f.class)
    }
}

/// A denied hard link the kernel could not refuse (no LSM tier: the
/// SIGKILL lands after the call) still made its second name; remove it,
/// but only while it is still the same file as the source.
fn undo_link(ev: &Event) {
    use std::os::unix::fs::MetadataExt as _;
    let Detail::Link { from, to, .. } = &ev.detail else {
        return;
    };
    let (Ok(a), Ok(b)) = (std::fs::metadata(from), std::fs::symlink_metadata(to)) else {
        return;
    };
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return;
    }
    match std::fs::remove_file(to) {
        Ok(()) => warn!(link = %to, target = %from, "removed the denied hard link"),
        Err(e) => warn!(link = %to, error = %e, "cannot remove the denied hard link"),
    }
}

/// The action as an alert names it: the event's name, spelled out for the
/// SIGKILL fallback of deny.
fn kernel_action(k: &KernelDecision) -> &'static str {
    match k.action {
        ka::DENY_KILL => "deny (SIGKILL at the call)",
        _ => k.action_name(),
    }
}

pub struct Setup {
    pub agent: String,
    pub agent_id: u32,
    pub mode: Mode,
    pub profile: Profile,
    pub profile_path: PathBuf,
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
    pub profile_sha256: String,
    pub mode: Mode,
    pub anchors: Anchors,
    pub guardrails: Guardrails,
    pub compiled: Compiled,
    pub timeout: Duration,
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
        let matcher = Matcher::new(&s.profile, s.anchors.clone(), s.guardrails.clone());
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
            alerts: s.alerts,
            json: s.json,
            kernel_decisions: s.kernel_decisions,
            audit: s.audit,
            feeds: s.feeds,
        };
        me.install()?;
        Ok(me)
    }

    /// Writes `self.compiled` to the kernel: automaton (into the idle
    /// half), endpoints, then the policy that switches to them.
    fn install(&mut self) -> Result<(), SensorError> {
        let mut policy = self.compiled.policy;
        policy.enforce = u8::from(self.mode == Mode::Enforce);
        if let Some(dfa) = &self.compiled.dfa {
            let (t, a, c) = self.maps.write_dfa(self.agent_id, dfa)?;
            policy.trans_base = t;
            policy.accept_base = a;
            policy.class_base = c;
        }
        for (any, key) in &self.compiled.endpoints {
            self.maps.allow_endpoint(*any, key)?;
        }
        if !self.kernel_decisions {
            policy.active = 0;
        }
        self.maps.set_policy(self.agent_id, &policy)
    }

    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Judges one event that crossed from the kernel.
    pub fn handle(&mut self, ev: &Event) {
        let findings: Vec<Finding> = match (&ev.kernel, &ev.detail) {
            // An exec the LSM tier refused failed; the matcher judges what
            // was attempted, as it would have judged the exec.
            (
                Some(_),
                Detail::Exec {
                    result: Some(r), ..
                },
            ) if *r != 0 => {
                let mut attempt = ev.clone();
                if let Detail::Exec { result, .. } = &mut attempt.detail {
                    *result = Some(0);
                }
                self.matcher.check(&attempt)
            }
            _ => self.matcher.check(ev),
        };
        if let Detail::DnsAnswer { .. } = &ev.detail {
            self.allow_answer(ev);
        }
        let Some(k) = ev.kernel else {
            // Not decided in the kernel (accept, listen, a failed exec).
            self.judge_in_userspace(ev, &findings, false);
            return;
        };
        match k.verdict {
            verdict::ALLOW => {
                if let Some(f) = findings.iter().find(|f| !f.rule.starts_with("rate/")) {
                    debug!(rule = %f.rule, what = %f.what, "kernel allowed what the matcher flags");
                }
            }
            verdict::VIOLATION => {
                let f = explain(&k.rule_name(), &findings, ev);
                if k.action != ka::ALERT {
                    self.stats.kernel_actions += 1;
                }
                let mut approval = None;
                match k.action {
                    ka::PAUSE => approval = Some(self.pause_for(ev, &f)),
                    ka::KILL => {
                        tree::kill(&self.maps.pids(self.agent_id));
                        let _ = self.maps.set_paused(self.agent_id, false);
                    }
                    ka::DENY_KILL => undo_link(ev),
                    _ => {}
                }
                self.alert(ev, &f, kernel_action(&k), "kernel", approval);
            }
            _ => {
                let held = k.action == ka::HOLD;
                self.judge_in_userspace(ev, &findings, held);
            }
        }
    }

    /// Acts on what the kernel left to userspace. A held process is
    /// released when nothing is wrong.
    fn judge_in_userspace(&mut self, ev: &Event, findings: &[Finding], held: bool) {
        let f = findings.iter().find(|f| !f.rule.starts_with("rate/"));
        let Some(f) = f.cloned() else {
            if held {
                self.release(ev.pid);
            }
            return;
        };
        let act = wanted(&self.profile, self.mode, &f);
        let mut approval = None;
        match act {
            ActionKind::Alert => {
                if held {
                    self.release(ev.pid);
                }
            }
            ActionKind::Deny => {
                // No hook refused it in time: end the process that did it.
                tree::kill(&[ev.pid]);
            }
            ActionKind::Pause => approval = Some(self.pause_for(ev, &f)),
            ActionKind::Kill => {
                tree::kill(&self.maps.pids(self.agent_id));
            }
        }
        if act != ActionKind::Alert {
            self.stats.userspace_actions += 1;
        }
        self.alert(ev, &f, act.name(), "userspace", approval);
    }

    fn release(&mut self, pid: u32) {
        if !self.maps.paused(self.agent_id) {
            tree::resume(&[pid]);
            self.stats.released += 1;
        }
    }

    /// Makes sure the whole tree is stopped and opens an approval request.
    fn pause_for(&mut self, ev: &Event, f: &Finding) -> String {
        let _ = self.maps.set_paused(self.agent_id, true);
        tree::stop(&self.maps.pids(self.agent_id));
        let learn = if f.rule.starts_with("guardrail/") {
            None
        } else {
            learn_entry(ev, f.class, &self.anchors)
        };
        self.approvals.open(
            Subject {
                agent: self.agent.clone(),
                pid: ev.pid,
                comm: ev.comm.clone(),
                exe: ev.context.exe.clone(),
                ancestry: ev.context.ancestry.clone(),
                rule: f.rule.clone(),
                what: f.what.clone(),
                reason: f.reason.clone(),
                evidence: serde_json::to_value(ev).unwrap_or_default(),
                learn,
            },
            self.timeout,
        )
    }

    fn alert(&mut self, ev: &Event, f: &Finding, action: &str, by: &str, approval: Option<String>) {
        self.stats.alerts += 1;
        let kind = action.split_whitespace().next().unwrap_or(action);
        *self.stats.by_action.entry(kind.to_string()).or_default() += 1;
        let record = json!({
            "type": "alert",
            "agent": self.agent,
            "mode": self.mode.name(),
            "rule": f.rule,
            "class": f.class,
            "what": f.what,
            "reason": f.reason,
            "action": action,
            "decided_by": by,
            "approval": approval,
            "pid": ev.pid,
            "comm": ev.comm,
            "ancestry": ev.context.ancestry,
            "event": ev,
        });
        if let Some(a) = &mut self.audit {
            a.decision(&record);
        }
        if let Some(feeds) = &self.feeds {
            feeds.decision(&record, ev);
        }
        let line = if self.json {
            record.to_string()
        } else {
            let ask = approval
                .map(|id| format!("; approve or deny {id}"))
                .unwrap_or_default();
            format!(
                "alert {:<22} {}  ({}; pid {} {}) -> {action} [{by}]{ask}",
                f.rule, f.what, f.reason, ev.pid, ev.comm
            )
        };
        self.emit_line(&line);
    }

    /// Writes a line where alerts go (the run's summary).
    pub fn write_line(&mut self, line: &str) {
        self.emit_line(line);
    }

    /// One write per line, so agents sharing an output never interleave.
    fn emit_line(&mut self, line: &str) {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        if let Err(e) = self
            .alerts
            .write_all(buf.as_bytes())
            .and_then(|_| self.alerts.flush())
        {
            warn!(error = %e, agent = %self.agent, "cannot write to the alert output");
        }
    }

    /// Adds the addresses of a DNS answer to the allow tries for host
    /// rules naming it, before a held resolver is released.
    fn allow_answer(&mut self, ev: &Event) {
        let Detail::DnsAnswer { name, addrs } = &ev.detail else {
            return;
        };
        let name = observe::dns_name(name);
        for r in &self.compiled.host_rules {
            let Some(h) = r.host.as_deref() else { continue };
            let hit = h == name || h.strip_prefix('*').is_some_and(|s| name.ends_with(s));
            if !hit {
                continue;
            }
            for a in addrs.iter().filter_map(|a| a.parse().ok()) {
                if let Some((any, key)) = host_key(self.agent_id, r, a) {
                    if let Err(e) = self.maps.allow_endpoint(any, &key) {
                        warn!(error = %e, "cannot allow a resolved endpoint");
                    }
                }
            }
        }
    }
}

/// The finding that explains a kernel violation: the matcher's when it
/// names the same rule (the kernel's `file` is the matcher's `file/...`),
/// else the kernel's rule with what the matcher saw.
fn explain(kernel_rule: &str, findings: &[Finding], ev: &Event) -> Finding {
    let same = |f: &&Finding| {
        f.rule == kernel_rule
            || (!kernel_rule.contains('/') && f.rule.starts_with(&format!("{kernel_rule}/")))
    };
    if let Some(f) = findings.iter().find(same) {
        return f.clone();
    }
    let seen = findings.iter().find(|f| !f.rule.starts_with("rate/"));
    let (class, what) = match seen {
        Some(f) => (f.class, f.what.clone()),
        None => (Class::File, crate::sinks::human_line(ev)),
    };
    let class = match kernel_rule {
        "guardrail/exfiltrate" => Class::Network,
        r if r.starts_with("rate/") => rate_class(r).unwrap_or(class),
        _ => class,
    };
    let reason = match kernel_rule {
        "guardrail/exfiltrate" => "a connect outside the profile after the agent read a secret",
        "guardrail/tamper" => "aimed at agentwatch itself",
        r if r.starts_with("rate/") => "over the profile's per-minute budget",
        _ => "decided in the kernel",
    };
    Finding {
        rule: kernel_rule.to_string(),
        class,
        what,
        reason: reason.into(),
    }
}

fn rate_class(rule: &str) -> Option<Class> {
    let name = rule.strip_prefix("rate/")?;
    Class::ALL.into_iter().find(|c| c.name() == name)
}

/// The profile entry that would have allowed `ev`'s `class` observation.
fn learn_entry(ev: &Event, class: Class, anchors: &Anchors) -> Option<LearnEntry> {
    observe::observe(ev)
        .into_iter()
        .find(|o| o.class() == class)
        .and_then(|o| match o {
            Obs::File { path, access, .. } => Some(LearnEntry::File {
                path: anchors.anchor(&path),
                access,
            }),
            Obs::Exec { path } => Some(LearnEntry::Exec {
                path: anchors.anchor(&path),
            }),
            Obs::Net {
                direction,
                peer: Peer::Ip { addr, port },
            } => Some(LearnEntry::Net(NetRule {
                direction,
                host: None,
                address: Some(addr.to_string()),
                unix: None,
                port,
                by: Vec::new(),
                runs: 1,
            })),
            Obs::Net {
                direction,
                peer: Peer::Unix { path },
            } => Some(LearnEntry::Net(NetRule {
                direction,
                host: None,
                address: None,
                unix: Some(anchors.anchor(&path)),
                port: None,
                by: Vec::new(),
                runs: 1,
            })),
            Obs::Dns { name } => Some(LearnEntry::Dns { name }),
            Obs::DnsAnswer { .. } => None,
        })
}

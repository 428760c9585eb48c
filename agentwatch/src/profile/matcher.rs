//! Judging events against a profile: what `check` reports and what
//! enforcement will act on. Guardrails first (they hold whatever the
//! profile says), then the class's rules, then the rate budgets.
use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::{
    anchors::Anchors,
    builder::hash::HashCache,
    convergence::RateWindow,
    glob::Glob,
    guardrails::Guardrails,
    normalise,
    observe::{self, Obs, Peer, Seen},
    packages::Packages,
    rule::Rule,
    written::{self, WrittenPaths},
    Access, AccessSet, Class, Direction, ExecSource, NetRule, Profile,
};
use crate::event::{Detail, Event};

mod net;
pub mod trie;

pub use net::address_matches;

use trie::PathTrie;

/// Why an event would be flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule that flags it (named `guardrail/secrets`, `exec/written`,
    /// `file/unknown`, `rate/<class>`, ...).
    pub rule: Rule,
    pub class: Class,
    /// What the agent did, as a reviewer reads it.
    pub what: String,
    /// Why it falls outside the profile.
    pub reason: String,
}

impl Finding {
    /// A rule that holds in every mode, whatever the profile says:
    /// guardrails (exfiltration and privilege included) and running what
    /// the agent wrote.
    pub fn hard(&self) -> bool {
        self.rule.hard()
    }

    /// Over a rate budget (`rate/<class>`).
    pub fn is_rate(&self) -> bool {
        self.rule.is_rate()
    }

    /// The kernel's code for the rule (`policy::rule`), so that both sides
    /// choose the action with one function (`policy::wanted`).
    pub fn kernel_rule(&self) -> u8 {
        self.rule.kernel_code()
    }
}

/// A profile compiled for matching, with the state rates need.
/// Answers whether a process of the agent wrote a file (an absolute path):
/// the enforcer asks the kernel's record of written inodes.
pub type WrittenOracle = Box<dyn Fn(&str) -> bool + Send>;

pub struct Matcher {
    anchors: Anchors,
    guardrails: Guardrails,
    files: PathTrie,
    file_access: Vec<AccessSet>,
    /// Territories: dot-files included.
    territories: PathTrie,
    territory_access: Vec<AccessSet>,
    execs: PathTrie,
    exec_hashes: Vec<BTreeSet<String>>,
    exec_packaged: Vec<bool>,
    net: Vec<NetRule>,
    dns: HashSet<String>,
    dns_suffixes: Vec<String>,
    budgets: HashMap<Class, u64>,
    oracle: Option<WrittenOracle>,
    /// Patterns whose anchor is unknown here, so they match nothing.
    pub skipped: Vec<String>,
    /// What the run has shown so far; handed whole to a recompiled
    /// matcher (`carry_over`), so nothing added here is forgotten there.
    run: RunState,
}

/// What a matcher learns while it judges a run, as opposed to the rules
/// it was compiled from.
#[derive(Default)]
struct RunState {
    rates: RateWindow,
    over_budget: HashSet<Class>,
    seen: Seen,
    hashes: HashCache,
    written: WrittenPaths,
    /// Processes that read a secret (and their children forked since).
    tainted: HashSet<u32>,
    /// Some process of the agent read a secret.
    secret_read: bool,
}

impl Matcher {
    pub fn new(p: &Profile, anchors: Anchors, guardrails: Guardrails) -> Self {
        let guardrails = guardrails.with_profile(&p.guardrails, Some(&anchors));
        let mut skipped = Vec::new();
        let mut compile = |pat: &str| -> Option<Glob> {
            match anchors.expand(pat).map(|e| Glob::parse(&e)) {
                Some(Ok(g)) => Some(g),
                _ => {
                    skipped.push(pat.to_string());
                    None
                }
            }
        };
        let mut files = PathTrie::default();
        let mut file_access = Vec::new();
        for f in &p.files {
            if let Some(g) = compile(&f.path) {
                files.insert(&g, file_access.len());
                file_access.push(f.access);
            }
        }
        // Listing a directory on the way to an allowed path is within.
        let listed = p
            .files
            .iter()
            .map(|f| f.path.clone())
            .chain(p.territories.iter().map(|t| t.pattern()))
            .chain(p.executables.iter().map(|e| e.path.clone()));
        let parents: std::collections::BTreeSet<String> = listed
            .filter_map(|pat| anchors.expand(&pat))
            .flat_map(|e| crate::paths::parent_dirs(&e))
            .collect();
        for dir in parents {
            if let Ok(g) = Glob::parse(&dir) {
                files.insert(&g, file_access.len());
                file_access.push(AccessSet::of(&[Access::Read]));
            }
        }
        for (pat, access) in super::ambient::entries() {
            if let Ok(g) = Glob::parse(pat) {
                files.insert(&g, file_access.len());
                file_access.push(access);
            }
        }
        let mut territories = PathTrie::dotglob();
        let mut territory_access = Vec::new();
        for t in &p.territories {
            if let Some(g) = compile(&t.pattern()) {
                territories.insert(&g, territory_access.len());
                territory_access.push(t.access.minus(AccessSet::of(&[Access::Exec])));
            }
        }
        let mut execs = PathTrie::default();
        let mut exec_hashes = Vec::new();
        let mut exec_packaged = Vec::new();
        for e in &p.executables {
            if let Some(g) = compile(&e.path) {
                execs.insert(&g, exec_hashes.len());
                exec_hashes.push(e.sha256.iter().cloned().collect());
                exec_packaged.push(e.source == Some(ExecSource::Package));
            }
        }
        let (suffixes, names): (Vec<_>, Vec<_>) = p
            .dns
            .iter()
            .map(|d| d.name.clone())
            .partition(|n| n.starts_with("*."));
        Self {
            anchors,
            guardrails,
            files,
            file_access,
            territories,
            territory_access,
            execs,
            exec_hashes,
            exec_packaged,
            net: p.network.clone(),
            dns: names.into_iter().collect(),
            dns_suffixes: suffixes.into_iter().map(|s| s[1..].to_string()).collect(),
            budgets: p
                .rates
                .per_minute
                .iter()
                .map(|(c, b)| (*c, b.budget))
                .collect(),
            oracle: None,
            skipped,
            run: RunState::default(),
        }
    }

    /// Asks `oracle` too whether the agent wrote a file (the kernel knows
    /// of writes that never crossed to userspace).
    pub fn with_written_oracle(mut self, oracle: WrittenOracle) -> Self {
        self.oracle = Some(oracle);
        self
    }

    /// Takes over what `old` has learnt of the run: the agent's processes
    /// and the names it resolved, the files it wrote, which processes
    /// read a secret, the rate windows and the binaries' digests. A
    /// profile recompiled after an approval or a reload judges with the
    /// new rules but forgets nothing the run has shown: a reader tainted
    /// before the approval is still tainted after it.
    pub fn carry_over(&mut self, old: Matcher) {
        self.run = old.run;
    }

    /// Everything in `ev` the profile would flag.
    pub fn check(&mut self, ev: &Event) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Detail::Fork { child_pid } = ev.detail {
            if self.run.tainted.contains(&ev.pid) {
                self.run.tainted.insert(child_pid);
            }
        }
        if let Some(f) = self.exec_of_written(ev) {
            let _ = self.run.seen.observe(ev);
            if let Some(r) = self.rate(Class::Exec, ev.ts_ns) {
                out.push(r);
            }
            out.push(f);
            self.run.written.track(ev);
            return out;
        }
        self.run.written.track(ev);
        if let Some(f) = self.privilege(ev) {
            out.push(f);
        }
        for obs in self.run.seen.observe(ev) {
            let class = obs.class();
            if obs.rated() {
                if let Some(f) = self.rate(class, ev.ts_ns) {
                    out.push(f);
                }
            }
            if let Some(f) = self.judge(obs, ev) {
                out.push(f);
            }
        }
        out
    }

    fn rate(&mut self, class: Class, ts: u64) -> Option<Finding> {
        let n = self.run.rates.add(class, ts);
        let budget = *self.budgets.get(&class)?;
        if n <= budget {
            self.run.over_budget.remove(&class);
            return None;
        }
        // Once per excursion over the budget, not once per event.
        self.run.over_budget.insert(class).then(|| Finding {
            rule: Rule::Rate(class),
            class,
            what: format!("{n} {class} events in 60 s"),
            reason: format!("over the budget of {budget} per minute"),
        })
    }

    /// An exec of what the agent wrote, unless the profile lists the
    /// executable with this very binary's sha256.
    fn exec_of_written(&mut self, ev: &Event) -> Option<Finding> {
        let (written, oracle) = (&self.run.written, &self.oracle);
        let is_written = |p: &str| written.contains(p) || oracle.as_ref().is_some_and(|o| o(p));
        let (path, why) = written::exec_of_written(ev, &self.anchors, &is_written)?;
        if let Detail::Exec { path: exe, .. } = &ev.detail {
            if *exe == path && self.pinned(exe, ev.pid) {
                return None;
            }
        }
        Some(Finding {
            rule: Rule::ExecWritten,
            class: Class::Exec,
            what: format!("exec {}", self.anchors.anchor(&path)),
            reason: format!(
                "{}: running what the agent itself wrote is never normal",
                why.text()
            ),
        })
    }

    /// Setuid/setgid bits or file capabilities: a guardrail whatever the
    /// profile says.
    fn privilege(&self, ev: &Event) -> Option<Finding> {
        let what = match &ev.detail {
            Detail::Chmod { path, mode, .. } if mode & 0o6000 != 0 => {
                format!("chmod {:o} {}", mode, self.anchors.anchor(path))
            }
            Detail::Tamper {
                syscall,
                path: Some(path),
                ..
            } if syscall.ends_with("setxattr") => {
                format!("set file capabilities on {}", self.anchors.anchor(path))
            }
            _ => return None,
        };
        Some(Finding {
            rule: Rule::GuardPrivilege,
            class: Class::File,
            what,
            reason: "setuid/setgid bits and file capabilities are a guardrail, whatever the profile says".into(),
        })
    }

    /// Is `path` listed with the sha256 of the binary `pid` ran?
    fn pinned(&mut self, path: &str, pid: u32) -> bool {
        let mut hits = Vec::new();
        self.execs.matches(path, &mut |r| hits.push(r));
        let listed: BTreeSet<String> = hits
            .iter()
            .flat_map(|r| self.exec_hashes[*r].iter().cloned())
            .collect();
        !listed.is_empty()
            && self
                .run
                .hashes
                .sha256(path, pid)
                .is_some_and(|h| listed.contains(&h))
    }

    fn judge(&mut self, obs: Obs, ev: &Event) -> Option<Finding> {
        use crate::paths::usr_name;
        match obs {
            Obs::Exec { path } => self.judge_exec(&usr_name(&path), ev.pid),
            Obs::File {
                path,
                access,
                class,
            } => self.judge_file(&usr_name(&path), access, class, ev.pid, observe::failed(ev)),
            Obs::Listing { path } => self.guardrail(
                &usr_name(&path),
                AccessSet::of(&[Access::Read]),
                Class::File,
                ev.pid,
            ),
            Obs::Net { direction, peer } => self.judge_net(direction, &peer, ev),
            Obs::Dns { name } => {
                let known = self.dns.contains(&name)
                    || self.dns_suffixes.iter().any(|s| name.ends_with(s.as_str()));
                (!known).then(|| Finding {
                    rule: Rule::DnsUnknown,
                    class: Class::Dns,
                    what: format!("resolve {name}"),
                    reason: "name not in the profile".into(),
                })
            }
            Obs::DnsAnswer { .. } => None,
        }
    }

    fn guardrail(
        &mut self,
        path: &str,
        access: AccessSet,
        class: Class,
        pid: u32,
    ) -> Option<Finding> {
        let (g, guarded) = self.guardrails.hit_by(path, access, Some(pid))?;
        if g.category == "secrets" {
            self.run.secret_read = true;
            self.run.tainted.insert(pid);
            // A secret inside the agent's own workspace (a project's .env)
            // may be read: the reader is tainted, and what is stopped is
            // the secret leaving (exfiltration rules).
            if self.in_workspace(path) && guarded == AccessSet::of(&[Access::Read]) {
                return None;
            }
        }
        Some(Finding {
            rule: Rule::guardrail(g.category),
            class,
            what: format!("{guarded} {}", self.anchors.anchor(path)),
            reason: format!(
                "{} is a guardrail ({}), whatever the profile says",
                g.pattern, g.category
            ),
        })
    }

    fn allowed(&self, path: &str) -> AccessSet {
        let mut a = AccessSet::EMPTY;
        let access = &self.file_access;
        self.files.matches(path, &mut |r| a = a.union(access[r]));
        let access = &self.territory_access;
        self.territories
            .matches(path, &mut |r| a = a.union(access[r]));
        // A binary the agent may run it may also read (cp, sha256sum, ldd).
        let mut runnable = false;
        self.execs.matches(path, &mut |_| runnable = true);
        if runnable {
            a = a.union(AccessSet::of(&[Access::Read]));
        }
        a
    }

    fn judge_file(
        &mut self,
        path: &str,
        access: AccessSet,
        class: Class,
        pid: u32,
        failed: bool,
    ) -> Option<Finding> {
        let was_tainted = self.run.tainted.contains(&pid);
        if let Some(f) = self.guardrail(path, access, class, pid) {
            return Some(f);
        }
        // A call that failed changed nothing: only guardrails judge it.
        if failed {
            return None;
        }
        if was_tainted && self.copies_out(path, access) {
            return Some(Finding {
                rule: Rule::GuardExfiltrate,
                class,
                what: format!("{access} {}", self.anchors.anchor(path)),
                reason: "a process that read a secret writes outside the workspace".into(),
            });
        }
        let allowed = self.allowed(path);
        if access.is_subset(allowed) {
            return None;
        }
        let missing = access.minus(allowed);
        Some(Finding {
            rule: if allowed.is_empty() {
                Rule::FileUnknown
            } else {
                Rule::FileAccess
            },
            class,
            what: format!("{missing} {}", self.anchors.anchor(path)),
            reason: if allowed.is_empty() {
                "no file rule covers the path".into()
            } else {
                format!("the profile allows only {allowed} here")
            },
        })
    }

    /// A write outside the workspace by a tainted process: a copy of the
    /// secret leaving it (terminals and `/dev/null` aside).
    fn copies_out(&self, path: &str, access: AccessSet) -> bool {
        let changes = !access.minus(AccessSet::of(&[Access::Read])).is_empty();
        changes
            && !self.in_workspace(path)
            && !path.starts_with("/dev/")
            && !path.starts_with("/proc/")
    }

    /// Is `path` beneath the agent's workspace?
    fn in_workspace(&self, path: &str) -> bool {
        self.anchors
            .workspace
            .as_deref()
            .is_some_and(|w| path.starts_with(w) && path[w.len()..].starts_with('/'))
    }

    fn judge_exec(&mut self, path: &str, pid: u32) -> Option<Finding> {
        let exec = AccessSet::of(&[Access::Exec]);
        if let Some(f) = self.guardrail(path, exec, Class::Exec, pid) {
            return Some(f);
        }
        let mut hits = Vec::new();
        self.execs.matches(path, &mut |r| hits.push(r));
        if hits.is_empty() {
            if self.allowed(path).contains(Access::Exec) {
                return None;
            }
            return Some(Finding {
                rule: Rule::ExecUnknown,
                class: Class::Exec,
                what: format!("exec {}", self.anchors.anchor(path)),
                reason: "executable not in the profile".into(),
            });
        }
        // A packaged binary, unmodified, is what a `source: package`
        // entry allows.
        let packaged = hits.iter().any(|r| self.exec_packaged[*r]);
        if packaged && Packages::host().owner_unmodified(path).is_some() {
            return None;
        }
        // Entries without hashes, or a binary gone before we could read
        // it, are judged by path alone.
        if hits
            .iter()
            .any(|r| !self.exec_packaged[*r] && self.exec_hashes[*r].is_empty())
        {
            return None;
        }
        if packaged && hits.iter().all(|r| self.exec_packaged[*r]) {
            return Some(Finding {
                rule: Rule::ExecHash,
                class: Class::Exec,
                what: format!("exec {}", self.anchors.anchor(path)),
                reason: "not a binary the package database owns, unmodified".into(),
            });
        }
        let hash = self.run.hashes.sha256(path, pid)?;
        if hits.iter().any(|r| self.exec_hashes[*r].contains(&hash)) {
            return None;
        }
        Some(Finding {
            rule: Rule::ExecHash,
            class: Class::Exec,
            what: format!(
                "exec {} (sha256 {})",
                self.anchors.anchor(path),
                &hash[..12]
            ),
            reason: "binary differs from every sha256 the profile lists".into(),
        })
    }
}

#[cfg(test)]
mod tests;

//! Learning: events in, a profile out. Each event is reduced to
//! observations (`observe`), normalised (`normalise`), checked against
//! the guardrails, and counted for rates and stability; `finish`
//! generalises (territories, siblings: `generalise`), groups executables
//! and addresses, and writes the profile.
//!
//! Executing what the agent itself wrote is never learned as normal: an
//! exec of a file a process of the agent wrote (or one with no name left,
//! or in a temp place), and an interpreter fed its program from such a
//! file or from a pipe, go to the review list (`written`).
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::written::{self, WrittenPaths};
use super::{
    anchors::Anchors,
    convergence::{ClassProgress, ClockConfig, Convergence, RateWindow},
    generalise::{self, Entries},
    guardrails::Guardrails,
    normalise::{self, TempNames},
    observe::{Obs, Peer, Seen},
    packages::Packages,
    Access, AccessSet, Class, ClassStability, DnsRule, Granularity, Override, Profile, Provenance,
    RateBudget, Rates, ReviewItem, Stability,
};
use crate::event::{Detail, Event};

pub mod execs;
pub mod hash;
pub mod network;

use network::Target;

/// Settings of one learning session.
#[derive(Debug, Clone)]
pub struct LearnConfig {
    pub agent: String,
    /// Budget = peak per minute x headroom.
    pub headroom: f64,
    /// Siblings needed before they merge into a pattern.
    pub min_siblings: usize,
    pub clocks: ClockConfig,
    /// IPv4 addresses without a name, on one port, that make a /24.
    pub min_cidr: usize,
    pub granularity: Granularity,
    pub overrides: Vec<Override>,
    /// Endpoints (`host[:port]`, `address[:port]`) that are the agent's
    /// model API (`model: true` in the profile).
    pub model_endpoints: Vec<String>,
}

impl LearnConfig {
    pub fn new(agent: &str) -> Self {
        Self {
            agent: agent.to_string(),
            headroom: 2.0,
            min_siblings: 3,
            clocks: ClockConfig {
                warmup_ns: 30_000_000_000,
                quiet_ns: 60_000_000_000,
            },
            min_cidr: 3,
            granularity: Granularity::default(),
            overrides: Vec::new(),
            model_endpoints: Vec::new(),
        }
    }
}

/// The state of one learning session.
pub struct Learner {
    cfg: LearnConfig,
    anchors: Anchors,
    guardrails: Guardrails,
    seen: Seen,
    execs: BTreeMap<String, execs::Seen>,
    files: BTreeMap<String, AccessSet>,
    review: BTreeMap<(String, &'static str, String), AccessSet>,
    net: BTreeMap<network::NetKey, BTreeSet<String>>,
    dns: BTreeSet<String>,
    rates: RateWindow,
    clocks: Convergence,
    events: BTreeMap<Class, u64>,
    hashes: hash::HashCache,
    /// Whether a generalised path is guarded, by (path, access): the same
    /// temp-name pattern recurs.
    reaches: HashMap<(String, AccessSet), Option<(&'static str, String)>>,
    temps: TempNames,
    /// What a process of the agent wrote or created.
    written: WrittenPaths,
    started: std::time::SystemTime,
    /// Models and instruction files it read, by anchored path, as they
    /// were when first read (`crate::pins`), hashed on threads of their own.
    pinned: BTreeMap<String, crate::pins::LearnedLater>,
}

impl Learner {
    /// `start_ns` is CLOCK_MONOTONIC now, the clock events carry.
    pub fn new(cfg: LearnConfig, anchors: Anchors, guardrails: Guardrails, start_ns: u64) -> Self {
        let clocks = Convergence::new(cfg.clocks, start_ns);
        Self {
            cfg,
            anchors,
            guardrails,
            seen: Seen::default(),
            execs: BTreeMap::new(),
            files: BTreeMap::new(),
            review: BTreeMap::new(),
            net: BTreeMap::new(),
            dns: BTreeSet::new(),
            rates: RateWindow::default(),
            clocks,
            events: Class::ALL.iter().map(|c| (*c, 0)).collect(),
            hashes: hash::HashCache::default(),
            reaches: HashMap::new(),
            temps: TempNames::default(),
            written: WrittenPaths::default(),
            started: std::time::SystemTime::now(),
            pinned: BTreeMap::new(),
        }
    }

    pub fn progress(&mut self, now_ns: u64) -> Vec<ClassProgress> {
        self.clocks.progress(now_ns)
    }

    /// Learns from one event.
    pub fn observe(&mut self, ev: &Event) {
        if let Detail::Chmod { path, mode, .. } = &ev.detail {
            if mode & 0o6000 != 0 {
                let chmod = AccessSet::of(&[Access::Chmod]);
                self.put_in_review(path, "privilege", "setuid/setgid bits", chmod);
            }
        }
        let ran_written = self.track_writes(ev);
        for obs in self.seen.observe(ev) {
            let class = obs.class();
            *self.events.entry(class).or_default() += 1;
            if obs.rated() {
                self.rates.add(class, ev.ts_ns);
            }
            let novel = match (&obs, &ran_written) {
                (Obs::Exec { .. }, Some((path, why))) => {
                    let exec = AccessSet::of(&[Access::Exec]);
                    self.put_in_review(path, "written", why, exec)
                }
                _ => self.learn(obs, ev),
            };
            self.clocks.record(class, novel, ev.ts_ns);
        }
    }

    /// Follows what the agent writes, and the names `mktemp` makes; for an
    /// exec of something the agent wrote, returns what and why.
    fn track_writes(&mut self, ev: &Event) -> Option<(String, &'static str)> {
        let ok = |r: &Option<i64>| r.is_none_or(|r| r >= 0);
        self.written.track(ev);
        match &ev.detail {
            Detail::Open {
                path,
                access,
                result,
                ..
            } if ok(result) && access.create => self.temps.created(ev.pid, path),
            Detail::Rename { to, result, .. } if ok(result) => self.temps.created(ev.pid, to),
            Detail::Exec {
                path, argv, result, ..
            } if ok(result) => {
                self.temps.exec(ev.pid, path, argv);
                let w = &self.written;
                return written::exec_of_written(ev, &self.anchors, &|p| w.contains(p))
                    .map(|(p, why)| (p, why.text()));
            }
            _ => {}
        }
        None
    }

    /// Records one observation; true when it added something new.
    fn learn(&mut self, obs: Obs, ev: &Event) -> bool {
        match obs {
            Obs::Exec { path } => {
                let exec = AccessSet::of(&[Access::Exec]);
                let Some(norm) = self.normalise(&path) else {
                    return false;
                };
                let (rest, novel) = self.review(&path, &norm, exec, ev.pid);
                if rest.is_empty() {
                    return novel;
                }
                let hash = self.hashes.sha256(&path, ev.pid);
                let entry = self.execs.entry(norm);
                let new_path = matches!(entry, std::collections::btree_map::Entry::Vacant(_));
                let e = entry.or_insert_with(|| execs::Seen {
                    packaged: Packages::host().owner_unmodified(&path).is_some(),
                    runs: 1,
                    ..execs::Seen::default()
                });
                new_path | hash.is_some_and(|h| e.sha256.insert(h))
            }
            Obs::File { path, access, .. } => {
                let Some(norm) = self.normalise(&path) else {
                    return false;
                };
                let (rest, mut novel) = self.review(&path, &norm, access, ev.pid);
                // A call that failed changed nothing: nothing to allow.
                if rest.is_empty() || super::observe::failed(ev) {
                    return novel;
                }
                if access.contains(Access::Read) {
                    self.note_pinned(&path);
                }
                let e = self.files.entry(norm).or_default();
                novel |= !rest.is_subset(*e);
                *e = e.union(rest);
                novel
            }
            Obs::Net {
                direction,
                ref peer,
            } if super::observe::ephemeral_loopback_bind(direction, peer) => false,
            Obs::Net { direction, peer } => {
                let (target, port) = match peer {
                    Peer::Ip { addr, port } => (
                        match self.seen.host(&addr, port) {
                            Some(name) => Target::Host(name.to_string()),
                            None => Target::Addr(addr),
                        },
                        port,
                    ),
                    Peer::Unix { path } => {
                        let norm = self.normalise(&path).unwrap_or(path);
                        (Target::Unix(norm), None)
                    }
                };
                let by = ev
                    .context
                    .exe
                    .as_deref()
                    .and_then(|e| self.normalise(e))
                    .unwrap_or_else(|| ev.comm.clone());
                let entry = self.net.entry((direction, target, port));
                let new = matches!(entry, std::collections::btree_map::Entry::Vacant(_));
                entry.or_default().insert(by);
                new
            }
            Obs::Dns { name } => self.dns.insert(name),
            Obs::DnsAnswer { .. } | Obs::Listing { .. } => false,
        }
    }

    /// A model or an instruction file read: pinned at its content now
    /// (hashed beside the session; the profile waits for it).
    fn note_pinned(&mut self, path: &str) {
        let anchored = self.anchors.anchor(path);
        if self.pinned.contains_key(&anchored) {
            return;
        }
        if let Some(later) = crate::pins::learn_later(path) {
            self.pinned.insert(anchored, later);
        }
    }

    fn normalise(&self, path: &str) -> Option<String> {
        normalise::path_with(path, &self.anchors, self.seen.pids(), &self.temps)
    }

    /// Puts into review what the guardrails protect: the guarded part of an
    /// access to the concrete path, or the whole access when the normalised
    /// path's own paths are guarded (`guarding_pattern`). Returns the access left to
    /// learn, and whether the review list grew.
    fn review(&mut self, path: &str, norm: &str, access: AccessSet, pid: u32) -> (AccessSet, bool) {
        let hit = if let Some((g, guarded)) = self.guardrails.hit_by(path, access, Some(pid)) {
            Some((g.category, g.pattern.to_string(), guarded))
        } else if norm.contains('*') {
            let (anchors, guardrails) = (&self.anchors, &self.guardrails);
            let found = self
                .reaches
                .entry((norm.to_string(), access))
                .or_insert_with(|| {
                    let expanded = anchors.expand(norm).unwrap_or_else(|| norm.to_string());
                    guardrails
                        .guarding_pattern(&expanded, access)
                        .map(|gr| (gr.category, gr.pattern.to_string()))
                });
            found.clone().map(|(c, p)| (c, p, access))
        } else {
            None
        };
        let Some((category, pattern, guarded)) = hit else {
            return (access, false);
        };
        let e = self
            .review
            .entry((norm.to_string(), category, pattern))
            .or_default();
        let novel = !guarded.is_subset(*e);
        *e = e.union(guarded);
        (access.minus(guarded), novel)
    }

    /// Puts an absolute path into review under `category`; true if new.
    fn put_in_review(
        &mut self,
        path: &str,
        category: &'static str,
        why: &str,
        access: AccessSet,
    ) -> bool {
        let norm = self.normalise(path).unwrap_or_else(|| path.to_string());
        let e = self
            .review
            .entry((norm, category, why.to_string()))
            .or_default();
        let novel = !access.is_subset(*e);
        *e = e.union(access);
        novel
    }

    /// The profile learned so far. `hosts` is where it was learned.
    pub fn finish(&mut self, host: &str, now_ns: u64) -> Profile {
        let mut p = Profile::empty(&self.cfg.agent);
        p.granularity = self.cfg.granularity;
        p.overrides = self.cfg.overrides.clone();
        p.executables = execs::list(self.execs.clone(), self.cfg.granularity);
        let mut seen = Entries::default();
        for (path, access) in &self.files {
            seen.add_file(path, *access, 1);
        }
        let rules = generalise::generalise(
            seen,
            &generalise::Settings {
                granularity: self.cfg.granularity,
                overrides: &self.cfg.overrides,
                min_siblings: self.cfg.min_siblings,
                sessions: 1,
            },
            &self.anchors,
            &self.guardrails,
        );
        p.territories = rules.territories;
        p.files = rules.files;
        p.network = network::rules(&self.net, self.cfg.min_cidr);
        network::widen_by(&mut p.network, self.cfg.granularity);
        for r in &mut p.network {
            r.model = self
                .cfg
                .model_endpoints
                .iter()
                .any(|m| network::names_endpoint(r, m));
        }
        p.dns = self
            .dns
            .iter()
            .map(|n| DnsRule {
                name: n.clone(),
                runs: 1,
            })
            .collect();
        p.rates = Rates {
            headroom: self.cfg.headroom,
            per_minute: Class::ALL
                .iter()
                .map(|c| {
                    let peak = self.rates.peak(*c);
                    (*c, RateBudget::for_class(*c, peak, self.cfg.headroom))
                })
                .collect(),
        };
        pinned_into(&mut p, &self.pinned);
        p.review = self
            .review
            .iter()
            .map(|((path, g, pattern), access)| ReviewItem {
                path: path.clone(),
                access: *access,
                guardrail: g.to_string(),
                pattern: pattern.clone(),
                runs: 1,
            })
            .collect();
        let cfg = self.clocks.config();
        p.stability = Stability {
            warmup_secs: cfg.warmup_ns / 1_000_000_000,
            quiet_secs: cfg.quiet_ns / 1_000_000_000,
            classes: self
                .clocks
                .progress(now_ns)
                .into_iter()
                .map(|c| {
                    (
                        c.class,
                        ClassStability {
                            stable: c.stable,
                            entries: c.entries,
                            quiet_sessions: 0,
                            novelty: Vec::new(),
                        },
                    )
                })
                .collect(),
        };
        p.provenance = Provenance {
            hosts: vec![host.to_string()],
            sessions: 1,
            started: crate::timestamp::profile_time(self.started),
            ended: crate::timestamp::profile_time(std::time::SystemTime::now()),
            events: self.events.clone(),
        };
        p.sort();
        p
    }
}

/// The models the session read become the profile's approved models
/// (none read: none approved), the instruction files its pins.
fn pinned_into(p: &mut Profile, seen: &BTreeMap<String, crate::pins::LearnedLater>) {
    use crate::profile::pinned::{Instruction, ModelRule};
    let mut models = Vec::new();
    for (path, l) in seen {
        match l.get() {
            Some(l) if l.model => models.push(ModelRule {
                path: path.clone(),
                sha256: vec![l.sha256],
            }),
            Some(l) => p.instructions.push(Instruction {
                path: path.clone(),
                sha256: l.sha256,
                size: l.size,
            }),
            None => {}
        }
    }
    p.models = Some(models);
}

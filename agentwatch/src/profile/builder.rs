//! Learning: events in, a profile out. Each event is reduced to
//! observations (`observe`), normalised (`normalise`), checked against
//! the guardrails, and counted for rates and stability; `finish`
//! generalises siblings, groups addresses and writes the profile.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use super::{
    anchors::Anchors,
    convergence::{ClassProgress, ClockConfig, Convergence, RateWindow},
    glob::Glob,
    guardrails::Guardrails,
    normalise,
    observe::{Obs, Peer, Seen},
    siblings, Access, AccessSet, Class, ClassStability, Direction, DnsRule, Executable, FileRule,
    NetRule, Profile, Provenance, RateBudget, Rates, ReviewItem, Stability,
};
use crate::event::Event;

pub mod hash;
pub mod time;

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
        }
    }
}

/// Where an endpoint is: a name the agent resolved, an address, a socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Target {
    Host(String),
    Addr(IpAddr),
    Unix(String),
}

type NetKey = (Direction, Target, Option<u16>);

/// The state of one learning session.
pub struct Learner {
    cfg: LearnConfig,
    anchors: Anchors,
    guardrails: Guardrails,
    seen: Seen,
    execs: BTreeMap<String, BTreeSet<String>>,
    files: BTreeMap<String, AccessSet>,
    review: BTreeMap<(String, &'static str, String), AccessSet>,
    net: BTreeMap<NetKey, BTreeSet<String>>,
    dns: BTreeSet<String>,
    rates: RateWindow,
    clocks: Convergence,
    events: BTreeMap<Class, u64>,
    hashes: hash::HashCache,
    /// Whether a generalised path reaches a guardrail, by (path, access):
    /// the same temp-name pattern recurs, and the intersection is costly.
    reaches: HashMap<(String, AccessSet), Option<(&'static str, String)>>,
    started: std::time::SystemTime,
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
            started: std::time::SystemTime::now(),
        }
    }

    pub fn progress(&mut self, now_ns: u64) -> Vec<ClassProgress> {
        self.clocks.progress(now_ns)
    }

    /// Learns from one event.
    pub fn observe(&mut self, ev: &Event) {
        for obs in self.seen.observe(ev) {
            let class = obs.class();
            *self.events.entry(class).or_default() += 1;
            self.rates.add(class, ev.ts_ns);
            let novel = self.learn(obs, ev);
            self.clocks.record(class, novel, ev.ts_ns);
        }
    }

    /// Records one observation; true when it added something new.
    fn learn(&mut self, obs: Obs, ev: &Event) -> bool {
        match obs {
            Obs::Exec { path } => {
                let exec = AccessSet::of(&[Access::Exec]);
                let Some(norm) = normalise::path(&path, &self.anchors, self.seen.pids()) else {
                    return false;
                };
                let (rest, novel) = self.review(&path, &norm, exec);
                if rest.is_empty() {
                    return novel;
                }
                let hash = self.hashes.sha256(&path, ev.pid);
                let entry = self.execs.entry(norm);
                let new_path = matches!(entry, std::collections::btree_map::Entry::Vacant(_));
                let hashes = entry.or_default();
                new_path | hash.is_some_and(|h| hashes.insert(h))
            }
            Obs::File { path, access, .. } => {
                let Some(norm) = normalise::path(&path, &self.anchors, self.seen.pids()) else {
                    return false;
                };
                let (rest, mut novel) = self.review(&path, &norm, access);
                if rest.is_empty() {
                    return novel;
                }
                let e = self.files.entry(norm).or_default();
                novel |= !rest.is_subset(*e);
                *e = e.union(rest);
                novel
            }
            Obs::Net { direction, peer } => {
                let (target, port) = match peer {
                    Peer::Ip { addr, port } => (
                        match self.seen.host(&addr, port) {
                            Some(name) => Target::Host(name.to_string()),
                            None => Target::Addr(addr),
                        },
                        port,
                    ),
                    Peer::Unix { path } => (
                        Target::Unix(
                            normalise::path(&path, &self.anchors, self.seen.pids()).unwrap_or(path),
                        ),
                        None,
                    ),
                };
                let by = ev
                    .context
                    .exe
                    .as_deref()
                    .and_then(|e| normalise::path(e, &self.anchors, self.seen.pids()))
                    .unwrap_or_else(|| ev.comm.clone());
                let entry = self.net.entry((direction, target, port));
                let new = matches!(entry, std::collections::btree_map::Entry::Vacant(_));
                entry.or_default().insert(by);
                new
            }
            Obs::Dns { name } => self.dns.insert(name),
            Obs::DnsAnswer { .. } => false,
        }
    }

    /// Puts into review what the guardrails protect: the guarded part of an
    /// access to the concrete path, or the whole access when the normalised
    /// path's wildcards would reach a guardrail. Returns the access left to
    /// learn, and whether the review list grew.
    fn review(&mut self, path: &str, norm: &str, access: AccessSet) -> (AccessSet, bool) {
        let hit = if let Some((g, guarded)) = self.guardrails.hit(path, access) {
            Some((g.category, g.pattern.to_string(), guarded))
        } else if norm.contains('*') {
            let (anchors, guardrails) = (&self.anchors, &self.guardrails);
            let found = self
                .reaches
                .entry((norm.to_string(), access))
                .or_insert_with(|| {
                    let expanded = anchors.expand(norm).unwrap_or_else(|| norm.to_string());
                    Glob::parse(&expanded).ok().and_then(|g| {
                        guardrails
                            .overlapped_by(&g, access)
                            .map(|gr| (gr.category, gr.pattern.to_string()))
                    })
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

    /// The profile learned so far. `hosts` is where it was learned.
    pub fn finish(&mut self, host: &str, now_ns: u64) -> Profile {
        let mut p = Profile::empty(&self.cfg.agent);
        p.executables = self
            .execs
            .iter()
            .map(|(path, h)| Executable {
                path: path.clone(),
                sha256: h.iter().cloned().collect(),
                runs: 1,
            })
            .collect();
        let files: siblings::FileMap = self
            .files
            .iter()
            .map(|(k, v)| (k.clone(), (*v, 1)))
            .collect();
        let files = siblings::merge(
            files,
            self.cfg.min_siblings,
            &self.anchors,
            &self.guardrails,
        );
        p.files = files
            .into_iter()
            .map(|(path, (access, runs))| FileRule { path, access, runs })
            .collect();
        p.network = self.network_rules();
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
                .map(|c| (*c, RateBudget::new(self.rates.peak(*c), self.cfg.headroom)))
                .collect(),
        };
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
                        },
                    )
                })
                .collect(),
        };
        p.provenance = Provenance {
            hosts: vec![host.to_string()],
            sessions: 1,
            started: time::rfc3339(self.started),
            ended: time::rfc3339(std::time::SystemTime::now()),
            events: self.events.clone(),
        };
        p.sort();
        p
    }

    /// Endpoints, with unnamed IPv4 addresses on one port and direction
    /// grouped into their /24 when `min_cidr` or more share it.
    fn network_rules(&self) -> Vec<NetRule> {
        let mut groups: BTreeMap<(Direction, Option<u16>, [u8; 3]), Vec<IpAddr>> = BTreeMap::new();
        for (dir, target, port) in self.net.keys() {
            if let Target::Addr(IpAddr::V4(v4)) = target {
                let o = v4.octets();
                groups
                    .entry((*dir, *port, [o[0], o[1], o[2]]))
                    .or_default()
                    .push(IpAddr::V4(*v4));
            }
        }
        let mut merged: BTreeMap<(Direction, String, Option<u16>), BTreeSet<String>> =
            BTreeMap::new();
        let mut cidr_of: HashMap<(Direction, Option<u16>, IpAddr), String> = HashMap::new();
        for ((dir, port, net), addrs) in &groups {
            if addrs.len() >= self.cfg.min_cidr {
                let cidr = format!("{}.{}.{}.0/24", net[0], net[1], net[2]);
                for a in addrs {
                    cidr_of.insert((*dir, *port, *a), cidr.clone());
                }
            }
        }
        let mut out: Vec<NetRule> = Vec::new();
        for ((dir, target, port), by) in &self.net {
            let mut rule = NetRule {
                direction: *dir,
                host: None,
                address: None,
                unix: None,
                port: *port,
                by: by.iter().cloned().collect(),
                runs: 1,
            };
            match target {
                Target::Host(h) => rule.host = Some(h.clone()),
                Target::Unix(u) => rule.unix = Some(u.clone()),
                Target::Addr(a) => match cidr_of.get(&(*dir, *port, *a)) {
                    Some(cidr) => {
                        merged
                            .entry((*dir, cidr.clone(), *port))
                            .or_default()
                            .extend(by.iter().cloned());
                        continue;
                    }
                    None => rule.address = Some(a.to_string()),
                },
            }
            out.push(rule);
        }
        for ((direction, cidr, port), by) in merged {
            out.push(NetRule {
                direction,
                host: None,
                address: Some(cidr),
                unix: None,
                port,
                by: by.into_iter().collect(),
                runs: 1,
            });
        }
        out
    }
}

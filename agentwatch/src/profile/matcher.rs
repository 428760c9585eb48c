//! Judging events against a profile: what `check` reports and what
//! enforcement will act on. Guardrails first (they hold whatever the
//! profile says), then the class's rules, then the rate budgets.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use serde::Serialize;

use super::{
    anchors::Anchors,
    builder::hash::HashCache,
    convergence::RateWindow,
    glob::Glob,
    guardrails::Guardrails,
    normalise,
    observe::{Obs, Peer, Seen},
    Access, AccessSet, Class, Direction, NetRule, Profile,
};
use crate::event::Event;

pub mod trie;

use trie::PathTrie;

/// Why an event would be flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule that flags it: `guardrail/secrets`, `exec/unknown`,
    /// `exec/hash`, `file/unknown`, `file/access`, `network/unknown`,
    /// `dns/unknown`, `rate/<class>`.
    pub rule: String,
    pub class: Class,
    /// What the agent did, as a reviewer reads it.
    pub what: String,
    /// Why it falls outside the profile.
    pub reason: String,
}

/// A profile compiled for matching, with the state rates need.
pub struct Matcher {
    anchors: Anchors,
    guardrails: Guardrails,
    files: PathTrie,
    file_access: Vec<AccessSet>,
    execs: PathTrie,
    exec_hashes: Vec<BTreeSet<String>>,
    net: Vec<NetRule>,
    dns: HashSet<String>,
    dns_suffixes: Vec<String>,
    budgets: HashMap<Class, u64>,
    rates: RateWindow,
    over_budget: HashSet<Class>,
    seen: Seen,
    hashes: HashCache,
    /// Patterns whose anchor is unknown here, so they match nothing.
    pub skipped: Vec<String>,
}

impl Matcher {
    pub fn new(p: &Profile, anchors: Anchors, guardrails: Guardrails) -> Self {
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
        let mut execs = PathTrie::default();
        let mut exec_hashes = Vec::new();
        for e in &p.executables {
            if let Some(g) = compile(&e.path) {
                execs.insert(&g, exec_hashes.len());
                exec_hashes.push(e.sha256.iter().cloned().collect());
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
            execs,
            exec_hashes,
            net: p.network.clone(),
            dns: names.into_iter().collect(),
            dns_suffixes: suffixes.into_iter().map(|s| s[1..].to_string()).collect(),
            budgets: p
                .rates
                .per_minute
                .iter()
                .map(|(c, b)| (*c, b.budget))
                .collect(),
            rates: RateWindow::default(),
            over_budget: HashSet::new(),
            seen: Seen::default(),
            hashes: HashCache::default(),
            skipped,
        }
    }

    /// Everything in `ev` the profile would flag.
    pub fn check(&mut self, ev: &Event) -> Vec<Finding> {
        let mut out = Vec::new();
        for obs in self.seen.observe(ev) {
            let class = obs.class();
            if let Some(f) = self.rate(class, ev.ts_ns) {
                out.push(f);
            }
            if let Some(f) = self.judge(obs, ev) {
                out.push(f);
            }
        }
        out
    }

    fn rate(&mut self, class: Class, ts: u64) -> Option<Finding> {
        let n = self.rates.add(class, ts);
        let budget = *self.budgets.get(&class)?;
        if n <= budget {
            self.over_budget.remove(&class);
            return None;
        }
        // Once per excursion over the budget, not once per event.
        self.over_budget.insert(class).then(|| Finding {
            rule: format!("rate/{class}"),
            class,
            what: format!("{n} {class} events in 60 s"),
            reason: format!("over the budget of {budget} per minute"),
        })
    }

    fn judge(&mut self, obs: Obs, ev: &Event) -> Option<Finding> {
        match obs {
            Obs::Exec { path } => self.judge_exec(&path, ev.pid),
            Obs::File {
                path,
                access,
                class,
            } => self.judge_file(&path, access, class),
            Obs::Net { direction, peer } => self.judge_net(direction, &peer, ev),
            Obs::Dns { name } => {
                let known = self.dns.contains(&name)
                    || self.dns_suffixes.iter().any(|s| name.ends_with(s.as_str()));
                (!known).then(|| Finding {
                    rule: "dns/unknown".into(),
                    class: Class::Dns,
                    what: format!("resolve {name}"),
                    reason: "name not in the profile".into(),
                })
            }
            Obs::DnsAnswer { .. } => None,
        }
    }

    fn guardrail(&self, path: &str, access: AccessSet, class: Class) -> Option<Finding> {
        let (g, guarded) = self.guardrails.hit(path, access)?;
        Some(Finding {
            rule: format!("guardrail/{}", g.category),
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
        a
    }

    fn judge_file(&self, path: &str, access: AccessSet, class: Class) -> Option<Finding> {
        if let Some(f) = self.guardrail(path, access, class) {
            return Some(f);
        }
        let allowed = self.allowed(path);
        if access.is_subset(allowed) {
            return None;
        }
        let missing = access.minus(allowed);
        Some(Finding {
            rule: if allowed.is_empty() {
                "file/unknown"
            } else {
                "file/access"
            }
            .into(),
            class,
            what: format!("{missing} {}", self.anchors.anchor(path)),
            reason: if allowed.is_empty() {
                "no file rule covers the path".into()
            } else {
                format!("the profile allows only {allowed} here")
            },
        })
    }

    fn judge_exec(&mut self, path: &str, pid: u32) -> Option<Finding> {
        let exec = AccessSet::of(&[Access::Exec]);
        if let Some(f) = self.guardrail(path, exec, Class::Exec) {
            return Some(f);
        }
        let mut hits = Vec::new();
        self.execs.matches(path, &mut |r| hits.push(r));
        if hits.is_empty() {
            if self.allowed(path).contains(Access::Exec) {
                return None;
            }
            return Some(Finding {
                rule: "exec/unknown".into(),
                class: Class::Exec,
                what: format!("exec {}", self.anchors.anchor(path)),
                reason: "executable not in the profile".into(),
            });
        }
        // Entries without hashes, or a binary gone before we could read
        // it, are judged by path alone.
        if hits.iter().any(|r| self.exec_hashes[*r].is_empty()) {
            return None;
        }
        let hash = self.hashes.sha256(path, pid)?;
        if hits.iter().any(|r| self.exec_hashes[*r].contains(&hash)) {
            return None;
        }
        Some(Finding {
            rule: "exec/hash".into(),
            class: Class::Exec,
            what: format!(
                "exec {} (sha256 {})",
                self.anchors.anchor(path),
                &hash[..12]
            ),
            reason: "binary differs from every sha256 the profile lists".into(),
        })
    }

    fn judge_net(&self, direction: Direction, peer: &Peer, ev: &Event) -> Option<Finding> {
        // Normalised only when a rule names executables or a finding needs it.
        let exe = std::cell::OnceCell::new();
        let exe = || {
            exe.get_or_init(|| {
                ev.context
                    .exe
                    .as_deref()
                    .and_then(|e| normalise::path(e, &self.anchors, self.seen.pids()))
                    .unwrap_or_else(|| ev.comm.clone())
            })
            .clone()
        };
        let host = match peer {
            Peer::Ip { addr, port } => self.seen.host(addr, *port).map(str::to_string),
            Peer::Unix { .. } => None,
        };
        let ok = self.net.iter().any(|r| {
            r.direction == direction
                && self.target_matches(r, peer, host.as_deref())
                && (r.by.is_empty() || r.by.contains(&exe()))
        });
        if ok {
            return None;
        }
        let target = match (peer, &host) {
            (Peer::Ip { port, .. }, Some(h)) => format!("{h}{}", port_text(*port)),
            (
                Peer::Ip {
                    addr: IpAddr::V6(a),
                    port: Some(p),
                },
                None,
            ) => format!("[{a}]:{p}"),
            (Peer::Ip { addr, port }, None) => format!("{addr}{}", port_text(*port)),
            (Peer::Unix { path }, _) => format!("unix:{}", self.anchors.anchor(path)),
        };
        let endpoint_known = self
            .net
            .iter()
            .any(|r| r.direction == direction && self.target_matches(r, peer, host.as_deref()));
        Some(Finding {
            rule: "network/unknown".into(),
            class: Class::Network,
            what: format!("{} -> {direction} {target}", exe()),
            reason: if endpoint_known {
                "endpoint in the profile, but not for this executable".into()
            } else {
                "endpoint not in the profile".into()
            },
        })
    }

    fn target_matches(&self, r: &NetRule, peer: &Peer, host: Option<&str>) -> bool {
        match peer {
            Peer::Ip { addr, port } => {
                let port_ok = r.port.is_none() || r.port == *port;
                let host_ok = match (&r.host, &r.address) {
                    (Some(h), _) => host.is_some_and(|n| {
                        n == h || h.strip_prefix('*').is_some_and(|s| n.ends_with(s))
                    }),
                    (_, Some(a)) => address_matches(a, *addr),
                    _ => false,
                };
                port_ok && host_ok
            }
            Peer::Unix { path } => r.unix.as_deref().is_some_and(|u| {
                u == path
                    || self
                        .anchors
                        .expand(u)
                        .and_then(|e| Glob::parse(&e).ok())
                        .is_some_and(|g| g.matches(path))
            }),
        }
    }
}

fn port_text(p: Option<u16>) -> String {
    p.map(|p| format!(":{p}")).unwrap_or_default()
}

/// An address rule (`10.0.0.7` or `10.0.0.0/24`) against an address.
pub fn address_matches(rule: &str, addr: IpAddr) -> bool {
    let Some((net, bits)) = rule.split_once('/') else {
        return rule.parse::<IpAddr>().is_ok_and(|r| r == addr);
    };
    let Ok(bits) = bits.parse::<u32>() else {
        return false;
    };
    match (net.parse::<IpAddr>(), addr) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;

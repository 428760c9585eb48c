//! Profiles: the per-agent envelope `learn` writes, a reviewer signs off
//! and enforcement compiles. The model lives here; its YAML form in
//! `yaml` (writing) and `parse` (reading, with lint findings); learning in
//! `builder`; `check` matching in `matcher`; `diff` and `merge` beside.
//! The file format is documented in docs/profile-format.md.
pub mod anchors;
pub mod builder;
pub mod convergence;
pub mod diff;
pub mod glob;
pub mod guardrails;
pub mod matcher;
pub mod merge;
pub mod normalise;
pub mod observe;
pub mod parse;
pub mod siblings;
pub mod yaml;

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

/// The one format version this build reads and writes.
pub const API_VERSION: &str = "agentwatch.dev/v1";
pub const KIND: &str = "Profile";

/// A learned (or hand-written) per-agent profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub agent: String,
    pub executables: Vec<Executable>,
    pub files: Vec<FileRule>,
    pub network: Vec<NetRule>,
    pub dns: Vec<DnsRule>,
    pub rates: Rates,
    /// What `run --mode enforce` does per class (and for guardrails and
    /// rates in every mode).
    pub actions: Actions,
    pub review: Vec<ReviewItem>,
    /// Entries added by `agentwatch approve --learn`: who approved what, when.
    pub approvals: Vec<Approval>,
    pub stability: Stability,
    pub provenance: Provenance,
}

/// A program the agent ran: the path it executed and the sha256 of each
/// binary seen at that path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executable {
    pub path: String,
    pub sha256: Vec<String>,
    /// How many learning runs saw it.
    pub runs: u32,
}

/// Accesses to paths matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRule {
    pub path: String,
    pub access: AccessSet,
    pub runs: u32,
}

/// A network endpoint the agent used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetRule {
    pub direction: Direction,
    /// Exactly one of `host` (a DNS name the agent resolved), `address`
    /// (an IP address or CIDR) or `unix` (a socket path) is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix: Option<String>,
    /// Remote port for connect, local port for bind; absent means any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Executables that used it; empty means any.
    pub by: Vec<String>,
    pub runs: u32,
}

impl NetRule {
    /// `host:port`, `address:port` or `unix:path`, as a reviewer reads it.
    pub fn target(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        match (&self.host, &self.address, &self.unix) {
            (Some(h), _, _) => format!("{h}{port}"),
            (_, Some(a), _) if a.contains(':') && self.port.is_some() => format!("[{a}]{port}"),
            (_, Some(a), _) => format!("{a}{port}"),
            (_, _, Some(u)) => format!("unix:{u}"),
            _ => format!("any{port}"),
        }
    }

    /// The identity of an endpoint, without who used it or how often.
    pub fn key(&self) -> (Direction, String) {
        (self.direction, self.target())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Connect,
    Bind,
    Accept,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Connect => "connect",
            Direction::Bind => "bind",
            Direction::Accept => "accept",
        })
    }
}

/// A DNS name the agent resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRule {
    pub name: String,
    pub runs: u32,
}

/// A guardrail path the agent touched: never learned as allowed; a person
/// decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewItem {
    pub path: String,
    pub access: AccessSet,
    /// The guardrail it falls under (`secrets`, `persistence`, `agentwatch`).
    pub guardrail: String,
    /// The guardrail pattern that matched.
    pub pattern: String,
    pub runs: u32,
}

/// What enforcement does about a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Record it; let it happen.
    Alert,
    /// Refuse it (EPERM) where a hook can; else kill the process at the call.
    Deny,
    /// Stop the agent's whole tree and ask (`agentwatch pending`).
    Pause,
    /// Kill the agent's whole tree.
    Kill,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Alert => "alert",
            ActionKind::Deny => "deny",
            ActionKind::Pause => "pause",
            ActionKind::Kill => "kill",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Actions per class in enforce mode, and for guardrail hits and rate
/// excursions. Defaults: exec, file and delete pause (a person decides);
/// network denies (the connect fails with EPERM); dns alerts (the connect
/// that follows is what matters); guardrails and rates pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actions {
    pub per_class: BTreeMap<Class, ActionKind>,
    pub guardrails: ActionKind,
    pub rate: ActionKind,
}

impl Default for Actions {
    fn default() -> Self {
        use ActionKind::*;
        Self {
            per_class: [
                (Class::Exec, Pause),
                (Class::File, Pause),
                (Class::Delete, Pause),
                (Class::Network, Deny),
                (Class::Dns, Alert),
            ]
            .into_iter()
            .collect(),
            guardrails: Pause,
            rate: Pause,
        }
    }
}

impl Actions {
    pub fn for_class(&self, c: Class) -> ActionKind {
        self.per_class.get(&c).copied().unwrap_or(ActionKind::Alert)
    }
}

/// Actions as a profile's `actions:` or a daemon config's
/// `[agent.actions]` write them: each given class replaces the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionOverrides {
    pub exec: Option<ActionKind>,
    pub file: Option<ActionKind>,
    pub delete: Option<ActionKind>,
    pub network: Option<ActionKind>,
    pub dns: Option<ActionKind>,
    pub guardrails: Option<ActionKind>,
    pub rate: Option<ActionKind>,
}

impl ActionOverrides {
    pub fn apply(&self, a: &mut Actions) {
        for (c, v) in [
            (Class::Exec, self.exec),
            (Class::File, self.file),
            (Class::Delete, self.delete),
            (Class::Network, self.network),
            (Class::Dns, self.dns),
        ] {
            if let Some(v) = v {
                a.per_class.insert(c, v);
            }
        }
        if let Some(g) = self.guardrails {
            a.guardrails = g;
        }
        if let Some(r) = self.rate {
            a.rate = r;
        }
    }
}

/// An entry a person approved into the profile from a paused agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The approval request's id.
    pub id: String,
    /// The entry, as a reviewer reads it (`read $WORKSPACE/notes.txt`).
    pub what: String,
    pub by: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// Event classes for rates, stability and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Exec,
    File,
    Delete,
    Network,
    Dns,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Exec,
        Class::File,
        Class::Delete,
        Class::Network,
        Class::Dns,
    ];
    /// The classes with a stability clock (delete is part of file).
    pub const LEARNED: [Class; 4] = [Class::Exec, Class::File, Class::Network, Class::Dns];

    pub fn name(self) -> &'static str {
        match self {
            Class::Exec => "exec",
            Class::File => "file",
            Class::Delete => "delete",
            Class::Network => "network",
            Class::Dns => "dns",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-class per-minute budgets: the peak seen in any 60 s window, times
/// the headroom, rounded up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    pub headroom: f64,
    pub per_minute: BTreeMap<Class, RateBudget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateBudget {
    pub peak: u64,
    pub budget: u64,
}

impl RateBudget {
    pub fn new(peak: u64, headroom: f64) -> Self {
        Self {
            peak,
            budget: (peak as f64 * headroom).ceil() as u64,
        }
    }
}

/// How settled each class was when learning stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stability {
    pub warmup_secs: u64,
    pub quiet_secs: u64,
    pub classes: BTreeMap<Class, ClassStability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClassStability {
    pub stable: bool,
    pub entries: u64,
}

/// Where and when the profile was learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub hosts: Vec<String>,
    pub sessions: u32,
    /// RFC 3339, UTC.
    pub started: String,
    pub ended: String,
    pub events: BTreeMap<Class, u64>,
}

/// Kinds of file access a rule can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Create,
    Delete,
    Rename,
    Chmod,
    Exec,
}

impl Access {
    pub const ALL: [Access; 7] = [
        Access::Read,
        Access::Write,
        Access::Create,
        Access::Delete,
        Access::Rename,
        Access::Chmod,
        Access::Exec,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Create => "create",
            Access::Delete => "delete",
            Access::Rename => "rename",
            Access::Chmod => "chmod",
            Access::Exec => "exec",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of accesses, written as a list (`[read, write]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessSet(u8);

impl AccessSet {
    pub const EMPTY: AccessSet = AccessSet(0);

    pub fn of(list: &[Access]) -> Self {
        list.iter().fold(Self::EMPTY, |s, a| s.with(*a))
    }
    pub fn with(self, a: Access) -> Self {
        Self(self.0 | a.bit())
    }
    pub fn contains(self, a: Access) -> bool {
        self.0 & a.bit() != 0
    }
    pub fn union(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
    pub fn intersection(self, o: Self) -> Self {
        Self(self.0 & o.0)
    }
    pub fn minus(self, o: Self) -> Self {
        Self(self.0 & !o.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The bits as the kernel reads them (`agentwatch_common::policy::access`).
    pub fn bits(self) -> u8 {
        self.0
    }
    pub fn is_subset(self, o: Self) -> bool {
        self.0 & !o.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Access> {
        Access::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl fmt::Display for AccessSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Access::name).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for AccessSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for AccessSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Access>::deserialize(d).map(|v| AccessSet::of(&v))
    }
}

impl Profile {
    /// An empty profile for `agent`, as a starting point.
    pub fn empty(agent: &str) -> Self {
        Self {
            agent: agent.to_string(),
            executables: Vec::new(),
            files: Vec::new(),
            network: Vec::new(),
            dns: Vec::new(),
            rates: Rates {
                headroom: 2.0,
                per_minute: BTreeMap::new(),
            },
            actions: Actions::default(),
            review: Vec::new(),
            approvals: Vec::new(),
            stability: Stability {
                warmup_secs: 0,
                quiet_secs: 0,
                classes: BTreeMap::new(),
            },
            provenance: Provenance {
                hosts: Vec::new(),
                sessions: 0,
                started: String::new(),
                ended: String::new(),
                events: BTreeMap::new(),
            },
        }
    }

    /// Puts every list in its canonical order, so equal profiles are
    /// equal files.
    pub fn sort(&mut self) {
        self.executables.sort_by(|a, b| a.path.cmp(&b.path));
        for e in &mut self.executables {
            e.sha256.sort();
            e.sha256.dedup();
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        for n in &mut self.network {
            n.by.sort();
            n.by.dedup();
        }
        self.network.sort_by_key(|a| a.key());
        self.dns.sort_by(|a, b| a.name.cmp(&b.name));
        self.review
            .sort_by(|a, b| (&a.path, &a.guardrail).cmp(&(&b.path, &b.guardrail)));
        self.provenance.hosts.sort();
        self.provenance.hosts.dedup();
    }
}

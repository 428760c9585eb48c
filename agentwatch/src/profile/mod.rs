//! Profiles: the per-agent envelope `learn` writes, a reviewer signs off
//! and enforcement compiles. The model lives here; its YAML form in
//! `yaml` (writing) and `parse` (reading, with lint findings); learning in
//! `builder`, generalisation in `generalise` (territories) and `siblings`;
//! `check` matching in `matcher`; `diff` and `merge` beside.
//! The file format is documented in docs/profile-format.md.
pub mod actions;
pub mod ambient;
pub mod anchors;
pub mod automaton;
pub mod builder;
mod canonical;
pub mod convergence;
pub mod diff;
pub mod generalise;
pub mod glob;
pub mod guardrails;
pub mod interpreters;
pub mod matcher;
pub mod merge;
pub mod normalise;
pub mod observe;
pub mod overlay;
pub mod packages;
pub mod parse;
pub mod pinned;
pub mod readiness;
pub mod rule;
pub mod session;
pub mod shadow;
pub mod siblings;
pub mod written;
pub mod yaml;

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

pub use actions::{ActionKind, ActionOverrides, Actions};

/// The format version this build writes.
pub const API_VERSION: &str = "agentwatch.dev/v2";
/// The first format: no territories, granularity, overrides or user
/// guardrails. Still read as it is.
pub const API_VERSION_V1: &str = "agentwatch.dev/v1";
pub const KIND: &str = "Profile";

/// A learned (or hand-written) per-agent profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub agent: String,
    /// How readily learning turns files into territories.
    pub granularity: Granularity,
    /// Per-directory granularity, set by a reviewer; learning honours them
    /// when it generalises again (`learn --append`, `profile merge`).
    pub overrides: Vec<Override>,
    /// Subtrees the agent may use with the listed accesses.
    pub territories: Vec<Territory>,
    /// The agent may use io_uring (`ioUring: true`). Its requests do not
    /// pass the syscall hooks: only Landlock's file rules and the cgroup
    /// network hooks still hold them. Off by default.
    pub io_uring: bool,
    /// The agent may make raw and packet sockets (`rawSockets: true`; a
    /// root `ping` does). Their packets pass no connect or datagram hook:
    /// nothing judges where they go. Off by default.
    pub raw_sockets: bool,
    pub executables: Vec<Executable>,
    pub files: Vec<FileRule>,
    pub network: Vec<NetRule>,
    pub dns: Vec<DnsRule>,
    pub rates: Rates,
    /// Resource budgets, kind -> value as written (`crate::budget`).
    pub resources: BTreeMap<String, String>,
    /// The model files it may load; None: models are not checked.
    pub models: Option<Vec<pinned::ModelRule>>,
    /// Signed lists of approved model hashes (models are then checked).
    pub model_manifests: Vec<pinned::ModelManifest>,
    /// The files that steer it, pinned by sha256.
    pub instructions: Vec<pinned::Instruction>,
    /// What `run --mode enforce` does per class (and for guardrails and
    /// rates in every mode).
    pub actions: Actions,
    /// Guardrails the reviewer added; they hold like the built-in ones,
    /// which they can only add to.
    pub guardrails: Vec<UserGuardrail>,
    pub review: Vec<ReviewItem>,
    /// Entries added by `agentwatch approve --learn`: who approved what, when.
    pub approvals: Vec<Approval>,
    pub stability: Stability,
    pub provenance: Provenance,
    /// The last `profile readiness` verdict, if one was written.
    pub readiness: Option<Readiness>,
}

/// How readily learning generalises files into territories (see
/// `generalise`): `strict` keeps close to the files seen, `open` makes a
/// territory of any directory the agent created something in.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Strict,
    #[default]
    Balanced,
    Open,
}

impl Granularity {
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Strict => "strict",
            Granularity::Balanced => "balanced",
            Granularity::Open => "open",
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reviewer's granularity for one directory and what lies beneath it.
/// `strict` also keeps any territory rooted above it from covering it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    pub path: String,
    pub granularity: Granularity,
}

/// A subtree the agent uses open-endedly: the directory and everything
/// beneath it, dot-files included, with these accesses. Guardrails carve
/// holes in it: what they protect stays protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Territory {
    /// The directory (anchored), without a trailing `/**`.
    pub path: String,
    pub access: AccessSet,
    pub runs: u32,
}

impl Territory {
    /// The territory as a pattern matching the directory and everything in
    /// it, dot-files included.
    pub fn pattern(&self) -> String {
        if self.path == "/" {
            "/**".into()
        } else {
            format!("{}/**", self.path)
        }
    }

    /// True when the agent may change things here, not only read.
    pub fn writable(&self) -> bool {
        !self
            .access
            .minus(AccessSet::of(&[Access::Read, Access::Exec]))
            .is_empty()
    }
}

/// Where an executable entry's binaries may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecSource {
    /// Any binary the distribution's package database owns, unmodified
    /// (its checksum matches the package's).
    Package,
}

/// A guardrail a reviewer added: a pattern and the category whose accesses
/// it protects (`secrets`: every access; `persistence`: every change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserGuardrail {
    pub path: String,
    pub category: String,
}

/// The verdict of `agentwatch profile readiness`, kept in the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// `ready` or `not-ready`.
    pub verdict: String,
    /// Sessions replayed, each held out once.
    pub sessions: u32,
    /// Held-out sessions the rest would have flagged.
    pub flagged: u32,
    /// Why, in a sentence.
    pub reason: String,
    /// RFC 3339, UTC.
    pub checked: String,
}

/// A program the agent ran: the path it executed and the sha256 of each
/// binary seen at that path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executable {
    pub path: String,
    pub sha256: Vec<String>,
    /// `package`: any binary at a matching path that the distribution's
    /// package database owns, unmodified (then `sha256` is empty).
    pub source: Option<ExecSource>,
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
    /// The agent's model API: a process that read a secret may not connect
    /// here (its content would leave through the allowed channel).
    pub model: bool,
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
    /// The index the kernel gives the class in its per-class arrays
    /// (policy actions and budgets, counters, rate rules).
    pub const fn kernel_index(self) -> usize {
        use agentwatch_common::policy::class;
        match self {
            Class::Exec => class::EXEC,
            Class::File => class::FILE,
            Class::Delete => class::DELETE,
            Class::Network => class::NETWORK,
            Class::Dns => class::DNS,
        }
    }

    /// The class of a kernel index.
    pub fn from_kernel_index(i: usize) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.kernel_index() == i)
    }

    /// The classes with a stability clock (delete is part of file).
    pub const LEARNED: [Class; 4] = [Class::Exec, Class::File, Class::Network, Class::Dns];

    /// Events per minute a budget always allows above the learned peak:
    /// runaway loops run at thousands a minute and are still stopped
    /// within their first second, while a normal burst the learning
    /// sessions did not show (a `git stash`, a test run) is not flagged.
    pub const fn rate_floor(self) -> u64 {
        match self {
            Class::Exec => 60,
            Class::File => 2000,
            Class::Delete => 50,
            Class::Network => 30,
            Class::Dns => 30,
        }
    }

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

    /// The budget for `class`: the peak times the headroom, and at least
    /// the peak plus the class's floor (`Class::rate_floor`): a few
    /// sessions show few of a normal session's bursts.
    pub fn for_class(class: Class, peak: u64, headroom: f64) -> Self {
        let b = Self::new(peak, headroom);
        Self {
            peak,
            budget: b.budget.max(peak + class.rate_floor()),
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassStability {
    pub stable: bool,
    pub entries: u64,
    /// Sessions in a row, most recent last, that added nothing new to the
    /// class (`learn --append` counts them).
    pub quiet_sessions: u32,
    /// New entries each appended session brought, oldest first (the last
    /// eight sessions).
    pub novelty: Vec<u64>,
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

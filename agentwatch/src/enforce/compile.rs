//! A profile compiled into what the kernel maps hold: one path automaton
//! for file rules, executables and guardrails; allow-trie entries for
//! endpoints given by address; the per-agent policy (mode, actions,
//! budgets). Endpoints given by host name get their addresses at runtime,
//! from the agent's own DNS answers (`enforce::Enforcer`).
use std::net::IpAddr;

use agentwatch_common::policy::{self as kp, accept, AgentPolicy, NetKey, DIR_BIND, DIR_CONNECT};

use crate::profile::automaton::{Dfa, DfaError};
use crate::profile::{
    anchors::Anchors, glob::Glob, guardrails::Guardrails, interpreters, Access, AccessSet,
    ActionKind, Class, Direction, NetRule, Profile,
};

/// Most automaton states one agent may use (rows of DFA_TRANS).
pub const MAX_STATES: usize = 200_000;

/// Run mode: what happens to violations of the profile's rules.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Alert on every violation; block nothing (guardrails still hold).
    Monitor,
    /// Act on every violation as the profile's `actions` say.
    Enforce,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

/// The compiled form of one agent's profile.
pub struct Compiled {
    /// None when the patterns did not fit (then every path crosses to
    /// userspace and is judged there); `dfa_error` says why.
    pub dfa: Option<Dfa>,
    pub dfa_error: Option<DfaError>,
    /// The policy, without the map offsets the loader fills in.
    pub policy: AgentPolicy,
    /// Endpoints given by address.
    pub endpoints: Vec<Endpoint>,
    /// Endpoints given by host name (addresses from DNS answers).
    pub host_rules: Vec<NetRule>,
    /// Names the agent may resolve, as the DNS egress hook looks them up.
    pub dns_names: Vec<kp::DnsKey>,
    /// Patterns whose anchor is unknown here (they match nothing).
    pub skipped: Vec<String>,
}

/// An allow-trie entry for an endpoint given by address.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub any_port: bool,
    pub key: NetKey,
    /// The agent's model API.
    pub model: bool,
}

pub fn action_code(a: ActionKind) -> u8 {
    match a {
        ActionKind::Alert => kp::action::ALERT,
        ActionKind::Deny => kp::action::DENY,
        ActionKind::Pause => kp::action::PAUSE,
        ActionKind::Kill => kp::action::KILL,
    }
}

/// The payload bits a guardrail category's guarded accesses go to.
fn guard_shift(category: &str) -> u32 {
    match category {
        "secrets" => accept::GUARD_SECRETS_SHIFT,
        "persistence" => accept::GUARD_PERSISTENCE_SHIFT,
        _ => accept::GUARD_AGENTWATCH_SHIFT,
    }
}

pub fn compile(
    agent: u32,
    profile: &Profile,
    anchors: &Anchors,
    guardrails: &Guardrails,
    mode: Mode,
) -> Compiled {
    let guardrails = guardrails
        .clone()
        .with_profile(&profile.guardrails, Some(anchors));
    let mut skipped = Vec::new();
    let mut patterns = path_patterns(profile, anchors, &mut skipped);
    let mut guards = guard_patterns(&guardrails);
    let (files, subtrees) = pinned_patterns(profile, anchors, &mut skipped);
    patterns.extend(files);
    guards.extend(subtrees);
    let (dfa, dfa_error) = match Dfa::build_pair(&patterns, &guards, MAX_STATES) {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e)),
    };
    let (endpoints, host_rules) = network(agent, profile);
    let policy = policy(profile, mode, dfa.as_ref(), !host_rules.is_empty());
    Compiled {
        dfa,
        dfa_error,
        policy,
        endpoints,
        host_rules,
        dns_names: dns_keys(agent, profile),
        skipped,
    }
}

/// The profile automaton's patterns with their payloads: file rules,
/// what every program reads, territories, `/usr` aliases, the agent's
/// places, executables, the parents of all of these (listing on the way
/// is within) and the fixed places. Patterns that do not expand are
/// named in `skipped`.
fn path_patterns(
    profile: &Profile,
    anchors: &Anchors,
    skipped: &mut Vec<String>,
) -> Vec<(Glob, u64)> {
    let mut patterns: Vec<(Glob, u64)> = Vec::new();
    let mut expand = |pat: &str, dotglob: bool| {
        let parse = |e: &str| {
            if dotglob {
                Glob::guardrail(e)
            } else {
                Glob::parse(e)
            }
        };
        match anchors.expand(pat).map(|e| parse(&e)) {
            Some(Ok(g)) => Some(g),
            _ => {
                skipped.push(pat.to_string());
                None
            }
        }
    };
    for f in &profile.files {
        if let Some(g) = expand(&f.path, false) {
            patterns.push((g, f.access.bits() as u64 | accept::LISTED));
        }
    }
    // What every program reads (the loader's cache, time zones, ...).
    for (pat, access) in crate::profile::ambient::entries() {
        if let Ok(g) = Glob::parse(pat) {
            patterns.push((g, access.bits() as u64 | accept::LISTED));
        }
    }
    for t in &profile.territories {
        let access = t.access.minus(AccessSet::of(&[Access::Exec]));
        if let Some(g) = expand(&t.pattern(), true) {
            patterns.push((g, access.bits() as u64 | accept::TERRITORY));
        }
    }
    let aliases = usr_aliases(&patterns);
    patterns.extend(aliases);
    patterns.extend(places(anchors));
    for e in &profile.executables {
        let names = std::iter::once(e.path.clone()).chain(crate::paths::usr_aliases(&e.path));
        for name in names {
            if let Some(g) = expand(&name, false) {
                // Pinned by sha256, or `source: package`: userspace checks
                // the binary.
                let any = if e.sha256.is_empty() && e.source.is_none() {
                    accept::EXEC_ANY_BINARY
                } else {
                    0
                };
                // A binary the agent may run it may also read (cp, ldd).
                let read = AccessSet::of(&[Access::Read]).bits() as u64;
                patterns.push((g, accept::EXEC_LISTED | any | read));
            }
        }
    }
    // Listing a directory on the way to an allowed path is within.
    let read = AccessSet::of(&[Access::Read]).bits() as u64;
    let parents: std::collections::BTreeSet<String> = patterns
        .iter()
        .filter(|(_, bits)| bits & (accept::LISTED | accept::TERRITORY | accept::EXEC_LISTED) != 0)
        .flat_map(|(g, _)| crate::paths::parent_dirs(&g.to_string()))
        .collect();
    patterns.extend(
        parents
            .iter()
            .filter_map(|p| Glob::parse(p).ok())
            .map(|g| (g, read)),
    );
    patterns.extend(fixed_places());
    patterns
}

/// Path patterns with their automaton payloads.
type Patterns = Vec<(Glob, u64)>;

/// The pinned files the kernel sends to userspace when read
/// (`accept::PINNED`): instruction files, as literal paths beside the
/// profile's (the first vector), and when the profile checks models,
/// every file with a model's extension and the models it lists, beside
/// the guardrails (`**` patterns there share one tracker).
fn pinned_patterns(
    profile: &Profile,
    anchors: &Anchors,
    skipped: &mut Vec<String>,
) -> (Patterns, Patterns) {
    let mut files = Vec::new();
    let mut subtrees = Vec::new();
    for i in &profile.instructions {
        match anchors.expand(&i.path).map(|e| Glob::parse(&e)) {
            Some(Ok(g)) => files.push((g, accept::PINNED)),
            _ => skipped.push(i.path.clone()),
        }
    }
    if profile.checks_models() {
        for ext in crate::pins::kind::MODEL_EXTENSIONS {
            if let Ok(g) = Glob::guardrail(&format!("**/*.{ext}")) {
                subtrees.push((g, accept::PINNED));
            }
        }
        for m in profile.models.iter().flatten() {
            match anchors.expand(&m.path).map(|e| Glob::guardrail(&e)) {
                Some(Ok(g)) => subtrees.push((g, accept::PINNED)),
                _ => skipped.push(m.path.clone()),
            }
        }
    }
    (files, subtrees)
}

/// The kernel judges paths as named: on a merged-/usr host `/bin/x` is
/// `/usr/bin/x`, so every `/usr` rule also stands under its alias.
fn usr_aliases(patterns: &[(Glob, u64)]) -> Vec<(Glob, u64)> {
    patterns
        .iter()
        .flat_map(|(g, bits)| {
            let text = g.to_string();
            let base = text.strip_suffix("/**").unwrap_or(&text).to_string();
            let dot = g.dotglob();
            crate::paths::usr_aliases(&base)
                .into_iter()
                .filter_map(move |a| {
                    let p = if text.ends_with("/**") {
                        format!("{a}/**")
                    } else {
                        a
                    };
                    let g = if dot {
                        Glob::guardrail(&p)
                    } else {
                        Glob::parse(&p)
                    };
                    g.ok().map(|g| (g, *bits))
                })
        })
        .collect()
}

/// The guardrails, as the second automaton beside the profile's (see
/// `Dfa`): subtree patterns stay out of it, or each would carry its own
/// copy of the guardrail tracker.
fn guard_patterns(guardrails: &Guardrails) -> Vec<(Glob, u64)> {
    guardrails
        .iter()
        .map(|g| {
            let shift = if g.pid_owned {
                accept::GUARD_PROC_SHIFT
            } else {
                guard_shift(g.category)
            };
            (g.pattern.clone(), (g.guarded.bits() as u64) << shift)
        })
        .collect()
}

/// The endpoint tries' entries for address rules, and the host rules
/// (their addresses are allowed as the agent's DNS answers name them).
fn network(agent: u32, profile: &Profile) -> (Vec<Endpoint>, Vec<NetRule>) {
    let mut endpoints = Vec::new();
    let mut host_rules = Vec::new();
    for r in &profile.network {
        let dir = match r.direction {
            Direction::Connect => DIR_CONNECT,
            Direction::Bind => DIR_BIND,
            Direction::Accept => continue, // judged in userspace
        };
        if r.host.is_some() {
            host_rules.push(r.clone());
        } else if let Some((addr, bits)) = r.address.as_deref().and_then(parse_net) {
            endpoints.push(Endpoint {
                any_port: r.port.is_none(),
                key: NetKey::new(agent, dir, r.port.unwrap_or(0), addr, bits),
                model: r.model,
            });
        }
    }
    (endpoints, host_rules)
}

/// The DNS egress hook's keys for the names the agent may resolve.
fn dns_keys(agent: u32, profile: &Profile) -> Vec<kp::DnsKey> {
    profile
        .dns
        .iter()
        .map(|d| {
            let (suffix, name) = match d.name.strip_prefix("*.") {
                Some(rest) => (1, rest),
                None => (0, d.name.as_str()),
            };
            kp::DnsKey {
                agent,
                suffix,
                hash: kp::dns_hash::of(name.trim_end_matches('.').as_bytes()),
            }
        })
        .collect()
}

/// The agent's policy slot: actions per class, budgets, flags and the
/// automaton's entry states.
fn policy(profile: &Profile, mode: Mode, dfa: Option<&Dfa>, host_rules: bool) -> AgentPolicy {
    let a = &profile.actions;
    let mut actions = [kp::action::ALERT; kp::class::COUNT];
    for c in Class::ALL {
        actions[c.kernel_index()] = action_code(a.for_class(c));
    }
    let mut budgets = [0u64; kp::class::COUNT];
    for (c, b) in &profile.rates.per_minute {
        budgets[c.kernel_index()] = b.budget;
    }
    let mut flags = 0;
    if dfa.is_some() {
        flags |= kp::flags::PATHS;
    }
    if host_rules {
        flags |= kp::flags::HOLD_DNS;
    }
    if profile.io_uring {
        flags |= kp::flags::IO_URING;
    }
    if profile.raw_sockets {
        flags |= kp::flags::RAW_SOCKETS;
    }
    AgentPolicy {
        active: 1,
        enforce: u8::from(mode == Mode::Enforce),
        actions,
        guardrail_action: action_code(a.guardrails),
        rate_action: action_code(a.rate),
        flags,
        start: dfa.map(|d| d.start).unwrap_or(0),
        start2: dfa.map(|d| d.start2).unwrap_or(0),
        classes: dfa.map(|d| d.class_count).unwrap_or(1),
        budgets,
        ..AgentPolicy::default()
    }
}

/// The agent's own places, in the profile's automaton: its workspace and
/// home (never temp places; a secret in the workspace may be read) and its
/// `$TMP` (a temp place).
fn places(anchors: &Anchors) -> Vec<(Glob, u64)> {
    let mut v: Vec<(String, u64)> = Vec::new();
    if let Some(t) = &anchors.tmp {
        v.push((format!("{t}/**"), accept::TEMP_PLACE));
    }
    if let Some(w) = &anchors.workspace {
        v.push((format!("{w}/**"), accept::IN_WORKSPACE));
    }
    if let Some(h) = &anchors.home {
        v.push((format!("{h}/**"), accept::IN_HOME));
    }
    globs(v)
}

/// The places every agent shares: temp
/// places (running a file from one is running what the agent wrote),
/// kernel files (writing to them copies nothing out), and shells and
/// interpreters (where their program comes from is judged).
fn fixed_places() -> Vec<(Glob, u64)> {
    let mut v: Vec<(String, u64)> = ["/tmp/**", "/var/tmp/**", "/dev/shm/**"]
        .iter()
        .map(|p| (p.to_string(), accept::TEMP_PLACE))
        .collect();
    for p in ["/dev/**", "/proc/**", "/sys/**"] {
        v.push((p.to_string(), accept::NOT_A_COPY));
    }
    for (p, shell) in interpreters::KERNEL_PATTERNS {
        let bit = if *shell {
            accept::SHELL
        } else {
            accept::INTERPRETER
        };
        v.push((p.to_string(), bit));
    }
    globs(v)
}

fn globs(v: Vec<(String, u64)>) -> Vec<(Glob, u64)> {
    v.into_iter()
        .filter_map(|(p, bits)| Glob::guardrail(&p).ok().map(|g| (g, bits)))
        .collect()
}

/// An address or CIDR as a 16-byte address (IPv4 mapped) and prefix bits.
pub fn parse_net(s: &str) -> Option<([u8; 16], u32)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u32>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    Some(match addr {
        IpAddr::V4(v4) => {
            let b = bits.unwrap_or(32);
            if b > 32 {
                return None;
            }
            (v4.to_ipv6_mapped().octets(), 96 + b)
        }
        IpAddr::V6(v6) => {
            let b = bits.unwrap_or(128);
            if b > 128 {
                return None;
            }
            (v6.octets(), b)
        }
    })
}

/// The allow-trie key for `addr` under a host rule.
pub fn host_key(agent: u32, rule: &NetRule, addr: IpAddr) -> Option<(bool, NetKey)> {
    let dir = match rule.direction {
        Direction::Connect => DIR_CONNECT,
        Direction::Bind => DIR_BIND,
        Direction::Accept => return None,
    };
    let octets = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    Some((
        rule.port.is_none(),
        NetKey::new(agent, dir, rule.port.unwrap_or(0), octets, 128),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_cidrs_become_mapped_prefixes() {
        let (a, bits) = parse_net("10.1.2.0/24").unwrap();
        assert_eq!(bits, 120);
        assert_eq!(&a[10..16], &[0xff, 0xff, 10, 1, 2, 0]);
        assert_eq!(parse_net("::1").unwrap().1, 128);
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("nonsense").is_none());
    }

    #[test]
    fn policy_carries_mode_actions_and_budgets() {
        let mut p = Profile::empty("a");
        p.rates
            .per_minute
            .insert(Class::Delete, crate::profile::RateBudget::new(10, 2.0));
        p.actions.per_class.insert(Class::File, ActionKind::Kill);
        let c = compile(
            3,
            &p,
            &Anchors::new(None, None, None),
            &Guardrails::builtin(),
            Mode::Enforce,
        );
        assert_eq!(c.policy.enforce, 1);
        assert_eq!(c.policy.budgets[kp::class::DELETE], 20);
        assert_eq!(c.policy.actions[kp::class::FILE], kp::action::KILL);
        assert_eq!(c.policy.actions[kp::class::NETWORK], kp::action::DENY);
        let dfa = c.dfa.expect("builtin guardrails fit");
        let p = dfa.lookup("/home/u/.ssh/id_rsa");
        assert_ne!((p >> accept::GUARD_SECRETS_SHIFT) & 0xff, 0);
    }

    #[test]
    fn a_name_at_any_depth_grants_that_name_and_not_the_tree() {
        use crate::profile::{Access, AccessSet, FileRule};
        let mut p = Profile::empty("a");
        p.files.push(FileRule {
            path: "/**/package.json".into(),
            access: AccessSet::of(&[Access::Read]),
            runs: 1,
        });
        let c = compile(
            1,
            &p,
            &Anchors::new(None, None, None),
            &Guardrails::builtin(),
            Mode::Enforce,
        );
        let dfa = c.dfa.expect("it fits");
        let read = AccessSet::of(&[Access::Read]).bits() as u64;
        assert_ne!(dfa.lookup("/srv/app/package.json") & read, 0);
        assert_eq!(dfa.lookup("/etc/hostname") & read, 0);
    }
}

#[cfg(test)]
mod pinned_tests {
    use super::*;
    use crate::profile::pinned::{Instruction, ModelRule};

    #[test]
    fn model_files_and_pinned_instructions_are_marked_to_cross() {
        let anchors = Anchors::new(Some("/w".into()), None, None);
        let mut p = Profile::empty("a");
        let plain = compile(1, &p, &anchors, &Guardrails::builtin(), Mode::Enforce);
        p.models = Some(vec![ModelRule {
            path: "/srv/weights/*.data".into(),
            sha256: Vec::new(),
        }]);
        p.instructions.push(Instruction {
            path: "$WORKSPACE/AGENTS.md".into(),
            sha256: "0".repeat(64),
            size: 1,
        });
        let c = compile(1, &p, &anchors, &Guardrails::builtin(), Mode::Enforce);
        let dfa = c.dfa.expect("it fits");
        for path in [
            "/home/u/models/x.gguf",
            "/w/.cache/m.safetensors",
            "/srv/weights/w.data",
            "/w/AGENTS.md",
        ] {
            assert_ne!(dfa.lookup(path) & accept::PINNED, 0, "{path}");
        }
        for path in [
            "/w/README.md",
            "/w/sub/AGENTS.md",
            "/w/x.ggufx",
            "/srv/x.data",
        ] {
            assert_eq!(dfa.lookup(path) & accept::PINNED, 0, "{path}");
        }
        // Guardrails still hold beside the model patterns.
        let g = dfa.lookup("/home/u/.ssh/id_rsa.pt");
        assert_ne!((g >> accept::GUARD_SECRETS_SHIFT) & 0xff, 0);
        // The model patterns share the guardrails' tracker: a fifth more
        // states here (8140 -> 9873), not a copy per pattern.
        let before = plain.dfa.expect("it fits").states();
        assert!(
            dfa.states() < before * 3 / 2,
            "{before} -> {}",
            dfa.states()
        );
    }
}

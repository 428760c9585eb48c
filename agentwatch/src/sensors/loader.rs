//! Loading and attaching the programs, and access to the maps.
use agentwatch_common::names::map as kmap;
use agentwatch_common::names::program as prog;
use agentwatch_common::{config, WatchEntry};
use aya::{
    maps::{Array, HashMap, MapData},
    programs::{
        links::{CgroupAttachMode, FdLink, PinnedLink},
        CgroupSkb, CgroupSkbAttachType, CgroupSockAddr,
    },
    Btf, Ebpf, EbpfLoader,
};
use std::sync::Arc;
use thiserror::Error;

use super::{
    gate::WatchGate,
    host,
    policy_maps::{DfaCapacity, PolicyMaps},
    EBPF_OBJECT,
};
use crate::selectors::Resolved;

#[derive(Debug, Error)]
pub enum SensorError {
    #[error("agentwatch needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN) to load its kernel sensors; run it with sudo")]
    NotRoot,
    #[error("this kernel exposes no BTF at /sys/kernel/btf/vmlinux; agentwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.8 or later)")]
    NoBtf,
    #[error(transparent)]
    Host(#[from] host::HostError),
    #[error("loading the eBPF object failed: {0}")]
    Object(String),
    #[error("the kernel refused program {program}: {reason}")]
    Program { program: String, reason: String },
    #[error("attaching {program} to {hook} failed: {reason}")]
    Attach {
        program: String,
        hook: String,
        reason: String,
    },
    #[error("map {0} is missing from the eBPF object (build mismatch)")]
    MissingMap(&'static str),
    #[error("map {map}: {reason}")]
    Map { map: &'static str, reason: String },
    #[error("pinning in bpffs: {what}: {reason}")]
    Pin { what: String, reason: String },
}

/// Which programs go on the hooks: the real sensors, or empty programs on
/// the same hooks (the benchmark's floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookSet {
    Sensors,
    /// Empty programs on the sensors' syscall tracepoints.
    Floor,
    /// Empty programs on the raw syscall tracepoints (every call).
    FloorRaw,
}

/// Loaded and attached kernel sensors. Dropping it detaches everything,
/// unless it was pinned (`load_enforcing` with a pin directory) or adopted
/// from pins: then the programs stay attached and the maps stay loaded
/// until the pins are removed (`pins::remove`).
pub struct Sensors {
    /// The loaded object; None when adopted from bpffs pins.
    ebpf: Option<Ebpf>,
    /// Maps opened from pins, by name (adopted sensors).
    pinned_maps: std::collections::BTreeMap<String, aya::maps::Map>,
    /// The attachments: by fd (detached on drop) or pinned.
    links: Vec<Held>,
    watched: HashMap<MapData, u32, WatchEntry>,
    /// WATCH_GATE, mapped: a process's bit is set before it is watched.
    gate: Arc<WatchGate>,
    /// Hooks this kernel lacks (e.g. fchmodat2 before 6.6), skipped.
    pub missing_hooks: Vec<String>,
    /// Intent capture's uprobes on libssl (enforcing sensors only).
    pub tls: super::tls::TlsProbes,
}

/// An attachment the sensors hold.
pub(super) enum Held {
    Fd(String, FdLink),
    Pinned(#[allow(dead_code)] PinnedLink),
}

fn check_prerequisites() -> Result<std::path::PathBuf, SensorError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SensorError::NotRoot);
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(SensorError::NoBtf);
    }
    let tracefs = host::ensure_tracefs()?;
    host::check_syscall_layout(&tracefs)?;
    Ok(tracefs)
}

/// Enforcement hooks only some agents need (`Sensors::load_enforcing`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    /// Intent capture's uprobes on libssl (for every process: only when
    /// an agent captures).
    pub tls: bool,
    /// The ia32 guard on the raw `sys_enter` (every call of every process
    /// pays for it: only for agents the launch sandbox does not hold, on a
    /// kernel that runs ia32 calls).
    pub ia32: bool,
}

impl Extras {
    /// The extras for an agent: `tls` when it captures intent; the ia32
    /// guard unless the launch sandbox holds it (its seccomp filter admits
    /// x86-64 calls only) and only where the kernel runs ia32 calls.
    pub fn for_agent(tls: bool, sandboxed: bool) -> Self {
        Self {
            tls,
            ia32: !sandboxed && host::runs_ia32_syscalls(),
        }
    }
}

impl Sensors {
    /// Loads the object and attaches `hooks`. `ring_buffer_bytes` must be a
    /// power of two multiple of the page size.
    pub fn load(hooks: HookSet, ring_buffer_bytes: u32) -> Result<Self, SensorError> {
        Ok(Self::load_with(hooks, ring_buffer_bytes, None, None, Extras::default())?.0)
    }

    /// Loads the sensors plus the enforcement hooks (tamper tracepoints,
    /// cgroup connect hooks on the cgroup-v2 root) for one agent, with the
    /// automaton maps sized to `capacity`; returns the maps' handle.
    ///
    /// With `pin`, every map and attachment is pinned under that bpffs
    /// directory, so enforcement outlives this process and a later one can
    /// adopt it (`pins::adopt`). `extras`: the hooks only some agents need.
    pub fn load_enforcing(
        ring_buffer_bytes: u32,
        capacity: DfaCapacity,
        pin: Option<&std::path::Path>,
        extras: Extras,
    ) -> Result<(Self, PolicyMaps), SensorError> {
        let (s, maps) = Self::load_with(
            HookSet::Sensors,
            ring_buffer_bytes,
            Some(capacity),
            pin,
            extras,
        )?;
        let maps = maps.ok_or(SensorError::MissingMap(kmap::AGENT_POLICY))?;
        Ok((s, maps))
    }

    fn load_with(
        hooks: HookSet,
        ring_buffer_bytes: u32,
        enforce: Option<DfaCapacity>,
        pin: Option<&std::path::Path>,
        extras: Extras,
    ) -> Result<(Self, Option<PolicyMaps>), SensorError> {
        let tracefs = check_prerequisites()?;
        // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_MEMLOCK,
            nix::sys::resource::RLIM_INFINITY,
            nix::sys::resource::RLIM_INFINITY,
        );
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(kmap::EVENTS, ring_buffer_bytes);
        // PENDING_EXIT is task storage, which aya creates but has no typed
        // wrapper for; userspace never reads it.
        loader.allow_unsupported_maps();
        if let Some(cap) = enforce {
            // Two halves (see PolicyMaps::write_dfa) per agent.
            let halves = 2 * cap.agents;
            loader.map_max_entries(kmap::DFA_TRANS, halves.saturating_mul(cap.trans));
            loader.map_max_entries(kmap::DFA_ACCEPT, halves.saturating_mul(cap.states));
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .map_err(|e| SensorError::Object(format!("{e:#}")))?;
        let btf = Btf::from_sys_fs().map_err(|_| SensorError::NoBtf)?;
        if let Some(dir) = pin {
            super::pins::pin_maps(&ebpf, dir)?;
        }
        let mut links: Vec<Held> = Vec::new();

        point_tamper_guard_here(
            ebpf.map_mut(kmap::CONFIG)
                .ok_or(SensorError::MissingMap(kmap::CONFIG))?,
        )?;

        let attached = super::attach::attach_sensors(
            &mut ebpf,
            &btf,
            &tracefs,
            hooks,
            enforce.is_some(),
            extras.ia32,
        )?;
        links.extend(attached.links);
        let missing = attached.missing;
        let mut tls = super::tls::TlsProbes::default();
        if enforce.is_some() {
            links.extend(attach_connect_hooks(&mut ebpf)?);
            super::attach::fill_jumps(&mut ebpf)?;
        }
        // Enforcement goes on without intent capture.
        if enforce.is_some() && extras.tls {
            tls = super::tls::load(&mut ebpf).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "intent capture unavailable: the TLS uprobes did not load");
                super::tls::TlsProbes::failed(&e)
            });
        }
        let gate = Arc::new(match ebpf.map(kmap::WATCH_GATE) {
            Some(aya::maps::Map::Array(m)) => WatchGate::map(m)?,
            _ => return Err(SensorError::MissingMap(kmap::WATCH_GATE)),
        });
        let maps = match enforce {
            Some(cap) => {
                let lsm = super::lsm::attach(&mut ebpf, &btf).map(|l| links.extend(l));
                let id = match ebpf.map(kmap::WATCHED) {
                    Some(aya::maps::Map::HashMap(m)) => m.info().map(|i| i.id()).ok(),
                    _ => None,
                }
                .ok_or(SensorError::MissingMap(kmap::WATCHED))?;
                Some(PolicyMaps::take(&mut ebpf, id, gate.clone(), cap, lsm)?)
            }
            None => None,
        };
        let watched = HashMap::try_from(
            ebpf.take_map(kmap::WATCHED)
                .ok_or(SensorError::MissingMap(kmap::WATCHED))?,
        )
        .map_err(|e| SensorError::Map {
            map: kmap::WATCHED,
            reason: e.to_string(),
        })?;
        if let Some(dir) = pin {
            links = super::pins::pin_links(links, dir)?;
        }
        Ok((
            Self {
                ebpf: Some(ebpf),
                pinned_maps: Default::default(),
                links,
                watched,
                gate,
                missing_hooks: missing,
                tls,
            },
            maps,
        ))
    }

    /// Sensors adopted from pins: the maps opened by name, the links held.
    pub(super) fn adopted(
        pinned_maps: std::collections::BTreeMap<String, aya::maps::Map>,
        links: Vec<Held>,
        watched: HashMap<MapData, u32, WatchEntry>,
        gate: Arc<WatchGate>,
    ) -> Self {
        Self {
            ebpf: None,
            pinned_maps,
            links,
            watched,
            gate,
            missing_hooks: Vec::new(),
            tls: Default::default(),
        }
    }

    /// Makes the tamper guard protect this process (an adopting daemon
    /// takes over from the one that loaded the programs).
    pub(super) fn point_tamper_guard_here(&mut self) -> Result<(), SensorError> {
        point_tamper_guard_here(
            self.map_mut(kmap::CONFIG)
                .ok_or(SensorError::MissingMap(kmap::CONFIG))?,
        )
    }

    /// How many attachments are held (pinned or not).
    pub fn attachments(&self) -> usize {
        self.links.len()
    }

    fn map_mut(&mut self, name: &str) -> Option<&mut aya::maps::Map> {
        match &mut self.ebpf {
            Some(e) => e.map_mut(name),
            None => self.pinned_maps.get_mut(name),
        }
    }

    pub(super) fn take_map(&mut self, name: &str) -> Option<aya::maps::Map> {
        match &mut self.ebpf {
            Some(e) => e.take_map(name),
            None => self.pinned_maps.remove(name),
        }
    }

    /// Watches process `pid` (and, from now on, every child it forks).
    pub fn watch(&mut self, pid: u32, agent_id: u32) -> Result<(), SensorError> {
        watch_in(&mut self.watched, &self.gate, pid, agent_id, 0)
    }

    /// `watch`, with `flags` (`policy::watch`): the launch sandbox's bits
    /// for a process started in it.
    pub fn watch_flagged(
        &mut self,
        pid: u32,
        agent_id: u32,
        flags: u32,
    ) -> Result<(), SensorError> {
        watch_in(&mut self.watched, &self.gate, pid, agent_id, flags)
    }

    /// Installs a selector: processes that exec while matching it join
    /// `agent_id` (see `crate::selectors`).
    pub fn add_selector(&mut self, sel: Resolved, agent_id: u32) -> Result<(), SensorError> {
        match sel {
            Resolved::Cgroup(id) => self.insert(kmap::CGROUP_SELECTORS, id, agent_id)?,
            Resolved::Uid(uid) => self.insert(kmap::UID_SELECTORS, uid, agent_id)?,
            Resolved::Exe(key) => self.insert(kmap::EXE_SELECTORS, key, agent_id)?,
        }
        let map = self
            .map_mut(kmap::CONFIG)
            .ok_or(SensorError::MissingMap(kmap::CONFIG))?;
        let err = |e: aya::maps::MapError| SensorError::Map {
            map: kmap::CONFIG,
            reason: e.to_string(),
        };
        let mut cfg: Array<_, u64> = Array::try_from(map).map_err(err)?;
        cfg.set(config::SELECTORS_ACTIVE, 1, 0).map_err(err)
    }

    /// Removes a selector `add_selector` installed (processes it already
    /// brought in stay watched).
    pub fn remove_selector(&mut self, sel: Resolved) -> Result<(), SensorError> {
        match sel {
            Resolved::Cgroup(id) => self.remove::<u64>(kmap::CGROUP_SELECTORS, id),
            Resolved::Uid(uid) => self.remove::<u32>(kmap::UID_SELECTORS, uid),
            Resolved::Exe(key) => self.remove(kmap::EXE_SELECTORS, key),
        }
    }

    /// True when `pid` is watched (by any agent).
    pub fn is_watched(&self, pid: u32) -> bool {
        self.watched.get(&pid, 0).is_ok()
    }

    /// Intent capture follows the watched processes: its uprobes attached
    /// to new ones, detached from those gone. Called from the thread that
    /// owns the sensors, often (a process is read from its first SSL call
    /// after this ran).
    pub fn follow_tls(&mut self) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        let pids: std::collections::HashSet<u32> = self.watched.keys().flatten().collect();
        self.tls.follow(ebpf, &pids);
    }

    fn remove<K: aya::Pod>(&mut self, name: &'static str, key: K) -> Result<(), SensorError> {
        match self.hash_map::<K>(name)?.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err(name)(e)),
        }
    }

    /// Inserts `key -> value` into the hash map `name`.
    fn insert<K: aya::Pod>(
        &mut self,
        name: &'static str,
        key: K,
        value: u32,
    ) -> Result<(), SensorError> {
        self.hash_map(name)?
            .insert(key, value, 0)
            .map_err(map_err(name))
    }

    /// The selector hash map `name` (key -> agent id).
    fn hash_map<K: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, u32>, SensorError> {
        let map = self.map_mut(name).ok_or(SensorError::MissingMap(name))?;
        HashMap::try_from(map).map_err(map_err(name))
    }
}

/// Attaches the cgroup connect4/connect6 hooks to the cgroup-v2 root, so
/// an agent cannot leave them by moving to another cgroup. They consult
/// the watch map and pass every unwatched process at once.
fn attach_connect_hooks(ebpf: &mut Ebpf) -> Result<Vec<Held>, SensorError> {
    let root = super::host::cgroup2_mount().ok_or_else(|| SensorError::Attach {
        program: prog::ENFORCE_CONNECT4.into(),
        hook: "cgroup/connect4".into(),
        reason: "no cgroup-v2 mount found in /proc/self/mountinfo; mount cgroup2 to enforce network rules".into(),
    })?;
    let dir = std::fs::File::open(&root).map_err(|e| SensorError::Attach {
        program: prog::ENFORCE_CONNECT4.into(),
        hook: format!("cgroup {}", root.display()),
        reason: e.to_string(),
    })?;
    let mut links = Vec::new();
    for name in [
        prog::ENFORCE_CONNECT4,
        prog::ENFORCE_CONNECT6,
        prog::ENFORCE_BIND4,
        prog::ENFORCE_BIND6,
        prog::DNS_SENDMSG4,
        prog::DNS_SENDMSG6,
    ] {
        let p: &mut CgroupSockAddr = program(ebpf, name)?;
        p.load().map_err(|e| SensorError::Program {
            program: name.into(),
            reason: format!("{e:#}"),
        })?;
        // With bpf_link (5.7+) attachments coexist; the multi flag is for the
        // legacy attach and link_create refuses it (EINVAL).
        let link = p
            .attach(&dir, CgroupAttachMode::Single)
            .and_then(|id| p.take_link(id));
        links.push(held_fd(name, format!("cgroup {}", root.display()), link)?);
    }
    // The DNS egress hook: queries for names outside a profile are dropped.
    let name = prog::DNS_EGRESS;
    let p: &mut CgroupSkb = program(ebpf, name)?;
    p.load().map_err(|e| SensorError::Program {
        program: name.into(),
        reason: format!("{e:#}"),
    })?;
    let link = p
        .attach(&dir, CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
        .and_then(|id| p.take_link(id));
    links.push(held_fd(
        name,
        format!("cgroup_skb/egress {}", root.display()),
        link,
    )?);
    Ok(links)
}

/// A cgroup program's link, held by its fd (so it can be pinned).
fn held_fd<L>(
    name: &str,
    hook: String,
    link: Result<L, aya::programs::ProgramError>,
) -> Result<Held, SensorError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    let attach_err = |reason: String| SensorError::Attach {
        program: name.into(),
        hook: hook.clone(),
        reason,
    };
    let link = link.map_err(|e| attach_err(format!("{e:#}")))?;
    let fd = FdLink::try_from(link).map_err(|e| attach_err(e.to_string()))?;
    Ok(Held::Fd(name.to_string(), fd))
}

pub(super) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, SensorError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| SensorError::Object(format!("program {name} missing from the object")))?;
    p.try_into()
        .map_err(|_| SensorError::Object(format!("program {name} has an unexpected type")))
}

/// A map operation's error as the sensors report it, naming the map.
pub(crate) fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> SensorError {
    move |e| SensorError::Map {
        map,
        reason: e.to_string(),
    }
}

/// Writes this process's tgid and process group into CONFIG: the tamper
/// programs guard them.
fn point_tamper_guard_here(map: &mut aya::maps::Map) -> Result<(), SensorError> {
    let mut cfg: Array<_, u64> = Array::try_from(map).map_err(map_err(kmap::CONFIG))?;
    cfg.set(config::SELF_TGID, std::process::id() as u64, 0)
        .map_err(map_err(kmap::CONFIG))?;
    cfg.set(config::SELF_PGID, nix::unistd::getpgrp().as_raw() as u64, 0)
        .map_err(map_err(kmap::CONFIG))
}

/// Puts `pid` in the watch map as `agent_id`, its gate bit first.
pub(super) fn watch_in(
    watched: &mut HashMap<MapData, u32, WatchEntry>,
    gate: &WatchGate,
    pid: u32,
    agent_id: u32,
    flags: u32,
) -> Result<(), SensorError> {
    gate.open(pid);
    watched
        .insert(pid, WatchEntry { agent_id, flags }, 0)
        .map_err(|e| SensorError::Map {
            map: kmap::WATCHED,
            reason: e.to_string(),
        })?;
    // A process that exited before the entry went in (gone, or a zombie
    // not yet reaped) would keep it for ever: its exit hook has run.
    // Checked after the insert, so an exit after the check finds the entry
    // and removes it.
    if !alive(pid) {
        let _ = watched.remove(&pid);
    }
    Ok(())
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name's closing parenthesis.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

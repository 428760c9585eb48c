//! The enforcement maps as userspace writes them: per-agent policy, the
//! path automaton, endpoint allow tries, pause flags, and the kernel's
//! decision counters. One handle, movable to the thread that enforces.
use agentwatch_common::names::map as kmap;
use agentwatch_common::{
    policy::{
        class, decided, epoch, flags as policy_flags, paused as policy_paused, AgentPolicy,
        AgentState, DnsKey, NetKey, CLASS_TABLE, NET_KEY_DATA,
    },
    InodeKey, WatchEntry,
};
use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray},
    Ebpf,
};

use std::sync::Arc;

use super::{
    gate::WatchGate,
    loader::{map_err, SensorError},
};
use crate::profile::{automaton::Dfa, Class};

/// Room in the automaton maps, split in two halves so a recompiled
/// automaton is written beside the one in use and swapped in at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DfaCapacity {
    /// DFA_TRANS entries (states x classes) per half.
    pub trans: u32,
    /// DFA_ACCEPT entries (states) per half.
    pub states: u32,
    /// Agent ids (0..agents) the maps have room for.
    pub agents: u32,
}

impl DfaCapacity {
    /// Room for `dfa` with headroom for entries approved later.
    pub fn for_dfa(dfa: Option<&Dfa>) -> Self {
        let (t, s) = dfa
            .map(|d| (d.trans.len() as u32, d.states() as u32))
            .unwrap_or((1, 1));
        Self {
            trans: t.saturating_mul(2).max(4096),
            states: s.saturating_mul(2).max(256),
            agents: 1,
        }
    }

    /// The same room for each of `agents` agents.
    pub fn for_agents(self, agents: u32) -> Self {
        Self {
            agents: agents.clamp(1, agentwatch_common::policy::MAX_AGENTS),
            ..self
        }
    }
}

pub struct PolicyMaps {
    policy: Array<MapData, AgentPolicy>,
    state: Array<MapData, AgentState>,
    paused: Array<MapData, u32>,
    class: Array<MapData, u8>,
    trans: Array<MapData, u32>,
    accept: Array<MapData, u64>,
    net_port: LpmTrie<MapData, [u8; NET_KEY_DATA], u32>,
    net_any: LpmTrie<MapData, [u8; NET_KEY_DATA], u32>,
    decided: PerCpuArray<MapData, u64>,
    watched: HashMap<MapData, u32, WatchEntry>,
    gate: Arc<WatchGate>,
    epochs: Array<MapData, u64>,
    written: HashMap<MapData, InodeKey, u32>,
    dns_allow: HashMap<MapData, DnsKey, u8>,
    intent: Array<MapData, u32>,
    tls_ignored: HashMap<MapData, [u64; 2], u8>,
    capacity: DfaCapacity,
    /// Ok when the BPF LSM tier is attached; else why not.
    lsm: Result<(), String>,
    /// Kernel ids of the maps (to reopen them).
    ids: std::collections::BTreeMap<&'static str, u32>,
}

/// The maps `PolicyMaps` holds, with the `aya::maps::Map` kind each is.
const MAPS: [(&str, MapKind); 15] = [
    (kmap::AGENT_POLICY, MapKind::Array),
    (kmap::AGENT_STATE, MapKind::Array),
    (kmap::AGENT_PAUSED, MapKind::Array),
    (kmap::DFA_CLASS, MapKind::Array),
    (kmap::DFA_TRANS, MapKind::Array),
    (kmap::DFA_ACCEPT, MapKind::Array),
    (kmap::NET_PORT, MapKind::LpmTrie),
    (kmap::NET_ANY_PORT, MapKind::LpmTrie),
    (kmap::DECIDED, MapKind::PerCpuArray),
    (kmap::WATCHED, MapKind::HashMap),
    (kmap::EPOCHS, MapKind::Array),
    (kmap::WRITTEN, MapKind::LruHashMap),
    (kmap::DNS_ALLOW, MapKind::HashMap),
    (kmap::INTENT, MapKind::Array),
    (kmap::TLS_IGNORED, MapKind::LruHashMap),
];

#[derive(Clone, Copy)]
enum MapKind {
    Array,
    PerCpuArray,
    LpmTrie,
    HashMap,
    LruHashMap,
}

impl MapKind {
    fn wrap(self, d: MapData) -> Map {
        match self {
            MapKind::Array => Map::Array(d),
            MapKind::PerCpuArray => Map::PerCpuArray(d),
            MapKind::LpmTrie => Map::LpmTrie(d),
            MapKind::HashMap => Map::HashMap(d),
            MapKind::LruHashMap => Map::LruHashMap(d),
        }
    }
}

/// The map data of a taken map (any kind `MAPS` lists).
fn data_of(m: Map) -> Option<MapData> {
    match m {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::LpmTrie(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d) => Some(d),
        _ => None,
    }
}

/// Opens every map of `MAPS` through `open` (taking it from the loaded
/// object, or reopening it by id) and types it.
struct Opened(std::collections::BTreeMap<&'static str, (MapData, u32)>);

impl Opened {
    fn open(
        mut open: impl FnMut(&'static str) -> Result<MapData, SensorError>,
    ) -> Result<Self, SensorError> {
        let mut all = std::collections::BTreeMap::new();
        for (name, _) in MAPS {
            let d = open(name)?;
            let id = d.info().map_err(map_err(name))?.id();
            all.insert(name, (d, id));
        }
        Ok(Self(all))
    }

    fn get<T: TryFrom<Map, Error = MapError>>(
        &mut self,
        name: &'static str,
    ) -> Result<T, SensorError> {
        let kind = MAPS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .ok_or(SensorError::MissingMap(name))?;
        let (d, _) = self.0.remove(name).ok_or(SensorError::MissingMap(name))?;
        T::try_from(kind.wrap(d)).map_err(map_err(name))
    }
}

impl PolicyMaps {
    pub(super) fn take(
        ebpf: &mut Ebpf,
        watched_id: u32,
        gate: Arc<WatchGate>,
        capacity: DfaCapacity,
        lsm: Result<(), String>,
    ) -> Result<Self, SensorError> {
        let opened = Opened::open(|name| {
            if name == kmap::WATCHED {
                // The sensors keep their own handle to WATCHED.
                return MapData::from_id(watched_id).map_err(map_err(name));
            }
            ebpf.take_map(name)
                .and_then(data_of)
                .ok_or(SensorError::MissingMap(name))
        })?;
        Self::build(opened, gate, capacity, lsm)
    }

    /// The maps opened by `open` (from bpffs pins, when a daemon adopts
    /// the sensors another one loaded).
    pub(super) fn open_with(
        open: impl FnMut(&'static str) -> Result<MapData, SensorError>,
        gate: Arc<WatchGate>,
        capacity: DfaCapacity,
        lsm: Result<(), String>,
    ) -> Result<Self, SensorError> {
        Self::build(Opened::open(open)?, gate, capacity, lsm)
    }

    fn build(
        mut o: Opened,
        gate: Arc<WatchGate>,
        capacity: DfaCapacity,
        lsm: Result<(), String>,
    ) -> Result<Self, SensorError> {
        let ids = o.0.iter().map(|(n, (_, id))| (*n, *id)).collect();
        Ok(Self {
            policy: o.get(kmap::AGENT_POLICY)?,
            state: o.get(kmap::AGENT_STATE)?,
            paused: o.get(kmap::AGENT_PAUSED)?,
            class: o.get(kmap::DFA_CLASS)?,
            trans: o.get(kmap::DFA_TRANS)?,
            accept: o.get(kmap::DFA_ACCEPT)?,
            net_port: o.get(kmap::NET_PORT)?,
            net_any: o.get(kmap::NET_ANY_PORT)?,
            decided: o.get(kmap::DECIDED)?,
            watched: o.get(kmap::WATCHED)?,
            gate,
            epochs: o.get(kmap::EPOCHS)?,
            written: o.get(kmap::WRITTEN)?,
            dns_allow: o.get(kmap::DNS_ALLOW)?,
            intent: o.get(kmap::INTENT)?,
            tls_ignored: o.get(kmap::TLS_IGNORED)?,
            capacity,
            lsm,
            ids,
        })
    }

    /// A second handle on the same kernel maps (each map reopened by id),
    /// for another agent's enforcer. Each handle must write only its own
    /// agents' slots.
    pub fn reopen(&self) -> Result<Self, SensorError> {
        let opened = Opened::open(|name| {
            let id = self
                .ids
                .get(name)
                .copied()
                .ok_or(SensorError::MissingMap(name))?;
            MapData::from_id(id).map_err(map_err(name))
        })?;
        Self::build(opened, self.gate.clone(), self.capacity, self.lsm.clone())
    }

    /// Answers whether a process of `agent` opened the file at a path for
    /// writing, from the kernel's WRITTEN map (its own handle, so the
    /// matcher can own it).
    pub fn written_oracle(
        &self,
        agent: u32,
    ) -> Result<crate::profile::matcher::WrittenOracle, SensorError> {
        let id = self
            .ids
            .get(kmap::WRITTEN)
            .copied()
            .ok_or(SensorError::MissingMap(kmap::WRITTEN))?;
        let d = MapData::from_id(id).map_err(map_err(kmap::WRITTEN))?;
        let map: HashMap<MapData, InodeKey, u32> =
            HashMap::try_from(Map::LruHashMap(d)).map_err(map_err(kmap::WRITTEN))?;
        Ok(Box::new(move |path: &str| {
            use std::os::unix::fs::MetadataExt as _;
            let Ok(m) = std::fs::metadata(path) else {
                return false;
            };
            let key = InodeKey {
                dev: crate::selectors::kernel_dev(m.dev()),
                ino: m.ino(),
            };
            map.get(&key, 0).is_ok_and(|a| a == agent + 1)
        }))
    }

    /// Whether a process of `agent` opened this inode for writing.
    pub fn written(&self, agent: u32, key: &InodeKey) -> bool {
        self.written.get(key, 0).is_ok_and(|a| a == agent + 1)
    }

    /// Room in the automaton maps, per agent and half.
    /// Turns the kernel's intent capture for `agent` on (`level` != 0) or off.
    pub fn set_intent(&mut self, agent: u32, level: u32) -> Result<(), SensorError> {
        self.intent
            .set(agent, level, 0)
            .map_err(map_err(kmap::INTENT))
    }

    /// Stops sending the plain text of connection `ssl` of process `tgid`
    /// (not to a model endpoint).
    pub fn ignore_tls(&mut self, tgid: u32, ssl: u64) -> Result<(), SensorError> {
        self.tls_ignored
            .insert([tgid as u64, ssl], 1, 0)
            .map_err(map_err(kmap::TLS_IGNORED))
    }

    pub fn capacity(&self) -> DfaCapacity {
        self.capacity
    }

    /// Forgets everything about `agent`: policy off (its processes are
    /// only sensed), not paused, no endpoints allowed.
    pub fn clear_agent(&mut self, agent: u32) -> Result<(), SensorError> {
        self.policy
            .set(agent, AgentPolicy::default(), 0)
            .map_err(map_err(kmap::AGENT_POLICY))?;
        // No epoch change: an inactive agent's opens are not judged, and
        // the next policy written for this slot changes it.
        self.set_paused(agent, false)?;
        self.clear_endpoints(agent)
    }

    /// Allows DNS names for their agents (the DNS egress hook's map).
    pub fn allow_names(&mut self, keys: &[DnsKey]) -> Result<(), SensorError> {
        for k in keys {
            self.dns_allow
                .insert(k, 1, 0)
                .map_err(map_err(kmap::DNS_ALLOW))?;
        }
        Ok(())
    }

    /// Removes `agent`'s allowed endpoints and DNS names (before a
    /// recompiled profile writes its own, so that a removed entry stops
    /// being allowed).
    pub fn clear_endpoints(&mut self, agent: u32) -> Result<(), SensorError> {
        let names: Vec<DnsKey> = self
            .dns_allow
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.agent == agent)
            .collect();
        for k in names {
            self.dns_allow
                .remove(&k)
                .map_err(map_err(kmap::DNS_ALLOW))?;
        }
        let mine = |k: &Key<[u8; NET_KEY_DATA]>| k.data()[0..4] == agent.to_be_bytes();
        for (map, name) in [
            (&mut self.net_port, kmap::NET_PORT),
            (&mut self.net_any, kmap::NET_ANY_PORT),
        ] {
            let keys: Vec<_> = map.keys().filter_map(Result::ok).filter(mine).collect();
            for k in keys {
                map.remove(&k).map_err(map_err(name))?;
            }
        }
        Ok(())
    }

    /// Writes `dfa` into the half of the automaton maps `agent` is not
    /// using and returns the offsets to put in its policy. The swap happens
    /// when the policy is written.
    pub fn write_dfa(&mut self, agent: u32, dfa: &Dfa) -> Result<(u32, u32, u32), SensorError> {
        let cap = self.capacity;
        if agent >= cap.agents {
            return Err(SensorError::Map {
                map: kmap::DFA_TRANS,
                reason: format!(
                    "agent id {agent}: the automaton maps have room for {} agent(s); restart to resize",
                    cap.agents
                ),
            });
        }
        if dfa.trans.len() as u64 > cap.trans as u64 || dfa.states() as u64 > cap.states as u64 {
            return Err(SensorError::Map {
                map: kmap::DFA_TRANS,
                reason: format!(
                    "the path automaton grew to {} states, past the {} the maps were sized for; restart `agentwatch run` to resize",
                    dfa.states(),
                    cap.states
                ),
            });
        }
        // Each agent has its own pair of halves: agent-major layout. The
        // half in use is read from the live policy, so a handle that did
        // not write it (another enforcer, a daemon that adopted the maps)
        // never overwrites what the kernel is reading.
        let live = self.policy(agent)?;
        let in_use = if live.active != 0 && cap.trans > 0 {
            (live.trans_base / cap.trans)
                .saturating_sub(agent * 2)
                .min(1)
        } else {
            1
        };
        let half = 1 - in_use;
        let trans_base = (agent * 2 + half) * cap.trans;
        let accept_base = (agent * 2 + half) * cap.states;
        let class_base = (agent * 2 + half) * CLASS_TABLE;
        for (b, c) in dfa.classes.iter().enumerate() {
            self.class
                .set(class_base + b as u32, *c, 0)
                .map_err(map_err(kmap::DFA_CLASS))?;
        }
        for (i, t) in dfa.trans.iter().enumerate() {
            self.trans
                .set(trans_base + i as u32, *t, 0)
                .map_err(map_err(kmap::DFA_TRANS))?;
        }
        for (i, a) in dfa.accept.iter().enumerate() {
            self.accept
                .set(accept_base + i as u32, *a, 0)
                .map_err(map_err(kmap::DFA_ACCEPT))?;
        }
        Ok((trans_base, accept_base, class_base))
    }

    /// Writes the agent's policy; with the LSM tier attached, file and exec
    /// denies are left to it.
    pub fn set_policy(&mut self, agent: u32, p: &AgentPolicy) -> Result<(), SensorError> {
        let mut p = *p;
        if self.lsm.is_ok() {
            p.flags |= policy_flags::LSM;
        }
        self.policy
            .set(agent, p, 0)
            .map_err(map_err(kmap::AGENT_POLICY))?;
        self.policy_changed()
    }

    /// Invalidates the kernel's cached clean opens (CLEAN_OPENS) after a
    /// policy write. Handles on other threads write too, so the epoch is
    /// not read and incremented (an update could be lost) but set to a
    /// value never written before; the kernel compares it for equality.
    fn policy_changed(&mut self) -> Result<(), SensorError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = crate::clock::monotonic_ns();
        let mut next = now;
        let _ = LAST.fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
            next = now.max(last + 1);
            Some(next)
        });
        self.epochs
            .set(epoch::POLICY, next, 0)
            .map_err(map_err(kmap::EPOCHS))
    }

    /// Ok when denied file calls and execs fail with EPERM (BPF LSM); else
    /// why they are killed at syscall entry instead.
    pub fn lsm_tier(&self) -> Result<(), &str> {
        self.lsm.as_ref().map(|_| ()).map_err(String::as_str)
    }

    pub fn policy(&self, agent: u32) -> Result<AgentPolicy, SensorError> {
        self.policy
            .get(&agent, 0)
            .map_err(map_err(kmap::AGENT_POLICY))
    }

    /// Forgets rate windows and the secret-read mark (a fresh run).
    pub fn reset_state(&mut self, agent: u32) -> Result<(), SensorError> {
        self.state
            .set(agent, AgentState::default(), 0)
            .map_err(map_err(kmap::AGENT_STATE))
    }

    pub fn set_paused(&mut self, agent: u32, paused: bool) -> Result<(), SensorError> {
        let v = if paused {
            policy_paused::PAUSED
        } else {
            policy_paused::RUNNING
        };
        self.paused
            .set(agent, v, 0)
            .map_err(map_err(kmap::AGENT_PAUSED))
    }

    pub fn paused(&self, agent: u32) -> bool {
        self.paused.get(&agent, 0).is_ok_and(|v| v != 0)
    }

    /// Allows an endpoint (`any_port`: the NET_ANY_PORT trie).
    /// Allows an endpoint; `model` marks the agent's model API (refused to
    /// a process that read a secret).
    pub fn allow_endpoint(
        &mut self,
        any_port: bool,
        key: &NetKey,
        model: bool,
    ) -> Result<(), SensorError> {
        let k = Key::new(key.prefix_len, key.data);
        let (map, name) = if any_port {
            (&mut self.net_any, kmap::NET_ANY_PORT)
        } else {
            (&mut self.net_port, kmap::NET_PORT)
        };
        let mut v = agentwatch_common::policy::endpoint::ALLOWED;
        if model {
            v |= agentwatch_common::policy::endpoint::MODEL;
        }
        map.insert(&k, v, 0).map_err(map_err(name))
    }

    /// Takes an endpoint allowed by `allow_endpoint` back (a DNS answer's
    /// time to live ran out). One already gone is not an error.
    pub fn disallow_endpoint(&mut self, any_port: bool, key: &NetKey) -> Result<(), SensorError> {
        let k = Key::new(key.prefix_len, key.data);
        let (map, name) = if any_port {
            (&mut self.net_any, kmap::NET_ANY_PORT)
        } else {
            (&mut self.net_port, kmap::NET_PORT)
        };
        match map.remove(&k) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err(name)(e)),
        }
    }

    /// Kernel decision counters of `agent` (all agents when None), summed
    /// over CPUs.
    pub fn decided(&self, agent: Option<u32>) -> Decided {
        let read = |i: u32| -> u64 { self.decided.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        let agents = match agent {
            Some(a) => a..a + 1,
            None => 0..agentwatch_common::policy::MAX_AGENTS,
        };
        let mut d = Decided::default();
        for a in agents {
            for c in Class::ALL {
                let i = c.kernel_index();
                d.allowed[i] += read(decided::allowed(a, i));
                d.acted[i] += read(decided::acted(a, i));
            }
        }
        d
    }

    /// Processes watched, of every agent.
    pub fn watched_count(&self) -> usize {
        self.watched.keys().filter(Result::is_ok).count()
    }

    /// Stops watching every process of `agent`.
    pub fn unwatch_agent(&mut self, agent: u32) {
        for pid in self.pids(agent) {
            let _ = self.watched.remove(&pid);
        }
    }

    /// Watches process `pid` as `agent` (and every child it forks), with
    /// `flags` (`policy::watch`: the launch sandbox's bits).
    pub fn watch(&mut self, pid: u32, agent: u32, flags: u32) -> Result<(), SensorError> {
        super::loader::watch_in(&mut self.watched, &self.gate, pid, agent, flags)
    }

    /// Live processes of `agent`, from the kernel's watch map.
    pub fn pids(&self, agent: u32) -> Vec<u32> {
        self.watched
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, w)| w.agent_id == agent)
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// What the kernel decided itself, per class (`Class::kernel_index`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decided {
    /// Events allowed in the kernel: no record crossed.
    pub allowed: [u64; class::COUNT],
    /// Violations the kernel acted on.
    pub acted: [u64; class::COUNT],
}

impl Decided {
    pub fn allowed_of(&self, c: Class) -> u64 {
        self.allowed[c.kernel_index()]
    }

    pub fn acted_of(&self, c: Class) -> u64 {
        self.acted[c.kernel_index()]
    }
}

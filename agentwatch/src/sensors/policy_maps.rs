//! The enforcement maps as userspace writes them: per-agent policy, the
//! path automaton, endpoint allow tries, pause flags, and the kernel's
//! decision counters. One handle, movable to the thread that enforces.
use agentwatch_common::{
    policy::{
        flags as policy_flags, paused as policy_paused, AgentPolicy, AgentState, NetKey,
        CLASS_TABLE, NET_KEY_DATA,
    },
    WatchEntry,
};
use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray},
    Ebpf,
};

use super::loader::SensorError;
use crate::enforce::dfa::Dfa;

/// Room in the automaton maps, split in two halves so a recompiled
/// automaton is written beside the one in use and swapped in at once.
#[derive(Debug, Clone, Copy)]
pub struct DfaCapacity {
    /// DFA_TRANS entries (states x classes) per half.
    pub trans: u32,
    /// DFA_ACCEPT entries (states) per half.
    pub states: u32,
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
    capacity: DfaCapacity,
    /// Ok when the BPF LSM tier is attached; else why not.
    lsm: Result<(), String>,
    /// Which half of the automaton maps each agent uses.
    half: [u8; agentwatch_common::policy::MAX_AGENTS as usize],
}

fn err(map: &'static str) -> impl Fn(MapError) -> SensorError {
    move |e| SensorError::Map {
        map,
        reason: e.to_string(),
    }
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, SensorError> {
    let m = ebpf.take_map(name).ok_or(SensorError::MissingMap(name))?;
    T::try_from(m).map_err(err(name))
}

impl PolicyMaps {
    pub(super) fn take(
        ebpf: &mut Ebpf,
        watched_id: u32,
        capacity: DfaCapacity,
        lsm: Result<(), String>,
    ) -> Result<Self, SensorError> {
        let watched = MapData::from_id(watched_id).map_err(err("WATCHED"))?;
        Ok(Self {
            policy: take(ebpf, "AGENT_POLICY")?,
            state: take(ebpf, "AGENT_STATE")?,
            paused: take(ebpf, "AGENT_PAUSED")?,
            class: take(ebpf, "DFA_CLASS")?,
            trans: take(ebpf, "DFA_TRANS")?,
            accept: take(ebpf, "DFA_ACCEPT")?,
            net_port: take(ebpf, "NET_PORT")?,
            net_any: take(ebpf, "NET_ANY_PORT")?,
            decided: take(ebpf, "DECIDED")?,
            watched: HashMap::try_from(aya::maps::Map::HashMap(watched)).map_err(err("WATCHED"))?,
            capacity,
            lsm,
            half: [0; agentwatch_common::policy::MAX_AGENTS as usize],
        })
    }

    /// Writes `dfa` into the half of the automaton maps `agent` is not
    /// using and returns the offsets to put in its policy. The swap happens
    /// when the policy is written.
    pub fn write_dfa(&mut self, agent: u32, dfa: &Dfa) -> Result<(u32, u32), SensorError> {
        let cap = self.capacity;
        if dfa.trans.len() as u64 > cap.trans as u64 || dfa.states() as u64 > cap.states as u64 {
            return Err(SensorError::Map {
                map: "DFA_TRANS",
                reason: format!(
                    "the path automaton grew to {} states, past the {} the maps were sized for; restart `agentwatch run` to resize",
                    dfa.states(),
                    cap.states
                ),
            });
        }
        // Each agent has its own pair of halves: agent-major layout.
        let slot = agent as usize;
        let half = 1 - self.half[slot] as u32;
        let trans_base = (agent * 2 + half) * cap.trans;
        let accept_base = (agent * 2 + half) * cap.states;
        for (b, c) in dfa.classes.iter().enumerate() {
            self.class
                .set(agent * CLASS_TABLE + b as u32, *c, 0)
                .map_err(err("DFA_CLASS"))?;
        }
        for (i, t) in dfa.trans.iter().enumerate() {
            self.trans
                .set(trans_base + i as u32, *t, 0)
                .map_err(err("DFA_TRANS"))?;
        }
        for (i, a) in dfa.accept.iter().enumerate() {
            self.accept
                .set(accept_base + i as u32, *a, 0)
                .map_err(err("DFA_ACCEPT"))?;
        }
        self.half[slot] = half as u8;
        Ok((trans_base, accept_base))
    }

    /// Writes the agent's policy; with the LSM tier attached, file and exec
    /// denies are left to it.
    pub fn set_policy(&mut self, agent: u32, p: &AgentPolicy) -> Result<(), SensorError> {
        let mut p = *p;
        if self.lsm.is_ok() {
            p.flags |= policy_flags::LSM;
        }
        self.policy.set(agent, p, 0).map_err(err("AGENT_POLICY"))
    }

    /// Ok when denied file calls and execs fail with EPERM (BPF LSM); else
    /// why they are killed at syscall entry instead.
    pub fn lsm_tier(&self) -> Result<(), &str> {
        self.lsm.as_ref().map(|_| ()).map_err(String::as_str)
    }

    pub fn policy(&self, agent: u32) -> Result<AgentPolicy, SensorError> {
        self.policy.get(&agent, 0).map_err(err("AGENT_POLICY"))
    }

    /// Forgets rate windows and the secret-read mark (a fresh run).
    pub fn reset_state(&mut self, agent: u32) -> Result<(), SensorError> {
        self.state
            .set(agent, AgentState::default(), 0)
            .map_err(err("AGENT_STATE"))
    }

    pub fn set_paused(&mut self, agent: u32, paused: bool) -> Result<(), SensorError> {
        let v = if paused {
            policy_paused::PAUSED
        } else {
            policy_paused::RUNNING
        };
        self.paused.set(agent, v, 0).map_err(err("AGENT_PAUSED"))
    }

    pub fn paused(&self, agent: u32) -> bool {
        self.paused.get(&agent, 0).is_ok_and(|v| v != 0)
    }

    /// Allows an endpoint (`any_port`: the NET_ANY_PORT trie).
    pub fn allow_endpoint(&mut self, any_port: bool, key: &NetKey) -> Result<(), SensorError> {
        let k = Key::new(key.prefix_len, key.data);
        let (map, name) = if any_port {
            (&mut self.net_any, "NET_ANY_PORT")
        } else {
            (&mut self.net_port, "NET_PORT")
        };
        map.insert(&k, 1, 0).map_err(err(name))
    }

    /// Kernel decision counters, summed over CPUs: `[class]` allowed in the
    /// kernel (nothing sent), `[8 + class]` violations acted on.
    pub fn decided(&self) -> [u64; 16] {
        let mut out = [0u64; 16];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(v) = self.decided.get(&(i as u32), 0) {
                *slot = v.iter().sum();
            }
        }
        out
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

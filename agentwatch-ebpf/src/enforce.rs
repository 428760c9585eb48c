//! In-kernel decisions for agents with a compiled policy
//! (`agentwatch_common::policy`): paths run through the agent's automaton,
//! endpoints through the allow tries, rates through per-agent windows;
//! then the action (signal, or a verdict the cgroup hook turns into EPERM).
//!
//! Everything here fails open: a map that cannot be read leaves the event
//! undecided, and userspace judges it.
use agentwatch_common::{
    config,
    policy::{
        accept, access, action, class, decided, endpoint, flags, paused, rule, verdict, watch,
        AgentPolicy, PendingDeny, CLASS_TABLE, NET_KEY_DATA, WALK_DEPTH,
    },
    WatchEntry, SLOTS, SLOT_LEN,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};

use crate::maps::*;

mod names;
mod resolve;

pub use names::{NameVerdict, WAYS as NAME_WAYS};

pub use resolve::{resolve, resolve_cached, Walk};

pub const SIGKILL: u32 = 9;
pub const SIGSTOP: u32 = 19;
const MINUTE_NS: u64 = 60_000_000_000;

/// What the kernel made of one event.
#[derive(Clone, Copy)]
pub struct Decision {
    pub verdict: u8,
    pub rule: u8,
    pub class: usize,
}

impl Decision {
    pub const fn new(verdict: u8, rule: u8, class: usize) -> Self {
        Self {
            verdict,
            rule,
            class,
        }
    }
    pub fn allowed(&self) -> bool {
        self.verdict == verdict::ALLOW
    }
}

/// The agent's policy, when one is loaded.
#[inline(always)]
pub fn policy(agent: u32) -> Option<&'static AgentPolicy> {
    AGENT_POLICY.get(agent).filter(|p| p.active != 0)
}

#[inline(always)]
pub fn signal(sig: u32) {
    unsafe { aya_ebpf::helpers::generated::bpf_send_signal(sig) };
}

/// A paused agent's process stops itself at its next watched call; a
/// killed agent's process dies there (`policy::paused`).
#[inline(always)]
pub fn stop_if_paused(agent: u32) -> bool {
    match AGENT_PAUSED.get(agent).copied().unwrap_or(0) {
        0 => false,
        paused::KILLED => {
            signal(SIGKILL);
            true
        }
        _ => {
            signal(SIGSTOP);
            true
        }
    }
}

/// The action the policy sets for a violation (`policy::wanted`, shared
/// with userspace); an alert for anything else.
#[inline(always)]
pub fn wanted(pol: &AgentPolicy, d: &Decision) -> u8 {
    if d.verdict != verdict::VIOLATION {
        return action::ALERT;
    }
    agentwatch_common::policy::wanted(pol, d.rule, d.class)
}

/// In enforce mode, stops the caller until userspace has judged what the
/// kernel left to it (`act` for undecided rules; a pinned file's read);
/// userspace releases it. Else the caller goes on.
#[inline(always)]
pub fn hold(pol: &AgentPolicy) -> u8 {
    if pol.enforce == 0 {
        return action::ALERT;
    }
    signal(SIGSTOP);
    action::HOLD
}

/// Takes the action for `d` from the violating task; returns what was done.
/// `lsm_refuses`: an LSM hook of this call will still run and can refuse
/// it, so a deny is left to it (DENY_NOW) rather than a SIGKILL.
#[inline(always)]
pub fn act(pol: &AgentPolicy, agent: u32, d: &Decision, lsm_refuses: bool) -> u8 {
    if d.verdict == verdict::UNDECIDED {
        // A path or binary the kernel could not judge does not run on
        // before userspace has judged it.
        if matches!(d.rule, rule::PATH | rule::EXEC_HASH | rule::INTERP) {
            return hold(pol);
        }
        return action::ALERT;
    }
    let done = match wanted(pol, d) {
        action::DENY if d.class == class::NETWORK => action::DENY,
        action::DENY if lsm_refuses && pol.flags & flags::LSM != 0 => {
            deny_now(d);
            action::DENY
        }
        // A process sharing its file table keeps the descriptor a killed
        // open left in the other: the tree goes (as for kill).
        action::DENY if shares_files() => {
            if let Some(p) = AGENT_PAUSED.get_ptr_mut(agent) {
                unsafe { *p = paused::KILLED };
            }
            signal(SIGKILL);
            action::KILL
        }
        action::DENY => {
            signal(SIGKILL);
            action::DENY_KILL
        }
        action::PAUSE => {
            if let Some(p) = AGENT_PAUSED.get_ptr_mut(agent) {
                unsafe { *p = 1 };
            }
            signal(SIGSTOP);
            action::PAUSE
        }
        action::KILL => {
            // The rest of the tree dies at its next watched call, before
            // userspace has swept it.
            if let Some(p) = AGENT_PAUSED.get_ptr_mut(agent) {
                unsafe { *p = paused::KILLED };
            }
            signal(SIGKILL);
            action::KILL
        }
        _ => action::ALERT,
    };
    if d.verdict == verdict::VIOLATION && d.class < class::COUNT {
        count(decided::acted(agent, d.class as usize));
    }
    done
}

/// Marks the current thread's call for refusal by the LSM hooks.
#[inline(always)]
pub fn deny_now(d: &Decision) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let v = PendingDeny {
        rule: d.rule,
        class: d.class as u8,
        _pad: [0; 2],
    };
    let _ = DENY_NOW.insert(&tid, &v, 0);
}

/// Counts one event of `cls` in the agent's window; a violation the first
/// time the class goes over its budget in this window.
#[inline(always)]
pub fn rate(pol: &AgentPolicy, agent: u32, cls: usize) -> Option<Decision> {
    if cls >= class::COUNT {
        return None;
    }
    let budget = pol.budgets[cls];
    if budget == 0 {
        return None;
    }
    let st = AGENT_STATE.get_ptr_mut(agent)?;
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a map value; concurrent CPUs may race on the window reset,
    // which can only lose a few counts at a minute boundary.
    unsafe {
        if now.wrapping_sub((*st).window_start_ns) >= MINUTE_NS {
            (*st).window_start_ns = now;
            (*st).counts = [0; class::COUNT];
            (*st).over = 0;
        }
        let n = (*st).counts[cls] + 1;
        (*st).counts[cls] = n;
        let bit = 1u64 << cls;
        if n > budget && (*st).over & bit == 0 {
            (*st).over |= bit;
            return Some(Decision::new(
                verdict::VIOLATION,
                agentwatch_common::policy::rate_rule(cls),
                cls,
            ));
        }
    }
    None
}

/// `d` with the class's rate budget applied: past the budget, the record
/// carries the budget's decision, unless `d` is itself a hard violation (a
/// guardrail, exec/written, exfiltration), whose record it stays while the
/// budget acts beside it. A decision left to userspace (UNDECIDED) or a
/// profile violation left to the exit gives way: the budget's pause or
/// kill must reach userspace with its record, or the agent would be
/// stopped with nothing to say why (userspace still judges the event and
/// reports what else it finds).
#[inline(always)]
pub fn with_rate(pol: &AgentPolicy, agent: u32, d: Decision, cls: usize, lsm: bool) -> Decision {
    let Some(r) = rate(pol, agent, cls) else {
        return d;
    };
    if d.verdict == verdict::VIOLATION && d.rule != rule::FILE {
        act(pol, agent, &r, lsm);
        return d;
    }
    r
}

/// Notes that a process of `agent` read a secret: connects outside the
/// profile are exfiltration from now on, and the reading process (with
/// the children it forks from now on) is tainted.
#[inline(always)]
pub fn note_secret_read(agent: u32) {
    if let Some(st) = AGENT_STATE.get_ptr_mut(agent) {
        unsafe { (*st).secret_read_ns = bpf_ktime_get_ns() };
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if let Some(w) = WATCHED.get_ptr_mut(&tgid) {
        // SAFETY: a map value; only this process's own calls set the bit.
        unsafe { (*w).flags |= watch::TAINTED };
    }
}

/// Does the current process share its file table with another
/// (`watch::SHARES_FILES`)?
#[inline(always)]
pub fn shares_files() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    unsafe { WATCHED.get(&tgid) }.is_some_and(|w| w.flags & watch::SHARES_FILES != 0)
}

/// Is the current process tainted (it read a secret)?
#[inline(always)]
pub fn tainted() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    unsafe { WATCHED.get(&tgid) }.is_some_and(|w| w.flags & watch::TAINTED != 0)
}

/// A file access `acc` (see `policy::access`) to a resolved path payload.
#[inline(always)]
pub fn judge_path(agent: u32, payload: Option<u64>, acc: u64, cls: usize) -> Decision {
    let Some(p) = payload else {
        return Decision::new(verdict::UNDECIDED, rule::PATH, cls);
    };
    let v = |r| Decision::new(verdict::VIOLATION, r, cls);
    if (p >> accept::GUARD_SECRETS_SHIFT) & acc & access::ALL != 0 {
        if acc & access::READ != 0 {
            note_secret_read(agent);
        }
        // A secret in the agent's own workspace (a project's .env) may be
        // read; the reader is tainted and the read recorded.
        if acc == access::READ && p & accept::IN_WORKSPACE != 0 {
            return Decision::new(verdict::ALLOW, rule::TAINT, cls);
        }
        return v(rule::GUARD_SECRETS);
    }
    if (p >> accept::GUARD_PERSISTENCE_SHIFT) & acc & access::ALL != 0 {
        return v(rule::GUARD_PERSISTENCE);
    }
    if (p >> accept::GUARD_AGENTWATCH_SHIFT) & acc & access::ALL != 0 {
        return v(rule::GUARD_AGENTWATCH);
    }
    if acc == access::EXEC {
        if p & accept::EXEC_LISTED != 0 {
            if p & accept::EXEC_ANY_BINARY != 0 {
                return Decision::new(verdict::ALLOW, rule::NONE, cls);
            }
            return Decision::new(verdict::UNDECIDED, rule::EXEC_HASH, cls);
        }
        if p & access::EXEC != 0 {
            return Decision::new(verdict::ALLOW, rule::NONE, cls);
        }
        return v(rule::EXEC);
    }
    let changes = access::WRITE | access::CREATE;
    if acc & changes != 0 && p & (accept::IN_WORKSPACE | accept::NOT_A_COPY) == 0 && tainted() {
        return v(rule::EXFILTRATE);
    }
    if acc & !(p & accept::ALLOWED_MASK) != 0 {
        return v(rule::FILE);
    }
    // A model or a pinned instruction file read: userspace checks what
    // the open reached.
    if acc & access::READ != 0 && p & accept::PINNED != 0 {
        return Decision::new(verdict::ALLOW, rule::PINNED, cls);
    }
    // A new name in a territory: allowed, and recorded.
    if acc & access::CREATE != 0 && p & accept::TERRITORY != 0 && p & accept::LISTED == 0 {
        return Decision::new(verdict::ALLOW, rule::TERRITORY, cls);
    }
    Decision::new(verdict::ALLOW, rule::NONE, cls)
}

/// Is `addr` (16 bytes; IPv4 as IPv4-mapped) on `port` (network order)
/// allowed for `dir`? Else a network violation, or exfiltration when the
/// agent has read a secret. The model API is refused to a `tainted`
/// process: a secret it read would leave through the allowed channel.
#[inline(always)]
pub fn judge_endpoint(
    agent: u32,
    dir: u8,
    port_be: u16,
    addr: &[u8; 16],
    tainted: bool,
) -> Decision {
    let mut data = [0u8; NET_KEY_DATA];
    data[0..4].copy_from_slice(&agent.to_be_bytes());
    data[4] = dir;
    data[8..24].copy_from_slice(addr);
    let allowed = |v: u32| {
        if tainted && v & endpoint::MODEL != 0 {
            Decision::new(verdict::VIOLATION, rule::EXFILTRATE, class::NETWORK)
        } else {
            Decision::new(verdict::ALLOW, rule::NONE, class::NETWORK)
        }
    };
    if agentwatch_common::policy::ephemeral_loopback_bind(dir, port_be, addr) {
        return allowed(0);
    }
    if let Some(v) = NET_ANY_PORT.get(Key::new(192, data)) {
        return allowed(*v);
    }
    data[6..8].copy_from_slice(&port_be.to_ne_bytes());
    if let Some(v) = NET_PORT.get(Key::new(192, data)) {
        return allowed(*v);
    }
    let secret = AGENT_STATE
        .get(agent)
        .is_some_and(|s| s.secret_read_ns != 0);
    let r = if secret {
        rule::EXFILTRATE
    } else {
        rule::NETWORK
    };
    Decision::new(verdict::VIOLATION, r, class::NETWORK)
}

/// IPv4 (network order, as in sockaddr_in) as an IPv4-mapped IPv6 address.
#[inline(always)]
pub fn mapped4(addr_ne: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12..16].copy_from_slice(&addr_ne.to_ne_bytes());
    a
}

/// Is `pid` (a kill/ptrace target) agentwatch itself?
#[inline(always)]
pub fn targets_agentwatch(pid: i64) -> bool {
    let me = crate::maps::config(config::SELF_TGID) as i64;
    let group = crate::maps::config(config::SELF_PGID) as i64;
    me != 0 && (pid == me || pid == -1 || (group != 0 && pid == -group))
}

/// The cgroup connect hooks: 1 lets the connect proceed, 0 refuses it with
/// EPERM. Refused: connects of a paused agent, exfiltration after a secret
/// read, and endpoints outside the profile when the network action is deny.
#[inline(always)]
pub fn try_connect(ctx: &SockAddrContext, v6: bool) -> Option<i32> {
    let (w, pol, port, addr) = hook_call(ctx, v6)?;
    if is_paused(w.agent_id) {
        return Some(0);
    }
    crate::probes::dns_egress::tag(ctx, w.agent_id, port as u32);
    let d = judge_endpoint(
        w.agent_id,
        agentwatch_common::policy::DIR_CONNECT,
        port,
        &addr,
        w.flags & watch::TAINTED != 0,
    );
    let refuse = d.verdict == verdict::VIOLATION
        && (d.rule == rule::EXFILTRATE || wanted(pol, &d) == action::DENY);
    Some(if refuse { 0 } else { 1 })
}

/// What a cgroup sock_addr hook judges: the calling process's watch
/// entry and policy, and the port (network order) and address (16 bytes,
/// IPv4 mapped) of the call. None for a process of no agent.
#[inline(always)]
fn hook_call(
    ctx: &SockAddrContext,
    v6: bool,
) -> Option<(WatchEntry, &'static AgentPolicy, u16, [u8; 16])> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let w = watched(tgid)?;
    let pol = policy(w.agent_id)?;
    // SAFETY: the context the kernel passed to this program.
    let sa = unsafe { &*ctx.sock_addr };
    let addr = if v6 {
        let mut a = [0u8; 16];
        for (i, word) in sa.user_ip6.iter().enumerate() {
            a[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        a
    } else {
        mapped4(sa.user_ip4)
    };
    Some((w, pol, sa.user_port as u16, addr))
}

/// Whether the agent is paused (or being killed).
#[inline(always)]
fn is_paused(agent: u32) -> bool {
    AGENT_PAUSED.get(agent).is_some_and(|p| *p != 0)
}

/// The cgroup bind hooks: 1 lets the bind proceed, 0 refuses it with
/// EPERM. Refused: binds of a paused agent, and local addresses outside
/// the profile when the network action is deny. Port 0 (any free port)
/// is an ephemeral listener, never judged (as in learning).
#[inline(always)]
pub fn try_bind(ctx: &SockAddrContext, v6: bool) -> Option<i32> {
    let (w, pol, port, addr) = hook_call(ctx, v6)?;
    if is_paused(w.agent_id) {
        return Some(0);
    }
    if port == 0 {
        return Some(1);
    }
    let dir = agentwatch_common::policy::DIR_BIND;
    let d = judge_endpoint(w.agent_id, dir, port, &addr, false);
    let refuse = d.verdict == verdict::VIOLATION && wanted(pol, &d) == action::DENY;
    Some(if refuse { 0 } else { 1 })
}

const _: () = assert!(CLASS_TABLE == 256);
const _: () = assert!(WALK_DEPTH.is_power_of_two());
const _: () = assert!(SLOTS * SLOT_LEN == 8192 && agentwatch_common::DATA_LEN > 8192);

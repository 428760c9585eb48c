//! Enforcement shared with the kernel: the per-agent policy userspace
//! compiles from a profile (`agentwatch::enforce::compile`), the path
//! automaton's layout, and the verdicts, rules and actions the kernel
//! reports in [`crate::EventHeader`].

/// Agents the kernel maps have room for (agent ids 0..MAX_AGENTS).
pub const MAX_AGENTS: u32 = 64;
/// Byte-class table entries per agent (one per byte value).
pub const CLASS_TABLE: u32 = 256;
/// Deepest path the in-kernel path resolver keeps states for (`..` pops one).
pub const WALK_DEPTH: usize = 64;

/// Event classes, as indexes into per-class arrays. Same order as
/// `agentwatch::profile::Class::ALL`.
pub mod class {
    pub const EXEC: usize = 0;
    pub const FILE: usize = 1;
    pub const DELETE: usize = 2;
    pub const NETWORK: usize = 3;
    pub const DNS: usize = 4;
    pub const COUNT: usize = 5;
}

/// File access bits, in `agentwatch::profile::Access` order.
pub mod access {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const CREATE: u64 = 4;
    pub const DELETE: u64 = 8;
    pub const RENAME: u64 = 16;
    pub const CHMOD: u64 = 32;
    pub const EXEC: u64 = 64;
    pub const ALL: u64 = 127;
}

/// Layout of a DFA_ACCEPT value: what holds for paths ending in a state.
pub mod accept {
    /// Access bits (see [`super::access`]) the profile's file rules allow.
    pub const ALLOWED_MASK: u64 = 0xff;
    /// Some `executables` entry matches the path.
    pub const EXEC_LISTED: u64 = 1 << 8;
    /// ... and one of the matching entries lists no sha256 (path alone).
    pub const EXEC_ANY_BINARY: u64 = 1 << 9;
    /// Accesses each guardrail category guards at the path, 8 bits each.
    pub const GUARD_SECRETS_SHIFT: u32 = 16;
    pub const GUARD_PERSISTENCE_SHIFT: u32 = 24;
    pub const GUARD_AGENTWATCH_SHIFT: u32 = 32;
}

/// What the kernel decided about an event.
pub mod verdict {
    /// No policy for this agent (trace, learn): nothing decided.
    pub const NONE: u8 = 0;
    /// Within the profile. Such records cross only for the process tree
    /// (exec); file and network ones are counted and dropped in the kernel.
    pub const ALLOW: u8 = 1;
    /// Outside the profile or against a guardrail.
    pub const VIOLATION: u8 = 2;
    /// The kernel could not decide (a path too long, a unix socket, a
    /// binary whose sha256 must be checked): userspace judges it.
    pub const UNDECIDED: u8 = 3;
}

/// Which rule the kernel applied.
pub mod rule {
    pub const NONE: u8 = 0;
    pub const FILE: u8 = 1;
    pub const EXEC: u8 = 2;
    pub const NETWORK: u8 = 3;
    pub const GUARD_SECRETS: u8 = 4;
    pub const GUARD_PERSISTENCE: u8 = 5;
    pub const GUARD_AGENTWATCH: u8 = 6;
    /// A signal, ptrace or bpf() aimed at agentwatch.
    pub const TAMPER: u8 = 7;
    /// A connect outside the profile after a guardrail read.
    pub const EXFILTRATE: u8 = 8;
    /// Undecided: the path could not be resolved in the kernel.
    pub const PATH: u8 = 10;
    /// Undecided: the binary's sha256 must be checked.
    pub const EXEC_HASH: u8 = 11;
    /// Undecided: a DNS answer to read before the agent may connect.
    pub const DNS_ANSWER: u8 = 12;
    /// Undecided: a unix socket or accepted peer.
    pub const SOCKET: u8 = 13;
    /// Over the per-minute budget: `RATE + class`.
    pub const RATE: u8 = 16;
}

/// Actions. In an [`AgentPolicy`] they are what to do; in a record, what
/// the kernel did.
pub mod action {
    pub const ALERT: u8 = 0;
    /// EPERM where a hook can refuse (cgroup sock_addr for connects); else
    /// the kernel falls back to [`DENY_KILL`].
    pub const DENY: u8 = 1;
    /// SIGSTOP the agent and ask.
    pub const PAUSE: u8 = 2;
    /// SIGKILL the agent.
    pub const KILL: u8 = 3;
    /// (record only) deny by SIGKILL at syscall entry: no hook could refuse.
    pub const DENY_KILL: u8 = 4;
    /// (record only) stopped until userspace decides.
    pub const HOLD: u8 = 5;
}

/// Values of the AGENT_PAUSED map.
pub mod paused {
    pub const RUNNING: u32 = 0;
    /// Processes stop (SIGSTOP) at their next watched call.
    pub const PAUSED: u32 = 1;
    /// Processes die (SIGKILL) at their next watched call.
    pub const KILLED: u32 = 2;
}

/// Bits of [`AgentPolicy::flags`].
pub mod flags {
    /// The path automaton is loaded: file and exec paths are decided in
    /// the kernel.
    pub const PATHS: u8 = 1;
    /// Some endpoint rule names a host: stop a process that received a DNS
    /// answer until userspace has added its addresses to the allow maps.
    pub const HOLD_DNS: u8 = 2;
    /// The BPF LSM hooks are attached: a file, delete or exec violation
    /// whose action is deny is refused with EPERM by the LSM hook instead
    /// of a SIGKILL at syscall entry.
    pub const LSM: u8 = 4;
}

/// A deny the LSM hooks are to carry out for one thread's current call
/// (DENY_NOW map value): the rule and class of the violation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingDeny {
    pub rule: u8,
    pub class: u8,
    pub _pad: [u8; 2],
}

/// Per-agent policy (AGENT_POLICY map, indexed by agent id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentPolicy {
    /// 1 when a profile is compiled for this agent.
    pub active: u8,
    /// 1 in enforce mode, 0 in monitor mode.
    pub enforce: u8,
    /// Action per class ([`class`] index) in enforce mode.
    pub actions: [u8; class::COUNT],
    /// Action for guardrail hits, tampering and exfiltration, in every mode.
    pub guardrail_action: u8,
    /// Action when a class goes over its budget (enforce mode).
    pub rate_action: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Index in DFA_TRANS of this agent's state 0, class 0.
    pub trans_base: u32,
    /// Index in DFA_ACCEPT of this agent's state 0.
    pub accept_base: u32,
    /// Index of this agent's byte-class table in DFA_CLASS.
    pub class_base: u32,
    /// Byte classes: the width of one DFA_TRANS row.
    pub classes: u32,
    /// Initial state (relative to `dfa_base`).
    pub start: u32,
    /// Per-minute budget per class; 0 means none.
    pub budgets: [u64; class::COUNT],
}

/// Per-agent state the kernel keeps (AGENT_STATE map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentState {
    /// Start of the current one-minute rate window (monotonic ns).
    pub window_start_ns: u64,
    pub counts: [u64; class::COUNT],
    /// Classes (bits) already reported over budget in this window.
    pub over: u64,
    /// When a process of the agent last read a secrets guardrail (0: never).
    pub secret_read_ns: u64,
}

/// Key of the NET_PORT / NET_ANY_PORT LPM tries. `data`: agent id (big
/// endian, 4), direction (1), pad (1), port (big endian, 2; zero in
/// NET_ANY_PORT), IPv6 or IPv4-mapped address (16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetKey {
    pub prefix_len: u32,
    pub data: [u8; NET_KEY_DATA],
}

pub const NET_KEY_DATA: usize = 24;
/// Bits of `NetKey::data` before the address.
pub const NET_KEY_FIXED_BITS: u32 = 64;
pub const DIR_CONNECT: u8 = 1;
pub const DIR_BIND: u8 = 2;

impl NetKey {
    /// The key for agent `agent`, `dir`, `port` (0: any) and a 16-byte address.
    pub fn new(agent: u32, dir: u8, port: u16, addr: [u8; 16], addr_bits: u32) -> Self {
        let mut data = [0u8; NET_KEY_DATA];
        data[0..4].copy_from_slice(&agent.to_be_bytes());
        data[4] = dir;
        data[6..8].copy_from_slice(&port.to_be_bytes());
        data[8..24].copy_from_slice(&addr);
        Self {
            prefix_len: NET_KEY_FIXED_BITS + addr_bits,
            data,
        }
    }
}

/// Slots of the EPOCHS map. A cached "this open reached no guardrail"
/// verdict (CLEAN_OPENS) holds only while both epochs are what they were
/// when it was judged.
pub mod epoch {
    /// Bumped by the kernel after every rename and every mount-tree change
    /// on the host (any process): either can change the path an already
    /// cached (dentry, mount) pair reaches.
    pub const PATHS: u32 = 0;
    /// Bumped by userspace after it writes any agent's policy.
    pub const POLICY: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Key of the CLEAN_OPENS cache: the file an allowed open reached, as the
/// kernel addresses of its dentry and mount, the agent, and the access
/// judged (`access` bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenedKey {
    pub dentry: u64,
    pub mnt: u64,
    pub agent: u32,
    pub access: u32,
}

/// Value of the CLEAN_OPENS cache: what the verdict was judged under. A
/// dentry freed and its memory reused for another name differs in parent,
/// inode or name hash, so the entry no longer matches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenedStamp {
    pub paths_epoch: u64,
    pub policy_epoch: u64,
    pub parent: u64,
    pub inode: u64,
    pub name_hash_len: u64,
}

const _: () = assert!(core::mem::size_of::<AgentPolicy>() == 72);
const _: () = assert!(core::mem::size_of::<AgentState>() == 64);
const _: () = assert!(core::mem::size_of::<NetKey>() == 28);
const _: () = assert!(core::mem::size_of::<PendingDeny>() == 4);
const _: () = assert!(core::mem::size_of::<OpenedKey>() == 24);
const _: () = assert!(core::mem::size_of::<OpenedStamp>() == 40);

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

/// The kernel's `DECIDED` per-CPU counters: per agent and class, the
/// events it allowed without sending a record, and the violations it acted
/// on. Per agent so that what an agent did within its profile can be told
/// (`enforce::activity`), not only how much all agents did.
pub mod decided {
    use super::{class, MAX_AGENTS};

    /// Counters per agent.
    pub const SLOTS: u32 = 16;
    /// Entries of the `DECIDED` array.
    pub const ENTRIES: u32 = SLOTS * MAX_AGENTS;
    /// Where the acted-on counters start.
    const ACTED: usize = 8;

    /// The counter of `agent`'s `cls` events allowed in the kernel.
    pub const fn allowed(agent: u32, cls: usize) -> u32 {
        agent * SLOTS + cls as u32
    }

    /// The counter of `agent`'s `cls` violations the kernel acted on.
    pub const fn acted(agent: u32, cls: usize) -> u32 {
        agent * SLOTS + (ACTED + cls) as u32
    }

    const _: () = assert!(class::COUNT <= ACTED && ACTED + class::COUNT <= SLOTS as usize);
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
    /// A territory (a subtree rule) covers the path.
    pub const TERRITORY: u64 = 1 << 10;
    /// A file rule (not a territory) covers the path.
    pub const LISTED: u64 = 1 << 11;
    /// A temp place (`/tmp`, `/var/tmp`, `/dev/shm`, `$TMP`): running a
    /// file from here is running what the agent wrote.
    pub const TEMP_PLACE: u64 = 1 << 12;
    /// The agent's home: never a temp place, wherever it is.
    pub const IN_HOME: u64 = 1 << 13;
    /// The agent's workspace: never a temp place; a secret here may be
    /// read (the reader is tainted); a tainted process may write here.
    pub const IN_WORKSPACE: u64 = 1 << 14;
    /// A script interpreter (python, perl, node, ...): where its program
    /// comes from is judged (`exec/written`).
    pub const INTERPRETER: u64 = 1 << 15;
    /// A shell: as INTERPRETER, with the shells' options (`-c` inline,
    /// `-s` standard input, `-e` an option).
    pub const SHELL: u64 = 1 << 49;
    /// Devices and kernel files (`/dev`, `/proc`, `/sys`): a tainted
    /// process writing here is not copying a secret out.
    pub const NOT_A_COPY: u64 = 1 << 48;
    /// A pinned file: a model's weights, or an instruction file the
    /// profile pins by sha256. An allowed read crosses at the open's exit
    /// with the file it reached, held in enforce mode until userspace has
    /// checked its sha256 (`rule::PINNED`).
    pub const PINNED: u64 = 1 << 50;
    /// Accesses each guardrail category guards at the path, 8 bits each.
    pub const GUARD_SECRETS_SHIFT: u32 = 16;
    pub const GUARD_PERSISTENCE_SHIFT: u32 = 24;
    pub const GUARD_AGENTWATCH_SHIFT: u32 = 32;
    /// Another process's environment or memory (`/proc/PID/environ`):
    /// judged at the open's exit, against the PID the file belongs to.
    pub const GUARD_PROC_SHIFT: u32 = 40;
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
    /// A connect outside the profile after a guardrail read; a connect to
    /// the model API, or a write outside the workspace, by a process that
    /// read a secret.
    pub const EXFILTRATE: u8 = 8;
    /// Setting setuid/setgid bits or file capabilities.
    pub const GUARD_PRIVILEGE: u8 = 9;
    /// Running what the agent wrote: a binary it wrote, one with no name
    /// (memfd, deleted), one in a temp place, an interpreter fed from a
    /// pipe.
    pub const EXEC_WRITTEN: u8 = 14;
    /// Undecided: an interpreter whose program is a file, or a script;
    /// userspace checks whether the agent wrote it.
    pub const INTERP: u8 = 15;
    /// Undecided: the path could not be resolved in the kernel.
    pub const PATH: u8 = 10;
    /// Undecided: the binary's sha256 must be checked.
    pub const EXEC_HASH: u8 = 11;
    /// Undecided: a DNS answer to read before the agent may connect.
    pub const DNS_ANSWER: u8 = 12;
    /// Undecided: a unix socket or accepted peer.
    pub const SOCKET: u8 = 13;
    /// A DNS query for a name outside the profile, dropped in the kernel.
    pub const DNS: u8 = 24;
    /// A call that leaves the sandbox (`escape::ESCAPES`): mounts,
    /// namespaces, file handles, io_uring, the kernel itself.
    pub const ESCAPE: u8 = 25;
    /// A path the kernel could not judge: longer than its copy, or
    /// unreadable at entry and again at exit. Enforce mode fails closed:
    /// the call is refused (BPF LSM) or the caller killed.
    pub const UNJUDGED: u8 = 26;
    /// Allowed, and recorded: a new name created in a territory.
    pub const TERRITORY: u8 = 32;
    /// Allowed, and recorded: a secret in the workspace was read; the
    /// process is tainted.
    pub const TAINT: u8 = 33;
    /// Allowed by the profile's file rules, and left to userspace: a
    /// pinned file (`accept::PINNED`) opened for reading. Its record
    /// carries the new fd; in enforce mode the opener is held (SIGSTOP)
    /// until its sha256 is checked.
    pub const PINNED: u8 = 34;
    /// (userspace) A model file no `models` entry approves, or one whose
    /// sha256 changed: `model/unapproved`, `model/changed`.
    pub const MODEL: u8 = 35;
    /// (userspace) A pinned instruction file whose content changed:
    /// `config/changed`.
    pub const CONFIG: u8 = 36;
    /// Over the per-minute budget: `RATE + class`.
    pub const RATE: u8 = 16;
    /// Refused by the launch sandbox's Landlock file rules before the
    /// effect (the call failed with EACCES, or EXDEV for a link or rename
    /// across directories, after its entry was judged outside the
    /// profile): `LANDLOCK + class`.
    pub const LANDLOCK: u8 = 40;
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
    /// (record only) refused before the effect by the launch sandbox's
    /// Landlock rules; nothing else was done to the caller.
    pub const DENY_LANDLOCK: u8 = 6;
}

/// Whether a rule holds like a guardrail: in every mode, with the
/// guardrail action, whatever the profile allows.
#[inline(always)]
pub const fn hard_rule(r: u8) -> bool {
    matches!(
        r,
        rule::GUARD_SECRETS
            | rule::GUARD_PERSISTENCE
            | rule::GUARD_AGENTWATCH
            | rule::GUARD_PRIVILEGE
            | rule::TAMPER
            | rule::ESCAPE
            | rule::EXFILTRATE
            // Running what the agent wrote holds like a guardrail.
            | rule::EXEC_WRITTEN
    )
}

/// The Landlock rule of a class (`class::*`).
#[inline(always)]
pub const fn landlock_rule(cls: usize) -> u8 {
    rule::LANDLOCK + cls as u8
}

/// The class a Landlock rule is about; `None` for any other rule.
#[inline(always)]
pub const fn landlock_class(r: u8) -> Option<usize> {
    class_of_block(r, rule::LANDLOCK)
}

/// The class of rule `r` in the block of per-class rules starting at
/// `base` (one rule per `class::*`); `None` outside the block.
#[inline(always)]
const fn class_of_block(r: u8, base: u8) -> Option<usize> {
    if r >= base && ((r - base) as usize) < class::COUNT {
        Some((r - base) as usize)
    } else {
        None
    }
}

/// The rate rule of a class (`class::*`).
#[inline(always)]
pub const fn rate_rule(cls: usize) -> u8 {
    rule::RATE + cls as u8
}

/// The class a rate rule is about; `None` for any other rule.
#[inline(always)]
pub const fn rate_class(r: u8) -> Option<usize> {
    class_of_block(r, rule::RATE)
}

/// The action `pol` sets for a violation of rule `r` in class `cls`:
/// hard rules get the guardrail action in every mode; in enforce mode a
/// rate rule gets the rate action and any other the class's; else an
/// alert. The kernel and userspace both decide with this function.
#[inline(always)]
pub fn wanted(pol: &AgentPolicy, r: u8, cls: usize) -> u8 {
    if hard_rule(r) {
        return pol.guardrail_action;
    }
    if pol.enforce == 0 {
        return action::ALERT;
    }
    if rate_class(r).is_some() {
        return pol.rate_action;
    }
    if r == rule::UNJUDGED {
        return action::DENY;
    }
    if cls >= class::COUNT {
        return action::ALERT;
    }
    // No load at a variable index: an older verifier (6.1) loses the
    // bound of a checked index the compiler spilled to the stack and
    // reloaded, and the compiler turns even a match on constant indexes
    // into such a load. The actions packed in a word, shifted, are only
    // arithmetic.
    let mut packed = 0u64;
    for (i, a) in pol.actions.iter().enumerate() {
        packed |= u64::from(*a) << (8 * i);
    }
    (packed >> (8 * cls)) as u8
}

// The actions fit in one word (`wanted`).
const _: () = assert!(class::COUNT <= 8);

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
    /// The profile allows raw and packet sockets (`rawSockets: true`):
    /// making one is not an escape (the launch sandbox lets it through too).
    pub const RAW_SOCKETS: u8 = 8;
    // 16, 32, 64: once the sandbox bits, now per process (`watch`).
    /// The profile allows io_uring (`ioUring: true`): its calls are not
    /// escapes (the launch sandbox lets them through too).
    pub const IO_URING: u8 = 128;
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

/// A file violation of the profile's rules (not a guardrail) left to the
/// call's exit (DEFERRED map value, by thread): a call that failed changed
/// nothing, and an open creates only when it makes a regular file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deferred {
    /// The path automaton's payload for the path.
    pub payload: u64,
    /// The accesses asked for (`access` bits).
    pub access: u32,
    pub class: u8,
    pub rule: u8,
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
    /// Initial state of the second automaton (the guardrails'), in the
    /// same tables; 0 when there is none.
    pub start2: u32,
    pub _pad2: u32,
    /// Per-minute budget per class; 0 means none.
    pub budgets: [u64; class::COUNT],
}

/// Bits of `WatchEntry::flags`.
pub mod watch {
    /// The process read a secret (its children forked since inherit it).
    pub const TAINTED: u32 = 1;
    /// The process shares its file table with another process
    /// (`clone(CLONE_FILES)` without `CLONE_THREAD`): a descriptor a
    /// killed call left open is the other's too, so a deny that kills
    /// ends the agent's whole tree.
    pub const SHARES_FILES: u32 = 2;
    /// The process runs in agentwatch's launch sandbox (seccomp filter,
    /// Landlock), as do the children it forks: an escape refused with
    /// EPERM at its exit is the filter's refusal, reported then (its entry
    /// never ran). Per process: a daemon agent may have processes that
    /// `agentwatch exec` started and others its selectors found.
    pub const SANDBOXED: u32 = 8;
    /// The sandbox's Landlock rules hold the class's file calls (its
    /// action refuses, and the profile's tree was granted): a violation
    /// that failed with EACCES was Landlock's refusal.
    pub const LANDLOCK_FILE: u32 = 16;
    pub const LANDLOCK_DELETE: u32 = 32;
    pub const LANDLOCK_EXEC: u32 = 64;
    /// The process runs in the launch sandbox's mount namespace where the
    /// guardrails inside its tree are read-only bind mounts
    /// (`sandbox::shield`): a file call that failed with EROFS, EXDEV or
    /// EBUSY may be the shield's refusal, reported from its exit and
    /// judged by its real paths in userspace.
    pub const SHIELDED: u32 = 128;

    /// The Landlock flag of a class; 0 for a class Landlock cannot hold.
    #[inline(always)]
    pub const fn landlock_of(cls: usize) -> u32 {
        match cls {
            super::class::FILE => LANDLOCK_FILE,
            super::class::DELETE => LANDLOCK_DELETE,
            super::class::EXEC => LANDLOCK_EXEC,
            _ => 0,
        }
    }
}

/// Bits of an exec record's `args[4]`.
pub mod exec_flags {
    /// The binary is an inode a process of this agent wrote.
    pub const WRITTEN: u64 = 1;
    /// The binary has no name left (a memfd, a deleted file).
    pub const NO_LINK: u64 = 2;
    /// A script: the kernel ran an interpreter for the file named.
    pub const SCRIPT: u64 = 4;
    /// The process joined the agent at this exec, by a selector (not by
    /// forking from one of its processes): the agent (re)started.
    pub const SELECTED: u64 = 8;
}

/// Bits of an allow-trie value (NET_PORT, NET_ANY_PORT).
pub mod endpoint {
    pub const ALLOWED: u32 = 1;
    /// The agent's model API: refused to a tainted process.
    pub const MODEL: u32 = 2;
}

/// Key of the DNS_ALLOW map: a name an agent may resolve (`suffix` 0), or
/// a suffix whose names it may (`*.example.com`: `suffix` 1, the hash of
/// `example.com`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsKey {
    pub agent: u32,
    pub suffix: u32,
    pub hash: u64,
}

/// The hash DNS names are compared by, on both sides: FNV-1a over the
/// lower-cased dotted name, fed from its last byte to its first, so the
/// hash of every suffix is met on the way (the kernel checks `*.suffix`
/// rules at each dot).
pub mod dns_hash {
    pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    pub const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// One more byte (from the right).
    #[inline(always)]
    pub const fn step(h: u64, b: u8) -> u64 {
        (h ^ b.to_ascii_lowercase() as u64).wrapping_mul(PRIME)
    }

    /// The hash of a whole dotted name (no trailing dot).
    pub fn of(name: &[u8]) -> u64 {
        let mut h = OFFSET;
        let mut i = name.len();
        while i > 0 {
            i -= 1;
            h = step(h, name[i]);
        }
        h
    }
}

/// Which bytes of a word the kernel's name cache compares.
pub mod name_words;

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

/// A bind to port 0 on a loopback address (`addr` IPv6 or IPv4-mapped):
/// a client's setup or a capability probe (urllib3 binds `[::1]:0` to
/// learn whether IPv6 works), never a server anyone else can reach.
/// Within every profile; both sides judge it with this function.
#[inline(always)]
pub fn ephemeral_loopback_bind(dir: u8, port: u16, addr: &[u8; 16]) -> bool {
    if dir != DIR_BIND || port != 0 {
        return false;
    }
    let mut v6_loopback = addr[15] == 1;
    let mut v4_mapped = addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127;
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            v6_loopback = false;
            v4_mapped = false;
        }
        i += 1;
    }
    while i < 15 {
        if addr[i] != 0 {
            v6_loopback = false;
        }
        i += 1;
    }
    v6_loopback || v4_mapped
}

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

const _: () = assert!(core::mem::size_of::<AgentPolicy>() == 80);
const _: () = assert!(core::mem::size_of::<AgentState>() == 64);
const _: () = assert!(core::mem::size_of::<NetKey>() == 28);
const _: () = assert!(core::mem::size_of::<PendingDeny>() == 4);
const _: () = assert!(core::mem::size_of::<Deferred>() == 16);
const _: () = assert!(core::mem::size_of::<DnsKey>() == 16);
const _: () = assert!(core::mem::size_of::<OpenedKey>() == 24);
const _: () = assert!(core::mem::size_of::<OpenedStamp>() == 40);

#[cfg(test)]
mod tests;

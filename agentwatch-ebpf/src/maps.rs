//! Maps shared with userspace. Names are the contract with
//! `agentwatch::sensors::loader`.
use agentwatch_common::{
    loss,
    policy::{
        epoch, AgentPolicy, AgentState, Deferred, DnsKey, OpenedKey, OpenedStamp, PendingDeny,
        CLASS_TABLE, MAX_AGENTS, NET_KEY_DATA,
    },
    watch_gate, InodeKey, RawEvent, WatchEntry,
};
use aya_ebpf::{
    bindings::{bpf_map_type, BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE},
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_task_btf, bpf_task_storage_get},
    },
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};

use crate::enforce::Walk;

/// Records for userspace. Resized by the loader (`--ring-buffer-mb`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// One event under construction per CPU (tracing programs do not nest on a
/// CPU, so one slot suffices).
#[map]
pub static SCRATCH: PerCpuArray<RawEvent> = PerCpuArray::with_max_entries(1, 0);

/// Watched processes: tgid -> agent. Looked up only when WATCH_GATE has
/// the process's bit (`watched`).
#[map]
pub static WATCHED: HashMap<u32, WatchEntry> = HashMap::with_max_entries(65536, 0);

/// `agentwatch_common::watch_gate`: a bit per tgid, set before its
/// process goes into WATCHED. Mappable, so userspace sets bits with atomic
/// operations on the same words the kernel sets others in.
#[map]
pub static WATCH_GATE: Array<u64> = Array::with_max_entries(watch_gate::WORDS, BPF_F_MMAPABLE);

/// Whether `tgid` may be watched: its WATCH_GATE bit. Clear: it is not
/// (no WATCHED lookup needed).
#[inline(always)]
pub fn gate_open(tgid: u32) -> bool {
    WATCH_GATE
        .get(watch_gate::word(tgid))
        .is_some_and(|w| w & watch_gate::bit(tgid) != 0)
}

/// Sets `tgid`'s WATCH_GATE bit (before its WATCHED entry goes in).
#[inline(always)]
pub fn gate_set(tgid: u32) {
    if let Some(p) = WATCH_GATE.get_ptr_mut(watch_gate::word(tgid)) {
        // SAFETY: a valid, aligned map value; the or is atomic.
        unsafe { crate::shim::aw_atomic_or(p, watch_gate::bit(tgid)) };
    }
}

/// Clears `tgid`'s WATCH_GATE bit: its process has exited.
#[inline(always)]
pub fn gate_clear(tgid: u32) {
    if let Some(p) = WATCH_GATE.get_ptr_mut(watch_gate::word(tgid)) {
        // SAFETY: a valid, aligned map value; the and is atomic.
        unsafe { crate::shim::aw_atomic_and(p, !watch_gate::bit(tgid)) };
    }
}

/// The watch entry of process `tgid`, if it is watched.
#[inline(always)]
pub fn watched(tgid: u32) -> Option<WatchEntry> {
    if !gate_open(tgid) {
        return None;
    }
    // SAFETY: a map value, copied out.
    unsafe { WATCHED.get(&tgid) }.copied()
}

/// Whether the current process's gate is open (`gate_open`).
#[inline(always)]
fn current_gate_open() -> bool {
    gate_open((bpf_get_current_pid_tgid() >> 32) as u32)
}

/// Selectors consulted at exec for processes not yet watched.
#[map]
pub static CGROUP_SELECTORS: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);
#[map]
pub static UID_SELECTORS: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);
#[map]
pub static EXE_SELECTORS: HashMap<InodeKey, u32> = HashMap::with_max_entries(1024, 0);

/// Sockets a watched process connected to port 53: (tgid << 32 | fd).
#[map]
pub static DNS_SOCKETS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// Receives on DNS sockets, by thread id, from the entry to the exit,
/// where the answer and its sender are copied: the buffer, where the
/// sender's address is written (0: not asked for), the fd.
#[map]
pub static DNS_RECV: LruHashMap<u32, [u64; 3]> = LruHashMap::with_max_entries(4096, 0);

/// User path pointers whose read failed at syscall entry (page not yet
/// faulted in), keyed by thread id: re-read at exit, after the kernel's own
/// copy brought the page in. Value: [PATH1 pointer, PATH2 pointer].
#[map]
pub static RETRY_PATHS: LruHashMap<u32, [u64; 2]> = LruHashMap::with_max_entries(8192, 0);

/// Files processes of an agent opened for writing (device, inode) -> agent
/// id + 1: an exec of one is running what the agent wrote. LRU: a file
/// written long ago by a busy agent may be forgotten (and then judged by
/// its path alone).
#[map]
pub static WRITTEN: LruHashMap<InodeKey, u32> = LruHashMap::with_max_entries(65536, 0);

/// Per-CPU loss counters, indexed by `agentwatch_common::loss`.
#[map]
pub static LOSS: PerCpuArray<u64> = PerCpuArray::with_max_entries(loss::COUNT, 0);

/// Settings written by userspace before attaching (`agentwatch_common::config`).
#[map]
pub static CONFIG: Array<u64> = Array::with_max_entries(agentwatch_common::config::COUNT, 0);

// --- Enforcement (see `crate::enforce` and `agentwatch_common::policy`). ---

/// Per-agent policy, written by userspace.
#[map]
pub static AGENT_POLICY: Array<AgentPolicy> = Array::with_max_entries(MAX_AGENTS, 0);

/// Per-agent rate windows and the last secret read, kept by the kernel.
#[map]
pub static AGENT_STATE: Array<AgentState> = Array::with_max_entries(MAX_AGENTS, 0);

/// Non-zero while an agent is paused: its processes stop at their next
/// watched call. Set by the kernel (a pause) and by userspace (pause/resume).
#[map]
pub static AGENT_PAUSED: Array<u32> = Array::with_max_entries(MAX_AGENTS, 0);

/// Byte -> class, 256 entries per agent and automaton half.
#[map]
pub static DFA_CLASS: Array<u8> = Array::with_max_entries(MAX_AGENTS * 2 * CLASS_TABLE, 0);

/// Path automaton transitions; sized by the loader.
#[map]
pub static DFA_TRANS: Array<u32> = Array::with_max_entries(1, 0);

/// Path automaton payload per state (`policy::accept`); sized by the loader.
#[map]
pub static DFA_ACCEPT: Array<u64> = Array::with_max_entries(1, 0);

/// Allowed endpoints with a port, and with any port (`policy::NetKey`).
#[map]
pub static NET_PORT: LpmTrie<[u8; NET_KEY_DATA], u32> = LpmTrie::with_max_entries(16384, 0);
#[map]
pub static NET_ANY_PORT: LpmTrie<[u8; NET_KEY_DATA], u32> = LpmTrie::with_max_entries(16384, 0);

/// Counters per agent and class, laid out by `policy::decided`: allowed in
/// the kernel (no record sent), and violations the kernel acted on.
#[map]
pub static DECIDED: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(agentwatch_common::policy::decided::ENTRIES, 0);

/// What a watched thread's syscall entry leaves its exit: the call
/// (`Pending::call`) and the process's watch entry, so the exit of a
/// watched call needs no WATCHED lookup and a thread with nothing pending
/// is known unwatched. Task-local storage, not a hash map by thread id:
/// the current task's slot is a pointer away, where a hash lookup at both
/// ends of every call cost more than judging an allowed open, and a dead
/// thread's slot goes with it. Only a BTF-described map can be task
/// storage, hence the hand-written definition.
#[btf_map]
pub static PENDING_EXIT: TaskStorage = TaskStorage::new();

/// A value of PENDING_EXIT.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    /// The syscall number in the low bits, with flags its entry chose
    /// (`probes::syscall`); 0: nothing pending.
    pub call: u64,
    /// The process's watch entry when the call entered.
    pub watch: WatchEntry,
    /// The last file this thread opened that CLEAN_OPENS holds clean: a
    /// thread opening the same file again compares it here instead of
    /// hashing the key. Zero (no dentry) until the first.
    pub last_open: LastOpen,
}

/// A CLEAN_OPENS entry, copied into the thread's PENDING_EXIT slot. Valid
/// under the same stamp (epochs, dentry identity) as the shared one.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LastOpen {
    pub key: OpenedKey,
    pub stamp: OpenedStamp,
}

const _: () = assert!(core::mem::size_of::<Pending>() == 80);

/// A BTF map definition of a task-local `Pending`, laid out as the loader
/// reads one (aya-ebpf has none for task storage): each field's pointee
/// type carries a value (`[i32; N]` is N).
#[repr(C)]
pub struct TaskStorage {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const Pending,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: placeholders the loader reads from BTF; never dereferenced.
unsafe impl Sync for TaskStorage {}

impl TaskStorage {
    const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The current task's slot; made (zeroed) when `create`, else null
    /// when it has none.
    #[inline(always)]
    fn current(&self, create: bool) -> *mut Pending {
        let flags = if create {
            BPF_LOCAL_STORAGE_GET_F_CREATE as u64
        } else {
            0
        };
        unsafe {
            bpf_task_storage_get(
                core::ptr::from_ref(self).cast_mut().cast(),
                bpf_get_current_task_btf().cast(),
                core::ptr::null_mut(),
                flags,
            )
        }
        .cast()
    }
}

/// The current thread's pending call, for an LSM hook between the call's
/// entry and its exit: the slot (to change the call word), the call word
/// and the watch entry. None for a thread with nothing pending.
#[inline(always)]
pub fn pending_now() -> Option<(*mut Pending, u64, WatchEntry)> {
    if !current_gate_open() {
        return None;
    }
    pending_peek()
}

/// The current thread's slot and what its entry left there, left in place;
/// None when nothing is pending.
#[inline(always)]
fn pending_peek() -> Option<(*mut Pending, u64, WatchEntry)> {
    let p = PENDING_EXIT.current(false);
    if p.is_null() {
        return None;
    }
    // SAFETY: the current task's own slot; only this thread writes it.
    let (call, watch) = unsafe { ((*p).call, (*p).watch) };
    (call != 0).then_some((p, call, watch))
}

/// Leaves `call` (non-zero) and the process's watch entry `w` to the
/// current thread's exit.
#[inline(always)]
pub fn pending_set(call: u64, w: &WatchEntry) {
    let p = PENDING_EXIT.current(true);
    if !p.is_null() {
        // SAFETY: the current task's own slot; only this thread writes it.
        unsafe {
            (*p).call = call;
            (*p).watch = *w;
        }
    }
}

/// What `pending_take` took: the call and watch entry its entry left, and
/// the thread's slot (for its `LastOpen`).
pub struct Taken {
    pub call: u64,
    pub watch: WatchEntry,
    slot: *mut Pending,
}

impl Taken {
    /// Whether the thread's last clean open was `key` under `stamp`.
    #[inline(always)]
    pub fn last_open_is(&self, key: &OpenedKey, stamp: &OpenedStamp) -> bool {
        // SAFETY: the current task's own slot (non-null: `pending_take`).
        let last = unsafe { &(*self.slot).last_open };
        last.key == *key && last.stamp == *stamp
    }

    /// Leaves the call in the thread's slot again, for a program the exit
    /// tail-calls to take (`pending_take`).
    #[inline(always)]
    pub fn leave(&self) {
        // SAFETY: as above.
        unsafe { (*self.slot).call = self.call };
    }

    /// Remembers `key` as the thread's last clean open.
    #[inline(always)]
    pub fn set_last_open(&self, key: &OpenedKey, stamp: &OpenedStamp) {
        // SAFETY: as above; only this thread writes its slot.
        unsafe {
            (*self.slot).last_open = LastOpen {
                key: *key,
                stamp: *stamp,
            }
        };
    }
}

/// Takes what the current thread's entry left, whatever it is (a stale
/// one must not pass for a later call's).
#[inline(always)]
pub fn pending_take() -> Option<Taken> {
    // A process whose gate is closed left nothing: no slot lookup.
    if !current_gate_open() {
        return None;
    }
    pending_take_passed()
}

/// `pending_take` for a program that runs only after its caller passed the
/// gate (one `sys_exit` tail-calls): no second gate test.
#[inline(always)]
pub fn pending_take_passed() -> Option<Taken> {
    let (p, call, watch) = pending_peek()?;
    // SAFETY: the current task's own slot (non-null: `pending_peek`).
    unsafe { (*p).call = 0 };
    Some(Taken {
        call,
        watch,
        slot: p,
    })
}

/// The watch entry of the call `sys_exit` just took: for the programs it
/// tail-calls, which run in the same exit, so the slot cannot have moved on.
#[inline(always)]
pub fn pending_watch() -> Option<WatchEntry> {
    let p = PENDING_EXIT.current(false);
    // SAFETY: the current task's own slot; only this thread writes it.
    (!p.is_null()).then(|| unsafe { (*p).watch })
}

/// Takes what the current thread's entry left only when its call is
/// `call`; `tgid` is the current process's (its caller has it already).
#[inline(always)]
pub fn pending_take_if(tgid: u32, call: u64) -> bool {
    if !gate_open(tgid) {
        return false;
    }
    let p = PENDING_EXIT.current(false);
    // SAFETY: the current task's own slot; only this thread writes it.
    if p.is_null() || call == 0 || unsafe { (*p).call } != call {
        return false;
    }
    unsafe { (*p).call = 0 };
    true
}

/// Programs `sys_exit` tail-calls (their own verifier budget): slot
/// `JUMP_LANDLOCK` is `landlock_exit`, `JUMP_LANDLOCK_KILL`
/// `landlock_kill`, `JUMP_OPENED` `opened_exit`. Filled by the loader.
#[map]
pub static JUMPS: ProgramArray = ProgramArray::with_max_entries(3, 0);
pub const JUMP_LANDLOCK: u32 = 0;
pub const JUMP_LANDLOCK_KILL: u32 = 1;
pub const JUMP_OPENED: u32 = 2;

/// Threads whose syscall entry was sent urgently (a violation, a held
/// call): userspace pairs the entry with its exit before it alerts, so the
/// exit wakes the reader too instead of waiting for its poll timer.
#[map]
pub static WAKE_EXIT: LruHashMap<u32, u8> = LruHashMap::with_max_entries(4096, 0);

/// Set to 1 by the ring reader just before it sleeps in poll; cleared by
/// the first program that wakes it. Waking costs the traced process an
/// interrupt (a trap to the hypervisor on a VM), so urgent records wake
/// the reader only when it sleeps: a busy reader finds them on its own.
#[map]
pub static READER_ASLEEP: Array<u32> = Array::with_max_entries(1, 0);

/// Names each agent may resolve (`policy::DnsKey`), judged by the
/// egress hook on every DNS query an agent's socket sends.
#[map]
pub static DNS_ALLOW: HashMap<DnsKey, u8> = HashMap::with_max_entries(16384, 0);

/// The DNS egress hook's scratch: the question's name being judged.
#[map]
pub static DNS_SCAN: PerCpuArray<crate::probes::dns_egress::DnsScan> =
    PerCpuArray::with_max_entries(1, 0);

/// Sockets of agents that connected or sent to port 53: socket cookie ->
/// agent id. Tagged by the connect and sendmsg hooks, read by the egress
/// hook (which cannot tell a process from a packet).
#[map]
pub static DNS_COOKIES: LruHashMap<u64, u32> = LruHashMap::with_max_entries(8192, 0);

/// File violations of the profile's rules judged again at the call's exit
/// (`policy::Deferred`), by thread id.
#[map]
pub static DEFERRED: LruHashMap<u32, Deferred> = LruHashMap::with_max_entries(16384, 0);

/// Calls the kernel decided to deny while the BPF LSM tier is attached:
/// tid -> the violation. Set at syscall entry (files) or by
/// bprm_check_security (execs); every LSM hook of the call refuses while it
/// is set; cleared at the call's exit (or the thread's).
#[map]
pub static DENY_NOW: LruHashMap<u32, PendingDeny> = LruHashMap::with_max_entries(16384, 0);

/// Opens whose real path reached no guardrail, so that reopening the same
/// file skips the dentry walk and the judgement at exit. An entry counts
/// only while its stamp matches (see `OpenedStamp` and EPOCHS).
#[map]
pub static CLEAN_OPENS: LruHashMap<OpenedKey, OpenedStamp> = LruHashMap::with_max_entries(16384, 0);

/// `policy::epoch` counters: renames and mount changes (kernel), policy
/// writes (userspace).
#[map]
pub static EPOCHS: Array<u64> = Array::with_max_entries(epoch::COUNT, 0);

#[inline(always)]
pub fn epoch_value(slot: u32) -> u64 {
    EPOCHS.get(slot).copied().unwrap_or(0)
}

/// Bumps `slot` of EPOCHS atomically (any CPU may bump it).
#[inline(always)]
pub fn bump_epoch(slot: u32) {
    if let Some(p) = EPOCHS.get_ptr_mut(slot) {
        // SAFETY: a valid, aligned map value; the add is atomic.
        unsafe { crate::shim::aw_atomic_inc(p) };
    }
}

/// Path resolver state, one per CPU (too big for the BPF stack).
#[map]
pub static WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

/// Recent absolute names and their automaton payloads, per CPU
/// (`enforce::names`).
#[map]
pub static NAME_VERDICTS: PerCpuArray<crate::enforce::NameVerdict> =
    PerCpuArray::with_max_entries(crate::enforce::NAME_WAYS, 0);

#[inline(always)]
pub fn count(map_index: u32) {
    if let Some(p) = DECIDED.get_ptr_mut(map_index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn count_loss(index: u32) {
    if let Some(p) = LOSS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn config(index: u32) -> u64 {
    CONFIG.get(index).copied().unwrap_or(0)
}

// --- Intent capture (`crate::probes::tls`). ---

/// Per-agent intent capture: 0 off, else the level userspace keeps
/// (`agentwatch_common::tls` does not care which: the kernel only sends).
#[map]
pub static INTENT: Array<u32> = Array::with_max_entries(MAX_AGENTS, 0);

/// SSL_read calls in flight, by thread: the `SSL *`, the buffer, and
/// where SSL_read_ex writes the count (0 for SSL_read).
#[map]
pub static TLS_READS: LruHashMap<u64, [u64; 3]> = LruHashMap::with_max_entries(8192, 0);

/// Connections userspace found are not to a model endpoint: (tgid, SSL *).
/// Their plain text is not sent again.
#[map]
pub static TLS_IGNORED: LruHashMap<[u64; 2], u8> = LruHashMap::with_max_entries(16384, 0);

//! Records and map values shared by the kernel programs (`agentwatch-ebpf`)
//! and the userspace daemon (`agentwatch`).
//!
//! Every type here is `#[repr(C)]` and fixed-size; the size assertions at the
//! bottom fail the build of either side if a layout drifts.
#![no_std]

pub mod calls;
pub mod escape;
pub mod names;
pub mod open;
pub mod policy;
pub mod syscalls;

/// Size of one string slot in a [`RawEvent`]. A user string (path, argv) or
/// a kernel path walk longer than this is cut and flagged truncated.
pub const SLOT_LEN: usize = 2048;
/// Number of string slots in a [`RawEvent`].
pub const SLOTS: usize = 4;
/// Longest single path component the kernel path walk copies (NAME_MAX + 1).
pub const NAME_LEN: usize = 256;
/// Bytes of string data in a [`RawEvent`]. The tail past the last slot is
/// headroom so a path walk's bounded copy never leaves the buffer.
pub const DATA_LEN: usize = SLOT_LEN * SLOTS + NAME_LEN;
/// Bytes of socket address carried in an event (sizeof(struct sockaddr_un)).
pub const SOCKADDR_LEN: usize = 112;
/// Bytes of a DNS message copied from a send to port 53.
pub const DNS_PAYLOAD_LEN: usize = 512;
/// Bytes of a DNS answer copied from a receive (the EDNS size most
/// resolvers advertise).
pub const DNS_ANSWER_LEN: usize = 1232;

/// What a kernel record describes. The kernel fills `RawEvent::kind`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A successful execve/execveat (sched_process_exec).
    Exec = 1,
    /// A new process (not thread) was forked by a watched one.
    Fork = 2,
    /// The last thread of a watched process exited.
    Exit = 3,
    /// Entry of a watched file or network syscall; the result follows in a
    /// [`RecordKind::SysExit`] record from the same thread.
    SysEnter = 4,
    /// Return of a watched syscall whose entry was recorded.
    SysExit = 5,
    /// A DNS query sent by a watched process (payload in slot 0).
    Dns = 6,
    /// A signal, ptrace or bpf() call against agentwatch (entry only;
    /// `args` are the call's arguments).
    Tamper = 7,
    /// An open judged at its exit by the file it reached, by its real path
    /// (allowed at its entry, or left to userspace), which turned out to be
    /// a guardrail (reached through a symlink or `/proc/*/cwd`) or is to be
    /// recorded: `args[0]` the fd, `args[1]` the open flags, `args[2]`
    /// `open::OPENED_LATE` or 0; BASE1 the real path.
    Opened = 8,
    /// A datagram a watched process sent to an address it named
    /// (`sendto`, `sendmsg`, `sendmmsg` on an unconnected socket; not to
    /// port 53, which is DNS's): `addr` the destination. Judged as a
    /// connect there; the cgroup sendmsg hooks refuse what it refuses.
    Datagram = 9,
    /// Plain text a watched process of an agent with intent capture wrote
    /// to or read from a TLS connection (OpenSSL's SSL_write/SSL_read):
    /// `args[0]` the `SSL *`, `args[1]` the direction (`tls::WRITE`,
    /// `tls::READ`), `args[2]` the call's length, `args[3]` the offset of
    /// the bytes carried; the bytes fill the slots in order (each slot
    /// `SLOT_BYTES`, `tls::CHUNK` bytes but the last).
    Tls = 10,
    /// A file call its syscall entry allowed by the names it gave, whose
    /// target the BPF LSM tier judged again at the call's LSM hook, by the
    /// kernel's own dentries, and found to be a guardrail: a symlinked
    /// directory on the way, or names another thread rewrote between the
    /// entry's copy and the kernel's. Laid out as the call's `SysEnter` with
    /// the real paths walked into BASE1 (and BASE2 for the second name of
    /// a rename or link), PATH slots empty, `args` the call's arguments (read
    /// again from its saved registers); its `SysExit` follows.
    Reached = 11,
}

/// Constants of [`RecordKind::Tls`] records.
pub mod tls {
    pub const WRITE: u64 = 0;
    pub const READ: u64 = 1;
    /// Bytes per slot of a TLS record.
    pub const CHUNK: usize = super::SLOT_LEN - 1;
    /// `INTENT` values: nothing sent, plain text sent, plain text sent and
    /// a tainted process's writes held until userspace read them.
    pub const LEVEL_OFF: u32 = 0;
    pub const LEVEL_METADATA: u32 = 1;
    pub const LEVEL_CONTENT: u32 = 2;
    /// Bytes one TLS record carries at most; a longer write sends its
    /// first and its last `MAX_BYTES` (a request's model is at its start,
    /// its newest message at its end).
    pub const MAX_BYTES: usize = CHUNK * super::SLOTS;
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Fork,
            3 => Self::Exit,
            4 => Self::SysEnter,
            5 => Self::SysExit,
            6 => Self::Dns,
            7 => Self::Tamper,
            8 => Self::Opened,
            9 => Self::Datagram,
            10 => Self::Tls,
            11 => Self::Reached,
            _ => return None,
        })
    }
}

/// A ring record of this length carries nothing. The kernel sends one only
/// to wake a reader that said it is going to sleep (`READER_ASLEEP`), right
/// after an urgent record; every real record is at least
/// [`RAW_EVENT_FIXED_LEN`] long, so the reader tells them apart by length.
pub const WAKE_RECORD_LEN: usize = 8;

/// Flag bits in [`StrSlot::flags`].
pub const SLOT_USED: u16 = 1;
/// The string did not fit in its slot and was cut.
pub const SLOT_TRUNCATED: u16 = 2;
/// The slot holds path components leaf-first, each NUL-terminated (a kernel
/// dentry walk); userspace reverses them into an absolute path.
pub const SLOT_REVERSED_COMPONENTS: u16 = 4;
/// The slot holds argv: NUL-separated arguments.
pub const SLOT_ARGV: u16 = 8;
/// The slot holds raw bytes (a DNS message or a socket address).
pub const SLOT_BYTES: u16 = 16;

/// Roles of the four string slots. Which ones are filled depends on the record.
pub mod slot {
    /// First path argument as the process passed it; exec: the filename.
    pub const PATH1: usize = 0;
    /// Second path argument (rename target); exec: argv.
    pub const PATH2: usize = 1;
    /// Directory PATH1 is relative to (dirfd or cwd), when PATH1 is relative;
    /// exec: the binary actually loaded (interpreter for scripts).
    pub const BASE1: usize = 2;
    /// Directory PATH2 is relative to, when PATH2 is relative.
    pub const BASE2: usize = 3;
}

/// Where a string lives inside `RawEvent::data`: slot `i` starts at
/// `i * SLOT_LEN`; `len` excludes any trailing NUL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StrSlot {
    pub len: u16,
    pub flags: u16,
}

/// Fixed header of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// Monotonic time (bpf_ktime_get_ns).
    pub ts_ns: u64,
    /// bpf_get_current_cgroup_id(): the cgroup-v2 id (inode of its directory).
    pub cgroup_id: u64,
    /// Process id (tgid) of the task that caused the record.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent process id (real_parent's tgid).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Agent the process belongs to (index into the userspace agent table).
    pub agent_id: u32,
    pub comm: [u8; 16],
    /// [`RecordKind`] as u8.
    pub kind: u8,
    /// What the kernel decided ([`policy::verdict`]); 0 when no policy is loaded.
    pub verdict: u8,
    /// Which rule decided it ([`policy::rule`]).
    pub rule: u8,
    /// What the kernel did about it ([`policy::action`]).
    pub action: u8,
    /// Syscall number for SysEnter/SysExit (x86-64 numbering).
    pub syscall_nr: u32,
}

/// Per-kind numbers. Meaning by kind:
/// - SysEnter: the syscall's six raw arguments.
/// - SysExit: `args[0]` = return value (as i64).
/// - Exec: `args[0]` = old pid (before a de_thread), `args[1]`/`args[2]` = dev/ino of the binary.
/// - Fork: `args[0]` = child pid, `args[1]` = child tid.
/// - Exit: `args[0]` = exit code (wait status encoding).
pub type Args = [u64; 6];

/// A socket address carried with network records.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockAddr {
    /// Bytes valid in `bytes` (0 when absent).
    pub len: u32,
    pub _pad: u32,
    /// A `struct sockaddr_*` exactly as the kernel or process had it.
    pub bytes: [u8; SOCKADDR_LEN],
}

/// One record in the ring buffer. The kernel sends only the prefix that is
/// used: the fixed part plus the string data up to the last filled slot.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawEvent {
    pub hdr: EventHeader,
    pub args: Args,
    /// The socket address of connect/bind/sendto (user memory at entry), or
    /// of accept's peer / listen's local address read from the kernel socket.
    pub addr: SockAddr,
    pub slots: [StrSlot; SLOTS],
    pub data: [u8; DATA_LEN],
}

/// Bytes of a [`RawEvent`] before `data`.
pub const RAW_EVENT_FIXED_LEN: usize = core::mem::size_of::<RawEvent>() - DATA_LEN;

/// Value of the WATCHED map (key: tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchEntry {
    pub agent_id: u32,
    pub flags: u32,
}

/// The WATCH_GATE bitmap: one bit per tgid, set for every process in
/// WATCHED. Every program checks it before WATCHED: an array lookup the
/// verifier inlines, where a hash lookup is a helper call, and that call
/// was most of what an unwatched process's syscall paid. A bit is set
/// before its process's entry goes into WATCHED and cleared (by the kernel)
/// only when the process exits: a set bit without an entry costs one
/// lookup; a clear bit with an entry would hide a watched process.
pub mod watch_gate {
    /// Words of the bitmap: a bit for every pid the kernel can hand out
    /// (PID_MAX_LIMIT, 2^22 on 64-bit). 512 KiB.
    pub const WORDS: u32 = (1 << 22) / 64;

    /// The word holding `tgid`'s bit (masked: always inside the array).
    #[inline(always)]
    pub const fn word(tgid: u32) -> u32 {
        (tgid >> 6) & (WORDS - 1)
    }

    /// `tgid`'s bit in its word.
    #[inline(always)]
    pub const fn bit(tgid: u32) -> u64 {
        1 << (tgid & 63)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_pid_has_its_own_bit() {
            let max = 1u32 << 22;
            for t in [0, 1, 63, 64, 65, 4095, 32768, max - 1] {
                assert!(word(t) < WORDS);
                for u in [t.wrapping_sub(1), t + 1, t ^ 64] {
                    if u < max && u != t {
                        assert!(word(u) != word(t) || bit(u) != bit(t), "{t} {u}");
                    }
                }
            }
            assert_eq!((word(max - 1), bit(max - 1)), (WORDS - 1, 1 << 63));
        }
    }
}

/// Key of the EXE_SELECTORS map: the binary's device (kernel encoding,
/// MAJOR << 20 | MINOR) and inode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

/// Indexes of the per-CPU LOSS counters the kernel keeps.
pub mod loss {
    /// bpf_ringbuf_output failed (ring buffer full).
    pub const RINGBUF_FULL: u32 = 0;
    /// The WATCHED map was full when a fork tried to add a child.
    pub const WATCH_MAP_FULL: u32 = 1;
    /// A kernel read of user or kernel memory failed.
    pub const READ_FAILED: u32 = 2;
    /// A violation record could not be sent (ring buffer full). The kernel
    /// acted on it anyway; userspace learns of it only as this count.
    pub const VIOLATION_UNSENT: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Keys of the CONFIG array map, written by userspace before attach.
pub mod config {
    /// Non-zero when any selector map (cgroup, uid, exe) has entries, so the
    /// exec hook only consults them when they can match.
    pub const SELECTORS_ACTIVE: u32 = 0;
    /// The tgid of the agentwatch process itself, never watched.
    pub const SELF_TGID: u32 = 1;
    /// agentwatch's process group: kill(0 or -pgid) from an agent reaches it.
    pub const SELF_PGID: u32 = 2;
    pub const COUNT: u32 = 4;
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 64);
const _: () = assert!(core::mem::size_of::<SockAddr>() == 120);
const _: () = assert!(core::mem::size_of::<RawEvent>() == 64 + 48 + 120 + 16 + DATA_LEN);
const _: () = assert!(SLOT_LEN.is_power_of_two());
const _: () = assert!(WAKE_RECORD_LEN < RAW_EVENT_FIXED_LEN);
const _: () = assert!(DNS_PAYLOAD_LEN <= SLOT_LEN);
const _: () = assert!(DNS_ANSWER_LEN < SLOT_LEN);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, repr(C), no padding-dependent invariants.
    unsafe impl aya::Pod for super::WatchEntry {}
    unsafe impl aya::Pod for super::InodeKey {}
    unsafe impl aya::Pod for super::policy::AgentPolicy {}
    unsafe impl aya::Pod for super::policy::NetKey {}
    unsafe impl aya::Pod for super::policy::AgentState {}
    unsafe impl aya::Pod for super::policy::DnsKey {}
}

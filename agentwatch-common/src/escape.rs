//! The calls that leave the sandbox agentwatch puts an agent in, or reach
//! past what it watches: one list, read by the seccomp filter every
//! launched agent gets (refused with EPERM before the call runs), by the
//! kernel's tamper probe (a violation at entry for every watched agent,
//! and at exit when the filter refused one), by the loader (which
//! tracepoints) and by the README's table.
use crate::{policy::rule, syscalls as nr};

/// Namespace flags an `unshare`/`clone` may not ask for: a private mount
/// namespace (bind-mounting a guarded file elsewhere) and a user namespace
/// (every capability inside it).
pub const NS_FLAGS: u64 = CLONE_NEWNS | CLONE_NEWUSER;
pub const CLONE_NEWNS: u64 = 0x0002_0000;
pub const CLONE_NEWUSER: u64 = 0x1000_0000;

/// `args[5]` of a tamper record sent from the exit of an escape the
/// sandbox refused (its arguments are not known there).
pub const REFUSED: u64 = 0x5ecc_0a1d;

/// `args[5]` of a tamper record of an ia32 call (`int 0x80`) by an agent,
/// which no syscall tracepoint sees: seen by the raw `sys_enter` hook
/// (`IA32`), or found at the exit of a thread the sandbox's seccomp filter
/// killed in it (`IA32_REFUSED`; the filter admits x86-64 calls only).
/// `args[4]` is the call's ia32 number.
pub const IA32: u64 = 0x1a32_0a1d;
pub const IA32_REFUSED: u64 = 0x1a32_5ecc;
/// The header's `syscall_nr` of an ia32 call's record: an ia32 number
/// names another call in the x86-64 table, so it is only in `args[4]`.
pub const IA32_SYSCALL_NR: u32 = u32::MAX;
/// How records and alerts name an ia32 call: `int 0x80 (ia32 call N)`.
pub const IA32_NAME: &str = "int 0x80";

/// Which arguments make a call an escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Any call.
    Always,
    /// The flags in argument 0 ask for a namespace in `NS_FLAGS`.
    NsFlags,
    /// io_uring: unless the agent's profile allows it (`ioUring: true`).
    Uring,
    /// A raw or packet socket: the family (argument 0) is `AF_PACKET`, or
    /// the type (argument 1, below its flags) is `SOCK_RAW` or
    /// `SOCK_PACKET`.
    RawSocket,
}

/// `socket`'s arguments that make a raw or packet socket. Both are ints:
/// the kernel reads the low 32 bits of their registers, and so do these
/// checks (a caller may set the high ones).
pub const AF_PACKET: u32 = 17;
pub const SOCK_RAW: u32 = 3;
pub const SOCK_PACKET: u32 = 10;
/// The type's bits below its flags (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`).
pub const SOCK_TYPE_MASK: u32 = 0xf;

/// One call of the list.
#[derive(Debug, Clone, Copy)]
pub struct Escape {
    pub nr: u32,
    /// Its tracepoint's name (`syscalls:sys_enter_<name>`).
    pub name: &'static str,
    pub when: When,
    /// `rule::TAMPER` (aimed at other processes) or `rule::ESCAPE`.
    pub rule: u8,
    /// Why it is refused, as the README and alerts say it.
    pub why: &'static str,
}

const MOUNTS: &str = "changes the mount tree (a guarded file bind-mounted into the workspace)";
const NAMESPACE: &str = "a new mount or user namespace";
const JOIN: &str = "joins another namespace";
const HANDLES: &str = "reaches a file by its handle, past every path check";
const URING: &str = "io_uring requests do not pass the syscall hooks";
const TRACE: &str = "traces another process";
const MEMORY: &str = "reads or writes another process's memory";
const FDS: &str = "takes an open file or socket from another process, past every path check";
const EBPF: &str = "loads or reads eBPF programs and maps, agentwatch's own among them";
const KERNEL: &str = "changes or instruments the kernel";
const RAW: &str =
    "a raw or packet socket builds its own packets, which no connect or datagram hook judges";

/// The list and its lookup from one set of rows: `NR name when rule why`.
macro_rules! escapes {
    ($( $nr:ident $name:literal $when:ident $rule:ident $why:ident; )*) => {
        /// One constant per row, named after its call.
        mod rows {
            use super::*;
            $(pub const $nr: Escape = Escape {
                nr: nr::$nr,
                name: $name,
                when: When::$when,
                rule: rule::$rule,
                why: $why,
            };)*
        }

        /// The list. `clone3` is not here: its flags are in memory a
        /// filter cannot read, so the filter answers ENOSYS and the C
        /// library falls back to `clone`, whose flags it can.
        pub const ESCAPES: &[Escape] = &[$(rows::$nr),*];

        /// The row of call `nr`, if it is an escape. A `match` of
        /// constants: the kernel gets each field as an immediate.
        #[inline(always)]
        pub const fn find(nr: u32) -> Option<Escape> {
            match nr {
                $(nr::$nr => Some(rows::$nr),)*
                _ => None,
            }
        }
    };
}

escapes! {
    MOUNT              "mount"              Always  ESCAPE MOUNTS;
    UMOUNT2            "umount"             Always  ESCAPE MOUNTS;
    PIVOT_ROOT         "pivot_root"         Always  ESCAPE MOUNTS;
    OPEN_TREE          "open_tree"          Always  ESCAPE MOUNTS;
    MOVE_MOUNT         "move_mount"         Always  ESCAPE MOUNTS;
    FSOPEN             "fsopen"             Always  ESCAPE MOUNTS;
    FSCONFIG           "fsconfig"           Always  ESCAPE MOUNTS;
    FSMOUNT            "fsmount"            Always  ESCAPE MOUNTS;
    FSPICK             "fspick"             Always  ESCAPE MOUNTS;
    MOUNT_SETATTR      "mount_setattr"      Always  ESCAPE MOUNTS;
    UNSHARE            "unshare"            NsFlags ESCAPE NAMESPACE;
    CLONE              "clone"              NsFlags ESCAPE NAMESPACE;
    SETNS              "setns"              Always  ESCAPE JOIN;
    NAME_TO_HANDLE_AT  "name_to_handle_at"  Always  ESCAPE HANDLES;
    OPEN_BY_HANDLE_AT  "open_by_handle_at"  Always  ESCAPE HANDLES;
    IO_URING_SETUP     "io_uring_setup"     Uring   ESCAPE URING;
    IO_URING_ENTER     "io_uring_enter"     Uring   ESCAPE URING;
    IO_URING_REGISTER  "io_uring_register"  Uring   ESCAPE URING;
    SOCKET             "socket"             RawSocket ESCAPE RAW;
    PTRACE             "ptrace"             Always  TAMPER TRACE;
    PROCESS_VM_WRITEV  "process_vm_writev"  Always  TAMPER MEMORY;
    PROCESS_VM_READV   "process_vm_readv"   Always  TAMPER MEMORY;
    PIDFD_GETFD        "pidfd_getfd"        Always  TAMPER FDS;
    BPF                "bpf"                Always  TAMPER EBPF;
    PERF_EVENT_OPEN    "perf_event_open"    Always  ESCAPE KERNEL;
    KEXEC_LOAD         "kexec_load"         Always  ESCAPE KERNEL;
    KEXEC_FILE_LOAD    "kexec_file_load"    Always  ESCAPE KERNEL;
    INIT_MODULE        "init_module"        Always  ESCAPE KERNEL;
    FINIT_MODULE       "finit_module"       Always  ESCAPE KERNEL;
    DELETE_MODULE      "delete_module"      Always  ESCAPE KERNEL;
}

/// The escapes a profile may let through (`ioUring: true`,
/// `rawSockets: true`): then they are not escapes for its agent, and the
/// launch sandbox's filter does not refuse them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed {
    pub io_uring: bool,
    pub raw_sockets: bool,
}

impl Allowed {
    /// From a compiled policy's flags (`policy::flags`).
    #[inline(always)]
    pub const fn of_flags(flags: u8) -> Self {
        Self {
            io_uring: flags & crate::policy::flags::IO_URING != 0,
            raw_sockets: flags & crate::policy::flags::RAW_SOCKETS != 0,
        }
    }
}

/// Whether a call of `e` with first arguments `arg0` and `arg1` is an
/// escape, for an agent whose profile allows `allowed`.
#[inline(always)]
pub fn escapes(e: &Escape, arg0: u64, arg1: u64, allowed: Allowed) -> bool {
    match e.when {
        When::Always => true,
        When::NsFlags => arg0 & NS_FLAGS != 0,
        When::Uring => !allowed.io_uring,
        When::RawSocket => {
            let kind = arg1 as u32 & SOCK_TYPE_MASK;
            !allowed.raw_sockets
                && (arg0 as u32 == AF_PACKET || kind == SOCK_RAW || kind == SOCK_PACKET)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_agrees_with_the_list() {
        for e in ESCAPES {
            assert_eq!(find(e.nr).map(|f| f.name), Some(e.name), "{}", e.name);
            assert_eq!(crate::syscalls::name(e.nr), Some(e.name), "{}", e.name);
        }
        assert!(find(nr::OPENAT).is_none());
        assert!(find(nr::CLONE3).is_none());
    }

    const NONE: Allowed = Allowed {
        io_uring: false,
        raw_sockets: false,
    };
    const URING: Allowed = Allowed {
        io_uring: true,
        raw_sockets: false,
    };

    #[test]
    fn namespaces_only_with_their_flags() {
        let clone = find(nr::CLONE).unwrap();
        // SIGCHLD alone: a fork.
        assert!(!escapes(&clone, 17, 0, NONE));
        assert!(escapes(&clone, 17 | CLONE_NEWNS, 0, NONE));
        assert!(escapes(&find(nr::UNSHARE).unwrap(), CLONE_NEWUSER, 0, NONE));
        assert!(escapes(&find(nr::MOUNT).unwrap(), 0, 0, URING));
        // io_uring is an escape unless the profile allows it.
        let uring = find(nr::IO_URING_SETUP).unwrap();
        assert!(escapes(&uring, 0, 0, NONE) && !escapes(&uring, 0, 0, URING));
    }

    #[test]
    fn raw_and_packet_sockets_only() {
        let socket = find(nr::SOCKET).unwrap();
        const AF_INET: u64 = 2;
        const SOCK_STREAM: u64 = 1;
        const SOCK_DGRAM: u64 = 2;
        const SOCK_CLOEXEC: u64 = 0o2000000;
        assert!(!escapes(&socket, AF_INET, SOCK_STREAM, NONE));
        assert!(!escapes(&socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, NONE));
        assert!(escapes(
            &socket,
            AF_INET,
            SOCK_RAW as u64 | SOCK_CLOEXEC,
            NONE
        ));
        assert!(escapes(&socket, AF_INET, SOCK_PACKET as u64, NONE));
        assert!(escapes(&socket, AF_PACKET as u64, SOCK_DGRAM, NONE));
        // The kernel reads ints: high bits set in the register change nothing.
        assert!(escapes(
            &socket,
            1 << 32 | AF_PACKET as u64,
            SOCK_DGRAM,
            NONE
        ));
        assert!(escapes(&socket, AF_INET, 1 << 32 | SOCK_RAW as u64, NONE));
        // Unless the profile allows them.
        let raw = Allowed::of_flags(crate::policy::flags::RAW_SOCKETS);
        assert!(!escapes(&socket, AF_PACKET as u64, SOCK_DGRAM, raw));
        assert!(escapes(&find(nr::IO_URING_SETUP).unwrap(), 0, 0, raw));
    }
}

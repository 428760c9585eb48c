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
}

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
const EBPF: &str = "loads or reads eBPF programs and maps, agentwatch's own among them";
const KERNEL: &str = "changes or instruments the kernel";

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
    PTRACE             "ptrace"             Always  TAMPER TRACE;
    PROCESS_VM_WRITEV  "process_vm_writev"  Always  TAMPER MEMORY;
    PROCESS_VM_READV   "process_vm_readv"   Always  TAMPER MEMORY;
    BPF                "bpf"                Always  TAMPER EBPF;
    PERF_EVENT_OPEN    "perf_event_open"    Always  ESCAPE KERNEL;
    KEXEC_LOAD         "kexec_load"         Always  ESCAPE KERNEL;
    KEXEC_FILE_LOAD    "kexec_file_load"    Always  ESCAPE KERNEL;
    INIT_MODULE        "init_module"        Always  ESCAPE KERNEL;
    FINIT_MODULE       "finit_module"       Always  ESCAPE KERNEL;
    DELETE_MODULE      "delete_module"      Always  ESCAPE KERNEL;
}

/// Whether a call of `e` with first argument `arg0` is an escape, for an
/// agent whose profile allows io_uring or not.
#[inline(always)]
pub fn escapes(e: &Escape, arg0: u64, io_uring_allowed: bool) -> bool {
    match e.when {
        When::Always => true,
        When::NsFlags => arg0 & NS_FLAGS != 0,
        When::Uring => !io_uring_allowed,
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

    #[test]
    fn namespaces_only_with_their_flags() {
        let clone = find(nr::CLONE).unwrap();
        // SIGCHLD alone: a fork.
        assert!(!escapes(&clone, 17, false));
        assert!(escapes(&clone, 17 | CLONE_NEWNS, false));
        assert!(escapes(&find(nr::UNSHARE).unwrap(), CLONE_NEWUSER, false));
        assert!(escapes(&find(nr::MOUNT).unwrap(), 0, true));
        // io_uring is an escape unless the profile allows it.
        let uring = find(nr::IO_URING_SETUP).unwrap();
        assert!(escapes(&uring, 0, false) && !escapes(&uring, 0, true));
    }
}

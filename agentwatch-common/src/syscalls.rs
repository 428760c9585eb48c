//! x86-64 syscall numbers of the calls agentwatch watches, and the
//! classification both sides agree on.

pub const OPEN: u32 = 2;
pub const CREAT: u32 = 85;
pub const OPENAT: u32 = 257;
pub const OPENAT2: u32 = 437;
pub const UNLINK: u32 = 87;
pub const UNLINKAT: u32 = 263;
pub const RMDIR: u32 = 84;
pub const RENAME: u32 = 82;
pub const RENAMEAT: u32 = 264;
pub const RENAMEAT2: u32 = 316;
pub const LINK: u32 = 86;
pub const LINKAT: u32 = 265;
pub const MKDIR: u32 = 83;
pub const MKDIRAT: u32 = 258;
pub const SYMLINK: u32 = 88;
pub const SYMLINKAT: u32 = 266;
pub const MKNOD: u32 = 133;
pub const MKNODAT: u32 = 259;
pub const CHMOD: u32 = 90;
pub const FCHMOD: u32 = 91;
pub const FCHMODAT: u32 = 268;
pub const FCHMODAT2: u32 = 452;
pub const CHOWN: u32 = 92;
pub const FCHOWN: u32 = 93;
pub const LCHOWN: u32 = 94;
pub const FCHOWNAT: u32 = 260;
pub const SOCKET: u32 = 41;
pub const CONNECT: u32 = 42;
pub const ACCEPT: u32 = 43;
pub const SENDTO: u32 = 44;
pub const RECVFROM: u32 = 45;
pub const RECVMSG: u32 = 47;
pub const SENDMSG: u32 = 46;
pub const BIND: u32 = 49;
pub const LISTEN: u32 = 50;
pub const ACCEPT4: u32 = 288;
pub const SENDMMSG: u32 = 307;
pub const WRITE: u32 = 1;
pub const WRITEV: u32 = 20;
pub const EXECVE: u32 = 59;
pub const EXECVEAT: u32 = 322;
pub const KILL: u32 = 62;
pub const PTRACE: u32 = 101;
pub const TKILL: u32 = 200;
pub const TGKILL: u32 = 234;
pub const BPF: u32 = 321;
pub const SETXATTR: u32 = 188;
pub const LSETXATTR: u32 = 189;
pub const FSETXATTR: u32 = 190;
pub const CLONE: u32 = 56;
pub const CLONE3: u32 = 435;
pub const UNSHARE: u32 = 272;
pub const SETNS: u32 = 308;
pub const MOUNT: u32 = 165;
pub const UMOUNT2: u32 = 166;
pub const PIVOT_ROOT: u32 = 155;
pub const OPEN_TREE: u32 = 428;
pub const MOVE_MOUNT: u32 = 429;
pub const FSOPEN: u32 = 430;
pub const FSCONFIG: u32 = 431;
pub const FSMOUNT: u32 = 432;
pub const FSPICK: u32 = 433;
pub const MOUNT_SETATTR: u32 = 442;
pub const NAME_TO_HANDLE_AT: u32 = 303;
pub const OPEN_BY_HANDLE_AT: u32 = 304;
pub const IO_URING_SETUP: u32 = 425;
pub const IO_URING_ENTER: u32 = 426;
pub const IO_URING_REGISTER: u32 = 427;
pub const PROCESS_VM_READV: u32 = 310;
pub const PROCESS_VM_WRITEV: u32 = 311;
pub const PERF_EVENT_OPEN: u32 = 298;
pub const KEXEC_LOAD: u32 = 246;
pub const KEXEC_FILE_LOAD: u32 = 320;
pub const INIT_MODULE: u32 = 175;
pub const FINIT_MODULE: u32 = 313;
pub const DELETE_MODULE: u32 = 176;
pub const PIDFD_OPEN: u32 = 434;
pub const PIDFD_GETFD: u32 = 438;
pub const PIDFD_SEND_SIGNAL: u32 = 424;

/// Every numbered call above with its name (the tracepoint's, under
/// `syscalls:sys_enter_`): what records and events call it.
pub const NAMES: &[(u32, &str)] = &[
    (OPEN, "open"),
    (CREAT, "creat"),
    (OPENAT, "openat"),
    (OPENAT2, "openat2"),
    (UNLINK, "unlink"),
    (UNLINKAT, "unlinkat"),
    (RMDIR, "rmdir"),
    (RENAME, "rename"),
    (RENAMEAT, "renameat"),
    (RENAMEAT2, "renameat2"),
    (LINK, "link"),
    (LINKAT, "linkat"),
    (MKDIR, "mkdir"),
    (MKDIRAT, "mkdirat"),
    (SYMLINK, "symlink"),
    (SYMLINKAT, "symlinkat"),
    (MKNOD, "mknod"),
    (MKNODAT, "mknodat"),
    (CHMOD, "chmod"),
    (FCHMOD, "fchmod"),
    (FCHMODAT, "fchmodat"),
    (FCHMODAT2, "fchmodat2"),
    (CHOWN, "chown"),
    (FCHOWN, "fchown"),
    (LCHOWN, "lchown"),
    (FCHOWNAT, "fchownat"),
    (CONNECT, "connect"),
    (ACCEPT, "accept"),
    (SENDTO, "sendto"),
    (RECVFROM, "recvfrom"),
    (RECVMSG, "recvmsg"),
    (SENDMSG, "sendmsg"),
    (BIND, "bind"),
    (LISTEN, "listen"),
    (ACCEPT4, "accept4"),
    (SENDMMSG, "sendmmsg"),
    (WRITE, "write"),
    (WRITEV, "writev"),
    (EXECVE, "execve"),
    (EXECVEAT, "execveat"),
    (KILL, "kill"),
    (PTRACE, "ptrace"),
    (TKILL, "tkill"),
    (TGKILL, "tgkill"),
    (BPF, "bpf"),
    (SETXATTR, "setxattr"),
    (LSETXATTR, "lsetxattr"),
    (FSETXATTR, "fsetxattr"),
    (CLONE, "clone"),
    (CLONE3, "clone3"),
    (UNSHARE, "unshare"),
    (SETNS, "setns"),
    (MOUNT, "mount"),
    (UMOUNT2, "umount"),
    (PIVOT_ROOT, "pivot_root"),
    (OPEN_TREE, "open_tree"),
    (MOVE_MOUNT, "move_mount"),
    (FSOPEN, "fsopen"),
    (FSCONFIG, "fsconfig"),
    (FSMOUNT, "fsmount"),
    (FSPICK, "fspick"),
    (MOUNT_SETATTR, "mount_setattr"),
    (NAME_TO_HANDLE_AT, "name_to_handle_at"),
    (OPEN_BY_HANDLE_AT, "open_by_handle_at"),
    (IO_URING_SETUP, "io_uring_setup"),
    (IO_URING_ENTER, "io_uring_enter"),
    (IO_URING_REGISTER, "io_uring_register"),
    (PROCESS_VM_READV, "process_vm_readv"),
    (PROCESS_VM_WRITEV, "process_vm_writev"),
    (PERF_EVENT_OPEN, "perf_event_open"),
    (KEXEC_LOAD, "kexec_load"),
    (KEXEC_FILE_LOAD, "kexec_file_load"),
    (INIT_MODULE, "init_module"),
    (FINIT_MODULE, "finit_module"),
    (DELETE_MODULE, "delete_module"),
    (PIDFD_OPEN, "pidfd_open"),
    (PIDFD_GETFD, "pidfd_getfd"),
    (SOCKET, "socket"),
    (PIDFD_SEND_SIGNAL, "pidfd_send_signal"),
];

/// The name of a watched call.
pub fn name(nr: u32) -> Option<&'static str> {
    NAMES.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

/// `AT_FDCWD` as the kernel sees a dirfd argument (an int in a u64 register).
pub const AT_FDCWD: i32 = -100;

/// Calls watched only at entry, to copy DNS queries (sends to port 53).
pub const DNS_SENDS: &[&str] = &["sendto", "sendmsg", "sendmmsg", "write", "writev"];

/// Calls whose entry and exit copy DNS answers received on sockets that
/// sent to port 53 (UDP; TCP answers read with read(2) are not copied).
pub const DNS_RECVS: &[&str] = &["recvfrom", "recvmsg"];

/// Calls that can tamper with agentwatch (signals aimed at it, a pidfd
/// of it), and calls that set file capabilities: watched at entry when
/// the agent has a policy.
pub const TAMPER: &[&str] = &[
    "kill",
    "tkill",
    "tgkill",
    "pidfd_open",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
];

/// Watched at entry with the escapes (`escape::ESCAPES`): `clone3`, whose
/// namespace flags the seccomp filter cannot read.
pub const ESCAPES_TOO: &[&str] = &["clone3"];

/// Calls that send a signal: watched at exit, where a refusal of
/// Landlock's signal scoping (an agent signalling outside its domain)
/// shows as EPERM.
pub const SIGNALS: &[&str] = &["kill", "tkill", "tgkill", "pidfd_send_signal"];

/// Calls that change the mount tree, so that an open (dentry, mount) pair
/// may reach another path: watched at exit, for every process, only to
/// bump `policy::epoch::PATHS` (renames bump it from the watched calls' exit).
pub const MOUNT_CHANGES: &[&str] = &["mount", "umount", "move_mount", "pivot_root"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_watched_tracepoint_has_one_number() {
        let escapes = crate::escape::ESCAPES.iter().map(|e| e.name);
        let listed = [DNS_SENDS, DNS_RECVS, TAMPER, SIGNALS, ESCAPES_TOO]
            .into_iter()
            .flatten()
            .copied();
        for tp in listed.chain(escapes) {
            let n: usize = NAMES.iter().filter(|(_, name)| *name == tp).count();
            assert_eq!(n, 1, "{tp}");
        }
        for (i, (a, _)) in NAMES.iter().enumerate() {
            assert!(NAMES[i + 1..].iter().all(|(b, _)| a != b), "{a} twice");
        }
    }
}

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
pub const CHMOD: u32 = 90;
pub const FCHMOD: u32 = 91;
pub const FCHMODAT: u32 = 268;
pub const FCHMODAT2: u32 = 452;
pub const CHOWN: u32 = 92;
pub const FCHOWN: u32 = 93;
pub const LCHOWN: u32 = 94;
pub const FCHOWNAT: u32 = 260;
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

/// Calls that can tamper with agentwatch (signals and ptrace aimed at it,
/// any bpf()), and calls that set file capabilities: watched at entry
/// when the agent has a policy.
pub const TAMPER: &[&str] = &[
    "kill",
    "tkill",
    "tgkill",
    "ptrace",
    "bpf",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
];

/// Calls that change the mount tree, so that an open (dentry, mount) pair
/// may reach another path: watched at exit, for every process, only to
/// bump `policy::epoch::PATHS` (renames bump it from the watched calls' exit).
pub const MOUNT_CHANGES: &[&str] = &["mount", "umount", "move_mount", "pivot_root"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_watched_tracepoint_has_one_number() {
        for list in [DNS_SENDS, DNS_RECVS, TAMPER] {
            for tp in list {
                let n: usize = NAMES.iter().filter(|(_, name)| name == tp).count();
                assert_eq!(n, 1, "{tp}");
            }
        }
        for (i, (a, _)) in NAMES.iter().enumerate() {
            assert!(NAMES[i + 1..].iter().all(|(b, _)| a != b), "{a} twice");
        }
    }
}

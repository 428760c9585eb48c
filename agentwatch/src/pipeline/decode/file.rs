//! File calls: opens, deletes, renames, links, new directories, symlinks
//! and nodes, mode and owner changes,
//! and opens judged at their exit by the file they reached.
use agentwatch_common::{calls::Call, open, policy::access, slot, syscalls as nr};

use super::{syscall_name, Record};
use crate::event::{Access, Detail};

const AT_REMOVEDIR: u64 = 0x200;

/// An open's access as the event model says it (the kernel reads the
/// same flags with the same functions).
pub fn access_from_flags(flags: u64) -> Access {
    let bits = open::open_access(flags);
    Access {
        read: bits & access::READ != 0,
        write: open::writes(flags),
        create: bits & access::CREATE != 0,
        truncate: flags & open::O_TRUNC != 0,
    }
}

/// The detail of a file call's entry.
pub(super) fn enter(rec: &Record, call: &Call) -> Option<Detail> {
    let a = rec.args();
    let sysno = call.nr;
    let syscall: crate::event::Name = syscall_name(sysno).into();
    let path1 = || rec.path(slot::PATH1, slot::BASE1);
    Some(match sysno {
        nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT => {
            let flags = call.open_flags_of(&a);
            Detail::Open {
                path: path1(),
                access: access_from_flags(flags),
                flags,
                syscall,
                result: None,
            }
        }
        nr::UNLINK | nr::RMDIR | nr::UNLINKAT => {
            let dir = sysno == nr::RMDIR || (sysno == nr::UNLINKAT && a[2] & AT_REMOVEDIR != 0);
            Detail::Unlink {
                path: path1(),
                dir,
                syscall,
                result: None,
            }
        }
        nr::RENAME | nr::RENAMEAT | nr::RENAMEAT2 => Detail::Rename {
            from: path1(),
            to: rec.path(slot::PATH2, slot::BASE2),
            syscall,
            result: None,
        },
        nr::LINK | nr::LINKAT => Detail::Link {
            from: path1(),
            to: rec.path(slot::PATH2, slot::BASE2),
            syscall,
            result: None,
        },
        nr::MKDIR | nr::MKDIRAT | nr::SYMLINK | nr::SYMLINKAT | nr::MKNOD | nr::MKNODAT => {
            Detail::Make {
                path: path1(),
                syscall,
                result: None,
            }
        }
        nr::CHMOD | nr::FCHMOD | nr::FCHMODAT | nr::FCHMODAT2 => Detail::Chmod {
            path: path1(),
            mode: call.mode_of(&a) as u32,
            syscall,
            result: None,
        },
        nr::CHOWN | nr::FCHOWN | nr::LCHOWN | nr::FCHOWNAT => {
            let (o, g) = if sysno == nr::FCHOWNAT {
                (a[2], a[3])
            } else {
                (a[1], a[2])
            };
            Detail::Chown {
                path: path1(),
                owner: o as u32 as i32 as i64,
                group: g as u32 as i32 as i64,
                syscall,
                result: None,
            }
        }
        _ => return None,
    })
}

/// An open judged at its exit by the file it reached: one record, its
/// real path in BASE1, the fd as its result; and whether its names were
/// read only at its exit (`OPENED_LATE`: the kernel judged them then).
pub(super) fn opened(rec: &Record) -> (Detail, bool) {
    let a = rec.args();
    let flags = a[1];
    let detail = Detail::Open {
        path: rec.path(slot::PATH1, slot::BASE1),
        access: access_from_flags(flags),
        flags,
        syscall: syscall_name(rec.header().syscall_nr).into(),
        result: Some(a[0] as i64),
    };
    (detail, a[2] & agentwatch_common::open::OPENED_LATE != 0)
}

//! Processes: execs (and failed exec attempts), exits, and calls aimed
//! at agentwatch itself.
use agentwatch_common::{
    escape, policy::exec_flags, slot, syscalls as nr, SLOT_ARGV, SLOT_TRUNCATED,
};

use super::Record;
use crate::event::Detail;

/// The kind of file standard input was, from its S_IFMT bits.
fn stdin_name(mode: u64) -> Option<String> {
    Some(
        match mode & 0o170000 {
            0 => return None,
            0o010000 => "pipe",
            0o140000 => "socket",
            0o020000 => "device",
            0o100000 => "file",
            0o040000 => "directory",
            _ => "other",
        }
        .into(),
    )
}

/// A successful exec (sched_process_exec), with argv and the binary.
pub(super) fn exec(rec: &Record) -> Detail {
    let a = rec.args();
    let filename = rec.path(slot::PATH1, slot::BASE1);
    let (argv, argv_truncated) = match rec.slot(slot::PATH2) {
        Some((b, flags)) if flags & SLOT_ARGV != 0 => {
            let mut v: Vec<String> = b
                .split(|c| *c == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            if v.last().is_some_and(|s| s.is_empty()) {
                v.pop();
            }
            (v, flags & SLOT_TRUNCATED != 0)
        }
        _ => (Vec::new(), false),
    };
    let binary = rec.text(slot::BASE2).unwrap_or_else(|| filename.clone());
    let f = a[4];
    Detail::Exec {
        path: filename,
        argv,
        argv_truncated,
        binary: Some(binary),
        result: Some(0),
        cwd: rec.text(slot::BASE1),
        stdin: stdin_name(a[5]),
        written: f & (exec_flags::WRITTEN | exec_flags::NO_LINK) != 0,
        selected: f & exec_flags::SELECTED != 0,
    }
}

/// An exec's entry. Only failures surface from these: a success is
/// dropped at its exit (sched_process_exec reports it with argv).
pub(super) fn exec_attempt(rec: &Record) -> Detail {
    Detail::Exec {
        path: rec.path(slot::PATH1, slot::BASE1),
        argv: Vec::new(),
        argv_truncated: false,
        binary: None,
        result: None,
        cwd: None,
        stdin: None,
        written: false,
        selected: false,
    }
}

/// The last thread of a process exited: its wait status.
pub(super) fn exit(rec: &Record) -> Detail {
    let status = rec.args()[0] as i32;
    let (code, signal) = if status & 0x7f == 0 {
        (Some((status >> 8) & 0xff), None)
    } else {
        (None, Some(status & 0x7f))
    };
    Detail::Exit { code, signal }
}

/// A signal or pidfd aimed at agentwatch, an escape, or file
/// capabilities set. An escape the sandbox refused comes from its exit,
/// without arguments.
pub(super) fn tamper(rec: &Record) -> Detail {
    let a = rec.args();
    let sysno = rec.header().syscall_nr;
    if a[5] == escape::IA32 || a[5] == escape::IA32_REFUSED {
        // An ia32 number names another call in the x86-64 table.
        let ia32 = a[4] as i64;
        return Detail::Tamper {
            syscall: format!("{} (ia32 call {ia32})", escape::IA32_NAME).into(),
            target: 0,
            signal: None,
            path: None,
            ia32_call: Some(ia32),
        };
    }
    let refused = a[5] == escape::REFUSED;
    let name = nr::name(sysno).unwrap_or("unknown");
    let (target, signal) = match sysno {
        _ if refused => (0, None),
        nr::KILL | nr::TKILL => (a[0] as i32 as i64, Some(a[1] as i64)),
        nr::TGKILL => (a[0] as i32 as i64, Some(a[2] as i64)),
        nr::PTRACE => (a[1] as i32 as i64, None),
        nr::PIDFD_OPEN | nr::PROCESS_VM_READV | nr::PROCESS_VM_WRITEV => (a[0] as i32 as i64, None),
        nr::FSETXATTR | nr::BPF => (a[0] as i64, None),
        _ => (0, None),
    };
    let syscall = name;
    let path = (rec.slot(slot::PATH1).is_some() || rec.slot(slot::BASE1).is_some())
        .then(|| rec.path(slot::PATH1, slot::BASE1));
    Detail::Tamper {
        syscall: syscall.into(),
        target,
        signal,
        path,
        ia32_call: None,
    }
}

//! Running what the agent wrote (`exec/written`), judged at
//! sched_process_exec: a binary a process of the agent wrote (WRITTEN, by
//! inode), one with no name (memfd, deleted), one in a temp place, and an
//! interpreter fed its program from a pipe. A script, or an interpreter
//! given a file, is left to userspace, which checks the file.
use agentwatch_common::{
    policy::{accept, class, exec_flags, rule, verdict},
    slot, InodeKey, RawEvent, SLOTS, SLOT_LEN,
};

use crate::{enforce::Decision, maps::WRITTEN, shim::*};

/// `exec_flags` of a file about to run: one a process of `agent` wrote,
/// or one with no name left (a memfd, a deleted file).
#[inline(always)]
pub fn flags(agent: u32, file: Ptr) -> u64 {
    if file.is_null() {
        return 0;
    }
    let key = InodeKey {
        dev: unsafe { aw_file_dev(file) } as u64,
        ino: unsafe { aw_file_ino(file) },
    };
    let mut f = 0;
    if unsafe { WRITTEN.get(&key) }.is_some_and(|a| *a == agent + 1) {
        f |= exec_flags::WRITTEN;
    }
    if unsafe { aw_file_nlink(file) } == 0 {
        f |= exec_flags::NO_LINK;
    }
    f
}

/// The file type (S_IFMT bits) of the current task's standard input; 0
/// if closed.
#[inline(always)]
pub fn stdin_type() -> u64 {
    let f = unsafe { aw_current_fd(0) };
    if f.is_null() {
        return 0;
    }
    unsafe { aw_file_type(f) as u64 }
}

const S_IFIFO: u64 = 0o010000;
const S_IFSOCK: u64 = 0o140000;

/// Where an interpreter's program comes from, from the first bytes of
/// argv[1] (PATH2 holds argv, NUL-separated).
#[derive(PartialEq, Eq)]
enum Program {
    /// On the command line: `-c`, `-m`, `-e` and the like.
    Inline,
    /// Standard input: no argument, `-` or `-s`.
    Stdin,
    /// Anything else: a script file, or options userspace must read.
    Other,
}

#[inline(always)]
fn argv_byte(ev: &RawEvent, i: usize) -> u8 {
    let idx = (slot::PATH2 & (SLOTS - 1)) * SLOT_LEN + (i & (SLOT_LEN - 1));
    // SAFETY: the shim masks the index inside `data`.
    unsafe { crate::shim::aw_data_byte(ev.data.as_ptr(), idx as u32) }
}

#[inline(always)]
fn interp_program(ev: &RawEvent, shell: bool) -> Program {
    let len = ev.slots[slot::PATH2 & (SLOTS - 1)].len as usize;
    // argv[0] is short (a program name); a longer one is left to userspace.
    let mut start = 0usize;
    for i in 0..64usize {
        if i >= len {
            return Program::Stdin;
        }
        if argv_byte(ev, i) == 0 {
            start = i + 1;
            break;
        }
    }
    if start == 0 {
        return Program::Other;
    }
    if start >= len {
        return Program::Stdin;
    }
    let mut a = [0u8; 8];
    for (k, b) in a.iter_mut().enumerate() {
        if start + k < len {
            *b = argv_byte(ev, start + k);
        }
    }
    let word = |w: &[u8]| a[..w.len()] == *w && (w.len() == 8 || a[w.len()] == 0);
    if word(b"-") || word(b"-s") {
        return Program::Stdin;
    }
    if word(b"-c") {
        return Program::Inline;
    }
    if !shell {
        for w in [
            &b"-m"[..],
            b"-e",
            b"-E",
            b"-r",
            b"-p",
            b"--eval",
            b"--print",
        ] {
            if word(w) {
                return Program::Inline;
            }
        }
        return Program::Other;
    }
    // Bundled shell options ending in c: -lc, -ec, -xc.
    if a[0] == b'-' && a[1] != b'-' && a[1] != 0 {
        let mut n = 0;
        while n < 7 && a[n + 1] != 0 {
            n += 1;
        }
        if a[n] == b'c' {
            return Program::Inline;
        }
    }
    Program::Other
}

/// Running what the agent wrote (`exec/written`): a binary it wrote, one
/// with no name, one in a temp place, an interpreter fed from a pipe. An
/// executable listed with hashes goes to userspace instead (a pinned
/// binary may run); a script, or an interpreter reading a file, too
/// (userspace checks whether the agent wrote it).
#[inline(always)]
pub fn judge(payload: Option<u64>, ev: &RawEvent, d: Decision) -> Decision {
    if d.verdict == verdict::VIOLATION && agentwatch_common::policy::hard_rule(d.rule) {
        return d;
    }
    let Some(p) = payload else {
        return d;
    };
    let pinned = p & accept::EXEC_LISTED != 0 && p & accept::EXEC_ANY_BINARY == 0;
    let own = p & (accept::IN_WORKSPACE | accept::IN_HOME) != 0;
    let f = ev.args[4];
    let written = f & (exec_flags::WRITTEN | exec_flags::NO_LINK) != 0
        || (p & accept::TEMP_PLACE != 0 && !own);
    let undecided = |r| Decision::new(verdict::UNDECIDED, r, class::EXEC);
    if written {
        return if pinned {
            undecided(rule::EXEC_HASH)
        } else {
            Decision::new(verdict::VIOLATION, rule::EXEC_WRITTEN, class::EXEC)
        };
    }
    if !d.allowed() {
        return d;
    }
    if f & exec_flags::SCRIPT != 0 {
        return undecided(rule::INTERP);
    }
    if p & (accept::INTERPRETER | accept::SHELL) != 0 {
        return match interp_program(ev, p & accept::SHELL != 0) {
            Program::Inline => d,
            Program::Stdin if matches!(ev.args[5], S_IFIFO | S_IFSOCK) => {
                Decision::new(verdict::VIOLATION, rule::EXEC_WRITTEN, class::EXEC)
            }
            Program::Stdin => d,
            Program::Other => undecided(rule::INTERP),
        };
    }
    d
}

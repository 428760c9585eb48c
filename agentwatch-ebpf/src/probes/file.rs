//! Files: opens, deletes, renames, links, mode and owner changes. Entry
//! copies the paths where the call's row in `agentwatch_common::calls`
//! says they are and judges them against the agent's path automaton;
//! exit judges what an open reached (by its real path) and a violation
//! left to the exit (a call that failed changed nothing).
use agentwatch_common::{
    calls::{Call, Judge, OpenFlags, Paths},
    open::{open_access, open_listing, OPENED_LATE, O_CREAT},
    policy::{
        accept, access, class, epoch, flags, rule, verdict, watch, AgentPolicy, Deferred,
        OpenedKey, OpenedStamp,
    },
    slot, syscalls as nr, InodeKey, RawEvent, RecordKind, SLOTS, SLOT_TRUNCATED,
};
use aya_ebpf::helpers::bpf_get_current_pid_tgid;

use super::task;
use crate::{
    enforce::{self, Decision},
    event,
    maps::*,
    shim::*,
};

/// Setuid and setgid bits of a mode.
const S_ISUID_ISGID: u64 = 0o6000;
/// A regular file's type bits (S_IFMT).
const S_IFREG: u64 = 0o100000;

/// Reads a file (or exec) call's paths into `ev`, where its row says
/// they are; openat2's flags from its `struct open_how` into `args[5]`.
/// Paths unreadable now are noted for the exit (`RETRY_PATHS`).
#[inline(always)]
pub fn read_entry(ev: &mut RawEvent, call: &Call, a: &[u64; 6]) {
    let cwd = nr::AT_FDCWD as i64 as u64;
    // Unreadable PATH1 and PATH2 pointers, kept apart (not an array zeroed
    // up front, which LLVM makes a memset call on the hot path).
    let (mut u1, mut u2) = (0u64, 0u64);
    let (p1, b1, p2, b2) = (slot::PATH1, slot::BASE1, slot::PATH2, slot::BASE2);
    match call.paths {
        Paths::Cwd0 => u1 = path_arg(ev, p1, b1, cwd, a[0]),
        Paths::At01 => u1 = path_arg(ev, p1, b1, a[0], a[1]),
        Paths::Cwd1 => u1 = path_arg(ev, p1, b1, cwd, a[1]),
        Paths::At12 => u1 = path_arg(ev, p1, b1, a[1], a[2]),
        Paths::Cwd0Cwd1 => {
            u1 = path_arg(ev, p1, b1, cwd, a[0]);
            u2 = path_arg(ev, p2, b2, cwd, a[1]);
        }
        Paths::At01At23 => {
            u1 = path_arg(ev, p1, b1, a[0], a[1]);
            u2 = path_arg(ev, p2, b2, a[2], a[3]);
        }
        Paths::Fd0 => fd_path(ev, b1, a[0]),
        Paths::None => {}
    }
    if call.open_flags == OpenFlags::How2 {
        // struct open_how begins with the u64 flags (uapi, stable).
        ev.args[5] =
            unsafe { aya_ebpf::helpers::bpf_probe_read_user(a[2] as *const u64) }.unwrap_or(0);
    }
    if u1 | u2 != 0 {
        let tid = bpf_get_current_pid_tgid() as u32;
        let _ = RETRY_PATHS.insert(&tid, &[u1, u2], 0);
    }
}

/// A file call's entry, judged.
pub struct Judged {
    pub d: Decision,
    /// An open's payload and access, kept for a judgement at its exit.
    pub opened: Option<(u64, u64)>,
    /// Reads and listings change nothing: no rate budget counts them (a
    /// grep over a tree is not a runaway loop).
    pub read_only: bool,
}

impl Judged {
    #[inline(always)]
    pub fn of(d: Decision) -> Self {
        Self {
            d,
            opened: None,
            read_only: false,
        }
    }

    /// A call the kernel could not judge because a path was cut short is
    /// a violation of its own (`rule::UNJUDGED`): enforce mode refuses it
    /// rather than let it run on a judgement of a prefix.
    #[inline(always)]
    pub fn unjudged_if_cut(mut self, ev: &RawEvent) -> Self {
        if self.d.verdict == verdict::UNDECIDED && self.d.rule == rule::PATH && cut_short(ev) {
            self.d = Decision::new(verdict::VIOLATION, rule::UNJUDGED, self.d.class);
        }
        self
    }
}

/// Judges a file call's entry under the agent's policy.
#[inline(always)]
pub fn judge_entry(pol: &AgentPolicy, agent: u32, ev: &RawEvent, call: &Call) -> Judged {
    let paths = pol.flags & flags::PATHS != 0;
    let path = |ev: &RawEvent, p: usize, b: usize, needs: bool, acc: u64, cls: usize| {
        let payload = if paths {
            enforce::resolve(pol, ev, p, b, needs)
        } else {
            None
        };
        enforce::judge_path(agent, payload, acc, cls)
    };
    let (p1, b1, p2, b2) = (slot::PATH1, slot::BASE1, slot::PATH2, slot::BASE2);
    // Setting setuid/setgid bits is a guardrail whatever the profile says.
    if call.mode_of(&ev.args) & S_ISUID_ISGID != 0 {
        return Judged::of(Decision::new(
            verdict::VIOLATION,
            rule::GUARD_PRIVILEGE,
            class::FILE,
        ));
    }
    // An fd's path was walked by the kernel: there is no user string.
    let needs = call.paths != Paths::Fd0;
    match call.judge {
        Judge::Open => {
            let flags = call.open_flags_of(&ev.args);
            let acc = open_access(flags);
            let payload = if paths {
                enforce::resolve_cached(pol, ev, p1, b1)
            } else {
                None
            };
            let d = enforce::judge_path(agent, payload, acc, class::FILE);
            // A listing (or a walk through a directory) shows names, never
            // contents: only guardrails judge it.
            let d = if d.rule == rule::FILE && open_listing(flags) {
                Decision::new(verdict::ALLOW, rule::NONE, class::FILE)
            } else {
                d
            };
            Judged {
                d,
                opened: payload.map(|p| (p, acc)),
                read_only: acc == access::READ,
            }
        }
        Judge::First => Judged::of(path(ev, p1, b1, needs, call.access, call.class)),
        // A hard link to a guardrail file is a second way in to it: the
        // source counts as read and written; other sources are left to
        // the profile's rules on what the agent then opens. Its new name
        // is a file created there (a link into `.git/hooks` plants a hook).
        Judge::LinkSource => {
            let from = path(ev, p1, b1, true, call.access, call.class);
            let soft = from.verdict == verdict::VIOLATION
                && !agentwatch_common::policy::hard_rule(from.rule);
            Judged::of(if from.allowed() || soft {
                path(ev, p2, b2, true, access::CREATE, call.class)
            } else {
                from
            })
        }
        Judge::Both => {
            let from = path(ev, p1, b1, true, call.access, call.class);
            Judged::of(if from.allowed() {
                path(ev, p2, b2, true, call.access, call.class)
            } else {
                from
            })
        }
        _ => Judged::of(Decision::new(
            verdict::UNDECIDED,
            rule::SOCKET,
            class::NETWORK,
        )),
    }
}

/// Copies the path argument into `slot` and, when it is relative, the
/// directory it is relative to (dirfd, or the cwd for AT_FDCWD) into `base`.
/// Returns the path's pointer when its read failed (retried at the exit:
/// `RETRY_PATHS`), else 0.
#[inline(always)]
pub fn path_arg(ev: &mut RawEvent, slot: usize, base: usize, dirfd: u64, user_path: u64) -> u64 {
    // The first byte comes from the copy just made. Unreadable now
    // (retried at exit): walk the base anyway, in case it turns out relative.
    let (absolute, unread) = if event::user_str(ev, slot, user_path) {
        (
            user_path != 0 && event::slot_first_byte(ev, slot) == b'/',
            0,
        )
    } else {
        (false, user_path)
    };
    if absolute {
        return unread;
    }
    // Relative (or empty, for AT_EMPTY_PATH): resolve against dirfd or cwd.
    let dirfd = dirfd as i32;
    let dir = if dirfd == nr::AT_FDCWD {
        unsafe { aw_task_pwd(task()) }
    } else if dirfd >= 0 {
        let f = unsafe { aw_current_fd(dirfd as u32) };
        if f.is_null() {
            return unread;
        }
        unsafe { aw_file_path(f) }
    } else {
        return unread;
    };
    event::walk_path(ev, base, dir);
    unread
}

/// Path of an open file descriptor (fchmod, fchown).
#[inline(always)]
pub fn fd_path(ev: &mut RawEvent, slot: usize, fd: u64) {
    let f = unsafe { aw_current_fd(fd as u32) };
    if !f.is_null() {
        event::walk_path(ev, slot, unsafe { aw_file_path(f) });
    }
}

/// The exit of a call whose file violation was left to it: judged again
/// on what happened (nothing, if the call failed; an open's create only
/// when it made a regular file). Returns the decision for the exit record:
/// allowed when there is nothing (more) to act on, so userspace does not
/// judge it again. `opened`: the file an open reached (null otherwise).
#[inline(always)]
pub fn judge_deferred(
    pol: &AgentPolicy,
    taken: &Taken,
    call: &Call,
    ret: i64,
    df: &Deferred,
    opened: Ptr,
) -> Option<Decision> {
    let allowed = Decision::new(verdict::ALLOW, rule::NONE, df.class as usize);
    // A failed call changed nothing (one Landlock refused is reported by
    // the exit: `landlock_refused`).
    if ret < 0 {
        return Some(allowed);
    }
    let d = if call.is_open() {
        // The real path first: a guardrail it reaches wins (and is acted
        // on and sent by judge_opened).
        let flags = if df.access as u64 & access::CREATE != 0 {
            O_CREAT
        } else {
            0
        };
        let f = opened;
        if judge_opened(pol, taken, call.nr, f, ret, flags, rule::NONE, false)? {
            return Some(allowed);
        }
        let mut acc = df.access as u64;
        if !f.is_null() && unsafe { aw_file_type(f) } as u64 != S_IFREG {
            acc &= !access::CREATE;
        }
        enforce::judge_path(
            taken.watch.agent_id,
            Some(df.payload),
            acc,
            df.class as usize,
        )
    } else {
        Decision::new(verdict::VIOLATION, df.rule, df.class as usize)
    };
    Some(if d.allowed() { allowed } else { d })
}

/// Whether a call of class `cls` that returned `ret` failed the way the
/// launch sandbox refuses, for a process (its `WatchEntry` flags
/// `wflags`) it holds: Landlock's rules (EACCES, EXDEV), or the read-only
/// guardrail mounts (`watch::SHIELDED`: EROFS, EXDEV across one, EBUSY
/// for a bound file replaced or removed). Userspace drops what the real
/// paths do not explain (a read-only filesystem elsewhere).
#[inline(always)]
pub fn landlock_refused(wflags: u32, cls: usize, ret: i64) -> bool {
    const EBUSY: i64 = 16;
    const EXDEV: i64 = 18;
    const EROFS: i64 = 30;
    let held = wflags & watch::landlock_of(cls) != 0;
    let changes = cls == class::FILE || cls == class::DELETE;
    let shielded = changes && wflags & watch::SHIELDED != 0;
    (held && (ret == -EACCES || ret == -EXDEV))
        || (shielded && (ret == -EROFS || ret == -EXDEV || ret == -EBUSY))
}

/// Landlock's own refusal: the only one the kernel acts on beyond the
/// report (a kill); the rest is judged by real paths first.
pub const EACCES: i64 = 13;

/// Remembers the file `f` a new fd opened when it was opened for writing:
/// an exec of it later is running what the agent wrote (`exec/written`).
/// `writable`: whether `f` is open for writing, when the caller knows it
/// from the open's flags (a read of the file saved); else read from `f`.
#[inline(always)]
pub fn note_written(agent: u32, f: Ptr, writable: Option<bool>) {
    if f.is_null() {
        return;
    }
    if !writable.unwrap_or_else(|| unsafe { aw_file_writable(f) } != 0) {
        return;
    }
    let key = InodeKey {
        dev: unsafe { aw_file_dev(f) } as u64,
        ino: unsafe { aw_file_ino(f) },
    };
    let _ = WRITTEN.insert(&key, &(agent + 1), 0);
}

/// The file an open reached (`f`, behind `fd`), judged by its real path
/// (a dentry walk from the file) against the guardrails: a symlink, `/proc/self/cwd` or a
/// bind mount that leads to a guardrail file is caught here even though
/// the path the process named was allowed. Only guardrails: the profile's
/// own rules name files as the agent names them (`/lib/...` for
/// `/usr/lib/...`), so judging real paths against them would flag
/// symlinked system paths. The open has happened; the action lands before
/// the process returns to user space (pause or kill; deny kills).
///
/// A clean verdict is cached (CLEAN_OPENS) by dentry and mount: the same
/// file opened again costs a lookup instead of a walk and a judgement.
///
/// `record` (TERRITORY, TAINT, PINNED) asks for an allowed open to be
/// sent, with the file it reached, so userspace can record or check it;
/// a pinned file's opener is held until userspace has (enforce mode).
///
/// `late`: the entry could not read the names the open gave, so nothing
/// judged them before the call (what the exit reads is what the caller's
/// memory says after it): the real path is judged by the whole profile,
/// and the record says so (`OPENED_LATE`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn judge_opened(
    pol: &AgentPolicy,
    taken: &Taken,
    sysno: u32,
    f: Ptr,
    fd: i64,
    open_flags: u64,
    record: u8,
    late: bool,
) -> Option<bool> {
    if f.is_null() {
        return Some(false);
    }
    let w = &taken.watch;
    let path = unsafe { aw_file_path(f) };
    let acc = open_access(open_flags);
    let (key, stamp) = opened_stamp(f, w.agent_id, acc);
    // A clean verdict cached is one by guardrails only.
    if record == rule::NONE && !late {
        if taken.last_open_is(&key, &stamp) {
            return Some(false);
        }
        if unsafe { CLEAN_OPENS.get(&key) } == Some(&stamp) {
            taken.set_last_open(&key, &stamp);
            return Some(false);
        }
    }
    let ev = event::start(RecordKind::Opened, w, sysno)?;
    event::walk_path(ev, slot::BASE1, path);
    let payload = enforce::resolve(pol, ev, slot::PATH1, slot::BASE1, false);
    let mut d = enforce::judge_path(w.agent_id, payload, acc, class::FILE);
    // Another process's environment or memory: the file's own pid says
    // whose it is (a process's own /proc/self/environ is its own).
    let proc_guard =
        payload.is_some_and(|p| (p >> accept::GUARD_PROC_SHIFT) & acc & access::ALL != 0);
    if proc_guard {
        let owner = unsafe { aw_proc_file_pid(f) } as u32;
        let me = bpf_get_current_pid_tgid();
        if owner != (me >> 32) as u32 && owner != me as u32 {
            enforce::note_secret_read(w.agent_id);
            d = Decision::new(verdict::VIOLATION, rule::GUARD_SECRETS, class::FILE);
        }
    }
    ev.args[0] = fd as u64;
    ev.args[1] = open_flags;
    ev.args[2] = u64::from(late) * OPENED_LATE;
    // By the whole profile, a listing is judged as at an entry: only
    // guardrails count (it shows names, never contents).
    let soft = !agentwatch_common::policy::hard_rule(d.rule);
    let counts = late && !(d.rule == rule::FILE && open_listing(open_flags));
    if d.verdict != verdict::VIOLATION || soft && !counts {
        if !proc_guard {
            let _ = CLEAN_OPENS.insert(&key, &stamp, 0);
            taken.set_last_open(&key, &stamp);
        }
        if record != rule::NONE {
            ev.hdr.verdict = verdict::ALLOW;
            ev.hdr.rule = record;
            // A pinned file is not read before userspace has checked it.
            if record == rule::PINNED {
                ev.hdr.action = enforce::hold(pol);
            }
            event::submit(ev);
        }
        return Some(false);
    }
    ev.hdr.verdict = d.verdict;
    ev.hdr.rule = d.rule;
    ev.hdr.action = enforce::act(pol, w.agent_id, &d, false);
    event::submit(ev);
    Some(true)
}

/// The CLEAN_OPENS key of an open file and the stamp its verdict is valid
/// under, read before the walk so that a rename during it invalidates it.
#[inline(always)]
fn opened_stamp(f: Ptr, agent: u32, acc: u64) -> (OpenedKey, OpenedStamp) {
    let mut s = [0u64; 5];
    unsafe { aw_file_stamp(f, s.as_mut_ptr()) };
    let key = OpenedKey {
        dentry: s[1],
        mnt: s[0],
        agent,
        access: acc as u32,
    };
    let stamp = OpenedStamp {
        paths_epoch: epoch_value(epoch::PATHS),
        policy_epoch: epoch_value(epoch::POLICY),
        parent: s[2],
        inode: s[4],
        name_hash_len: s[3],
    };
    (key, stamp)
}

/// Exit of a call that changes the mount tree, by any process.
pub fn try_mount_changed() -> Result<(), i64> {
    bump_epoch(epoch::PATHS);
    Ok(())
}

/// What the exit found of the paths its entry could not read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// The entry read every path.
    Nothing,
    /// Read now, after the call: what the caller's memory says, which need
    /// not be what the kernel used.
    AfterCall,
    /// Unreadable at the exit too (a page the caller keeps unmapping):
    /// nothing the kernel or userspace could judge.
    Unreadable,
}

/// The paths the current thread's entry could not read (`read_entry`
/// left their pointers), taken: its exit reads them (`reread_paths`).
#[inline(always)]
pub fn take_retry() -> Option<[u64; 2]> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let retry = unsafe { RETRY_PATHS.get(&tid) }.copied()?;
    let _ = RETRY_PATHS.remove(&tid);
    Some(retry)
}

/// Reads into the exit record the paths its entry could not read
/// (`take_retry`).
#[inline(always)]
pub fn reread_paths(ev: &mut RawEvent, retry: Option<[u64; 2]>) -> Retried {
    let Some(retry) = retry else {
        return Retried::Nothing;
    };
    let mut found = Retried::AfterCall;
    for (slot, ptr) in [(slot::PATH1, retry[0]), (slot::PATH2, retry[1])] {
        if ptr != 0 && !event::user_str(ev, slot, ptr) {
            count_loss(agentwatch_common::loss::READ_FAILED);
            found = Retried::Unreadable;
        }
    }
    found
}

/// Whether a path of the record was cut short by the kernel's copy (a
/// path longer than a slot): its judgement could only be of a prefix.
#[inline(always)]
pub fn cut_short(ev: &RawEvent) -> bool {
    [slot::PATH1, slot::BASE1, slot::PATH2, slot::BASE2]
        .iter()
        .any(|s| ev.slots[*s & (SLOTS - 1)].flags & SLOT_TRUNCATED != 0)
}

//! Building a `RawEvent` in the per-CPU scratch slot and sending the used
//! prefix of it to the ring buffer.
use agentwatch_common::{
    loss, RawEvent, RecordKind, WatchEntry, NAME_LEN, RAW_EVENT_FIXED_LEN, SLOTS, SLOT_LEN,
    SLOT_REVERSED_COMPONENTS, SLOT_TRUNCATED, SLOT_USED, WAKE_RECORD_LEN,
};
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
    generated::{bpf_loop, bpf_probe_read_kernel_str, bpf_probe_read_user_str},
};

use crate::{
    maps::{count_loss, EVENTS, READER_ASLEEP, SCRATCH, WAKE_EXIT},
    shim::*,
};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
/// Unread bytes in the ring buffer that justify waking the reader early.
const WAKEUP_BYTES: u64 = 256 * 1024;

/// Deepest path the dentry walk follows (components plus mount crossings).
const MAX_PATH_DEPTH: u32 = 48;

/// Takes this CPU's scratch event and fills the header for the current task.
#[inline(always)]
pub fn start(
    kind: RecordKind,
    watch: &WatchEntry,
    syscall_nr: u32,
) -> Option<&'static mut RawEvent> {
    let ev = begin(kind, watch, syscall_nr)?;
    stamp(ev);
    Some(ev)
}

/// Takes this CPU's scratch event with an empty body and a header that
/// names only the record; `stamp` fills in the task before it is sent.
/// For a record that is most often judged and dropped (an allowed call's
/// entry): the task's details would be read for nothing.
#[inline(always)]
pub fn begin(
    kind: RecordKind,
    watch: &WatchEntry,
    syscall_nr: u32,
) -> Option<&'static mut RawEvent> {
    // SAFETY: the per-CPU slot is ours until the program returns.
    let ev = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    ev.hdr.agent_id = watch.agent_id;
    ev.hdr.kind = kind as u8;
    ev.hdr.verdict = 0;
    ev.hdr.rule = 0;
    ev.hdr.action = 0;
    ev.hdr.syscall_nr = syscall_nr;
    // Word stores, not `= [0; 6]` or a loop over the slots: LLVM turns
    // those into calls to a byte-wise memset subprogram, which cost a hot
    // path more than the rest of `begin`.
    // SAFETY: both are whole arrays of 8-aligned words (asserted below).
    unsafe {
        zero_words(ev.args.as_mut_ptr(), 6);
        zero_words(ev.slots.as_mut_ptr().cast(), 2);
    }
    ev.addr.len = 0;
    Some(ev)
}

const _: () = assert!(core::mem::size_of::<[agentwatch_common::StrSlot; SLOTS]>() == 16);
const _: () = assert!(core::mem::offset_of!(RawEvent, slots) % 8 == 0);
const _: () = assert!(core::mem::align_of::<RawEvent>() >= 8);

/// Zeroes `n` words at `p` with volatile stores, which LLVM neither merges
/// into a memset call nor drops.
///
/// # Safety
/// `p` must be valid and 8-aligned for `n` words.
#[inline(always)]
unsafe fn zero_words(p: *mut u64, n: usize) {
    for i in 0..n {
        unsafe { core::ptr::write_volatile(p.add(i), 0) };
    }
}

/// Fills the header's task fields for the current task: time, cgroup,
/// ids, parent, name.
#[inline(always)]
pub fn stamp(ev: &mut RawEvent) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() } as Ptr;
    let h = &mut ev.hdr;
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.ppid = unsafe { aw_task_ppid(task) };
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    // Straight into the header: the helper zeroes it on failure, and a
    // zeroed buffer of our own would be a memset call.
    unsafe {
        aya_ebpf::helpers::generated::bpf_get_current_comm(
            h.comm.as_mut_ptr().cast(),
            h.comm.len() as u32,
        )
    };
}

#[inline(always)]
fn slot_ptr(ev: &mut RawEvent, slot: usize) -> *mut u8 {
    // slot < SLOTS is a constant at every call site.
    unsafe { ev.data.as_mut_ptr().add((slot & (SLOTS - 1)) * SLOT_LEN) }
}

/// Copies a NUL-terminated string from user memory into `slot`. Returns
/// false when the read failed (the caller decides whether that is a loss:
/// syscall entries retry at exit).
#[inline(always)]
pub fn user_str(ev: &mut RawEvent, slot: usize, src: u64) -> bool {
    if src == 0 {
        return true;
    }
    let dst = slot_ptr(ev, slot);
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), SLOT_LEN as u32, src as *const _) };
    if n <= 0 {
        return false;
    }
    set_str_slot(ev, slot, n);
    true
}

/// First byte of string slot `slot` (0 when empty).
#[inline(always)]
pub fn slot_first_byte(ev: &RawEvent, slot: usize) -> u8 {
    ev.data[(slot & (SLOTS - 1)) * SLOT_LEN]
}

/// Copies a NUL-terminated string from kernel memory into `slot`.
#[inline(always)]
pub fn kernel_str(ev: &mut RawEvent, slot: usize, src: *const u8) {
    if src.is_null() {
        return;
    }
    let dst = slot_ptr(ev, slot);
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), SLOT_LEN as u32, src.cast()) };
    set_str_slot(ev, slot, n);
}

#[inline(always)]
fn set_str_slot(ev: &mut RawEvent, slot: usize, n: i64) {
    if n <= 0 {
        count_loss(loss::READ_FAILED);
        return;
    }
    let len = (n - 1) as u16; // excludes the NUL
    let mut flags = SLOT_USED;
    if n as usize >= SLOT_LEN {
        flags |= SLOT_TRUNCATED;
    }
    ev.slots[slot & (SLOTS - 1)] = agentwatch_common::StrSlot { len, flags };
}

/// Copies up to `len` raw bytes of user memory into `slot`.
#[inline(always)]
pub fn user_bytes(ev: &mut RawEvent, slot: usize, src: u64, len: u64, flags: u16) {
    // At most SLOT_LEN - 1 bytes: the bounded C reader's limit.
    let mut n = len as usize;
    let mut extra = 0;
    if n > SLOT_LEN - 1 {
        n = SLOT_LEN - 1;
        extra = SLOT_TRUNCATED;
    }
    if n == 0 || src == 0 {
        return;
    }
    let dst = slot_ptr(ev, slot);
    if unsafe { aw_read_user_max2047(dst, n as u64, src as Ptr) } < 0 {
        count_loss(loss::READ_FAILED);
        return;
    }
    ev.slots[slot & (SLOTS - 1)] = agentwatch_common::StrSlot {
        len: n as u16,
        flags: SLOT_USED | flags | extra,
    };
}

/// State of one path walk, kept on the caller's stack across `bpf_loop`
/// iterations.
///
/// The result goes into the slot's header (in the scratch map value) from
/// inside the callback, never read back from this struct: 6.1's verifier
/// does not see a callback change its caller's stack, believes `off` is
/// still 0 after the loop, and drops the branches that test the length
/// as dead code.
#[repr(C)]
struct Walk {
    dentry: Ptr,
    vfsmnt: Ptr,
    mnt: Ptr,
    /// Start of the slot being written (a pointer into the scratch map value).
    base: *mut u8,
    /// The slot's header, in the same map value.
    hdr: *mut agentwatch_common::StrSlot,
    off: u64,
}

/// One step of the walk: one path component, or one mount crossing.
/// Returns 1 to stop the loop.
extern "C" fn walk_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer we gave it.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    unsafe {
        if w.dentry.is_null() || w.vfsmnt.is_null() {
            return 1;
        }
        if w.dentry == aw_vfsmount_root(w.vfsmnt) {
            let parent = aw_mount_parent(w.mnt);
            if parent.is_null() || parent == w.mnt {
                (*w.hdr).flags = SLOT_USED | SLOT_REVERSED_COMPONENTS;
                return 1;
            }
            w.dentry = aw_mount_mountpoint(w.mnt);
            w.mnt = parent;
            w.vfsmnt = aw_mount_vfsmount(parent);
            return 0;
        }
        let parent = aw_dentry_parent(w.dentry);
        if parent == w.dentry {
            (*w.hdr).flags = SLOT_USED | SLOT_REVERSED_COMPONENTS;
            return 1;
        }
        let off = w.off as usize;
        if off > SLOT_LEN - NAME_LEN {
            return 1;
        }
        let dst = w.base.add(off & (SLOT_LEN - 1));
        let n =
            bpf_probe_read_kernel_str(dst.cast(), NAME_LEN as u32, aw_dentry_name(w.dentry).cast());
        if n <= 0 {
            return 1;
        }
        w.off += n as u64;
        (*w.hdr).len = (w.off as usize & (SLOT_LEN - 1)) as u16;
        w.dentry = parent;
    }
    0
}

/// Writes the absolute path of `path` (a `struct path *`) into `slot` as
/// leaf-first NUL-terminated components, crossing mount points up to the
/// root of the task's mount namespace.
///
/// The loop runs in `bpf_loop` so the verifier checks one step, not every
/// unrolled depth at every call site.
#[inline(always)]
pub fn walk_path(ev: &mut RawEvent, slot: usize, path: Ptr) {
    if path.is_null() {
        return;
    }
    let (dentry, vfsmnt) = unsafe { (aw_path_dentry(path), aw_path_mnt(path)) };
    walk_dentry(ev, slot, dentry, vfsmnt);
}

/// `walk_path` from a dentry in the mount `vfsmnt` (a `struct vfsmount *`):
/// the name an LSM hook is about to create, move or remove, which no
/// `struct path` holds yet.
#[inline(always)]
pub fn walk_dentry(ev: &mut RawEvent, slot: usize, dentry: Ptr, vfsmnt: Ptr) {
    if dentry.is_null() || vfsmnt.is_null() {
        return;
    }
    // Cut short until the walk reaches the root.
    ev.slots[slot & (SLOTS - 1)] = agentwatch_common::StrSlot {
        len: 0,
        flags: SLOT_USED | SLOT_REVERSED_COMPONENTS | SLOT_TRUNCATED,
    };
    let mut w = Walk {
        dentry,
        vfsmnt,
        mnt: unsafe { aw_real_mount(vfsmnt) },
        base: slot_ptr(ev, slot),
        hdr: &mut ev.slots[slot & (SLOTS - 1)],
        off: 0,
    };
    unsafe {
        bpf_loop(
            MAX_PATH_DEPTH,
            walk_step as *mut core::ffi::c_void,
            (&mut w as *mut Walk).cast(),
            0,
        );
    }
}

/// Sends the used prefix of `ev`: the fixed part plus data up to the end of
/// the last filled slot. A full ring buffer is counted, never silent.
#[inline(always)]
pub fn submit(ev: &RawEvent) {
    let mut used = 0usize;
    for i in 0..SLOTS {
        let s = ev.slots[i];
        if s.flags & SLOT_USED != 0 {
            used = i * SLOT_LEN + s.len as usize + 1;
        }
    }
    let mut size = RAW_EVENT_FIXED_LEN + used;
    if size > core::mem::size_of::<RawEvent>() {
        size = core::mem::size_of::<RawEvent>();
    }
    // SAFETY: size is bounded by the struct's size just above.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const RawEvent).cast::<u8>(), size) };
    // Wake the reader only once a batch has built up; it also polls on a
    // short timer. A violation or a held call wakes it at once: its alert
    // (and, for a pause, the approval request; for a hold, the release)
    // should not wait for the timer. So does the exit of such an entry,
    // which userspace waits for to complete the event.
    let urgent = ev.hdr.verdict == agentwatch_common::policy::verdict::VIOLATION
        || ev.hdr.action == agentwatch_common::policy::action::HOLD;
    let wake = if ev.hdr.kind == RecordKind::SysEnter as u8 {
        if urgent {
            let _ = WAKE_EXIT.insert(&ev.hdr.tid, &1, 0);
        }
        urgent
    } else if ev.hdr.kind == RecordKind::SysExit as u8 {
        urgent || WAKE_EXIT.remove(&ev.hdr.tid).is_ok()
    } else {
        urgent
    };
    let wake = wake || EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES;
    if EVENTS.output::<[u8]>(bytes, BPF_RB_NO_WAKEUP).is_err() {
        count_loss(loss::RINGBUF_FULL);
    }
    if wake {
        wake_reader();
    }
}

/// Wakes the ring reader if it said it sleeps. The record that asked for
/// this was committed first, and a commit is a full barrier: either the
/// reader set its flag before we read it (we wake it), or its poll, which
/// follows the flag, sees the record (it does not sleep). Nothing is lost
/// to the race; at worst two CPUs both wake it.
#[inline(always)]
fn wake_reader() {
    let Some(flag) = READER_ASLEEP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a valid map value pointer from the lookup above.
    if unsafe { core::ptr::read_volatile(flag) } == 0 {
        return;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(flag, 0) };
    let nudge = [0u8; WAKE_RECORD_LEN];
    // A full ring is readable anyway, so a nudge that does not fit is moot.
    let _ = EVENTS.output::<[u8; WAKE_RECORD_LEN]>(&nudge, BPF_RB_FORCE_WAKEUP);
}

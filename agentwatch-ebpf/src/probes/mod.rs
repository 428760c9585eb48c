//! The kernel programs by sensor family. `syscall` dispatches the watched
//! file, network and exec calls through the table in
//! `agentwatch_common::calls` to `file` and `net`; the others have hooks
//! of their own (process lifecycle, DNS, tamper, the LSM tier).
//!
//! Record layout of the `syscalls:` tracepoints (checked against tracefs
//! by the loader before attaching): `__syscall_nr` at 8, arguments at
//! 16 + 8*i, and on exit the return value at 16.
pub mod dns;
pub mod dns_egress;
pub mod file;
pub mod lsm;
pub mod net;
pub mod process;
pub mod syscall;
pub mod tamper;
pub mod tls;
pub mod written;

use agentwatch_common::WatchEntry;
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_task},
    programs::TracePointContext,
    EbpfContext,
};

use crate::shim::Ptr;

/// The current process's tgid and watch entry, if it is watched.
#[inline(always)]
pub(crate) fn watched_current() -> Option<(u32, WatchEntry)> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    crate::maps::watched(tgid).map(|w| (tgid, w))
}

#[inline(always)]
pub(crate) fn task() -> Ptr {
    unsafe { bpf_get_current_task() as Ptr }
}

/// The six argument slots of a `sys_enter_*` record, in one read (a
/// call with fewer arguments leaves the rest as whatever follows them; its
/// row never looks there). One helper call instead of one per argument.
#[inline(always)]
pub(crate) fn read_args(ctx: &TracePointContext) -> [u64; 6] {
    unsafe { ctx.read_at::<[u64; 6]>(16) }.unwrap_or([0; 6])
}

/// A watched call's argument slots, into `args` (zeroed by the caller):
/// the first `direct` loaded from the record, the rest, when the call's
/// record holds more (`held`), in one helper read. `direct` is a constant,
/// the entry program's `Entry::direct_args`: the kernel refuses to attach
/// a program whose loads reach past a record's end, so the program loads
/// directly only what its shortest record holds. Unrolled by hand: a loop
/// would index the context by a register, which the verifier refuses.
#[inline(always)]
pub(crate) fn read_entry_args(
    ctx: &TracePointContext,
    direct: usize,
    held: usize,
    args: &mut [u64; 6],
) {
    let p = unsafe { (ctx.as_ptr() as *const u64).add(2) };
    // SAFETY: each load is inside every record the program is attached to
    // (see above); the verifier checks it.
    unsafe {
        if direct > 0 {
            args[0] = core::ptr::read(p);
        }
        if direct > 1 {
            args[1] = core::ptr::read(p.add(1));
        }
        if direct > 2 {
            args[2] = core::ptr::read(p.add(2));
        }
        if direct > 3 {
            args[3] = core::ptr::read(p.add(3));
        }
        if direct > 4 {
            args[4] = core::ptr::read(p.add(4));
        }
        if direct > 5 {
            args[5] = core::ptr::read(p.add(5));
        }
    }
    if held > direct {
        // The slots past `direct`, up to the sixth (a record holding fewer
        // leaves whatever follows it; its row never looks there).
        let _ = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                args.as_mut_ptr().add(direct) as *mut core::ffi::c_void,
                ((6 - direct) * 8) as u32,
                p.add(direct) as *const core::ffi::c_void,
            )
        };
    }
}

/// Argument `i` of the syscall. The first is loaded directly; the others
/// go through a helper: one program serves every call, and a direct load
/// past the smallest record (unlink's, one argument) makes the kernel
/// refuse to attach it there.
#[inline(always)]
pub(crate) fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    if i == 0 {
        unsafe { core::ptr::read((ctx.as_ptr() as *const u64).add(2)) }
    } else {
        unsafe { ctx.read_at::<u64>(16 + 8 * i) }.unwrap_or(0)
    }
}

/// x86-64 `struct pt_regs` (uapi layout), in u64s.
pub(crate) mod regs {
    /// The syscall number.
    pub const ORIG_AX: usize = 15;
    /// The six arguments: di, si, dx, r10, r8, r9.
    pub const ARGS: [usize; 6] = [14, 13, 12, 7, 9, 8];
    pub const LEN: usize = 21;
}

/// The current task's user registers as its syscall entry saved them
/// (`bpf_task_pt_regs`), in one read.
#[inline(always)]
pub(crate) fn saved_regs() -> Option<[u64; regs::LEN]> {
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_task_pt_regs(
            aya_ebpf::helpers::generated::bpf_get_current_task_btf(),
        )
    } as *const [u64; regs::LEN];
    if r.is_null() {
        return None;
    }
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(r) }.ok()
}

#[inline(always)]
pub(crate) fn syscall_nr(ctx: &TracePointContext) -> u32 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(8) as *const i32) as u32 }
}

/// The return value at a `sys_exit_*` tracepoint.
#[inline(always)]
pub(crate) fn syscall_ret(ctx: &TracePointContext) -> i64 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const i64).add(2)) }
}

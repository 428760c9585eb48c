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

/// The first four argument slots of a `sys_enter_*` record, loaded
/// directly into `args`' first four: only for a program attached where
/// every record holds four arguments (the kernel refuses to attach a
/// program whose loads reach past a record's end). Word by word: an array
/// literal with zeros in it becomes a memset call.
#[inline(always)]
pub(crate) fn read_four_args(ctx: &TracePointContext, args: &mut [u64; 6]) {
    let p = unsafe { (ctx.as_ptr() as *const u64).add(2) };
    for (i, a) in args.iter_mut().take(4).enumerate() {
        // SAFETY: inside the record (see above); the verifier checks it.
        *a = unsafe { core::ptr::read(p.add(i)) };
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

#[inline(always)]
pub(crate) fn syscall_nr(ctx: &TracePointContext) -> u32 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(8) as *const i32) as u32 }
}

/// The return value at a `sys_exit_*` tracepoint.
#[inline(always)]
pub(crate) fn syscall_ret(ctx: &TracePointContext) -> i64 {
    unsafe { core::ptr::read((ctx.as_ptr() as *const i64).add(2)) }
}

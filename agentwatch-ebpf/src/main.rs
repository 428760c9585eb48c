//! agentwatch's kernel programs.
//!
//! Every entry point is a thin wrapper that calls a `try_` function and
//! always lets the traced operation proceed: these are sensors, they fail
//! open. Scoping is in the kernel: each program first looks the current
//! tgid up in `WATCHED` and returns at once when it is absent.
#![no_std]
#![no_main]

mod enforce;
mod event;
mod maps;
mod probes;
mod shim;

use probes::{dns, dns_egress, lsm, process, syscall, tamper, tls};

use aya_ebpf::{
    macros::{
        btf_tracepoint, cgroup_skb, cgroup_sock_addr, fentry, lsm, tracepoint, uprobe, uretprobe,
    },
    programs::{
        BtfTracePointContext, FEntryContext, LsmContext, ProbeContext, RetProbeContext,
        SkBuffContext, SockAddrContext, TracePointContext,
    },
};

/// tp_btf/sched_process_fork. Fails open.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = process::try_fork(&ctx);
    0
}

/// tp_btf/sched_process_exec. Fails open.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = process::try_exec(&ctx);
    0
}

/// tp_btf/sched_process_exit. Fails open.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = process::try_exit(&ctx);
    0
}

/// syscalls/sys_enter_{open,openat,unlink,rename,chmod,connect,...}: one
/// program attached to each watched call but those making a name. Fails
/// open.
#[tracepoint]
pub fn sys_enter(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_sys_enter(&ctx);
    0
}

/// syscalls/sys_enter_{openat,openat2} (`Entry::Opens`): the opens, apart
/// so that their name cache fits 6.1's verifier. Fails open.
#[tracepoint]
pub fn opens_enter(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_opens_enter(&ctx);
    0
}

/// syscalls/sys_enter_{open,creat} (`Entry::LegacyOpens`): the same
/// judgement, arguments read through a helper. Fails open.
#[tracepoint]
pub fn legacy_opens_enter(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_legacy_opens_enter(&ctx);
    0
}

/// syscalls/sys_enter_{link,linkat,mkdir,mkdirat,symlink,symlinkat,mknod,
/// mknodat}: the calls making a name, apart so that each entry program
/// stays within older verifiers' budget. Fails open.
#[tracepoint]
pub fn names_enter(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_names_enter(&ctx);
    0
}

/// syscalls/sys_exit_* of the same calls: the result. Fails open.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_sys_exit(&ctx);
    0
}

/// syscalls/sys_enter_{sendto,sendmsg,sendmmsg,write,writev}: DNS queries.
/// Fails open.
#[tracepoint]
pub fn dns_send(ctx: TracePointContext) -> u32 {
    let _ = dns::try_dns_send(&ctx);
    0
}

/// syscalls/sys_enter_{recvfrom,recvmsg}: note the buffer of a receive on a
/// DNS socket. Fails open.
#[tracepoint]
pub fn dns_recv_enter(ctx: TracePointContext) -> u32 {
    let _ = dns::try_dns_recv_enter(&ctx);
    0
}

/// syscalls/sys_exit_{recvfrom,recvmsg}: copy the DNS answer received.
/// Fails open.
#[tracepoint]
pub fn dns_recv_exit(ctx: TracePointContext) -> u32 {
    let _ = dns::try_dns_recv_exit(&ctx);
    0
}

/// syscalls/sys_enter_{kill,tkill,tgkill,pidfd_open}: tampering with
/// agentwatch by an agent with a policy; sys_enter_{,l,f}setxattr: file
/// capabilities set. Fails open (the call proceeds; the action is a
/// signal to the caller).
#[tracepoint]
pub fn tamper_enter(ctx: TracePointContext) -> u32 {
    let _ = tamper::try_tamper(&ctx);
    0
}

/// syscalls/sys_enter_<escape> (the `escape::ESCAPES` list, and clone3):
/// leaving the sandbox, by an agent with a policy. Fails open (the call
/// proceeds; the action is a signal to the caller).
#[tracepoint]
pub fn escape_enter(ctx: TracePointContext) -> u32 {
    let _ = tamper::try_escape(&ctx);
    0
}

/// syscalls/sys_exit_<escape> and sys_exit_{kill,tkill,tgkill,
/// pidfd_send_signal}: an escape the launch sandbox's seccomp filter
/// refused (its entry tracepoint never ran), or a signal Landlock's
/// scoping refused. Fails open: a lost record loses the alert, never the
/// refusal.
#[tracepoint]
pub fn tamper_exit(ctx: TracePointContext) -> u32 {
    let _ = tamper::try_tamper_exit(&ctx);
    0
}

/// tp_btf/sys_enter, every call of every process: an ia32 call (`int
/// 0x80`) by an agent with a policy, which no syscall tracepoint sees.
/// Attached only for agents the sandbox does not hold (its seccomp filter
/// admits x86-64 calls only). Fails open.
#[btf_tracepoint(function = "sys_enter")]
pub fn ia32_enter(ctx: BtfTracePointContext) -> i32 {
    let _ = tamper::try_ia32_enter(&ctx);
    0
}

/// Tail-called from `sys_exit` (never attached): a file call allowed at
/// entry by the names it gave that the launch sandbox's Landlock rules
/// refused by the real hierarchy. Fails open: a lost record loses the
/// alert; Landlock's refusal stands.
#[tracepoint]
pub fn landlock_exit(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_landlock_exit(&ctx);
    0
}

/// Tail-called (never attached) after a Landlock refusal: kills the tree
/// when the class's action is kill. Fails open.
#[tracepoint]
pub fn landlock_kill(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_landlock_kill(&ctx);
    0
}

/// Tail-called (never attached) at the exit of an open the entry left to
/// userspace: judges the file it reached and sends the exit. Fails open:
/// a lost record loses the judgement.
#[tracepoint]
pub fn opened_exit(ctx: TracePointContext) -> u32 {
    let _ = syscall::try_opened_exit(&ctx);
    0
}

/// syscalls/sys_exit_{mount,umount,move_mount,pivot_root}, every process:
/// the mount tree changed, so cached clean opens are judged again. Fails
/// closed in effect: a bump only ever forces a fresh judgement.
#[tracepoint]
pub fn mount_changed(_ctx: TracePointContext) -> u32 {
    let _ = probes::file::try_mount_changed();
    0
}

/// cgroup/connect4 on the cgroup-v2 root: refuses (EPERM) connects the
/// agent's policy denies. Fails open: anything unreadable is allowed.
#[cgroup_sock_addr(connect4)]
pub fn enforce_connect4(ctx: SockAddrContext) -> i32 {
    enforce::try_connect(&ctx, false).unwrap_or(1)
}

/// cgroup/connect6 on the cgroup-v2 root; as connect4. Fails open.
#[cgroup_sock_addr(connect6)]
pub fn enforce_connect6(ctx: SockAddrContext) -> i32 {
    enforce::try_connect(&ctx, true).unwrap_or(1)
}

/// cgroup/bind4 on the cgroup-v2 root: refuses (EPERM) binds the agent's
/// policy denies, before a listener exists. Fails open.
#[cgroup_sock_addr(bind4)]
pub fn enforce_bind4(ctx: SockAddrContext) -> i32 {
    enforce::try_bind(&ctx, false).unwrap_or(1)
}

/// cgroup/bind6 on the cgroup-v2 root; as bind4. Fails open.
#[cgroup_sock_addr(bind6)]
pub fn enforce_bind6(ctx: SockAddrContext) -> i32 {
    enforce::try_bind(&ctx, true).unwrap_or(1)
}

/// cgroup/sendmsg4 on the cgroup-v2 root: an agent's unconnected send to
/// port 53 tags its socket for the DNS egress hook; one to any other
/// address is refused (EPERM) as a connect there would be. Fails open:
/// anything unreadable is sent.
#[cgroup_sock_addr(sendmsg4)]
pub fn dns_sendmsg4(ctx: SockAddrContext) -> i32 {
    dns_egress::try_sendmsg(&ctx, false).unwrap_or(1)
}

/// cgroup/sendmsg6; as sendmsg4. Fails open.
#[cgroup_sock_addr(sendmsg6)]
pub fn dns_sendmsg6(ctx: SockAddrContext) -> i32 {
    dns_egress::try_sendmsg(&ctx, true).unwrap_or(1)
}

/// cgroup_skb/egress on the cgroup-v2 root: drops an agent's DNS query
/// for a name outside its profile (enforce mode, DNS action not alert).
/// Fails open: a packet it cannot read, or of no agent, goes.
#[cgroup_skb(egress)]
pub fn dns_egress(ctx: SkBuffContext) -> i32 {
    dns_egress::try_egress(&ctx).unwrap_or(1)
}

/// lsm/file_open(file): refuses an open decided "deny" at its syscall
/// entry, and a writing open the names allowed whose real file is a
/// guardrail (`lsm::try_open`). Fails open: no mark, no refusal.
#[lsm(hook = "file_open")]
pub fn deny_file_open(ctx: LsmContext) -> i32 {
    lsm::try_open(ctx.arg(0)).unwrap_or(0)
}

/// lsm/path_mknod(dir, dentry, mode, dev): mknod, and the creation step
/// of open(O_CREAT). Fails open, as every path hook below: a denied call
/// is refused, an allowed one judged again by its real path against the
/// guardrails (`lsm::try_recheck`); anything unreadable lets it go.
#[lsm(hook = "path_mknod")]
pub fn deny_path_mknod(ctx: LsmContext) -> i32 {
    let t = lsm::Target::at(ctx.arg(0), ctx.arg(1));
    lsm::try_recheck(t, lsm::Second::None).unwrap_or(0)
}

/// lsm/path_mkdir(dir, dentry, mode).
#[lsm(hook = "path_mkdir")]
pub fn deny_path_mkdir(ctx: LsmContext) -> i32 {
    let t = lsm::Target::at(ctx.arg(0), ctx.arg(1));
    lsm::try_recheck(t, lsm::Second::None).unwrap_or(0)
}

/// lsm/path_symlink(dir, dentry, old_name): the new name is judged.
#[lsm(hook = "path_symlink")]
pub fn deny_path_symlink(ctx: LsmContext) -> i32 {
    let t = lsm::Target::at(ctx.arg(0), ctx.arg(1));
    lsm::try_recheck(t, lsm::Second::None).unwrap_or(0)
}

/// lsm/path_unlink(dir, dentry).
#[lsm(hook = "path_unlink")]
pub fn deny_path_unlink(ctx: LsmContext) -> i32 {
    let t = lsm::Target::at(ctx.arg(0), ctx.arg(1));
    lsm::try_recheck(t, lsm::Second::None).unwrap_or(0)
}

/// lsm/path_rmdir(dir, dentry).
#[lsm(hook = "path_rmdir")]
pub fn deny_path_rmdir(ctx: LsmContext) -> i32 {
    let t = lsm::Target::at(ctx.arg(0), ctx.arg(1));
    lsm::try_recheck(t, lsm::Second::None).unwrap_or(0)
}

/// lsm/path_rename(old_dir, old_dentry, new_dir, new_dentry, flags): both
/// names are judged (an exchange moves both).
#[lsm(hook = "path_rename")]
pub fn deny_path_rename(ctx: LsmContext) -> i32 {
    let from = lsm::Target::at(ctx.arg(0), ctx.arg(1));
    let to = lsm::Target::at(ctx.arg(2), ctx.arg(3));
    lsm::try_recheck(from, lsm::Second::Same(to)).unwrap_or(0)
}

/// lsm/path_link(old_dentry, new_dir, new_dentry): link, linkat (a hard
/// link to a guardrail file, or a new name under one). Both names are in
/// `new_dir`'s mount (the kernel refuses a link across mounts first).
#[lsm(hook = "path_link")]
pub fn deny_path_link(ctx: LsmContext) -> i32 {
    let new_dir = ctx.arg(1);
    let from = lsm::Target::at(new_dir, ctx.arg(0));
    let to = lsm::Target::at(new_dir, ctx.arg(2));
    lsm::try_recheck(from, lsm::Second::Created(to)).unwrap_or(0)
}

/// lsm/path_chmod(path, mode): chmod, fchmod, fchmodat.
#[lsm(hook = "path_chmod")]
pub fn deny_path_chmod(ctx: LsmContext) -> i32 {
    lsm::try_recheck(lsm::Target::of_path(ctx.arg(0)), lsm::Second::None).unwrap_or(0)
}

/// lsm/path_chown(path, uid, gid): chown, fchown, lchown, fchownat.
#[lsm(hook = "path_chown")]
pub fn deny_path_chown(ctx: LsmContext) -> i32 {
    lsm::try_recheck(lsm::Target::of_path(ctx.arg(0)), lsm::Second::None).unwrap_or(0)
}

/// lsm/bprm_check_security: judges an exec before the old image goes.
/// Fails open: anything unreadable lets the exec proceed to
/// sched_process_exec's decision.
#[lsm(hook = "bprm_check_security")]
pub fn deny_bprm_check(ctx: LsmContext) -> i32 {
    lsm::try_bprm_check(&ctx).unwrap_or(0)
}

/// uprobe on OpenSSL's SSL_write and SSL_write_ex: an agent's plain text
/// on its way out (intent capture). Fails open: the call goes on.
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    let _ = tls::try_ssl_write(&ctx);
    0
}

/// uprobe on SSL_read: the buffer, for the return. Fails open.
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    let _ = tls::try_ssl_read(&ctx, false);
    0
}

/// uprobe on SSL_read_ex: the buffer and the count's address. Fails open.
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    let _ = tls::try_ssl_read(&ctx, true);
    0
}

/// uretprobe on SSL_read and SSL_read_ex: the plain text read. Fails open.
#[uretprobe]
pub fn ssl_read_ret(ctx: RetProbeContext) -> u32 {
    let _ = tls::try_ssl_read_ret(&ctx);
    0
}

/// Empty program attached to the same tracepoints by `cargo xtask bench`:
/// the floor cost of a hook.
#[tracepoint]
pub fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

/// Empty programs on the raw syscall tracepoints (`tp_btf/sys_enter`,
/// `tp_btf/sys_exit`), which fire for every call of every process: the
/// benchmark's second floor, what any eBPF sensor on syscalls costs
/// whichever kind of tracepoint it uses.
#[btf_tracepoint(function = "sys_enter")]
pub fn floor_raw_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// See `floor_raw_enter`.
#[btf_tracepoint(function = "sys_exit")]
pub fn floor_raw_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// Empty tp_btf program for the floor of the sched hooks.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn floor_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// `agentwatch doctor` probe: does this kernel load BPF LSM programs?
/// lsm/file_open; allows everything.
#[lsm(hook = "file_open")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}

/// `agentwatch doctor` probe: does this kernel load fentry programs?
#[fentry(function = "do_unlinkat")]
pub fn probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}

/// `agentwatch doctor` probe: cgroup/connect4; allows everything.
#[cgroup_sock_addr(connect4)]
pub fn probe_connect4(_ctx: SockAddrContext) -> i32 {
    1
}

/// `agentwatch doctor` probe: is bpf_send_signal usable from a syscall
/// tracepoint? Loaded, never attached.
#[tracepoint]
pub fn probe_send_signal(_ctx: TracePointContext) -> u32 {
    unsafe { aya_ebpf::helpers::generated::bpf_send_signal(0) };
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/* CO-RE accessors for agentwatch's Rust eBPF programs.
 *
 * Rust eBPF has no field relocations, so every read of a kernel structure
 * goes through one of these small getters; clang emits the relocations
 * (BPF_CORE_READ) and bpf-linker carries them into the final object. Each
 * getter reads one thing and returns 0 (or NULL) when the read fails, which
 * callers treat as "unknown": nothing here can make a program fail closed.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define SHIM __attribute__((always_inline))

SHIM __u32 aw_task_tgid(struct task_struct *t) { return BPF_CORE_READ(t, tgid); }
SHIM __u32 aw_task_pid(struct task_struct *t) { return BPF_CORE_READ(t, pid); }
SHIM __u32 aw_task_ppid(struct task_struct *t) { return BPF_CORE_READ(t, real_parent, tgid); }

/* Exit status as wait() reports it; the group code when the whole group exits. */
SHIM __s32 aw_task_exit_code(struct task_struct *t)
{
	int group = BPF_CORE_READ(t, signal, group_exit_code);
	return group ? group : BPF_CORE_READ(t, exit_code);
}

/* t's process group id (PIDTYPE_PGID = 2), in the initial pid namespace. */
SHIM __s32 aw_task_pgid(struct task_struct *t) { return BPF_CORE_READ(t, signal, pids[2], numbers[0].nr); }

/* Threads still alive in t's thread group (0 once the last one is exiting). */
SHIM __s32 aw_task_live_threads(struct task_struct *t) { return BPF_CORE_READ(t, signal, live.counter); }

/* The task's file table (shared by threads, and by a clone(CLONE_FILES)). */
SHIM void *aw_task_files(struct task_struct *t) { return BPF_CORE_READ(t, files); }

/* Whether the current syscall is an ia32 one (x86's TS_COMPAT, 0x0002:
 * `int 0x80`, also from a 64-bit process): its number and registers follow
 * that ABI. The classic syscall tracepoints never fire for such calls; the
 * raw ones do. The kernel clears the bit on the return to user mode, after
 * signal delivery, so a thread killed in such a call still has it set. */
SHIM __u32 aw_current_compat(void)
{
	struct task_struct *t = bpf_get_current_task_btf();
	return t->thread_info.status & 0x0002;
}

SHIM struct path *aw_task_pwd(struct task_struct *t)
{
	struct fs_struct *fs = BPF_CORE_READ(t, fs);
	if (!fs)
		return 0;
	return (struct path *)((char *)fs + bpf_core_field_offset(struct fs_struct, pwd));
}

/* The current task's open file `fd`. The task pointer is the kernel's
 * typed one (bpf_get_current_task_btf), so files, fdt and its head are
 * plain loads the verifier guards (a faulting one reads 0), not three
 * probe reads; the fd array's slot, at a variable index, still takes one.
 * Not zero-initialised: clang turns `= {}` into a call to a byte-wise
 * memset subprogram. */
SHIM struct file *aw_current_fd(__u32 fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct files_struct *files = t->files;
	struct fdtable *fdt;
	struct file **fds;
	struct file *f;
	if (!files)
		return 0;
	fdt = files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return 0;
	return f;
}

SHIM struct path *aw_file_path(struct file *f)
{
	return (struct path *)((char *)f + bpf_core_field_offset(struct file, f_path));
}

/* What a clean open's cache entry is keyed and stamped by (see
 * OpenedKey/OpenedStamp): out[0] mount, [1] dentry, [2] its parent,
 * [3] its name's hash and length, [4] its inode. struct path and the
 * dentry's d_parent, d_name, d_inode are each read at once where the
 * kernel lays them out side by side (every kernel so far); else field by
 * field. Fields that could not be read are 0. */
SHIM void aw_file_stamp(struct file *f, __u64 *out)
{
	struct path *p = aw_file_path(f);
	__u32 dp = bpf_core_field_offset(struct dentry, d_parent);
	/* Filled by the reads below, never zero-initialised (see aw_current_fd). */
	struct { __u64 parent, hash_len, name, inode; } d;
	struct { __u64 mnt, dentry; } pa;
	struct dentry *dentry;
	if (bpf_core_field_offset(struct path, mnt) == 0 &&
	    bpf_core_field_offset(struct path, dentry) == 8) {
		bpf_probe_read_kernel(&pa, sizeof(pa), p);
	} else {
		pa.mnt = (__u64)BPF_CORE_READ(p, mnt);
		pa.dentry = (__u64)BPF_CORE_READ(p, dentry);
	}
	dentry = (struct dentry *)pa.dentry;
	if (bpf_core_field_offset(struct dentry, d_name) == dp + 8 &&
	    bpf_core_field_offset(struct dentry, d_inode) == dp + 24) {
		bpf_probe_read_kernel(&d, sizeof(d), (char *)dentry + dp);
	} else {
		d.parent = (__u64)BPF_CORE_READ(dentry, d_parent);
		d.hash_len = BPF_CORE_READ(dentry, d_name.hash_len);
		d.inode = (__u64)BPF_CORE_READ(dentry, d_inode);
	}
	out[0] = pa.mnt;
	out[1] = pa.dentry;
	out[2] = d.parent;
	out[3] = d.hash_len;
	out[4] = d.inode;
}

SHIM __u64 aw_file_ino(struct file *f) { return BPF_CORE_READ(f, f_inode, i_ino); }
/* The file type bits of the inode (S_IFMT of i_mode). */
SHIM __u16 aw_file_type(struct file *f) { return BPF_CORE_READ(f, f_inode, i_mode) & 0170000; }
/* Hard links to the inode: 0 for a memfd or a deleted file. */
SHIM __u32 aw_file_nlink(struct file *f) { return BPF_CORE_READ(f, f_inode, i_nlink); }
/* FMODE_WRITE: the file was opened for writing. */
SHIM __u32 aw_file_writable(struct file *f) { return BPF_CORE_READ(f, f_mode) & 0x2; }
/* The pid a procfs file belongs to (container_of(inode, proc_inode)). */
SHIM __s32 aw_proc_file_pid(struct file *f)
{
	struct inode *i = BPF_CORE_READ(f, f_inode);
	struct proc_inode *pi;
	if (!i)
		return 0;
	pi = (struct proc_inode *)((char *)i - bpf_core_field_offset(struct proc_inode, vfs_inode));
	return BPF_CORE_READ(pi, pid, numbers[0].nr);
}
SHIM __u32 aw_file_dev(struct file *f) { return BPF_CORE_READ(f, f_inode, i_sb, s_dev); }
SHIM struct sock *aw_file_sock(struct file *f)
{
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : 0;
}

SHIM struct dentry *aw_path_dentry(struct path *p) { return BPF_CORE_READ(p, dentry); }
SHIM struct vfsmount *aw_path_mnt(struct path *p) { return BPF_CORE_READ(p, mnt); }
SHIM struct dentry *aw_dentry_parent(struct dentry *d) { return BPF_CORE_READ(d, d_parent); }
SHIM const unsigned char *aw_dentry_name(struct dentry *d) { return BPF_CORE_READ(d, d_name.name); }
SHIM struct dentry *aw_vfsmount_root(struct vfsmount *m) { return BPF_CORE_READ(m, mnt_root); }

/* container_of(vfsmount, struct mount, mnt) */
SHIM struct mount *aw_real_mount(struct vfsmount *m)
{
	return (struct mount *)((char *)m - bpf_core_field_offset(struct mount, mnt));
}
SHIM struct mount *aw_mount_parent(struct mount *m) { return BPF_CORE_READ(m, mnt_parent); }
SHIM struct dentry *aw_mount_mountpoint(struct mount *m) { return BPF_CORE_READ(m, mnt_mountpoint); }
SHIM struct vfsmount *aw_mount_vfsmount(struct mount *m)
{
	return (struct vfsmount *)((char *)m + bpf_core_field_offset(struct mount, mnt));
}

SHIM struct file *aw_bprm_file(struct linux_binprm *b) { return BPF_CORE_READ(b, file); }
SHIM const char *aw_bprm_filename(struct linux_binprm *b) { return BPF_CORE_READ(b, filename); }
/* A script: binfmt_script pointed interp at the interpreter's name. */
SHIM __u32 aw_bprm_is_script(struct linux_binprm *b)
{
	return BPF_CORE_READ(b, interp) != BPF_CORE_READ(b, filename);
}
SHIM __u64 aw_task_arg_start(struct task_struct *t) { return BPF_CORE_READ(t, mm, arg_start); }
SHIM __u64 aw_task_arg_end(struct task_struct *t) { return BPF_CORE_READ(t, mm, arg_end); }

SHIM __u16 aw_sock_family(struct sock *s) { return BPF_CORE_READ(s, __sk_common.skc_family); }
SHIM __u32 aw_sock_saddr4(struct sock *s) { return BPF_CORE_READ(s, __sk_common.skc_rcv_saddr); }
SHIM __u32 aw_sock_daddr4(struct sock *s) { return BPF_CORE_READ(s, __sk_common.skc_daddr); }
/* Local port in host order; remote port in network order, as the kernel keeps them. */
SHIM __u16 aw_sock_sport(struct sock *s) { return BPF_CORE_READ(s, __sk_common.skc_num); }
SHIM __u16 aw_sock_dport(struct sock *s) { return BPF_CORE_READ(s, __sk_common.skc_dport); }
SHIM void aw_sock_saddr6(struct sock *s, __u8 *out)
{
	bpf_core_read(out, 16, &s->__sk_common.skc_v6_rcv_saddr);
}
SHIM void aw_sock_daddr6(struct sock *s, __u8 *out)
{
	bpf_core_read(out, 16, &s->__sk_common.skc_v6_daddr);
}
/* The bound address of a unix socket (shared by accepted sockets), or NULL. */
SHIM struct unix_address *aw_unix_addr(struct sock *s) { return BPF_CORE_READ((struct unix_sock *)s, addr); }
SHIM __s32 aw_unix_addr_len(struct unix_address *a) { return BPF_CORE_READ(a, len); }
SHIM void *aw_unix_addr_name(struct unix_address *a)
{
	return (char *)a + bpf_core_field_offset(struct unix_address, name);
}

/* Bounded reads. The clamp and mask sit right before the helper call,
 * behind a compiler barrier, so no verifier (6.1's included) loses the
 * size's bound through a stack spill (barrier_var is libbpf's). */

SHIM long aw_read_user_max127(void *dst, __u64 len, const void *src)
{
	__u32 n = len > 112 ? 112 : len;
	barrier_var(n);
	n &= 127;
	return bpf_probe_read_user(dst, n, src);
}

SHIM long aw_read_kernel_max127(void *dst, __u64 len, const void *src)
{
	__u32 n = len > 112 ? 112 : len;
	barrier_var(n);
	n &= 127;
	return bpf_probe_read_kernel(dst, n, src);
}

SHIM long aw_read_user_max2047(void *dst, __u64 len, const void *src)
{
	__u32 n = len > 2047 ? 2047 : len;
	barrier_var(n);
	n &= 2047;
	return bpf_probe_read_user(dst, n, src);
}

/* One byte of an event's string data (DATA_LEN > 8192): the mask is
 * applied after a compiler barrier so 6.1's verifier sees the bound. */
SHIM __u8 aw_data_byte(const __u8 *data, __u32 idx)
{
	barrier_var(idx);
	idx &= 8191;
	return data[idx];
}

/* The aligned 8 bytes of an event's string data at idx (rounded down to
 * a multiple of 8), little-endian: byte idx in the low bits. */
SHIM __u64 aw_data_word(const __u8 *data, __u32 idx)
{
	barrier_var(idx);
	idx &= 8184;
	return *(const __u64 *)(data + idx);
}

/* The 8-byte words of a name of `len` bytes, at most `max`. The clamp
 * comes after the barrier, so the compiler keeps it and the verifier
 * sees the bound on the very register a loop counts to (6.1's does not
 * carry `len`'s bound through the division). */
SHIM __u32 aw_name_words(__u32 len, __u32 max)
{
	__u32 n = (len + 7) >> 3;
	barrier_var(n);
	if (n > max)
		n = max;
	return n;
}

/* *p += 1 as one BPF atomic add (Rust's core has no atomic RMW for BPF). */
SHIM void aw_atomic_inc(__u64 *p) { __sync_fetch_and_add(p, 1); }

/* *p |= v and *p &= v, each one BPF atomic (other CPUs set other bits). */
SHIM void aw_atomic_or(__u64 *p, __u64 v) { __sync_fetch_and_or(p, v); }
SHIM void aw_atomic_and(__u64 *p, __u64 v) { __sync_fetch_and_and(p, v); }

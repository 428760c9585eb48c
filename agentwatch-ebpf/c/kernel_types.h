/* Minimal views of the kernel structures agentwatch reads.
 *
 * Only field names matter: every struct is marked preserve_access_index, so
 * clang records a CO-RE relocation for each access and the loader (aya)
 * rewrites the offset for the running kernel from its BTF. Field order and
 * sizes here need not match any kernel; no offset is fixed at build time.
 */
#pragma once

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u32 __be32;
typedef __u16 __be16;
typedef __u32 __wsum;

#define PAI __attribute__((preserve_access_index))

struct qstr { __u64 hash_len; const unsigned char *name; } PAI;
struct dentry { struct dentry *d_parent; struct qstr d_name; struct inode *d_inode; } PAI;
struct vfsmount { struct dentry *mnt_root; } PAI;
struct mount { struct mount *mnt_parent; struct dentry *mnt_mountpoint; struct vfsmount mnt; } PAI;
struct path { struct vfsmount *mnt; struct dentry *dentry; } PAI;
struct super_block { __u32 s_dev; } PAI;
struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
	unsigned short i_mode;
	unsigned int i_nlink;
} PAI;
struct file { struct path f_path; struct inode *f_inode; void *private_data; unsigned int f_mode; } PAI;
/* procfs: the pid a /proc/PID/... inode belongs to. */
struct upid { int nr; } PAI;
struct pid { struct upid numbers[1]; } PAI;
struct proc_inode { struct pid *pid; struct inode vfs_inode; } PAI;
struct fdtable { unsigned int max_fds; struct file **fd; } PAI;
struct files_struct { struct fdtable *fdt; } PAI;
struct fs_struct { struct path pwd; } PAI;
struct mm_struct { unsigned long arg_start; unsigned long arg_end; } PAI;
typedef struct { int counter; } atomic_t;
/* pids[] by PIDTYPE_PID, _TGID, _PGID, _SID. */
struct signal_struct { atomic_t live; int group_exit_code; unsigned int flags; struct pid *pids[4]; } PAI;
/* x86: status carries TS_COMPAT during an ia32 syscall. */
struct thread_info { __u32 status; } PAI;
struct task_struct {
	struct thread_info thread_info;
	int pid;
	int tgid;
	int exit_code;
	struct task_struct *real_parent;
	struct fs_struct *fs;
	struct files_struct *files;
	struct mm_struct *mm;
	struct signal_struct *signal;
} PAI;
struct linux_binprm { struct file *file; const char *filename; const char *interp; } PAI;

struct in6_addr { __u8 s6_addr[16]; } PAI;
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} PAI;
struct sock { struct sock_common __sk_common; } PAI;
struct socket { struct sock *sk; } PAI;
struct sockaddr_un { unsigned short sun_family; char sun_path[108]; };
struct unix_address { int len; struct sockaddr_un name[]; } PAI;
struct unix_sock { struct sock sk; struct unix_address *addr; } PAI;

//! Declarations of the CO-RE accessors in `c/shim.c`, and the path walk
//! built on them. Pointers here are kernel addresses handled as opaque
//! values: every dereference happens inside a shim through a probe read.
use core::ffi::c_void;

pub type Ptr = *const c_void;

unsafe extern "C" {
    pub fn aw_task_tgid(t: Ptr) -> u32;
    pub fn aw_task_pid(t: Ptr) -> u32;
    pub fn aw_task_ppid(t: Ptr) -> u32;
    pub fn aw_task_exit_code(t: Ptr) -> i32;
    pub fn aw_task_live_threads(t: Ptr) -> i32;
    pub fn aw_task_pgid(t: Ptr) -> i32;
    pub fn aw_task_files(t: Ptr) -> Ptr;
    pub fn aw_task_pwd(t: Ptr) -> Ptr;
    pub fn aw_current_compat() -> u32;
    pub fn aw_current_fd(fd: u32) -> Ptr;
    pub fn aw_task_arg_start(t: Ptr) -> u64;
    pub fn aw_task_arg_end(t: Ptr) -> u64;
    pub fn aw_file_path(f: Ptr) -> Ptr;
    pub fn aw_file_stamp(f: Ptr, out: *mut u64);
    pub fn aw_file_ino(f: Ptr) -> u64;
    pub fn aw_file_dev(f: Ptr) -> u32;
    pub fn aw_file_type(f: Ptr) -> u16;
    pub fn aw_file_nlink(f: Ptr) -> u32;
    pub fn aw_file_writable(f: Ptr) -> u32;
    pub fn aw_proc_file_pid(f: Ptr) -> i32;
    pub fn aw_file_sock(f: Ptr) -> Ptr;
    pub fn aw_path_dentry(p: Ptr) -> Ptr;
    pub fn aw_path_mnt(p: Ptr) -> Ptr;
    pub fn aw_dentry_parent(d: Ptr) -> Ptr;
    pub fn aw_dentry_name(d: Ptr) -> *const u8;
    pub fn aw_vfsmount_root(m: Ptr) -> Ptr;
    pub fn aw_real_mount(m: Ptr) -> Ptr;
    pub fn aw_mount_parent(m: Ptr) -> Ptr;
    pub fn aw_mount_mountpoint(m: Ptr) -> Ptr;
    pub fn aw_mount_vfsmount(m: Ptr) -> Ptr;
    pub fn aw_bprm_file(b: Ptr) -> Ptr;
    pub fn aw_bprm_filename(b: Ptr) -> *const u8;
    pub fn aw_bprm_is_script(b: Ptr) -> u32;
    pub fn aw_sock_family(s: Ptr) -> u16;
    pub fn aw_sock_saddr4(s: Ptr) -> u32;
    pub fn aw_sock_daddr4(s: Ptr) -> u32;
    pub fn aw_sock_sport(s: Ptr) -> u16;
    pub fn aw_sock_dport(s: Ptr) -> u16;
    pub fn aw_sock_saddr6(s: Ptr, out: *mut u8);
    pub fn aw_sock_daddr6(s: Ptr, out: *mut u8);
    pub fn aw_unix_addr(s: Ptr) -> Ptr;
    pub fn aw_unix_addr_len(a: Ptr) -> i32;
    pub fn aw_unix_addr_name(a: Ptr) -> Ptr;
    pub fn aw_read_user_max127(dst: *mut u8, len: u64, src: Ptr) -> i64;
    pub fn aw_read_kernel_max127(dst: *mut u8, len: u64, src: Ptr) -> i64;
    pub fn aw_read_user_max2047(dst: *mut u8, len: u64, src: Ptr) -> i64;
    pub fn aw_data_byte(data: *const u8, idx: u32) -> u8;
    pub fn aw_data_word(data: *const u8, idx: u32) -> u64;
    pub fn aw_name_words(len: u32, max: u32) -> u32;
    pub fn aw_atomic_inc(p: *mut u64);
    pub fn aw_atomic_or(p: *mut u64, v: u64);
    pub fn aw_atomic_and(p: *mut u64, v: u64);
}

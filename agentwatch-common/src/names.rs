//! The names of the eBPF object's maps and programs, as userspace looks
//! them up. The kernel side names them by its statics and functions
//! (`agentwatch-ebpf/src/maps.rs`, `main.rs`); `agentwatch`'s contract
//! tests parse the built object and fail when a name here is missing
//! from it or the object has one this table lacks.

/// Map names.
pub mod map {
    pub const EVENTS: &str = "EVENTS";
    pub const SCRATCH: &str = "SCRATCH";
    pub const WATCHED: &str = "WATCHED";
    pub const WATCH_GATE: &str = "WATCH_GATE";
    pub const CGROUP_SELECTORS: &str = "CGROUP_SELECTORS";
    pub const UID_SELECTORS: &str = "UID_SELECTORS";
    pub const EXE_SELECTORS: &str = "EXE_SELECTORS";
    pub const DNS_SOCKETS: &str = "DNS_SOCKETS";
    pub const DNS_RECV: &str = "DNS_RECV";
    pub const RETRY_PATHS: &str = "RETRY_PATHS";
    pub const WRITTEN: &str = "WRITTEN";
    pub const LOSS: &str = "LOSS";
    pub const CONFIG: &str = "CONFIG";
    pub const AGENT_POLICY: &str = "AGENT_POLICY";
    pub const AGENT_STATE: &str = "AGENT_STATE";
    pub const AGENT_PAUSED: &str = "AGENT_PAUSED";
    pub const DFA_CLASS: &str = "DFA_CLASS";
    pub const DFA_TRANS: &str = "DFA_TRANS";
    pub const DFA_ACCEPT: &str = "DFA_ACCEPT";
    pub const NET_PORT: &str = "NET_PORT";
    pub const NET_ANY_PORT: &str = "NET_ANY_PORT";
    pub const DECIDED: &str = "DECIDED";
    pub const PENDING_EXIT: &str = "PENDING_EXIT";
    pub const WAKE_EXIT: &str = "WAKE_EXIT";
    pub const READER_ASLEEP: &str = "READER_ASLEEP";
    pub const DNS_ALLOW: &str = "DNS_ALLOW";
    pub const DNS_SCAN: &str = "DNS_SCAN";
    pub const DNS_COOKIES: &str = "DNS_COOKIES";
    pub const DEFERRED: &str = "DEFERRED";
    pub const DENY_NOW: &str = "DENY_NOW";
    pub const CLEAN_OPENS: &str = "CLEAN_OPENS";
    pub const EPOCHS: &str = "EPOCHS";
    pub const WALK: &str = "WALK";
    pub const NAME_VERDICTS: &str = "NAME_VERDICTS";
    pub const JUMPS: &str = "JUMPS";
    pub const INTENT: &str = "INTENT";
    pub const TLS_READS: &str = "TLS_READS";
    pub const TLS_IGNORED: &str = "TLS_IGNORED";
}

/// Program names.
pub mod program {
    pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
    pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    pub const SYS_ENTER: &str = "sys_enter";
    pub const NAMES_ENTER: &str = "names_enter";
    pub const OPENS_ENTER: &str = "opens_enter";
    pub const LEGACY_OPENS_ENTER: &str = "legacy_opens_enter";
    pub const SYS_EXIT: &str = "sys_exit";
    pub const DNS_SEND: &str = "dns_send";
    pub const SSL_WRITE: &str = "ssl_write";
    pub const SSL_READ: &str = "ssl_read";
    pub const SSL_READ_EX: &str = "ssl_read_ex";
    pub const SSL_READ_RET: &str = "ssl_read_ret";
    pub const DNS_RECV_ENTER: &str = "dns_recv_enter";
    pub const DNS_RECV_EXIT: &str = "dns_recv_exit";
    pub const TAMPER_ENTER: &str = "tamper_enter";
    pub const TAMPER_EXIT: &str = "tamper_exit";
    pub const LANDLOCK_EXIT: &str = "landlock_exit";
    pub const LANDLOCK_KILL: &str = "landlock_kill";
    pub const OPENED_EXIT: &str = "opened_exit";
    pub const ESCAPE_ENTER: &str = "escape_enter";
    pub const IA32_ENTER: &str = "ia32_enter";
    pub const MOUNT_CHANGED: &str = "mount_changed";
    pub const ENFORCE_CONNECT4: &str = "enforce_connect4";
    pub const ENFORCE_CONNECT6: &str = "enforce_connect6";
    pub const ENFORCE_BIND4: &str = "enforce_bind4";
    pub const ENFORCE_BIND6: &str = "enforce_bind6";
    pub const DNS_SENDMSG4: &str = "dns_sendmsg4";
    pub const DNS_SENDMSG6: &str = "dns_sendmsg6";
    pub const DNS_EGRESS: &str = "dns_egress";
    pub const DENY_FILE_OPEN: &str = "deny_file_open";
    pub const DENY_PATH_MKNOD: &str = "deny_path_mknod";
    pub const DENY_PATH_UNLINK: &str = "deny_path_unlink";
    pub const DENY_PATH_RMDIR: &str = "deny_path_rmdir";
    pub const DENY_PATH_RENAME: &str = "deny_path_rename";
    pub const DENY_PATH_LINK: &str = "deny_path_link";
    pub const DENY_PATH_CHMOD: &str = "deny_path_chmod";
    pub const DENY_PATH_CHOWN: &str = "deny_path_chown";
    pub const DENY_PATH_MKDIR: &str = "deny_path_mkdir";
    pub const DENY_PATH_SYMLINK: &str = "deny_path_symlink";
    pub const DENY_BPRM_CHECK: &str = "deny_bprm_check";
    pub const FLOOR_TRACEPOINT: &str = "floor_tracepoint";
    pub const FLOOR_RAW_ENTER: &str = "floor_raw_enter";
    pub const FLOOR_RAW_EXIT: &str = "floor_raw_exit";
    pub const FLOOR_BTF: &str = "floor_btf";
    pub const PROBE_LSM: &str = "probe_lsm";
    pub const PROBE_FENTRY: &str = "probe_fentry";
    pub const PROBE_CONNECT4: &str = "probe_connect4";
    pub const PROBE_SEND_SIGNAL: &str = "probe_send_signal";
}

/// Every map of the object.
pub const MAPS: &[&str] = &[
    map::EVENTS,
    map::SCRATCH,
    map::WATCHED,
    map::WATCH_GATE,
    map::CGROUP_SELECTORS,
    map::UID_SELECTORS,
    map::EXE_SELECTORS,
    map::DNS_SOCKETS,
    map::DNS_RECV,
    map::RETRY_PATHS,
    map::WRITTEN,
    map::LOSS,
    map::CONFIG,
    map::AGENT_POLICY,
    map::AGENT_STATE,
    map::AGENT_PAUSED,
    map::DFA_CLASS,
    map::DFA_TRANS,
    map::DFA_ACCEPT,
    map::NET_PORT,
    map::NET_ANY_PORT,
    map::DECIDED,
    map::PENDING_EXIT,
    map::WAKE_EXIT,
    map::READER_ASLEEP,
    map::DNS_ALLOW,
    map::DNS_SCAN,
    map::DNS_COOKIES,
    map::DEFERRED,
    map::DENY_NOW,
    map::CLEAN_OPENS,
    map::EPOCHS,
    map::WALK,
    map::NAME_VERDICTS,
    map::JUMPS,
    map::INTENT,
    map::TLS_READS,
    map::TLS_IGNORED,
];

/// Every program of the object.
pub const PROGRAMS: &[&str] = &[
    program::SCHED_PROCESS_FORK,
    program::SCHED_PROCESS_EXEC,
    program::SCHED_PROCESS_EXIT,
    program::SYS_ENTER,
    program::NAMES_ENTER,
    program::OPENS_ENTER,
    program::LEGACY_OPENS_ENTER,
    program::SYS_EXIT,
    program::DNS_SEND,
    program::SSL_WRITE,
    program::SSL_READ,
    program::SSL_READ_EX,
    program::SSL_READ_RET,
    program::DNS_RECV_ENTER,
    program::DNS_RECV_EXIT,
    program::TAMPER_ENTER,
    program::TAMPER_EXIT,
    program::LANDLOCK_EXIT,
    program::LANDLOCK_KILL,
    program::OPENED_EXIT,
    program::ESCAPE_ENTER,
    program::IA32_ENTER,
    program::MOUNT_CHANGED,
    program::ENFORCE_CONNECT4,
    program::ENFORCE_CONNECT6,
    program::ENFORCE_BIND4,
    program::ENFORCE_BIND6,
    program::DNS_SENDMSG4,
    program::DNS_SENDMSG6,
    program::DNS_EGRESS,
    program::DENY_FILE_OPEN,
    program::DENY_PATH_MKNOD,
    program::DENY_PATH_UNLINK,
    program::DENY_PATH_RMDIR,
    program::DENY_PATH_RENAME,
    program::DENY_PATH_LINK,
    program::DENY_PATH_CHMOD,
    program::DENY_PATH_CHOWN,
    program::DENY_PATH_MKDIR,
    program::DENY_PATH_SYMLINK,
    program::DENY_BPRM_CHECK,
    program::FLOOR_TRACEPOINT,
    program::FLOOR_RAW_ENTER,
    program::FLOOR_RAW_EXIT,
    program::FLOOR_BTF,
    program::PROBE_LSM,
    program::PROBE_FENTRY,
    program::PROBE_CONNECT4,
    program::PROBE_SEND_SIGNAL,
];

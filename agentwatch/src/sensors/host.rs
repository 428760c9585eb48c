//! Host prerequisites the sensors need: tracefs mounted, the syscall
//! tracepoint record layout we compiled for, the cgroup2 mount.
use std::{fs, path::PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HostError {
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed ({0}); run: mount -t tracefs tracefs /sys/kernel/tracing")]
    NoTracefs(String),
    #[error(
        "this kernel has no syscall tracepoints ({0} missing); it needs CONFIG_FTRACE_SYSCALLS=y"
    )]
    NoSyscallTracepoints(String),
    #[error("syscall tracepoint {tracepoint} has field {field} at offset {found}, expected {expected}; this kernel's layout is not supported")]
    Layout {
        tracepoint: String,
        field: String,
        found: usize,
        expected: usize,
    },
    #[error("syscall tracepoint {tracepoint} records {found} arguments, the call table says {expected}; this kernel's layout is not supported (the entry programs load arguments from the record as the table says)")]
    Arity {
        tracepoint: String,
        found: usize,
        expected: usize,
    },
}

/// This mount namespace's mounts: (mount point, filesystem type).
pub(super) fn mounts() -> Vec<(String, String)> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// mountinfo lines: `id parent major:minor root mount-point options ...
/// - fstype source super-options`.
fn parse_mountinfo(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some((unescape_mount_field(point), unescape_mount_field(fstype)))
        })
        .collect()
}

/// A mountinfo field with the kernel's octal escapes decoded: it writes
/// a space, tab, newline and backslash in a path as `\040`, `\011`,
/// `\012` and `\134`.
fn unescape_mount_field(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount point of the cgroup v2 hierarchy (never assumed: hybrid hosts
/// mount it at /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|(_, t)| t == "cgroup2")
        .map(|(m, _)| PathBuf::from(m))
}

/// Returns tracefs's mount point, mounting it if needed.
pub fn ensure_tracefs() -> Result<PathBuf, HostError> {
    if let Some((m, _)) = mounts().into_iter().find(|(_, t)| t == "tracefs") {
        return Ok(PathBuf::from(m));
    }
    let target = PathBuf::from("/sys/kernel/tracing");
    nix::mount::mount(
        Some("tracefs"),
        &target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| HostError::NoTracefs(e.to_string()))?;
    Ok(target)
}

/// A tracepoint format file's fields as (name, offset), from lines like
/// `field:const char * filename;\toffset:24;\tsize:8;\tsigned:0;`.
fn format_fields(format: &str) -> impl Iterator<Item = (&str, usize)> {
    format.lines().filter_map(|l| {
        let decl = l.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?.trim_start_matches('*');
        let offset = rest
            .trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()?;
        Some((name, offset))
    })
}

/// Offset of `field` in a tracepoint's format file.
fn field_offset(format: &str, field: &str) -> Option<usize> {
    format_fields(format).find_map(|(name, offset)| (name == field).then_some(offset))
}

/// How many syscall arguments a `sys_enter_*` format file declares: its
/// fields at offset 16 and beyond.
fn record_args(format: &str) -> usize {
    format_fields(format)
        .filter(|&(_, offset)| offset >= 16)
        .count()
}

/// Checks that syscall tracepoint records have the layout the programs
/// read (`__syscall_nr` at 8, arguments from 16, `ret` at 16), and that
/// each watched call's record holds the arguments its table row says (its
/// entry program loads some of them directly; a call this kernel lacks is
/// skipped here as at attach).
pub fn check_syscall_layout(tracefs: &std::path::Path) -> Result<(), HostError> {
    let dir = tracefs.join("events/syscalls");
    let read = |name: &str| {
        fs::read_to_string(dir.join(name).join("format"))
            .map_err(|_| HostError::NoSyscallTracepoints(format!("events/syscalls/{name}")))
    };
    let checks = [
        ("sys_enter_openat", "__syscall_nr", 8),
        ("sys_enter_openat", "dfd", 16),
        ("sys_enter_openat", "filename", 24),
        ("sys_exit_openat", "ret", 16),
    ];
    for (tp, field, expected) in checks {
        let format = read(tp)?;
        let found = field_offset(&format, field).unwrap_or(usize::MAX);
        if found != expected {
            return Err(HostError::Layout {
                tracepoint: tp.into(),
                field: field.into(),
                found,
                expected,
            });
        }
    }
    for call in agentwatch_common::calls::CALLS {
        let tp = format!("sys_enter_{}", call.name);
        let Ok(format) = fs::read_to_string(dir.join(&tp).join("format")) else {
            continue;
        };
        let found = record_args(&format);
        if found < usize::from(call.args) {
            return Err(HostError::Arity {
                tracepoint: tp,
                found,
                expected: call.args.into(),
            });
        }
    }
    Ok(())
}

/// Whether this kernel runs ia32 system calls (`int 0x80`) made by a
/// 64-bit process (x86-64 with IA32 emulation on). The classic syscall
/// tracepoints never fire for those calls, so they go past the sensors.
/// Tried in a forked child: `int 0x80` `getpid` (ia32 number 20) answers
/// the child's pid where the kernel runs them, and faults where it does not.
#[cfg(target_arch = "x86_64")]
pub fn runs_ia32_syscalls() -> bool {
    use nix::{
        sys::wait::{waitpid, WaitStatus},
        unistd::{fork, ForkResult},
    };
    const IA32_GETPID: u32 = 20;
    // SAFETY: the child only makes one system call and exits: nothing that
    // allocates or takes a lock another thread could hold.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let pid: u32;
            unsafe {
                core::arch::asm!("int 0x80", inlateout("eax") IA32_GETPID => pid, options(nostack));
                libc::_exit(i32::from(pid != std::process::id()));
            }
        }
        Ok(ForkResult::Parent { child }) => {
            matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)))
        }
        Err(_) => false,
    }
}

/// No ia32 entry outside x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub fn runs_ia32_syscalls() -> bool {
    false
}

/// The active LSMs, comma-separated, mounting securityfs if needed.
pub fn active_lsms() -> Option<String> {
    let path = std::path::Path::new("/sys/kernel/security/lsm");
    if !path.exists() {
        let _ = nix::mount::mount(
            Some("securityfs"),
            "/sys/kernel/security",
            Some("securityfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracefs_format_offsets() {
        let f = "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n";
        assert_eq!(field_offset(f, "__syscall_nr"), Some(8));
        assert_eq!(field_offset(f, "filename"), Some(24));
        assert_eq!(field_offset(f, "missing"), None);
    }

    #[test]
    fn counts_a_records_arguments() {
        let f = "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n\nprint fmt: \"x\"\n";
        assert_eq!(record_args(f), 2);
        assert_eq!(record_args(""), 0);
    }

    /// The call table's argument counts against this kernel's records: the
    /// entry programs load arguments directly by them.
    #[test]
    fn call_table_matches_this_kernels_records() {
        let Some((tracefs, _)) = mounts().into_iter().find(|(_, t)| t == "tracefs") else {
            eprintln!("skipped: tracefs is not mounted (run as root on a kernel with tracefs)");
            return;
        };
        let dir = std::path::Path::new(&tracefs).join("events/syscalls");
        let mut checked = 0;
        for call in agentwatch_common::calls::CALLS {
            let Ok(f) = fs::read_to_string(dir.join(format!("sys_enter_{}/format", call.name)))
            else {
                continue;
            };
            assert_eq!(record_args(&f), usize::from(call.args), "{}", call.name);
            checked += 1;
        }
        if checked == 0 {
            eprintln!("skipped: no syscall tracepoints readable under {tracefs}");
        }
        assert!(check_syscall_layout(std::path::Path::new(&tracefs)).is_ok() || checked == 0);
    }

    #[test]
    fn mount_points_with_spaces_are_decoded() {
        let text = "36 35 98:0 / /mnt/my\\040disk rw,noatime - ext4 /dev/sda1 rw\n\
                    37 35 0:31 / /sys/fs/bpf rw - bpf bpf rw\n\
                    38 35 0:32 / /odd\\134name\\011x rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m[0], ("/mnt/my disk".to_string(), "ext4".to_string()));
        assert_eq!(m[1], ("/sys/fs/bpf".to_string(), "bpf".to_string()));
        assert_eq!(m[2].0, "/odd\\name\tx");
        // A backslash not followed by three octal digits stays.
        assert_eq!(unescape_mount_field("a\\9b\\04"), "a\\9b\\04");
    }
}

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
}

fn mounts() -> Vec<(String, String)> {
    // mountinfo: ... mount-point ... - fstype source options
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut halves = l.splitn(2, " - ");
            let left: Vec<&str> = halves.next()?.split(' ').collect();
            let fstype = halves.next()?.split(' ').next()?;
            Some((left.get(4)?.to_string(), fstype.to_string()))
        })
        .collect()
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

/// Offset of `field` in a tracepoint's format file.
fn field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|l| {
        let decl = l.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?.trim_start_matches('*');
        if name != field {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

/// Checks that syscall tracepoint records have the layout the programs
/// read (`__syscall_nr` at 8, arguments from 16, `ret` at 16).
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
    Ok(())
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
}

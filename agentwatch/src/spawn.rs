//! Starting a command as a watched agent. The child stops just before exec
//! until its pid is in the kernel's watch map, so its very first
//! instruction, and every process it forks, is watched.
use std::{
    ffi::OsString,
    io::{Read, Write},
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{Child, Command},
};

use thiserror::Error;

use crate::{
    sandbox::Sandbox,
    sensors::{SensorError, Sensors},
};

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("no command given")]
    Empty,
    #[error("cannot run {cmd}: {source}")]
    Exec { cmd: String, source: std::io::Error },
    #[error("cannot set up the start handshake: {0}")]
    Pipe(std::io::Error),
    #[error(transparent)]
    Watch(#[from] SensorError),
}

impl SpawnError {
    /// The status a shell would give: 127 for not found, 126 otherwise.
    pub fn exit_status(&self) -> i32 {
        match self {
            SpawnError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            SpawnError::Exec { .. } => 126,
            _ => 1,
        }
    }
}

fn pipe() -> Result<(std::fs::File, std::fs::File), SpawnError> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipe(e.into()))?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

/// What the child gets besides the watch and the sandbox (`run`'s).
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// A close-on-exec descriptor the child keeps, its number in
    /// `AGENTWATCH_REASONS_FD` (`enforce::steer`).
    pub reasons: Option<i32>,
    /// `cgroup.procs` files the child moves itself into before exec
    /// (`budget::Cgroup`), so that its budgets hold from its first
    /// instruction.
    pub cgroups: Vec<std::ffi::CString>,
    /// `RLIMIT_NOFILE` (the `files` budget).
    pub files: Option<u64>,
}

/// Spawns `argv` watched as `agent_id`, in `sandbox` if given (entered
/// once the watch is confirmed, so the sandbox's refusals are seen).
/// Signals the caller ignores are restored to their defaults in the child.
pub fn spawn_watched(
    argv: &[OsString],
    sensors: &mut Sensors,
    agent_id: u32,
    sandbox: Option<std::sync::Arc<Sandbox>>,
    launch: &Launch,
) -> Result<Child, SpawnError> {
    let (prog, args) = argv.split_first().ok_or(SpawnError::Empty)?;
    let (mut pid_r, pid_w) = pipe()?;
    let (go_r, mut go_w) = pipe()?;
    let (pid_wfd, go_rfd) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
    // The kernel marks the process as in the sandbox before it enters it.
    let watch_flags = sandbox.as_ref().map_or(0, |s| s.watch_flags());
    // Search PATH here, so the agent's first recorded act is one exec of
    // the real binary rather than our launcher probing PATH entries.
    let mut cmd = Command::new(resolve_in_path(prog).unwrap_or_else(|| prog.into()));
    cmd.arg0(prog).args(args);
    let Launch {
        reasons,
        cgroups,
        files,
    } = launch.clone();
    if let Some(fd) = reasons {
        cmd.env(crate::enforce::steer::ENV, fd.to_string());
    }
    // SAFETY: only async-signal-safe calls (signal, fcntl, open, close,
    // setrlimit, getpid, write, read,
    // and the sandbox's unshare, mount, prctl, landlock and seccomp
    // syscalls).
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            if let Some(fd) = reasons {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for procs in &cgroups {
                // "0": the writing process itself.
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            if let Some(n) = files {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Its own mounts before it is watched: they are not the agent's.
            if let Some(s) = &sandbox {
                s.enter_mounts()?;
            }
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(pid_wfd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            let mut go = [0u8; 1];
            if libc::read(go_rfd, go.as_mut_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::other(
                    "agentwatch did not confirm the watch",
                ));
            }
            match &sandbox {
                Some(s) => s.enter(),
                None => Ok(()),
            }
        });
    }
    std::thread::scope(|s| {
        // The spawner owns our copies of the child's pipe ends and closes
        // them once spawn returns, so a failed fork shows here as EOF.
        let spawner = s.spawn(move || {
            let r = cmd.spawn();
            drop((pid_w, go_r));
            r
        });
        let mut pid = [0u8; 4];
        let watched = match pid_r.read_exact(&mut pid) {
            Ok(()) => {
                let pid = i32::from_ne_bytes(pid) as u32;
                let r = sensors.watch_flagged(pid, agent_id, watch_flags);
                if r.is_ok() {
                    let _ = go_w.write_all(&[1]);
                }
                r
            }
            Err(_) => Ok(()), // the child never got to pre_exec; spawn reports why
        };
        drop(go_w);
        let child = spawner
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("spawner thread panicked")));
        watched?;
        child.map_err(|source| SpawnError::Exec {
            cmd: prog.to_string_lossy().into_owned(),
            source,
        })
    })
}

/// `prog` found in $PATH as a shell would (only for names without a '/').
fn resolve_in_path(prog: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::{ffi::OsStrExt, fs::PermissionsExt};
    if prog.as_bytes().contains(&b'/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(prog))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The status a shell reports for a finished child: the code, or 128+signal.
pub fn shell_status(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

//! The peers `cargo xtask bench --peers` compares agentwatch with: auditd
//! with rules for the syscalls agentwatch watches, and bpftrace with
//! probes on them printing every event. Both are scoped to the benchmark's
//! workload (auditd by login uid, bpftrace by process tree), installed from
//! Debian's archive when missing, and stopped when dropped.
use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// The login uid the workload runs under: auditd's rules select it.
pub const AUID: u32 = 4242;

/// The key auditd's rules tag their records with.
pub const AUDIT_KEY: &str = "agentwatch-bench";

/// Syscalls agentwatch records an event for (file, exec and network),
/// by their names in auditctl's table and in the syscall tracepoints:
/// agentwatch's own list, less fchmodat2 (auditctl 3.0.9 does not know it).
pub fn syscalls() -> impl Iterator<Item = &'static str> {
    agentwatch_common::calls::CALLS
        .iter()
        .map(|c| c.name)
        .filter(|s| *s != "fchmodat2")
}

/// Installs the Debian packages the comparison needs when a tool is missing.
pub fn install() -> anyhow::Result<()> {
    let wanted = [
        ("auditd", "/usr/sbin/auditd"),
        ("bpftrace", "/usr/bin/bpftrace"),
        ("gnuplot-nox", "/usr/bin/gnuplot"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(_, bin)| !Path::new(bin).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(" "));
    let st = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        // The package's own scripts must not start a system auditd.
        .env("RUNLEVEL", "1")
        .status()
        .context("running apt-get")?;
    if !st.success() {
        bail!(
            "apt-get install {} failed; install them by hand and rerun",
            missing.join(" ")
        );
    }
    Ok(())
}

/// Makes `cmd` run under login uid [`AUID`] (set in the child before
/// exec; its children inherit it). Applied to every configuration alike.
pub fn with_auid(cmd: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec we only call open/write/close on a
    // static path, all async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let path = c"/proc/self/loginuid";
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let text = b"4242";
            let n = libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn auditctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .context("running auditctl")?;
    if !out.status.success() {
        bail!(
            "auditctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A value of `auditctl -s` (`lost`, `enabled`, `backlog`).
pub fn audit_status(key: &str) -> u64 {
    auditctl(&["-s"])
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// auditd writing to a log of its own with our rules loaded. Dropping it
/// deletes the rules, restores the audit enabled flag and stops the daemon.
pub struct Auditd {
    child: Child,
    dir: PathBuf,
    was_enabled: u64,
}

impl Auditd {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("auditd.conf");
        // Nothing is ever refused or rotated: we count what arrives.
        std::fs::write(
            &conf,
            format!(
                "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_format = RAW\n\
                 flush = INCREMENTAL_ASYNC\nfreq = 1000\nmax_log_file = 4096\n\
                 max_log_file_action = IGNORE\nspace_left = 2\nspace_left_action = IGNORE\n\
                 admin_space_left = 1\nadmin_space_left_action = IGNORE\n\
                 disk_full_action = IGNORE\ndisk_error_action = IGNORE\n\
                 q_depth = 20000\noverflow_action = IGNORE\n",
                dir.join("audit.log").display()
            ),
        )?;
        // auditd refuses a config file others can read.
        std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        if Command::new("pgrep")
            .args(["-x", "auditd"])
            .stdout(Stdio::null())
            .status()?
            .success()
        {
            bail!("an auditd is already running; stop it first (the benchmark starts its own)");
        }
        let was_enabled = audit_status("enabled");
        // CPU 0, beside the other monitors; the workload has CPU 1.
        let child = Command::new("taskset")
            .args(["-c", "0", "/usr/sbin/auditd", "-n", "-c"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting auditd")?;
        let me = Self {
            child,
            dir: dir.to_path_buf(),
            was_enabled,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while audit_status("pid") == 0 {
            if Instant::now() > deadline {
                bail!("auditd did not register within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        auditctl(&["-b", "8192"])?;
        let mut rule = vec!["-a", "always,exit", "-F", "arch=b64"];
        for s in syscalls() {
            rule.extend(["-S", s]);
        }
        let auid = format!("auid={AUID}");
        let key = format!("key={AUDIT_KEY}");
        rule.extend(["-F", &auid, "-F", &key]);
        auditctl(&rule)?;
        auditctl(&["-e", "1"])?;
        Ok(me)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = auditctl(&["-D"]);
        let _ = auditctl(&["-e", &self.was_enabled.to_string()]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pid of the kernel's audit thread, whose CPU is part of auditd's cost.
pub fn kauditd_pid() -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-x", "kauditd"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A bpftrace script with a probe on every syscall of [`syscalls`],
/// printing one line per call of the traced command's process tree (the
/// tree is followed through sched_process_fork, as agentwatch does).
pub fn bpftrace_script() -> String {
    let mut s = String::from(
        "BEGIN { @w[cpid] = 1; }\n\
         tracepoint:sched:sched_process_fork /@w[pid]/ { @w[args->child_pid] = 1; }\n",
    );
    for sys in syscalls() {
        let arg = match sys {
            "open" | "openat" | "openat2" | "chmod" | "fchmodat" | "chown" | "lchown"
            | "fchownat" | "execve" | "execveat" => "str(args->filename)",
            "creat" | "unlink" | "unlinkat" | "rmdir" => "str(args->pathname)",
            "rename" | "renameat" | "renameat2" | "link" | "linkat" => "str(args->oldname)",
            _ => "\"-\"",
        };
        s.push_str(&format!(
            "tracepoint:syscalls:sys_enter_{sys} /@w[pid]/ {{ printf(\"%d %s {sys} %s\\n\", pid, comm, {arg}); }}\n"
        ));
    }
    s
}

/// `bpftrace` running `argv` (`-c`) under the script, on CPU 0, its
/// output into `out` (`-o`, written in blocks: cheapest), or with `None`
/// to its stdout, flushed line by line (`-B line`, which `-o` ignores).
pub fn bpftrace_cmd(script: &Path, out: Option<&Path>, argv: &[String]) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", "0", "bpftrace", "-q"]);
    match out {
        Some(f) => c.arg("-o").arg(f),
        None => c.args(["-B", "line"]),
    };
    c.arg("-c")
        .arg(command_line(argv))
        .arg(script)
        // bpftrace raises RLIMIT_MEMLOCK itself and says so when it cannot.
        .env("BPFTRACE_STRLEN", "200");
    c
}

/// `argv` as bpftrace's `-c` takes it: split on spaces (no shell, no
/// quoting), the program by absolute path (bpftrace refuses a bare name
/// that its PATH search finds twice, as /bin and /usr/bin can).
fn command_line(argv: &[String]) -> String {
    let mut words = argv.to_vec();
    if let Some(first) = words.first_mut() {
        if !first.contains('/') {
            let found = std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(&*first))
                    .find(|c| c.is_file())
            });
            if let Some(f) = found {
                *first = f.display().to_string();
            }
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_has_a_probe_per_syscall_and_follows_forks() {
        let s = bpftrace_script();
        for sys in syscalls() {
            assert!(s.contains(&format!("sys_enter_{sys} /@w[pid]/")), "{sys}");
        }
        assert!(s.contains("sched_process_fork"));
    }

    #[test]
    fn the_command_line_names_the_program_by_path() {
        let line = command_line(&["sh".into(), "-c".into(), "true".into()]);
        assert!(
            line.starts_with('/') && line.ends_with("/sh -c true"),
            "{line}"
        );
    }
}

//! For tests: a shell in a mount namespace of its own (`unshare -m`), set
//! up as the shield leaves an agent, that waits to be told to go on.
use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
};

pub struct OwnNamespace {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl OwnNamespace {
    /// Runs `setup` (shell, mounts in the new namespace, slave to this
    /// one) in `dir`, then waits; `then` runs when `go` is called. None,
    /// said on stderr, when not root.
    pub fn start(dir: &Path, setup: &str, then: &str) -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: a mount namespace of its own needs root");
            return None;
        }
        let script = format!("mount --make-rslave / && {setup} && echo ready && read go && {then}");
        let mut child = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut ns = OwnNamespace {
            out: BufReader::new(child.stdout.take().expect("stdout")),
            child,
        };
        assert_eq!(ns.line(), "ready\n", "the namespace's setup failed");
        Some(ns)
    }

    /// The shell's pid: a process of that namespace.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `then`; returns its first line of output.
    pub fn go(&mut self) -> String {
        let mut stdin = self.child.stdin.take().expect("stdin");
        writeln!(stdin).expect("go");
        self.line()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("read");
        line
    }
}

impl Drop for OwnNamespace {
    /// The shell ends (its stdin closed, or already done); its namespace
    /// and mounts go with it.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

//! The sandbox every agent agentwatch starts runs in, beneath the eBPF
//! judge. It acts before the effect, whatever path or interface the agent
//! uses, because the kernel applies it to the process itself:
//! - a seccomp filter (`seccomp.rs`) refuses the escapes (mounts,
//!   namespaces, file handles, io_uring, ptrace, another process's memory,
//!   bpf, the kernel) with EPERM; the eBPF side reports each refusal as a
//!   `guardrail/escape` or `guardrail/tamper` violation;
//! - Landlock (`landlock.rs`), from ABI 6, scopes signals and abstract
//!   unix sockets to the agent's own domain, so nothing it runs can signal
//!   agentwatch.
//!
//! Both are prepared in the parent (they allocate) and entered in the
//! child between fork and exec with syscalls only.
mod landlock;
mod seccomp;

use std::os::fd::OwnedFd;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(seccompiler::BackendError),
    #[error("cannot create the Landlock ruleset: {0}")]
    Landlock(String),
}

/// What the sandbox holds on this kernel, for `doctor` and the run's
/// summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Layers {
    /// The kernel's Landlock ABI; None: no Landlock.
    pub landlock_abi: Option<i32>,
    /// Signals and abstract unix sockets scoped to the agent (ABI ≥ 6).
    pub scoped: bool,
    /// The escapes refused by seccomp.
    pub seccomp: bool,
}

impl Layers {
    /// One line for people: what holds, and what is missing and why.
    pub fn describe(&self) -> String {
        let seccomp = if self.seccomp {
            "seccomp refuses the escapes (mounts, namespaces, file handles, io_uring, ptrace, bpf)"
        } else {
            "no seccomp filter"
        };
        let landlock = match (self.landlock_abi, self.scoped) {
            (Some(abi), true) => format!(
                "Landlock ABI {abi} keeps its signals and abstract unix sockets inside its own domain"
            ),
            (Some(abi), false) => format!(
                "Landlock ABI {abi} has no scoping (ABI 6 has): a signal to agentwatch is caught by the eBPF tamper guard instead"
            ),
            (None, _) => "no Landlock on this kernel (not built or not in lsm=): a signal to agentwatch is caught by the eBPF tamper guard instead".into(),
        };
        format!("sandbox: {seccomp}; {landlock}")
    }
}

/// A sandbox ready to enter.
#[derive(Debug)]
pub struct Sandbox {
    filters: Vec<seccompiler::BpfProgram>,
    scope: Option<OwnedFd>,
    pub layers: Layers,
}

impl Sandbox {
    /// Builds every layer this kernel offers.
    pub fn prepare() -> Result<Sandbox, SandboxError> {
        let abi = landlock::abi();
        let scope = landlock::scope_ruleset(abi)?;
        let filters = seccomp::filters()?;
        Ok(Sandbox {
            layers: Layers {
                landlock_abi: abi,
                scoped: scope.is_some(),
                seccomp: true,
            },
            filters,
            scope,
        })
    }

    /// Enters the sandbox: in the child, between fork and exec, with
    /// syscalls only (no allocation). Without CAP_SYS_ADMIN the kernel
    /// wants no_new_privs first; a root agent keeps setuid working.
    ///
    /// # Safety
    /// Call only in a forked child before exec.
    pub unsafe fn enter(&self) -> std::io::Result<()> {
        if libc::geteuid() != 0 && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some(fd) = &self.scope {
            landlock::restrict_self(fd)?;
        }
        for f in &self.filters {
            seccomp::install(f)?;
        }
        Ok(())
    }
}

/// What the sandbox would hold here, without building it.
pub fn layers_here() -> Layers {
    let abi = landlock::abi();
    Layers {
        landlock_abi: abi,
        scoped: abi.is_some_and(|a| a >= landlock::SCOPE_ABI),
        seccomp: seccomp::filters().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_and_name_every_escape() {
        let f = seccomp::filters().expect("filters");
        assert_eq!(f.len(), 2);
        // Each escape's number appears as a comparison in the first.
        for e in agentwatch_common::escape::ESCAPES {
            assert!(
                f[0].iter().any(|i| i.k == e.nr),
                "{} not in the filter",
                e.name
            );
        }
    }
}

//! The sandbox every agent agentwatch starts runs in, beneath the eBPF
//! judge. It acts before the effect, whatever path or interface the agent
//! uses, because the kernel applies it to the process itself:
//! - a seccomp filter (`seccomp.rs`) refuses the escapes (mounts,
//!   namespaces, file handles, io_uring, ptrace, another process's memory,
//!   bpf, the kernel) with EPERM; the eBPF side reports each refusal as a
//!   `guardrail/escape` or `guardrail/tamper` violation;
//! - Landlock (`landlock.rs`), from ABI 6, scopes signals and abstract
//!   unix sockets to the agent's own domain, so nothing it runs can signal
//!   agentwatch; and, from ABI 2, when the profile refuses file calls in
//!   enforce mode, grants only the profile's tree (`files.rs`).
//!
//! - where the guardrails' action refuses and no BPF LSM tier judges
//!   real paths, the guardrails inside the profile's tree are read-only
//!   bind mounts in the agent's own mount namespace (`shield.rs`).
//!
//! All are prepared in the parent (they allocate) and entered in the
//! child between fork and exec with syscalls only.
pub mod files;
mod landlock;
#[cfg(test)]
pub(crate) mod own_namespace;
mod seccomp;
pub mod shield;

pub use files::{FileRules, Held};
pub use shield::{Shield, ShieldLayer};

use std::os::fd::OwnedFd;

use serde::Serialize;

pub use agentwatch_common::escape::Allowed;

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
    /// io_uring let through (the profile's `ioUring: true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub io_uring: bool,
    /// Raw and packet sockets let through (the profile's `rawSockets: true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub raw_sockets: bool,
    /// The profile's file rules, when Landlock holds a class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesLayer>,
    /// The guardrails inside the tree bound read-only, when shielded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shield: Option<ShieldLayer>,
}

/// What the Landlock file rules hold, for the run's summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FilesLayer {
    /// The classes refused before the effect (`exec`, `file`, `delete`).
    pub held: Vec<&'static str>,
    /// Path-beneath rules granted.
    pub rules: usize,
    /// Grants moved up to an existing directory (the path is created later).
    pub widened: Vec<String>,
}

impl FilesLayer {
    fn describe(&self) -> String {
        format!(
            "Landlock grants only the profile's tree ({} rules) and refuses the rest before the effect for {}; guardrails inside that tree are judged by eBPF",
            self.rules,
            self.held.join(", ")
        )
    }
}

impl Layers {
    /// One line for people: what holds, and what is missing and why.
    pub fn describe(&self) -> String {
        let seccomp = if self.seccomp {
            let optional = [
                (self.io_uring, "io_uring"),
                (self.raw_sockets, "raw sockets"),
            ];
            let named = |allowed: bool| -> Vec<&str> {
                optional
                    .iter()
                    .filter(|(a, _)| *a == allowed)
                    .map(|(_, n)| *n)
                    .collect()
            };
            let mut refused = vec!["mounts", "namespaces", "file handles"];
            refused.extend(named(false));
            refused.extend(["ptrace", "bpf"]);
            let mut s = format!("seccomp refuses the escapes ({}", refused.join(", "));
            let allowed = named(true);
            if !allowed.is_empty() {
                s.push_str(&format!(
                    "; {} allowed by the profile",
                    allowed.join(" and ")
                ));
            }
            s.push(')');
            s
        } else {
            "no seccomp filter".to_string()
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
        let mut s = format!("sandbox: {seccomp}; {landlock}");
        if let Some(f) = &self.files {
            s.push_str(&format!("; {}", f.describe()));
        }
        if let Some(sh) = &self.shield {
            s.push_str(&format!(
                "; {} guardrails inside its tree are read-only mounts in its own mount namespace",
                sh.paths.len()
            ));
            if let Some(why) = &sh.incomplete {
                s.push_str(&format!(
                    " (the search {why}: guardrails deeper are judged by eBPF)"
                ));
            }
        }
        s
    }
}

/// A sandbox ready to enter.
#[derive(Debug)]
pub struct Sandbox {
    filters: Vec<seccompiler::BpfProgram>,
    /// The Landlock ruleset (file rules, scoping), when there is one.
    ruleset: Option<OwnedFd>,
    /// The classes its file rules hold.
    held: Held,
    /// The read-only guardrail mounts, when there are any.
    shield: Option<Shield>,
    pub layers: Layers,
}

impl Sandbox {
    /// Builds every layer this kernel offers; `files`: the profile's
    /// Landlock file rules (`files::resolve`), used from ABI 2;
    /// `allowed`: the escapes the profile lets through; `shield`: the
    /// guardrails to bind read-only (`shield::plan`).
    pub fn prepare(
        files: Option<FileRules>,
        allowed: Allowed,
        shield: Option<Shield>,
    ) -> Result<Sandbox, SandboxError> {
        let shield = shield.filter(|s| !s.is_empty());
        let abi = landlock::abi();
        let files = files.filter(|_| abi.is_some_and(|a| a >= files::FILES_ABI));
        let ruleset = landlock::ruleset(abi, files.as_ref())?;
        let filters = seccomp::filters(allowed)?;
        Ok(Sandbox {
            layers: Layers {
                landlock_abi: abi,
                scoped: abi.is_some_and(|a| a >= landlock::SCOPE_ABI),
                seccomp: true,
                io_uring: allowed.io_uring,
                raw_sockets: allowed.raw_sockets,
                files: files.as_ref().map(|f| FilesLayer {
                    held: f.held.names(),
                    rules: f.rules.len(),
                    widened: f.widened.clone(),
                }),
                shield: shield.as_ref().map(|s| s.layer.clone()),
            },
            held: files.as_ref().map(|f| f.held).unwrap_or_default(),
            shield,
            filters,
            ruleset,
        })
    }

    /// The Landlock bits of what this sandbox holds (`watch::LANDLOCK_*`).
    pub fn landlock_flags(&self) -> u32 {
        self.held.kernel_flags()
    }

    /// The watch flags of a process started in this sandbox.
    pub fn watch_flags(&self) -> u32 {
        agentwatch_common::policy::watch::SANDBOXED | self.landlock_flags() | self.shield_flags()
    }

    /// `watch::SHIELDED` when guardrails are bound read-only.
    pub fn shield_flags(&self) -> u32 {
        match self.shield {
            Some(_) => agentwatch_common::policy::watch::SHIELDED,
            None => 0,
        }
    }

    /// Enters the shield's mount namespace: before the process is watched
    /// (its mounts are not the agent's), before `enter` (Landlock and the
    /// seccomp filter forbid mounts).
    ///
    /// # Safety
    /// As `enter`.
    pub unsafe fn enter_mounts(&self) -> std::io::Result<()> {
        match &self.shield {
            Some(s) => s.enter(),
            None => Ok(()),
        }
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
        if let Some(fd) = &self.ruleset {
            landlock::restrict_self(fd)?;
        }
        for f in &self.filters {
            seccomp::install(f)?;
        }
        Ok(())
    }
}

/// The kernel's Landlock ABI; None: no Landlock.
pub fn landlock_abi() -> Option<i32> {
    landlock::abi()
}

/// What the sandbox would hold here, without building it.
pub fn layers_here() -> Layers {
    let abi = landlock::abi();
    Layers {
        landlock_abi: abi,
        scoped: abi.is_some_and(|a| a >= landlock::SCOPE_ABI),
        seccomp: seccomp::filters(Allowed::default()).is_ok(),
        io_uring: false,
        raw_sockets: false,
        files: None,
        shield: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_and_name_every_escape() {
        let f = seccomp::filters(Allowed::default()).expect("filters");
        assert_eq!(f.len(), 2);
        // Allowed by the profile, io_uring and raw sockets are not in the
        // filter; each only as allowed.
        let filter_of = |io_uring, raw_sockets| {
            seccomp::filters(Allowed {
                io_uring,
                raw_sockets,
            })
            .expect("filters")
        };
        let names = |f: &Vec<seccompiler::BpfProgram>, nr: u32| f[0].iter().any(|i| i.k == nr);
        let (uring, socket) = (
            agentwatch_common::syscalls::IO_URING_SETUP,
            agentwatch_common::syscalls::SOCKET,
        );
        assert!(names(&f, uring) && names(&f, socket));
        let open = filter_of(true, false);
        assert!(!names(&open, uring) && names(&open, socket));
        let raw = filter_of(false, true);
        assert!(names(&raw, uring) && !names(&raw, socket));
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

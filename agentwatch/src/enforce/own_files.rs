//! agentwatch's own files, guarded from the agents it enforces (the
//! `agentwatch` guardrail category): its binary, profiles and config, its
//! audit log, its control sockets and the cgroup membership files.
use std::path::Path;

use crate::{profile::guardrails::Guardrails, sensors::cgroup2_mount};

/// Built-in guardrails plus `files` (profiles, config), the audit log and
/// its rotated files, the binary, the sockets under `socket_dirs`, and
/// cgroup membership.
pub fn guardrails(files: &[&Path], audit: Option<&Path>, socket_dirs: &[&Path]) -> Guardrails {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut own: Vec<String> = Vec::new();
    if let Some(a) = audit {
        let a = canonical(a);
        own.push(a.display().to_string());
        own.push(format!("{}.*", a.display()));
    }
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        own.push(exe.display().to_string());
    }
    for f in files {
        own.push(canonical(f).display().to_string());
    }
    for d in socket_dirs {
        own.push(format!("{}/**", d.display()));
    }
    if let Some(cg) = cgroup2_mount() {
        own.push(format!("{}/**/cgroup.procs", cg.display()));
        own.push(format!("{}/**/cgroup.threads", cg.display()));
    }
    Guardrails::builtin().with_agentwatch_paths(own.iter().map(String::as_str))
}

//! `agentwatch profile show|lint|diff|merge`.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::bail;
use serde_json::json;

use crate::profile::{
    diff::diff,
    merge::merge,
    parse::{self, Severity},
    yaml::to_yaml,
    Profile,
};

/// Loads a profile, or prints why not; `None` means exit 2.
fn load_or_report(path: &Path) -> Option<Profile> {
    match parse::load(path) {
        Ok(p) => Some(p),
        Err(report) => {
            eprint!("agentwatch: {report}");
            None
        }
    }
}

/// `profile show`: a readable summary, or the profile as JSON.
pub fn show(path: &Path, json: bool) -> anyhow::Result<i32> {
    let Some(p) = load_or_report(path) else {
        return Ok(2);
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &p)?;
        writeln!(out)?;
        return Ok(0);
    }
    let pv = &p.provenance;
    writeln!(
        out,
        "agent {} — {} session(s) on {}, {} to {}",
        p.agent,
        pv.sessions,
        pv.hosts.join(", "),
        pv.started,
        pv.ended
    )?;
    writeln!(out, "executables ({}):", p.executables.len())?;
    for e in &p.executables {
        let h: Vec<String> = e
            .sha256
            .iter()
            .map(|h| format!("{}…", &h[..h.len().min(12)]))
            .collect();
        writeln!(
            out,
            "  {}  sha256 {}  (runs {})",
            e.path,
            h.join(","),
            e.runs
        )?;
    }
    writeln!(out, "files ({}):", p.files.len())?;
    for f in &p.files {
        writeln!(
            out,
            "  {:<28} {}  (runs {})",
            f.access.to_string(),
            f.path,
            f.runs
        )?;
    }
    writeln!(out, "network ({}):", p.network.len())?;
    for n in &p.network {
        let by = if n.by.is_empty() {
            "any executable".to_string()
        } else {
            n.by.join(", ")
        };
        writeln!(
            out,
            "  {} {}  by {}  (runs {})",
            n.direction,
            n.target(),
            by,
            n.runs
        )?;
    }
    writeln!(out, "dns ({}):", p.dns.len())?;
    for d in &p.dns {
        writeln!(out, "  {}  (runs {})", d.name, d.runs)?;
    }
    writeln!(
        out,
        "rates per minute, peak -> budget (headroom {}x):",
        p.rates.headroom
    )?;
    for (c, r) in &p.rates.per_minute {
        writeln!(out, "  {:<8} {} -> {}", c.name(), r.peak, r.budget)?;
    }
    writeln!(
        out,
        "review ({}): guardrail paths the agent touched; never allowed by learning",
        p.review.len()
    )?;
    for r in &p.review {
        writeln!(
            out,
            "  {} {}  ({} guardrail {})",
            r.access, r.path, r.guardrail, r.pattern
        )?;
    }
    writeln!(
        out,
        "stability (warm-up {}s, quiet {}s):",
        p.stability.warmup_secs, p.stability.quiet_secs
    )?;
    for (c, s) in &p.stability.classes {
        let state = if s.stable { "stable" } else { "not yet stable" };
        writeln!(out, "  {:<8} {state}, {} entries", c.name(), s.entries)?;
    }
    Ok(0)
}

/// `profile lint`: every finding with file:line:column; exit 2 on errors.
pub fn lint(paths: &[PathBuf], json: bool) -> anyhow::Result<i32> {
    let mut errors = 0;
    let mut out = std::io::stdout().lock();
    for path in paths {
        let findings = match std::fs::read_to_string(path) {
            Ok(text) => parse::parse(&text).1,
            Err(e) => {
                writeln!(out, "{}: error: cannot read: {e}", path.display())?;
                errors += 1;
                continue;
            }
        };
        errors += findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        for f in &findings {
            if json {
                let sev = if f.severity == Severity::Error {
                    "error"
                } else {
                    "warning"
                };
                writeln!(
                    out,
                    "{}",
                    json!({"file": path.display().to_string(), "line": f.line, "column": f.column,
                           "severity": sev, "message": f.message, "fix": f.fix})
                )?;
            } else {
                writeln!(out, "{}", f.render(path))?;
            }
        }
        if findings.is_empty() && !json {
            writeln!(out, "{}: ok", path.display())?;
        }
    }
    Ok(if errors > 0 { 2 } else { 0 })
}

/// `profile diff`: exit 0 when the same, 1 when different, 2 on errors.
pub fn diff_cmd(old: &Path, new: &Path, json: bool) -> anyhow::Result<i32> {
    let (Some(a), Some(b)) = (load_or_report(old), load_or_report(new)) else {
        return Ok(2);
    };
    let changes = diff(&a, &b);
    let mut out = std::io::stdout().lock();
    for c in &changes {
        if json {
            writeln!(out, "{}", serde_json::to_string(c)?)?;
        } else {
            writeln!(out, "{c}")?;
        }
    }
    Ok(i32::from(!changes.is_empty()))
}

/// `profile merge`: the union, to stdout or `-o FILE`.
pub fn merge_cmd(
    paths: &[PathBuf],
    agent: Option<&str>,
    out: Option<&Path>,
    force: bool,
) -> anyhow::Result<i32> {
    if paths.len() < 2 {
        bail!("give two or more profiles to merge");
    }
    let mut profiles = Vec::new();
    for p in paths {
        let Some(x) = load_or_report(p) else {
            return Ok(2);
        };
        profiles.push(x);
    }
    let merged = merge(&profiles, agent)?;
    let text = to_yaml(&merged);
    match out {
        Some(path) => {
            if path.exists() && !force {
                bail!("{} exists; pass --force to replace it", path.display());
            }
            std::fs::write(path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(0)
}

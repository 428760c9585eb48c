//! `agentwatch profile show|lint|diff|merge`.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::bail;
use serde_json::json;

use crate::profile::{
    diff::diff,
    guardrails::Guardrails,
    merge::merge,
    parse::{self, Severity},
    readiness, session as recorded,
    yaml::to_yaml,
    Profile,
};

/// The profile at `path`; its problems are bad input (exit 2).
fn load(path: &Path) -> anyhow::Result<Profile> {
    parse::load(path).map_err(|report| crate::exit::usage(report.to_string()))
}

/// `profile show`: a readable summary, or the profile as JSON.
/// With the overlay of learned approvals applied, when there is one: the
/// one given, or the one of the daemon agent whose profile `path` is.
pub fn show(
    path: &Path,
    overlay: Option<&Path>,
    config: Option<&Path>,
    json: bool,
) -> anyhow::Result<i32> {
    let mut p = load(path)?;
    let overlay = match overlay {
        Some(o) => Some(o.to_path_buf()),
        None => overlay_of(path, config)?,
    };
    let applied = match &overlay {
        Some(o) => match crate::profile::overlay::load(o) {
            Ok(Some(ov)) => {
                crate::profile::overlay::apply(&mut p, &ov);
                Some((o, ov.approvals.len()))
            }
            Ok(None) => bail!(crate::exit::usage(format!("no overlay at {}", o.display()))),
            Err(r) => bail!(crate::exit::usage(r.to_string())),
        },
        None => None,
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &p)?;
        writeln!(out)?;
        return Ok(0);
    }
    if let Some((o, n)) = applied {
        writeln!(
            out,
            "overlay: {n} approval(s) learned into {} (the profile could not be written) are applied below",
            o.display()
        )?;
    }
    out.write_all(summary(&p).as_bytes())?;
    Ok(0)
}

/// The overlay of the daemon agent whose profile is `path`, in `config`
/// (or the default configuration, when it exists), if it has one.
fn overlay_of(path: &Path, config: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    const DEFAULT: &str = "/etc/agentwatch/agentwatch.toml";
    let (file, given) = match config {
        Some(c) => (c.to_path_buf(), true),
        None if Path::new(DEFAULT).exists() => (PathBuf::from(DEFAULT), false),
        None => return Ok(None),
    };
    let cfg = match crate::daemon::config::load(&file) {
        Ok(c) => c,
        Err(r) if given => bail!(crate::exit::usage(r.to_string())),
        // The default one is only a hint: a broken one is said, not fatal.
        Err(_) => {
            eprintln!(
                "agentwatch: note: {DEFAULT} does not load; no overlay applied (`--config` or `--overlay` names one)"
            );
            return Ok(None);
        }
    };
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(cfg
        .agents
        .iter()
        .find(|a| std::fs::canonicalize(&a.profile_path).is_ok_and(|p| p == want))
        .map(|a| a.overlay.clone())
        .filter(|o| o.exists()))
}

/// The reviewer's view: readiness first, then territories, what lies
/// outside them (files of one directory and access on one line), and the
/// rest of the envelope.
pub fn summary(p: &Profile) -> String {
    let mut o = String::new();
    summary_head(&mut o, p);
    summary_files(&mut o, p);
    summary_programs(&mut o, p);
    summary_bounds(&mut o, p);
    o
}

/// Provenance, readiness, overrides and territories.
fn summary_head(o: &mut String, p: &Profile) {
    use std::fmt::Write as _;
    let pv = &p.provenance;
    let _ = writeln!(
        o,
        "agent {} — {} session(s) on {}, {} to {}; granularity {}",
        p.agent,
        pv.sessions,
        pv.hosts.join(", "),
        pv.started,
        pv.ended,
        p.granularity
    );
    let _ = match &p.readiness {
        Some(r) => writeln!(o, "readiness: {} — {} (checked {})", r.verdict, r.reason, r.checked),
        None => writeln!(
            o,
            "readiness: unknown — record sessions (learn --append) and run `agentwatch profile readiness`"
        ),
    };
    for ov in &p.overrides {
        let _ = writeln!(o, "override: {} {}", ov.granularity, ov.path);
    }
    let _ = writeln!(
        o,
        "territories ({}): the directory and all beneath it; guardrails carve holes",
        p.territories.len()
    );
    for t in &p.territories {
        let _ = writeln!(
            o,
            "  {:<34} {}  (runs {})",
            t.access.to_string(),
            t.path,
            t.runs
        );
    }
}

/// File rules outside territories, grouped by directory.
fn summary_files(o: &mut String, p: &Profile) {
    use std::fmt::Write as _;
    let groups = file_groups(&p.files);
    let _ = writeln!(o, "files outside territories ({} rules):", p.files.len());
    for (access, dir, names, runs) in &groups {
        let shown = match (dir, names.len()) {
            // An anchor itself (`$HOME`): no directory to group under.
            (None, _) => names.join(", "),
            (Some(d), 1) => format!("{d}/{}", names[0]),
            (Some(d), _) => format!("{d}/{{{}}}", names.join(",")),
        };
        let _ = writeln!(o, "  {:<34} {shown}  (runs {runs})", access.to_string());
    }
}

/// Executables and endpoints.
fn summary_programs(o: &mut String, p: &Profile) {
    use std::fmt::Write as _;
    let _ = writeln!(o, "executables ({}):", p.executables.len());
    for e in &p.executables {
        let what = match e.source {
            Some(crate::profile::ExecSource::Package) => {
                "any packaged binary, unmodified".to_string()
            }
            None if e.sha256.is_empty() => "any binary".to_string(),
            None => {
                let h: Vec<String> = e
                    .sha256
                    .iter()
                    .map(|h| format!("{}…", &h[..h.len().min(12)]))
                    .collect();
                format!("sha256 {}", h.join(","))
            }
        };
        let _ = writeln!(o, "  {}  {what}  (runs {})", e.path, e.runs);
    }
    let _ = writeln!(o, "network ({}):", p.network.len());
    for n in &p.network {
        let by = if n.by.is_empty() {
            "any executable".to_string()
        } else {
            n.by.join(", ")
        };
        let model = if n.model { "  [model API]" } else { "" };
        let _ = writeln!(
            o,
            "  {} {}  by {by}{model}  (runs {})",
            n.direction,
            n.target(),
            n.runs
        );
    }
}

/// DNS names, rates, actions, guardrails, review and stability.
fn summary_bounds(o: &mut String, p: &Profile) {
    use std::fmt::Write as _;
    let names: Vec<&str> = p.dns.iter().map(|d| d.name.as_str()).collect();
    let _ = writeln!(o, "dns ({}): {}", p.dns.len(), names.join(", "));
    let rates: Vec<String> = p
        .rates
        .per_minute
        .iter()
        .map(|(c, r)| format!("{c} {}->{}", r.peak, r.budget))
        .collect();
    let _ = writeln!(
        o,
        "rates per minute, peak->budget (headroom {}x): {}",
        p.rates.headroom,
        rates.join(", ")
    );
    if p.actions != crate::profile::Actions::default() {
        let a: Vec<String> = p
            .actions
            .per_class
            .iter()
            .map(|(c, k)| format!("{c} {k}"))
            .collect();
        let _ = writeln!(
            o,
            "actions: {}, guardrails {}, rate {}",
            a.join(", "),
            p.actions.guardrails,
            p.actions.rate
        );
    }
    let extra: Vec<String> = p
        .guardrails
        .iter()
        .map(|g| format!("{} ({})", g.path, g.category))
        .collect();
    let _ = writeln!(
        o,
        "guardrails: built in{}",
        if extra.is_empty() {
            String::new()
        } else {
            format!(", and {}", extra.join(", "))
        }
    );
    let _ = writeln!(
        o,
        "review ({}): touched guardrails and runs of what the agent wrote; never allowed by learning",
        p.review.len()
    );
    for r in &p.review {
        let _ = writeln!(
            o,
            "  {} {}  ({}: {})",
            r.access, r.path, r.guardrail, r.pattern
        );
    }
    let st: Vec<String> = p
        .stability
        .classes
        .iter()
        .map(|(c, s)| {
            let state = if s.stable { "stable" } else { "learning" };
            if s.novelty.is_empty() {
                format!("{c} {state}")
            } else {
                let n: Vec<String> = s.novelty.iter().map(u64::to_string).collect();
                format!("{c} {state} (new per session {})", n.join(","))
            }
        })
        .collect();
    let _ = writeln!(o, "stability: {}", st.join("; "));
}

/// File rules grouped for reading: one line per (access, directory).
type FileGroup = (crate::profile::AccessSet, Option<String>, Vec<String>, u32);

/// File rules grouped by directory and access, for `profile show`.
fn file_groups(files: &[crate::profile::FileRule]) -> Vec<FileGroup> {
    let mut groups: std::collections::BTreeMap<
        (Option<String>, crate::profile::AccessSet),
        (Vec<String>, u32),
    > = std::collections::BTreeMap::new();
    for f in files {
        let (dir, name) = match f.path.rsplit_once('/') {
            Some((d, n)) => (Some(d.to_string()), n),
            None => (None, f.path.as_str()),
        };
        let g = groups
            .entry((dir, f.access))
            .or_insert_with(|| (Vec::new(), 0));
        g.0.push(name.to_string());
        g.1 = g.1.max(f.runs);
    }
    groups
        .into_iter()
        .map(|((dir, access), (names, runs))| (access, dir, names, runs))
        .collect()
}

/// `profile lint`: every finding with file:line:column; exit 2 on errors.
/// With `--json`, one report: `{"ok", "errors", "warnings", "findings":
/// [{"file", "line", "column", "severity", "message", "fix"}]}`.
pub fn lint(paths: &[PathBuf], json: bool) -> anyhow::Result<i32> {
    let (mut errors, mut warnings) = (0, 0);
    let mut all = Vec::new();
    let mut out = std::io::stdout().lock();
    for path in paths {
        let findings = match std::fs::read_to_string(path) {
            Ok(text) => parse::parse(&text).1,
            Err(e) => vec![parse::Finding {
                line: 0,
                column: 0,
                severity: Severity::Error,
                message: format!("cannot read: {e}"),
                fix: "give the path of a profile file".into(),
            }],
        };
        for f in &findings {
            let error = f.severity == Severity::Error;
            if error {
                errors += 1;
            } else {
                warnings += 1;
            }
            if json {
                all.push(json!({"file": path.display().to_string(), "line": f.line, "column": f.column,
                    "severity": if error { "error" } else { "warning" }, "message": f.message, "fix": f.fix}));
            } else {
                writeln!(out, "{}", f.render(path))?;
            }
        }
        if findings.is_empty() && !json {
            writeln!(out, "{}: ok", path.display())?;
        }
    }
    if json {
        writeln!(
            out,
            "{}",
            json!({"ok": errors == 0, "errors": errors, "warnings": warnings, "findings": all})
        )?;
    }
    Ok(if errors > 0 { 2 } else { 0 })
}

/// `profile diff`: exit 0 when the same, 1 when different, 2 on errors.
pub fn diff_cmd(old: &Path, new: &Path, json: bool) -> anyhow::Result<i32> {
    let (a, b) = (load(old)?, load(new)?);
    let changes = diff(&a, &b);
    let mut out = std::io::stdout().lock();
    if json {
        // One report, identical profiles included.
        writeln!(
            out,
            "{}",
            json!({"same": changes.is_empty(), "old": old.display().to_string(),
                   "new": new.display().to_string(), "changes": changes})
        )?;
        return Ok(i32::from(!changes.is_empty()));
    }
    for c in &changes {
        writeln!(out, "{c}")?;
    }
    if changes.is_empty() {
        writeln!(
            out,
            "no differences: {} and {} allow the same",
            old.display(),
            new.display()
        )?;
    }
    Ok(i32::from(!changes.is_empty()))
}

/// `profile readiness`: leave-one-session-out replay over the recorded
/// sessions; exit 0 ready, 1 not ready, 2 on bad input.
pub fn readiness_cmd(
    path: &Path,
    events: Option<&Path>,
    write: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let mut p = load(path)?;
    let dir = events
        .map(Path::to_path_buf)
        .unwrap_or_else(|| recorded::dir_for(path));
    let sessions = recorded::read_dir(&dir).map_err(|e| crate::exit::usage(e.to_string()))?;
    let report = readiness::leave_one_out(&p, &sessions, &Guardrails::builtin())?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        let v = &report.verdict;
        writeln!(out, "{}: {}", v.verdict, v.reason)?;
        for h in &report.held_out {
            let name = h.session.file_name().map_or_else(
                || h.session.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            if h.findings.is_empty() {
                writeln!(out, "  clean    {name} ({} events)", h.events)?;
                continue;
            }
            writeln!(out, "  flagged  {name} ({} events):", h.events)?;
            for f in h.findings.iter().take(5) {
                writeln!(out, "    {:<20} {}", f.rule, f.what)?;
            }
            if h.findings.len() > 5 {
                writeln!(out, "    ... and {} more", h.findings.len() - 5)?;
            }
        }
        writeln!(
            out,
            "the profile as written flags {} of {} sessions",
            report.current_profile_flags,
            sessions.len()
        )?;
    }
    let ready = report.verdict.verdict == "ready";
    if write {
        p.readiness = Some(report.verdict);
        crate::atomic::write(path, to_yaml(&p).as_bytes())?;
    }
    Ok(if ready { 0 } else { 1 })
}

/// `profile merge`: the union, to stdout or `-o FILE`.
pub fn merge_cmd(
    paths: &[PathBuf],
    agent: Option<&str>,
    out: Option<&Path>,
    force: bool,
) -> anyhow::Result<i32> {
    if paths.is_empty() {
        bail!("give one profile (to generalise it again) or more to merge");
    }
    let mut profiles = Vec::new();
    for p in paths {
        let x = load(p)?;
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

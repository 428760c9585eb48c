//! Writing a profile as YAML. Written by hand, not by a serializer, so the
//! layout is fixed: sections in a set order, one entry per list item,
//! short lists in flow style, every string quoted. Equal profiles are
//! byte-identical files.
use std::fmt::Write;

use super::{AccessSet, Class, Profile, API_VERSION, KIND};

/// A string as a double-quoted YAML scalar (JSON escaping is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn q_list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

/// `[read, write]`: an access set as a flow sequence.
fn access_list(a: AccessSet) -> String {
    let v: Vec<&str> = a.iter().map(|x| x.name()).collect();
    format!("[{}]", v.join(", "))
}

fn class_map(values: impl Iterator<Item = (Class, String)>) -> String {
    let v: Vec<String> = values.map(|(c, s)| format!("{c}: {s}")).collect();
    format!("{{{}}}", v.join(", "))
}

/// The YAML text of a profile.
pub fn to_yaml(p: &Profile) -> String {
    let mut o = String::new();
    // fmt::Write into a String cannot fail.
    let _ = write_profile(&mut o, p);
    o
}

/// The fixed layout, section by section (equal profiles are equal bytes).
fn write_profile(o: &mut String, p: &Profile) -> std::fmt::Result {
    write_head(o, p)?;
    write_paths(o, p)?;
    write_endpoints(o, p)?;
    write_policy(o, p)?;
    write_record(o, p)
}

/// The header: identity, granularity, overrides, readiness.
fn write_head(o: &mut String, p: &Profile) -> std::fmt::Result {
    writeln!(o, "# agentwatch profile of agent {}.", q(&p.agent))?;
    writeln!(
        o,
        "# Review before enforcing; `agentwatch profile lint` checks it."
    )?;
    writeln!(o, "# Format: docs/profile-format.md")?;
    writeln!(o, "apiVersion: {API_VERSION}")?;
    writeln!(o, "kind: {KIND}")?;
    writeln!(o, "agent: {}", q(&p.agent))?;
    writeln!(o, "granularity: {}", p.granularity)?;
    if p.io_uring {
        writeln!(
            o,
            "# io_uring's requests pass no syscall hook: only Landlock and the cgroup hooks hold them."
        )?;
        writeln!(o, "ioUring: true")?;
    }
    if p.raw_sockets {
        writeln!(
            o,
            "# a raw or packet socket's packets pass no connect or datagram hook: nothing judges where they go."
        )?;
        writeln!(o, "rawSockets: true")?;
    }
    if !p.overrides.is_empty() {
        writeln!(o, "overrides:")?;
        for ov in &p.overrides {
            writeln!(o, "  - path: {}", q(&ov.path))?;
            writeln!(o, "    granularity: {}", ov.granularity)?;
        }
    }
    if let Some(r) = &p.readiness {
        writeln!(o, "readiness:")?;
        writeln!(o, "  verdict: {}", r.verdict)?;
        writeln!(o, "  sessions: {}", r.sessions)?;
        writeln!(o, "  flagged: {}", r.flagged)?;
        writeln!(o, "  reason: {}", q(&r.reason))?;
        writeln!(o, "  checked: {}", q(&r.checked))?;
    }
    Ok(())
}

/// Territories, executables and file rules.
fn write_paths(o: &mut String, p: &Profile) -> std::fmt::Result {
    section(o, "territories", p.territories.is_empty())?;
    for t in &p.territories {
        writeln!(o, "  - path: {}", q(&t.path))?;
        writeln!(o, "    access: {}", access_list(t.access))?;
        writeln!(o, "    runs: {}", t.runs)?;
    }
    section(o, "executables", p.executables.is_empty())?;
    for e in &p.executables {
        writeln!(o, "  - path: {}", q(&e.path))?;
        if let Some(super::ExecSource::Package) = e.source {
            writeln!(o, "    source: package")?;
        } else {
            writeln!(o, "    sha256: {}", q_list(&e.sha256))?;
        }
        writeln!(o, "    runs: {}", e.runs)?;
    }
    section(o, "files", p.files.is_empty())?;
    for f in &p.files {
        writeln!(o, "  - path: {}", q(&f.path))?;
        writeln!(o, "    access: {}", access_list(f.access))?;
        writeln!(o, "    runs: {}", f.runs)?;
    }
    Ok(())
}

/// Network endpoints and DNS names.
fn write_endpoints(o: &mut String, p: &Profile) -> std::fmt::Result {
    section(o, "network", p.network.is_empty())?;
    for n in &p.network {
        writeln!(o, "  - direction: {}", n.direction)?;
        if let Some(h) = &n.host {
            writeln!(o, "    host: {}", q(h))?;
        }
        if let Some(a) = &n.address {
            writeln!(o, "    address: {}", q(a))?;
        }
        if let Some(u) = &n.unix {
            writeln!(o, "    unix: {}", q(u))?;
        }
        if let Some(port) = n.port {
            writeln!(o, "    port: {port}")?;
        }
        writeln!(o, "    by: {}", q_list(&n.by))?;
        if n.model {
            writeln!(o, "    model: true")?;
        }
        writeln!(o, "    runs: {}", n.runs)?;
    }
    section(o, "dns", p.dns.is_empty())?;
    for d in &p.dns {
        writeln!(o, "  - name: {}", q(&d.name))?;
        writeln!(o, "    runs: {}", d.runs)?;
    }
    Ok(())
}

/// Approved models (absent: not checked; `[]`: none may be loaded) and
/// pinned instruction files.
fn write_pinned(o: &mut String, p: &Profile) -> std::fmt::Result {
    if let Some(models) = &p.models {
        section(o, "models", models.is_empty())?;
        for m in models {
            writeln!(o, "  - path: {}", q(&m.path))?;
            writeln!(o, "    sha256: {}", q_list(&m.sha256))?;
        }
    }
    if !p.model_manifests.is_empty() {
        section(o, "modelManifests", false)?;
        for m in &p.model_manifests {
            writeln!(o, "  - manifest: {}", q(&m.manifest))?;
            writeln!(o, "    key: {}", q(&m.key))?;
        }
    }
    if !p.instructions.is_empty() {
        section(o, "instructions", false)?;
        for i in &p.instructions {
            writeln!(o, "  - path: {}", q(&i.path))?;
            writeln!(o, "    sha256: {}", q(&i.sha256))?;
            writeln!(o, "    size: {}", i.size)?;
        }
    }
    Ok(())
}

/// Rates, actions, added guardrails, review and approvals.
fn write_policy(o: &mut String, p: &Profile) -> std::fmt::Result {
    writeln!(o, "rates:")?;
    writeln!(o, "  headroom: {:?}", p.rates.headroom)?;
    writeln!(
        o,
        "  perMinute:{}",
        if p.rates.per_minute.is_empty() {
            " {}"
        } else {
            ""
        }
    )?;
    for (c, r) in &p.rates.per_minute {
        writeln!(o, "    {c}: {{peak: {}, budget: {}}}", r.peak, r.budget)?;
    }
    if !p.resources.is_empty() {
        writeln!(o, "resources:")?;
        for (k, v) in &p.resources {
            // Counts and CPUs as numbers, sizes and durations as text.
            let shown = if v.parse::<f64>().is_ok() {
                v.clone()
            } else {
                q(v)
            };
            writeln!(o, "  {k}: {shown}")?;
        }
    }
    write_pinned(o, p)?;
    if p.actions != super::Actions::default() {
        writeln!(o, "actions:")?;
        for (c, a) in &p.actions.per_class {
            writeln!(o, "  {c}: {a}")?;
        }
        writeln!(o, "  guardrails: {}", p.actions.guardrails)?;
        writeln!(o, "  rate: {}", p.actions.rate)?;
    }
    if !p.guardrails.is_empty() {
        writeln!(o, "guardrails:")?;
        for g in &p.guardrails {
            writeln!(o, "  - path: {}", q(&g.path))?;
            writeln!(o, "    category: {}", g.category)?;
        }
    }
    section(o, "review", p.review.is_empty())?;
    for r in &p.review {
        writeln!(o, "  - path: {}", q(&r.path))?;
        writeln!(o, "    access: {}", access_list(r.access))?;
        writeln!(o, "    guardrail: {}", r.guardrail)?;
        writeln!(o, "    pattern: {}", q(&r.pattern))?;
        writeln!(o, "    runs: {}", r.runs)?;
    }
    if !p.approvals.is_empty() {
        writeln!(o, "approvals:")?;
        for a in &p.approvals {
            writeln!(o, "  - id: {}", q(&a.id))?;
            writeln!(o, "    what: {}", q(&a.what))?;
            writeln!(o, "    by: {}", q(&a.by))?;
            writeln!(o, "    at: {}", q(&a.at))?;
        }
    }
    Ok(())
}

/// What learning measured: stability and provenance.
fn write_record(o: &mut String, p: &Profile) -> std::fmt::Result {
    writeln!(o, "stability:")?;
    writeln!(o, "  warmupSecs: {}", p.stability.warmup_secs)?;
    writeln!(o, "  quietSecs: {}", p.stability.quiet_secs)?;
    writeln!(
        o,
        "  classes:{}",
        if p.stability.classes.is_empty() {
            " {}"
        } else {
            ""
        }
    )?;
    for (c, s) in &p.stability.classes {
        let novelty: Vec<String> = s.novelty.iter().map(u64::to_string).collect();
        writeln!(
            o,
            "    {c}: {{stable: {}, entries: {}, quietSessions: {}, novelty: [{}]}}",
            s.stable,
            s.entries,
            s.quiet_sessions,
            novelty.join(", ")
        )?;
    }
    let pv = &p.provenance;
    writeln!(o, "provenance:")?;
    writeln!(o, "  hosts: {}", q_list(&pv.hosts))?;
    writeln!(o, "  sessions: {}", pv.sessions)?;
    writeln!(o, "  started: {}", q(&pv.started))?;
    writeln!(o, "  ended: {}", q(&pv.ended))?;
    writeln!(
        o,
        "  events: {}",
        class_map(pv.events.iter().map(|(c, n)| (*c, n.to_string())))
    )?;
    Ok(())
}

/// A section header; an empty list is written `[]` so it reads as one.
fn section(o: &mut String, name: &str, empty: bool) -> std::fmt::Result {
    if empty {
        writeln!(o, "{name}: []")
    } else {
        writeln!(o, "{name}:")
    }
}

//! Building the profile model from the parsed document, one section at
//! a time, collecting lint findings with their positions.
use std::collections::BTreeMap;

use super::*;

pub(super) fn build(doc: Doc, lint: &mut Lint) -> Profile {
    header(&doc, lint);
    let mut p = Profile::empty(&doc.agent.value);
    shape(&doc, lint, &mut p);
    territories(&doc, lint, &mut p);
    user_guardrails(&doc, lint, &mut p);
    let guardrails = Guardrails::builtin().with_profile(&p.guardrails, None);
    executables(&doc, lint, &mut p);
    files(&doc, lint, &mut p, &guardrails);
    network(&doc, lint, &mut p);
    dns(&doc, lint, &mut p);
    rates(&doc, lint, &mut p);
    resources(&doc, lint, &mut p);
    pinned(&doc, lint, &mut p);
    review(&doc, lint, &mut p);
    actions(&doc, lint, &mut p);
    records(doc, &mut p);
    p
}

/// apiVersion, kind and agent.
fn header(doc: &Doc, lint: &mut Lint) {
    let v1 = doc.api_version.value == API_VERSION_V1;
    if v1 {
        lint.warning(
            &doc.api_version,
            format!("apiVersion {API_VERSION_V1} is read as it is, with no territories"),
            "`agentwatch profile merge FILE -o NEW` rewrites it as agentwatch.dev/v2, generalised into territories; review NEW with `agentwatch profile diff FILE NEW`",
        );
        let v2_only = doc.granularity.is_some()
            || !doc.overrides.is_empty()
            || !doc.territories.is_empty()
            || !doc.guardrails.is_empty()
            || doc.readiness.is_some();
        if v2_only {
            lint.error(
                &doc.api_version,
                "granularity, overrides, territories, guardrails and readiness need apiVersion agentwatch.dev/v2".into(),
                &format!("set apiVersion: {API_VERSION}"),
            );
        }
    } else if doc.api_version.value != API_VERSION {
        lint.error(
            &doc.api_version,
            format!("unsupported apiVersion {:?}", doc.api_version.value),
            &format!("this agentwatch reads apiVersion: {API_VERSION} (and {API_VERSION_V1})"),
        );
    }
    if doc.kind.value != KIND {
        lint.error(
            &doc.kind,
            format!("kind is {:?}", doc.kind.value),
            "set kind: Profile",
        );
    }
    if doc.agent.value.trim().is_empty() {
        lint.error(
            &doc.agent,
            "agent name is empty".into(),
            "name the agent this profile is for",
        );
    }
}

/// Granularity and per-directory overrides.
fn shape(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    if let Some(g) = &doc.granularity {
        p.granularity = g.value;
    }
    p.io_uring = doc.io_uring.unwrap_or(false);
    p.raw_sockets = doc.raw_sockets.unwrap_or(false);
    for o in &doc.overrides {
        if let Some(g) = check_pattern(lint, &o.value.path) {
            if !g.is_literal() && o.value.path.value.contains("**") {
                lint.error(
                    &o.value.path,
                    "an override names one directory; ** is not allowed".into(),
                    "write the directory, e.g. $WORKSPACE/data",
                );
            }
        }
        p.overrides.push(Override {
            path: o.value.path.value.clone(),
            granularity: o.value.granularity,
        });
    }
}

/// Territories: a directory, everything beneath it, with its accesses.
fn territories(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for t in doc.territories.iter().map(|t| &t.value) {
        let access = AccessSet::of(&t.access.value);
        if access.is_empty() {
            lint.error(
                &t.access,
                "empty access list".into(),
                "list what is allowed beneath: read, write, create, delete, rename, chmod",
            );
        }
        if access.contains(Access::Exec) {
            lint.error(
                &t.access,
                "a territory never allows exec: running what sits in a subtree is judged per executable".into(),
                "drop exec here and list the executables (path and sha256) under executables",
            );
        }
        if t.path.value.split('/').any(|s| s == "**") {
            lint.error(
                &t.path,
                "a territory is a directory; it already covers everything beneath it".into(),
                "drop the trailing /** (and any ** inside)",
            );
        } else {
            check_pattern(lint, &t.path);
        }
        dup(lint, &mut seen, &t.path, "territory");
        p.territories.push(Territory {
            path: t.path.value.clone(),
            access,
            runs: t.runs,
        });
    }
}

/// Guardrails a reviewer added.
fn user_guardrails(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    for g in doc.guardrails.iter().map(|g| &g.value) {
        if !["secrets", "persistence"].contains(&g.category.value.as_str()) {
            lint.error(
                &g.category,
                format!("unknown guardrail category {:?}", g.category.value),
                "use secrets (every access is guarded) or persistence (every change is guarded)",
            );
        }
        if let Err(e) = Glob::guardrail(&g.path.value) {
            lint.error(
                &g.path,
                e.to_string(),
                "write an absolute path, an anchored one, or one starting with **",
            );
        }
        p.guardrails.push(UserGuardrail {
            path: g.path.value.clone(),
            category: g.category.value.clone(),
        });
    }
}

/// Executables, pinned by sha256 or by package provenance.
fn executables(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for e in doc.executables.iter().map(|e| &e.value) {
        check_pattern(lint, &e.path);
        dup(lint, &mut seen, &e.path, "executable");
        for h in &e.sha256 {
            check_sha256(lint, h);
        }
        if let (Some(src), false) = (&e.source, e.sha256.is_empty()) {
            lint.error(
                src,
                "source: package and sha256 exclude each other".into(),
                "keep sha256 to pin these binaries, or source: package for any unmodified packaged binary",
            );
        }
        p.executables.push(Executable {
            path: e.path.value.clone(),
            sha256: e.sha256.iter().map(|h| h.value.clone()).collect(),
            source: e.source.as_ref().map(|s| s.value),
            runs: e.runs,
        });
    }
}

/// A sha256 as sha256sum prints it.
fn check_sha256(lint: &mut Lint, h: &Spanned<String>) {
    let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if h.value.len() != 64 || !h.value.bytes().all(hex) {
        lint.error(
            h,
            format!("{:?} is not a sha256", h.value),
            "use 64 lower-case hex digits (sha256sum prints them)",
        );
    }
}

/// Approved models and pinned instruction files.
fn pinned(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    use crate::profile::pinned::{Instruction, ModelRule};
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(models) = &doc.models {
        let mut out = Vec::new();
        for m in models.iter().map(|m| &m.value) {
            check_pattern(lint, &m.path);
            dup(lint, &mut seen, &m.path, "model");
            m.sha256.iter().for_each(|h| check_sha256(lint, h));
            out.push(ModelRule {
                path: m.path.value.clone(),
                sha256: m.sha256.iter().map(|h| h.value.clone()).collect(),
            });
        }
        p.models = Some(out);
    }
    for m in doc.model_manifests.iter().map(|m| &m.value) {
        for f in [&m.manifest, &m.key] {
            if check_pattern(lint, f).is_some() && f.value.contains('*') {
                lint.error(
                    f,
                    format!("{:?}: a file, not a pattern", f.value),
                    "name the manifest and its public key",
                );
            }
        }
        let manifest = crate::profile::pinned::ModelManifest {
            manifest: m.manifest.value.clone(),
            key: m.key.value.clone(),
        };
        // Where it names files on this host, say now if it would not
        // verify (anchored ones are checked when the agent starts).
        let here = |p: &str| p.starts_with('/').then(|| p.to_string());
        if here(&manifest.manifest).is_some() && here(&manifest.key).is_some() {
            if let Err(e) = crate::pins::manifest::approved(&manifest, here) {
                lint.warning(
                    &m.manifest,
                    format!("this manifest approves nothing here: {e}"),
                    "sign the manifest with the key's private half, as docs/profile-format.md shows",
                );
            }
        }
        p.model_manifests.push(manifest);
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for i in doc.instructions.iter().map(|i| &i.value) {
        if let Some(g) = check_pattern(lint, &i.path) {
            if g.to_string().contains('*') {
                lint.error(
                    &i.path,
                    format!(
                        "{:?}: an instruction file is one file, not a pattern",
                        i.path.value
                    ),
                    "list each file with its own sha256",
                );
            }
        }
        dup(lint, &mut seen, &i.path, "instruction file");
        check_sha256(lint, &i.sha256);
        p.instructions.push(Instruction {
            path: i.path.value.clone(),
            sha256: i.sha256.value.clone(),
            size: i.size,
        });
    }
}

/// File rules, checked against the guardrails and the review list.
fn files(doc: &Doc, lint: &mut Lint, p: &mut Profile, guardrails: &Guardrails) {
    // What awaits review, per path: a rule may allow other accesses to
    // the same path (reading a persistence file, say, while its changes
    // await review), not the same ones.
    let mut review_paths: BTreeMap<String, AccessSet> = BTreeMap::new();
    for r in &doc.review {
        let set = review_paths.entry(r.value.path.clone()).or_default();
        *set = set.union(AccessSet::of(&r.value.access));
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for f in doc.files.iter().map(|f| &f.value) {
        let access = AccessSet::of(&f.access.value);
        if access.is_empty() {
            lint.error(
                &f.access,
                "empty access list".into(),
                "list what is allowed: read, write, create, delete, rename, chmod, exec",
            );
        }
        dup(lint, &mut seen, &f.path, "file rule");
        if check_pattern(lint, &f.path).is_some() {
            // A pattern is carved by the guardrails it reaches; a rule whose
            // own paths are guarded contradicts them.
            let named = guardrails.guarding_pattern(&f.path.value, access);
            if let Some(g) = named {
                lint.error(
                    &f.path,
                    format!(
                        "allows {} on paths the {} guardrail {} protects; guardrails win, so the rule contradicts them",
                        access.intersection(g.guarded),
                        g.category,
                        g.pattern
                    ),
                    "drop those accesses or narrow the pattern; wildcards do not match dot-files, so `dir/*` is narrower than `dir/**`",
                );
            }
        }
        if let Some(both) = review_paths
            .get(&f.path.value)
            .map(|r| r.intersection(access))
            .filter(|both| !both.is_empty())
        {
            lint.error(
                &f.path,
                format!("the same path is allowed here and awaits review ({both})"),
                "decide: keep it in review (guardrails hold) or remove the review item",
            );
        }
        p.files.push(FileRule {
            path: f.path.value.clone(),
            access,
            runs: f.runs,
        });
    }
}

/// Endpoints: exactly one target each, no duplicates.
fn network(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for sn in &doc.network {
        let n = &sn.value;
        let targets = [&n.host, &n.address, &n.unix]
            .iter()
            .filter(|t| t.is_some())
            .count();
        if targets != 1 {
            lint.error(
                sn,
                format!("{targets} targets given"),
                "give exactly one of host, address or unix",
            );
        }
        if let Some(a) = &n.address {
            if !valid_address(&a.value) {
                lint.error(
                    a,
                    format!("{:?} is not an IP address or CIDR", a.value),
                    "write e.g. 10.0.0.7, 10.0.0.0/24 or 2001:db8::/32",
                );
            }
        }
        if let Some(h) = &n.host {
            if !valid_dns_name(&h.value) {
                lint.error(
                    h,
                    format!("{:?} is not a DNS name", h.value),
                    "write the name the agent resolves, e.g. api.github.com",
                );
            }
        }
        let rule = NetRule {
            direction: n.direction,
            host: n.host.as_ref().map(|h| h.value.to_ascii_lowercase()),
            address: n.address.as_ref().map(|a| a.value.clone()),
            unix: n.unix.as_ref().map(|u| u.value.clone()),
            port: n.port,
            by: n.by.clone(),
            model: n.model,
            runs: n.runs,
        };
        let key = format!("{} {}", rule.direction, rule.target());
        if seen.insert(key.clone(), sn.referenced.line()).is_some() {
            lint.error(
                sn,
                format!("duplicate endpoint {key}"),
                "merge the two entries (list both executables under by)",
            );
        }
        p.network.push(rule);
    }
}

/// DNS names the agent may resolve.
fn dns(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for d in doc.dns.iter().map(|d| &d.value) {
        if !valid_dns_name(&d.name.value) {
            lint.error(
                &d.name,
                format!("{:?} is not a DNS name", d.name.value),
                "write a name such as api.github.com",
            );
        }
        dup(lint, &mut seen, &d.name, "DNS name");
        p.dns.push(DnsRule {
            name: d.name.value.to_ascii_lowercase(),
            runs: d.runs,
        });
    }
}

/// Resource budgets, checked as `run --budget` checks them.
fn resources(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    for (kind, v) in &doc.resources {
        let text = v.value.text();
        match crate::budget::Budgets::default().set(&format!("{kind}={text}")) {
            Ok(()) => {
                p.resources.insert(kind.clone(), text);
            }
            Err(e) => lint.error(
                v,
                e.to_string(),
                "write it as the resources section of docs/profile-format.md shows",
            ),
        }
    }
}

/// Per-minute rate budgets.
fn rates(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    if let Some(r) = &doc.rates {
        p.rates.headroom = r.headroom;
        for (class, b) in &r.per_minute {
            if b.value.budget < b.value.peak {
                lint.error(
                    b,
                    format!(
                        "{class} budget {} is below the peak {} learned",
                        b.value.budget, b.value.peak
                    ),
                    "raise the budget to at least the peak, or relearn",
                );
            }
            p.rates.per_minute.insert(
                *class,
                RateBudget {
                    peak: b.value.peak,
                    budget: b.value.budget,
                },
            );
        }
    }
}

/// What awaits a person's review.
fn review(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    for r in doc.review.iter().map(|r| &r.value) {
        const KNOWN: [&str; 5] = [
            "secrets",
            "persistence",
            "agentwatch",
            "privilege",
            "written",
        ];
        if !KNOWN.contains(&r.guardrail.value.as_str()) {
            lint.error(
                &r.guardrail,
                format!("unknown guardrail {:?}", r.guardrail.value),
                "use secrets, persistence, agentwatch, privilege or written",
            );
        }
        p.review.push(ReviewItem {
            path: r.path.clone(),
            access: AccessSet::of(&r.access),
            guardrail: r.guardrail.value.clone(),
            pattern: r.pattern.clone(),
            runs: r.runs,
        });
    }
}

/// Actions per class (guardrails never `alert`).
fn actions(doc: &Doc, lint: &mut Lint, p: &mut Profile) {
    if let Some(a) = &doc.actions {
        if a.value.guardrails == Some(ActionKind::Alert) {
            lint.error(
                a,
                "guardrails: alert would let a guardrail be crossed; they hold in every mode"
                    .into(),
                "use deny, pause or kill for guardrails",
            );
        }
        a.value.apply(&mut p.actions);
    }
}

/// What learning and approvals recorded: readiness, approvals,
/// stability, provenance.
fn records(doc: Doc, p: &mut Profile) {
    p.readiness = doc.readiness.map(|r| Readiness {
        verdict: r.verdict,
        sessions: r.sessions,
        flagged: r.flagged,
        reason: r.reason,
        checked: r.checked,
    });
    p.approvals = doc
        .approvals
        .into_iter()
        .map(|a| Approval {
            id: a.id,
            what: a.what,
            by: a.by,
            at: a.at,
        })
        .collect();

    if let Some(s) = doc.stability {
        p.stability = Stability {
            warmup_secs: s.warmup_secs,
            quiet_secs: s.quiet_secs,
            classes: s
                .classes
                .into_iter()
                .map(|(c, v)| {
                    (
                        c,
                        ClassStability {
                            stable: v.stable,
                            entries: v.entries,
                            quiet_sessions: v.quiet_sessions,
                            novelty: v.novelty,
                        },
                    )
                })
                .collect(),
        };
    }
    if let Some(pv) = doc.provenance {
        p.provenance = Provenance {
            hosts: pv.hosts,
            sessions: pv.sessions,
            started: pv.started,
            ended: pv.ended,
            events: pv.events,
        };
    }
}

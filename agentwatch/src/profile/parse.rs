//! Reading a profile: YAML to the model, with every problem reported at
//! its line and column with what to do about it. `profile lint` prints
//! these findings; every other command refuses a profile with errors.
use std::{collections::BTreeMap, fmt, path::Path};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{
    glob::Glob, guardrails::Guardrails, Access, AccessSet, ActionKind, ActionOverrides, Approval,
    Class, ClassStability, Direction, DnsRule, ExecSource, Executable, FileRule, Granularity,
    NetRule, Override, Profile, Provenance, RateBudget, Readiness, ReviewItem, Stability,
    Territory, UserGuardrail, API_VERSION, API_VERSION_V1, KIND,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: u64,
    pub column: u64,
    pub severity: Severity,
    pub message: String,
    pub fix: String,
}

impl Finding {
    /// `FILE:LINE:COL: error: MESSAGE` and an indented `fix:` line.
    pub fn render(&self, file: &Path) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!(
            "{}:{}:{}: {sev}: {}\n    fix: {}",
            file.display(),
            self.line,
            self.column,
            self.message,
            self.fix
        )
    }
}

/// A profile that could not be used, with everything wrong with it.
#[derive(Debug)]
pub struct LintReport {
    pub file: std::path::PathBuf,
    pub findings: Vec<Finding>,
}

impl fmt::Display for LintReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .findings
            .iter()
            .filter(|x| x.severity == Severity::Error)
            .count();
        writeln!(
            f,
            "profile {} has {errors} error(s); `agentwatch profile lint {}` lists them:",
            self.file.display(),
            self.file.display()
        )?;
        for x in &self.findings {
            writeln!(f, "{}", x.render(&self.file))?;
        }
        Ok(())
    }
}

impl std::error::Error for LintReport {}

fn one() -> u32 {
    1
}

fn default_headroom() -> f64 {
    2.0
}

// The file form: what a person may write. Unknown fields are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Doc {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    agent: Spanned<String>,
    #[serde(default)]
    granularity: Option<Spanned<Granularity>>,
    #[serde(default)]
    overrides: Vec<Spanned<OverrideDoc>>,
    #[serde(default)]
    readiness: Option<ReadinessDoc>,
    #[serde(default)]
    territories: Vec<Spanned<TerritoryDoc>>,
    #[serde(default)]
    executables: Vec<Spanned<ExeDoc>>,
    #[serde(default)]
    files: Vec<Spanned<FileDoc>>,
    #[serde(default)]
    network: Vec<Spanned<NetDoc>>,
    #[serde(default)]
    dns: Vec<Spanned<DnsDoc>>,
    #[serde(default)]
    rates: Option<RatesDoc>,
    #[serde(default)]
    actions: Option<Spanned<ActionOverrides>>,
    #[serde(default)]
    guardrails: Vec<Spanned<GuardrailDoc>>,
    #[serde(default)]
    review: Vec<Spanned<ReviewDoc>>,
    #[serde(default)]
    approvals: Vec<ApprovalDoc>,
    #[serde(default)]
    stability: Option<StabilityDoc>,
    #[serde(default)]
    provenance: Option<ProvenanceDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideDoc {
    path: Spanned<String>,
    granularity: Granularity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadinessDoc {
    verdict: String,
    #[serde(default)]
    sessions: u32,
    #[serde(default)]
    flagged: u32,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    checked: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TerritoryDoc {
    path: Spanned<String>,
    access: Spanned<Vec<Access>>,
    #[serde(default = "one")]
    runs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardrailDoc {
    path: Spanned<String>,
    category: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExeDoc {
    path: Spanned<String>,
    #[serde(default)]
    sha256: Vec<Spanned<String>>,
    #[serde(default)]
    source: Option<Spanned<ExecSource>>,
    #[serde(default = "one")]
    runs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    path: Spanned<String>,
    access: Spanned<Vec<Access>>,
    #[serde(default = "one")]
    runs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetDoc {
    direction: Direction,
    host: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    unix: Option<Spanned<String>>,
    port: Option<u16>,
    #[serde(default)]
    by: Vec<String>,
    #[serde(default)]
    model: bool,
    #[serde(default = "one")]
    runs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsDoc {
    name: Spanned<String>,
    #[serde(default = "one")]
    runs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RatesDoc {
    #[serde(default = "default_headroom")]
    headroom: f64,
    #[serde(default)]
    per_minute: BTreeMap<Class, Spanned<BudgetDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetDoc {
    #[serde(default)]
    peak: u64,
    budget: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalDoc {
    id: String,
    what: String,
    by: String,
    #[serde(default)]
    at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewDoc {
    path: String,
    access: Vec<Access>,
    guardrail: Spanned<String>,
    #[serde(default)]
    pattern: String,
    #[serde(default = "one")]
    runs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StabilityDoc {
    #[serde(default)]
    warmup_secs: u64,
    #[serde(default)]
    quiet_secs: u64,
    #[serde(default)]
    classes: BTreeMap<Class, ClassStabilityDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct ClassStabilityDoc {
    stable: bool,
    #[serde(default)]
    entries: u64,
    #[serde(default)]
    quiet_sessions: u32,
    #[serde(default)]
    novelty: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvenanceDoc {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    sessions: u32,
    #[serde(default)]
    started: String,
    #[serde(default)]
    ended: String,
    #[serde(default)]
    events: BTreeMap<Class, u64>,
}

/// Collects findings while the model is built.
struct Lint {
    findings: Vec<Finding>,
}

impl Lint {
    fn at<T>(&mut self, s: &Spanned<T>, severity: Severity, message: String, fix: &str) {
        self.findings.push(Finding {
            line: s.referenced.line(),
            column: s.referenced.column(),
            severity,
            message,
            fix: fix.to_string(),
        });
    }
    fn error<T>(&mut self, s: &Spanned<T>, message: String, fix: &str) {
        self.at(s, Severity::Error, message, fix);
    }
    fn warning<T>(&mut self, s: &Spanned<T>, message: String, fix: &str) {
        self.at(s, Severity::Warning, message, fix);
    }
}

/// Reads and checks a profile file.
pub fn load(path: &Path) -> Result<Profile, LintReport> {
    let report = |findings| LintReport {
        file: path.to_path_buf(),
        findings,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        report(vec![Finding {
            line: 0,
            column: 0,
            severity: Severity::Error,
            message: format!("cannot read the profile: {e}"),
            fix: "check the path; `agentwatch learn` writes profiles/NAME.yaml".into(),
        }])
    })?;
    let (profile, findings) = parse(&text);
    match profile {
        Some(p) if !findings.iter().any(|f| f.severity == Severity::Error) => Ok(p),
        _ => Err(report(findings)),
    }
}

/// Parses profile text: the model (None if the YAML or its shape is
/// wrong) and every finding, sorted by position.
pub fn parse(text: &str) -> (Option<Profile>, Vec<Finding>) {
    let doc: Doc = match serde_saphyr::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            return (
                None,
                vec![Finding {
                    line,
                    column,
                    severity: Severity::Error,
                    message: plain_message(&e),
                    fix: "fix the YAML here; docs/profile-format.md lists every field".into(),
                }],
            );
        }
    };
    let mut lint = Lint {
        findings: Vec::new(),
    };
    let p = build(doc, &mut lint);
    lint.findings.sort_by_key(|f| (f.line, f.column));
    (Some(p), lint.findings)
}

/// The parser's message without its snippet or position prefix.
fn plain_message(e: &serde_saphyr::Error) -> String {
    let s = e.without_snippet().to_string();
    let s = s.strip_prefix("error: ").unwrap_or(&s);
    let s = match s.split_once(": ") {
        Some((pos, rest)) if pos.starts_with("line ") => rest,
        _ => s,
    };
    s.lines().next().unwrap_or(s).to_string()
}

fn build(doc: Doc, lint: &mut Lint) -> Profile {
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
    let mut p = Profile::empty(&doc.agent.value);
    if let Some(g) = &doc.granularity {
        p.granularity = g.value;
    }
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
    p.readiness = doc.readiness.map(|r| Readiness {
        verdict: r.verdict,
        sessions: r.sessions,
        flagged: r.flagged,
        reason: r.reason,
        checked: r.checked,
    });
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
    let guardrails = Guardrails::builtin().with_profile(&p.guardrails, None);

    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for e in doc.executables.iter().map(|e| &e.value) {
        check_pattern(lint, &e.path);
        dup(lint, &mut seen, &e.path, "executable");
        for h in &e.sha256 {
            if h.value.len() != 64
                || !h
                    .value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                lint.error(
                    h,
                    format!("{:?} is not a sha256", h.value),
                    "use 64 lower-case hex digits (sha256sum prints them)",
                );
            }
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
    p
}

fn check_pattern(lint: &mut Lint, path: &Spanned<String>) -> Option<Glob> {
    match Glob::parse(&path.value) {
        Ok(g) => Some(g),
        Err(e) => {
            lint.error(path, e.to_string(), "write an absolute path or start with $HOME, $WORKSPACE or $TMP; * stays in one segment, ** spans segments");
            None
        }
    }
}

fn dup(lint: &mut Lint, seen: &mut BTreeMap<String, u64>, s: &Spanned<String>, what: &str) {
    if let Some(first) = seen.insert(s.value.clone(), s.referenced.line()) {
        lint.error(
            s,
            format!("duplicate {what} {:?} (first on line {first})", s.value),
            "keep one entry; put all its accesses in one list",
        );
    }
}

fn valid_address(a: &str) -> bool {
    match a.split_once('/') {
        None => a.parse::<std::net::IpAddr>().is_ok(),
        Some((ip, bits)) => match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

fn valid_dns_name(n: &str) -> bool {
    let n = n.strip_prefix("*.").unwrap_or(n);
    !n.is_empty()
        && n.len() <= 253
        && n.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests;

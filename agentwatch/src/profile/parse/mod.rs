//! Reading a profile: YAML to the model, with every problem reported at
//! its line and column with what to do about it. `profile lint` prints
//! these findings; every other command refuses a profile with errors.
mod build;
mod schema;

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
    io_uring: Option<bool>,
    #[serde(default)]
    raw_sockets: Option<bool>,
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
    resources: BTreeMap<String, Spanned<Scalar>>,
    #[serde(default)]
    models: Option<Vec<Spanned<ModelDoc>>>,
    #[serde(default)]
    instructions: Vec<Spanned<InstructionDoc>>,
    #[serde(default)]
    model_manifests: Vec<Spanned<ManifestDoc>>,
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
struct ModelDoc {
    path: Spanned<String>,
    #[serde(default)]
    sha256: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestDoc {
    manifest: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstructionDoc {
    path: Spanned<String>,
    sha256: Spanned<String>,
    #[serde(default)]
    size: u64,
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

/// A number or a text, kept as text (`resources: {pids: 64, memory: 1G}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(t) => t.clone(),
        }
    }
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
            // The typed parse stops at its first problem; the shape pass
            // finds them all, in the profile's words. What only the typed
            // parse can tell (YAML syntax, a missing field) is its own.
            let all = schema::check(text);
            if !all.is_empty() {
                return (None, all);
            }
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
    let p = build::build(doc, &mut lint);
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

//! The daemon's configuration file (TOML): the agents to watch, how each
//! is selected, its profile, mode and actions; the audit log; who may use
//! the control socket. Parsed and validated in full (profiles included)
//! before anything is applied; each problem is reported as FILE:LINE:COL.
//! `agentwatch.example.toml` at the top of the repository documents every
//! key.
use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    audit::Fsync,
    enforce::{compile::Mode, throttle::AlertPolicy},
    profile::{
        anchors::Anchors, parse, shadow::ShadowConfig, ActionKind, ActionOverrides, Actions,
        Profile,
    },
    selectors::Selector,
};

/// Agent ids the kernel maps have room for.
const MAX_AGENTS: usize = agentwatch_common::policy::MAX_AGENTS as usize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    daemon: DaemonDoc,
    audit: Option<AuditDoc>,
    #[serde(default, rename = "agent")]
    agents: Vec<Spanned<AgentDoc>>,
    #[serde(default, rename = "feed")]
    feeds: Vec<Spanned<super::feed_config::FeedDoc>>,
    metrics: Option<super::feed_config::MetricsDoc>,
    kubernetes: Option<super::k8s_config::KubernetesDoc>,
    alerts: Option<super::policy_config::AlertsDoc>,
    ui: Option<UiDoc>,
    identity: Option<super::policy_config::IdentityDoc>,
}

/// `[ui]`: the live page (`crate::ui`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UiDoc {
    listen: Spanned<String>,
    url_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DaemonDoc {
    control_group: Option<Spanned<String>>,
    pause_timeout: Option<Spanned<String>>,
    ring_buffer_mb: Option<Spanned<u32>>,
    rescan: Option<Spanned<String>>,
    alerts: Option<PathBuf>,
    #[serde(default = "yes")]
    alerts_json: bool,
    pin_dir: Option<PathBuf>,
    state_file: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditDoc {
    path: PathBuf,
    fsync: Option<Spanned<String>>,
    rotate_mb: Option<u64>,
    /// Ed25519 private key (PKCS#8 PEM) that signs checkpoints.
    key: Option<PathBuf>,
    checkpoint: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentDoc {
    name: Spanned<String>,
    profile: Spanned<PathBuf>,
    /// Violations in a day that raise a `drift` notice.
    drift_threshold: Option<u64>,
    /// How much of its model traffic the agent's context keeps.
    #[serde(default)]
    context: crate::intent::Level,
    #[serde(default = "monitor")]
    mode: Mode,
    workspace: Option<PathBuf>,
    home: Option<PathBuf>,
    tmp: Option<PathBuf>,
    select: Spanned<SelectDoc>,
    actions: Option<Spanned<ActionOverrides>>,
    /// Shadow learning: record the agent's sessions and append them to
    /// its profile; nothing but guardrails is enforced meanwhile.
    learn: Option<Spanned<bool>>,
    /// A learning session ends after this long even if the agent runs on.
    learn_session: Option<Spanned<String>>,
    /// A learning session ends this long after the agent's last process.
    learn_idle: Option<Spanned<String>>,
    /// Sessions in a row with nothing new before a class is stable.
    stable_sessions: Option<u32>,
    /// What reaching a resource budget does (pause, kill, alert).
    #[serde(default)]
    budget_action: crate::budget::Action,
}

fn monitor() -> Mode {
    Mode::Monitor
}

/// One value or a list of them.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A user as a name or a number.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum UserDoc {
    Id(u32),
    Name(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SelectDoc {
    systemd_unit: Option<Spanned<OneOrMany<String>>>,
    cgroup: Option<Spanned<OneOrMany<String>>>,
    user: Option<Spanned<OneOrMany<UserDoc>>>,
    exe: Option<Spanned<OneOrMany<PathBuf>>>,
    kubernetes: Option<Spanned<super::k8s_config::PodSelectDoc>>,
    /// The agent's processes are those `agentwatch exec --agent NAME`
    /// starts (as well as any the other selectors name).
    #[serde(default)]
    launched: bool,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// Group whose members may use the control socket (name, gid).
    pub control_group: Option<(String, u32)>,
    pub pause_timeout: Duration,
    pub ring_buffer_mb: u32,
    /// How often selectors are resolved again and running processes swept.
    pub rescan: Duration,
    /// Where alerts go (default: stderr, the journal under systemd).
    pub alerts: Option<PathBuf>,
    pub alerts_json: bool,
    pub audit: Option<AuditConfig>,
    pub agents: Vec<AgentConfig>,
    /// bpffs directory where the sensors are pinned, so enforcement
    /// outlives the daemon and a restart adopts it.
    pub pin_dir: PathBuf,
    /// What a restarted daemon needs to adopt the pins: agent ids, open
    /// approval requests.
    pub state_file: PathBuf,
    /// SOC feeds (`[[feed]]`).
    pub feeds: Vec<crate::feeds::FeedConfig>,
    /// Where Prometheus scrapes `/metrics` (`[metrics] listen`).
    pub metrics: Option<String>,
    /// How to reach the Kubernetes API (`[kubernetes]`), when on a node.
    pub kubernetes: Option<crate::k8s::ApiConfig>,
    /// `[alerts]`: repeated alerts folded, the feeds' budget.
    pub alert_policy: AlertPolicy,
    /// `[ui]`: where the live page is served, if anywhere.
    pub ui: Option<UiConfig>,
    /// `[identity]`: agents running as people, or reaching their
    /// credentials.
    pub identity: crate::identity::Policy,
}

/// Where the live UI listens and where its address (with the token) is
/// written for `agentwatch ui`.
#[derive(Debug, Clone, PartialEq)]
pub struct UiConfig {
    pub listen: crate::ui::Listen,
    pub url_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub fsync: Fsync,
    pub rotate_bytes: Option<u64>,
    /// The key that signs checkpoints (`crate::audit::checkpoint`).
    pub key: Option<PathBuf>,
    /// How often a checkpoint is signed when records came since the last.
    pub checkpoint: std::time::Duration,
}

/// A signed checkpoint's default interval.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    /// Absolute path of the profile file.
    pub profile_path: PathBuf,
    /// Where learned approvals go when the profile cannot be written
    /// (`profile::overlay`); applied to `profile` when it exists.
    pub overlay: PathBuf,
    /// The agent's drift log (`enforce::drift`), in the state directory.
    pub drift: PathBuf,
    /// Violations in a day that raise a `drift` notice (none: never).
    pub drift_threshold: Option<u64>,
    /// Intent capture (`off`, `metadata`, `content`).
    pub context: crate::intent::Level,
    /// The profile with the config's action overrides applied.
    pub profile: Profile,
    /// The actions the profile file itself says (what `approve --learn`
    /// writes back).
    pub file_actions: Actions,
    /// sha256 of the profile file as read (the audit log's profile version).
    pub profile_sha256: String,
    pub mode: Mode,
    pub anchors: Anchors,
    /// Any one of them selects a process (its whole tree joins the agent).
    pub selectors: Vec<Selector>,
    /// Pods of this node, by namespace, labels and service account.
    pub pods: Option<crate::k8s::PodSelector>,
    /// Shadow learning (`learn = true`): where sessions are recorded and
    /// the profile appended.
    pub shadow: Option<ShadowConfig>,
    /// What reaching one of the profile's resource budgets does.
    pub budget_action: crate::budget::Action,
}

impl Config {
    pub fn agent(&self, name: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// Agent `name`, or a usage error (exit 2) naming those there are.
    pub fn agent_named(&self, name: &str) -> anyhow::Result<&AgentConfig> {
        self.agent(name).ok_or_else(|| {
            crate::exit::usage(format!(
                "{} defines no agent {name} (it defines: {})",
                self.file.display(),
                self.agents
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// More text below the line (a profile's own report).
    pub detail: Option<String>,
}

/// Every problem found; nothing was applied.
#[derive(Debug, Clone)]
pub struct ConfigReport {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(
                f,
                "{}:{}:{}: error: {}",
                p.file.display(),
                p.line,
                p.column,
                p.message
            )?;
            if let Some(d) = &p.detail {
                for l in d.lines() {
                    writeln!(f, "    {l}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigReport {}

/// Collects problems against the text they point into.
pub(super) struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<Problem>,
}

impl Problems<'_> {
    pub(super) fn at(&mut self, span: Option<Range<usize>>, message: String) {
        self.with_detail(span, message, None);
    }

    fn with_detail(&mut self, span: Option<Range<usize>>, message: String, detail: Option<String>) {
        let (line, column) = span.map(|s| line_col(self.text, s.start)).unwrap_or((1, 1));
        self.list.push(Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            detail,
        });
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads and validates the configuration at `file`, profiles included.
pub fn load(file: &Path) -> Result<Config, ConfigReport> {
    // Absolute, so that relative paths in it stay right whatever the cwd.
    let file = &std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let text = std::fs::read_to_string(file).map_err(|e| ConfigReport {
        problems: vec![Problem {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the configuration: {e}"),
            detail: Some("see agentwatch.example.toml for a documented example".into()),
        }],
    })?;
    parse(file, &text)
}

/// Validates configuration `text` read from `file` (relative paths in it
/// are relative to the file's directory).
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigReport> {
    let mut p = Problems {
        file,
        text,
        list: Vec::new(),
    };
    let doc: Doc = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            p.at(e.span(), e.message().trim().to_string());
            return Err(ConfigReport { problems: p.list });
        }
    };
    let base = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let abs = |path: &Path| -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }
    };
    let mut duration = |v: &Option<Spanned<String>>, default: &str, key: &str| -> Duration {
        let (s, span) = match v {
            Some(v) => (v.get_ref().as_str(), Some(v.span())),
            None => (default, None),
        };
        crate::units::parse_duration(s).unwrap_or_else(|e| {
            p.at(span, format!("{key}: {e}"));
            Duration::from_secs(1)
        })
    };
    let pause_timeout = duration(&doc.daemon.pause_timeout, "5m", "pause_timeout");
    let rescan = duration(&doc.daemon.rescan, "2s", "rescan");

    let alert_policy = super::policy_config::alert_policy(&mut p, doc.alerts.as_ref());
    let control_group = control_group(&mut p, &doc.daemon);
    let ring_buffer_mb = ring_buffer_mb(&mut p, &doc.daemon);
    let audit = doc.audit.as_ref().map(|a| audit_config(&mut p, a, &abs));

    if doc.agents.len() > MAX_AGENTS {
        p.at(
            Some(doc.agents[MAX_AGENTS].span()),
            format!("at most {MAX_AGENTS} agents fit in the kernel maps"),
        );
    }
    // Spools and learned sessions outlive restarts and reboots: beside the audit log by default.
    let spool_base = audit
        .as_ref()
        .and_then(|a| a.path.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/var/lib/agentwatch"));
    let kubernetes = super::k8s_config::api(&mut p, doc.kubernetes.as_ref());
    let agents = agent_config::agents(&mut p, &doc.agents, &abs, kubernetes.is_some(), &spool_base);
    let state_file = doc
        .daemon
        .state_file
        .as_deref()
        .map(abs)
        .unwrap_or_else(|| PathBuf::from("/run/agentwatch/state.json"));
    let feeds = super::feed_config::feeds(&mut p, &doc.feeds, &spool_base, &abs);
    let metrics = super::feed_config::metrics(&mut p, doc.metrics.as_ref());
    let ui = doc
        .ui
        .as_ref()
        .and_then(|u| ui_config(&mut p, u, &state_file, &abs));
    let identity = super::policy_config::identity_policy(&mut p, doc.identity.as_ref());
    if !p.list.is_empty() {
        return Err(ConfigReport { problems: p.list });
    }
    Ok(Config {
        identity,
        feeds,
        metrics,
        ui,
        kubernetes,
        alert_policy,
        file: file.to_path_buf(),
        control_group,
        pause_timeout,
        ring_buffer_mb,
        rescan,
        alerts: doc.daemon.alerts.as_deref().map(abs),
        alerts_json: doc.daemon.alerts_json,
        audit,
        agents,
        pin_dir: doc
            .daemon
            .pin_dir
            .as_deref()
            .map(abs)
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/agentwatch")),
        state_file,
    })
}

/// `[ui]`: a loopback address or unix socket; the address file defaults
/// to `ui.url` beside the state file (both under /run: gone at reboot).
fn ui_config(
    p: &mut Problems,
    u: &UiDoc,
    state_file: &Path,
    abs: &dyn Fn(&Path) -> PathBuf,
) -> Option<UiConfig> {
    let listen = match u.listen.get_ref().parse() {
        Ok(l) => l,
        Err(e) => {
            p.at(Some(u.listen.span()), format!("{e}"));
            return None;
        }
    };
    let url_file = match &u.url_file {
        Some(f) => abs(f),
        None => state_file.with_file_name("ui.url"),
    };
    Some(UiConfig { listen, url_file })
}

/// `control_group`: the group's name and gid, which must exist.
fn control_group(p: &mut Problems, d: &DaemonDoc) -> Option<(String, u32)> {
    let g = d.control_group.as_ref()?;
    match nix::unistd::Group::from_name(g.get_ref()) {
        Ok(Some(grp)) => Some((grp.name, grp.gid.as_raw())),
        _ => {
            p.at(
                Some(g.span()),
                format!(
                    "control_group: no group named {:?} (create it with `groupadd {}`, or remove the key to allow root only)",
                    g.get_ref(),
                    g.get_ref()
                ),
            );
            None
        }
    }
}

/// `ring_buffer_mb`: a power of two from 1 to 1024 (default 8).
fn ring_buffer_mb(p: &mut Problems, d: &DaemonDoc) -> u32 {
    match &d.ring_buffer_mb {
        Some(v) if !v.get_ref().is_power_of_two() || *v.get_ref() > 1024 => {
            p.at(
                Some(v.span()),
                "ring_buffer_mb must be a power of two from 1 to 1024".into(),
            );
            8
        }
        Some(v) => *v.get_ref(),
        None => 8,
    }
}

/// `[audit]`: the log's path, fsync policy and rotation size.
fn audit_config(p: &mut Problems, a: &AuditDoc, abs: &dyn Fn(&Path) -> PathBuf) -> AuditConfig {
    AuditConfig {
        path: abs(&a.path),
        fsync: match &a.fsync {
            Some(f) => f.get_ref().parse().unwrap_or_else(|e| {
                p.at(Some(f.span()), format!("fsync: {e}"));
                Fsync::EveryRecord
            }),
            None => Fsync::EveryRecord,
        },
        rotate_bytes: a.rotate_mb.map(|m| m.saturating_mul(1 << 20)),
        key: a.key.as_deref().map(abs),
        checkpoint: match &a.checkpoint {
            Some(c) if a.key.is_none() => {
                p.at(Some(c.span()), "checkpoint: checkpoints are signed; set `key` to an Ed25519 private key (`agentwatch audit keygen PREFIX` makes one)".into());
                CHECKPOINT_EVERY
            }
            Some(c) => crate::units::parse_duration(c.get_ref()).unwrap_or_else(|e| {
                p.at(Some(c.span()), format!("checkpoint: {e}"));
                CHECKPOINT_EVERY
            }),
            None => CHECKPOINT_EVERY,
        },
    }
}

#[path = "agent_config.rs"]
mod agent_config;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

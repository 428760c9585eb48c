//! `agentwatch daemon`: every agent the configuration selects, enforced
//! together from one set of sensors. The main thread owns the sensors and
//! the configuration: it reloads (SIGHUP or `agentwatch reload`), resolves
//! selectors again as units restart, resolves timed-out approvals and
//! pings systemd's watchdog. The pipeline thread judges events; the
//! control thread answers the CLI.
mod adopt;
mod budgets;
pub mod config;
mod control;
mod feed_config;
mod k8s_config;
pub mod notify;
mod observe;
mod pods;
mod policy_config;
mod reload;
pub mod state;

pub use adopt::unload;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;
use tracing::{info, warn};

use crate::{
    audit::AuditLog,
    control::{Access, Server},
    enforce::audit_trail::{AuditWriter, SharedAudit},
    feeds::Feeds,
    lifecycle::{self, AgentsSink, Asked, Signals, SinkCounters},
    pipeline::{enrich::Enricher, Pipeline},
    selectors::Resolved,
    sensors::{cgroup2_mount, PolicyMaps, Sensors},
    sinks::SharedWriter,
};
use config::Config;
use notify::Notifier;

pub use crate::lifecycle::Agents;
/// Agent names by kernel agent id, for the pipeline's decoder.
type Names = Arc<RwLock<BTreeMap<u32, String>>>;

/// A request of the control thread for the main thread.
pub struct ReloadAsk {
    pub by: String,
    pub reply: mpsc::Sender<Result<String, reload::ReloadError>>,
}

/// An agent's place in the kernel: its id and the selector keys in the
/// kernel's maps for it.
struct Slot {
    id: u32,
    installed: Vec<Resolved>,
}

pub struct Daemon {
    cfg: Config,
    sensors: Sensors,
    /// Never written: reopened for each agent's enforcer.
    template: PolicyMaps,
    agents: Agents,
    names: Names,
    slots: BTreeMap<String, Slot>,
    audit: Option<SharedAudit>,
    feeds: Arc<Feeds>,
    counters: Arc<SinkCounters>,
    /// This node's pods (empty unless `[kubernetes]` is configured).
    pods: crate::k8s::Pods,
    alerts: SharedWriter,
    cgroup2: Option<PathBuf>,
    notifier: Notifier,
    pipeline: Option<Pipeline>,
    reloads: Receiver<ReloadAsk>,
    signals: Signals,
    _server: Option<Server>,
    _ui: Option<crate::ui::UiServer>,
    /// Selector problems already reported (said once, not every rescan).
    reported: BTreeSet<String>,
    /// The state file's contents as last written.
    last_state: String,
    /// The sensors were adopted from pins (not loaded by this process).
    adopted: bool,
}

/// How long an adopting daemon reads what the ring buffer held before it
/// asks about pauses nothing explains.
const ADOPTED_BACKLOG: Duration = Duration::from_secs(1);

/// What a SIGHUP asks (reload) and what stops the daemon.
const RELOAD_SIGNALS: [libc::c_int; 1] = [libc::SIGHUP];
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// Where alert lines go: the configured file (appended), else stderr.
fn alerts_output(path: Option<&std::path::Path>) -> anyhow::Result<Box<dyn std::io::Write + Send>> {
    Ok(match path {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open the alerts file {}", p.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    })
}

/// The audit log of `[audit]`, signing checkpoints when it names a key
/// (read first: a key that does not load leaves the log untouched).
fn open_audit(a: &config::AuditConfig) -> anyhow::Result<SharedAudit> {
    use crate::{audit::checkpoint::Signer, enforce::audit_trail::Anchor};
    let signer = match &a.key {
        Some(k) => Some(Signer::load(k).map_err(|e| crate::exit::usage(e.to_string()))?),
        None => None,
    };
    let mut w = AuditWriter::new(AuditLog::open(&a.path, a.fsync, a.rotate_bytes)?);
    if let Some(s) = signer {
        w.anchor(Anchor::new(s, a.checkpoint));
    }
    Ok(std::sync::Arc::new(std::sync::Mutex::new(w)))
}

impl Daemon {
    /// Loads the sensors, starts every agent of `cfg`, the pipeline and
    /// the control socket, and tells systemd it is ready.
    pub fn start(cfg: Config) -> anyhow::Result<Self> {
        // From the start: a SIGHUP or SIGTERM while loading is handled by
        // the main loop, not by the default action.
        let signals = Signals::catch(&STOP_SIGNALS, &RELOAD_SIGNALS);
        let ring = crate::units::ring_bytes(cfg.ring_buffer_mb).context("ring_buffer_mb")?;
        let audit = match &cfg.audit {
            Some(a) => Some(open_audit(a)?),
            None => None,
        };
        let alerts = alerts_output(cfg.alerts.as_deref())?;
        let fresh = reload::compile_all(
            &cfg,
            &BTreeMap::new(),
            agentwatch_common::policy::MAX_AGENTS,
        )?;
        let adopt::Kernel {
            sensors,
            template,
            adopted,
        } = adopt::load_or_adopt(&cfg, ring, reload::capacity_for(&fresh))?;
        // Adopted agents keep their kernel slots.
        let plan = match &adopted {
            Some(st) => {
                adopt::release_gone(st, &cfg, &template)?;
                reload::compile_all(&cfg, &adopt::ids(Some(st)), template.capacity().agents)?
            }
            None => fresh,
        };
        let agents: Agents = Default::default();
        let names: Names = Default::default();
        let (tx, reloads) = mpsc::channel();
        let feeds = Feeds::start(&cfg.feeds)?;
        if let Some(Ok(mut w)) = audit.as_ref().map(|a| a.lock()) {
            let to = feeds.clone();
            w.send_checkpoints(Box::new(move |r| to.notice(r)));
        }
        let mut d = Self {
            cfg,
            sensors,
            template,
            agents,
            names,
            slots: BTreeMap::new(),
            audit,
            feeds,
            counters: Default::default(),
            pods: Default::default(),
            alerts: SharedWriter::new(alerts),
            cgroup2: cgroup2_mount(),
            notifier: Notifier::from_env(),
            pipeline: None,
            reloads,
            signals,
            _server: None,
            _ui: None,
            reported: BTreeSet::new(),
            last_state: String::new(),
            adopted: false,
        };
        for (a, compiled) in plan.agents {
            let adopt = adopted
                .as_ref()
                .is_some_and(|st| st.agents.contains_key(&a.name));
            d.start_agent(&a, plan.ids[&a.name], compiled, &plan.guardrails, adopt)?;
        }
        d.adopted = adopted.is_some();
        d.save_state();
        d.record(json!({
            "type": "daemon", "event": "started", "pid": std::process::id(),
            "config": d.cfg.file.display().to_string(),
            "config_sha256": reload::file_sha256(&d.cfg.file),
            "agents": d.slots.keys().collect::<Vec<_>>(),
            "adopted": d.adopted,
        }));
        d.start_serving(tx)?;
        d.rescan();
        Ok(d)
    }

    /// With the agents installed: the pipeline (records an adopted ring
    /// buffer holds go to the agents), the control socket and metrics.
    fn start_serving(&mut self, reloads: mpsc::Sender<ReloadAsk>) -> anyhow::Result<()> {
        let mut enricher = Enricher::new(cgroup2_mount());
        if let Some(api) = self.cfg.kubernetes.clone() {
            pods::refresh_in_background(&api, self.pods.clone())?;
            enricher = enricher.with_pods(self.pods.clone());
        }
        self.pipeline = Some(Pipeline::start(
            &mut self.sensors,
            self.names.clone(),
            Box::new(AgentsSink {
                agents: self.agents.clone(),
                audit: self.audit.clone(),
                feeds: Some(self.feeds.clone()),
                counters: self.counters.clone(),
            }),
            enricher,
        )?);
        let handler = Arc::new(control::DaemonControl::new(self.agents.clone(), reloads));
        self._server = Some(crate::control::serve_at(
            &crate::control::daemon_socket(),
            Access::Group(self.cfg.control_group.as_ref().map(|(_, gid)| *gid)),
            handler.clone(),
        )?);
        if let Some(ui) = &self.cfg.ui {
            let src = crate::ui::Source {
                handler,
                audit: self.cfg.audit.as_ref().map(|a| a.path.clone()),
                drift: self
                    .cfg
                    .agents
                    .iter()
                    .map(|a| (a.name.clone(), a.drift.clone()))
                    .collect(),
            };
            self._ui = Some(crate::ui::serve(&ui.listen, src, Some(&ui.url_file))?);
        }
        if let Some(listen) = self.cfg.metrics.clone() {
            let observed = observe::Observed {
                agents: self.agents.clone(),
                counters: self.counters.clone(),
                pipeline: self
                    .pipeline
                    .as_ref()
                    .map(Pipeline::live)
                    .unwrap_or_default(),
                feeds: self.feeds.clone(),
                maps: Mutex::new(self.template.reopen()?),
            };
            let addr = crate::feeds::metrics::serve(&listen, Arc::new(move || observed.render()))
                .with_context(|| format!("cannot listen for metrics on {listen}"))?;
            info!(%addr, "serving Prometheus metrics at /metrics");
        }
        Ok(())
    }

    /// Serves until SIGTERM or SIGINT; returns the exit status.
    pub fn run(mut self) -> anyhow::Result<i32> {
        let status = self.status_line();
        self.notifier.ready(&status);
        eprintln!("agentwatch: daemon ready: {status}");
        let started = Instant::now();
        let mut last_rescan = Instant::now();
        loop {
            if self.adopted && started.elapsed() >= ADOPTED_BACKLOG {
                self.adopted = false;
                lifecycle::each_agent(&self.agents, |e| e.ask_if_paused_unexplained());
            }
            // A short turn: intent capture follows new agent processes
            // within it.
            self.sensors.follow_tls();
            match self.reloads.recv_timeout(Duration::from_millis(20)) {
                Ok(ask) => {
                    let r = self.reload(&ask.by);
                    let _ = ask.reply.send(r);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
            }
            match self.signals.asked(|pid| self.sensors.is_watched(pid)) {
                Asked::Stop(pid) => {
                    info!(pid, "stop signal");
                    break;
                }
                Asked::Reload(pid) => match self.reload(&format!("SIGHUP from pid {pid}")) {
                    Ok(m) => eprintln!("agentwatch: {m}"),
                    Err(e) => eprintln!("agentwatch: {e}"),
                },
                Asked::Nothing => {}
            }
            lifecycle::turn(&self.agents);
            if last_rescan.elapsed() >= self.cfg.rescan {
                self.rescan();
                last_rescan = Instant::now();
            }
            if let Some(a) = &self.audit {
                if let Ok(mut w) = a.lock() {
                    w.sync_if_due();
                }
            }
            self.save_state();
            self.report_feed_drops();
            self.notifier.watchdog_if_due();
        }
        self.shutdown();
        Ok(0)
    }

    fn status_line(&self) -> String {
        format!(
            "{} agent(s) from {}",
            self.slots.len(),
            self.cfg.file.display()
        )
    }

    /// Records refused by a full spool are a loss, said and audited.
    fn report_feed_drops(&self) {
        for (feed, n) in self.feeds.take_dropped() {
            warn!(%feed, dropped = n, "feed spool full; records dropped");
            self.counters.lost(&format!("feed:{feed}"), "spool_full", n);
            self.record(json!({"type": "loss", "stage": format!("feed:{feed}"), "reason": "spool_full", "count": n}));
        }
    }

    /// Appends a record of the daemon itself to the audit log.
    fn record(&self, r: serde_json::Value) {
        lifecycle::record(self.audit.as_ref(), r);
    }

    /// Writes the state file when it changed (agent slots), so a daemon
    /// that dies at any moment can be adopted.
    fn save_state(&mut self) {
        let agents = self
            .slots
            .iter()
            .map(|(name, slot)| (name.clone(), slot.id))
            .collect();
        let st = state::State {
            object_sha256: state::object_sha256().to_string(),
            pin_dir: self.cfg.pin_dir.clone(),
            capacity: self.template.capacity(),
            lsm_refused: self.template.lsm_tier().err().map(str::to_string),
            agents,
        };
        let Ok(text) = serde_json::to_string_pretty(&st) else {
            return;
        };
        if text == self.last_state {
            return;
        }
        match state::save(&self.cfg.state_file, &text) {
            Ok(()) => self.last_state = text,
            Err(e) => {
                warn!(file = %self.cfg.state_file.display(), error = %e, "cannot write the state file; a restart could not adopt the open requests")
            }
        }
    }

    /// Drains the pipeline and says what is left behind: the pinned
    /// sensors keep enforcing until a daemon adopts them again or
    /// `--unload` removes them.
    fn shutdown(mut self) {
        self.notifier.stopping();
        if let Some(p) = self.pipeline.take() {
            // Every event is in: the sessions under way are appended now.
            let counts = lifecycle::drain(p, &self.agents);
            info!(?counts, "pipeline drained");
        }
        // Undelivered records stay spooled for the next daemon.
        self.feeds.stop();
        self.report_feed_drops();
        self.save_state();
        lifecycle::each_agent(&self.agents, |e| {
            let open = e.pending().len();
            if open > 0 {
                eprintln!(
                    "agentwatch: {}: {open} approval request(s) open; its processes stay stopped until a restarted daemon resolves them",
                    e.name()
                );
            }
        });
        eprintln!(
            "agentwatch: enforcement stays in the kernel (pinned in {}); a restarted daemon adopts it, `agentwatch daemon --unload` removes it",
            self.cfg.pin_dir.display()
        );
        self.record(json!({"type": "daemon", "event": "stopped", "pid": std::process::id()}));
        if let Some(a) = &self.audit {
            if let Ok(mut w) = a.lock() {
                w.close();
            }
        }
        eprintln!("agentwatch: daemon stopped");
    }
}

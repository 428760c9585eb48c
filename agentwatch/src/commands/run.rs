//! `agentwatch run`: CMD as an agent under its profile. The profile and
//! guardrails are compiled into the kernel maps; the kernel decides
//! known-good events itself and acts on violations at the syscall;
//! userspace alerts, keeps approval requests, and judges what the kernel
//! could not. Ends when CMD ends; exits with CMD's status.
use std::{
    ffi::OsString,
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use serde_json::json;

use super::session::{self, Session, AGENT_ID};
use crate::{
    audit::checkpoint::Signer,
    audit::AuditLog,
    control,
    enforce::audit_trail::{Anchor, AuditTrail, AuditWriter, SharedAudit},
    enforce::own_files,
    enforce::{
        agent::{AgentEnforcer, Setup},
        approvals::Outcome,
        compile::{self, Mode},
    },
    lifecycle::{self, Agents, AgentsSink, Asked, Signals},
    profile::Class,
    profile::{anchors::Anchors, parse},
    sandbox::{files, shield, Held, Layers, Sandbox},
    selectors::Selector,
    sensors::{cgroup2_mount, DfaCapacity, Sensors},
    spawn,
};

#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// Agent name [default: the profile's agent].
    #[arg(long)]
    pub agent: Option<String>,
    /// The agent's profile (from `agentwatch learn`), compiled into the
    /// kernel.
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
    /// monitor: alert, block nothing but guardrails; enforce: act as the
    /// profile's `actions` say.
    #[arg(long, value_enum, default_value = "monitor")]
    pub mode: Mode,
    /// How long a paused agent waits for `approve` before it is killed.
    #[arg(long, default_value = "5m", value_parser = crate::units::parse_duration)]
    pub pause_timeout: Duration,
    /// Alerts and the summary as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Write alerts and the summary here [default: stderr].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Identical alerts (same rule, same object) within this long of the
    /// first are folded into one alert with their count and first and
    /// last times; `off` prints every one. The audit log keeps every
    /// decision either way.
    #[arg(long, value_name = "DURATION|off", default_value = "10s", value_parser = alert_window)]
    pub alert_window: AlertWindow,
    #[command(flatten)]
    pub anchors: super::anchor_args::AnchorArgs,
    /// Kernel ring buffer size in MiB (a power of two).
    #[arg(long, default_value = "8")]
    pub ring_buffer_mb: u32,
    /// Append every decision and approval answer to this hash-chained
    /// audit log (`agentwatch audit verify FILE` checks it).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// When audit records reach the disk: `record` (fsync each) or an
    /// interval such as `1s`.
    #[arg(long, default_value = "record", value_name = "POLICY")]
    pub audit_fsync: crate::audit::Fsync,
    /// Rotate the audit log at this size; the chain continues in the next
    /// file.
    #[arg(long, value_name = "MB")]
    pub audit_rotate_mb: Option<u64>,
    /// Sign a checkpoint of the audit log with this Ed25519 private key
    /// (PKCS#8 PEM, mode 600; `agentwatch audit keygen PREFIX` makes one),
    /// and a final one at the end: `audit verify --key PUB` then catches
    /// a rewritten log or a cut tail.
    #[arg(long, value_name = "KEY", requires = "audit")]
    pub audit_key: Option<PathBuf>,
    /// How often a checkpoint is signed, when records came since the last.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = crate::units::parse_duration, requires = "audit_key")]
    pub audit_checkpoint: Duration,
    /// Take every decision in userspace; the kernel only senses. The
    /// fallback of kernels without in-kernel signals, kept for
    /// `cargo xtask bench` to measure against.
    #[arg(long, hide = true)]
    pub decide_in_userspace: bool,
    /// Start CMD without the launch sandbox (the seccomp filter refusing
    /// the escapes, Landlock's signal scoping): only the eBPF judge holds.
    #[arg(long)]
    pub no_sandbox: bool,
    /// Also enforce on processes that exec while matching KIND=VALUE:
    /// cgroup=PATH (cgroup v2), uid=USER, exe=PATH. Repeatable. Processes
    /// already running that match are enforced on from now on. Without a
    /// command, runs until stopped (Ctrl-C, SIGTERM) or `--duration`.
    #[arg(long, value_name = "KIND=VALUE")]
    pub select: Vec<Selector>,
    /// Without a command: stop after this long (30s, 5m, 1h).
    #[arg(long, value_parser = crate::units::parse_duration, requires = "select")]
    pub duration: Option<Duration>,
    /// How much of the agent's model traffic (HTTPS through OpenSSL to the
    /// profile's `model: true` endpoints) its alerts and requests carry as
    /// context: off (nothing captured), metadata (endpoint, model, sizes,
    /// tool names), content (also the instruction and tool inputs,
    /// redacted).
    #[arg(long, value_enum, default_value = "metadata")]
    pub context: crate::intent::Level,
    /// Serve the live page (timeline, requests waiting with approve and
    /// deny buttons) on this loopback address or unix socket
    /// (127.0.0.1:0 picks a port, unix:/PATH); its address, token
    /// included, is printed on stderr.
    #[arg(long, value_name = "ADDR")]
    pub ui: Option<crate::ui::Listen>,
    /// An agent process running as a person's account (a UID in
    /// --human-uids, a login account with a home under /home, a login
    /// session), or reaching a person's credentials: off, alert, or refuse
    /// (its processes are killed). Audited either way.
    #[arg(long, value_enum, default_value = "alert")]
    pub identity: crate::identity::Act,
    /// A resource budget of the command's agent, KIND=VALUE (repeatable):
    /// memory=SIZE (512M), pids=N (processes at once), cpu=CPUS (0.5),
    /// files=N (open files per process), runtime=DURATION (30m). Memory,
    /// pids and cpu are the kernel's (a cgroup of the agent's own).
    #[arg(long = "budget", value_name = "KIND=VALUE")]
    pub budgets: Vec<String>,
    /// What reaching a budget does: alert, pause (until `agentwatch
    /// resume`), kill.
    #[arg(long, value_enum, default_value = "pause")]
    pub budget_action: crate::budget::Action,
    /// UIDs of people's accounts.
    #[arg(long, value_name = "FIRST-LAST", default_value = "1000-60000", value_parser = crate::identity::parse_range)]
    pub human_uids: std::ops::RangeInclusive<u32>,
    /// The command to run, after `--` (optional with --select).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

/// `--alert-window`: a duration, or none for `off`.
#[derive(Debug, Clone, Copy)]
pub struct AlertWindow(pub Option<Duration>);

fn alert_window(s: &str) -> Result<AlertWindow, String> {
    crate::enforce::throttle::AlertPolicy::parse_window(s).map(AlertWindow)
}

/// Signals that would end us by default: caught with their sender, so
/// one sent by the agent itself (tampering) can be ignored.
const END_SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];
/// Without a command, Ctrl-C ends `run` too.
const END_SELECTED: [libc::c_int; 5] = [
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGINT,
];
/// `run` takes its profile once: no signal reloads it.
const NO_RELOAD: [libc::c_int; 0] = [];

pub fn run(opts: RunOptions) -> anyhow::Result<i32> {
    let cgroup2 = cgroup2_mount();
    let resolved = selectors_of(&opts, cgroup2.as_deref())?;
    let profile = parse::load(&opts.profile).map_err(|r| crate::exit::usage(r.to_string()))?;
    let agent = opts.agent.clone().unwrap_or_else(|| profile.agent.clone());
    let ring = session::ring_bytes(opts.ring_buffer_mb)?;
    let anchors = opts.anchors.anchors();
    let (audit, shared_audit) = match audit_trail(&opts)? {
        Some((trail, shared)) => (Some(trail), Some(shared)),
        None => (None, None),
    };
    let keys = crate::pins::manifest::keys(&profile, &anchors);
    let mut own: Vec<&std::path::Path> = vec![opts.profile.as_path()];
    own.extend(opts.audit_key.as_deref());
    own.extend(keys.iter().map(|k| k.as_path()));
    let guardrails =
        own_files::guardrails(&own, opts.audit.as_deref(), &[control::run_dir().as_path()]);
    let compiled = compile::compile(AGENT_ID, &profile, &anchors, &guardrails, opts.mode);
    warn_compiled(&compiled);
    let sandboxed = !opts.no_sandbox && opts.select.is_empty();
    let extras =
        crate::sensors::Extras::for_agent(opts.context != crate::intent::Level::Off, sandboxed);
    let (sensors, mut maps) = Sensors::load_enforcing(
        ring,
        DfaCapacity::for_dfa(compiled.dfa.as_ref()),
        None,
        extras,
    )?;
    let sandbox = launch_sandbox(&opts, &mut maps, &profile, &anchors, &guardrails, &compiled)?;
    if let (Mode::Enforce, true, Err(why)) = (opts.mode, denies_files(&compiled), maps.lsm_tier()) {
        eprintln!("agentwatch: note: no BPF LSM here ({why}); a denied file call or exec is stopped by SIGKILL at syscall entry instead of failing with EPERM (`agentwatch doctor` shows the tiers)");
    }
    let alerts = alerts_output(&opts)?;
    let mut enforcer = AgentEnforcer::start(
        Setup {
            agent: agent.clone(),
            agent_id: AGENT_ID,
            mode: opts.mode,
            profile,
            profile_path: opts.profile.clone(),
            overlay: None,
            file_actions: None,
            anchors,
            guardrails,
            compiled,
            timeout: opts.pause_timeout,
            alerts,
            json: opts.json,
            kernel_decisions: !opts.decide_in_userspace,
            kept: None,
            feeds: None,
            alert_policy: crate::enforce::throttle::AlertPolicy {
                window: opts.alert_window.0,
                feed_budget: None,
            },
            shadow: None,
            drift: None,
            context: opts.context,
            audit,
        },
        maps,
    )?;
    enforcer.set_identity(opts.identity_policy());
    let enforcer = Arc::new(Mutex::new(enforcer));
    let agents = agents_of(&agent, &enforcer);
    let _server = control::serve(&agent, enforcer.clone())?;
    let _ui = serve_ui(&opts, &enforcer)?;
    let closing_audit = shared_audit.clone();
    let sink = AgentsSink {
        agents: agents.clone(),
        audit: shared_audit,
        feeds: None,
        counters: Default::default(),
    };
    let mut s = Session::with_sensors(sensors, &agent, Box::new(sink))?;
    let running = if resolved.is_empty() {
        0
    } else {
        s.select(&resolved)?
    };
    let status = if opts.cmd.is_empty() {
        watch_selected(&opts, &agent, running, &agents, &mut s.sensors);
        Some(0)
    } else {
        session::ignore_interrupts();
        let signals = Signals::catch(&END_SIGNALS, &NO_RELOAD);
        match super::run_launch::start_command(&agent, &opts, &mut s, sandbox.as_ref(), &enforcer)?
        {
            Ok(mut child) => {
                supervise(&mut child, &agents, &signals, &mut s.sensors)?.map(spawn::shell_status)
            }
            Err(e) => {
                eprintln!("agentwatch: {e}");
                lifecycle::drain(s.pipeline, &agents);
                return Ok(e.exit_status());
            }
        }
    };
    let out = Output::new(opts.json, s.sensors.tls.summary());
    let counts = lifecycle::drain(s.pipeline, &agents);
    let layers = sandbox.as_ref().map(|s| s.layers.clone());
    end(&enforcer, counts.records, out, layers, closing_audit)?;
    Ok(status.unwrap_or(1))
}

/// What the compiler could not do, said before the run starts.
fn warn_compiled(compiled: &compile::Compiled) {
    for s in &compiled.skipped {
        eprintln!("agentwatch: warning: {s} names an anchor not set here; it matches nothing (set --workspace, --home or --tmp)");
    }
    if let Some(e) = &compiled.dfa_error {
        eprintln!("agentwatch: warning: {e}; every file and exec event crosses to userspace and is judged there");
    }
}

/// The run's one agent, as the lifecycle's sink looks agents up.
fn agents_of(agent: &str, enforcer: &Arc<Mutex<AgentEnforcer>>) -> Agents {
    let agents: Agents = Default::default();
    if let Ok(mut m) = agents.write() {
        m.insert(agent.to_string(), enforcer.clone());
    }
    agents
}

/// The live page, when `--ui` asks for it.
fn serve_ui(
    opts: &RunOptions,
    enforcer: &Arc<Mutex<AgentEnforcer>>,
) -> anyhow::Result<Option<crate::ui::UiServer>> {
    let Some(listen) = &opts.ui else {
        return Ok(None);
    };
    let src = crate::ui::Source {
        handler: control::one_agent(enforcer.clone()),
        audit: opts.audit.clone(),
        drift: Vec::new(),
    };
    let ui = crate::ui::serve(listen, src, None)?;
    eprintln!("agentwatch: the live page is at {}", ui.url);
    Ok(Some(ui))
}

/// How the summary is written, and the intent capture's part of it (its
/// libraries and error).
struct Output {
    json: bool,
    intent: serde_json::Value,
}

impl Output {
    fn new(json: bool, intent: serde_json::Value) -> Self {
        Self { json, intent }
    }
}

/// The run is over: open requests denied (nobody said yes), the summary
/// written, the audit log sealed.
fn end(
    enforcer: &Mutex<AgentEnforcer>,
    records: u64,
    out: Output,
    layers: Option<Layers>,
    audit: Option<SharedAudit>,
) -> anyhow::Result<()> {
    let mut e = enforcer
        .lock()
        .map_err(|_| anyhow::anyhow!("the enforcer stopped after an internal error"))?;
    if !e.pending().is_empty() {
        let _ = e.deny(None, Outcome::Denied, "agentwatch (the command ended)");
    }
    summary(&mut e, records, out, layers)?;
    if let Some(Ok(mut w)) = audit.as_ref().map(|a| a.lock()) {
        w.close();
    }
    Ok(())
}

/// The `--select` selectors, resolved before anything is loaded (bad
/// input fails fast); refuses a run with neither them nor a command.
fn selectors_of(
    opts: &RunOptions,
    cgroup2: Option<&std::path::Path>,
) -> anyhow::Result<Vec<crate::selectors::Resolved>> {
    if opts.cmd.is_empty() && opts.select.is_empty() {
        return Err(crate::exit::usage(
            "nothing to run: give a command after --, or --select KIND=VALUE (cgroup=PATH, uid=USER, exe=PATH) to enforce on processes it did not start",
        ));
    }
    opts.select
        .iter()
        .map(|s| s.resolve(cgroup2))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::exit::usage(e.to_string()))
}

/// Without a command: says what is enforced on, then turns the lifecycle
/// until a stop signal from outside the agent (Ctrl-C included), or
/// `--duration`.
fn watch_selected(
    opts: &RunOptions,
    agent: &str,
    running: usize,
    agents: &Agents,
    sensors: &mut Sensors,
) {
    let verb = format!("enforcing {agent} ({}) on", opts.mode.name());
    session::say_selected(&verb, running, &opts.select, opts.duration);
    let signals = Signals::catch(&END_SELECTED, &NO_RELOAD);
    let t = std::time::Instant::now();
    while opts.duration.is_none_or(|d| t.elapsed() < d) {
        sensors.follow_tls();
        lifecycle::turn(agents);
        if let Asked::Stop(_) = signals.asked(|pid| sensors.is_watched(pid)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sandbox the command starts in, unless `--no-sandbox`; the agent's
/// policy says it is sandboxed. Landlock holds the file classes the
/// profile refuses, where no BPF LSM tier does (not with
/// `--decide-in-userspace`: its refusals are reported by the kernel's
/// judgement). What this kernel lacks is said now.
fn launch_sandbox(
    opts: &RunOptions,
    maps: &mut crate::sensors::PolicyMaps,
    profile: &crate::profile::Profile,
    anchors: &Anchors,
    guardrails: &crate::profile::guardrails::Guardrails,
    compiled: &compile::Compiled,
) -> anyhow::Result<Option<Arc<Sandbox>>> {
    if opts.no_sandbox {
        return Ok(None);
    }
    // The BPF LSM tier, where attached, refuses file calls by the real
    // file with EPERM itself; Landlock's file rules stand in where not.
    let held = Held::of_policy(&compiled.policy);
    let files = (held.any() && !opts.decide_in_userspace && maps.lsm_tier().is_err()).then(|| {
        let abi = landlock::ABI::from(crate::sandbox::landlock_abi().unwrap_or(0));
        files::resolve(&files::grants(profile, anchors), held, abi)
    });
    // From the compiled flags: what the kernel's escape check reads too.
    let allowed = crate::sandbox::Allowed::of_flags(compiled.policy.flags);
    // The BPF LSM tier, where attached, judges real paths against the
    // guardrails itself.
    let wanted = shield::wanted(&compiled.policy);
    let shield = (wanted && !opts.decide_in_userspace && maps.lsm_tier().is_err())
        .then(|| shield::for_profile(profile, anchors, guardrails))
        .flatten();
    let s = Sandbox::prepare(files, allowed, shield)?;
    if !s.layers.scoped || (held.any() && s.layers.files.is_none()) {
        eprintln!("agentwatch: note: {}", s.layers.describe());
    }
    Ok(Some(Arc::new(s)))
}

/// Where alerts go: `-o FILE` (created), else stderr.
fn alerts_output(opts: &RunOptions) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match &opts.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    })
}

/// The audit trail `--audit` asks for, naming the profile's version, and
/// its writer (records of agentwatch itself, such as a loss, go there).
fn audit_trail(opts: &RunOptions) -> anyhow::Result<Option<(AuditTrail, SharedAudit)>> {
    let Some(path) = &opts.audit else {
        return Ok(None);
    };
    // The key first: one that does not load leaves the log untouched.
    let signer = match &opts.audit_key {
        Some(k) => Some(Signer::load(k).map_err(|e| crate::exit::usage(e.to_string()))?),
        None => None,
    };
    let log = AuditLog::open(
        path,
        opts.audit_fsync,
        opts.audit_rotate_mb.map(|m| m.saturating_mul(1 << 20)),
    )?;
    let bytes = std::fs::read(&opts.profile)
        .with_context(|| format!("cannot read {}", opts.profile.display()))?;
    let mut writer = AuditWriter::new(log);
    if let Some(s) = signer {
        writer.anchor(Anchor::new(s, opts.audit_checkpoint));
    }
    let shared: SharedAudit = Arc::new(Mutex::new(writer));
    let mut trail = AuditTrail::new(shared.clone(), &bytes);
    // Every writer begins with this record: an empty log was emptied.
    trail.record(serde_json::json!({
        "type": "run", "event": "started", "pid": std::process::id(),
        "profile": opts.profile.display().to_string(),
    }));
    Ok(Some((trail, shared)))
}

/// Whether the profile denies a file call or exec (the LSM tier matters).
fn denies_files(compiled: &compile::Compiled) -> bool {
    use agentwatch_common::policy::{action, class};
    let a = &compiled.policy.actions;
    [class::EXEC, class::FILE, class::DELETE]
        .iter()
        .any(|c| a[*c] == action::DENY)
}

/// Waits for the command, turning the lifecycle: timed-out approvals
/// resolved, a stop signal from outside obeyed (the command is ended),
/// one the agent sent ignored. `None`: the command's status is unknown.
fn supervise(
    child: &mut std::process::Child,
    agents: &Agents,
    signals: &Signals,
    sensors: &mut Sensors,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(st) = child.try_wait().context("waiting for the command")? {
            return Ok(Some(st));
        }
        sensors.follow_tls();
        lifecycle::turn(agents);
        if let Asked::Stop(_) = signals.asked(|pid| sensors.is_watched(pid)) {
            return Ok(session::terminate(child, Duration::from_secs(5)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The intent capture's summary with the agent's level in it.
fn with_level(mut intent: serde_json::Value, level: crate::intent::Level) -> serde_json::Value {
    intent["level"] = json!(level.name());
    intent
}

fn summary(
    e: &mut AgentEnforcer,
    records: u64,
    out: Output,
    sandbox: Option<Layers>,
) -> anyhow::Result<()> {
    let d = e.decided();
    let classes = Class::ALL;
    let in_kernel: u64 = d.allowed.iter().sum();
    let stats = e.stats().clone();
    // How a deny of a file call or exec was carried out on this host.
    let file_deny = if e.lsm_tier().is_ok() {
        "bpf_lsm"
    } else {
        "sigkill"
    };
    let line = if out.json {
        let by: serde_json::Map<String, serde_json::Value> = classes
            .iter()
            .map(|c| (c.name().to_string(), json!(d.allowed_of(*c))))
            .collect();
        json!({
            "type": "summary",
            "agent": e.name(),
            "mode": e.mode().name(),
            "decided_in_kernel": in_kernel,
            "decided_in_kernel_by_class": by,
            "crossed": records,
            "kernel_violations": d.acted.iter().sum::<u64>(),
            "file_deny": file_deny,
            "sandbox": sandbox,
            "intent": with_level(out.intent, e.intent_level()),
            "stats": stats,
        })
        .to_string()
    } else {
        format!(
            "run: {in_kernel} events allowed in the kernel without crossing (file {}, delete {}, network {}); {records} records crossed; {} alerts; {} acted on in the kernel, {} in userspace; approvals: {} approved, {} denied, {} timed out",
            d.allowed_of(Class::File), d.allowed_of(Class::Delete), d.allowed_of(Class::Network), stats.alerts, stats.kernel_actions, stats.userspace_actions,
            stats.approved, stats.denied, stats.timed_out
        ) + &format!("; file and exec deny by {file_deny}; {}", sandbox.map_or("no sandbox (--no-sandbox)".into(), |l| l.describe()))
    };
    e.write_line(&line);
    Ok(())
}

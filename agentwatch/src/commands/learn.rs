//! `agentwatch learn`: run CMD as a watched agent, learn its profile, show
//! each class's stability clock live, and write the profile. With
//! `--append`, the session is added to an existing profile (generalised
//! again over everything seen, stability counted across sessions); with
//! `--record` (the default for `--append`), the session's events are kept
//! for `profile readiness`; with `--replay`, recorded sessions are learned
//! without running anything.
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::session::{self, Session};
use crate::clock::monotonic_ns;
use crate::{
    daemon::config,
    event::{Detail, Event},
    profile::{
        anchors::Anchors,
        builder::{LearnConfig, Learner},
        convergence::ClockConfig,
        guardrails::Guardrails,
        matcher::Matcher,
        merge, parse, readiness,
        session::{self as recorded, Header, Recorder},
        yaml::to_yaml,
        Class, Granularity, Profile,
    },
    selectors::{Resolved, Selector},
    sensors::cgroup2_mount,
    sinks::Sink,
};

mod progress;
mod steps;

use steps::{check_what_to_learn, finish_recording, own_files, recorder, start_watching, watch};

use progress::Progress;

#[derive(Debug, clap::Args)]
pub struct LearnOptions {
    /// The agent's name (also the default profile file name).
    #[arg(long)]
    pub agent: String,
    /// Where to write the profile [default: profiles/NAME.yaml].
    #[arg(
        long = "output",
        short = 'o',
        visible_alias = "out",
        value_name = "FILE"
    )]
    pub out: Option<std::path::PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Stop learning after this long (30, 30s, 5m, 1h); a command still
    /// running then gets SIGTERM.
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Stop as soon as every class (exec, file, network, dns) is stable.
    #[arg(long)]
    pub until_stable: bool,
    /// Progress as JSON lines on stderr instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// No class is stable before learning has run this long.
    #[arg(long, default_value = "30s", value_parser = crate::units::parse_duration)]
    pub warmup: std::time::Duration,
    /// A class is stable when nothing new appeared for this long. (Was
    /// `--quiet`, which reads as "less output"; still accepted.)
    #[arg(long = "stable-after", alias = "quiet", value_name = "DURATION", default_value = "60s", value_parser = crate::units::parse_duration)]
    pub quiet: std::time::Duration,
    /// Rate budget = peak per minute x this.
    #[arg(long, default_value_t = 2.0)]
    pub headroom: f64,
    /// Siblings sharing a name structure needed to merge into a pattern.
    #[arg(long, default_value_t = 3)]
    pub min_siblings: usize,
    /// Kernel ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 8)]
    pub ring_buffer_mb: u32,
    /// Learn the processes that exec while matching KIND=VALUE
    /// (cgroup=PATH, uid=USER, exe=PATH, unit=NAME) instead of starting
    /// a command; those already running are watched from now on.
    /// Repeatable.
    #[arg(long, value_name = "KIND=VALUE", conflicts_with = "config")]
    pub select: Vec<Selector>,
    /// Learn the agent --agent of this daemon configuration, selected as
    /// it says (its selectors and workspace, home and tmp), without
    /// starting it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Add this session to the existing profile FILE (written back there
    /// unless --out says otherwise): everything seen is generalised again,
    /// and each class's stability is counted across sessions. Records the
    /// session (see --record) unless --no-record.
    #[arg(long, value_name = "FILE", conflicts_with = "force")]
    pub append: Option<PathBuf>,
    /// Keep this session's events in DIR [default: PROFILE.sessions/
    /// beside the profile], for `agentwatch profile readiness`.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub record: Option<Option<PathBuf>>,
    /// Do not record the session (with --append).
    #[arg(long, conflicts_with = "record")]
    pub no_record: bool,
    /// How readily files become territories [default: balanced, or the
    /// appended profile's].
    #[arg(long, value_enum)]
    pub granularity: Option<Granularity>,
    /// An endpoint (HOST[:PORT]) that is the agent's model API: a process
    /// that read a secret may not connect to it. Repeatable.
    #[arg(long = "model-endpoint", value_name = "HOST[:PORT]")]
    pub model_endpoints: Vec<String>,
    /// Sessions in a row that must bring nothing new for a class to be
    /// stable (with --append).
    #[arg(long, default_value_t = crate::profile::merge::DEFAULT_STABLE_SESSIONS)]
    pub stable_sessions: u32,
    /// Learn recorded sessions (files, or directories of them) instead of
    /// running a command.
    #[arg(long, value_name = "SESSION", conflicts_with_all = ["select", "config"])]
    pub replay: Vec<PathBuf>,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

impl LearnOptions {
    /// Options as if `agentwatch learn ARGS` were typed: the command line's
    /// defaults, defined once, under the given arguments.
    pub fn from_args(args: &[&str]) -> Result<Self, clap::Error> {
        super::session::parse_options("learn", args)
    }
}

/// Feeds every event into the learner (and the recording, and the
/// appended profile's matcher, which counts what is new); the main thread
/// reads progress.
struct LearnSink {
    learner: Arc<Mutex<Learner>>,
    lost: Arc<Mutex<u64>>,
    recorder: Arc<Mutex<Option<Recorder>>>,
    novelty: Arc<Mutex<Novelty>>,
}

/// What a session did that the profile it is appended to would have
/// flagged, per class.
#[derive(Default)]
struct Novelty {
    matcher: Option<Matcher>,
    seen: BTreeMap<Class, BTreeSet<String>>,
}

impl Novelty {
    fn observe(&mut self, ev: &Event) {
        let Some(m) = &mut self.matcher else { return };
        for f in m.check(ev) {
            let class = if f.class == Class::Delete {
                Class::File
            } else {
                f.class
            };
            self.seen.entry(class).or_default().insert(f.what);
        }
    }

    fn counts(&self) -> BTreeMap<Class, u64> {
        self.seen
            .iter()
            .map(|(c, s)| (*c, s.len() as u64))
            .collect()
    }
}

impl Sink for LearnSink {
    fn emit(&mut self, ev: &Event) -> std::io::Result<()> {
        if let Detail::Loss { count, .. } = ev.detail {
            *self
                .lost
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))? += count;
            return Ok(());
        }
        if let Some(r) = self
            .recorder
            .lock()
            .map_err(|_| std::io::Error::other("recorder lock poisoned"))?
            .as_mut()
        {
            r.event(ev)?;
        }
        self.novelty
            .lock()
            .map_err(|_| std::io::Error::other("novelty lock poisoned"))?
            .observe(ev);
        self.learner
            .lock()
            .map_err(|_| std::io::Error::other("learner lock poisoned"))?
            .observe(ev);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where the profile goes, what it is appended to, where the session is
/// recorded.
struct Plan {
    out: PathBuf,
    base: Option<Profile>,
    record: Option<PathBuf>,
}

impl Plan {
    fn new(opts: &LearnOptions) -> anyhow::Result<Self> {
        let (out, base) = match &opts.append {
            Some(p) => {
                if !p.exists() {
                    bail!("{} does not exist: learn it first with `agentwatch learn --agent {} --out {} -- CMD`, then --append further sessions", p.display(), opts.agent, p.display());
                }
                let base = parse::load(p).map_err(|r| anyhow::anyhow!("{r}"))?;
                if base.agent != opts.agent {
                    bail!(
                        "{} is the profile of agent {}, not {}; pass --agent {}",
                        p.display(),
                        base.agent,
                        opts.agent,
                        base.agent
                    );
                }
                (opts.out.clone().unwrap_or_else(|| p.clone()), Some(base))
            }
            None => {
                let out = opts.out.clone().unwrap_or_else(|| {
                    PathBuf::from("profiles").join(format!("{}.yaml", opts.agent))
                });
                if out.exists() && !opts.force {
                    bail!(
                        "{} exists; pass --force to replace it, --append {} to add this session to it, or --out another file and compare with `agentwatch profile diff`",
                        out.display(),
                        out.display()
                    );
                }
                (out, None)
            }
        };
        let profile_file = opts.append.clone().unwrap_or_else(|| out.clone());
        let record = match (&opts.record, opts.no_record) {
            (_, true) => None,
            (Some(None), _) => Some(recorded::dir_for(&profile_file)),
            (Some(Some(d)), _) => Some(d.clone()),
            (None, _) if base.is_some() => Some(recorded::dir_for(&profile_file)),
            (None, _) => None,
        };
        Ok(Self { out, base, record })
    }

    /// The learning settings: the appended profile's, with the command
    /// line's on top.
    fn config(&self, opts: &LearnOptions) -> LearnConfig {
        let mut cfg = match &self.base {
            Some(b) => readiness::config_of(b),
            None => LearnConfig::new(&opts.agent),
        };
        cfg.headroom = cfg.headroom.max(opts.headroom);
        cfg.min_siblings = opts.min_siblings.max(2);
        cfg.clocks = ClockConfig {
            warmup_ns: opts.warmup.as_nanos() as u64,
            quiet_ns: opts.quiet.as_nanos() as u64,
        };
        if let Some(g) = opts.granularity {
            cfg.granularity = g;
        }
        for m in &opts.model_endpoints {
            if !cfg.model_endpoints.contains(m) {
                cfg.model_endpoints.push(m.clone());
            }
        }
        cfg
    }

    /// The profile to write: the session's, or the appended one with it;
    /// with a readiness verdict when enough sessions are recorded.
    fn result(
        &self,
        opts: &LearnOptions,
        session: Profile,
        novelty: &BTreeMap<Class, u64>,
        guardrails: &Guardrails,
    ) -> anyhow::Result<Profile> {
        let mut p = match &self.base {
            Some(base) => {
                let mut p = merge::append(base, &session, novelty, opts.stable_sessions)?;
                if opts.granularity.is_some() {
                    p.granularity = session.granularity;
                }
                p
            }
            None => session,
        };
        if let Some(dir) = &self.record {
            if let Ok(sessions) = recorded::read_dir(dir) {
                if sessions.len() >= readiness::MIN_SESSIONS {
                    let r = readiness::leave_one_out(&p, &sessions, guardrails)?;
                    p.readiness = Some(r.verdict);
                }
            }
        }
        Ok(p)
    }
}

pub fn run(opts: LearnOptions) -> anyhow::Result<i32> {
    if !opts.replay.is_empty() {
        return replay(&opts);
    }
    let selected = selected_agent(&opts)?;
    check_what_to_learn(&opts, selected.is_some())?;
    let ring = session::ring_bytes(opts.ring_buffer_mb)?;
    let plan = Plan::new(&opts)?;
    let out = plan.out.clone();
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out_dir = out_dir.canonicalize()?;

    let cwd = std::env::current_dir().context("no current directory")?;
    let anchors = match &selected {
        Some(Selected {
            anchors: Some(a), ..
        }) => a.clone(),
        _ => Anchors::for_command(
            &cwd,
            std::env::var_os("HOME").as_deref(),
            std::env::var_os("TMPDIR").as_deref(),
        ),
    };
    let own = own_files(&out_dir, &out);
    let guardrails = Guardrails::builtin().with_agentwatch_paths(own.iter().map(String::as_str));
    let cfg = plan.config(&opts);
    let host = crate::origin::host().to_string();
    let recorder = match &plan.record {
        Some(dir) => Some(recorder(dir, &opts.agent, &host, &anchors)?),
        None => None,
    };
    let novelty = Arc::new(Mutex::new(Novelty {
        matcher: plan
            .base
            .as_ref()
            .map(|b| Matcher::new(b, anchors.clone(), guardrails.clone())),
        seen: BTreeMap::new(),
    }));
    let learner = Arc::new(Mutex::new(Learner::new(
        cfg,
        anchors,
        guardrails.clone(),
        monotonic_ns(),
    )));
    let lost = Arc::new(Mutex::new(0u64));
    let recorder = Arc::new(Mutex::new(recorder));
    let sink = LearnSink {
        learner: learner.clone(),
        lost: lost.clone(),
        recorder: recorder.clone(),
        novelty: novelty.clone(),
    };
    let mut s = Session::start(&opts.agent, ring, Box::new(sink))?;
    let mut meter = meter_for(&opts.agent, selected.is_none(), &mut s);
    session::catch_stop_signals();
    let mut child = match start_watching(&mut s, selected.as_ref(), &opts)? {
        Ok(child) => child,
        Err(e) => {
            s.pipeline.finish();
            eprintln!("agentwatch: {e}");
            return Ok(e.exit_status());
        }
    };
    let mut view = Progress::new(opts.json, &opts.agent);
    let start = Instant::now();
    let reason = watch(
        &opts,
        &learner,
        child.as_mut(),
        &mut view,
        start,
        meter.as_mut(),
    )?;
    let status = child
        .as_mut()
        .and_then(|c| session::terminate(c, Duration::from_secs(5)));
    let counts = s.pipeline.finish();
    finish_recording(&recorder)?;
    let now = monotonic_ns();
    let (mut session, progress) = {
        let mut l = lock(&learner)?;
        (l.finish(&host, now), l.progress(now))
    };
    if let Some(mut m) = meter.take() {
        session.resources = m.learned(session.rates.headroom);
    }
    view.show(start.elapsed(), &progress);
    let new_per_class = novelty
        .lock()
        .map_err(|_| anyhow::anyhow!("novelty counter poisoned"))?
        .counts();
    let profile = plan.result(&opts, session, &new_per_class, &guardrails)?;
    crate::atomic::write(&out, to_yaml(&profile).as_bytes())?;
    let lost = *lost
        .lock()
        .map_err(|_| anyhow::anyhow!("loss counter poisoned"))?;
    view.done(&out, reason, &profile, lost + counts.decode_errors);
    if let Some(st) = status.filter(|s| !s.success()) {
        eprintln!(
            "agentwatch: note: the command ended with {}; the profile covers what it did",
            st
        );
    }
    Ok(0)
}

/// A command learn starts (`spawned`) runs in a cgroup of its own, where
/// the kernel counts what it used: the learned resource budgets.
fn meter_for(agent: &str, spawned: bool, s: &mut Session) -> Option<crate::budget::Meter> {
    if !spawned {
        return None;
    }
    let m = crate::budget::Meter::create(&format!("learn-{agent}-{}", std::process::id()))?;
    s.launch.cgroups = m.procs_files();
    Some(m)
}

/// `learn --replay`: the recorded sessions learned (and appended) as if
/// they had just run.
fn replay(opts: &LearnOptions) -> anyhow::Result<i32> {
    if !opts.cmd.is_empty() {
        bail!("give either --replay or a command, not both");
    }
    let plan = Plan::new(opts)?;
    let mut sessions = Vec::new();
    for p in &opts.replay {
        if p.is_dir() {
            sessions.extend(recorded::read_dir(p)?);
        } else {
            sessions.push(recorded::read(p)?);
        }
    }
    let cfg = plan.config(opts);
    let guardrails = Guardrails::builtin();
    let refs: Vec<&recorded::Session> = sessions.iter().collect();
    let learned = recorded::learn_all(&refs, &cfg, &guardrails)?;
    let novelty = match &plan.base {
        Some(b) => {
            let mut n: BTreeMap<Class, u64> = BTreeMap::new();
            for s in &sessions {
                for f in readiness::judge(b, s, &guardrails) {
                    *n.entry(f.class).or_default() += 1;
                }
            }
            n
        }
        None => BTreeMap::new(),
    };
    let profile = plan.result(opts, learned, &novelty, &guardrails)?;
    if let Some(dir) = plan.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::atomic::write(&plan.out, to_yaml(&profile).as_bytes())?;
    Progress::new(opts.json, &opts.agent).done(
        &plan.out,
        &format!("{} recorded session(s) replayed", sessions.len()),
        &profile,
        0,
    );
    Ok(0)
}

/// An agent selected rather than started: the selectors resolved, as
/// typed, and the anchors its daemon configuration gives it.
struct Selected {
    resolved: Vec<Resolved>,
    shown: Vec<String>,
    anchors: Option<Anchors>,
}

/// The agent `--select` or `--config` names, if either is given.
fn selected_agent(opts: &LearnOptions) -> anyhow::Result<Option<Selected>> {
    let (selectors, anchors) = match &opts.config {
        Some(file) => {
            let cfg = config::load(file).map_err(|r| anyhow::anyhow!("{r}"))?;
            let a = cfg.agent_named(&opts.agent)?;
            (a.selectors.clone(), Some(a.anchors.clone()))
        }
        None if opts.select.is_empty() => return Ok(None),
        None => (opts.select.clone(), None),
    };
    let cgroup2 = cgroup2_mount();
    let resolved = selectors
        .iter()
        .map(|s| s.resolve(cgroup2.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Selected {
        resolved,
        shown: selectors.iter().map(ToString::to_string).collect(),
        anchors,
    }))
}

fn lock(l: &Arc<Mutex<Learner>>) -> anyhow::Result<std::sync::MutexGuard<'_, Learner>> {
    l.lock()
        .map_err(|_| anyhow::anyhow!("the learner stopped after an internal error"))
}

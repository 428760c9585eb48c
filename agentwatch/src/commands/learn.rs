//! `agentwatch learn`: run CMD as a watched agent, learn its profile, show
//! each class's stability clock live, and write the profile.
use std::{
    ffi::OsString,
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::json;

use super::session::{self, Session};
use crate::clock::monotonic_ns;
use crate::{
    daemon::config,
    event::{Detail, Event},
    profile::{
        anchors::Anchors,
        builder::{LearnConfig, Learner},
        convergence::{ClassProgress, ClockConfig},
        guardrails::Guardrails,
        yaml::to_yaml,
    },
    selectors::{Resolved, Selector},
    sensors::cgroup2_mount,
    sinks::Sink,
};

#[derive(Debug, clap::Args)]
pub struct LearnOptions {
    /// The agent's name (also the default profile file name).
    #[arg(long)]
    pub agent: String,
    /// Where to write the profile [default: profiles/NAME.yaml].
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Stop learning after this long (30, 30s, 5m, 1h); a command still
    /// running then gets SIGTERM.
    #[arg(long, value_parser = super::trace::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Stop as soon as every class (exec, file, network, dns) is stable.
    #[arg(long)]
    pub until_stable: bool,
    /// Progress as JSON lines on stderr instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// No class is stable before learning has run this long.
    #[arg(long, default_value = "30s", value_parser = super::trace::parse_duration)]
    pub warmup: std::time::Duration,
    /// A class is stable when nothing new appeared for this long.
    #[arg(long, default_value = "60s", value_parser = super::trace::parse_duration)]
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

/// Feeds every event into the learner; the main thread reads progress.
struct LearnSink {
    learner: Arc<Mutex<Learner>>,
    lost: Arc<Mutex<u64>>,
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

pub fn run(opts: LearnOptions) -> anyhow::Result<i32> {
    let selected = selected_agent(&opts)?;
    match (&selected, opts.cmd.is_empty()) {
        (None, true) => bail!("nothing to learn: give the agent's command after --, or select it with --select KIND=VALUE or --config FILE"),
        (Some(_), false) => bail!("give either a command or selectors (--select, --config), not both"),
        (Some(_), true) if opts.duration.is_none() && !opts.until_stable => {
            eprintln!("agentwatch: note: no --duration or --until-stable; learning until Ctrl-C");
        }
        _ => {}
    }
    let ring = session::ring_bytes(opts.ring_buffer_mb)?;
    if !(opts.headroom.is_finite() && opts.headroom >= 1.0) {
        bail!("--headroom must be 1.0 or more (budget = peak x headroom)");
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("profiles").join(format!("{}.yaml", opts.agent)));
    if out.exists() && !opts.force {
        bail!(
            "{} exists; pass --force to replace it, or --out another file and compare with `agentwatch profile diff`",
            out.display()
        );
    }
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
    // The profile being written (and the temporary file it is written
    // through) and agentwatch's binary are its own files. Not the whole
    // directory: `--out /tmp/x.yaml` must not make all of /tmp a guardrail.
    let out_file = out_dir.join(out.file_name().unwrap_or_default());
    let own: Vec<String> = [
        Some(out_file.display().to_string()),
        Some(format!(
            "{}.yaml.tmp-*",
            out_file.with_extension("").display()
        )),
        std::env::current_exe()
            .ok()
            .map(|p| p.display().to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let guardrails = Guardrails::builtin().with_agentwatch_paths(own.iter().map(String::as_str));
    let mut cfg = LearnConfig::new(&opts.agent);
    cfg.headroom = opts.headroom;
    cfg.min_siblings = opts.min_siblings.max(2);
    cfg.clocks = ClockConfig {
        warmup_ns: opts.warmup.as_nanos() as u64,
        quiet_ns: opts.quiet.as_nanos() as u64,
    };
    let learner = Arc::new(Mutex::new(Learner::new(
        cfg,
        anchors,
        guardrails,
        monotonic_ns(),
    )));
    let lost = Arc::new(Mutex::new(0u64));
    let sink = LearnSink {
        learner: learner.clone(),
        lost: lost.clone(),
    };
    let mut s = Session::start(&opts.agent, ring, Box::new(sink))?;
    session::catch_stop_signals();
    let mut child = match &selected {
        Some(sel) => {
            let n = s.select(&sel.resolved)?;
            eprintln!(
                "agentwatch: learning {}: {n} running process(es) and every new exec matching {}",
                opts.agent,
                sel.shown.join(", ")
            );
            None
        }
        None => match s.spawn(&opts.cmd) {
            Ok(c) => Some(c),
            Err(e) => {
                s.pipeline.finish();
                eprintln!("agentwatch: {e}");
                return Ok(e.exit_status());
            }
        },
    };

    let mut view = Progress::new(opts.json, &opts.agent);
    let start = Instant::now();
    let reason = loop {
        std::thread::sleep(Duration::from_millis(200));
        let progress = lock(&learner)?.progress(monotonic_ns());
        view.show(start.elapsed(), &progress);
        if let Some(Ok(Some(_))) = child.as_mut().map(|c| c.try_wait()) {
            break "the command exited";
        }
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break "the duration passed";
        }
        if opts.until_stable && progress.iter().all(|p| p.stable) {
            break "every class is stable";
        }
        if session::stop_requested() {
            break "interrupted";
        }
    };
    let status = child
        .as_mut()
        .and_then(|c| session::terminate(c, Duration::from_secs(5)));
    let counts = s.pipeline.finish();
    let now = monotonic_ns();
    let (profile, progress) = {
        let mut l = lock(&learner)?;
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        (l.finish(&host, now), l.progress(now))
    };
    view.show(start.elapsed(), &progress);
    write_atomically(&out, to_yaml(&profile).as_bytes())?;
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
            let a = cfg.agent(&opts.agent).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} defines no agent {} (it defines: {})",
                    file.display(),
                    opts.agent,
                    cfg.agents
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
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

/// Writes `bytes` to a temporary file beside `path` and renames it over,
/// so a crash never leaves half a profile.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("yaml.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!(
            "cannot write the profile to {}: {e}; nothing was written",
            path.display()
        )
    })
}

/// The live view: lines redrawn in place on a terminal, JSON lines with
/// `--json`, nothing until the end otherwise. All on stderr: stdout is
/// the command's.
struct Progress {
    json: bool,
    tty: bool,
    agent: String,
    drawn: usize,
    last_json: Option<Instant>,
}

impl Progress {
    fn new(json: bool, agent: &str) -> Self {
        Self {
            json,
            tty: std::io::stderr().is_terminal(),
            agent: agent.to_string(),
            drawn: 0,
            last_json: None,
        }
    }

    fn show(&mut self, elapsed: Duration, classes: &[ClassProgress]) {
        let mut err = std::io::stderr().lock();
        if self.json {
            if self
                .last_json
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return;
            }
            self.last_json = Some(Instant::now());
            let line = json!({
                "type": "progress",
                "agent": self.agent,
                "elapsed_secs": elapsed.as_secs_f64(),
                "classes": classes,
            });
            let _ = writeln!(err, "{line}");
            return;
        }
        if !self.tty {
            return;
        }
        let mut text = format!(
            "learning {} for {:.1}s (Ctrl-C stops and writes the profile)\n",
            self.agent,
            elapsed.as_secs_f64()
        );
        for c in classes {
            text.push_str(&format!(
                "  {:<8} {:<8} {:>6} entries {:>8} events  quiet {:>7.1}s  novelty {:>7.1}/min\n",
                c.class.name(),
                if c.stable { "stable" } else { "learning" },
                c.entries,
                c.events,
                c.quiet_secs,
                c.novelty_per_min
            ));
        }
        // Move up over the previous drawing and clear each line.
        if self.drawn > 0 {
            let _ = write!(err, "\x1b[{}F", self.drawn);
        }
        for line in text.lines() {
            let _ = writeln!(err, "\x1b[2K{line}");
        }
        self.drawn = text.lines().count();
        let _ = err.flush();
    }

    fn done(&self, out: &Path, reason: &str, p: &crate::profile::Profile, lost: u64) {
        let mut err = std::io::stderr().lock();
        if self.json {
            let line = json!({
                "type": "profile",
                "agent": self.agent,
                "path": out.display().to_string(),
                "stopped": reason,
                "executables": p.executables.len(),
                "files": p.files.len(),
                "network": p.network.len(),
                "dns": p.dns.len(),
                "review": p.review.len(),
                "stable": p.stability.classes.iter().map(|(c, s)| (c.name(), s.stable)).collect::<std::collections::BTreeMap<_, _>>(),
                "lost_events": lost,
            });
            let _ = writeln!(err, "{line}");
            return;
        }
        let _ = writeln!(
            err,
            "agentwatch: learned {} ({reason}): {} executables, {} file rules, {} endpoints, {} DNS names, {} for review -> {}",
            self.agent,
            p.executables.len(),
            p.files.len(),
            p.network.len(),
            p.dns.len(),
            p.review.len(),
            out.display()
        );
        if lost > 0 {
            let _ = writeln!(
                err,
                "agentwatch: warning: {lost} events were lost while learning; the profile may miss entries (try --ring-buffer-mb 64)"
            );
        }
    }
}

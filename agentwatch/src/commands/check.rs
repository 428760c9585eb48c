//! `agentwatch check`: what-if. Runs CMD watched (or reads a recorded
//! `trace --json` file) and lists every event the profile would flag, and
//! the rule that would flag it. Enforces nothing.
//!
//! Exit status (`crate::exit`): 0 nothing flagged, 1 something flagged,
//! 2 bad input (no events, both a file and a command, neither).
use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use serde_json::json;

use super::session::{self, Session};
use crate::{
    event::Event,
    exit,
    profile::{
        guardrails::Guardrails,
        matcher::{Finding, Matcher},
        parse, session as recorded,
    },
    sinks::Sink,
};

#[derive(Debug, clap::Args)]
pub struct CheckOptions {
    /// The profile to judge against (from `agentwatch learn`).
    #[arg(long, value_name = "FILE")]
    pub profile: std::path::PathBuf,
    /// Judge a recorded `agentwatch trace --json` file instead of a command.
    #[arg(long, value_name = "FILE", conflicts_with = "session")]
    pub events: Option<std::path::PathBuf>,
    /// Judge a session recorded by `learn --record`, with its own
    /// workspace, home and temp dir.
    #[arg(long, value_name = "FILE")]
    pub session: Option<std::path::PathBuf>,
    /// Print JSON (an error too: one JSON object on stderr).
    #[arg(long)]
    pub json: bool,
    /// Write findings here [default: stdout for --events, else stderr].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub anchors: super::anchor_args::AnchorArgs,
    /// Kernel ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 8)]
    pub ring_buffer_mb: u32,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

impl CheckOptions {
    /// Options as if `agentwatch check ARGS` were typed: the command line's
    /// defaults, defined once, under the given arguments.
    pub fn from_args(args: &[&str]) -> Result<Self, clap::Error> {
        super::session::parse_options("check", args)
    }
}

/// Judges events and writes findings; shared by both input kinds.
struct Judge {
    matcher: Matcher,
    out: Box<dyn Write + Send>,
    json: bool,
    events: u64,
    by_rule: BTreeMap<String, u64>,
}

impl Judge {
    fn judge(&mut self, ev: &Event) -> std::io::Result<()> {
        self.events += 1;
        for f in self.matcher.check(ev) {
            *self.by_rule.entry(f.rule.name().into_owned()).or_default() += 1;
            self.write(&f, ev)?;
        }
        Ok(())
    }

    fn write(&mut self, f: &Finding, ev: &Event) -> std::io::Result<()> {
        if self.json {
            let line = json!({
                "type": "finding",
                "rule": f.rule,
                "class": f.class,
                "what": f.what,
                "reason": f.reason,
                "event": ev,
            });
            writeln!(self.out, "{line}")
        } else {
            writeln!(
                self.out,
                "flag {:<20} {}  ({}; pid {} {})",
                f.rule, f.what, f.reason, ev.pid, ev.comm
            )
        }
    }

    fn summary(&mut self) -> std::io::Result<u64> {
        let flagged: u64 = self.by_rule.values().sum();
        if self.json {
            let line = json!({"type": "summary", "events": self.events, "flagged": flagged, "by_rule": self.by_rule});
            writeln!(self.out, "{line}")?;
        } else {
            let rules: Vec<String> = self
                .by_rule
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            writeln!(
                self.out,
                "check: {} events, {flagged} would be flagged{}",
                self.events,
                if rules.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rules.join(", "))
                }
            )?;
        }
        self.out.flush()?;
        Ok(flagged)
    }
}

struct JudgeSink(Arc<Mutex<Judge>>);

impl Sink for JudgeSink {
    fn emit(&mut self, ev: &Event) -> std::io::Result<()> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("judge lock poisoned"))?
            .judge(ev)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn run(opts: CheckOptions) -> anyhow::Result<i32> {
    let recorded_input = opts.events.is_some() || opts.session.is_some();
    if recorded_input && !opts.cmd.is_empty() {
        return Err(exit::usage(
            "give a recorded file (--events or --session) or a command after --, not both",
        ));
    }
    if !recorded_input && opts.cmd.is_empty() {
        return Err(exit::usage(
            "give a command after --, or --events FILE (from `agentwatch trace --json -o FILE`)",
        ));
    }
    let profile = parse::load(&opts.profile).map_err(|r| exit::usage(r.to_string()))?;
    let session = match &opts.session {
        Some(f) => Some(recorded::read(f).map_err(|e| exit::usage(e.to_string()))?),
        None => None,
    };
    let anchors = match &session {
        Some(s) => s.header.anchors(),
        None => opts.anchors.anchors(),
    };
    let matcher = Matcher::new(&profile, anchors, Guardrails::builtin());
    for s in &matcher.skipped {
        eprintln!("agentwatch: warning: {s} names an anchor not set here; it matches nothing (set --workspace, --home or --tmp)");
    }
    // Findings go to stdout for a file; with a command, stdout is the
    // command's, so to stderr unless -o says where.
    let recorded = opts.events.is_some() || session.is_some();
    let out: Box<dyn Write + Send> = match (&opts.output, recorded) {
        (Some(p), _) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        (None, true) => Box::new(std::io::stdout()),
        (None, false) => Box::new(std::io::stderr()),
    };
    let judge = Judge {
        matcher,
        out,
        json: opts.json,
        events: 0,
        by_rule: BTreeMap::new(),
    };
    if let Some(s) = session {
        let mut judge = judge;
        for ev in &s.events {
            judge.judge(ev)?;
        }
        let flagged = judge.summary()?;
        return Ok(i32::from(flagged > 0));
    }
    match &opts.events {
        Some(file) => from_file(judge, file),
        None => from_command(
            judge,
            &profile.agent,
            session::ring_bytes(opts.ring_buffer_mb)?,
            &opts.cmd,
        ),
    }
}

fn from_file(mut judge: Judge, file: &PathBuf) -> anyhow::Result<i32> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut bad = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(&line) {
            Ok(ev) => judge.judge(&ev)?,
            Err(e) => {
                bad += 1;
                eprintln!(
                    "agentwatch: {}:{}: not a `trace --json` event ({e}); skipped",
                    file.display(),
                    i + 1
                );
            }
        }
    }
    if judge.events == 0 && bad == 0 {
        return Err(exit::usage(format!(
            "{} holds no events: nothing to check (record some with `agentwatch trace --json -o FILE -- CMD`)",
            file.display()
        )));
    }
    let flagged = judge.summary()?;
    Ok(if bad > 0 {
        exit::USAGE
    } else {
        i32::from(flagged > 0)
    })
}

fn from_command(
    judge: Judge,
    agent: &str,
    ring_bytes: u32,
    cmd: &[OsString],
) -> anyhow::Result<i32> {
    let judge = Arc::new(Mutex::new(judge));
    let mut s = Session::start(agent, ring_bytes, Box::new(JudgeSink(judge.clone())))?;
    session::ignore_interrupts();
    let status = match s.spawn(cmd) {
        Ok(mut child) => Some(child.wait().context("waiting for the command")?),
        Err(e) => {
            eprintln!("agentwatch: {e}");
            None
        }
    };
    s.pipeline.finish();
    let flagged = judge
        .lock()
        .map_err(|_| anyhow::anyhow!("the checker stopped after an internal error"))?
        .summary()?;
    if let Some(st) = status.filter(|s| !s.success()) {
        eprintln!("agentwatch: note: the command ended with {st}");
    }
    Ok(i32::from(flagged > 0))
}

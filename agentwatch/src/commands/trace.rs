//! `agentwatch trace`: run CMD as a watched agent, or watch the processes
//! that match selectors, and stream what their process trees do.
use std::{
    ffi::OsString,
    io::{BufWriter, Write},
};

use anyhow::{bail, Context as _};

use super::session::{agent_name, ignore_interrupts, ring_bytes, wait_for_stop, Session, AGENT_ID};
use crate::{
    pipeline::Pipeline,
    selectors::Selector,
    sensors::cgroup2_mount,
    sinks::{HumanLines, JsonLines, Sink},
    spawn,
};

#[derive(Debug, clap::Args)]
pub struct TraceOptions {
    /// One JSON object per line instead of readable lines.
    #[arg(long)]
    pub json: bool,
    /// Agent name to show in events (default: the command's file name).
    #[arg(long)]
    pub agent: Option<String>,
    /// Kernel ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 8)]
    pub ring_buffer_mb: u32,
    /// Write events to FILE instead of stdout (the command keeps stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Also watch processes that exec while matching KIND=VALUE:
    /// cgroup=PATH (cgroup v2), uid=USER, exe=PATH. Repeatable. Processes
    /// already running that match are watched from now on.
    #[arg(long, value_name = "KIND=VALUE")]
    pub select: Vec<Selector>,
    /// Without a command: stop after this long (30, 30s, 5m, 1h).
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// The command and its arguments (optional with --select).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

/// Runs the trace; returns the exit status agentwatch should exit with.
pub fn run(opts: TraceOptions) -> anyhow::Result<i32> {
    if opts.cmd.is_empty() && opts.select.is_empty() {
        bail!("nothing to watch: give a command after --, or at least one --select (cgroup=PATH, uid=USER, exe=PATH)");
    }
    let agent = agent_name(opts.agent.as_deref(), &opts.cmd);
    let bytes = ring_bytes(opts.ring_buffer_mb)?;
    // Resolve selectors and open the output before loading anything, so
    // bad input fails fast and clearly.
    let cgroup2 = cgroup2_mount();
    let resolved = opts
        .select
        .iter()
        .map(|s| s.resolve(cgroup2.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let out: Box<dyn Write + Send> = match &opts.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create --output {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let out = BufWriter::with_capacity(64 * 1024, out);
    let sink: Box<dyn Sink> = if opts.json {
        Box::new(JsonLines(out))
    } else {
        Box::new(HumanLines(out))
    };
    let mut s = Session::start(&agent, bytes, sink)?;
    let running = if resolved.is_empty() {
        0
    } else {
        s.select(&resolved)?
    };
    let Session {
        mut sensors,
        pipeline,
        ..
    } = s;

    if opts.cmd.is_empty() {
        super::session::say_selected("watching", running, &opts.select, opts.duration);
        wait_for_stop(opts.duration);
        finish(pipeline);
        return Ok(0);
    }

    // Ctrl-C goes to the whole foreground group: let the command handle it
    // and keep draining its events until it exits.
    ignore_interrupts();
    let mut child =
        match spawn::spawn_watched(&opts.cmd, &mut sensors, AGENT_ID, None, &Default::default()) {
            Ok(c) => c,
            Err(e) => {
                pipeline.finish();
                eprintln!("agentwatch: {e}");
                return Ok(e.exit_status());
            }
        };
    let status = child.wait().context("waiting for the traced command")?;
    finish(pipeline);
    Ok(spawn::shell_status(status))
}

/// Drains the pipeline and says so if the output lost events.
fn finish(pipeline: Pipeline) {
    let counts = pipeline.finish();
    tracing::debug!(?counts, "trace finished");
    if counts.sink_errors > 0 {
        eprintln!(
            "agentwatch: {} events could not be written to the output",
            counts.sink_errors
        );
    }
}

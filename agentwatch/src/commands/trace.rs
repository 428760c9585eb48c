//! `agentwatch trace -- CMD`: run CMD as a watched agent and stream what
//! its process tree does until it exits.
use std::{
    ffi::OsString,
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::Context as _;

use crate::{
    pipeline::{enrich::Enricher, Pipeline},
    sensors::{cgroup2_mount, HookSet, Sensors},
    sinks::{HumanLines, JsonLines, Sink},
    spawn,
};

pub struct TraceOptions {
    pub json: bool,
    pub agent: Option<String>,
    pub ring_buffer_mb: u32,
    /// Write events here instead of stdout (which the command shares).
    pub output: Option<std::path::PathBuf>,
    pub cmd: Vec<OsString>,
}

/// Runs the trace; returns the exit status agentwatch should exit with.
pub fn run(opts: TraceOptions) -> anyhow::Result<i32> {
    let agent = opts.agent.clone().unwrap_or_else(|| {
        opts.cmd
            .first()
            .and_then(|c| Path::new(c).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "agent".into())
    });
    let bytes = opts
        .ring_buffer_mb
        .checked_mul(1024 * 1024)
        .filter(|b| b.is_power_of_two())
        .context("--ring-buffer-mb must be a power of two (1, 2, 4, ... 1024)")?;
    // Open the output before loading anything, so a bad path fails fast.
    let out: Box<dyn Write + Send> = match &opts.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create --output {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let out = BufWriter::with_capacity(64 * 1024, out);
    let mut sensors = Sensors::load(HookSet::Sensors, bytes)?;
    let sink: Box<dyn Sink> = if opts.json {
        Box::new(JsonLines(out))
    } else {
        Box::new(HumanLines(out))
    };
    // Ctrl-C goes to the whole foreground group: let the command handle it
    // and keep draining its events until it exits.
    ignore_interrupts();
    let pipeline = Pipeline::start(
        &mut sensors,
        vec![agent],
        sink,
        Enricher::new(cgroup2_mount()),
    )?;
    let mut child = match spawn::spawn_watched(&opts.cmd, &mut sensors, 0) {
        Ok(c) => c,
        Err(e) => {
            pipeline.finish();
            eprintln!("agentwatch: {e}");
            return Ok(e.exit_status());
        }
    };
    let status = child.wait().context("waiting for the traced command")?;
    let counts = pipeline.finish();
    tracing::debug!(?counts, "trace finished");
    Ok(spawn::shell_status(status))
}

fn ignore_interrupts() {
    // SAFETY: setting a signal disposition to SIG_IGN has no handler to race.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
}

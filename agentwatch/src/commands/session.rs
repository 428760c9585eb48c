//! What `trace`, `learn` and `check` share: loading the sensors with a
//! pipeline into one sink, starting the command watched, stop signals, and
//! ending a command that outlives the session.
use std::{
    ffi::OsString,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    pipeline::{enrich::Enricher, Pipeline},
    selectors::{self, Resolved},
    sensors::{cgroup2_mount, HookSet, SensorError, Sensors},
    sinks::Sink,
    spawn::{self, SpawnError},
};

/// The agent id a single-agent session gives its agent in the kernel.
pub const AGENT_ID: u32 = 0;

/// A loaded sensor set with its pipeline running into one sink.
pub struct Session {
    pub sensors: Sensors,
    pub pipeline: Pipeline,
    /// What the agent gets at launch besides the watch (`run` sets it).
    pub launch: spawn::Launch,
}

impl Session {
    /// Loads the sensors with a ring buffer of `ring_bytes` (see
    /// `ring_bytes`) and starts the pipeline for one agent named `agent`.
    pub fn start(agent: &str, ring_bytes: u32, sink: Box<dyn Sink>) -> anyhow::Result<Self> {
        Self::with_sensors(Sensors::load(HookSet::Sensors, ring_bytes)?, agent, sink)
    }

    /// Starts the pipeline on sensors already loaded (`run` loads them
    /// with its enforcement maps first).
    pub fn with_sensors(
        mut sensors: Sensors,
        agent: &str,
        sink: Box<dyn Sink>,
    ) -> anyhow::Result<Self> {
        let pipeline = Pipeline::start(
            &mut sensors,
            vec![agent.to_string()],
            sink,
            Enricher::new(cgroup2_mount()),
        )?;
        Ok(Self {
            sensors,
            pipeline,
            launch: Default::default(),
        })
    }

    /// Starts `cmd` watched; on failure the pipeline is drained first.
    pub fn spawn(&mut self, cmd: &[OsString]) -> Result<Child, SpawnError> {
        spawn::spawn_watched(cmd, &mut self.sensors, AGENT_ID, None, &self.launch)
    }

    /// Starts `cmd` watched, in `sandbox`.
    pub fn spawn_in(
        &mut self,
        cmd: &[OsString],
        sandbox: std::sync::Arc<crate::sandbox::Sandbox>,
    ) -> Result<Child, SpawnError> {
        spawn::spawn_watched(
            cmd,
            &mut self.sensors,
            AGENT_ID,
            Some(sandbox),
            &self.launch,
        )
    }
}

impl Session {
    /// Watches, as the session's agent, every process that execs while
    /// matching `selectors` and those matching now; returns how many were
    /// already running.
    pub fn select(&mut self, selectors: &[Resolved]) -> Result<usize, SensorError> {
        for sel in selectors {
            self.sensors.add_selector(*sel, AGENT_ID)?;
        }
        let running = selectors::running_matches(selectors, cgroup2_mount().as_deref());
        for pid in &running {
            self.sensors.watch(*pid, AGENT_ID)?;
        }
        Ok(running.len())
    }
}

/// `--ring-buffer-mb` in bytes; checked before anything is loaded.
pub fn ring_bytes(mb: u32) -> anyhow::Result<u32> {
    crate::units::ring_bytes(mb).context("--ring-buffer-mb")
}

/// Parses `args` as the options of command `name` (its defaults apply).
pub fn parse_options<T: clap::Args>(name: &str, args: &[&str]) -> Result<T, clap::Error> {
    use clap::Parser;
    #[derive(Parser)]
    struct One<T: clap::Args> {
        #[command(flatten)]
        options: T,
    }
    let argv = std::iter::once(name).chain(args.iter().copied());
    One::<T>::try_parse_from(argv).map(|o| o.options)
}

/// The default agent name: the command's file name.
pub fn agent_name(given: Option<&str>, cmd: &[OsString]) -> String {
    given.map(str::to_string).unwrap_or_else(|| {
        cmd.first()
            .and_then(|c| std::path::Path::new(c).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "selected".into())
    })
}

/// Ctrl-C and Ctrl-\ go to the whole foreground group: let the command
/// handle them while we keep draining its events.
pub fn ignore_interrupts() {
    // SAFETY: setting a signal disposition to SIG_IGN has no handler to race.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
}

const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Makes SIGINT and SIGTERM be recorded for `stop_requested`.
pub fn catch_stop_signals() {
    crate::signals::catch(&STOP_SIGNALS);
}

pub fn stop_requested() -> bool {
    crate::signals::caught(&STOP_SIGNALS)
}

/// Blocks until SIGINT/SIGTERM or `duration` has passed.
pub fn wait_for_stop(duration: Option<Duration>) {
    catch_stop_signals();
    let start = Instant::now();
    while !stop_requested() && duration.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends a command still running when the session stops: SIGTERM, then
/// SIGKILL after `grace`. Returns its exit status.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// What a command without CMD says it watches: `verb` (watching,
/// enforcing ...) on `running` processes and new execs matching `shown`,
/// until `duration` or Ctrl-C.
pub fn say_selected(
    verb: &str,
    running: usize,
    shown: &[impl ToString],
    duration: Option<Duration>,
) {
    eprintln!(
        "agentwatch: {verb} {running} running process(es) and every new exec matching {}; {}",
        shown
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        match duration {
            Some(d) => format!("stopping after {}s", d.as_secs_f64()),
            None => "Ctrl-C to stop".into(),
        }
    );
}

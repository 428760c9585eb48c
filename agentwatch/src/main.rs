//! The `agentwatch` binary: parse the command line and dispatch.
use std::{ffi::OsString, process::ExitCode};

use clap::{Parser, Subcommand};

use agentwatch::{
    commands::{demo, doctor, trace},
    selectors::Selector,
};

#[derive(Parser)]
#[command(
    name = "agentwatch",
    version,
    about = "eBPF runtime monitor and enforcer for AI agents"
)]
struct Cli {
    /// Log level for agentwatch's own diagnostics (error, warn, info, debug).
    #[arg(long, global = true, default_value = "warn", env = "AGENTWATCH_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD as a watched agent and print what its process tree does.
    Trace {
        /// One JSON object per line instead of readable lines.
        #[arg(long)]
        json: bool,
        /// Agent name to show in events (default: the command's file name).
        #[arg(long)]
        agent: Option<String>,
        /// Kernel ring buffer size in MiB (a power of two).
        #[arg(long, default_value_t = 8)]
        ring_buffer_mb: u32,
        /// Write events to FILE instead of stdout (the command keeps stdout).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// Also watch processes that exec while matching KIND=VALUE:
        /// cgroup=PATH (cgroup v2), uid=USER, exe=PATH. Repeatable. Processes
        /// already running that match are watched from now on.
        #[arg(long, value_name = "KIND=VALUE")]
        select: Vec<Selector>,
        /// Without a command: stop after this long (30, 30s, 5m, 1h).
        #[arg(long, value_parser = trace::parse_duration)]
        duration: Option<std::time::Duration>,
        /// The command and its arguments (optional with --select).
        #[arg(last = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// Trace the built-in demo agent (loopback only).
    Demo {
        #[arg(long)]
        json: bool,
    },
    /// Benchmark helper: attach empty programs to the sensors' syscall
    /// hooks (the cost floor) and hold them until stdin closes.
    #[command(hide = true)]
    BenchFloor,
    /// Report which kernel features each sensor and enforcement tier can use here.
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Trace {
            json,
            agent,
            ring_buffer_mb,
            output,
            select,
            duration,
            cmd,
        } => trace::run(trace::TraceOptions {
            json,
            agent,
            ring_buffer_mb,
            output,
            select,
            duration,
            cmd,
        }),
        Command::Demo { json } => demo::run(json),
        Command::BenchFloor => agentwatch::sensors::hold_floor(),
        Command::Doctor { json } => doctor::run(json),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("agentwatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

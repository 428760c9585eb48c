//! The `agentwatch` binary: parse the command line and dispatch.
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use agentwatch::{
    commands::{
        audit, check, control, daemon, demo, doctor, drift, exec, learn, manual, profile, report,
        run, trace, ui,
    },
    control::Request,
    enforce::compile::Mode,
};

#[derive(Parser)]
#[command(
    name = "agentwatch",
    version,
    about = "eBPF runtime monitor and enforcer for AI agents"
)]
struct Cli {
    /// Log level for agentwatch's own diagnostics: error, warn, info,
    /// debug, trace or off (or a tracing filter such as agentwatch=debug).
    #[arg(long, global = true, default_value = "warn", env = "AGENTWATCH_LOG", value_parser = log_filter)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD as a watched agent and print what its process tree does.
    Trace(trace::TraceOptions),
    /// Run CMD as a watched agent and learn its profile: what it executes,
    /// which files it touches and how, where it connects, what it resolves,
    /// and how fast. Writes profiles/NAME.yaml unless --out says otherwise.
    Learn(learn::LearnOptions),
    /// What-if: list every event of CMD (or of a `trace --json` file) the
    /// profile would flag, and the rule that would flag it. Enforces
    /// nothing. Exit 0 nothing flagged, 1 flagged, 2 bad input.
    Check(check::CheckOptions),
    /// Run CMD as an agent under its profile, compiled into the kernel.
    /// monitor: alert on every violation (guardrails still hold); enforce:
    /// alert, deny, pause or kill as the profile's `actions` say.
    Run(run::RunOptions),
    /// Start CMD as a process of an agent the daemon enforces, in the
    /// launch sandbox (for a systemd unit or a container entrypoint).
    Exec(exec::ExecOptions),
    /// Enforce every agent the configuration selects, until SIGTERM;
    /// SIGHUP or `agentwatch reload` re-reads the configuration.
    Daemon(daemon::DaemonOptions),
    /// Make the daemon re-read and validate its configuration and swap it
    /// in; an invalid one is refused and the running one stays.
    Reload {
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Approval requests of paused agents: who, what, the rule, the evidence.
    Pending {
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused agent; with --learn, add what it did to its profile.
    Approve {
        /// The request's id (AGENT-N), as `agentwatch pending` lists it.
        id: String,
        /// Also add what the agent did to its profile, so it is allowed
        /// from now on (all or nothing: if the profile cannot be written,
        /// the request stays open).
        #[arg(long)]
        learn: bool,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Kill a paused agent's process tree.
    Deny {
        /// The request's id (AGENT-N), as `agentwatch pending` lists it.
        id: String,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Switch a running agent between monitor and enforce.
    Mode {
        agent: String,
        /// monitor or enforce.
        #[arg(value_enum)]
        mode: Mode,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Kill switch: stop every process of a running agent now.
    Pause {
        agent: String,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Undo `pause` (refused while approval requests are open).
    Resume {
        agent: String,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Mode, state and counters of a running agent (without AGENT: every
    /// agent of the daemon).
    Status {
        agent: Option<String>,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Read, check, compare and combine profiles.
    Profile {
        #[command(subcommand)]
        action: ProfileAction,
    },
    /// Trace the built-in demo agent (loopback only).
    Demo {
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
        /// Learn the demo agent's profile into FILE instead of tracing it.
        #[arg(long, value_name = "FILE", conflicts_with = "check")]
        learn: Option<std::path::PathBuf>,
        /// Check the demo agent against the profile in FILE.
        #[arg(long, value_name = "FILE")]
        check: Option<std::path::PathBuf>,
        /// Run the changed agent (builds objects, reads an SSH key, tries a
        /// second port, no longer chmods), for the worked example.
        #[arg(long)]
        changed: bool,
    },
    /// Benchmark helper: attach empty programs to the sensors' syscall
    /// hooks (the cost floor) and hold them until stdin closes.
    #[command(hide = true)]
    BenchFloor {
        /// On the raw syscall tracepoints (every call) instead.
        #[arg(long)]
        raw: bool,
    },
    /// Benchmark helper: profile building and matching micro-benchmarks,
    /// as one JSON object.
    #[command(hide = true)]
    BenchProfile,
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell) generated from this command line's definition.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (agentwatch.1, agentwatch-SUBCOMMAND.1) into DIR;
    /// `cargo xtask man` calls this.
    #[command(hide = true)]
    ManPages { dir: std::path::PathBuf },
    /// How a daemon agent's behaviour moved away from its profile over
    /// the last days: violations by class, names learned in place,
    /// executables and DNS grants nothing used.
    Drift(drift::DriftOptions),
    /// The address of the running daemon's live page (timeline, requests
    /// waiting with approve and deny buttons), its token included; the
    /// daemon serves it when its configuration has `[ui] listen`.
    Ui(ui::UiOptions),
    /// The audit log as a page people can read (an incident write-up):
    /// per agent, what it tried and what happened, in plain words; the
    /// chain's verdict at the top. Exit 1 when the chain is broken.
    Report {
        /// Write a self-contained HTML page here.
        #[arg(long, value_name = "FILE")]
        html: std::path::PathBuf,
        /// The audit log and its rotated files.
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<std::path::PathBuf>,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Report which kernel features each sensor and enforcement tier can use here.
    Doctor {
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
        /// Also say who each agent of this daemon configuration runs as
        /// (from its selectors), under its `[identity]`.
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain through FILE... (a log and its rotated files,
    /// in any order). Exit 1 naming the first altered, reordered or
    /// missing record.
    Verify {
        /// The files to read.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// The Ed25519 public key (PEM) checkpoints were signed with: each
        /// signature is checked, and the log must hold one and end with
        /// the final checkpoint of a writer that closed it (unless a
        /// process still has it open). Exit 1 otherwise.
        #[arg(long, value_name = "PUB")]
        key: Option<std::path::PathBuf>,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Make an Ed25519 key pair for signed checkpoints: PREFIX.key (the
    /// private key, mode 600, for `[audit] key` or `run --audit-key`) and
    /// PREFIX.pub (for `audit verify --key`).
    Keygen {
        /// Where the pair goes: PREFIX.key and PREFIX.pub.
        #[arg(value_name = "PREFIX")]
        prefix: std::path::PathBuf,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ProfileAction {
    /// A readable summary of a profile (or the whole profile with --json).
    Show {
        file: std::path::PathBuf,
        /// Apply this overlay of learned approvals (what `approve --learn`
        /// wrote beside a profile it could not write).
        #[arg(long, value_name = "FILE")]
        overlay: Option<std::path::PathBuf>,
        /// The daemon configuration whose agent uses FILE: its overlay, if
        /// any, is applied [default: /etc/agentwatch/agentwatch.toml, when
        /// it exists].
        #[arg(long, value_name = "FILE", conflicts_with = "overlay")]
        config: Option<std::path::PathBuf>,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Report malformed, unknown-field and contradictory entries with
    /// file:line:column and what to fix. Exit 2 on any error.
    Lint {
        /// The files to read.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// What changed from OLD to NEW, as a reviewer reads it. Exit 1 when
    /// they differ.
    Diff {
        old: std::path::PathBuf,
        new: std::path::PathBuf,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Union of profiles of several runs or replicas, generalised again
    /// over everything they saw (territories, patterns), counting per
    /// entry how many runs saw it. One profile alone is generalised again
    /// (rewrites an agentwatch.dev/v1 profile as v2).
    Merge {
        /// The files to read.
        #[arg(required = true, num_args = 1..)]
        files: Vec<std::path::PathBuf>,
        /// Name of the merged agent (needed when the inputs differ).
        #[arg(long)]
        agent: Option<String>,
        /// Write here instead of stdout.
        #[arg(
            long = "output",
            short = 'o',
            visible_alias = "out",
            value_name = "FILE"
        )]
        out: Option<std::path::PathBuf>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Is the profile ready to enforce? Holds out each recorded session in
    /// turn, learns from the others and says how many held-out sessions
    /// would have been flagged. Exit 0 ready, 1 not ready, 2 bad input.
    Readiness {
        file: std::path::PathBuf,
        /// Recorded sessions [default: FILE.sessions/ beside the profile].
        #[arg(long, value_name = "DIR")]
        events: Option<std::path::PathBuf>,
        /// Write the verdict into the profile (`profile show` puts it on top).
        #[arg(long)]
        write: bool,
        /// Print JSON (an error too: one JSON object on stderr).
        #[arg(long)]
        json: bool,
    },
}

/// `--log`: a level, or a filter with a target (`agentwatch=debug`). A bare
/// word that is no level (`verbose`) would silently filter everything out.
fn log_filter(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let directive_ok =
        |d: &str| d.contains('=') || LEVELS.contains(&d.to_ascii_lowercase().as_str());
    if s.split(',').all(directive_ok) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "not a log level; use one of {} (or a filter such as agentwatch=debug)",
            LEVELS.join(", ")
        ))
    }
}

impl Command {
    /// Whether the command was asked for JSON: its errors are then a JSON
    /// object on stderr.
    fn json(&self) -> bool {
        match self {
            Command::Trace(o) => o.json,
            Command::Learn(o) => o.json,
            Command::Check(o) => o.json,
            Command::Run(o) => o.json,
            Command::Daemon(o) => o.json,
            Command::Drift(o) => o.json,
            Command::Ui(o) => o.json,
            Command::Report { json, .. } => *json,
            Command::Reload { json }
            | Command::Pending { json }
            | Command::Approve { json, .. }
            | Command::Deny { json, .. }
            | Command::Mode { json, .. }
            | Command::Pause { json, .. }
            | Command::Resume { json, .. }
            | Command::Status { json, .. }
            | Command::Demo { json, .. }
            | Command::Doctor { json, .. } => *json,
            Command::Audit {
                action: AuditAction::Verify { json, .. } | AuditAction::Keygen { json, .. },
            } => *json,
            Command::Profile { action } => match action {
                ProfileAction::Show { json, .. }
                | ProfileAction::Lint { json, .. }
                | ProfileAction::Diff { json, .. }
                | ProfileAction::Readiness { json, .. } => *json,
                ProfileAction::Merge { .. } => false,
            },
            Command::Exec(_)
            | Command::BenchFloor { .. }
            | Command::BenchProfile
            | Command::Completions { .. }
            | Command::ManPages { .. } => false,
        }
    }

    /// Commands that print a report and hold nothing that must be cleaned
    /// up: a closed stdout (`| head`) ends them quietly, as it does `cat`.
    fn ends_on_closed_stdout(&self) -> bool {
        matches!(
            self,
            Command::Trace(_)
                | Command::Completions { .. }
                | Command::Check(_)
                | Command::Profile { .. }
                | Command::Audit { .. }
                | Command::Doctor { .. }
                | Command::Drift(_)
                | Command::Ui(_)
                | Command::Demo { .. }
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.command.json();
    if cli.command.ends_on_closed_stdout() {
        // SAFETY: before any thread starts; restores the default action
        // that Rust's runtime replaced with "ignore".
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Trace(o) => trace::run(o),
        Command::Learn(o) => learn::run(o),
        Command::Check(o) => check::run(o),
        Command::Run(o) => run::run(o),
        Command::Exec(o) => exec::exec(o),
        Command::Pending { json } => control::pending(json),
        Command::Approve { id, learn, json } => control::approve(&id, learn, json),
        Command::Deny { id, json } => control::deny(&id, json),
        Command::Mode { agent, mode, json } => control::mode(&agent, mode, json),
        Command::Pause { agent, json } => control::to_agent(&agent, Request::Pause, json),
        Command::Resume { agent, json } => control::to_agent(&agent, Request::Resume, json),
        Command::Status { agent, json } => control::status(agent.as_deref(), json),
        Command::Daemon(o) => daemon::run(o),
        Command::Reload { json } => control::reload(json),
        Command::Audit { action } => match action {
            AuditAction::Verify { files, key, json } => audit::verify(&files, key.as_deref(), json),
            AuditAction::Keygen { prefix, json } => audit::keygen(&prefix, json),
        },
        Command::Profile { action } => match action {
            ProfileAction::Show {
                file,
                overlay,
                config,
                json,
            } => profile::show(&file, overlay.as_deref(), config.as_deref(), json),
            ProfileAction::Lint { files, json } => profile::lint(&files, json),
            ProfileAction::Diff { old, new, json } => profile::diff_cmd(&old, &new, json),
            ProfileAction::Merge {
                files,
                agent,
                out,
                force,
            } => profile::merge_cmd(&files, agent.as_deref(), out.as_deref(), force),
            ProfileAction::Readiness {
                file,
                events,
                write,
                json,
            } => profile::readiness_cmd(&file, events.as_deref(), write, json),
        },
        Command::Demo {
            json,
            learn,
            check,
            changed,
        } => {
            let mode = match (learn, check) {
                (Some(out), _) => demo::DemoMode::Learn { out },
                (_, Some(profile)) => demo::DemoMode::Check { profile, json },
                _ => demo::DemoMode::Trace { json },
            };
            demo::run(mode, changed)
        }
        Command::BenchFloor { raw } => agentwatch::sensors::hold_floor(raw),
        Command::BenchProfile => agentwatch::commands::bench_profile::run(),
        Command::Doctor { json, config } => doctor::run(json, config.as_deref()),
        Command::Drift(o) => drift::run(o),
        Command::Ui(o) => ui::run(o),
        Command::Report { html, logs, json } => report::run(&html, &logs, json),
        Command::Completions { shell } => manual::completions(shell, Cli::command()),
        Command::ManPages { dir } => manual::man_pages(Cli::command(), &dir),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => ExitCode::from(agentwatch::exit::report(&e, json) as u8),
    }
}

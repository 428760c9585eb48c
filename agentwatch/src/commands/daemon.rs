//! `agentwatch daemon`: validate the configuration, then enforce every
//! agent it selects until SIGTERM (see `crate::daemon`).
use std::path::PathBuf;

use serde_json::json;

use crate::daemon::{config, Daemon};

/// Where the daemon's configuration is unless told.
pub const DEFAULT_CONFIG: &str = "/etc/agentwatch/agentwatch.toml";

/// `--config FILE` of the commands that read the daemon's configuration
/// (`drift`, `ui`).
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The daemon configuration.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

impl ConfigArg {
    /// The configuration, or a usage error that lists its problems.
    pub fn load(&self) -> anyhow::Result<config::Config> {
        config::load(&self.config).map_err(|r| {
            crate::exit::usage(format!(
                "{r}\n(give the daemon's configuration with --config)"
            ))
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct DaemonOptions {
    /// The configuration (TOML; agentwatch.example.toml documents it).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Validate the configuration and its profiles, then exit: 0 valid,
    /// 2 not (each problem as FILE:LINE:COL).
    #[arg(long)]
    pub check: bool,
    /// The --check result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Remove the sensors a stopped daemon left pinned (they keep
    /// enforcing until then) and its state file, then exit.
    #[arg(long, conflicts_with = "check")]
    pub unload: bool,
}

pub fn run(o: DaemonOptions) -> anyhow::Result<i32> {
    let cfg = match config::load(&o.config) {
        Ok(c) => c,
        Err(report) => {
            if o.json {
                let problems: Vec<_> = report
                    .problems
                    .iter()
                    .map(|p| {
                        json!({"file": p.file, "line": p.line, "column": p.column,
                            "message": p.message, "detail": p.detail})
                    })
                    .collect();
                println!("{}", json!({"ok": false, "problems": problems}));
            } else {
                eprint!("{report}");
            }
            return Err(crate::exit::usage(format!(
                "{} is not valid; nothing was started",
                o.config.display()
            )));
        }
    };
    if o.unload {
        return crate::daemon::unload(&cfg);
    }
    if o.check {
        let agents: Vec<_> = cfg
            .agents
            .iter()
            .map(|a| {
                json!({"name": a.name, "mode": a.mode.name(), "profile": a.profile_path,
                "selectors": a.selectors.iter().map(ToString::to_string).collect::<Vec<_>>()})
            })
            .collect();
        if o.json {
            println!("{}", json!({"ok": true, "agents": agents}));
        } else {
            println!(
                "{}: valid; {} agent(s): {}",
                o.config.display(),
                cfg.agents.len(),
                cfg.agents
                    .iter()
                    .map(|a| format!("{} ({})", a.name, a.mode.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Ok(0);
    }
    Daemon::start(cfg)?.run()
}

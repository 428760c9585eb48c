//! `agentwatch drift NAME [--since 7d] [--json] [--config FILE]`: how a
//! daemon agent's behaviour moved away from its profile over the last days,
//! read from its drift log in the state directory (`enforce::drift`).
use std::path::Path;

use crate::enforce::drift::{window, DriftLog};

#[derive(Debug, clap::Args)]
pub struct DriftOptions {
    /// The agent, as the daemon configuration names it.
    pub agent: String,
    /// The window: the last this long, rounded up to whole days (1d, 7d,
    /// 30d; 24h is 1d).
    #[arg(long, default_value = "7d", value_parser = crate::units::parse_duration)]
    pub since: std::time::Duration,
    #[command(flatten)]
    pub config: super::daemon::ConfigArg,
    /// One JSON report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: DriftOptions) -> anyhow::Result<i32> {
    let cfg = o.config.load()?;
    let a = cfg.agent_named(&o.agent)?;
    let log = DriftLog::load(&a.drift).map_err(|e| crate::exit::usage(e.to_string()))?;
    let days = o.since.as_secs().div_ceil(86_400).max(1);
    let (since, until) = window(days);
    let report = log.report(&a.profile, &since, &until);
    if o.json {
        let mut v = serde_json::to_value(&report)?;
        v["agent"] = serde_json::json!(o.agent);
        v["log"] = serde_json::json!(a.drift.display().to_string());
        println!("{v}");
    } else {
        if log.days.is_empty() {
            println!("{}: nothing recorded yet in {}", o.agent, shown(&a.drift));
        }
        for l in report.lines(&o.agent) {
            println!("{l}");
        }
    }
    Ok(0)
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

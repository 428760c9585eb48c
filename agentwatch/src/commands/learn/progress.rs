//! `learn`'s live view of the stability clocks, and its final line.
use std::{
    io::{IsTerminal, Write},
    path::Path,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::profile::convergence::ClassProgress;

/// The live view: lines redrawn in place on a terminal, JSON lines with
/// `--json`, nothing until the end otherwise. All on stderr: stdout is
/// the command's.
pub struct Progress {
    json: bool,
    tty: bool,
    agent: String,
    drawn: usize,
    last_json: Option<Instant>,
}

impl Progress {
    pub fn new(json: bool, agent: &str) -> Self {
        Self {
            json,
            tty: std::io::stderr().is_terminal(),
            agent: agent.to_string(),
            drawn: 0,
            last_json: None,
        }
    }

    pub fn show(&mut self, elapsed: Duration, classes: &[ClassProgress]) {
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

    pub fn done(&self, out: &Path, reason: &str, p: &crate::profile::Profile, lost: u64) {
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

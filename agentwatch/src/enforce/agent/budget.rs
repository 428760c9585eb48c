//! Budgets reached (`crate::budget`): each is a `budget/<kind>` violation,
//! alerted, audited, told to the agent, and acted on (pause by default).
use std::time::{Duration, Instant};

use serde_json::json;
use tracing::warn;

use super::AgentEnforcer;
use crate::budget::{Action, Cgroup, Hit};

/// An agent's budgets as the enforcer checks them.
#[derive(Debug)]
pub struct Bounds {
    /// The kernel-enforced ones (memory, processes, CPU).
    pub cgroup: Option<Cgroup>,
    /// Wall-clock time from `started`.
    pub runtime: Option<Duration>,
    pub started: Instant,
    pub action: Action,
    /// The run-time budget already reached (it is reported once).
    pub runtime_reached: bool,
}

impl AgentEnforcer {
    pub fn set_bounds(&mut self, b: Bounds) {
        self.bounds = Some(b);
    }

    /// The budgets end with the agent: its cgroup is removed (`Cgroup`'s
    /// drop; a process still in it keeps the directory, said in a warning).
    pub fn end_bounds(&mut self) {
        drop(self.bounds.take());
    }

    /// Once a second, from the lifecycle turn, and at the end: budgets
    /// reached since the last look.
    pub fn tick_bounds(&mut self) {
        let Some(b) = &mut self.bounds else {
            return;
        };
        let mut hits: Vec<Hit> = b.cgroup.as_mut().map(Cgroup::hits).unwrap_or_default();
        if let Some(limit) = b.runtime {
            if !b.runtime_reached && b.started.elapsed() >= limit {
                b.runtime_reached = true;
                hits.push(Hit {
                    kind: "runtime",
                    limit: format!("{}s", limit.as_secs()),
                    times: 1,
                });
            }
        }
        let action = b.action;
        for h in hits {
            self.budget_reached(&h, action);
        }
    }

    fn budget_reached(&mut self, h: &Hit, action: Action) {
        let rule = format!("budget/{}", h.kind);
        let what = match h.kind {
            "pids" => format!(
                "reached its budget of {} processes at once {} time(s): forks past it failed",
                h.limit, h.times
            ),
            "memory" => format!(
                "reached its memory budget of {} bytes {} time(s): the kernel reclaimed and, past it, kills",
                h.limit, h.times
            ),
            "runtime" => format!("ran past its run-time budget of {}", h.limit),
            k => format!("reached its {k} budget ({})", h.limit),
        };
        warn!(agent = %self.agent, %rule, "{what}");
        let record = json!({
            "type": "budget",
            "agent": self.agent,
            "rule": rule,
            "what": what,
            "limit": h.limit,
            "times": h.times,
            "action": action.name(),
            "time": crate::timestamp::now(),
            "host": crate::origin::host(),
        });
        self.raise_notice(record);
        if let Some(s) = &mut self.steer {
            s.refused(
                &rule,
                &what,
                "a resource budget of the agent",
                action.name(),
                None,
            );
        }
        match action {
            Action::Alert => {}
            Action::Pause => {
                let said = self.pause();
                warn!(agent = %self.agent, "{said}; `agentwatch resume {}` lets it go on", self.agent);
            }
            Action::Kill => self.kill_tree(),
        }
    }
}

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
    /// Restarts allowed in a window (`budget::Budgets::restarts`), and
    /// when the agent started within the current one.
    pub restarts: Option<crate::budget::Restarts>,
    pub starts: std::collections::VecDeque<Instant>,
}

impl Bounds {
    /// Budgets with nothing counted yet; None when `b` has none the
    /// enforcer checks (`files` is the launch's rlimit).
    pub fn of(cgroup: Option<Cgroup>, b: &crate::budget::Budgets, action: Action) -> Option<Self> {
        if cgroup.is_none() && b.runtime.is_none() && b.restarts.is_none() {
            return None;
        }
        Some(Self {
            cgroup,
            runtime: b.runtime,
            started: Instant::now(),
            action,
            runtime_reached: false,
            restarts: b.restarts.clone(),
            starts: Default::default(),
        })
    }
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

    /// An exec by which a process joined the agent through a selector: the
    /// agent started.
    pub(super) fn note_start(&mut self, ev: &crate::event::Event) {
        if let crate::event::Detail::Exec { selected: true, .. } = ev.detail {
            self.started();
        }
    }

    /// The agent started (a selector took a process, or `agentwatch exec`
    /// launched one). More starts within the window than the restart
    /// budget allows is `budget/restarts` (a loop that keeps relaunching).
    pub(super) fn started(&mut self) {
        let Some(b) = &mut self.bounds else {
            return;
        };
        let Some(r) = b.restarts.clone() else {
            return;
        };
        let now = Instant::now();
        b.starts.push_back(now);
        while b
            .starts
            .front()
            .is_some_and(|t| now.duration_since(*t) > r.window)
        {
            b.starts.pop_front();
        }
        // The first start is no restart.
        let restarts = b.starts.len().saturating_sub(1) as u64;
        if restarts > u64::from(r.limit) {
            b.starts.clear();
            let action = b.action;
            let hit = Hit {
                kind: "restarts",
                limit: r.written,
                times: restarts,
            };
            self.budget_reached(&hit, action);
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
            "restarts" => format!(
                "started {} times again within its restart budget's window ({}): a loop that keeps relaunching",
                h.times, h.limit
            ),
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
        // A budget is the whole agent's: every launch hears it.
        self.steers.refused(
            None,
            &crate::enforce::steer::Refusal {
                rule: &rule,
                what: &what,
                reason: "a resource budget of the agent",
                action: action.name(),
                request: None,
            },
        );
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

//! A pinned file the agent read (`rule::PINNED`): the file behind the
//! descriptor the open returned is checked against the profile's models
//! and instruction pins (`crate::pins`); the opener, held by the kernel
//! in enforce mode, is released, refused or paused by the file class's
//! action. A file whose digest is not known yet is hashed on a thread of
//! its own (`pins::hasher`) while its reader stays held; its verdict is
//! acted on when the hash is done.
use std::fs::File;

use tracing::warn;

use super::AgentEnforcer;
use crate::{
    event::{Detail, Event},
    pins::{PinFinding, Plan},
};

impl AgentEnforcer {
    pub(super) fn judge_pinned(&mut self, ev: &Event, held: bool) {
        let plan = match &ev.detail {
            // Learning in shadow records; it does not judge.
            Detail::Open {
                path,
                result: Some(fd),
                ..
            } if self.shadow.is_none() => {
                opened_file(ev.pid, *fd, path).map(|f| self.pins.plan(path, f))
            }
            _ => None,
        };
        match plan {
            Some(Plan::Hash(job)) => self.hasher.submit((ev.clone(), held), job),
            Some(Plan::Found(p)) => self.act_on_pin(ev, held, Some(p)),
            Some(Plan::Clean) | None => self.act_on_pin(ev, held, None),
        }
    }

    /// Acts on the pinned reads whose files are hashed by now; with
    /// `wait`, on every one handed over (the end of a run).
    pub fn finish_hashing(&mut self, wait: bool) {
        if self.hasher.pending() == 0 {
            return;
        }
        for ((ev, held), job, sha) in self.hasher.done(wait) {
            let found = match sha {
                Ok(sha) => self.pins.judge(&job, sha),
                // Unreadable now (removed, a failing disk): nothing to
                // compare, as when the open's file cannot be reopened.
                Err(e) => {
                    warn!(pid = ev.pid, error = %e, "cannot hash a pinned file; not checked");
                    None
                }
            };
            self.act_on_pin(&ev, held, found);
        }
    }

    fn act_on_pin(&mut self, ev: &Event, held: bool, found: Option<PinFinding>) {
        match found {
            Some(p) => self.act_in_userspace(ev, &p.finding, held, Some(p.learn), Some(&p.detail)),
            None if held => self.release(ev.pid),
            None => {}
        }
    }
}

/// The file descriptor `fd` of process `pid` opened, as it is now (the
/// exact file, even if its path was replaced since); the path when the
/// process is gone (monitor mode does not hold it).
fn opened_file(pid: u32, fd: i64, path: &str) -> Option<File> {
    File::open(format!("/proc/{pid}/fd/{fd}"))
        .or_else(|_| File::open(path))
        .ok()
}

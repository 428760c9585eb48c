//! A pinned file the agent read (`rule::PINNED`): the file behind the
//! descriptor the open returned is checked against the profile's models
//! and instruction pins (`crate::pins`); the opener, held by the kernel
//! in enforce mode, is released, refused or paused by the file class's
//! action.
use std::fs::File;

use super::{super::decision::DecidedBy, tree, wanted, AgentEnforcer};
use crate::{
    event::{Detail, Event},
    profile::ActionKind,
};

impl AgentEnforcer {
    pub(super) fn judge_pinned(&mut self, ev: &Event, held: bool) {
        let found = match &ev.detail {
            // Learning in shadow records; it does not judge.
            Detail::Open {
                path,
                result: Some(fd),
                ..
            } if self.shadow.is_none() => {
                opened_file(ev.pid, *fd, path).and_then(|f| self.pins.check(path, f))
            }
            _ => None,
        };
        let Some(p) = found else {
            if held {
                self.release(ev.pid);
            }
            return;
        };
        let act = wanted(&self.compiled.policy, self.mode, &p.finding);
        let mut approval = None;
        match act {
            ActionKind::Alert if held => self.release(ev.pid),
            ActionKind::Alert => {}
            // Held since its open returned: it dies before it reads a byte.
            ActionKind::Deny => {
                tree::kill(&[ev.pid]);
            }
            ActionKind::Pause => {
                approval = Some(self.pause_with(ev, &p.finding, Some(p.learn.clone())));
            }
            ActionKind::Kill => self.kill_tree(),
        }
        if act != ActionKind::Alert {
            self.stats.userspace_actions += 1;
        }
        self.alert_with(
            ev,
            &p.finding,
            act.name(),
            DecidedBy::Userspace,
            approval,
            Some(&p.detail),
        );
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

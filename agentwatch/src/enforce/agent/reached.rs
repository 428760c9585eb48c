//! What a call the kernel left to userspace reached, when the names it
//! gave cannot say. Such a call ran before userspace judged it (its
//! caller is held at the return), so its names are only a claim:
//! - an open is judged again by the file its new descriptor holds
//!   (`/proc/TID/fd/N`): a symlink in an allowed directory can lead to a
//!   key. By that real path only guardrails count (the profile's rules
//!   name files as the agent names them), unless the name is itself
//!   suspect (below);
//! - a call whose paths the entry could not read (`paths_at_exit`: a page
//!   not mapped when the kernel looked) carries what its exit read, after
//!   the call, from memory the caller controls: possibly not what the
//!   kernel used. An open is judged by its real path in full; any other
//!   call that succeeded (a rename, a link, an unlink) has nothing real to
//!   stand in for its names and is `path/unjudged`: enforce mode refuses
//!   what it cannot judge (the call has happened; its caller is denied).
use agentwatch_common::policy::verdict;

use super::explain::describe;
use crate::{
    event::{Detail, Event},
    profile::{anchors::Anchors, matcher::Finding, rule::Rule, Class},
};

/// Findings on what `ev` reached beyond its names, when the kernel left it
/// to userspace; `check` judges an event by the rules alone
/// (`Matcher::recheck`).
pub(super) fn findings(
    ev: &Event,
    anchors: &Anchors,
    mut check: impl FnMut(&Event) -> Vec<Finding>,
) -> Vec<Finding> {
    let Some(k) = ev.kernel else {
        return Vec::new();
    };
    if k.verdict != verdict::UNDECIDED {
        return Vec::new();
    }
    let late = k.paths_at_exit;
    match &ev.detail {
        Detail::Open {
            path,
            result: Some(fd),
            ..
        } if *fd >= 0 => match descriptor_path(ev.tid, *fd) {
            Some(real) if real != *path => {
                let mut by_real = ev.clone();
                if let Detail::Open { path, .. } = &mut by_real.detail {
                    *path = real;
                }
                let mut found = check(&by_real);
                if !late {
                    found.retain(Finding::hard);
                }
                found
            }
            Some(_) => Vec::new(),
            None if late => vec![unjudged(ev, anchors, Class::File)],
            None => Vec::new(),
        },
        Detail::Unlink {
            result: Some(0..), ..
        } if late => vec![unjudged(ev, anchors, Class::Delete)],
        Detail::Rename {
            result: Some(0..), ..
        }
        | Detail::Link {
            result: Some(0..), ..
        }
        | Detail::Make {
            result: Some(0..), ..
        }
        | Detail::Chmod {
            result: Some(0..), ..
        }
        | Detail::Chown {
            result: Some(0..), ..
        } if late => vec![unjudged(ev, anchors, Class::File)],
        _ => Vec::new(),
    }
}

/// The file descriptor `fd` of thread `tid` holds, by its path now; None
/// when it is gone or is no file on a path (a pipe, a socket).
fn descriptor_path(tid: u32, fd: i64) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?;
    let s = target.to_str()?;
    if !s.starts_with('/') {
        return None;
    }
    Some(s.strip_suffix(" (deleted)").unwrap_or(s).to_string())
}

fn unjudged(ev: &Event, anchors: &Anchors, class: Class) -> Finding {
    Finding {
        rule: Rule::PathUnjudged,
        class,
        what: describe(ev, anchors),
        reason: "the kernel could not read the path before the call; what the exit read, after it, may not be what the call used; enforce mode refuses what it cannot judge".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::KernelDecision;
    use agentwatch_common::policy::{action, rule};

    fn undecided(detail: Detail, late: bool) -> Event {
        let mut ev = crate::enforce::decision::tests::event();
        ev.tid = std::process::id();
        ev.kernel = Some(KernelDecision {
            verdict: verdict::UNDECIDED,
            rule: rule::PATH,
            action: action::HOLD,
            held: false,
            paths_at_exit: late,
        });
        ev.detail = detail;
        ev
    }

    fn rename(result: i64) -> Detail {
        Detail::Rename {
            from: "/w/a".into(),
            to: "/w/b".into(),
            syscall: "rename".into(),
            result: Some(result),
        }
    }

    fn none(_: &Event) -> Vec<Finding> {
        Vec::new()
    }

    #[test]
    fn a_call_whose_paths_came_from_its_exit_is_unjudged_when_it_succeeded() {
        let a = Anchors::default();
        let f = findings(&undecided(rename(0), true), &a, none);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, Rule::PathUnjudged);
        // Failed: it changed nothing. Read at entry: its names stand.
        assert!(findings(&undecided(rename(-2), true), &a, none).is_empty());
        assert!(findings(&undecided(rename(0), false), &a, none).is_empty());
    }

    #[test]
    fn an_open_is_judged_by_the_file_its_descriptor_holds() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::write(&real, "x").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let file = std::fs::File::open(&link).expect("open");
        let open = |late| {
            undecided(
                Detail::Open {
                    path: link.to_string_lossy().into_owned(),
                    access: Default::default(),
                    flags: 0,
                    syscall: "openat".into(),
                    result: Some(file.as_raw_fd() as i64),
                },
                late,
            )
        };
        let seen = std::cell::RefCell::new(Vec::new());
        let check = |e: &Event| {
            if let Detail::Open { path, .. } = &e.detail {
                seen.borrow_mut().push(path.clone());
            }
            vec![Finding {
                rule: Rule::GuardSecrets,
                class: Class::File,
                what: "read".into(),
                reason: "a key".into(),
            }]
        };
        let a = Anchors::default();
        let f = findings(&open(false), &a, check);
        assert_eq!(seen.borrow().as_slice(), [real.to_string_lossy()]);
        assert_eq!(f.len(), 1, "a guardrail by the real path counts");
        // Only guardrails by the real path, unless the name came late.
        let soft = |_: &Event| {
            vec![Finding {
                rule: Rule::FileUnknown,
                class: Class::File,
                what: "read".into(),
                reason: "not listed".into(),
            }]
        };
        assert!(findings(&open(false), &a, soft).is_empty());
        assert_eq!(findings(&open(true), &a, soft).len(), 1);
    }
}

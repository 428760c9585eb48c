//! Words for a decision: the finding that explains a kernel violation,
//! what an event did, and the profile entry that would have allowed it.
use super::super::approvals::LearnEntry;
use crate::{
    event::Event,
    profile::{
        anchors::Anchors,
        matcher::Finding,
        observe::{self, Obs, Peer},
        rule::Rule,
        Class, NetRule,
    },
};

/// The finding that explains a kernel violation: the matcher's when it
/// names the same rule (the kernel's `file` is the matcher's `file/...`),
/// else the kernel's rule with what the matcher saw.
pub(super) fn explain(
    kernel_rule: Rule,
    findings: &[Finding],
    ev: &Event,
    anchors: &Anchors,
) -> Finding {
    let same = |f: &&Finding| {
        f.rule == kernel_rule
            || (matches!(kernel_rule, Rule::Kernel(_)) && f.rule.family() == kernel_rule.name())
    };
    if let Some(f) = findings.iter().find(same) {
        return f.clone();
    }
    let seen = findings.iter().find(|f| !f.is_rate());
    let (class, what) = match seen {
        Some(f) => (f.class, f.what.clone()),
        None => (Class::File, describe(ev, anchors)),
    };
    let (class, reason) = match kernel_rule {
        Rule::GuardExfiltrate => (
            Class::Network,
            "a connect outside the profile after the agent read a secret",
        ),
        Rule::GuardTamper => (class, escape_reason(ev, "aimed at agentwatch itself")),
        Rule::GuardEscape => (class, escape_reason(ev, "leaves agentwatch's sandbox")),
        Rule::PathUnjudged => (
            class,
            "the kernel could not judge the path (longer than its 2 KiB copy, or unreadable at entry and exit); enforce mode refuses what it cannot judge",
        ),
        Rule::Rate(c) => (c, "over the profile's per-minute budget"),
        Rule::Landlock(c) => (
            c,
            "refused by the launch sandbox's Landlock rules before the effect: outside what the profile grants",
        ),
        _ => (class, "decided in the kernel"),
    };
    Finding {
        rule: kernel_rule,
        class,
        what,
        reason: reason.into(),
    }
}

/// A sandbox refusal that is not Landlock's EACCES (EROFS or EBUSY from a
/// read-only guardrail mount, EXDEV across one or out of Landlock's tree)
/// on a path a guardrail holds: that guardrail's finding, said to be
/// refused before the effect.
pub(super) fn by_shield(ev: &Event, findings: &[Finding]) -> Option<Finding> {
    let why = match errno(ev)? {
        libc::EROFS | libc::EBUSY => "refused before the effect: the guardrail is a read-only mount in the agent's own mount namespace",
        libc::EXDEV => "refused before the effect by the launch sandbox: a link or rename across a read-only guardrail mount, or out of the tree Landlock grants",
        _ => return None,
    };
    let g = findings.iter().find(|f| f.rule.hard())?;
    Some(Finding {
        reason: why.into(),
        ..g.clone()
    })
}

/// A refusal only the shield's mounts make (EROFS, EBUSY; EXDEV within
/// one directory, or when Landlock holds no file rules, `files_held`, so
/// cannot have made it) whose names, read again at the exit and resolved in the agent's own
/// mount namespace (`/proc/PID/root`), lead to nothing read-only, no
/// mount point, no mount boundary: another thread rewrote them under the
/// call, racing the judge. A tamper violation, refused before the effect.
/// None when the names explain it, or cannot be looked at (the process is
/// gone).
pub(super) fn rewritten(ev: &Event, files_held: bool, anchors: &Anchors) -> Option<Finding> {
    use crate::event::Detail;
    let errno = errno(ev)?;
    let at = |p: &str| as_agent_sees(ev, p);
    let parent = |p: &str| {
        std::path::Path::new(p)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
    };
    let (target, from) = match &ev.detail {
        Detail::Rename { from, to, .. } | Detail::Link { from, to, .. } => (to, Some(from)),
        Detail::Open { path, .. }
        | Detail::Make { path, .. }
        | Detail::Unlink { path, .. }
        | Detail::Chmod { path, .. }
        | Detail::Chown { path, .. } => (path, None),
        _ => return None,
    };
    let explained = match errno {
        libc::EROFS => {
            let dir = parent(target)?;
            let ro = |p: &str| at(p).and_then(|p| mounts::read_only(&p));
            ro(target) == Some(true) || ro(&dir)?
        }
        libc::EBUSY => [Some(target), from]
            .into_iter()
            .flatten()
            .any(|p| at(p).and_then(|p| mounts::point(&p)) != Some(false)),
        libc::EXDEV => {
            let (to_dir, from_dir) = (at(&parent(target)?)?, at(&parent(from?)?)?);
            // Landlock refuses with EXDEV only a rename or link between
            // two directories (whose rules differ), never within one.
            let two_dirs = mounts::inode(&to_dir)? != mounts::inode(&from_dir)?;
            (files_held && two_dirs) || mounts::id(&to_dir)? != mounts::id(&from_dir)?
        }
        _ => return None,
    };
    if explained {
        return None;
    }
    Some(finding(ev, anchors, "refused before the effect by a read-only guardrail mount, though the names the call gave lead to none: another thread rewrote them under the call, racing the judge"))
}

/// A rename or removal refused with EBUSY on a mount point the agent has
/// and agentwatch has not: one of the shield's, a directory on the way to
/// a guardrail (`sandbox::shield`'s pins). A tamper violation, refused
/// before the effect: moved aside, the guardrails in it could be left
/// behind and made again unbound.
pub(super) fn pinned(ev: &Event, anchors: &Anchors) -> Option<Finding> {
    pinned_name(ev).map(|_| finding(ev, anchors, "refused before the effect: it would move or remove a directory that holds guardrails (a mount point in the agent's own namespace, so the guardrails cannot be left behind and made again)"))
}

/// The name of an EBUSY rename or removal that is a mount point the agent
/// has and agentwatch has not (`pinned`): the shield's mount an approval
/// of the call lifts, with the guardrails bound beneath it.
pub(super) fn pinned_name(ev: &Event) -> Option<String> {
    use crate::event::Detail;
    if errno(ev) != Some(libc::EBUSY) {
        return None;
    }
    // By the real paths: what a lift unmounts is named without symlinks.
    let real = by_real_paths(ev);
    let names: Vec<&String> = match &real.as_ref().unwrap_or(ev).detail {
        Detail::Rename { from, to, .. } => vec![from, to],
        Detail::Unlink { path, .. } => vec![path],
        _ => return None,
    };
    let theirs = |p: &str| as_agent_sees(ev, p).and_then(|p| mounts::point(&p));
    names
        .into_iter()
        .find(|p| theirs(p) == Some(true) && mounts::point(p) == Some(false))
        .cloned()
}

/// The shield's read-only mount that holds what a guardrail call aimed
/// at: the call's target by its real path, walked up to the first mount
/// point the agent has. What approving the call lifts (`shield::lift`).
/// None when that mount point is not read-only, is one agentwatch's own
/// namespace has too (not the shield's), or the agent cannot be looked at.
pub(super) fn shield_mount(ev: &Event) -> Option<String> {
    use crate::event::Detail;
    let real = by_real_paths(ev);
    let target = match &real.as_ref().unwrap_or(ev).detail {
        Detail::Rename { to, .. } | Detail::Link { to, .. } => to.clone(),
        // A read passes the mount: there is nothing to lift for it.
        Detail::Open { access, .. } if !(access.write || access.create || access.truncate) => {
            return None
        }
        Detail::Open { path, .. }
        | Detail::Make { path, .. }
        | Detail::Unlink { path, .. }
        | Detail::Chmod { path, .. }
        | Detail::Chown { path, .. } => path.clone(),
        _ => return None,
    };
    for dir in std::path::Path::new(&target).ancestors() {
        let here = dir.to_str().filter(|d| *d != "/")?;
        let theirs = as_agent_sees(ev, here)?;
        if mounts::point(&theirs) == Some(true) {
            let shields =
                mounts::read_only(&theirs) == Some(true) && mounts::point(here) == Some(false);
            return shields.then(|| here.to_string());
        }
    }
    None
}

/// The errno a failed call returned.
fn errno(ev: &Event) -> Option<i32> {
    ev.detail.result().filter(|r| *r < 0).map(|r| -r as i32)
}

/// An absolute path as the process that made `ev` sees it, through its
/// own root and mounts (`/proc/PID/root`). A process that has exited
/// since (an `mv` whose rename was refused) is looked through its nearest
/// living ancestor in a mount namespace other than agentwatch's: the
/// agent's, which it inherited.
fn as_agent_sees(ev: &Event, path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    Some(format!("/proc/{}/root{path}", agent_pid(ev)?))
}

/// The mount namespace `ev`'s process is in (the link of its
/// `/proc/PID/ns/mnt`, `mnt:[N]`), looked at as `as_agent_sees` does.
pub(super) fn namespace_of(ev: &Event) -> Option<String> {
    namespace(agent_pid(ev)?)
}

/// The mount namespace of process `pid`.
pub(super) fn namespace(pid: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The process `ev`'s mounts are looked at through: its own, or, gone,
/// its nearest living ancestor in a mount namespace other than
/// agentwatch's.
fn agent_pid(ev: &Event) -> Option<u32> {
    let own = namespace(std::process::id());
    let ancestors = ev.context.ancestry.iter().map(|a| a.pid);
    std::iter::once(ev.pid)
        .filter(|p| namespace(*p).is_some())
        .chain(ancestors.filter(|p| namespace(*p).is_some_and(|n| Some(n) != own)))
        .next()
}

/// A tamper finding against the shield, for `ev`.
fn finding(ev: &Event, anchors: &Anchors, reason: &str) -> Finding {
    let class = match ev.detail {
        crate::event::Detail::Unlink { .. } => Class::Delete,
        _ => Class::File,
    };
    Finding {
        rule: Rule::GuardTamper,
        class,
        what: describe(ev, anchors),
        reason: reason.into(),
    }
}

/// Mounts as the agent sees them, through `/proc/PID/root`.
mod mounts {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};

    fn c(path: &str) -> Option<CString> {
        CString::new(std::ffi::OsStr::new(path).as_bytes()).ok()
    }

    /// The mount's id (statx STATX_MNT_ID), following symlinks.
    pub fn id(path: &str) -> Option<u64> {
        let p = c(path)?;
        let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
        // SAFETY: a valid C string and a buffer statx fills.
        let r = unsafe {
            libc::statx(
                libc::AT_FDCWD,
                p.as_ptr(),
                0,
                libc::STATX_MNT_ID,
                st.as_mut_ptr(),
            )
        };
        if r != 0 {
            return None;
        }
        // SAFETY: statx succeeded.
        let st = unsafe { st.assume_init() };
        (st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id)
    }

    /// The (device, inode) of what `path` names, following symlinks.
    pub fn inode(path: &str) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some((m.dev(), m.ino()))
    }

    /// Whether `path` is a mount point (its mount is not its parent's).
    pub fn point(path: &str) -> Option<bool> {
        let parent = std::path::Path::new(path).parent()?.to_str()?;
        Some(id(path)? != id(parent)?)
    }

    /// Whether the mount holding `path` is read-only.
    pub fn read_only(path: &str) -> Option<bool> {
        use nix::sys::statvfs::{statvfs, FsFlags};
        Some(statvfs(path).ok()?.flags().contains(FsFlags::ST_RDONLY))
    }
}

/// The event with each path's directory resolved through its symlinks
/// now, in agentwatch's mount namespace: the agent's is the same tree
/// (the sandbox refuses new mounts; the shield's are binds of paths onto
/// themselves); None when that changes nothing.
pub(super) fn by_real_paths(ev: &Event) -> Option<Event> {
    let mut real = ev.clone();
    let mut changed = false;
    for p in real.detail.paths_mut() {
        let path = std::path::Path::new(p.as_str());
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let Ok(dir) = std::fs::canonicalize(dir) else {
            continue;
        };
        let r = dir.join(name).to_string_lossy().into_owned();
        if r != *p {
            *p = r;
            changed = true;
        }
    }
    changed.then_some(real)
}

/// Why a tamper or escape violation is one: the escape list's reason for
/// its call, else `otherwise` (a signal aimed at agentwatch).
fn escape_reason(ev: &Event, otherwise: &'static str) -> &'static str {
    let crate::event::Detail::Tamper {
        syscall, ia32_call, ..
    } = &ev.detail
    else {
        return otherwise;
    };
    if ia32_call.is_some() {
        return "an ia32 system call: no syscall tracepoint sees it, so nothing judges what it names";
    }
    agentwatch_common::escape::ESCAPES
        .iter()
        .find(|e| e.name == syscall.as_ref())
        .map_or(otherwise, |e| e.why)
}

/// What an event did, as findings say it (`delete $WORKSPACE/x`,
/// `connect 10.0.0.1:443`), for a kernel decision no finding explains.
fn describe(ev: &Event, anchors: &Anchors) -> String {
    match observe::observe(ev).into_iter().next() {
        Some(Obs::File { path, access, .. }) => format!("{access} {}", anchors.anchor(&path)),
        Some(Obs::Exec { path }) => format!("exec {}", anchors.anchor(&path)),
        Some(Obs::Net {
            direction,
            peer: Peer::Ip { addr, port },
        }) => match port {
            Some(p) => format!("{direction} {addr}:{p}"),
            None => format!("{direction} {addr}"),
        },
        Some(Obs::Net {
            direction,
            peer: Peer::Unix { path },
        }) => format!("{direction} unix:{}", anchors.anchor(&path)),
        Some(Obs::Dns { name }) => format!("resolve {name}"),
        _ => crate::sinks::what_happened(ev),
    }
}

/// The profile entry that would have allowed `ev`'s `class` observation.
pub(super) fn learn_entry(ev: &Event, class: Class, anchors: &Anchors) -> Option<LearnEntry> {
    observe::observe(ev)
        .into_iter()
        .find(|o| o.class() == class)
        .and_then(|o| match o {
            Obs::File { path, access, .. } => Some(LearnEntry::File {
                path: anchors.anchor(&path),
                access,
            }),
            Obs::Exec { path } => Some(LearnEntry::Exec {
                path: anchors.anchor(&path),
            }),
            Obs::Net {
                direction,
                peer: Peer::Ip { addr, port },
            } => Some(LearnEntry::Net(NetRule {
                direction,
                host: None,
                address: Some(addr.to_string()),
                unix: None,
                port,
                by: Vec::new(),
                model: false,
                runs: 1,
            })),
            Obs::Net {
                direction,
                peer: Peer::Unix { path },
            } => Some(LearnEntry::Net(NetRule {
                direction,
                host: None,
                address: None,
                unix: Some(anchors.anchor(&path)),
                port: None,
                by: Vec::new(),
                model: false,
                runs: 1,
            })),
            Obs::Dns { name } => Some(LearnEntry::Dns { name }),
            Obs::DnsAnswer { .. } | Obs::Listing { .. } => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Detail;
    use crate::sandbox::own_namespace::OwnNamespace;

    /// A rename by this test process that failed with `errno`.
    fn rename(from: &str, to: &str, errno: i32) -> Event {
        let mut ev = crate::enforce::decision::tests::event();
        ev.pid = std::process::id();
        ev.detail = Detail::Rename {
            from: from.into(),
            to: to.into(),
            syscall: "rename".into(),
            result: Some(-(errno as i64)),
        };
        ev
    }

    fn guard_finding() -> Finding {
        Finding {
            rule: Rule::GuardPersistence,
            class: Class::File,
            what: "rename $WORKSPACE/.git/hooks/pre-commit".into(),
            reason: "a persistence place".into(),
        }
    }

    #[test]
    fn a_guardrail_the_real_path_names_is_the_rule_of_a_mount_refusal() {
        let ev = rename("/w/p", "/w/.git/hooks/pre-commit", libc::EXDEV);
        let f = by_shield(&ev, &[guard_finding()]).expect("explained");
        assert_eq!(f.rule, Rule::GuardPersistence);
        assert!(f.reason.contains("before the effect"), "{}", f.reason);
        // Landlock's own EACCES keeps its rule; no guardrail, no finding.
        assert!(by_shield(&rename("/w/p", "/w/q", libc::EACCES), &[guard_finding()]).is_none());
        assert!(by_shield(&ev, &[]).is_none());
    }

    #[test]
    fn a_directory_only_the_agent_has_as_a_mount_point_is_what_a_lift_names() {
        let d = tempfile::tempdir().expect("tempdir");
        for dir in ["pin", "plain"] {
            std::fs::create_dir(d.path().join(dir)).expect("mkdir");
        }
        // A process whose namespace has `pin` as a mount point, as the
        // shield pins a directory on the way to a guardrail.
        let setup = "mount --bind pin pin";
        let Some(ns) = OwnNamespace::start(d.path(), setup, "true") else {
            return;
        };
        let at = |p: &str| d.path().join(p).to_string_lossy().into_owned();
        let of_ns = |from: &str, errno: i32| {
            let mut ev = rename(from, &at("elsewhere"), errno);
            ev.pid = ns.pid();
            ev
        };
        let pin = at("pin");
        assert_eq!(pinned_name(&of_ns(&pin, libc::EBUSY)), Some(pin.clone()));
        let anchors = Anchors::new(None, None, None);
        assert!(pinned(&of_ns(&pin, libc::EBUSY), &anchors).is_some());
        // Not a mount point there; another errno; agentwatch's own mount.
        assert_eq!(pinned_name(&of_ns(&at("plain"), libc::EBUSY)), None);
        assert_eq!(pinned_name(&of_ns(&pin, libc::EXDEV)), None);
        assert_eq!(pinned_name(&of_ns("/proc", libc::EBUSY)), None);
    }

    #[test]
    fn a_mount_refusal_the_names_do_not_explain_is_a_race_against_the_judge() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, q) = (d.path().join("p"), d.path().join("q"));
        let (p, q) = (p.to_string_lossy(), q.to_string_lossy());
        let anchors = Anchors::new(None, None, None);
        // Both names in one directory of one mount: EXDEV cannot be theirs.
        let f = rewritten(&rename(&p, &q, libc::EXDEV), false, &anchors).expect("a race");
        assert_eq!(f.rule, Rule::GuardTamper);
        // Landlock holds files: within one directory, its EXDEV cannot be
        // Landlock's either; between two, it may be.
        assert!(rewritten(&rename(&p, &q, libc::EXDEV), true, &anchors).is_some());
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let elsewhere = sub.join("q").to_string_lossy().into_owned();
        assert!(rewritten(&rename(&p, &elsewhere, libc::EXDEV), true, &anchors).is_none());
        assert!(rewritten(&rename(&p, &elsewhere, libc::EXDEV), false, &anchors).is_some());
        // EROFS on a writable directory: not the names' either.
        assert!(rewritten(&rename(&p, &q, libc::EROFS), true, &anchors).is_some());
        // Across two mounts (the root and /proc): explained.
        assert!(rewritten(&rename(&p, "/proc/x", libc::EXDEV), false, &anchors).is_none());
        // A mount point of agentwatch's too (not the shield's): EBUSY is
        // its own.
        assert!(rewritten(&rename("/proc", "/proc2", libc::EBUSY), false, &anchors).is_none());
        // A process that is gone cannot be looked at.
        let mut gone = rename(&p, &q, libc::EROFS);
        gone.pid = u32::MAX;
        assert!(rewritten(&gone, false, &anchors).is_none());
    }
}

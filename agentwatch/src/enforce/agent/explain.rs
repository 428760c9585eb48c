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

/// The event with each path's directory resolved through its symlinks
/// now (the agent shares agentwatch's mount namespace: the sandbox
/// refuses new ones); None when that changes nothing.
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

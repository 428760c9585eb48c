//! `doctor`'s table of evasion classes (issue 15): for each, which tier
//! holds it on this kernel, for agents agentwatch starts and for agents
//! the daemon selects, and whether it acts before or after the effect.
use serde::Serialize;

use crate::sandbox::{files::FILES_ABI, Layers};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ClassTier {
    pub class: &'static str,
    /// Agents `run` or `exec` starts.
    pub launched: String,
    /// Agents the daemon selects without starting them.
    pub selected: String,
}

/// What this host has that the table depends on.
pub struct Host<'a> {
    pub layers: &'a Layers,
    /// The BPF LSM tier attaches.
    pub lsm: bool,
    /// The cgroup sock_addr hooks attach.
    pub cgroup: bool,
    /// The kernel runs ia32 system calls from 64-bit processes
    /// (`sensors::host::runs_ia32_syscalls`).
    pub ia32: bool,
}

/// What the guardrail shield (`sandbox::shield`) holds, without BPF LSM.
const SHIELD: &str = "the guardrails that exist inside the profile's tree at launch are read-only mounts in the agent's own mount namespace (when the guardrails act: deny, kill, or pause, whose approval lifts that guardrail's mount for the agent's retry): the kernel refuses a change there before the effect, whatever name reaches it (EROFS, EXDEV, EBUSY)";

pub fn table(h: &Host) -> Vec<ClassTier> {
    let landlock_files = h.layers.landlock_abi.is_some_and(|a| a >= FILES_ABI);
    let killed = "eBPF: SIGKILL at the call, after the effect (a link, symlink, directory or node it made is removed, a rename moved back)";
    let file_selected = if h.lsm {
        "BPF LSM: EPERM before the effect"
    } else {
        killed
    };
    let file_launched = if h.lsm {
        "BPF LSM: EPERM before the effect".to_string()
    } else if landlock_files {
        "Landlock: EACCES before the effect, by the real hierarchy (classes whose action refuses); else as selected".into()
    } else {
        format!("no Landlock file rules here: {killed}")
    };
    let seccomp = if h.layers.seccomp {
        "seccomp: EPERM before the call runs"
    } else {
        "eBPF at entry: SIGKILL, the call may complete"
    };
    let entry = "eBPF at entry: SIGKILL, the call may complete";
    let signals = if h.layers.scoped {
        "Landlock scoping: refused before delivery"
    } else {
        "eBPF tamper guard at entry: the sender is killed; a SIGKILL it sent still lands"
    };
    let net = |what: &'static str| {
        if h.cgroup {
            format!("cgroup {what} hook: EPERM before the effect")
        } else {
            "no cgroup v2 hooks here: alerted only".into()
        }
    };
    let same = |s: &str| (s.to_string(), s.to_string());
    // The sandbox's seccomp filter admits only x86-64 calls: an ia32 one
    // kills the process (SIGSYS) before it runs. Without it, the guard on
    // the raw sys_enter sees the call (no syscall tracepoint does).
    let ia32 = if !h.ia32 {
        same("this kernel runs no ia32 system calls")
    } else {
        let guard = "eBPF ia32 guard on the raw sys_enter: SIGKILL at entry, the call may complete (nothing judges its paths)";
        let launched = if h.layers.seccomp {
            "seccomp: the process is killed (SIGSYS) before the call runs; alerted from the killed thread's exit"
        } else {
            guard
        };
        (launched.to_string(), guard.to_string())
    };
    let rows: Vec<(&'static str, (String, String))> = vec![
        (
            "a file outside the profile, by any route (symlinked directory, hard link, long or unreadable path, a path readable only after the call)",
            (file_launched, file_selected.into()),
        ),
        (
            "a guardrail inside the profile's tree (a workspace .env, .git/hooks)",
            if h.lsm {
                same(file_selected)
            } else {
                (format!("{SHIELD}; else as selected"), file_selected.into())
            },
        ),
        (
            "a name that leads the kernel elsewhere than the entry judged (a symlinked directory inside the profile's tree, a path another thread rewrites under the call)",
            if h.lsm {
                same("BPF LSM path hooks: what the kernel reached is judged by its own dentries against the guardrails, EPERM before the effect; the profile's other rules by the entry's copy")
            } else {
                let open = "an open's file is judged at its exit by its real path against the guardrails; other calls by the names given (known limit without BPF LSM)";
                let launched = if landlock_files {
                    format!("{SHIELD}; Landlock refuses what lies outside the tree by the real hierarchy; else {open}")
                } else {
                    format!("{SHIELD}; else {open}")
                };
                (launched, open.to_string())
            },
        ),
        (
            "a mount namespace, file handles, io_uring, raw and packet sockets, modules, kexec",
            (seccomp.into(), entry.into()),
        ),
        ("ptrace, another process's memory or open files (pidfd_getfd), bpf()", (seccomp.into(), entry.into())),
        (
            "a signal to agentwatch",
            (
                signals.into(),
                "eBPF tamper guard at entry: the sender is killed; a SIGKILL it sent still lands (pinned programs keep enforcing)".into(),
            ),
        ),
        ("a connect outside the profile", same(&net("connect"))),
        ("a datagram sent outside the profile", same(&net("sendmsg"))),
        ("a bind outside the profile", same(&net("bind"))),
        (
            "a forged DNS answer",
            same("userspace: an answer counts only for its own query, from the resolver asked, for its TTL"),
        ),
        (
            "an accepted client",
            same("userspace, after the connection exists (known limit)"),
        ),
        (
            "a clone(CLONE_FILES) sibling using a killed call's descriptor",
            same("the tree is killed, milliseconds after (known window)"),
        ),
        ("an ia32 system call (int 0x80) from a 64-bit process", ia32),
    ];
    rows.into_iter()
        .map(|(class, (launched, selected))| ClassTier {
            class,
            launched,
            selected,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(abi: Option<i32>) -> Layers {
        Layers {
            landlock_abi: abi,
            scoped: abi.is_some_and(|a| a >= 6),
            seccomp: true,
            io_uring: false,
            raw_sockets: false,
            files: None,
            shield: None,
        }
    }

    /// The row whose class mentions `what`.
    fn row<'a>(t: &'a [ClassTier], what: &str) -> &'a ClassTier {
        t.iter()
            .find(|r| r.class.contains(what))
            .unwrap_or_else(|| panic!("no row for {what}"))
    }

    #[test]
    fn each_class_names_the_tier_this_host_has() {
        let l = layers(Some(7));
        let here = table(&Host {
            layers: &l,
            lsm: false,
            cgroup: true,
            ia32: true,
        });
        assert!(here[0].launched.starts_with("Landlock"));
        let ia32 = here.last().expect("rows");
        assert!(ia32.class.contains("ia32"));
        assert!(ia32.launched.starts_with("seccomp") && ia32.selected.contains("ia32 guard"));
        assert!(here[0].selected.contains("SIGKILL"));
        assert!(row(&here, "signal")
            .launched
            .starts_with("Landlock scoping"));
        let race = row(&here, "leads the kernel");
        assert!(race.launched.contains("read-only mounts") && race.launched.contains("Landlock"));
        assert!(race.selected.contains("known limit"));
        assert!(row(&here, "inside the profile's tree")
            .launched
            .contains("read-only mounts"));
        // 6.1: Landlock ABI 2 (files, no scoping) and the BPF LSM tier.
        let l = layers(Some(2));
        let vm = table(&Host {
            layers: &l,
            lsm: true,
            cgroup: true,
            ia32: false,
        });
        assert!(vm[0].launched.starts_with("BPF LSM"));
        assert!(row(&vm, "signal").launched.starts_with("eBPF tamper guard"));
        assert!(row(&vm, "leads the kernel").selected.starts_with("BPF LSM"));
        // No Landlock at all.
        let l = layers(None);
        let bare = table(&Host {
            layers: &l,
            lsm: false,
            cgroup: false,
            ia32: false,
        });
        assert!(bare[0].launched.starts_with("no Landlock"));
        assert!(row(&bare, "a connect").launched.contains("alerted only"));
        assert!(!row(&bare, "leads the kernel").launched.contains("Landlock"));
        assert!(bare.last().expect("rows").selected.contains("runs no ia32"));
    }
}

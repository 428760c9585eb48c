//! Which kernel program goes on which hooks, as a table (`SENSORS`), and
//! the one loop that attaches it. The watched file, network and exec
//! calls come from `agentwatch_common::calls::CALLS`, so a new call of a
//! known shape is a row there and nothing here.
use agentwatch_common::names::program as prog;
use std::path::Path;

use agentwatch_common::{
    calls::{Entry, CALLS},
    escape::ESCAPES,
    syscalls,
};
use aya::{
    programs::{links::FdLink, BtfTracePoint, TracePoint},
    Btf, Ebpf,
};
use tracing::debug;

use super::loader::{program, Held, HookSet, SensorError};

/// The tracepoints a syscall program goes on.
#[derive(Debug, Clone, Copy)]
enum Calls {
    /// Every watched call (`calls::CALLS`).
    Watched,
    /// The watched calls whose entry program is this one (`Call::entry`).
    Entry(Entry),
    /// These tracepoint names.
    Named(&'static [&'static str]),
    /// The escapes (`escape::ESCAPES`), and these names.
    Escapes(&'static [&'static str]),
}

/// Where a program goes.
#[derive(Debug, Clone, Copy)]
enum Hooks {
    SysEnter(Calls),
    SysExit(Calls),
    /// A BTF-typed raw tracepoint (`tp_btf/<name>`).
    Btf(&'static str),
}

/// When a program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Always,
    /// Only with an agent's policy (the tamper guard and what it needs).
    Enforcing,
    /// With an agent's policy, for agents the launch sandbox does not hold
    /// (selected, or `--no-sandbox`), on a kernel that runs ia32 calls.
    Ia32Guard,
}

/// One program and its hooks. The benchmark's floor puts `floor` (an
/// empty program) on the same hooks instead; None: not in the floor.
struct Sensor {
    program: &'static str,
    floor: Option<&'static str>,
    hooks: Hooks,
    when: When,
}

const FLOOR_TP: Option<&str> = Some(prog::FLOOR_TRACEPOINT);

/// The scheduler's BTF tracepoints.
const TP_FORK: &str = "sched_process_fork";
const TP_EXEC: &str = "sched_process_exec";
const TP_EXIT: &str = "sched_process_exit";
/// The raw syscall tracepoints: every call of every process, ia32 calls
/// included.
const TP_SYS_ENTER: &str = "sys_enter";
const TP_SYS_EXIT: &str = "sys_exit";

/// Every tracing sensor. The LSM tier and the cgroup hooks are attached
/// by `lsm` and `loader::attach_connect_hooks`: they go on other kinds of
/// hooks with their own fallbacks.
const SENSORS: &[Sensor] = &[
    Sensor {
        program: prog::SYS_ENTER,
        floor: FLOOR_TP,
        hooks: Hooks::SysEnter(Calls::Entry(Entry::Judged)),
        when: When::Always,
    },
    Sensor {
        program: prog::NAMES_ENTER,
        floor: FLOOR_TP,
        hooks: Hooks::SysEnter(Calls::Entry(Entry::Names)),
        when: When::Always,
    },
    Sensor {
        program: prog::OPENS_ENTER,
        floor: FLOOR_TP,
        hooks: Hooks::SysEnter(Calls::Entry(Entry::Opens)),
        when: When::Always,
    },
    Sensor {
        program: prog::LEGACY_OPENS_ENTER,
        floor: FLOOR_TP,
        hooks: Hooks::SysEnter(Calls::Entry(Entry::LegacyOpens)),
        when: When::Always,
    },
    Sensor {
        program: prog::SYS_EXIT,
        floor: FLOOR_TP,
        hooks: Hooks::SysExit(Calls::Watched),
        when: When::Always,
    },
    Sensor {
        program: prog::DNS_SEND,
        floor: FLOOR_TP,
        hooks: Hooks::SysEnter(Calls::Named(syscalls::DNS_SENDS)),
        when: When::Always,
    },
    Sensor {
        program: prog::DNS_RECV_ENTER,
        floor: FLOOR_TP,
        hooks: Hooks::SysEnter(Calls::Named(syscalls::DNS_RECVS)),
        when: When::Always,
    },
    Sensor {
        program: prog::DNS_RECV_EXIT,
        floor: FLOOR_TP,
        hooks: Hooks::SysExit(Calls::Named(syscalls::DNS_RECVS)),
        when: When::Always,
    },
    Sensor {
        program: prog::TAMPER_ENTER,
        floor: None,
        hooks: Hooks::SysEnter(Calls::Named(syscalls::TAMPER)),
        when: When::Enforcing,
    },
    Sensor {
        program: prog::ESCAPE_ENTER,
        floor: None,
        hooks: Hooks::SysEnter(Calls::Escapes(syscalls::ESCAPES_TOO)),
        when: When::Enforcing,
    },
    Sensor {
        program: prog::TAMPER_EXIT,
        floor: None,
        hooks: Hooks::SysExit(Calls::Escapes(syscalls::SIGNALS)),
        when: When::Enforcing,
    },
    Sensor {
        program: prog::IA32_ENTER,
        floor: None,
        hooks: Hooks::Btf(TP_SYS_ENTER),
        when: When::Ia32Guard,
    },
    // Invalidates the kernel's cache of clean opens (CLEAN_OPENS).
    Sensor {
        program: prog::MOUNT_CHANGED,
        floor: None,
        hooks: Hooks::SysExit(Calls::Named(syscalls::MOUNT_CHANGES)),
        when: When::Enforcing,
    },
    Sensor {
        program: prog::SCHED_PROCESS_FORK,
        floor: None,
        hooks: Hooks::Btf(TP_FORK),
        when: When::Always,
    },
    Sensor {
        program: prog::SCHED_PROCESS_EXEC,
        floor: None,
        hooks: Hooks::Btf(TP_EXEC),
        when: When::Always,
    },
    Sensor {
        program: prog::SCHED_PROCESS_EXIT,
        floor: None,
        hooks: Hooks::Btf(TP_EXIT),
        when: When::Always,
    },
];

impl Calls {
    fn names(self) -> Vec<&'static str> {
        match self {
            Calls::Watched => CALLS.iter().map(|c| c.name).collect(),
            Calls::Entry(program) => CALLS
                .iter()
                .filter(|c| c.entry() == program)
                .map(|c| c.name)
                .collect(),
            Calls::Named(n) => n.to_vec(),
            Calls::Escapes(n) => ESCAPES
                .iter()
                .map(|e| e.name)
                .chain(n.iter().copied())
                .collect(),
        }
    }
}

/// What the attach loop produced: the links, and the tracepoints this
/// kernel lacks (skipped).
#[derive(Default)]
pub(super) struct Attached {
    pub links: Vec<Held>,
    pub missing: Vec<String>,
}

/// Attaches every sensor of `hooks` that applies (`enforcing`: with an
/// agent's policy; `ia32_guard`: `When::Ia32Guard`'s too).
pub(super) fn attach_sensors(
    ebpf: &mut Ebpf,
    btf: &Btf,
    tracefs: &Path,
    hooks: HookSet,
    enforcing: bool,
    ia32_guard: bool,
) -> Result<Attached, SensorError> {
    let mut out = Attached::default();
    if hooks == HookSet::FloorRaw {
        for (prog, tp) in [
            (prog::FLOOR_RAW_ENTER, TP_SYS_ENTER),
            (prog::FLOOR_RAW_EXIT, TP_SYS_EXIT),
        ] {
            out.links.push(btf_tp(ebpf, btf, prog, tp)?);
        }
        return Ok(out);
    }
    for s in SENSORS {
        let wanted = match s.when {
            When::Always => true,
            When::Enforcing => enforcing,
            When::Ia32Guard => enforcing && ia32_guard,
        };
        if !wanted {
            continue;
        }
        let prog = match hooks {
            HookSet::Sensors => s.program,
            HookSet::Floor => match s.floor {
                Some(f) => f,
                None => continue,
            },
            HookSet::FloorRaw => continue,
        };
        match s.hooks {
            Hooks::SysEnter(calls) => syscalls_tp(ebpf, tracefs, prog, "enter", calls, &mut out)?,
            Hooks::SysExit(calls) => syscalls_tp(ebpf, tracefs, prog, "exit", calls, &mut out)?,
            Hooks::Btf(tp) => out.links.push(btf_tp(ebpf, btf, prog, tp)?),
        }
    }
    Ok(out)
}

/// Attaches `prog` to `syscalls:sys_<side>_<name>` for each call.
fn syscalls_tp(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    prog: &str,
    side: &str,
    calls: Calls,
    out: &mut Attached,
) -> Result<(), SensorError> {
    let p: &mut TracePoint = program(ebpf, prog)?;
    if p.fd().is_err() {
        p.load().map_err(|e| SensorError::Program {
            program: prog.into(),
            reason: format!("{e:#}"),
        })?;
    }
    for call in calls.names() {
        let name = format!("sys_{side}_{call}");
        if !tracefs.join("events/syscalls").join(&name).exists() {
            debug!(tracepoint = %name, "not on this kernel; skipped");
            out.missing.push(name);
            continue;
        }
        let attach_err = |reason: String| SensorError::Attach {
            program: prog.into(),
            hook: format!("syscalls/{name}"),
            reason,
        };
        let id = p
            .attach("syscalls", &name)
            .map_err(|e| attach_err(format!("{e:#}")))?;
        let link = p.take_link(id).map_err(|e| attach_err(format!("{e:#}")))?;
        let fd = FdLink::try_from(link).map_err(|e| {
            attach_err(format!(
                "{e:#} (this kernel attaches tracepoints without bpf_link; 5.15 or newer has it)"
            ))
        })?;
        out.links.push(Held::Fd(format!("{prog}-{name}"), fd));
    }
    Ok(())
}

/// Loads the programs `sys_exit` tail-calls and puts them in `JUMPS`
/// (enforcing only: they report what the launch sandbox refused and judge
/// the file an open left to userspace reached).
pub(super) fn fill_jumps(ebpf: &mut Ebpf) -> Result<(), SensorError> {
    use agentwatch_common::names::map as kmap;
    // Slot by slot, as `maps::JUMP_*` number them.
    for (slot, name) in [prog::LANDLOCK_EXIT, prog::LANDLOCK_KILL, prog::OPENED_EXIT]
        .into_iter()
        .enumerate()
    {
        let err = |reason: String| SensorError::Program {
            program: name.into(),
            reason,
        };
        let p: &mut TracePoint = program(ebpf, name)?;
        if p.fd().is_err() {
            p.load().map_err(|e| err(format!("{e:#}")))?;
        }
        let fd = p.fd().map_err(|e| err(format!("{e:#}")))?;
        let fd = fd.try_clone().map_err(|e| err(e.to_string()))?;
        let map = ebpf
            .map_mut(kmap::JUMPS)
            .ok_or(SensorError::MissingMap(kmap::JUMPS))?;
        let mut jumps =
            aya::maps::ProgramArray::try_from(map).map_err(|e| err(format!("{e:#}")))?;
        jumps
            .set(slot as u32, &fd, 0)
            .map_err(|e| err(format!("cannot fill {}: {e:#}", kmap::JUMPS)))?;
    }
    Ok(())
}

/// Loads and attaches `prog` on `tp_btf/<tp>`.
fn btf_tp(ebpf: &mut Ebpf, btf: &Btf, prog: &str, tp: &str) -> Result<Held, SensorError> {
    let p: &mut BtfTracePoint = program(ebpf, prog)?;
    p.load(tp, btf).map_err(|e| SensorError::Program {
        program: prog.into(),
        reason: format!("{e:#}"),
    })?;
    let attach_err = |e: aya::programs::ProgramError| SensorError::Attach {
        program: prog.into(),
        hook: format!("tp_btf/{tp}"),
        reason: format!("{e:#}"),
    };
    let id = p.attach().map_err(attach_err)?;
    let link = p.take_link(id).map_err(attach_err)?;
    Ok(Held::Fd(prog.to_string(), FdLink::from(link)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The floor covers exactly the syscall hooks the sensors use outside
    /// enforcement, so the benchmark's floor is the same set of hooks.
    #[test]
    fn the_floor_mirrors_the_always_on_syscall_sensors() {
        for s in SENSORS {
            let syscall = !matches!(s.hooks, Hooks::Btf(_));
            assert_eq!(
                s.floor.is_some(),
                syscall && s.when == When::Always,
                "{}",
                s.program
            );
        }
        let names = Calls::Watched.names();
        assert!(names.contains(&"openat") && names.contains(&"connect"));
        // The four entry programs split the watched calls between them.
        let of = |e| Calls::Entry(e).names();
        let (judged, made) = (of(Entry::Judged), of(Entry::Names));
        let (opens, legacy) = (of(Entry::Opens), of(Entry::LegacyOpens));
        assert_eq!(
            judged.len() + made.len() + opens.len() + legacy.len(),
            names.len()
        );
        assert!(made.contains(&"symlinkat") && !judged.contains(&"symlinkat"));
        assert!(opens.contains(&"openat2") && !judged.contains(&"openat"));
        assert!(legacy.contains(&"creat") && !opens.contains(&"creat"));
    }
}

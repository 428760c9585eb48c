//! `agentwatch doctor`: what this host's kernel gives each sensor and each
//! enforcement tier (DESIGN.md), and why not when it does not.
use std::{fs, path::Path};

use serde::Serialize;

use crate::sensors::{
    cgroup2_mount, ensure_tracefs,
    host::{active_lsms, check_syscall_layout},
    probe,
};

#[derive(Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

#[derive(Serialize)]
struct Sensor {
    sensor: &'static str,
    hook: &'static str,
    ok: bool,
    needs: &'static str,
}

#[derive(Serialize)]
struct Tier {
    tier: u8,
    name: &'static str,
    available: bool,
    why: String,
    /// Event classes this tier would enforce on this host.
    classes: Vec<&'static str>,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    features: Vec<Check>,
    sensors: Vec<Sensor>,
    enforcement: Vec<Tier>,
    /// The sandbox agents agentwatch starts run in: Landlock's ABI and
    /// scoping, the seccomp filter.
    sandbox: SandboxReport,
    /// Each evasion class and the tier that holds it here, before or
    /// after the effect.
    classes: Vec<super::doctor_classes::ClassTier>,
    /// The libssl files intent capture probes here.
    intent_libraries: Vec<std::path::PathBuf>,
    /// Where each budget controller (`run --budget`) can be used.
    budgets: Vec<(&'static str, String)>,
    /// With `--config`: who each configured agent runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    identities: Option<Vec<super::doctor_identity::AgentIdentity>>,
    /// True when `trace` can run here.
    ready: bool,
}

#[derive(Serialize)]
struct SandboxReport {
    #[serde(flatten)]
    layers: crate::sandbox::Layers,
    /// What holds, in words.
    note: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

fn probe_status(results: &[probe::ProbeResult], program: &str) -> (bool, String) {
    match results.iter().find(|r| r.program == program) {
        Some(probe::ProbeResult {
            outcome: Ok(()), ..
        }) => (true, "loads".into()),
        Some(probe::ProbeResult {
            outcome: Err(e), ..
        }) => (false, e.clone()),
        None => (false, "not probed (needs root)".into()),
    }
}

fn build() -> Report {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let root = nix::unistd::geteuid().is_root();
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    let tracefs = if root {
        ensure_tracefs().map_err(|e| e.to_string())
    } else {
        Err("needs root to mount".into())
    };
    let layout = match &tracefs {
        Ok(t) => check_syscall_layout(t).map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    let kprobes = tracefs
        .as_ref()
        .map(|t| t.join("kprobe_events").exists())
        .unwrap_or(false);
    let cgroup2 = cgroup2_mount();
    let lsm_list = active_lsms().unwrap_or_else(|| "(securityfs unavailable)".into());
    let probes = if root && btf {
        probe::probe_programs()
    } else {
        Err("needs root and BTF".into())
    };
    let results = probes.as_ref().map(|v| v.as_slice()).unwrap_or(&[]);
    let (syscall_ok, syscall_why) = probe_status(results, "sys_enter");
    let (btf_tp_ok, btf_tp_why) = probe_status(results, "sched_process_exec");
    let (signal_ok, signal_why) = probe_status(results, "probe_send_signal");
    let (sockaddr_ok, sockaddr_why) = probe_status(results, "probe_connect4");
    let (lsm_ok, lsm_why) = probe_status(results, "probe_lsm");
    let (fentry_ok, fentry_why) = probe_status(results, "probe_fentry");
    let bpf_in_lsm = lsm_list.split(',').any(|l| l.trim() == "bpf");

    let features = vec![
        check(
            "root",
            root,
            if root {
                "running as root"
            } else {
                "run with sudo to load BPF programs"
            },
        ),
        check(
            "btf",
            btf,
            if btf {
                "/sys/kernel/btf/vmlinux"
            } else {
                "needs CONFIG_DEBUG_INFO_BTF=y"
            },
        ),
        check(
            "tracefs",
            tracefs.is_ok(),
            tracefs
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| e.clone()),
        ),
        check(
            "syscall_tracepoints",
            layout.is_ok(),
            layout
                .clone()
                .err()
                .unwrap_or_else(|| "layout as compiled".into()),
        ),
        check(
            "ring_buffer",
            probes.is_ok(),
            probes
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "maps created".into()),
        ),
        check("bpf_loop_and_core", syscall_ok, syscall_why.clone()),
        check("tp_btf", btf_tp_ok, btf_tp_why.clone()),
        check("bpf_send_signal", signal_ok, signal_why.clone()),
        check(
            "cgroup2",
            cgroup2.is_some(),
            cgroup2
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "no cgroup2 mount".into()),
        ),
        check("cgroup_sock_addr", sockaddr_ok, sockaddr_why.clone()),
        check("lsm_list_has_bpf", bpf_in_lsm, lsm_list.trim().to_string()),
        check("bpf_lsm_programs", lsm_ok, lsm_why.clone()),
        check("fentry", fentry_ok, fentry_why.clone()),
        check(
            "kprobes",
            kprobes,
            if kprobes {
                "kprobe_events present"
            } else {
                "CONFIG_KPROBES off"
            },
        ),
    ];
    let sensors = sensors(btf_tp_ok, syscall_ok && layout.is_ok());
    let lsm_available = bpf_in_lsm && lsm_ok;
    let lsm_why_not = if lsm_available {
        "BPF LSM programs load".to_string()
    } else if !bpf_in_lsm {
        format!(
            "'bpf' is not in the active LSM list ({}); boot with lsm=...,bpf",
            lsm_list.trim()
        )
    } else {
        format!("the kernel refuses BPF LSM programs: {lsm_why}")
    };
    let tiers = tiers(
        (lsm_available, lsm_why_not),
        (
            sockaddr_ok && cgroup2.is_some(),
            if cgroup2.is_none() {
                "no cgroup v2 mount".into()
            } else {
                sockaddr_why
            },
        ),
        (signal_ok, signal_why),
    );
    let ready = root && btf && layout.is_ok() && syscall_ok && btf_tp_ok;
    let layers = crate::sandbox::layers_here();
    let classes = super::doctor_classes::table(&super::doctor_classes::Host {
        layers: &layers,
        lsm: tiers.iter().any(|t| t.tier == 1 && t.available),
        cgroup: tiers.iter().any(|t| t.tier == 2 && t.available),
        ia32: crate::sensors::host::runs_ia32_syscalls(),
    });
    Report {
        kernel,
        features,
        sensors,
        enforcement: tiers,
        classes,
        sandbox: SandboxReport {
            note: layers.describe(),
            layers,
        },
        intent_libraries: crate::sensors::tls::libraries(),
        identities: None,
        budgets: crate::budget::delegation(),
        ready,
    }
}

/// The sensors and whether they load here: the sched hooks need tp_btf,
/// the syscall sensors the tracepoints as compiled and bpf_loop.
fn sensors(btf_tp: bool, syscalls: bool) -> Vec<Sensor> {
    vec![
        Sensor {
            sensor: "exec",
            hook: "tp_btf/sched_process_exec",
            ok: btf_tp,
            needs: "tp_btf, BTF",
        },
        Sensor {
            sensor: "fork",
            hook: "tp_btf/sched_process_fork",
            ok: btf_tp,
            needs: "tp_btf, BTF",
        },
        Sensor {
            sensor: "exit",
            hook: "tp_btf/sched_process_exit",
            ok: btf_tp,
            needs: "tp_btf, BTF",
        },
        Sensor {
            sensor: "file",
            hook: "syscalls/sys_{enter,exit}_{open*,creat,unlink*,rmdir,rename*,*chmod*,*chown*,execve*}",
            ok: syscalls,
            needs: "syscall tracepoints, bpf_loop (5.17+)",
        },
        Sensor {
            sensor: "network",
            hook: "syscalls/sys_{enter,exit}_{connect,bind,listen,accept,accept4}",
            ok: syscalls,
            needs: "syscall tracepoints",
        },
        Sensor {
            sensor: "dns",
            hook: "syscalls/sys_enter_{sendto,sendmsg,sendmmsg,write,writev}",
            ok: syscalls,
            needs: "syscall tracepoints",
        },
    ]
}

/// The enforcement tiers (whether each is available here, and why), and
/// each class under the strongest tier `agentwatch run` uses for it.
fn tiers(lsm: (bool, String), sockaddr: (bool, String), signal: (bool, String)) -> Vec<Tier> {
    let mut tiers = vec![
        Tier {
            tier: 1,
            name: "bpf_lsm",
            available: lsm.0,
            why: lsm.1,
            classes: vec![],
        },
        Tier {
            tier: 2,
            name: "cgroup_sock_addr",
            available: sockaddr.0,
            why: sockaddr.1,
            classes: vec![],
        },
        Tier {
            tier: 3,
            name: "syscall_tracepoint_send_signal",
            available: signal.0,
            why: signal.1,
            classes: vec![],
        },
        Tier {
            tier: 4,
            name: "userspace_signal",
            available: true,
            why: "always; delay measured by the bench".into(),
            classes: vec![],
        },
    ];
    // Each class goes to the strongest tier `agentwatch run` uses for it
    // here: BPF LSM refuses file and exec calls with EPERM; tampering
    // (signals, ptrace, bpf()) has no LSM hook in `run` and is tier 3.
    for (class, candidates) in [
        ("exec", &[1u8, 3, 4][..]),
        ("file", &[1, 3, 4]),
        ("network", &[2, 3, 4]),
        ("signal/ptrace (tamper)", &[3, 4]),
    ] {
        let best = candidates
            .iter()
            .copied()
            .find(|n| tiers.iter().any(|t| t.tier == *n && t.available));
        if let Some(t) = tiers.iter_mut().find(|t| Some(t.tier) == best) {
            t.classes.push(class);
        }
    }
    tiers
}

/// `config`: also judge who each configured agent runs as.
pub fn run(json: bool, config: Option<&Path>) -> anyhow::Result<i32> {
    let mut r = build();
    if let Some(file) = config {
        let cfg =
            crate::daemon::config::load(file).map_err(|e| crate::exit::usage(format!("{e}")))?;
        r.identities = Some(super::doctor_identity::check(&cfg));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_human(&r);
        if let Some(ids) = &r.identities {
            super::doctor_identity::print(ids);
        }
    }
    Ok(if r.ready { 0 } else { 1 })
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "ok  "
    } else {
        "NO  "
    }
}

fn print_human(r: &Report) {
    println!("kernel {}", r.kernel);
    println!("\nfeatures:");
    for c in &r.features {
        println!("  {} {:<22} {}", mark(c.ok), c.name, c.detail);
    }
    println!("\nsensors:");
    for s in &r.sensors {
        println!("  {} {:<8} {}", mark(s.ok), s.sensor, s.hook);
    }
    println!("\nenforcement tiers:");
    for t in &r.enforcement {
        let classes = if t.classes.is_empty() {
            String::new()
        } else {
            format!(" -> {}", t.classes.join(", "))
        };
        println!(
            "  {} {} {:<31} {}{}",
            mark(t.available),
            t.tier,
            t.name,
            t.why,
            classes
        );
    }
    println!("\nlaunch sandbox (agents agentwatch starts):");
    println!("  {} {}", mark(r.sandbox.layers.seccomp), r.sandbox.note);
    println!("\nintent capture (OpenSSL's SSL_write/SSL_read, agents' model traffic):");
    if r.intent_libraries.is_empty() {
        println!(
            "  {} no system libssl found: alerts carry no context",
            mark(false)
        );
    }
    for l in &r.intent_libraries {
        println!("  {} {}", mark(true), l.display());
    }
    println!("\nresource budgets (run --budget: a cgroup of the agent's own):");
    for (c, at) in &r.budgets {
        println!("  {} {c:<8} {at}", mark(!at.starts_with("not available")));
    }
    println!("\nevasion classes (launched by run or exec / selected by the daemon):");
    for c in &r.classes {
        println!(
            "  {}\n    launched: {}\n    selected: {}",
            c.class, c.launched, c.selected
        );
    }
    println!(
        "\n{}",
        if r.ready {
            "ready: agentwatch trace can run on this host"
        } else {
            "not ready: fix the NO lines above under features"
        }
    );
}

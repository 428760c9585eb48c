//! Enforcement that outlives the daemon. A fresh daemon loads the sensors
//! pinned in bpffs; a restarted one adopts the pins the last one left (the
//! same build only), with its agents' kernel slots and open approval
//! requests from the state file. `agentwatch daemon --unload` removes
//! them.
use std::collections::BTreeMap;

use tracing::{info, warn};

use super::{
    config::Config,
    state::{self, State},
};
use crate::sensors::{pins, DfaCapacity, PolicyMaps, Sensors};

/// The sensors in use, and what the state file said when they were
/// adopted rather than loaded.
pub(super) struct Kernel {
    pub sensors: Sensors,
    pub template: PolicyMaps,
    pub adopted: Option<State>,
}

/// Adopts the pins `cfg` names when the state file vouches for them (this
/// build loaded them); otherwise removes whatever is pinned there and
/// loads afresh, pinned, sized `capacity`.
pub(super) fn load_or_adopt(
    cfg: &Config,
    ring_bytes: u32,
    capacity: DfaCapacity,
) -> anyhow::Result<Kernel> {
    let stale = |why: String| {
        if pins::exist(&cfg.pin_dir) {
            warn!(pins = %cfg.pin_dir.display(), %why, "not adopting the pinned sensors; removing them and loading afresh");
            eprintln!(
                "agentwatch: not adopting the sensors pinned in {} ({why}); loading afresh",
                cfg.pin_dir.display()
            );
        }
        let _ = pins::remove(&cfg.pin_dir);
    };
    match state::load(&cfg.state_file) {
        Some(Ok(st)) if !pins::exist(&cfg.pin_dir) => {
            stale(format!("{} has no pins", st.pin_dir.display()));
        }
        Some(Ok(st)) if st.object_sha256 != state::object_sha256() => {
            stale("they were loaded by another build of agentwatch".into());
        }
        Some(Ok(st)) if st.pin_dir != cfg.pin_dir => {
            stale(format!("the state file describes {}", st.pin_dir.display()));
        }
        Some(Ok(st)) => {
            let lsm = st.lsm_refused.clone().map_or(Ok(()), Err);
            match pins::adopt(&cfg.pin_dir, st.capacity, lsm) {
                Ok((sensors, template)) => {
                    info!(pins = %cfg.pin_dir.display(), attachments = sensors.attachments(), "adopted the pinned sensors");
                    eprintln!(
                        "agentwatch: adopted the sensors pinned in {} ({} attachments; enforcement did not stop)",
                        cfg.pin_dir.display(),
                        sensors.attachments()
                    );
                    return Ok(Kernel {
                        sensors,
                        template,
                        adopted: Some(st),
                    });
                }
                Err(e) => stale(format!("adopting failed: {e}")),
            }
        }
        Some(Err(e)) => stale(format!("the state file is unreadable: {e}")),
        None => stale(format!("no state file {}", cfg.state_file.display())),
    }
    // Intent capture's uprobes only when an agent captures.
    let tls = cfg
        .agents
        .iter()
        .any(|a| a.context != crate::intent::Level::Off);
    // The daemon selects agents the launch sandbox does not hold.
    let extras = crate::sensors::Extras::for_agent(tls, false);
    let (sensors, template) =
        Sensors::load_enforcing(ring_bytes, capacity, Some(&cfg.pin_dir), extras)?;
    Ok(Kernel {
        sensors,
        template,
        adopted: None,
    })
}

/// Agents the adopted state had that the configuration no longer does:
/// their kernel slots are cleared and their processes resumed and
/// released.
pub(super) fn release_gone(
    adopted: &State,
    cfg: &Config,
    template: &PolicyMaps,
) -> anyhow::Result<()> {
    for (name, id) in &adopted.agents {
        if cfg.agent(name).is_some() {
            continue;
        }
        let mut m = template.reopen()?;
        let pids = m.pids(*id);
        m.clear_agent(*id)?;
        crate::enforce::tree::resume(&pids);
        m.unwatch_agent(*id);
        let _ = std::fs::remove_file(state::approvals_file(&cfg.state_file, name));
        warn!(agent = %name, processes = pids.len(), "the adopted agent is not in the configuration; released");
    }
    Ok(())
}

/// Kernel ids of the adopted agents, by name.
pub(super) fn ids(adopted: Option<&State>) -> BTreeMap<String, u32> {
    adopted.map(|s| s.agents.clone()).unwrap_or_default()
}

/// `agentwatch daemon --unload`: removes the pins (the programs detach)
/// and the state file. Refused while a daemon answers on the socket.
pub fn unload(cfg: &Config) -> anyhow::Result<i32> {
    let sock = crate::control::daemon_socket();
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        eprintln!(
            "agentwatch: a daemon is running ({}); stop it first (systemctl stop agentwatch)",
            sock.display()
        );
        return Ok(1);
    }
    let names: Vec<String> = match state::load(&cfg.state_file) {
        Some(Ok(st)) => st.agents.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let mut stopped = Vec::new();
    for n in &names {
        let file = state::approvals_file(&cfg.state_file, n);
        let open = crate::enforce::approvals::Approvals::kept_in(file.clone(), true)
            .list()
            .len();
        if open > 0 {
            stopped.push(format!("{n} ({open} open request(s))"));
        }
        let _ = std::fs::remove_file(file);
    }
    let had = pins::exist(&cfg.pin_dir);
    pins::remove(&cfg.pin_dir)?;
    let _ = std::fs::remove_file(&cfg.state_file);
    if had {
        println!(
            "removed the sensors pinned in {}; nothing of agentwatch is left in the kernel",
            cfg.pin_dir.display()
        );
    } else {
        println!("nothing pinned in {}", cfg.pin_dir.display());
    }
    if !stopped.is_empty() {
        println!(
            "paused agents stay stopped: {}; resume (kill -CONT) or kill their processes",
            stopped.join(", ")
        );
    }
    Ok(0)
}

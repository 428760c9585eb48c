//! The kernel side as userspace sees it: load the embedded eBPF object,
//! attach its programs, and expose the maps (watch list, selectors, ring
//! buffer, loss counters).
mod attach;
mod gate;
pub mod host;
mod loader;
mod lsm;
pub mod pins;
pub mod policy_maps;
pub mod probe;
mod ring;
pub mod tls;

pub use host::{cgroup2_mount, ensure_tracefs, HostError};
pub use loader::{Extras, HookSet, SensorError, Sensors};
pub use policy_maps::{DfaCapacity, PolicyMaps};
pub use ring::{EventRing, LossCounters};

/// The eBPF object built by build.rs.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agentwatch"));

/// Attaches the empty floor programs, prints `ready`, and holds them until
/// stdin reaches EOF (used by `cargo xtask bench`).
pub fn hold_floor(raw: bool) -> anyhow::Result<i32> {
    let hooks = if raw {
        HookSet::FloorRaw
    } else {
        HookSet::Floor
    };
    let _sensors = Sensors::load(hooks, 4096 * 16)?;
    println!("ready");
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)?;
    Ok(0)
}

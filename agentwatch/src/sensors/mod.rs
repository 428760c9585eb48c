//! The kernel side as userspace sees it: load the embedded eBPF object,
//! attach its programs, and expose the maps (watch list, selectors, ring
//! buffer, loss counters).
pub mod host;
mod loader;
pub mod probe;

pub use host::{cgroup2_mount, ensure_tracefs, HostError};
pub use loader::{HookSet, LossCounters, SensorError, Sensors};

/// The eBPF object built by build.rs.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agentwatch"));

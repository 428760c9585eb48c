//! What a restarted daemon needs to adopt the sensors the one before it
//! pinned: which build loaded them, how the maps were sized, which agent
//! has which kernel slot. Written atomically whenever it changes, read
//! once at start. Open approval requests are kept per agent beside it
//! (`approvals_file`).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use serde::{Deserialize, Serialize};

use crate::sensors::DfaCapacity;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// sha256 of the eBPF object that is pinned: only the same build adopts.
    pub object_sha256: String,
    pub pin_dir: PathBuf,
    pub capacity: DfaCapacity,
    /// Why the BPF LSM tier is not attached (None: it is).
    pub lsm_refused: Option<String>,
    /// Kernel agent id by agent name.
    pub agents: BTreeMap<String, u32>,
}

/// Where agent `name`'s open approval requests are kept, beside the state
/// file (each enforcer writes its own at every change).
pub fn approvals_file(state_file: &Path, name: &str) -> PathBuf {
    state_file
        .parent()
        .unwrap_or(Path::new("/run/agentwatch"))
        .join("approvals")
        .join(format!("{name}.json"))
}

/// sha256 of the eBPF object built into this binary.
pub fn object_sha256() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| crate::audit::line_hash(crate::sensors::EBPF_OBJECT))
}

/// The state at `path`: None when there is none; Err when it cannot be
/// read or parsed (then the pins cannot be adopted).
pub fn load(path: &Path) -> Option<Result<State, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("{}: {e}", path.display()))),
    };
    Some(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())))
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// crash leaves the old state or the new, never half of one.
pub fn save(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

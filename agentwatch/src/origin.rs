//! Where records come from: this host's name, and on Kubernetes the node
//! (the daemon sets it from `[kubernetes]`). Alerts, decisions and feed
//! records name both, so a SOC can tell hosts apart.
use std::sync::OnceLock;

static NODE: OnceLock<String> = OnceLock::new();

/// This host's name ("unknown" when it cannot be read).
pub fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into())
    })
}

/// The Kubernetes node this daemon runs on, once set.
pub fn node() -> Option<&'static str> {
    NODE.get().map(String::as_str)
}

/// Names the node (the first call wins: a process runs on one node).
pub fn set_node(node: &str) {
    let _ = NODE.set(node.to_string());
}

//! Intent capture's uprobes: OpenSSL's `SSL_write`, `SSL_write_ex`,
//! `SSL_read` and `SSL_read_ex` in the system's libssl (3 and 1.1),
//! attached per process to the watched processes only (`follow`): a uprobe
//! on a file traps in every process that maps it, which on this host cost
//! an unwatched HTTPS loop a third more (`cargo xtask bench
//! --intent-only`); attached to a pid, its breakpoints go into that
//! process alone (and into a libssl it maps later). Not pinned: capture
//! lives with the process that reads it.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
};

use agentwatch_common::names::program as prog;
use aya::{
    programs::{
        uprobe::{UProbeLink, UProbeScope},
        UProbe,
    },
    Ebpf,
};
use tracing::{debug, warn};

use super::loader::{program, SensorError};

/// Where distributions put libssl. Several names may be one file (`/lib`
/// a link to `/usr/lib`): each real file is probed once.
const LIBSSL: [&str; 8] = [
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib/aarch64-linux-gnu/libssl.so.1.1",
    "/usr/lib64/libssl.so.1.1",
    "/usr/lib/libssl.so.1.1",
];

/// Which program goes on which symbol.
const PROBES: [(&str, &str); 6] = [
    ("SSL_write", prog::SSL_WRITE),
    ("SSL_write_ex", prog::SSL_WRITE),
    ("SSL_read", prog::SSL_READ),
    ("SSL_read_ex", prog::SSL_READ_EX),
    ("SSL_read", prog::SSL_READ_RET),
    ("SSL_read_ex", prog::SSL_READ_RET),
];

/// Processes followed at once at most (each costs six perf events).
const MAX_FOLLOWED: usize = 1024;

/// The loaded programs and the processes they are attached to; each
/// process's probes are detached when it leaves the watch list (or on drop).
#[derive(Default)]
pub struct TlsProbes {
    /// The libraries probed.
    pub libraries: Vec<PathBuf>,
    /// Why the programs did not load, when they did not.
    pub error: Option<String>,
    loaded: bool,
    followed: HashMap<u32, Vec<UProbeLink>>,
    /// Executables looked at: whether they embed OpenSSL (export
    /// `SSL_write`, as Node.js does), so each is read once.
    embeds: HashMap<PathBuf, bool>,
    /// Said once: the followed set is full.
    full_said: bool,
}

impl TlsProbes {
    /// Probes that failed to load: nothing attached, and why.
    pub fn failed(e: &SensorError) -> Self {
        Self {
            error: Some(e.to_string()),
            ..Self::default()
        }
    }

    /// What the run summary and `doctor` say of them.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({"libraries": self.libraries, "error": self.error})
    }

    /// Attaches the probes to each of `pids` not followed yet, and detaches
    /// them from followed processes no longer in `pids`. A process that
    /// has not mapped libssl yet gets its breakpoints when it does.
    pub fn follow(&mut self, ebpf: &mut Ebpf, pids: &HashSet<u32>) {
        if !self.loaded {
            return;
        }
        self.followed.retain(|pid, _| pids.contains(pid));
        for &pid in pids {
            if self.followed.contains_key(&pid) {
                continue;
            }
            if self.followed.len() >= MAX_FOLLOWED {
                if !self.full_said {
                    warn!(
                        max = MAX_FOLLOWED,
                        "intent capture follows its maximum of processes; newer ones are not read"
                    );
                    self.full_said = true;
                }
                return;
            }
            let mut links = self.attach_pid(ebpf, pid);
            links.extend(self.attach_embedded(ebpf, pid));
            self.followed.insert(pid, links);
        }
    }

    fn attach_pid(&self, ebpf: &mut Ebpf, pid: u32) -> Vec<UProbeLink> {
        let mut links = Vec::new();
        for lib in &self.libraries {
            links.extend(attach_to(ebpf, pid, lib));
        }
        links
    }

    /// The process's own executable, when it embeds OpenSSL with its
    /// symbols exported (Node.js): probed like a library. An executable
    /// without them is remembered and not read again.
    fn attach_embedded(&mut self, ebpf: &mut Ebpf, pid: u32) -> Vec<UProbeLink> {
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            return Vec::new();
        };
        if self.libraries.contains(&exe) || self.embeds.get(&exe) == Some(&false) {
            return Vec::new();
        }
        let links = attach_to(ebpf, pid, &exe);
        if self.embeds.len() < 4096 {
            self.embeds.insert(exe, !links.is_empty());
        }
        links
    }
}

/// The six probes on `target` (a library or an executable) for `pid`
/// alone; those whose symbol it lacks are left out.
fn attach_to(ebpf: &mut Ebpf, pid: u32, target: &std::path::Path) -> Vec<UProbeLink> {
    let mut links = Vec::new();
    let Some(scope) = std::num::NonZeroU32::new(pid).map(UProbeScope::OneProcess) else {
        return links;
    };
    for (symbol, name) in PROBES {
        let Ok(p) = program::<UProbe>(ebpf, name) else {
            continue;
        };
        match p
            .attach(symbol, target, scope)
            .and_then(|id| p.take_link(id))
        {
            Ok(link) => links.push(link),
            // Gone already, or a file without the symbol.
            Err(e) => debug!(pid, target = %target.display(), symbol, error = %e, "not probed"),
        }
    }
    links
}

/// The libssl files on this host, each real file once.
pub fn libraries() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in LIBSSL {
        if let Ok(real) = std::fs::canonicalize(p) {
            if !out.contains(&real) {
                out.push(real);
            }
        }
    }
    out
}

/// Loads the TLS programs and finds the libraries; nothing is attached
/// until `follow` names processes.
pub fn load(ebpf: &mut Ebpf) -> Result<TlsProbes, SensorError> {
    for name in [
        prog::SSL_WRITE,
        prog::SSL_READ,
        prog::SSL_READ_EX,
        prog::SSL_READ_RET,
    ] {
        let p: &mut UProbe = program(ebpf, name)?;
        p.load().map_err(|e| SensorError::Program {
            program: name.into(),
            reason: format!("{e:#}"),
        })?;
    }
    let probes = TlsProbes {
        libraries: libraries(),
        loaded: true,
        ..TlsProbes::default()
    };
    // The first attach costs tens of milliseconds (the library read, the
    // kernel's first uprobe on it); paid here, an agent's first process
    // is followed within a tick of its fork. agentwatch maps no libssl.
    drop(probes.attach_pid(ebpf, std::process::id()));
    Ok(probes)
}

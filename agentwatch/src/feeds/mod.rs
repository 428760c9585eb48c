//! SOC feeds: what the daemon sends out, and where. `ocsf` maps events and
//! decisions to OCSF; `spool` keeps each feed's records on disk until its
//! receiver has them; `deliver` talks to the receivers (webhook, Splunk
//! HEC, syslog); `metrics` serves Prometheus counters. The pipeline only
//! appends to spools: a slow or dead receiver never slows enforcement.
pub mod deliver;
pub mod metrics;
pub mod ocsf;
pub mod spool;
pub mod tls;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;
use tracing::{info, warn};

use crate::{
    enforce::decision::{Decision, DecisionSink, RecordKind},
    event::Event,
};
use deliver::Receiver;
use spool::Spool;

/// Records per delivery.
const BATCH: usize = 500;

/// Where a feed delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Webhook {
        url: String,
        /// Extra request headers (`headers = { Authorization = "..." }`).
        headers: Vec<(String, String)>,
        /// Sent as `Authorization: Bearer TOKEN` unless `headers` has one.
        token: Option<Secret>,
    },
    SplunkHec {
        url: String,
        token: Secret,
    },
    Syslog {
        address: String,
        transport: deliver::Transport,
    },
}

/// A credential, written in the configuration or kept in a file of its
/// own (`token_file`, a mounted Kubernetes Secret) so it stays out of the
/// ConfigMap. A file is read again for each batch: rotation needs no
/// restart.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Secret {
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read the token file {}: {e}", p.display())),
        }
    }
}

/// Never printed: a configuration dump must not show the token.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret(inline)"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

/// What a feed carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OCSF 1.5.0: detection findings, and with `events = "all"` the
    /// activity of every event that crossed to userspace.
    Ocsf,
    /// The alert objects `run --json` writes (decisions only).
    Alerts,
}

/// A feed as the configuration defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    pub name: String,
    pub kind: Kind,
    pub format: Format,
    /// Also the activity of every event, not only decisions (OCSF only).
    pub all_events: bool,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// The CA bundle HTTPS and syslog TLS verify the receiver with
    /// (default: Mozilla's roots).
    pub roots: tls::Roots,
}

/// Counters of one feed, for `metrics`.
#[derive(Debug, Default)]
pub struct FeedStats {
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    pub dropped: AtomicU64,
}

struct Feed {
    cfg: FeedConfig,
    spool: Arc<Spool>,
    stats: Arc<FeedStats>,
    thread: Option<JoinHandle<()>>,
}

/// Every configured feed, shared by the pipeline and the enforcers.
pub struct Feeds {
    feeds: Vec<Feed>,
    src: ocsf::Source,
    stop: Arc<AtomicBool>,
}

impl Feeds {
    /// Opens each feed's spool (resuming what it holds) and starts its
    /// sender.
    pub fn start(configs: &[FeedConfig]) -> Result<Arc<Self>, spool::SpoolError> {
        let src = ocsf::Source::here();
        let stop = Arc::new(AtomicBool::new(false));
        let mut feeds = Vec::new();
        for cfg in configs {
            let spool = Arc::new(Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?);
            let stats = Arc::new(FeedStats::default());
            let receiver: Box<dyn Receiver> = match &cfg.kind {
                Kind::Webhook {
                    url,
                    headers,
                    token,
                } => Box::new(deliver::Webhook::new(
                    url,
                    headers.clone(),
                    token.clone(),
                    &cfg.roots,
                )),
                Kind::SplunkHec { url, token } => Box::new(deliver::SplunkHec::new(
                    url,
                    token.clone(),
                    &src.hostname,
                    &cfg.roots,
                )),
                Kind::Syslog { address, transport } => Box::new(deliver::Syslog::new(
                    address,
                    *transport,
                    &src.hostname,
                    cfg.roots.clone(),
                )),
            };
            let (sp, st, stp, name) =
                (spool.clone(), stats.clone(), stop.clone(), cfg.name.clone());
            let thread = std::thread::Builder::new()
                .name(format!("aw-feed-{name}"))
                .spawn(move || send_loop(&name, &sp, receiver, &st, &stp))
                .map_err(|e| spool::SpoolError::Io {
                    path: cfg.spool_dir.clone(),
                    source: e,
                })?;
            feeds.push(Feed {
                cfg: cfg.clone(),
                spool,
                stats,
                thread: Some(thread),
            });
        }
        Ok(Arc::new(Self { feeds, src, stop }))
    }

    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    /// A decision, in each feed's format.
    pub fn decision(&self, d: &Decision) {
        for f in &self.feeds {
            let record = match f.cfg.format {
                Format::Ocsf => ocsf::finding(&self.src, d).to_string(),
                Format::Alerts => {
                    match serde_json::to_string(&d.record(RecordKind::Alert, None, None)) {
                        Ok(r) => r,
                        Err(e) => {
                            warn!(error = %e, feed = %f.cfg.name, "cannot serialise a decision");
                            continue;
                        }
                    }
                }
            };
            push(f, &record);
        }
    }

    /// A record that is not a decision, to every feed: a signed audit
    /// checkpoint (a SOC keeps them to check the log against, `audit
    /// verify --key`), a `drift` notice.
    pub fn notice(&self, r: &Value) {
        for f in &self.feeds {
            let record = match f.cfg.format {
                Format::Ocsf => ocsf::notice(r).to_string(),
                Format::Alerts => r.to_string(),
            };
            push(f, &record);
        }
    }

    /// An event that crossed to userspace (feeds with `events = "all"`).
    pub fn event(&self, ev: &Event) {
        for f in self.feeds.iter().filter(|f| f.cfg.all_events) {
            if let Some(a) = ocsf::activity(&self.src, ev) {
                push(f, &a.to_string());
            }
        }
    }

    /// Records refused by full spools since the last call, by feed.
    pub fn take_dropped(&self) -> Vec<(String, u64)> {
        self.feeds
            .iter()
            .map(|f| (f.cfg.name.clone(), f.spool.take_dropped()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// (name, stats, spool backlog in bytes) of each feed.
    pub fn stats(&self) -> Vec<(String, Arc<FeedStats>, u64)> {
        self.feeds
            .iter()
            .map(|f| (f.cfg.name.clone(), f.stats.clone(), f.spool.backlog_bytes()))
            .collect()
    }

    /// Stops the senders; what they did not deliver stays spooled for the
    /// next daemon.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Drop for Feeds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for f in &mut self.feeds {
            if let Some(t) = f.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn push(f: &Feed, record: &str) {
    match f.spool.push(record) {
        Ok(()) => {
            f.stats.queued.fetch_add(1, Ordering::Relaxed);
        }
        Err(spool::SpoolError::Full { .. }) => {
            f.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            f.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(feed = %f.cfg.name, error = %e, "cannot spool a record");
        }
    }
}

/// Delivers the spool in order, batch by batch; on failure waits (1 s,
/// doubling to 30 s) and tries the same batch again.
fn send_loop(
    name: &str,
    spool: &Spool,
    mut receiver: Box<dyn Receiver>,
    stats: &FeedStats,
    stop: &AtomicBool,
) {
    let mut backoff = Duration::from_secs(1);
    let mut down = false;
    let sleep = |d: Duration| {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    while !stop.load(Ordering::Acquire) {
        let batch = match spool.peek(BATCH) {
            Ok(b) => b,
            Err(e) => {
                warn!(feed = name, error = %e, "cannot read the spool");
                sleep(backoff);
                continue;
            }
        };
        if batch.records.is_empty() {
            sleep(Duration::from_millis(100));
            continue;
        }
        match receiver.send(&batch.records) {
            Ok(()) => {
                if let Err(e) = spool.commit(&batch) {
                    warn!(feed = name, error = %e, "cannot record the delivery; the batch may be sent again");
                }
                stats
                    .delivered
                    .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
                if down {
                    info!(
                        feed = name,
                        "receiver is back; delivering what was spooled, in order"
                    );
                    down = false;
                }
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                if !down {
                    warn!(feed = name, error = %e, backlog_bytes = spool.backlog_bytes(), "receiver unreachable; records stay spooled until it is back");
                    down = true;
                }
                sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

impl DecisionSink for Arc<Feeds> {
    fn decision(&mut self, d: &Decision) {
        Feeds::decision(self, d);
    }
}

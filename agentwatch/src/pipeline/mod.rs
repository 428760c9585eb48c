//! The event pipeline: source (ring buffer) -> decode -> enrich -> sinks,
//! each stage on its own thread, joined by bounded channels. Losses are
//! counted where they happen and travel down the stream as `loss` events.
pub mod decode;
pub mod enrich;
pub mod source;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{sync_channel, Receiver, TryRecvError},
        Arc,
    },
    thread::JoinHandle,
};

use tracing::warn;

use crate::{
    event::{Context, Detail, Event},
    sensors::{SensorError, Sensors},
    sinks::Sink,
};
pub use decode::AgentNames;
use decode::{Decoder, Record};
use enrich::Enricher;
use source::SourceMsg;

/// Capacity of the channel between the source and the processing stage,
/// in batches (each at most 64 KiB or 256 records).
const CHANNEL_DEPTH: usize = 128;

/// Losses counted by userspace stages (the kernel's come from its map).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub events: u64,
    pub decode_errors: u64,
    pub sink_errors: u64,
}

/// A running pipeline; `finish` drains it and returns the counts.
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    source: Option<JoinHandle<()>>,
    process: Option<JoinHandle<Counts>>,
    live: Arc<LiveCounts>,
}

/// Counts readable while the pipeline runs (the daemon's metrics).
#[derive(Debug, Default)]
pub struct LiveCounts {
    /// Records read from the ring buffer.
    pub records: std::sync::atomic::AtomicU64,
    /// Events decoded and enriched, handed to the sink.
    pub events: std::sync::atomic::AtomicU64,
}

impl Pipeline {
    /// Starts the stages. `agents` maps the kernel's agent ids to names.
    pub fn start(
        sensors: &mut Sensors,
        agents: impl AgentNames + Send + 'static,
        mut sink: Box<dyn Sink>,
        mut enricher: Enricher,
    ) -> Result<Self, SensorError> {
        let ring = sensors.take_ring_buffer()?;
        let losses = sensors.take_loss_counters()?;
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(LiveCounts::default());
        let (tx, rx) = sync_channel::<SourceMsg>(CHANNEL_DEPTH);
        let s = stop.clone();
        let source = std::thread::Builder::new()
            .name("aw-source".into())
            .spawn(move || source::run(ring, losses, tx, s))
            .map_err(|e| SensorError::Object(format!("cannot start the source thread: {e}")))?;
        let process = std::thread::Builder::new()
            .name("aw-process".into())
            .spawn({
                let live = live.clone();
                move || process(rx, &agents, &mut enricher, sink.as_mut(), &live)
            })
            .map_err(|e| SensorError::Object(format!("cannot start the pipeline thread: {e}")))?;
        Ok(Self {
            stop,
            source: Some(source),
            process: Some(process),
            live,
        })
    }

    pub fn live(&self) -> Arc<LiveCounts> {
        self.live.clone()
    }

    /// Stops reading, drains everything already produced, and waits for
    /// the sinks to write it.
    pub fn finish(mut self) -> Counts {
        self.stop.store(true, Ordering::Release);
        if let Some(s) = self.source.take() {
            let _ = s.join();
        }
        self.process
            .take()
            .and_then(|p| p.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

pub(crate) fn loss_event(stage: &'static str, reason: &'static str, count: u64) -> Event {
    Event {
        ts_ns: crate::clock::monotonic_ns(),
        pid: 0,
        tid: 0,
        ppid: 0,
        uid: 0,
        gid: 0,
        comm: String::new(),
        agent: String::new(),
        cgroup_id: 0,
        context: Context::default(),
        kernel: None,
        detail: Detail::Loss {
            stage: stage.into(),
            reason: reason.into(),
            count,
        },
    }
}

/// Decode, enrich and sink: one thread, so per-process state needs no locks.
fn process(
    rx: Receiver<SourceMsg>,
    agents: &dyn AgentNames,
    enricher: &mut Enricher,
    sink: &mut dyn Sink,
    live: &LiveCounts,
) -> Counts {
    let mut decoder = Decoder::default();
    let mut counts = Counts::default();
    let mut emit = |ev: &mut Event, counts: &mut Counts, sink: &mut dyn Sink| {
        if !matches!(ev.detail, Detail::Loss { .. }) {
            enricher.enrich(ev);
        }
        live.events.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = sink.emit(ev) {
            counts.sink_errors += 1;
            warn!(error = %e, "sink write failed");
        }
    };
    let mut reported_decode_errors = 0;
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                let _ = sink.flush();
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match msg {
            SourceMsg::Records(batch) => {
                live.records
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for bytes in batch.iter() {
                    let decoded =
                        Record::from_bytes(bytes).and_then(|r| decoder.decode(&r, agents));
                    match decoded {
                        Ok(events) => {
                            for mut ev in events {
                                emit(&mut ev, &mut counts, sink);
                            }
                        }
                        Err(e) => {
                            counts.decode_errors += 1;
                            warn!(error = %e, "undecodable kernel record");
                        }
                    }
                }
            }
            SourceMsg::KernelLoss { reason, count } => {
                emit(&mut loss_event("kernel", reason, count), &mut counts, sink);
            }
        }
        if counts.decode_errors > reported_decode_errors {
            let n = counts.decode_errors - reported_decode_errors;
            reported_decode_errors = counts.decode_errors;
            emit(
                &mut loss_event("decode", "malformed_record", n),
                &mut counts,
                sink,
            );
        }
    }
    for mut ev in decoder.drain() {
        emit(&mut ev, &mut counts, sink);
    }
    let _ = sink.flush();
    // The totals were kept where the daemon's metrics read them live.
    counts.records = live.records.load(Ordering::Relaxed);
    counts.events = live.events.load(Ordering::Relaxed);
    counts
}

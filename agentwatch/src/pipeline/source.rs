//! Source stage: drains the kernel ring buffer and the kernel loss
//! counters into the pipeline's first channel.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
        Arc,
    },
    time::{Duration, Instant},
};

use agentwatch_common::loss;

use crate::sensors::{EventRing, LossCounters};

/// What the source stage sends downstream.
pub enum SourceMsg {
    /// Raw kernel records, in ring order.
    Records(Batch),
    /// Records the kernel could not deliver since the last report.
    KernelLoss { reason: &'static str, count: u64 },
}

/// The kernel wakes us when a batch has built up or a record carries a
/// violation (see the eBPF `submit`), so this timer bounds the latency of
/// a quiet stream of ordinary events only.
const POLL_MS: i32 = 10;

/// A batch is sent once it holds this many bytes or records, so a long
/// drain still streams downstream.
const BATCH_BYTES: usize = 64 * 1024;
const BATCH_RECORDS: usize = 256;

/// Records copied out of the ring into one buffer: one allocation and one
/// channel message per batch rather than per record.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
    }

    fn is_full(&self) -> bool {
        self.bytes.len() >= BATCH_BYTES || self.ends.len() >= BATCH_RECORDS
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records, in the order they were read.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter())
            .map(|(a, &b)| &self.bytes[a..b])
    }
}

const LOSS_REASONS: [(u32, &str); 3] = [
    (loss::RINGBUF_FULL, "ring_buffer_full"),
    (loss::WATCH_MAP_FULL, "watch_map_full"),
    (loss::READ_FAILED, "kernel_read_failed"),
];

/// Runs until `stop` is set, then drains what is left and reports losses a
/// last time. Sends block when downstream is slow: back-pressure moves the
/// loss, if any, to the ring buffer, where the kernel counts it.
pub fn run(
    mut ring: EventRing,
    losses: LossCounters,
    tx: SyncSender<SourceMsg>,
    stop: Arc<AtomicBool>,
) {
    let mut reported = [0u64; loss::COUNT as usize];
    let mut last_loss_check = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut batch = Batch::default();
        let mut open = true;
        let got = ring.drain(|record| {
            batch.push(record);
            if batch.is_full() {
                open = tx
                    .send(SourceMsg::Records(std::mem::take(&mut batch)))
                    .is_ok();
            }
            open
        });
        if !open || (!batch.is_empty() && tx.send(SourceMsg::Records(batch)).is_err()) {
            return;
        }
        if stopping || last_loss_check.elapsed() > Duration::from_millis(200) {
            report_losses(&losses, &mut reported, &tx);
            last_loss_check = Instant::now();
        }
        if stopping {
            return;
        }
        if got == 0 {
            ring.announce_sleep();
            let mut pfd = libc::pollfd {
                fd: ring.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a timeout keeps `stop` responsive.
            unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
        }
    }
}

fn report_losses(
    losses: &LossCounters,
    reported: &mut [u64; loss::COUNT as usize],
    tx: &SyncSender<SourceMsg>,
) {
    let now = losses.read();
    for (idx, reason) in LOSS_REASONS {
        let i = idx as usize;
        if now[i] > reported[i] {
            let _ = tx.send(SourceMsg::KernelLoss {
                reason,
                count: now[i] - reported[i],
            });
            reported[i] = now[i];
        }
    }
}

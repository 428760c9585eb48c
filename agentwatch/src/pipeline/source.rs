//! Source stage: drains the kernel ring buffer and the kernel loss
//! counters into the pipeline's first channel.
use std::{
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
        Arc,
    },
    time::{Duration, Instant},
};

use agentwatch_common::loss;
use aya::maps::{MapData, RingBuf};

use crate::sensors::LossCounters;

/// What the source stage sends downstream.
pub enum SourceMsg {
    /// One raw kernel record.
    Record(Vec<u8>),
    /// Records the kernel could not deliver since the last report.
    KernelLoss { reason: &'static str, count: u64 },
}

/// The kernel wakes us when a batch has built up or a record carries a
/// violation (see the eBPF `submit`), so this timer bounds the latency of
/// a quiet stream of ordinary events only.
const POLL_MS: i32 = 10;

const LOSS_REASONS: [(u32, &str); 3] = [
    (loss::RINGBUF_FULL, "ring_buffer_full"),
    (loss::WATCH_MAP_FULL, "watch_map_full"),
    (loss::READ_FAILED, "kernel_read_failed"),
];

/// Runs until `stop` is set, then drains what is left and reports losses a
/// last time. Sends block when downstream is slow: back-pressure moves the
/// loss, if any, to the ring buffer, where the kernel counts it.
pub fn run(
    mut ring: RingBuf<MapData>,
    losses: LossCounters,
    tx: SyncSender<SourceMsg>,
    stop: Arc<AtomicBool>,
) {
    let fd = ring.as_raw_fd();
    let mut reported = [0u64; loss::COUNT as usize];
    let mut last_loss_check = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut got = 0usize;
        while let Some(item) = ring.next() {
            got += 1;
            if tx.send(SourceMsg::Record(item.to_vec())).is_err() {
                return;
            }
        }
        if stopping || last_loss_check.elapsed() > Duration::from_millis(200) {
            report_losses(&losses, &mut reported, &tx);
            last_loss_check = Instant::now();
        }
        if stopping {
            return;
        }
        if got == 0 {
            let mut pfd = libc::pollfd {
                fd,
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

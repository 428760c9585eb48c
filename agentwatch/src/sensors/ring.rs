//! The kernel's side of the pipeline's source: the ring buffer, the flag
//! that says whether its reader sleeps, and the loss counters.
use agentwatch_common::names::map as kmap;
use agentwatch_common::{loss, WAKE_RECORD_LEN};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};

use super::{loader::map_err, SensorError, Sensors};

/// The ring buffer and its reader's sleep flag (`READER_ASLEEP`).
pub struct EventRing {
    ring: RingBuf<MapData>,
    /// Absent only in sensors pinned by an older build, whose programs
    /// wake the reader on every urgent record anyway.
    asleep: Option<Array<MapData, u32>>,
}

impl EventRing {
    /// Calls `f` with each record waiting in the ring until it returns
    /// false; returns how many were read. Wake-up nudges are dropped here:
    /// they carry nothing.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8]) -> bool) -> usize {
        let mut got = 0;
        while let Some(item) = self.ring.next() {
            got += 1;
            if item.len() != WAKE_RECORD_LEN && !f(&item) {
                break;
            }
        }
        got
    }

    /// Says the reader is about to sleep, so the next urgent record wakes
    /// it. Call it before the poll: a record committed after the flag is
    /// set wakes the poll; one committed before makes the poll return.
    pub fn announce_sleep(&mut self) {
        if let Some(a) = &mut self.asleep {
            let _ = a.set(0, 1, 0);
        }
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.ring)
    }
}

/// Kernel-side loss counters, summed over CPUs.
pub struct LossCounters {
    map: PerCpuArray<MapData, u64>,
}

impl LossCounters {
    pub fn read(&self) -> [u64; loss::COUNT as usize] {
        let mut out = [0u64; loss::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(values) = self.map.get(&(i as u32), 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }
}

impl Sensors {
    /// Takes the ring buffer (once) for the pipeline's source stage.
    pub fn take_ring_buffer(&mut self) -> Result<EventRing, SensorError> {
        let map = self
            .take_map(kmap::EVENTS)
            .ok_or(SensorError::MissingMap(kmap::EVENTS))?;
        let ring = RingBuf::try_from(map).map_err(map_err(kmap::EVENTS))?;
        let asleep = match self.take_map(kmap::READER_ASLEEP) {
            Some(m) => Some(Array::try_from(m).map_err(map_err(kmap::READER_ASLEEP))?),
            None => None,
        };
        Ok(EventRing { ring, asleep })
    }

    /// Takes the loss counters (once) for the pipeline's source stage.
    pub fn take_loss_counters(&mut self) -> Result<LossCounters, SensorError> {
        let map = self
            .take_map(kmap::LOSS)
            .ok_or(SensorError::MissingMap(kmap::LOSS))?;
        let map = PerCpuArray::try_from(map).map_err(map_err(kmap::LOSS))?;
        Ok(LossCounters { map })
    }
}

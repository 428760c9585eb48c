//! The WATCH_GATE bitmap from userspace (`agentwatch_common::watch_gate`).
//! The kernel's programs test a process's bit before they look it up in
//! WATCHED, so a process must have its bit before its entry goes in. The
//! kernel sets other processes' bits in the same words at any moment (a
//! watched process forking), so a bit is set with an atomic `or` on the
//! map's memory, mapped into this process: a map update writes the whole
//! word back and could clear a bit the kernel set in between. Userspace
//! never clears a bit: the kernel does when the process exits (a stale bit
//! costs one lookup; a bit cleared too early would hide a watched process).
use std::{
    num::NonZeroUsize,
    os::fd::AsFd,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use agentwatch_common::{names::map as kmap, watch_gate};
use aya::maps::MapData;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use super::loader::SensorError;

/// WATCH_GATE, mapped. `None` inside: sensors adopted from pins of an
/// agentwatch older than the gate, whose programs do not read it.
pub struct WatchGate(Option<Mapped>);

/// The whole map, `BYTES` long, mapped shared.
struct Mapped {
    words: NonNull<AtomicU64>,
}

// SAFETY: the mapping is shared memory reached only through atomics.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

const BYTES: usize = watch_gate::WORDS as usize * 8;

impl WatchGate {
    /// Maps the WATCH_GATE map `map` (the mapping outlives the map's fd).
    pub fn map(map: &MapData) -> Result<Self, SensorError> {
        let err = |reason: String| SensorError::Map {
            map: kmap::WATCH_GATE,
            reason,
        };
        let len = NonZeroUsize::new(BYTES).ok_or_else(|| err("empty".into()))?;
        // SAFETY: a fresh shared mapping of the whole map; nothing else in
        // this process aliases it as non-atomic memory.
        let p = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                map.fd().as_fd(),
                0,
            )
        }
        .map_err(|e| {
            err(format!(
                "cannot map it into memory: {e} (an object built without BPF_F_MMAPABLE?)"
            ))
        })?;
        Ok(Self(Some(Mapped { words: p.cast() })))
    }

    /// Pins of an older agentwatch have no gate; their programs read none.
    pub fn absent() -> Self {
        Self(None)
    }

    /// Sets `pid`'s bit: call before its WATCHED entry goes in.
    pub fn open(&self, pid: u32) {
        let Some(m) = &self.0 else {
            return;
        };
        let word = watch_gate::word(pid) as usize;
        debug_assert!(word * 8 < BYTES);
        // SAFETY: `word` is inside the mapping (`watch_gate::word` masks it).
        let w = unsafe { &*m.words.as_ptr().add(word) };
        w.fetch_or(watch_gate::bit(pid), Ordering::SeqCst);
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `WatchGate::map`, unmapped once.
        let _ = unsafe { munmap(self.words.cast(), BYTES) };
    }
}

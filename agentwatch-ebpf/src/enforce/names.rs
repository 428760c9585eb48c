//! A per-CPU cache of the automaton's payload for absolute path names
//! seen lately. An agent opens the same files again and again; the walk
//! costs about 5 ns a byte, the cache a few word compares.
//!
//! Sound by construction: an entry is used only for the same automaton
//! tables (`class_base` and `trans_base`: one agent's half), the same
//! policy epoch (userspace bumps `epoch::POLICY` after every policy write,
//! and the next write reuses the half) and the very same
//! bytes, compared word by word, never by hash, so no crafted name can
//! borrow another's verdict. Only absolute names are cached: a relative
//! name's payload depends on its base directory too.
use agentwatch_common::{
    policy::{epoch, name_words::mask},
    RawEvent, SLOTS, SLOT_LEN,
};

use crate::maps::{EPOCHS, NAME_VERDICTS};

/// Names up to `NAME_WORDS * 8` bytes are cached.
pub const NAME_WORDS: usize = agentwatch_common::policy::name_words::WORDS;
const NAME_MAX: u32 = (NAME_WORDS * 8) as u32;
/// Entries per CPU, direct-mapped by the name's length and last word.
pub const WAYS: u32 = 8;

/// One cached name and the payload the automaton gave it.
#[repr(C)]
pub struct NameVerdict {
    /// Odd while an entry is being written: a reader that finds it odd,
    /// or changed by the time it is done, misses.
    seq: u32,
    /// The automaton's tables (unique per agent and half).
    class_base: u32,
    trans_base: u32,
    /// 0: empty.
    len: u32,
    epoch: u64,
    payload: u64,
    words: [u64; NAME_WORDS],
}

/// Where a missed name's payload goes once the walk has it.
pub struct Miss {
    way: u32,
    epoch: u64,
}

/// The policy epoch, read before the policy itself (`resolve` reads the
/// policy's fields volatile after this): an entry stamped with it was
/// walked on tables at least that new.
#[inline(always)]
pub fn policy_epoch() -> Option<u64> {
    // SAFETY: a valid, aligned map value.
    EPOCHS
        .get_ptr(epoch::POLICY)
        .map(|p| unsafe { core::ptr::read_volatile(p) })
}

/// The word `k` of the string in `slot`, as the slot holds it (bytes past
/// the name's end are older data: mask them).
#[inline(always)]
fn word(ev: &RawEvent, slot: usize, k: u32) -> u64 {
    let base = ((slot & (SLOTS - 1)) * SLOT_LEN) as u32;
    // SAFETY: the shim masks the index inside `data` (DATA_LEN > 8192).
    unsafe { crate::shim::aw_data_word(ev.data.as_ptr(), base + k * 8) }
}

/// The payload cached for the absolute name in `slot` (`len` bytes) on
/// the tables at `class_base`/`trans_base` under policy `epoch`; else
/// where to remember it after the walk (None: not cacheable).
#[inline(always)]
pub fn lookup(
    (class_base, trans_base, epoch): (u32, u32, u64),
    ev: &RawEvent,
    slot: usize,
    len: u32,
) -> Result<u64, Option<Miss>> {
    if len == 0 || len > NAME_MAX {
        return Err(None);
    }
    let last = word(ev, slot, (len - 1) / 8) & mask((len - 1) / 8, len);
    let way = ((len as u64 ^ last ^ (last >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61) as u32
        & (WAYS - 1);
    let Some(e) = NAME_VERDICTS.get_ptr(way) else {
        return Err(None);
    };
    // SAFETY: this CPU's entry. Every access is volatile so that none
    // moves outside the two reads of `seq`, which would catch a writer
    // that preempted this reader. Tracepoint programs do not nest on a
    // CPU today; the cache does not rely on it.
    let rd = |f: *const u32| unsafe { core::ptr::read_volatile(f) } as u64;
    let rd64 = |f: *const u64| unsafe { core::ptr::read_volatile(f) };
    let seq = rd(unsafe { &raw const (*e).seq });
    let mut diff = (seq & 1)
        | (rd(unsafe { &raw const (*e).len }) ^ len as u64)
        | (rd(unsafe { &raw const (*e).class_base }) ^ class_base as u64)
        | (rd(unsafe { &raw const (*e).trans_base }) ^ trans_base as u64)
        | (rd64(unsafe { &raw const (*e).epoch }) ^ epoch);
    let payload = rd64(unsafe { &raw const (*e).payload });
    // Only the name's own words: past them both sides are masked to zero
    // (the lengths were compared above).
    let words = unsafe { crate::shim::aw_name_words(len, NAME_WORDS as u32) };
    for k in 0..NAME_WORDS as u32 {
        if k >= words {
            break;
        }
        let cached = rd64(unsafe { &raw const (*e).words[k as usize] });
        diff |= (word(ev, slot, k) & mask(k, len)) ^ cached;
    }
    diff |= rd(unsafe { &raw const (*e).seq }) ^ seq;
    if diff != 0 {
        return Err(Some(Miss { way, epoch }));
    }
    Ok(payload)
}

/// Remembers the walk's `payload` for the name `lookup` missed.
#[inline(always)]
pub fn remember(
    m: &Miss,
    (class_base, trans_base): (u32, u32),
    ev: &RawEvent,
    slot: usize,
    len: u32,
    payload: u64,
) {
    let Some(e) = NAME_VERDICTS.get_ptr_mut(m.way) else {
        return;
    };
    // SAFETY: this CPU's entry; odd `seq` while it is written, every
    // store volatile so none moves outside the two stores of `seq`.
    let wr = |f: *mut u32, v: u32| unsafe { core::ptr::write_volatile(f, v) };
    let wr64 = |f: *mut u64, v: u64| unsafe { core::ptr::write_volatile(f, v) };
    let seq = unsafe { core::ptr::read_volatile(&raw const (*e).seq) } | 1;
    wr(unsafe { &raw mut (*e).seq }, seq);
    wr(unsafe { &raw mut (*e).len }, len);
    wr(unsafe { &raw mut (*e).class_base }, class_base);
    wr(unsafe { &raw mut (*e).trans_base }, trans_base);
    wr64(unsafe { &raw mut (*e).epoch }, m.epoch);
    wr64(unsafe { &raw mut (*e).payload }, payload);
    for k in 0..NAME_WORDS as u32 {
        let w = word(ev, slot, k) & mask(k, len);
        wr64(unsafe { &raw mut (*e).words[k as usize] }, w);
    }
    wr(unsafe { &raw mut (*e).seq }, seq.wrapping_add(1));
}

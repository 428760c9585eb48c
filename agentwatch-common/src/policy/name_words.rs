//! The kernel's cache of verdicts on recent absolute names compares a
//! name as little-endian 8-byte words; these say which bytes of a word
//! belong to the name.

/// Words a cached name has at most (names up to 128 bytes).
pub const WORDS: usize = 16;

/// The bytes of word `k` that belong to a name of `len` bytes, as a
/// mask. Arithmetic only: BPF has no conditional move, so a branch
/// here would be one more path the verifier explores at every call.
#[inline(always)]
pub const fn mask(k: u32, len: u32) -> u64 {
    let left = len as i64 - (k as i64) * 8;
    // All ones when left < 8, else 0; and when left > 0, else 0.
    let short = ((left - 8) >> 63) as u64;
    let some = ((-left) >> 63) as u64;
    let partial = (1u64 << (((left as u64) & 7) * 8)) - 1;
    !short | (short & some & partial)
}

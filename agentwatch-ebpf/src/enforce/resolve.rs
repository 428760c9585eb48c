//! The kernel's path resolver: the base directory (from the dentry walk,
//! leaf-first components fed root first) and then the path, run through
//! the agent's automaton byte by byte inside `bpf_loop`, with `.` and
//! empty components skipped and `..` popping a state stack, as
//! `paths::resolve` normalises in userspace.
use agentwatch_common::{
    policy::{AgentPolicy, WALK_DEPTH},
    RawEvent, SLOTS, SLOT_LEN, SLOT_TRUNCATED, SLOT_USED,
};
use aya_ebpf::helpers::generated::bpf_loop;

use crate::maps::*;

/// Resolver state for one path; lives in the WALK per-CPU map.
#[repr(C)]
pub struct Walk {
    trans_base: u32,
    accept_base: u32,
    class_base: u32,
    classes: u32,
    state: u32,
    depth: u32,
    phase: u32,
    i: u32,
    s: u32,
    e: u32,
    path_slot: u32,
    base_slot: u32,
    path_len: u32,
    sep: u32,
    /// The second automaton's state (0: none), stepped beside `state`.
    state2: u32,
    stack: [u32; WALK_DEPTH],
    stack2: [u32; WALK_DEPTH],
}

/// Bytes of a component one callback feeds at most (bpf_loop calls its
/// callback indirectly; a call per byte was most of a short path's cost).
const FEED_BYTES: u32 = 8;

const BASE_FIND: u32 = 0;
const BASE_FEED: u32 = 1;
const PATH_START: u32 = 2;
const PATH_FEED: u32 = 3;
const DONE: u32 = 4;
const FAILED: u32 = 5;

/// Pointers the loop callback needs; on the caller's stack so the verifier
/// keeps their types.
#[repr(C)]
struct WalkCtx {
    ev: *const RawEvent,
    w: *mut Walk,
}

#[inline(always)]
fn byte_at(ev: &RawEvent, slot: u32, i: u32) -> u8 {
    let idx = (slot as usize & (SLOTS - 1)) * SLOT_LEN + (i as usize & (SLOT_LEN - 1));
    // SAFETY: the shim masks the index inside `data` (DATA_LEN > 8192).
    unsafe { crate::shim::aw_data_byte(ev.data.as_ptr(), idx as u32) }
}

#[inline(always)]
fn step(w: &mut Walk, b: u8) {
    let c = DFA_CLASS.get(w.class_base + b as u32).copied().unwrap_or(0) as u32;
    let idx = w.trans_base + w.state * w.classes + c;
    w.state = DFA_TRANS.get(idx).copied().unwrap_or(0);
    if w.state2 != 0 {
        let idx = w.trans_base + w.state2 * w.classes + c;
        w.state2 = DFA_TRANS.get(idx).copied().unwrap_or(0);
    }
}

#[inline(always)]
fn push(w: &mut Walk) {
    if w.depth as usize >= WALK_DEPTH {
        w.phase = FAILED;
        return;
    }
    let d = w.depth as usize & (WALK_DEPTH - 1);
    w.stack[d] = w.state;
    w.stack2[d] = w.state2;
    w.depth += 1;
}

/// One step of the resolver: one byte scanned or fed, or one component
/// boundary. The base directory (leaf-first components) is fed root
/// first; then the path, with `.` and empty components skipped and `..`
/// returning to the state before the last component.
extern "C" fn walk_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer we gave it.
    let c = unsafe { &*(ctx as *const WalkCtx) };
    let (ev, w) = unsafe { (&*c.ev, &mut *c.w) };
    match w.phase {
        BASE_FIND => {
            // i scans back from the NUL ending the root-most component.
            if w.i == 0 || byte_at(ev, w.base_slot, w.i - 1) == 0 {
                w.s = w.i;
                w.i = w.s;
                w.sep = 1;
                w.phase = BASE_FEED;
            } else {
                w.i -= 1;
            }
        }
        BASE_FEED => {
            if w.sep != 0 {
                step(w, b'/');
                w.sep = 0;
            } else if w.i + 1 < w.e {
                // Several bytes a call: the call is the walk's main cost.
                for _ in 0..FEED_BYTES {
                    if w.i + 1 >= w.e {
                        break;
                    }
                    step(w, byte_at(ev, w.base_slot, w.i));
                    w.i += 1;
                }
            } else {
                push(w);
                if w.phase == FAILED {
                    return 1;
                }
                w.e = w.s;
                if w.e == 0 {
                    w.i = 0;
                    w.phase = PATH_START;
                } else {
                    w.i = w.e - 1;
                    w.phase = BASE_FIND;
                }
            }
        }
        PATH_START => {
            let n = w.path_len;
            if w.i >= n {
                w.phase = DONE;
                return 1;
            }
            let b = byte_at(ev, w.path_slot, w.i);
            let at = |k: u32| {
                if k < n {
                    byte_at(ev, w.path_slot, k)
                } else {
                    b'/'
                }
            };
            if b == b'/' {
                w.i += 1;
            } else if b == b'.' && at(w.i + 1) == b'/' {
                w.i += 1;
            } else if b == b'.' && at(w.i + 1) == b'.' && at(w.i + 2) == b'/' {
                if w.depth > 1 {
                    w.depth -= 1;
                }
                let d = (w.depth as usize - 1) & (WALK_DEPTH - 1);
                w.state = w.stack[d];
                w.state2 = w.stack2[d];
                w.i += 2;
            } else {
                step(w, b'/');
                w.phase = PATH_FEED;
            }
        }
        PATH_FEED => {
            for _ in 0..FEED_BYTES {
                if w.i >= w.path_len || byte_at(ev, w.path_slot, w.i) == b'/' {
                    push(w);
                    if w.phase == FAILED {
                        return 1;
                    }
                    w.phase = PATH_START;
                    break;
                }
                step(w, byte_at(ev, w.path_slot, w.i));
                w.i += 1;
            }
        }
        _ => return 1,
    }
    0
}

/// The automaton payload for the path in `path_slot` (resolved against
/// `base_slot` when relative). None when the kernel cannot tell: a path
/// cut short, a relative path without its base, a resolver that ran out.
#[inline(always)]
pub fn resolve(
    pol: &AgentPolicy,
    ev: &RawEvent,
    path_slot: usize,
    base_slot: usize,
    needs_path: bool,
) -> Option<u64> {
    resolve_with(pol, ev, path_slot, base_slot, needs_path, false)
}

/// `resolve`, through the cache of recent names' payloads
/// (`enforce::names`). For the open's entry only: each call site of the
/// cache costs the verifier more states, and 6.1's verifier has no room
/// for more than one in `sys_enter`.
#[inline(always)]
pub fn resolve_cached(
    pol: &AgentPolicy,
    ev: &RawEvent,
    path_slot: usize,
    base_slot: usize,
) -> Option<u64> {
    resolve_with(pol, ev, path_slot, base_slot, true, true)
}

#[inline(always)]
fn resolve_with(
    pol: &AgentPolicy,
    ev: &RawEvent,
    path_slot: usize,
    base_slot: usize,
    needs_path: bool,
    cached: bool,
) -> Option<u64> {
    let p = ev.slots[path_slot & (SLOTS - 1)];
    let b = ev.slots[base_slot & (SLOTS - 1)];
    if p.flags & SLOT_TRUNCATED != 0 {
        return None;
    }
    let path_used = p.flags & SLOT_USED != 0;
    if needs_path && !path_used {
        return None;
    }
    let absolute = path_used && p.len > 0 && byte_at(ev, path_slot as u32, 0) == b'/';
    if !absolute && (b.flags & SLOT_USED == 0 || b.flags & SLOT_TRUNCATED != 0) {
        return None;
    }
    let w = WALK.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, ours until the program returns.
    let wr = unsafe { &mut *w };
    // The epoch first, then the policy (volatile, so no load moves above
    // the epoch's): a cached payload is never newer-stamped than its walk.
    let epoch = if cached {
        super::names::policy_epoch()?
    } else {
        0
    };
    let v = |f: &u32| unsafe { core::ptr::read_volatile(f) };
    wr.trans_base = v(&pol.trans_base);
    wr.accept_base = v(&pol.accept_base);
    wr.class_base = v(&pol.class_base);
    wr.classes = v(&pol.classes);
    wr.state = v(&pol.start);
    wr.stack[0] = wr.state;
    wr.state2 = v(&pol.start2);
    wr.stack2[0] = wr.state2;
    let tables = (wr.class_base, wr.trans_base);
    let cache = if cached && absolute {
        super::names::lookup((tables.0, tables.1, epoch), ev, path_slot, p.len as u32)
    } else {
        Err(None)
    };
    if let Ok(payload) = cache {
        return Some(payload);
    }
    wr.depth = 1;
    wr.path_slot = path_slot as u32;
    wr.base_slot = base_slot as u32;
    wr.path_len = if path_used { p.len as u32 } else { 0 };
    wr.sep = 0;
    if absolute || b.len == 0 {
        wr.phase = PATH_START;
        wr.i = 0;
    } else {
        wr.phase = BASE_FIND;
        wr.e = b.len as u32;
        wr.i = wr.e - 1;
    }
    let mut ctx = WalkCtx {
        ev: ev as *const RawEvent,
        w,
    };
    unsafe {
        bpf_loop(
            4 * SLOT_LEN as u32 + 64,
            walk_step as *mut core::ffi::c_void,
            (&mut ctx as *mut WalkCtx).cast(),
            0,
        );
    }
    let wr = unsafe { &mut *w };
    if wr.phase != DONE {
        return None;
    }
    if wr.depth == 1 {
        step(wr, b'/');
    }
    let mut payload = DFA_ACCEPT.get(wr.accept_base + wr.state).copied()?;
    if wr.state2 != 0 {
        payload |= DFA_ACCEPT
            .get(wr.accept_base + wr.state2)
            .copied()
            .unwrap_or(0);
    }
    if let Err(Some(miss)) = &cache {
        super::names::remember(miss, tables, ev, path_slot, p.len as u32, payload);
    }
    Some(payload)
}

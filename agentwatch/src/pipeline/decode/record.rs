//! A kernel record as copied out of the ring buffer, and its fields.
use agentwatch_common::{
    EventHeader, RawEvent, DATA_LEN, RAW_EVENT_FIXED_LEN, SLOT_LEN, SLOT_REVERSED_COMPONENTS,
    SLOT_USED,
};

use super::DecodeError;
use crate::{
    event::{Endpoint, Family},
    net, paths,
};

/// A kernel record copied out of the ring buffer.
pub struct Record {
    pub(super) raw: Box<RawEvent>,
    data_len: usize,
}

impl Record {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < RAW_EVENT_FIXED_LEN {
            return Err(DecodeError::Short(bytes.len()));
        }
        // SAFETY: RawEvent is plain old data (repr(C), integers and byte
        // arrays), so any bit pattern is valid; we copy at most its size.
        let mut raw: Box<RawEvent> = Box::new(unsafe { std::mem::zeroed() });
        let n = bytes.len().min(std::mem::size_of::<RawEvent>());
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut *raw as *mut RawEvent).cast::<u8>(),
                n,
            );
        }
        Ok(Self {
            raw,
            data_len: n - RAW_EVENT_FIXED_LEN,
        })
    }

    pub fn header(&self) -> &EventHeader {
        &self.raw.hdr
    }

    /// The record's syscall arguments (or per-kind numbers).
    pub(super) fn args(&self) -> [u64; 6] {
        self.raw.args
    }

    /// Bytes of string slot `i`, and whether it was filled / truncated.
    pub(super) fn slot(&self, i: usize) -> Option<(&[u8], u16)> {
        let s = self.raw.slots[i];
        if s.flags & SLOT_USED == 0 {
            return None;
        }
        let start = i * SLOT_LEN;
        let end = (start + s.len as usize).min(self.data_len).min(DATA_LEN);
        Some((self.raw.data.get(start..end.max(start))?, s.flags))
    }

    /// The filled slots' bytes, one after the other (a TLS record's text).
    pub(super) fn slot_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..agentwatch_common::SLOTS {
            match self.slot(i) {
                Some((b, _)) => out.extend_from_slice(b),
                None => break,
            }
        }
        out
    }

    pub(super) fn text(&self, i: usize) -> Option<String> {
        let (b, flags) = self.slot(i)?;
        if flags & SLOT_REVERSED_COMPONENTS != 0 {
            return Some(paths::from_reversed_components(b));
        }
        Some(String::from_utf8_lossy(b).into_owned())
    }

    /// Path argument `path_slot`, made absolute against `base_slot`.
    pub(super) fn path(&self, path_slot: usize, base_slot: usize) -> String {
        let base = self.text(base_slot);
        match self.text(path_slot) {
            Some(p) => paths::resolve(base.as_deref(), &p),
            None => base.unwrap_or_default(),
        }
    }

    pub(super) fn endpoint(&self) -> Endpoint {
        let a = &self.raw.addr;
        let len = (a.len as usize).min(a.bytes.len());
        net::parse_sockaddr(&a.bytes[..len]).unwrap_or(Endpoint {
            family: Family::Other,
            addr: None,
            port: None,
            path: None,
        })
    }
}

//! The tamper-evident audit log: append-only JSON lines, each carrying the
//! sha256 of the line before it, so a record altered, removed or moved
//! breaks the chain at that point. The chain continues across rotation: a
//! rotated file's successor starts with the hash of its last record.
//!
//! Line format (one per record, `\n`-terminated):
//! `{"seq":N,"prev":"<64 hex>","record":{...}}`; the hash of a record is
//! the sha256 of its line without the newline. The first record of a chain
//! has `prev` = 64 zeros.
pub mod checkpoint;
#[cfg(test)]
mod tests;
pub mod verify;
mod writer;

pub use verify::verify_files;
pub use writer::{AuditError, AuditLog, Fsync};

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// sha256 of `line` as lowercase hex.
pub fn line_hash(line: &[u8]) -> String {
    crate::hex::sha256(line)
}

/// The chain fields of one line, when it parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub prev: String,
}

impl Link {
    pub fn parse(line: &[u8]) -> Option<Link> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        Self::of(&v)
    }

    /// The chain fields of a line already parsed.
    pub fn of(v: &serde_json::Value) -> Option<Link> {
        Some(Link {
            seq: v["seq"].as_u64()?,
            prev: v["prev"].as_str()?.to_string(),
        })
    }
}

//! Appending to the audit log: one `write` per record (a record is never
//! interleaved with another), fsync per record or per interval, size-based
//! rotation that carries the chain into the next file, and recovery of a
//! record cut short by a crash.
use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use thiserror::Error;
use tracing::warn;

use super::{line_hash, Link, GENESIS};

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// fdatasync after every record: nothing acknowledged is ever lost.
    EveryRecord,
    /// fdatasync when this long has passed since the last one (checked on
    /// each append and by [`AuditLog::sync_if_due`]).
    Interval(Duration),
}

impl std::str::FromStr for Fsync {
    type Err = String;
    /// `record`, or an interval as every other duration is written
    /// (`crate::units::parse_duration`: 200ms, 1s, 5m).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "record" {
            return Ok(Fsync::EveryRecord);
        }
        crate::units::parse_duration(s)
            .map(Fsync::Interval)
            .map_err(|e| format!("fsync policy: use `record` or an interval: {e}"))
    }
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}; records are held in memory and written, in order, once it is writable again")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit log {path}: record {line} is not an audit record; refusing to append to a log that does not verify (run `agentwatch audit verify {path}`)")]
    Foreign { path: PathBuf, line: usize },
}

pub struct AuditLog {
    path: PathBuf,
    file: File,
    size: u64,
    next_seq: u64,
    prev: String,
    fsync: Fsync,
    last_sync: Instant,
    dirty: bool,
    rotate_bytes: Option<u64>,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` and continues its chain. A
    /// last record cut short by a crash is cut off (it was never complete,
    /// so never acknowledged); anything else that is not a record is an
    /// error. A fresh file continues the chain of the newest rotated file
    /// beside it, if any.
    pub fn open(path: &Path, fsync: Fsync, rotate_bytes: Option<u64>) -> Result<Self, AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err)?;
        let tail = last_link(&mut file, path)?;
        let (next_seq, prev) = match tail {
            Some((link, hash, complete_len)) => {
                let len = file.metadata().map_err(io_err)?.len();
                if complete_len < len {
                    warn!(path = %path.display(), bytes = len - complete_len, "audit log ended in a record cut short; it is dropped");
                    file.set_len(complete_len).map_err(io_err)?;
                }
                (link.seq + 1, hash)
            }
            None => {
                file.set_len(0).map_err(io_err)?;
                match newest_rotated(path) {
                    Some(p) => {
                        let mut f = File::open(&p).map_err(io_err)?;
                        match last_link(&mut f, &p)? {
                            Some((link, hash, _)) => (link.seq + 1, hash),
                            None => (0, GENESIS.to_string()),
                        }
                    }
                    None => (0, GENESIS.to_string()),
                }
            }
        };
        let size = file.metadata().map_err(io_err)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            next_seq,
            prev,
            fsync,
            last_sync: Instant::now(),
            dirty: false,
            rotate_bytes,
        })
    }

    /// The sha256 of the last line written (the next line's `prev`).
    pub fn last_hash(&self) -> &str {
        &self.prev
    }

    /// Appends `record` as the next link of the chain; returns its seq.
    pub fn append(&mut self, record: &serde_json::Value) -> Result<u64, AuditError> {
        self.append_json(&record.to_string())
    }

    /// Appends a record already serialised as one JSON object. The line
    /// is `{"prev":...,"record":...,"seq":N}`, keys in the order a
    /// `serde_json::Value` writes them, built without one.
    pub fn append_json(&mut self, record: &str) -> Result<u64, AuditError> {
        let seq = self.next_seq;
        let mut bytes = Vec::with_capacity(record.len() + 112);
        bytes.extend_from_slice(b"{\"prev\":\"");
        bytes.extend_from_slice(self.prev.as_bytes());
        bytes.extend_from_slice(b"\",\"record\":");
        bytes.extend_from_slice(record.as_bytes());
        bytes.extend_from_slice(b",\"seq\":");
        bytes.extend_from_slice(seq.to_string().as_bytes());
        bytes.push(b'}');
        let hash = line_hash(&bytes);
        bytes.push(b'\n');
        if let Err(e) = self.file.write_all(&bytes) {
            // A full disk may take part of the line: cut it off, so the
            // record can be appended whole once there is room.
            let _ = self.file.set_len(self.size);
            return Err(self.err(e));
        }
        self.size += bytes.len() as u64;
        self.prev = hash;
        self.next_seq += 1;
        self.dirty = true;
        match self.fsync {
            Fsync::EveryRecord => self.sync()?,
            Fsync::Interval(_) => self.sync_if_due()?,
        }
        if self.rotate_bytes.is_some_and(|max| self.size >= max) {
            self.rotate()?;
        }
        Ok(seq)
    }

    /// fdatasync when the interval has passed and something is unsynced.
    pub fn sync_if_due(&mut self) -> Result<(), AuditError> {
        if let Fsync::Interval(d) = self.fsync {
            if self.dirty && self.last_sync.elapsed() >= d {
                self.sync()?;
            }
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.file.sync_data().map_err(|e| self.err(e))?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Moves the current file to `<path>.<first seq of the next file>` and
    /// starts a new one; the chain goes on through `prev`.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        let rotated = rotated_name(&self.path, self.next_seq);
        std::fs::rename(&self.path, &rotated).map_err(|e| self.err(e))?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        self.size = 0;
        Ok(())
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn err(&self, source: io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if self.dirty {
            let _ = self.file.sync_data();
        }
    }
}

/// `<path>.<seq>`, zero-padded so a shell glob lists them in order.
fn rotated_name(path: &Path, next_seq: u64) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{next_seq:012}"));
    PathBuf::from(s)
}

/// The rotated file with the highest sequence suffix beside `path`.
fn newest_rotated(path: &Path) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name()?.to_string_lossy().into_owned();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let suffix = n.strip_prefix(&name)?.strip_prefix('.')?;
            suffix.parse::<u64>().ok().map(|k| (k, e.path()))
        })
        .max_by_key(|(k, _)| *k)
        .map(|(_, p)| p)
}

/// The last complete record of `file`: its link, its hash and the length
/// of the file up to the end of its line. None for an empty file.
fn last_link(file: &mut File, path: &Path) -> Result<Option<(Link, String, u64)>, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut r = BufReader::new(&mut *file);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut last = None;
    let mut lineno = 0;
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let complete = buf.last() == Some(&b'\n');
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match Link::parse(line) {
            Some(link) if complete => {
                offset += n as u64;
                last = Some((link, line_hash(line), offset));
            }
            // The cut-short last line of a crash.
            _ if !complete => break,
            _ => {
                return Err(AuditError::Foreign {
                    path: path.to_path_buf(),
                    line: lineno,
                })
            }
        }
    }
    Ok(last)
}

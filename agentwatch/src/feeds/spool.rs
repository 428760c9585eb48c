//! A feed's records on disk until its receiver has them: one append-only
//! file of JSON lines and the offset delivered so far. `push` appends (the
//! pipeline never waits for a receiver); the feed's sender reads batches
//! from the offset in order and `commit`s them once delivered. A receiver
//! down for minutes costs disk, not records; delivery resumes where it
//! stopped. Delivery is at least once: a crash between a delivery and its
//! commit sends that batch again.
use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool {path} is full ({max} bytes); records are dropped and counted until the receiver catches up")]
    Full { path: PathBuf, max: u64 },
}

struct Inner {
    file: File,
    /// Bytes in the file.
    len: u64,
    /// Bytes delivered (the next batch starts here).
    offset: u64,
    /// Records refused because the spool was full, not yet reported.
    dropped: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

/// A batch read from the spool: its records and where it ends.
pub struct Batch {
    pub records: Vec<String>,
    end: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, resuming from its offset.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join("records.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut len = file.metadata().map_err(io)?.len();
        let offset = std::fs::read_to_string(dir.join("offset"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .min(len);
        // A record cut short by a crash is not a record: cut it off.
        let tail = last_newline(&file, len).map_err(io)?;
        if tail < len {
            file.set_len(tail).map_err(io)?;
            len = tail;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            inner: Mutex::new(Inner {
                file,
                len,
                offset: offset.min(len),
                dropped: 0,
            }),
        })
    }

    fn io(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    /// Appends one record (a line without its newline).
    pub fn push(&self, record: &str) -> Result<(), SpoolError> {
        let mut g = self.inner.lock().map_err(|_| self.io(poisoned()))?;
        let n = record.len() as u64 + 1;
        if g.len - g.offset + n > self.max_bytes {
            g.dropped += 1;
            return Err(SpoolError::Full {
                path: self.dir.clone(),
                max: self.max_bytes,
            });
        }
        let mut line = Vec::with_capacity(record.len() + 1);
        line.extend_from_slice(record.as_bytes());
        line.push(b'\n');
        // One write: a crash leaves a whole record or a cut one (dropped
        // on reopen), never two run together.
        g.file.write_all(&line).map_err(|e| self.io(e))?;
        g.len += n;
        Ok(())
    }

    /// Up to `max` records from the delivered offset, oldest first.
    pub fn peek(&self, max: usize) -> Result<Batch, SpoolError> {
        let g = self.inner.lock().map_err(|_| self.io(poisoned()))?;
        let mut f = g.file.try_clone().map_err(|e| self.io(e))?;
        f.seek(SeekFrom::Start(g.offset)).map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(f.take(g.len - g.offset));
        let mut records = Vec::new();
        let mut end = g.offset;
        let mut line = String::new();
        while records.len() < max {
            line.clear();
            let n = reader.read_line(&mut line).map_err(|e| self.io(e))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            end += n as u64;
            records.push(line.trim_end_matches('\n').to_string());
        }
        Ok(Batch { records, end })
    }

    /// The batch was delivered: move the offset past it. An emptied spool
    /// starts its file over.
    pub fn commit(&self, batch: &Batch) -> Result<(), SpoolError> {
        let mut g = self.inner.lock().map_err(|_| self.io(poisoned()))?;
        g.offset = batch.end.min(g.len);
        if g.offset == g.len {
            g.file.set_len(0).map_err(|e| self.io(e))?;
            g.len = 0;
            g.offset = 0;
        }
        let tmp = self.dir.join("offset.tmp");
        std::fs::write(&tmp, g.offset.to_string()).map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, self.dir.join("offset")).map_err(|e| self.io(e))
    }

    /// Records waiting, in bytes.
    pub fn backlog_bytes(&self) -> u64 {
        self.inner.lock().map(|g| g.len - g.offset).unwrap_or(0)
    }

    /// Records refused because the spool was full since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.inner
            .lock()
            .map(|mut g| std::mem::take(&mut g.dropped))
            .unwrap_or(0)
    }
}

fn poisoned() -> std::io::Error {
    std::io::Error::other("spool lock poisoned")
}

/// Length of `file` up to and including its last newline.
fn last_newline(file: &File, len: u64) -> std::io::Result<u64> {
    let mut f = file.try_clone()?;
    let mut pos = len;
    let mut buf = [0u8; 4096];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let n = (pos - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("aw-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }

    #[test]
    fn records_come_out_in_order_and_survive_a_reopen() {
        let d = dir("order");
        let s = Spool::open(&d.0, 1 << 20).unwrap();
        for i in 0..5 {
            s.push(&format!("{{\"n\":{i}}}")).unwrap();
        }
        let b = s.peek(2).unwrap();
        assert_eq!(b.records, vec!["{\"n\":0}", "{\"n\":1}"]);
        // Not committed: the same batch again.
        assert_eq!(s.peek(2).unwrap().records, b.records);
        s.commit(&b).unwrap();
        drop(s);
        // A restarted daemon resumes after the delivered ones.
        let s = Spool::open(&d.0, 1 << 20).unwrap();
        let b = s.peek(10).unwrap();
        assert_eq!(b.records.len(), 3);
        assert_eq!(b.records[0], "{\"n\":2}");
        s.commit(&b).unwrap();
        assert_eq!(s.backlog_bytes(), 0);
        assert!(s.peek(10).unwrap().records.is_empty());
    }

    #[test]
    fn a_cut_record_is_dropped_and_a_full_spool_counts_what_it_refuses() {
        let d = dir("cut");
        let s = Spool::open(&d.0, 20).unwrap();
        s.push("{\"a\":1}").unwrap();
        drop(s);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.0.join("records.jsonl"))
            .unwrap();
        f.write_all(b"{\"cut").unwrap();
        let s = Spool::open(&d.0, 20).unwrap();
        assert_eq!(s.peek(10).unwrap().records, vec!["{\"a\":1}"]);
        s.push("{\"b\":2}").unwrap();
        assert!(matches!(s.push("{\"c\":3}"), Err(SpoolError::Full { .. })));
        assert_eq!(s.take_dropped(), 1);
        assert_eq!(s.take_dropped(), 0);
        let b = s.peek(10).unwrap();
        assert_eq!(b.records, vec!["{\"a\":1}", "{\"b\":2}"]);
    }
}

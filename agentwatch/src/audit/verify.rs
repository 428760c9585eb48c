//! `agentwatch audit verify FILE...`: walks the chain through every file
//! (ordered by their first sequence number, so a shell glob's order does
//! not matter) and names the first record that is altered, out of order,
//! or missing. A last record cut short by a crash is reported, not an error:
//! the log verifies up to its last complete record.
//!
//! Checkpoints (`super::checkpoint`) must cover the record before them.
//! Given the public key (`--key`), each one's signature is checked, and
//! the log must hold at least one and end with the final checkpoint of a
//! writer that closed it, unless a writer still has it open.
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    checkpoint::{Covered, Verifier},
    line_hash, Link, GENESIS,
};

/// The first thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A line that is not a record (and not a crash's cut-short last line).
    Malformed { file: PathBuf, line: usize },
    /// The record's `prev` is not the hash of the record before it: one of
    /// the two was altered.
    Broken {
        file: PathBuf,
        line: usize,
        seq: u64,
    },
    /// A record whose seq goes back (moved or duplicated).
    Reordered {
        file: PathBuf,
        line: usize,
        seq: u64,
        expected: u64,
    },
    /// Records `expected..seq` are absent.
    Missing {
        file: PathBuf,
        line: usize,
        seq: u64,
        expected: u64,
    },
    /// No record at all: every writer begins with a `started` record, so
    /// an empty log was emptied (or is not an audit log).
    Empty { file: PathBuf },
    /// A checkpoint that does not cover the record before it, or whose
    /// signature is not the key's: the log was rewritten.
    Checkpoint {
        file: PathBuf,
        line: usize,
        seq: u64,
        why: String,
    },
    /// `--key` given, and no checkpoint at all: nothing vouches for the log.
    Unsigned { file: PathBuf },
    /// `--key` given, the last record is not a final checkpoint and no
    /// writer has the log open: its tail was cut, or the writer died.
    Unsealed {
        file: PathBuf,
        after: u64,
        checkpoint_seq: u64,
        time: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Malformed { file, line } => write!(
                f,
                "{}:{line}: not an audit record; the log was altered here",
                file.display()
            ),
            Finding::Broken { file, line, seq } => write!(
                f,
                "{}:{line}: record {seq} does not follow record {}: its prev is not that record's hash, so one of the two was altered",
                file.display(),
                seq.wrapping_sub(1)
            ),
            Finding::Reordered {
                file,
                line,
                seq,
                expected,
            } => write!(
                f,
                "{}:{line}: record {seq} where record {expected} was due: records were moved or duplicated",
                file.display()
            ),
            Finding::Missing {
                file,
                line,
                seq,
                expected,
            } => write!(
                f,
                "{}:{line}: record {seq} where record {expected} was due: records {expected}..{} are missing",
                file.display(),
                seq - 1
            ),
            Finding::Empty { file } => write!(
                f,
                "{}: no records; agentwatch begins every log with a `started` record, so this one was emptied or is not an audit log",
                file.display()
            ),
            Finding::Checkpoint {
                file,
                line,
                seq,
                why,
            } => write!(
                f,
                "{}:{line}: checkpoint (record {seq}) {why}: the log was rewritten",
                file.display()
            ),
            Finding::Unsigned { file } => write!(
                f,
                "{}: no signed checkpoint in the log: nothing vouches that it was not rewritten whole (was the writer given a key?)",
                file.display()
            ),
            Finding::Unsealed {
                file,
                after,
                checkpoint_seq,
                time,
            } => write!(
                f,
                "{}: the log ends {after} record(s) after its last checkpoint (record {checkpoint_seq}, {time}) without the final checkpoint a writer that closes it signs, and no process has it open: its tail was cut, or its writer died",
                file.display()
            ),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub files: usize,
    /// Complete records that verified.
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The chain starts after seq 0: earlier files were not given, so the
    /// first record's `prev` could not be checked.
    pub starts_mid_chain: bool,
    /// A last record cut short (a crash mid-write), file and line.
    pub cut_short: Option<(PathBuf, usize)>,
    /// Checkpoints found (and, with a key, whose signatures verified).
    pub checkpoints: u64,
    pub last_checkpoint: Option<CheckpointSeen>,
    /// Records after the last checkpoint.
    pub after_checkpoint: u64,
    /// The last record is a final checkpoint: the writer closed the log.
    pub sealed: bool,
    /// A process that has the newest file open (a writer still at work).
    pub open_by: Option<u32>,
    /// The key checkpoints were checked with.
    pub key: Option<String>,
    pub finding: Option<Finding>,
}

/// The last checkpoint: the record it covers, when, and whether final.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointSeen {
    pub covers: u64,
    pub hash: String,
    pub time: String,
    #[serde(rename = "final")]
    pub last: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.finding.is_none()
    }

    /// Counts a record that verified (`checkpoint`: what it says, if one).
    fn count(&mut self, seq: u64, checkpoint: Option<&Covered>) {
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
        self.records += 1;
        self.after_checkpoint += 1;
        self.sealed = false;
        if let Some(c) = checkpoint {
            self.checkpoints += 1;
            self.after_checkpoint = 0;
            self.sealed = c.last;
            self.last_checkpoint = Some(CheckpointSeen {
                covers: c.seq,
                hash: c.hash.clone(),
                time: c.time.clone(),
                last: c.last,
            });
        }
    }
}

struct Line {
    file: usize,
    line: usize,
    link: Option<Link>,
    hash: String,
    complete: bool,
    /// What a checkpoint record says: covered, key id, signature.
    checkpoint: Option<(Covered, String, String)>,
}

fn read_lines(idx: usize, path: &Path) -> std::io::Result<Vec<Line>> {
    let bytes = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, complete, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], true, &rest[i + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        let v: Option<serde_json::Value> = serde_json::from_slice(line).ok();
        out.push(Line {
            file: idx,
            line: n,
            link: v.as_ref().and_then(Link::of),
            hash: line_hash(line),
            complete,
            checkpoint: v.as_ref().and_then(|v| Covered::of_record(&v["record"])),
        });
        rest = next;
    }
    Ok(out)
}

/// Verifies the chain through `paths`, and with `key` its checkpoints'
/// signatures, that it has some, and that it was closed.
pub fn verify_files(paths: &[PathBuf], key: Option<&Verifier>) -> std::io::Result<Report> {
    let mut files: Vec<(PathBuf, Vec<Line>)> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        files.push((p.clone(), read_lines(i, p)?));
    }
    // Files in chain order: by their first record's seq (empty ones last).
    files.sort_by_key(|(_, lines)| {
        lines
            .iter()
            .find_map(|l| l.link.as_ref().map(|k| k.seq))
            .unwrap_or(u64::MAX)
    });
    let mut report = Report {
        files: files.len(),
        key: key.map(|k| k.id().to_string()),
        ..Report::default()
    };
    let name = |l: &Line| paths[l.file].clone();
    let all: Vec<&Line> = files.iter().flat_map(|(_, l)| l.iter()).collect();
    let mut prev: Option<(u64, &str)> = None;
    for (i, l) in all.iter().enumerate() {
        let last_of_its_file = all.get(i + 1).is_none_or(|n| n.file != l.file);
        let is_last = i + 1 == all.len();
        let Some(link) = l.link.as_ref().filter(|_| l.complete) else {
            if !l.complete && last_of_its_file && is_last {
                report.cut_short = Some((name(l), l.line));
                break;
            }
            report.finding = Some(Finding::Malformed {
                file: name(l),
                line: l.line,
            });
            break;
        };
        let finding = match prev {
            None if link.seq == 0 && link.prev != GENESIS => Some(Finding::Broken {
                file: name(l),
                line: l.line,
                seq: 0,
            }),
            None => {
                report.starts_mid_chain = link.seq != 0;
                None
            }
            Some((seq, _)) if link.seq <= seq => Some(Finding::Reordered {
                file: name(l),
                line: l.line,
                seq: link.seq,
                expected: seq + 1,
            }),
            Some((seq, _)) if link.seq > seq + 1 => Some(Finding::Missing {
                file: name(l),
                line: l.line,
                seq: link.seq,
                expected: seq + 1,
            }),
            Some((_, hash)) if link.prev != hash => Some(Finding::Broken {
                file: name(l),
                line: l.line,
                seq: link.seq,
            }),
            Some(_) => None,
        };
        let finding = finding.or_else(|| {
            let (c, key_id, sig) = l.checkpoint.as_ref()?;
            let why = checkpoint_problem(c, key_id, sig, prev, key)?;
            Some(Finding::Checkpoint {
                file: name(l),
                line: l.line,
                seq: link.seq,
                why,
            })
        });
        if finding.is_some() {
            report.finding = finding;
            break;
        }
        report.count(link.seq, l.checkpoint.as_ref().map(|c| &c.0));
        prev = Some((link.seq, &l.hash));
    }
    let newest = files.last().map(|(p, _)| p.clone()).unwrap_or_default();
    if report.records == 0 && report.finding.is_none() && report.cut_short.is_none() {
        report.finding = Some(Finding::Empty {
            file: paths.first().cloned().unwrap_or_default(),
        });
    }
    if key.is_some() && report.finding.is_none() {
        anchored(&mut report, newest);
    }
    Ok(report)
}

/// With a key: the log must have a checkpoint, and end with the final one
/// unless a process (its writer) still has `newest` open.
fn anchored(report: &mut Report, newest: PathBuf) {
    report.open_by = open_by(&newest);
    report.finding = match &report.last_checkpoint {
        None => Some(Finding::Unsigned { file: newest }),
        Some(c) if !report.sealed && report.open_by.is_none() => Some(Finding::Unsealed {
            file: newest,
            after: report.after_checkpoint,
            checkpoint_seq: report.last_seq.unwrap_or(0) - report.after_checkpoint,
            time: c.time.clone(),
        }),
        Some(_) => None,
    };
}

/// What is wrong with a checkpoint, given the record before it (`prev`:
/// seq and hash) and the key to check its signature with.
fn checkpoint_problem(
    c: &Covered,
    key_id: &str,
    sig: &str,
    prev: Option<(u64, &str)>,
    key: Option<&Verifier>,
) -> Option<String> {
    match prev {
        Some((seq, hash)) if c.seq != seq || c.hash != hash => {
            return Some(format!(
                "covers record {} but follows record {seq}, or names another hash",
                c.seq
            ))
        }
        // The first record given: what it covers is in an earlier file.
        _ => {}
    }
    let k = key?;
    if key_id != k.id() {
        return Some(format!(
            "is signed by key {key_id}, not by the key given ({})",
            k.id()
        ));
    }
    (!k.verify(c, sig)).then(|| "has a signature that is not the key's".to_string())
}

/// A process with `path` open (the writer, when it is still at work).
fn open_by(path: &Path) -> Option<u32> {
    let want = std::fs::canonicalize(path).ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == want))
        {
            return Some(pid);
        }
    }
    None
}

//! `agentwatch audit verify FILE...`: walks the chain through every file
//! (ordered by their first sequence number, so a shell glob's order does
//! not matter) and names the first record that is altered, out of order,
//! or missing. A last record cut short by a crash is reported, not an error:
//! the log verifies up to its last complete record.
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{line_hash, Link, GENESIS};

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
    pub finding: Option<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.finding.is_none()
    }
}

struct Line {
    file: usize,
    line: usize,
    link: Option<Link>,
    hash: String,
    complete: bool,
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
        out.push(Line {
            file: idx,
            line: n,
            link: Link::parse(line),
            hash: line_hash(line),
            complete,
        });
        rest = next;
    }
    Ok(out)
}

/// Verifies the chain through `paths`.
pub fn verify_files(paths: &[PathBuf]) -> std::io::Result<Report> {
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
        if finding.is_some() {
            report.finding = finding;
            break;
        }
        report.first_seq.get_or_insert(link.seq);
        report.last_seq = Some(link.seq);
        report.records += 1;
        prev = Some((link.seq, &l.hash));
    }
    if report.records == 0 && report.finding.is_none() && report.cut_short.is_none() {
        report.finding = Some(Finding::Empty {
            file: paths.first().cloned().unwrap_or_default(),
        });
    }
    Ok(report)
}

//! Recorded learning sessions: what one session of an agent did, kept so a
//! profile can be learned again (under new rules, from other sessions)
//! and checked against sessions it never saw (`profile readiness`).
//!
//! A session file is JSON lines: a header object
//! (`{"type":"session","agent":..,"host":..,"workspace":..,"home":..,
//! "tmp":..,"started":..}`), then one `agentwatch trace --json` event per
//! line. The anchors are the session's own, so its paths read as
//! `$WORKSPACE/...` wherever it ran.
use std::{
    fs::File,
    io::{self, BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    anchors::Anchors,
    builder::{LearnConfig, Learner},
    guardrails::Guardrails,
    merge::{merge, MergeError},
    Profile,
};
use crate::event::Event;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("cannot read session {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: not a session file ({reason}); session files are written by `agentwatch learn --record`")]
    Format {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no recorded sessions in {0}; record some with `agentwatch learn --record {0} ...` (or --append, which records by default)")]
    NoSessions(PathBuf),
    #[error(transparent)]
    Merge(#[from] MergeError),
}

/// The first line of a session file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    #[serde(rename = "type")]
    pub kind: String,
    pub agent: String,
    pub host: String,
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub home: Option<String>,
    #[serde(default)]
    pub tmp: Option<String>,
    /// RFC 3339, UTC.
    pub started: String,
}

impl Header {
    pub fn new(agent: &str, host: &str, anchors: &Anchors, started: String) -> Self {
        Self {
            kind: "session".into(),
            agent: agent.to_string(),
            host: host.to_string(),
            workspace: anchors.workspace.clone(),
            home: anchors.home.clone(),
            tmp: anchors.tmp.clone(),
            started,
        }
    }

    pub fn anchors(&self) -> Anchors {
        Anchors::new(self.workspace.clone(), self.home.clone(), self.tmp.clone())
    }
}

/// A recorded session, read back.
#[derive(Debug, Clone)]
pub struct Session {
    pub path: PathBuf,
    pub header: Header,
    pub events: Vec<Event>,
}

/// Writes one session's events as they come.
pub struct Recorder {
    out: BufWriter<File>,
    pub path: PathBuf,
}

impl Recorder {
    /// Creates `DIR/AGENT-N.jsonl`, N the next free number, and writes the
    /// header.
    pub fn create(dir: &Path, header: &Header) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut n = list(dir).map(|v| v.len()).unwrap_or(0) + 1;
        let path = loop {
            let p = dir.join(format!("{}-{n:04}.jsonl", header.agent));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let mut out = BufWriter::new(File::create(&path)?);
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(Self { out, path })
    }

    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, ev)?;
        self.out.write_all(b"\n")
    }

    /// Flushes and syncs the file.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(self.path)
    }
}

/// The session files in `dir`, in name order.
pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    Ok(v)
}

/// Reads one session file.
pub fn read(path: &Path) -> Result<Session, SessionError> {
    let err = |source| SessionError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut lines = BufReader::new(File::open(path).map_err(err)?).lines();
    let format = |line, reason: String| SessionError::Format {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let first = lines
        .next()
        .ok_or_else(|| format(1, "empty".into()))?
        .map_err(err)?;
    let header: Header =
        serde_json::from_str(&first).map_err(|e| format(1, format!("bad header: {e}")))?;
    if header.kind != "session" {
        return Err(format(1, "the first line is not a session header".into()));
    }
    let mut events = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(err)?;
        if line.trim().is_empty() {
            continue;
        }
        // A session cut short by a crash may end in half a line.
        match serde_json::from_str::<Event>(&line) {
            Ok(ev) => events.push(ev),
            Err(e) => return Err(format(i + 2, e.to_string())),
        }
    }
    Ok(Session {
        path: path.to_path_buf(),
        header,
        events,
    })
}

/// Reads every session file in `dir`.
pub fn read_dir(dir: &Path) -> Result<Vec<Session>, SessionError> {
    let files = list(dir).map_err(|source| SessionError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    if files.is_empty() {
        return Err(SessionError::NoSessions(dir.to_path_buf()));
    }
    files.iter().map(|f| read(f)).collect()
}

/// The default place for a profile's sessions: `P.sessions/` beside
/// `P.yaml`.
pub fn dir_for(profile: &Path) -> PathBuf {
    profile.with_extension("sessions")
}

/// Learns one session into a profile, as `learn` would have.
pub fn learn_one(s: &Session, cfg: &LearnConfig, guardrails: &Guardrails) -> Profile {
    let start = s.events.first().map_or(0, |e| e.ts_ns);
    let end = s.events.last().map_or(0, |e| e.ts_ns);
    let mut l = Learner::new(cfg.clone(), s.header.anchors(), guardrails.clone(), start);
    for ev in &s.events {
        l.observe(ev);
    }
    let mut p = l.finish(&s.header.host, end);
    p.provenance.started = s.header.started.clone();
    p.provenance.ended = s.header.started.clone();
    p
}

/// Learns each session and merges them: the profile those sessions make,
/// generalised over all of them.
pub fn learn_all(
    sessions: &[&Session],
    cfg: &LearnConfig,
    guardrails: &Guardrails,
) -> Result<Profile, SessionError> {
    let profiles: Vec<Profile> = sessions
        .iter()
        .map(|s| learn_one(s, cfg, guardrails))
        .collect();
    Ok(merge(&profiles, Some(&cfg.agent))?)
}

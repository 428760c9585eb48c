//! Shadow learning: the daemon learns an agent while it runs for real
//! (`learn = true` in its configuration). Each session of the agent is
//! recorded as `learn --record` would (a session ends when the agent's
//! last process has been gone for a while, or when it has run for the
//! configured length), then appended to the profile as
//! `learn --append` would: generalised over every session, with each
//! class's stability counted across sessions and, once enough sessions
//! are recorded, the readiness verdict of leave-one-session-out replay.
//!
//! Nothing of the profile is enforced meanwhile (guardrails still hold:
//! the enforcer acts on hard rules only). Appending runs on its own
//! thread: a leave-one-out replay over many sessions takes seconds.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use thiserror::Error;
use tracing::warn;

use super::{
    anchors::Anchors,
    builder::LearnConfig,
    guardrails::Guardrails,
    merge::{self, MergeError},
    parse, readiness,
    session::{self, Header, Recorder, SessionError},
    yaml::to_yaml,
    Class, Profile, Readiness,
};
use crate::event::{Detail, Event};

#[derive(Debug, Error)]
pub enum ShadowError {
    #[error("the profile {path} does not load: {report}")]
    Profile { path: PathBuf, report: String },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("cannot write the learned profile to {primary} ({why}) nor to {fallback} ({why_fallback}); the session stays recorded in {session}")]
    Write {
        primary: PathBuf,
        why: String,
        fallback: PathBuf,
        why_fallback: String,
        session: PathBuf,
    },
}

/// Where and how an agent is learned in the daemon.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    pub agent: String,
    /// The configured profile: read as the base, written when it can be.
    pub profile: PathBuf,
    /// Written instead when `profile` cannot be (a read-only mount); read
    /// as the base when it exists.
    pub fallback: PathBuf,
    pub sessions: PathBuf,
    pub anchors: Anchors,
    /// A session ends this long after the agent's last process exited.
    pub idle: Duration,
    /// ... or once it has run this long (agents that never exit).
    pub longest: Duration,
    /// Sessions in a row with nothing new before a class is stable.
    pub stable_sessions: u32,
}

/// What one appended session did to the profile.
#[derive(Debug, Clone)]
pub struct Appended {
    pub session: PathBuf,
    pub written: PathBuf,
    pub sessions: u32,
    pub novelty: BTreeMap<Class, u64>,
    pub readiness: Option<Readiness>,
}

/// One agent's shadow learning: the session being recorded and the
/// appends under way.
pub struct Shadow {
    cfg: ShadowConfig,
    guardrails: Guardrails,
    host: String,
    recorder: Option<Recorder>,
    started: Instant,
    idle_since: Option<Instant>,
    events: u64,
    /// Events that could not be recorded (said once per session).
    unrecorded: u64,
    /// Finished sessions waiting for the append thread.
    queue: Vec<PathBuf>,
    appending: Option<JoinHandle<Result<Appended, ShadowError>>>,
}

impl Shadow {
    pub fn new(cfg: ShadowConfig, guardrails: Guardrails) -> Self {
        let host = crate::origin::host().to_string();
        Self {
            cfg,
            guardrails,
            host,
            recorder: None,
            started: Instant::now(),
            idle_since: None,
            events: 0,
            unrecorded: 0,
            queue: Vec::new(),
            appending: None,
        }
    }

    pub fn config(&self) -> &ShadowConfig {
        &self.cfg
    }

    /// New settings (a reload); the session under way goes on.
    pub fn reconfigure(&mut self, cfg: ShadowConfig) {
        self.cfg = cfg;
    }

    /// Events recorded in the session under way.
    pub fn session_events(&self) -> u64 {
        self.events
    }

    /// Records one event of the agent (a session starts with its first).
    pub fn observe(&mut self, ev: &Event) {
        if self.recorder.is_none() && self.unrecorded == 0 {
            let header = Header::new(
                &self.cfg.agent,
                &self.host,
                &self.cfg.anchors,
                crate::timestamp::profile_time(std::time::SystemTime::now()),
            );
            match Recorder::create(&self.cfg.sessions, &header) {
                Ok(r) => {
                    self.recorder = Some(r);
                    self.started = Instant::now();
                    self.events = 0;
                }
                Err(e) => {
                    warn!(agent = %self.cfg.agent, dir = %self.cfg.sessions.display(), error = %e, "cannot record a learning session; its events are not learned");
                }
            }
        }
        if !matches!(ev.detail, Detail::Exit { .. }) {
            self.idle_since = None;
        }
        let Some(r) = &mut self.recorder else {
            self.unrecorded += 1;
            return;
        };
        match r.event(ev) {
            Ok(()) => self.events += 1,
            Err(e) => {
                if self.unrecorded == 0 {
                    warn!(agent = %self.cfg.agent, error = %e, "cannot record a learning session event (disk full?); the session ends here");
                }
                self.unrecorded += 1;
                self.end_session();
            }
        }
    }

    /// Ends the session when it is over (`processes` counts the agent's
    /// processes the kernel still watches; asked only while a session is
    /// recorded), starts the append of a finished one, and says what an
    /// append that completed did.
    pub fn tick(
        &mut self,
        processes: impl FnOnce() -> usize,
    ) -> Option<Result<Appended, ShadowError>> {
        let done = self.appending.as_ref().is_some_and(JoinHandle::is_finished);
        let result = if done {
            self.appending.take().and_then(|h| h.join().ok())
        } else {
            None
        };
        if self.recorder.is_some() {
            if processes() == 0 {
                let since = *self.idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.cfg.idle {
                    self.end_session();
                }
            } else if self.started.elapsed() >= self.cfg.longest {
                self.end_session();
            }
        }
        if self.appending.is_none() && !self.queue.is_empty() {
            let path = self.queue.remove(0);
            let cfg = self.cfg.clone();
            let guardrails = self.guardrails.clone();
            self.appending = Some(std::thread::spawn(move || append(&cfg, &path, &guardrails)));
        }
        result
    }

    /// Ends the session under way (the daemon stops, the agent leaves the
    /// configuration): it is appended at the next tick.
    pub fn end_session(&mut self) {
        if let Some(r) = self.recorder.take() {
            match r.finish() {
                Ok(path) if self.events > 0 => self.queue.push(path),
                Ok(path) => {
                    let _ = std::fs::remove_file(path);
                }
                Err(e) => {
                    warn!(agent = %self.cfg.agent, error = %e, "cannot finish a learning session file")
                }
            }
        }
        self.idle_since = None;
        self.unrecorded = 0;
    }

    /// Waits for every finished session to be appended (daemon shutdown).
    pub fn finish(mut self) -> Vec<Result<Appended, ShadowError>> {
        self.end_session();
        let mut out = Vec::new();
        if let Some(h) = self.appending.take() {
            if let Ok(r) = h.join() {
                out.push(r);
            }
        }
        for path in std::mem::take(&mut self.queue) {
            out.push(append(&self.cfg, &path, &self.guardrails));
        }
        out
    }
}

/// The profile to append to: the fallback's when an earlier append had to
/// write there, else the configured one; none before the first session.
fn base(cfg: &ShadowConfig) -> Result<Option<Profile>, ShadowError> {
    let path = if cfg.fallback.exists() {
        &cfg.fallback
    } else {
        &cfg.profile
    };
    if !path.exists() {
        return Ok(None);
    }
    parse::load(path)
        .map(Some)
        .map_err(|r| ShadowError::Profile {
            path: path.clone(),
            report: r.to_string(),
        })
}

/// Appends one recorded session to the agent's profile and writes it.
pub fn append(
    cfg: &ShadowConfig,
    path: &Path,
    guardrails: &Guardrails,
) -> Result<Appended, ShadowError> {
    let base = base(cfg)?;
    let s = session::read(path)?;
    let learn_cfg = match &base {
        Some(b) => readiness::config_of(b),
        None => LearnConfig::new(&cfg.agent),
    };
    let learned = session::learn_one(&s, &learn_cfg, guardrails);
    let mut novelty: BTreeMap<Class, u64> = BTreeMap::new();
    let mut p = match &base {
        Some(b) => {
            for f in readiness::judge(b, &s, guardrails) {
                *novelty.entry(f.class).or_default() += 1;
            }
            merge::append(b, &learned, &novelty, cfg.stable_sessions)?
        }
        None => learned,
    };
    let sessions = session::read_dir(&cfg.sessions)?;
    if sessions.len() >= readiness::MIN_SESSIONS {
        p.readiness = Some(readiness::leave_one_out(&p, &sessions, guardrails)?.verdict);
    }
    let text = to_yaml(&p);
    let written = match crate::atomic::write(&cfg.profile, text.as_bytes()) {
        Ok(()) => {
            // The configured file is current again.
            let _ = std::fs::remove_file(&cfg.fallback);
            cfg.profile.clone()
        }
        Err(why) => {
            let fallback = || -> anyhow::Result<()> {
                if let Some(d) = cfg.fallback.parent() {
                    std::fs::create_dir_all(d)?;
                }
                Ok(crate::atomic::write(&cfg.fallback, text.as_bytes())?)
            };
            match fallback() {
                Ok(()) => {
                    warn!(agent = %cfg.agent, profile = %cfg.profile.display(), written = %cfg.fallback.display(), error = %why, "the profile cannot be written; the learned profile is kept beside the state instead");
                    cfg.fallback.clone()
                }
                Err(e) => {
                    return Err(ShadowError::Write {
                        primary: cfg.profile.clone(),
                        why: why.to_string(),
                        fallback: cfg.fallback.clone(),
                        why_fallback: e.to_string(),
                        session: path.to_path_buf(),
                    })
                }
            }
        }
    };
    Ok(Appended {
        session: path.to_path_buf(),
        written,
        sessions: p.provenance.sessions,
        novelty,
        readiness: p.readiness,
    })
}

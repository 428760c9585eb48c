//! The exit-code contract every command keeps (README, "Exit codes"):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | a verdict: something flagged, profiles differ, a chain broken, not ready |
//! | 2 | usage or bad input: a flag, a file, a profile, an id |
//! | 3 | the environment: not root, a kernel feature missing, nothing to talk to |
//! | 4 | a failure while working: an I/O error, a request the other side refused |
//!
//! A command that runs CMD (`trace`, `learn`, `run`, `exec`) exits with
//! CMD's status once CMD ran, and 126/127 when it could not run it, as a
//! shell does. Errors carry their kind (`Classified`), or it is read from
//! what caused them (`kind_of`); `main` prints them, as a JSON object on
//! stderr under `--json`.
use serde_json::json;

pub const OK: i32 = 0;
pub const VERDICT: i32 = 1;
pub const USAGE: i32 = 2;
pub const ENVIRONMENT: i32 = 3;
pub const FAILED: i32 = 4;

/// What went wrong, as the exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Usage,
    Environment,
    Failed,
}

impl Kind {
    pub fn code(self) -> i32 {
        match self {
            Kind::Usage => USAGE,
            Kind::Environment => ENVIRONMENT,
            Kind::Failed => FAILED,
        }
    }

    /// The `kind` field of a JSON error.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::Environment => "environment",
            Kind::Failed => "failed",
        }
    }
}

/// An error that says its own kind.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Classified {
    pub kind: Kind,
    pub message: String,
}

fn classified(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    let message: String = message.into();
    anyhow::Error::new(Classified {
        kind,
        message: message.trim_end().to_string(),
    })
}

/// Bad input or a usage mistake (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Usage, message)
}

/// Something about the host (exit 3).
pub fn environment(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Environment, message)
}

/// A failure while working (exit 4).
pub fn failed(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Failed, message)
}

/// The kind of `e`: the outermost error in its chain that says one. An
/// I/O error of a file the user named (not found, not valid) is bad input;
/// one refused by permissions is the environment; anything else a failure.
pub fn kind_of(e: &anyhow::Error) -> Kind {
    use crate::{control::ControlError, sensors::SensorError};
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<Classified>() {
            return c.kind;
        }
        if let Some(s) = cause.downcast_ref::<SensorError>() {
            return match s {
                SensorError::Object(_) | SensorError::MissingMap(_) | SensorError::Map { .. } => {
                    Kind::Failed
                }
                _ => Kind::Environment,
            };
        }
        if let Some(c) = cause.downcast_ref::<ControlError>() {
            return match c {
                ControlError::Refused(_) => Kind::Failed,
                _ => Kind::Environment,
            };
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return Kind::Usage;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::NotFound | K::InvalidInput | K::InvalidData | K::IsADirectory => Kind::Usage,
                K::PermissionDenied => Kind::Environment,
                _ => Kind::Failed,
            };
        }
    }
    Kind::Failed
}

/// Prints `e` on stderr (one JSON object under `json`) and returns the
/// exit code its kind says.
pub fn report(e: &anyhow::Error, json: bool) -> i32 {
    let kind = kind_of(e);
    if json {
        let v = json!({
            "error": format!("{e:#}"),
            "kind": kind.name(),
            "exit": kind.code(),
        });
        eprintln!("{v}");
    } else {
        eprintln!("agentwatch: {e:#}");
    }
    kind.code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn kinds_are_found_beneath_context() {
        let e = std::fs::read("/nonexistent/agentwatch-exit-test")
            .context("cannot read the events file")
            .unwrap_err();
        assert_eq!(kind_of(&e), Kind::Usage);
        let e = Err::<(), _>(environment("no daemon answers"))
            .context("asking for pending requests")
            .unwrap_err();
        assert_eq!(kind_of(&e), Kind::Environment);
        assert_eq!(
            format!("{e:#}"),
            "asking for pending requests: no daemon answers"
        );
    }

    #[test]
    fn errors_without_a_kind_are_failures() {
        assert_eq!(kind_of(&anyhow::anyhow!("something broke")), Kind::Failed);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(kind_of(&anyhow::Error::new(denied)), Kind::Environment);
        let not_root = crate::sensors::SensorError::NotRoot;
        assert_eq!(kind_of(&anyhow::Error::new(not_root)).code(), ENVIRONMENT);
    }

    #[test]
    fn messages_lose_their_trailing_newline() {
        let e = usage("profile.yaml:3:1: unknown field\n");
        assert_eq!(format!("{e}"), "profile.yaml:3:1: unknown field");
        assert_eq!(kind_of(&e).code(), USAGE);
    }
}

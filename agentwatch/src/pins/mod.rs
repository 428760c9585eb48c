//! Pinned files, checked when the agent reads them: the model weights it
//! may load (`model/unapproved`, `model/changed`) and the instruction
//! files that steer it (`config/changed`). The kernel sends every allowed
//! read of such a file with the descriptor it opened (`rule::PINNED`,
//! held in enforce mode); the file behind that descriptor is what is
//! hashed, once per file identity, so a model opened a thousand times is
//! read once and a file swapped after the check is another identity.
use std::{fs::File, io::Seek};

use serde_json::{json, Value};

use crate::{
    enforce::approvals::LearnEntry,
    profile::{
        anchors::Anchors,
        builder::hash::{digest_hex, file_id, FileId, HashCache},
        glob::Glob,
        matcher::Finding,
        pinned::{Instruction, ModelRule},
        rule::Rule,
        Class, Profile,
    },
};

pub mod hasher;
pub mod kind;
pub mod manifest;

/// A pinned file read against the profile: the finding, the alert's
/// `pinned` record, and what `approve --learn` writes to allow it.
#[derive(Debug, Clone)]
pub struct PinFinding {
    pub finding: Finding,
    pub detail: Value,
    pub learn: LearnEntry,
}

/// The profile's pins, expanded where this host's anchors say.
pub struct Pins {
    /// None: models are not checked (the profile has no `models` and no
    /// `modelManifests`).
    models: Option<Vec<(Glob, ModelRule)>>,
    /// Hashes the signed manifests approve, and why one approves nothing.
    manifest_hashes: std::collections::BTreeSet<String>,
    manifest_errors: Vec<String>,
    instructions: Vec<(String, Instruction)>,
    hashes: HashCache,
    anchors: Anchors,
}

impl Pins {
    pub fn new(profile: &Profile, anchors: &Anchors) -> Self {
        let glob = |p: &str| anchors.expand(p).and_then(|e| Glob::guardrail(&e).ok());
        let models = profile.checks_models().then(|| {
            profile
                .models
                .iter()
                .flatten()
                .filter_map(|m| glob(&m.path).map(|g| (g, m.clone())))
                .collect()
        });
        let mut manifest_hashes = std::collections::BTreeSet::new();
        let mut manifest_errors = Vec::new();
        for m in &profile.model_manifests {
            match manifest::approved(m, |p| anchors.expand(p)) {
                Ok(h) => manifest_hashes.extend(h),
                Err(e) => {
                    tracing::warn!(error = %e, "a model manifest approves nothing");
                    manifest_errors.push(e.to_string());
                }
            }
        }
        // The kernel names the file an open reached by its real path: a
        // workspace behind a symlink is compared as it really is.
        let instructions = profile
            .instructions
            .iter()
            .filter_map(|i| anchors.expand(&i.path).map(|p| (real(&p), i.clone())))
            .collect();
        Self {
            models,
            manifest_hashes,
            manifest_errors,
            instructions,
            hashes: HashCache::default(),
            anchors: anchors.clone(),
        }
    }

    /// The pins of a changed profile (an approval or a reload), keeping
    /// the digests already computed: an approved model is not read again
    /// because some other rule changed.
    pub fn reconfigure(&mut self, profile: &Profile, anchors: &Anchors) {
        let hashes = std::mem::take(&mut self.hashes);
        *self = Self::new(profile, anchors);
        self.hashes = hashes;
    }

    /// Judges a read of `path` (as the kernel's dentry walk named it)
    /// that reached `file`, hashing it here when its digest is not known.
    /// None: within the profile. The enforcer uses `plan` instead, so that
    /// hashing a large model does not hold up every other event.
    #[cfg(test)]
    pub fn check(&mut self, path: &str, file: File) -> Option<PinFinding> {
        match self.plan(path, file) {
            Plan::Clean => None,
            Plan::Found(p) => Some(p),
            Plan::Hash(mut job) => {
                let sha = job.hash().ok()?;
                self.judge(&job, sha)
            }
        }
    }

    /// What a read of `path` that reached `file` needs: nothing (no pin
    /// covers it), a finding at once (its digest is known), or a hash.
    pub fn plan(&mut self, path: &str, mut file: File) -> Plan {
        let subject = if let Some((_, pin)) = self.instructions.iter().find(|(p, _)| p == path) {
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Subject::Instruction {
                pin: pin.clone(),
                size,
            }
        } else {
            let Some(models) = self.models.as_ref() else {
                return Plan::Clean;
            };
            let listed = models.iter().any(|(g, _)| g.matches(path));
            let head = kind::head_of(&mut file);
            let format = kind::model_format(path, &head);
            if !listed && format.is_none() {
                return Plan::Clean;
            }
            if file.rewind().is_err() {
                return Plan::Clean;
            }
            Subject::Model {
                format: format.map_or("model", |f| f.name()),
            }
        };
        let Ok(id) = file_id(&file) else {
            return Plan::Clean;
        };
        let job = HashJob {
            path: path.to_string(),
            file,
            id,
            subject,
        };
        match self.hashes.known(&id) {
            Some(sha) => self.judge(&job, sha).map_or(Plan::Clean, Plan::Found),
            None => Plan::Hash(job),
        }
    }

    /// Judges a planned read once its file's sha256 is known (and keeps
    /// the digest for the next read of the same file).
    pub fn judge(&mut self, job: &HashJob, sha: String) -> Option<PinFinding> {
        self.hashes.remember(job.id, sha.clone());
        let path = job.path.as_str();
        let format = match &job.subject {
            Subject::Instruction { pin, size } => {
                // The pin as it is now: an approval may have re-pinned the
                // file while it was hashed.
                let pin = self
                    .instructions
                    .iter()
                    .find(|(p, _)| p == path)
                    .map_or(pin, |(_, now)| now);
                return (sha != pin.sha256).then(|| changed_instruction(path, pin, sha, *size));
            }
            Subject::Model { format } => *format,
        };
        let models = self.models.as_ref()?;
        let listed: Vec<&ModelRule> = models
            .iter()
            .filter(|(g, _)| g.matches(path))
            .map(|(_, m)| m)
            .collect();
        let anchored = self.anchors.anchor(path);
        let learn = LearnEntry::Model(ModelRule {
            path: anchored.clone(),
            sha256: vec![sha.clone()],
        });
        let mut detail = json!({"path": path, "format": format, "sha256": sha});
        let approved = |m: &&ModelRule| m.sha256.is_empty() || m.sha256.contains(&sha);
        if !listed.is_empty() {
            if listed.iter().any(approved) {
                return None;
            }
            let before: Vec<&String> = listed.iter().flat_map(|m| &m.sha256).collect();
            detail["approved_sha256"] = json!(before);
            return Some(PinFinding {
                finding: finding(
                    Rule::ModelChanged,
                    format!("load {anchored} ({format}, sha256 {})", &sha[..12]),
                    "an approved model's path, but not a sha256 the profile approves: the file changed".into(),
                ),
                detail,
                learn,
            });
        }
        // The same bytes elsewhere (a copy, a cache) are the approved
        // model; a signed manifest approves by hash alone.
        let elsewhere = models.iter().any(|(_, m)| m.sha256.contains(&sha));
        if elsewhere || self.manifest_hashes.contains(&sha) {
            return None;
        }
        let mut reason =
            "no entry of the profile's models, and no signed manifest, approves this file"
                .to_string();
        for e in &self.manifest_errors {
            reason.push_str(&format!("; a manifest approves nothing: {e}"));
        }
        Some(PinFinding {
            finding: finding(
                Rule::ModelUnapproved,
                format!("load {anchored} ({format}, sha256 {})", &sha[..12]),
                reason,
            ),
            detail,
            learn,
        })
    }
}

/// What `Pins::plan` found a read needs.
pub enum Plan {
    /// No pin covers the file, or its known digest is within the profile.
    Clean,
    /// Its known digest is outside the profile.
    Found(PinFinding),
    /// Its content must be hashed (`HashJob::hash`), then `Pins::judge`d.
    Hash(HashJob),
}

/// A pinned file to hash before its read can be judged.
pub struct HashJob {
    path: String,
    file: File,
    id: FileId,
    subject: Subject,
}

impl HashJob {
    /// The file's sha256 (reads it to the end: seconds for a large model).
    pub fn hash(&mut self) -> std::io::Result<String> {
        digest_hex::<sha2::Sha256>(&mut self.file)
    }
}

/// What the hashed file is checked as.
enum Subject {
    Instruction { pin: Instruction, size: u64 },
    Model { format: &'static str },
}

/// `path` with its symlinks resolved, when it exists; else as it is.
fn real(path: &str) -> String {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| path.to_string())
}

fn finding(rule: Rule, what: String, reason: String) -> Finding {
    Finding {
        rule,
        class: Class::File,
        what,
        reason,
    }
}

/// `config/changed` for a pinned file read with another content.
fn changed_instruction(path: &str, pin: &Instruction, sha: String, size: u64) -> PinFinding {
    let change = size as i64 - pin.size as i64;
    let reason = format!(
        "its content changed since it was pinned: {} -> {size} bytes ({change:+}), sha256 {} -> {}; a changed instruction is a new integration to review",
        pin.size,
        &pin.sha256[..pin.sha256.len().min(12)],
        &sha[..12],
    );
    PinFinding {
        finding: finding(Rule::ConfigChanged, format!("read {}", pin.path), reason),
        detail: json!({
            "path": path,
            "sha256_before": pin.sha256,
            "sha256_after": sha,
            "size_before": pin.size,
            "size_after": size,
            "size_change": change,
        }),
        learn: LearnEntry::Instruction(Instruction {
            path: pin.path.clone(),
            sha256: sha,
            size,
        }),
    }
}

/// What `learn` pins of a file the agent read: a model (by extension and
/// magic) or an instruction file (by name), with its sha256 and size now.
pub fn learned(path: &str) -> Option<Learned> {
    let model = kind::has_model_extension(path);
    if !model && !kind::is_instruction(path) {
        return None;
    }
    let mut f = File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let size = f.metadata().ok()?.len();
    if model {
        let head = kind::head_of(&mut f);
        kind::model_format(path, &head)?;
        f.rewind().ok()?;
    }
    let sha256 = digest_hex::<sha2::Sha256>(&mut f).ok()?;
    Some(Learned {
        model,
        sha256,
        size,
    })
}

/// `learned(path)` on a thread of its own, for a path that may be pinned
/// (None: not a model's or an instruction file's name): a learning
/// session's events are not held up while a large model is hashed.
pub fn learn_later(path: &str) -> Option<LearnedLater> {
    if !kind::has_model_extension(path) && !kind::is_instruction(path) {
        return None;
    }
    let owned = path.to_string();
    let state = match std::thread::Builder::new()
        .name("aw-pin".into())
        .spawn(move || learned(&owned))
    {
        Ok(t) => Later::Running(t),
        Err(_) => Later::Done(learned(path)),
    };
    Some(LearnedLater(std::sync::Mutex::new(state)))
}

/// A pinned file being hashed for `learn`; `get` waits for it.
pub struct LearnedLater(std::sync::Mutex<Later>);

enum Later {
    Running(std::thread::JoinHandle<Option<Learned>>),
    Done(Option<Learned>),
}

impl LearnedLater {
    /// What was learned of the file (waits for its hash the first time).
    pub fn get(&self) -> Option<Learned> {
        let Ok(mut state) = self.0.lock() else {
            return None;
        };
        let done = match std::mem::replace(&mut *state, Later::Done(None)) {
            Later::Running(t) => t.join().ok().flatten(),
            Later::Done(l) => l,
        };
        *state = Later::Done(done.clone());
        done
    }
}

/// A pinned file as `learn` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// A model's weights (else an instruction file).
    pub model: bool,
    pub sha256: String,
    pub size: u64,
}

#[cfg(test)]
mod tests;

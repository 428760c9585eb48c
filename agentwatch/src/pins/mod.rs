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
        builder::hash::HashCache,
        glob::Glob,
        matcher::Finding,
        pinned::{Instruction, ModelRule},
        rule::Rule,
        Class, Profile,
    },
};

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

    /// Judges a read of `path` (as the kernel's dentry walk named it)
    /// that reached `file`. None: within the profile.
    pub fn check(&mut self, path: &str, mut file: File) -> Option<PinFinding> {
        if let Some((_, pin)) = self.instructions.iter().find(|(p, _)| p == path) {
            let pin = pin.clone();
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let sha = self.hashes.hash_file(file).ok()?;
            return (sha != pin.sha256).then(|| changed_instruction(path, &pin, sha, size));
        }
        let models = self.models.as_ref()?;
        let listed: Vec<&ModelRule> = models
            .iter()
            .filter(|(g, _)| g.matches(path))
            .map(|(_, m)| m)
            .collect();
        let head = kind::head_of(&mut file);
        let format = kind::model_format(path, &head);
        if listed.is_empty() && format.is_none() {
            return None;
        }
        file.rewind().ok()?;
        let sha = self.hashes.hash_file(file).ok()?;
        let format = format.map_or("model", |f| f.name());
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
    let sha256 = crate::profile::builder::hash::digest_hex::<sha2::Sha256>(&mut f).ok()?;
    Some(Learned {
        model,
        sha256,
        size,
    })
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

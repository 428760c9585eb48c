//! Signed model manifests: a list of approved model hashes in
//! `sha256sum`'s format, signed with Ed25519 by whoever vouches for the
//! models (`openssl pkeyutl -sign -rawin -inkey KEY -in SHA256SUMS -out
//! SHA256SUMS.sig`). Checked when the agent's profile is loaded: a
//! manifest whose signature does not verify approves nothing.
use std::{collections::BTreeSet, path::Path};

use thiserror::Error;

use crate::{audit::checkpoint::Verifier, profile::pinned::ModelManifest};

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{0}: an anchor this agent does not have")]
    Anchor(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(#[from] crate::audit::checkpoint::KeyError),
    #[error("{sig}: not a signature of {manifest} by {key} (64 bytes, raw or hex): re-sign the manifest with the key's private half")]
    Signature {
        manifest: String,
        sig: String,
        key: String,
    },
    #[error("{path}:{line}: not `SHA256  PATH` (as sha256sum writes)")]
    Line { path: String, line: usize },
}

/// The hashes a signed manifest approves; `expand` puts the agent's
/// anchors in its paths.
pub fn approved(
    m: &ModelManifest,
    expand: impl Fn(&str) -> Option<String>,
) -> Result<BTreeSet<String>, ManifestError> {
    let path = expand(&m.manifest).ok_or_else(|| ManifestError::Anchor(m.manifest.clone()))?;
    let key = expand(&m.key).ok_or_else(|| ManifestError::Anchor(m.key.clone()))?;
    let read = |p: &str| {
        std::fs::read(p).map_err(|source| ManifestError::Read {
            path: p.to_string(),
            source,
        })
    };
    let text = read(&path)?;
    let sig_path = format!("{path}.sig");
    let sig = signature_bytes(&read(&sig_path)?);
    let verifier = Verifier::load(Path::new(&key))?;
    if !sig.is_some_and(|s| verifier.verify_bytes(&text, &s)) {
        return Err(ManifestError::Signature {
            manifest: path,
            sig: sig_path,
            key,
        });
    }
    let mut out = BTreeSet::new();
    for (i, line) in String::from_utf8_lossy(&text).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let hash = line.split_whitespace().next().unwrap_or("");
        let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(ManifestError::Line { path, line: i + 1 });
        }
        out.insert(hash.to_ascii_lowercase());
    }
    Ok(out)
}

/// The public keys `profile`'s manifests are checked with, where the
/// agent's anchors put them: agentwatch's own files, guarded from the
/// agent (a key it could replace would let it sign its own manifest).
pub fn keys(
    profile: &crate::profile::Profile,
    anchors: &crate::profile::anchors::Anchors,
) -> Vec<std::path::PathBuf> {
    profile
        .model_manifests
        .iter()
        .filter_map(|m| anchors.expand(&m.key))
        .map(std::path::PathBuf::from)
        .collect()
}

/// A signature file's 64 bytes: as they are, or written in hex.
fn signature_bytes(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() == 64 {
        return Some(b.to_vec());
    }
    let text = std::str::from_utf8(b).ok()?.trim();
    crate::hex::decode(text).filter(|s| s.len() == 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::{keygen, Signer};

    #[test]
    fn a_signed_manifest_approves_its_hashes_and_a_changed_one_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (key, public, _) = keygen(&d.path().join("models")).unwrap();
        let signer = Signer::load(&key).unwrap();
        let a = "a".repeat(64);
        let sums = format!(
            "{a}  tiny.gguf\n# a comment\n\n{}  other.gguf\n",
            "B".repeat(64)
        );
        let manifest = d.path().join("SHA256SUMS");
        std::fs::write(&manifest, &sums).unwrap();
        let sig = signer.sign_bytes(sums.as_bytes());
        std::fs::write(d.path().join("SHA256SUMS.sig"), crate::hex::encode(&sig)).unwrap();
        let m = ModelManifest {
            manifest: manifest.display().to_string(),
            key: public.display().to_string(),
        };
        let same = |p: &str| Some(p.to_string());
        let got = approved(&m, same).expect("verifies");
        assert_eq!(got, [a.clone(), "b".repeat(64)].into_iter().collect());
        // Raw bytes verify too.
        std::fs::write(d.path().join("SHA256SUMS.sig"), &sig).unwrap();
        assert!(approved(&m, same).is_ok());
        // One hash changed after signing: nothing is approved.
        std::fs::write(&manifest, sums.replace(&a, &"c".repeat(64))).unwrap();
        let e = approved(&m, same).unwrap_err().to_string();
        assert!(e.contains("not a signature"), "{e}");
        // A line that is no sha256sum line, signed: said where.
        let bad = "not a hash  x.gguf\n";
        std::fs::write(&manifest, bad).unwrap();
        std::fs::write(
            d.path().join("SHA256SUMS.sig"),
            signer.sign_bytes(bad.as_bytes()),
        )
        .unwrap();
        let e = approved(&m, same).unwrap_err().to_string();
        assert!(
            e.ends_with("SHA256SUMS:1: not `SHA256  PATH` (as sha256sum writes)"),
            "{e}"
        );
        assert!(approved(&m, |_| None).is_err());
    }
}

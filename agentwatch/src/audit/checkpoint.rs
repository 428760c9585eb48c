//! Signed checkpoints: the anchor of the hash chain.
//!
//! The chain alone proves a log consistent, not complete nor genuine: whoever
//! can write the file can rewrite it whole, with a fresh chain, or cut its
//! tail off. A checkpoint is a record saying "the chain up to record SEQ,
//! whose hash is H, at time T" signed with an Ed25519 key that agentwatch
//! reads from a file the agents cannot read. Rewriting the log then needs
//! the key; a tail cut after a checkpoint loses the closing one (`final`)
//! that a clean stop writes; and the feeds hold a copy of every checkpoint
//! for a SOC to compare with the log.
//!
//! The signed message is `agentwatch audit checkpoint v1\n{seq}\n{hash}\n
//! {time}\n{final}`; the record carries the signature in hex and the key's
//! id (the first 16 hex digits of the sha256 of its 32 public bytes).
use std::{
    io,
    path::{Path, PathBuf},
};

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use rustls_pki_types::{pem::PemObject, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde_json::{json, Value};
use thiserror::Error;

const CONTEXT: &str = "agentwatch audit checkpoint v1";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key
/// bytes follow it.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const MAKE_ONE: &str = "make a pair with `agentwatch audit keygen PREFIX` (or `openssl genpkey -algorithm ed25519 -out KEY` and `openssl pkey -in KEY -pubout -out KEY.pub`)";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("audit key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit key {path}: not an Ed25519 private key in PKCS#8 PEM; {MAKE_ONE}")]
    NotPrivate { path: PathBuf },
    #[error("audit key {path}: not an Ed25519 public key in PEM (`-----BEGIN PUBLIC KEY-----`); {MAKE_ONE}")]
    NotPublic { path: PathBuf },
    #[error("audit key {path} can be read by other users (mode {mode:o}); a key others can read signs nothing: `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path} exists; keygen does not overwrite a key")]
    Exists { path: PathBuf },
    #[error("cannot make a key: the system's random source failed")]
    Random,
}

/// What a checkpoint vouches for: the chain up to record `seq`, whose line
/// hashes to `hash`, at `time`; `last` when the writer closed the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub seq: u64,
    pub hash: String,
    pub time: String,
    pub last: bool,
}

impl Covered {
    fn message(&self) -> Vec<u8> {
        format!(
            "{CONTEXT}\n{}\n{}\n{}\n{}",
            self.seq, self.hash, self.time, self.last
        )
        .into_bytes()
    }

    /// The checkpoint fields of an audit record, when it is one: the
    /// covered record, and the key id and signature it carries.
    pub fn of_record(r: &Value) -> Option<(Covered, String, String)> {
        if r["type"] != "checkpoint" {
            return None;
        }
        let c = Covered {
            seq: r["covers"]["seq"].as_u64()?,
            hash: r["covers"]["hash"].as_str()?.to_string(),
            time: r["time"].as_str()?.to_string(),
            last: r["final"].as_bool()?,
        };
        Some((
            c,
            r["key"].as_str()?.to_string(),
            r["signature"].as_str()?.to_string(),
        ))
    }
}

/// The private key checkpoints are signed with.
pub struct Signer {
    pair: Ed25519KeyPair,
    id: String,
}

impl Signer {
    /// Reads a PKCS#8 PEM Ed25519 key; refuses one others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let pem = std::fs::read(path).map_err(read)?;
        let not_private = || KeyError::NotPrivate {
            path: path.to_path_buf(),
        };
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| not_private())?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|_| not_private())?;
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw signature of `message` (tests sign model manifests).
    #[cfg(test)]
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The checkpoint record for `c`, as it goes into the log and feeds.
    pub fn record(&self, c: &Covered) -> Value {
        let sig = self.pair.sign(&c.message());
        json!({
            "type": "checkpoint",
            "covers": {"seq": c.seq, "hash": c.hash},
            "time": c.time,
            "final": c.last,
            "host": crate::origin::host(),
            "key": self.id,
            "signature": crate::hex::encode(sig.as_ref()),
        })
    }
}

/// The public key `audit verify --key` checks checkpoints with.
pub struct Verifier {
    key: Vec<u8>,
    id: String,
}

impl Verifier {
    /// Reads an Ed25519 public key in SubjectPublicKeyInfo PEM.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let not_public = || KeyError::NotPublic {
            path: path.to_path_buf(),
        };
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| not_public())?;
        let der: &[u8] = spki.as_ref();
        let key = der
            .strip_prefix(&SPKI_PREFIX[..])
            .filter(|k| k.len() == 32)
            .ok_or_else(not_public)?
            .to_vec();
        Ok(Self {
            id: key_id(&key),
            key,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `sig` (the 64 bytes) is this key's over `message` (a
    /// signed model manifest, `crate::pins::manifest`).
    pub fn verify_bytes(&self, message: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(message, sig)
            .is_ok()
    }

    /// Whether `signature` (hex) is this key's over `c`.
    pub fn verify(&self, c: &Covered, signature: &str) -> bool {
        let Some(sig) = crate::hex::decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(&c.message(), &sig)
            .is_ok()
    }
}

/// Makes a key pair: `PREFIX.key` (PKCS#8 PEM, mode 600) and `PREFIX.pub`.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf, String), KeyError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let key_path = with_suffix(prefix, "key");
    let pub_path = with_suffix(prefix, "pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| KeyError::Random)?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let write = |path: &Path, mode: u32, text: String| -> Result<(), KeyError> {
        let err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)
    };
    write(&key_path, 0o600, pem("PRIVATE KEY", doc.as_ref()))?;
    write(&pub_path, 0o644, pem("PUBLIC KEY", &spki))?;
    Ok((key_path, pub_path, key_id(pair.public_key().as_ref())))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn key_id(public: &[u8]) -> String {
    crate::audit::line_hash(public)[..16].to_string()
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;

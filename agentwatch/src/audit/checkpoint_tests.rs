//! Keys, signatures, and what `verify --key` makes of a signed log after
//! each kind of tampering: rewritten whole, a checkpoint forged or moved,
//! the tail cut.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::json;

use super::*;
use crate::{
    audit::{tests::Dir, verify::Finding, verify_files, AuditLog, Fsync},
    enforce::audit_trail::{Anchor, AuditWriter},
};

fn covered(seq: u64) -> Covered {
    Covered {
        seq,
        hash: "ab".repeat(32),
        time: "2026-11-27T10:00:00.000000Z".into(),
        last: false,
    }
}

#[test]
fn a_key_pair_signs_and_only_its_own_signature_verifies() {
    let d = Dir::new();
    let (key, public, id) = keygen(&d.0.join("a")).expect("keygen");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let s = Signer::load(&key).expect("the private key loads");
    let v = Verifier::load(&public).expect("the public key loads");
    assert_eq!((s.id(), v.id()), (id.as_str(), id.as_str()));
    let r = s.record(&covered(7));
    let (c, kid, sig) = Covered::of_record(&r).expect("a checkpoint record");
    assert_eq!((c.clone(), kid), (covered(7), id));
    assert!(v.verify(&c, &sig));
    // Any field changed: the signature no longer holds.
    let mut moved = c.clone();
    moved.seq = 8;
    assert!(!v.verify(&moved, &sig));
    let mut sealed = c;
    sealed.last = true;
    assert!(!v.verify(&sealed, &sig));
    // Another pair's key does not verify it.
    let (_, other, _) = keygen(&d.0.join("b")).expect("keygen");
    let other = Verifier::load(&other).expect("loads");
    assert!(!other.verify(&covered(7), &sig));
    // keygen does not overwrite.
    assert!(matches!(
        keygen(&d.0.join("a")),
        Err(KeyError::Exists { .. })
    ));
}

#[test]
fn bad_key_files_are_refused_with_what_to_do() {
    let d = Dir::new();
    let (key, public, _) = keygen(&d.0.join("k")).expect("keygen");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Signer::load(&key).err().expect("refused");
    assert!(matches!(e, KeyError::Exposed { .. }), "{e}");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    // The public key is not a private key, and the other way round.
    let e = Signer::load(&public).err().expect("refused");
    assert!(e.to_string().contains("keygen"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Verifier::load(&key).is_err());
    assert!(matches!(
        Verifier::load(&d.0.join("missing.pub")),
        Err(KeyError::Read { .. })
    ));
}

/// openssl's keys (PKCS#8 v1) load as well as ours (v2).
#[test]
fn keys_made_by_openssl_load() {
    let d = Dir::new();
    let key = d.0.join("o.key");
    let public = d.0.join("o.pub");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .status()
            .is_ok_and(|s| s.success());
    if !made {
        eprintln!("SKIP: openssl cannot make an Ed25519 key here");
        return;
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = Signer::load(&key).expect("openssl's private key loads");
    let v = Verifier::load(&public).expect("openssl's public key loads");
    assert_eq!(s.id(), v.id());
    let (c, _, sig) = Covered::of_record(&s.record(&covered(1))).unwrap();
    assert!(v.verify(&c, &sig));
}

/// A log of `n` decisions with a checkpoint after each, closed (sealed)
/// when `close`; returns the log and the public key.
fn signed_log(d: &Dir, n: u64, close: bool) -> (PathBuf, PathBuf) {
    let (key, public, _) = keygen(&d.0.join("k")).expect("keygen");
    let path = d.0.join("audit.jsonl");
    let log = AuditLog::open(&path, Fsync::EveryRecord, None).expect("open");
    let mut w = AuditWriter::new(log);
    w.anchor(Anchor::new(Signer::load(&key).unwrap(), Duration::ZERO));
    for i in 0..n {
        w.record(json!({"type": "decision", "i": i}));
        w.sync_if_due();
    }
    if close {
        w.close();
    }
    (path, public)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn verify(path: &Path, public: &Path) -> crate::audit::verify::Report {
    let v = Verifier::load(public).unwrap();
    verify_files(&[path.to_path_buf()], Some(&v)).expect("verify")
}

#[test]
fn a_closed_signed_log_verifies_and_is_sealed() {
    let d = Dir::new();
    let (path, public) = signed_log(&d, 3, true);
    let r = verify(&path, &public);
    assert!(r.ok(), "{:?}", r.finding);
    // Three decisions, a checkpoint after each, and the final one.
    assert_eq!((r.records, r.checkpoints, r.sealed), (7, 4, true));
    // Without the key the chain still verifies; nothing is required.
    let r = verify_files(&[path], None).unwrap();
    assert!(r.ok() && r.key.is_none());
}

#[test]
fn a_cut_tail_is_caught() {
    let d = Dir::new();
    let (path, public) = signed_log(&d, 3, true);
    let all = lines(&path);
    // Cut after the second checkpoint: a chain that verifies, unsealed.
    std::fs::write(&path, all[..4].join("\n") + "\n").unwrap();
    let r = verify(&path, &public);
    assert!(
        matches!(r.finding, Some(Finding::Unsealed { after: 0, .. })),
        "{:?}",
        r.finding
    );
    // Cut between a decision and its checkpoint.
    std::fs::write(&path, all[..5].join("\n") + "\n").unwrap();
    let r = verify(&path, &public);
    assert!(
        matches!(r.finding, Some(Finding::Unsealed { after: 1, .. })),
        "{:?}",
        r.finding
    );
}

#[test]
fn a_log_rewritten_whole_is_caught() {
    let d = Dir::new();
    let (path, public) = signed_log(&d, 2, true);
    // A fresh chain of other records, without the key: no checkpoint.
    std::fs::remove_file(&path).unwrap();
    let mut log = AuditLog::open(&path, Fsync::EveryRecord, None).unwrap();
    log.append(&json!({"type": "decision", "i": 0})).unwrap();
    drop(log);
    let r = verify(&path, &public);
    assert!(
        matches!(r.finding, Some(Finding::Unsigned { .. })),
        "{:?}",
        r.finding
    );
    // Signed with another key: every checkpoint is refused.
    let other = Dir::new();
    let (forged, _) = signed_log(&other, 2, true);
    std::fs::copy(&forged, &path).unwrap();
    let r = verify(&path, &public);
    match &r.finding {
        Some(Finding::Checkpoint { why, .. }) => assert!(why.contains("not by the key"), "{why}"),
        f => panic!("{f:?}"),
    }
}

#[test]
fn a_checkpoint_forged_or_carried_to_another_place_is_caught() {
    let d = Dir::new();
    let (path, public) = signed_log(&d, 2, true);
    let all = lines(&path);
    // The final checkpoint's claim altered (and the chain's hash with it:
    // the last line has no successor): its signature fails.
    let mut v: serde_json::Value = serde_json::from_str(&all[4]).unwrap();
    v["record"]["final"] = json!(false);
    let mut forged = all.clone();
    forged[4] = v.to_string();
    std::fs::write(&path, forged.join("\n") + "\n").unwrap();
    match verify(&path, &public).finding {
        Some(Finding::Checkpoint { why, .. }) => assert!(why.contains("signature"), "{why}"),
        f => panic!("{f:?}"),
    }
    // A decision's record altered and the chain re-hashed after it: the
    // next checkpoint covers another hash.
    let mut log_lines = all.clone();
    let mut first: serde_json::Value = serde_json::from_str(&log_lines[0]).unwrap();
    first["record"]["i"] = json!(99);
    log_lines[0] = first.to_string();
    for i in 1..log_lines.len() {
        let mut v: serde_json::Value = serde_json::from_str(&log_lines[i]).unwrap();
        v["prev"] = json!(crate::audit::line_hash(log_lines[i - 1].as_bytes()));
        log_lines[i] = v.to_string();
    }
    std::fs::write(&path, log_lines.join("\n") + "\n").unwrap();
    match verify(&path, &public).finding {
        Some(Finding::Checkpoint { seq: 1, why, .. }) => assert!(why.contains("covers"), "{why}"),
        f => panic!("{f:?}"),
    }
}

#[test]
fn a_log_its_writer_still_has_open_is_not_called_cut() {
    let d = Dir::new();
    let (key, public, _) = keygen(&d.0.join("k")).unwrap();
    let path = d.0.join("audit.jsonl");
    let mut w = AuditWriter::new(AuditLog::open(&path, Fsync::EveryRecord, None).unwrap());
    w.anchor(Anchor::new(Signer::load(&key).unwrap(), Duration::ZERO));
    w.record(json!({"type": "decision"}));
    w.sync_if_due();
    w.record(json!({"type": "decision"}));
    let r = verify(&path, &public);
    assert!(r.ok(), "{:?}", r.finding);
    assert_eq!(r.open_by, Some(std::process::id()));
    assert_eq!(r.after_checkpoint, 1);
    drop(w);
    assert!(matches!(
        verify(&path, &public).finding,
        Some(Finding::Unsealed { .. })
    ));
}

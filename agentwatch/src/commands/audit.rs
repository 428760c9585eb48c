//! `agentwatch audit verify FILE... [--key PUB] [--json]`: exit 0 when the
//! chain holds (up to a last record cut short by a crash), 1 naming the
//! first broken, reordered or missing record, a checkpoint that is not the
//! key's, or (with the key) a log never signed or never closed; 2 when a
//! file or the key cannot be read.
//!
//! `agentwatch audit keygen PREFIX`: the key pair that signs checkpoints.
use std::path::{Path, PathBuf};

use crate::audit::{
    checkpoint::{keygen as make_pair, Verifier},
    verify::Report,
    verify_files,
};

pub fn verify(files: &[PathBuf], key: Option<&Path>, json: bool) -> anyhow::Result<i32> {
    let verifier = match key {
        Some(k) => Some(Verifier::load(k).map_err(|e| crate::exit::usage(e.to_string()))?),
        None => None,
    };
    let report = verify_files(files, verifier.as_ref())
        .map_err(|e| crate::exit::usage(format!("cannot read the audit log: {e}")))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.ok() { 0 } else { 1 })
}

fn print_report(report: &Report) {
    let range = match (report.first_seq, report.last_seq) {
        (Some(a), Some(b)) => format!("records {a}..={b}"),
        _ => "no records".into(),
    };
    match &report.finding {
        None => println!(
            "ok: {} record(s) in {} file(s) chain correctly ({range})",
            report.records, report.files
        ),
        Some(f) => println!(
            "BROKEN: {f}\n  verified before it: {} record(s) ({range})",
            report.records
        ),
    }
    if let Some(c) = &report.last_checkpoint {
        let by = report
            .key
            .as_deref()
            .map_or("unchecked: no --key".to_string(), |k| {
                format!("signed by key {k}")
            });
        println!(
            "checkpoints: {} ({by}); the last covers record {} at {}{}",
            report.checkpoints,
            c.covers,
            c.time,
            if report.sealed {
                " and closes the log"
            } else {
                ""
            }
        );
        if !report.sealed {
            match report.open_by {
                Some(pid) => println!(
                    "note: process {pid} has the log open; the {} record(s) after the last checkpoint are anchored by the next one",
                    report.after_checkpoint
                ),
                None if report.key.is_none() => println!(
                    "note: {} record(s) after the last checkpoint; give --key to check the signatures and whether the tail was cut",
                    report.after_checkpoint
                ),
                None => {}
            }
        }
    }
    if report.starts_mid_chain {
        println!(
            "note: the chain starts at record {} (earlier files not given), so its first link is unchecked",
            report.first_seq.unwrap_or(0)
        );
    }
    if let Some((file, line)) = &report.cut_short {
        println!(
            "note: {}:{line} is a record cut short (a crash mid-write); everything before it verifies",
            file.display()
        );
    }
}

pub fn keygen(prefix: &Path, json: bool) -> anyhow::Result<i32> {
    let (key, public, id) = make_pair(prefix).map_err(|e| crate::exit::usage(e.to_string()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"key": key, "public": public, "id": id})
        );
    } else {
        println!(
            "key {id}: {} (private: give it to `[audit] key` or `run --audit-key`; agents cannot read it)\n  {} (public: `agentwatch audit verify --key {}`)",
            key.display(),
            public.display(),
            public.display()
        );
    }
    Ok(0)
}

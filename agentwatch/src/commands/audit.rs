//! `agentwatch audit verify FILE... [--json]`: exit 0 when the chain holds
//! (up to a last record cut short by a crash), 1 naming the first broken,
//! reordered or missing record, 2 when a file cannot be read.
use std::path::PathBuf;

use crate::audit::verify_files;

pub fn verify(files: &[PathBuf], json: bool) -> anyhow::Result<i32> {
    let report = verify_files(files)
        .map_err(|e| crate::exit::usage(format!("cannot read the audit log: {e}")))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
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
    Ok(if report.ok() { 0 } else { 1 })
}

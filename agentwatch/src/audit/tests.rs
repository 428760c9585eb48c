//! The chain as `verify` sees it after each kind of tampering.
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use serde_json::json;

use super::{verify::Finding, verify_files, AuditLog, Fsync};

/// A temp directory removed on drop.
pub(super) struct Dir(pub(super) PathBuf);

impl Dir {
    pub(super) fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "aw-audit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_records(path: &Path, n: u64, rotate: Option<u64>) {
    let mut log = AuditLog::open(path, Fsync::EveryRecord, rotate).expect("open");
    for i in 0..n {
        log.append(&json!({"type": "decision", "i": i}))
            .expect("append");
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(String::from)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[test]
fn an_untouched_chain_verifies() {
    let d = Dir::new();
    let p = d.file("audit.jsonl");
    write_records(&p, 5, None);
    let r = verify_files(&[p], None).expect("verify");
    assert!(r.ok(), "{:?}", r.finding);
    assert_eq!((r.records, r.first_seq, r.last_seq), (5, Some(0), Some(4)));
    assert!(!r.starts_mid_chain && r.cut_short.is_none());
}

#[test]
fn an_altered_record_breaks_the_chain_at_the_next_one() {
    let d = Dir::new();
    let p = d.file("audit.jsonl");
    write_records(&p, 5, None);
    let mut l = lines(&p);
    l[2] = l[2].replace("\"i\":2", "\"i\":7");
    rewrite(&p, &l);
    let r = verify_files(std::slice::from_ref(&p), None).expect("verify");
    assert_eq!(
        r.finding,
        Some(Finding::Broken {
            file: p,
            line: 4,
            seq: 3
        })
    );
    assert_eq!(r.records, 3);
}

#[test]
fn a_removed_record_is_missing_and_a_moved_one_reordered() {
    let d = Dir::new();
    let p = d.file("audit.jsonl");
    write_records(&p, 5, None);
    let mut l = lines(&p);
    l.remove(1);
    rewrite(&p, &l);
    let r = verify_files(std::slice::from_ref(&p), None).expect("verify");
    assert_eq!(
        r.finding,
        Some(Finding::Missing {
            file: p.clone(),
            line: 2,
            seq: 2,
            expected: 1
        })
    );

    write_records(&d.file("b.jsonl"), 5, None);
    let q = d.file("b.jsonl");
    let mut l = lines(&q);
    l.swap(2, 3);
    rewrite(&q, &l);
    let r = verify_files(std::slice::from_ref(&q), None).expect("verify");
    assert_eq!(
        r.finding,
        Some(Finding::Missing {
            file: q.clone(),
            line: 3,
            seq: 3,
            expected: 2
        }),
        "a swap shows first as the later record arriving early"
    );
    let mut l = lines(&q);
    l.swap(2, 3); // back
    l.insert(4, l[1].clone()); // a duplicate of seq 1 after seq 3
    rewrite(&q, &l);
    let r = verify_files(std::slice::from_ref(&q), None).expect("verify");
    assert_eq!(
        r.finding,
        Some(Finding::Reordered {
            file: q,
            line: 5,
            seq: 1,
            expected: 4
        })
    );
}

#[test]
fn the_chain_continues_across_rotation_and_a_lost_file_is_named() {
    let d = Dir::new();
    let p = d.file("audit.jsonl");
    write_records(&p, 40, Some(600));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d.0)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(files.len() >= 3, "rotation made {} files", files.len());
    // Given in any order: verify orders them by their first record.
    files.sort();
    files.reverse();
    let r = verify_files(&files, None).expect("verify");
    assert!(r.ok(), "{:?}", r.finding);
    assert_eq!(r.records, 40);

    // A new writer continues the chain of the newest rotated file.
    std::fs::remove_file(&p).ok();
    write_records(&p, 2, Some(600));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d.0)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let r = verify_files(&files, None).expect("verify");
    assert!(r.ok(), "{:?}", r.finding);

    // Sorted by name: the live file, then the rotated ones oldest first.
    // Without the oldest, the chain just starts later; without one from
    // the middle, it has a gap.
    let mut later = files.clone();
    let oldest = later.remove(1);
    let r = verify_files(&later, None).expect("verify");
    assert!(
        r.ok() && r.starts_mid_chain,
        "without {}: {r:?}",
        oldest.display()
    );
    let middle = files.remove(2);
    let r = verify_files(&files, None).expect("verify");
    assert!(
        matches!(r.finding, Some(Finding::Missing { .. })),
        "without {}: {:?}",
        middle.display(),
        r.finding
    );
}

#[test]
fn a_record_cut_short_by_a_crash_verifies_up_to_the_last_complete_one_and_is_dropped_on_reopen() {
    let d = Dir::new();
    let p = d.file("audit.jsonl");
    write_records(&p, 3, None);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open");
    f.write_all(br#"{"seq":3,"prev":"ab"#).expect("write");
    drop(f);
    let r = verify_files(std::slice::from_ref(&p), None).expect("verify");
    assert!(r.ok(), "{:?}", r.finding);
    assert_eq!(r.records, 3);
    assert_eq!(r.cut_short, Some((p.clone(), 4)));

    let mut log =
        AuditLog::open(&p, Fsync::Interval(Duration::from_secs(1)), None).expect("reopen");
    assert_eq!(log.next_seq(), 3);
    log.append(&json!({"after": "crash"})).expect("append");
    drop(log);
    let r = verify_files(&[p], None).expect("verify");
    assert!(r.ok() && r.cut_short.is_none(), "{r:?}");
    assert_eq!(r.records, 4);
}

#[test]
fn a_foreign_line_is_refused_by_the_writer_and_named_by_verify() {
    let d = Dir::new();
    let p = d.file("audit.jsonl");
    write_records(&p, 2, None);
    let mut l = lines(&p);
    l.insert(1, "not json".into());
    rewrite(&p, &l);
    assert!(AuditLog::open(&p, Fsync::EveryRecord, None).is_err());
    let r = verify_files(std::slice::from_ref(&p), None).expect("verify");
    assert_eq!(r.finding, Some(Finding::Malformed { file: p, line: 2 }));
}

#[test]
fn fsync_policies_parse() {
    assert_eq!("record".parse::<Fsync>(), Ok(Fsync::EveryRecord));
    assert_eq!(
        "200ms".parse::<Fsync>(),
        Ok(Fsync::Interval(Duration::from_millis(200)))
    );
    assert_eq!(
        "2s".parse::<Fsync>(),
        Ok(Fsync::Interval(Duration::from_secs(2)))
    );
    // Every duration is written the same way, minutes included.
    assert_eq!(
        "5m".parse::<Fsync>(),
        Ok(Fsync::Interval(Duration::from_secs(300)))
    );
    assert!("often".parse::<Fsync>().is_err());
    assert!("0s".parse::<Fsync>().is_err());
}

#[test]
fn an_emptied_log_does_not_verify() {
    let d = Dir::new();
    let p = d.file("audit.jsonl");
    std::fs::write(&p, "").expect("write");
    let r = verify_files(std::slice::from_ref(&p), None).expect("verify");
    assert_eq!(r.finding, Some(Finding::Empty { file: p }));
    assert_eq!(r.records, 0);
}

//! The drift log's summaries: windows, novelty by class, learned names,
//! unused grants, and its file round trip.
use super::*;
use crate::profile::{DnsRule, Executable};

fn profile() -> Profile {
    let mut p = Profile::empty("coder");
    for path in ["/usr/bin/git", "/usr/bin/gcc", "$WORKSPACE/bin/*"] {
        p.executables.push(Executable {
            path: path.into(),
            sha256: Vec::new(),
            source: None,
            runs: 1,
        });
    }
    for name in ["github.com", "*.pypi.org", "old.example.com"] {
        p.dns.push(DnsRule {
            name: name.into(),
            runs: 1,
        });
    }
    p
}

#[test]
fn a_window_sums_its_days_and_names_the_last_day() {
    let mut l = DriftLog::default();
    l.note_violation("2026-11-01", "file");
    l.note_violation("2026-11-20", "file");
    l.note_violation("2026-11-26", "network");
    l.note_violation("2026-11-27", "file");
    l.note_violation("2026-11-27", "file");
    l.note_learned("2026-11-27", "$WORKSPACE");
    let r = l.report(&Profile::empty("coder"), "2026-11-20", "2026-11-27");
    assert_eq!(r.days_seen, 3);
    assert_eq!(r.novel.get("file"), Some(&3));
    assert_eq!(r.novel.get("network"), Some(&1));
    assert_eq!(r.novel_last_day.get("file"), Some(&2));
    assert_eq!(r.learned.get("$WORKSPACE"), Some(&1));
    assert_eq!(r.total_novel(), 4);
    let lines = r.lines("coder").join("\n");
    assert!(
        lines.contains("file: 3 violation(s) outside the profile (2 on the last day)"),
        "{lines}"
    );
}

#[test]
fn grants_nothing_used_in_the_window_are_named() {
    let mut l = DriftLog::default();
    l.note_exec("2026-11-10", "/usr/bin/gcc");
    l.note_exec("2026-11-25", "/usr/bin/git");
    l.note_exec("2026-11-25", "$WORKSPACE/bin/build");
    l.note_name("2026-11-25", "GitHub.com.");
    l.note_name("2026-11-26", "files.pypi.org");
    let r = l.report(&profile(), "2026-11-20", "2026-11-27");
    let unused: Vec<(&str, &str)> = r
        .unused
        .iter()
        .map(|u| (u.class, u.rule.as_str()))
        .collect();
    // gcc ran, but before the window; old.example.com was never asked.
    assert_eq!(
        unused,
        vec![("executable", "/usr/bin/gcc"), ("dns", "old.example.com")]
    );
}

#[test]
fn the_log_round_trips_and_keeps_the_last_days() {
    let dir = std::env::temp_dir().join(format!("aw-drift-{}", std::process::id()));
    let path = dir.join("drift/coder.json");
    assert_eq!(DriftLog::load(&path).unwrap(), DriftLog::default());
    let mut l = DriftLog::default();
    for d in 0..(KEEP_DAYS + 5) {
        l.note_violation(&format!("2026-{:02}-{:02}", 1 + d / 28, 1 + d % 28), "file");
    }
    l.save(&path).unwrap();
    let back = DriftLog::load(&path).unwrap();
    assert_eq!(back.days.len(), KEEP_DAYS);
    assert_eq!(back, l);
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        DriftLog::load(&path),
        Err(DriftError::Malformed { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn days_are_utc_dates() {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_201_600);
    assert_eq!(day_of(t), "2025-11-27");
}

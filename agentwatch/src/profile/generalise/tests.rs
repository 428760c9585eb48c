use super::*;
use crate::profile::Access::*;

fn acc(a: &[Access]) -> AccessSet {
    AccessSet::of(a)
}

const RWC: &[Access] = &[Read, Write, Create];

fn entries(files: &[(&str, &[Access], u32)]) -> Entries {
    let mut e = Entries::default();
    for (p, a, r) in files {
        e.add_file(p, acc(a), *r);
    }
    e
}

fn run(e: Entries, g: Granularity, overrides: &[Override], sessions: u32) -> Rules {
    let anchors = Anchors::new(
        Some("/home/ana/proj".into()),
        Some("/home/ana".into()),
        Some("/tmp".into()),
    );
    let s = Settings {
        granularity: g,
        overrides,
        min_siblings: 3,
        sessions,
    };
    generalise(e, &s, &anchors, &Guardrails::builtin())
}

fn territory<'a>(r: &'a Rules, path: &str) -> Option<&'a Territory> {
    r.territories.iter().find(|t| t.path == path)
}

fn file<'a>(r: &'a Rules, path: &str) -> Option<&'a FileRule> {
    r.files.iter().find(|f| f.path == path)
}

/// What six sessions of a coding agent left (the measurement):
/// new modules, new tests, docs, a note at the root, git's objects.
fn coding_union() -> Entries {
    entries(&[
        ("$WORKSPACE/src/calc.py", &[Read, Write], 6),
        ("$WORKSPACE/src/strutil.py", RWC, 1),
        ("$WORKSPACE/src/ops.py", RWC, 1),
        ("$WORKSPACE/tests/test_*.py", &[Read], 6),
        ("$WORKSPACE/tests/test_strutil.py", RWC, 1),
        ("$WORKSPACE/tests/test_ops.py", RWC, 1),
        ("$WORKSPACE/NOTES.md", RWC, 1),
        ("$WORKSPACE/.git/index", &[Read, Write, Create, Rename], 6),
        ("$WORKSPACE/.git/objects/*/*", &[Read, Write, Create], 6),
        ("$WORKSPACE/src/sed*", &[Read, Write, Create, Rename], 2),
        ("$TMP/tmp.*/calc.py", RWC, 1),
        ("$TMP/tmp.*", &[Read, Write, Create, Delete], 3),
        ("/usr/lib/python3.11/os.py", &[Read], 6),
        ("/usr/lib/python3.11/re/__init__.py", &[Read], 6),
        ("/usr/lib/python3.11/json/decoder.py", &[Read], 6),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", &[Read], 6),
        ("/etc/ld.so.cache", &[Read], 6),
        ("/etc/inputrc", &[Read], 6),
        ("/etc/wgetrc", &[Read], 6),
    ])
}

#[test]
fn a_workspace_with_new_names_everywhere_is_one_territory() {
    let r = run(coding_union(), Granularity::Balanced, &[], 6);
    let ws = territory(&r, "$WORKSPACE").expect("workspace territory");
    assert_eq!(ws.access, acc(&[Read, Write, Create, Rename, Chmod]));
    assert!(
        r.files.iter().all(|f| !f.path.starts_with("$WORKSPACE")),
        "{r:?}"
    );
    let tmp = territory(&r, "$TMP").expect("temp territory");
    // Creating and deleting there: renaming within is the two in one, and
    // a chmod adds nothing to creating.
    assert_eq!(
        tmp.access,
        acc(&[Read, Write, Create, Delete, Rename, Chmod])
    );
    let lib = territory(&r, "/usr/lib").expect("read territory");
    assert_eq!(lib.access, acc(&[Read]));
    // Two files directly in /etc are not a tree; what every program
    // reads is not written down at all.
    assert!(file(&r, "/etc/inputrc").is_some());
    assert!(file(&r, "/etc/wgetrc").is_some());
    assert!(file(&r, "/etc/ld.so.cache").is_none(), "{r:?}");
    assert_eq!(r.territories.len(), 3, "{r:?}");
}

#[test]
fn union_of_sessions_gives_the_pattern_every_access() {
    // Strict keeps files; the union still folds siblings into the pattern
    // another session made, with the accesses of both.
    let r = run(coding_union(), Granularity::Strict, &[], 6);
    let t = file(&r, "$WORKSPACE/tests/test_*.py").expect("pattern");
    assert_eq!(t.access, acc(RWC));
    assert!(file(&r, "$WORKSPACE/tests/test_ops.py").is_none(), "{r:?}");
    assert!(territory(&r, "$WORKSPACE").is_none());
}

#[test]
fn a_mktemp_directory_is_a_territory_even_when_strict() {
    let r = run(coding_union(), Granularity::Strict, &[], 6);
    assert!(territory(&r, "$TMP/tmp.*").is_some(), "{r:?}");
    assert!(file(&r, "$TMP/tmp.*/calc.py").is_none());
}

#[test]
fn nothing_is_rooted_at_home_or_the_root() {
    let e = entries(&[
        ("$HOME/a.txt", RWC, 1),
        ("$HOME/b.txt", RWC, 1),
        ("$HOME/c.txt", RWC, 1),
        ("/x1", RWC, 1),
        ("/x2", RWC, 1),
        ("/x3", RWC, 1),
        ("/var/a.conf", &[Read], 1),
        ("/var/b.conf", &[Read], 1),
        ("/var/c.conf", &[Read], 1),
        ("/var/d.conf", &[Read], 1),
    ]);
    let r = run(e, Granularity::Open, &[], 1);
    assert!(r.territories.is_empty(), "{r:?}");
    // Siblings still merge by structure.
    assert!(file(&r, "/var/*.conf").is_some(), "{r:?}");
    assert!(file(&r, "$HOME/*.txt").is_some(), "{r:?}");
}

#[test]
fn writes_never_become_territories_in_system_directories() {
    let e = entries(&[
        ("/etc/app/a", RWC, 1),
        ("/etc/app/b", RWC, 1),
        ("/etc/app/c", RWC, 1),
        ("/srv/app/out/a", RWC, 1),
        ("/srv/app/out/b", RWC, 1),
        ("/srv/app/out/c", RWC, 1),
    ]);
    let r = run(e, Granularity::Balanced, &[], 1);
    assert!(territory(&r, "/etc/app").is_none(), "{r:?}");
    assert!(territory(&r, "/srv/app/out").is_some(), "{r:?}");
}

#[test]
fn a_strict_override_fences_the_territory_above_it() {
    let o = [Override {
        path: "$WORKSPACE/tests".into(),
        granularity: Granularity::Strict,
    }];
    let r = run(coding_union(), Granularity::Balanced, &o, 6);
    assert!(territory(&r, "$WORKSPACE").is_none(), "{r:?}");
    // Siblings of the fenced directory still generalise.
    assert!(territory(&r, "$WORKSPACE/.git").is_some(), "{r:?}");
    assert!(territory(&r, "$WORKSPACE/src").is_some(), "{r:?}");
    assert!(file(&r, "$WORKSPACE/tests/test_*.py").is_some(), "{r:?}");
}

#[test]
fn an_open_override_makes_a_territory_where_balanced_would_not() {
    let e = entries(&[("$WORKSPACE/out/report.txt", RWC, 1)]);
    let r = run(e.clone(), Granularity::Balanced, &[], 1);
    assert!(r.territories.is_empty(), "{r:?}");
    let o = [Override {
        path: "$WORKSPACE/out".into(),
        granularity: Granularity::Open,
    }];
    let r = run(e, Granularity::Balanced, &o, 1);
    assert!(territory(&r, "$WORKSPACE/out").is_some(), "{r:?}");
}

#[test]
fn territories_of_other_sessions_join_up() {
    let mut e = Entries::default();
    e.add_territory("$WORKSPACE/src", acc(RWC), 2);
    e.add_territory("$WORKSPACE/docs", acc(&[Read, Write, Create, Delete]), 1);
    let r = run(e, Granularity::Balanced, &[], 3);
    let ws = territory(&r, "$WORKSPACE").expect("joined");
    assert_eq!(
        ws.access,
        acc(&[Read, Write, Create, Delete, Rename, Chmod])
    );
    assert_eq!(ws.runs, 2);
    assert_eq!(r.territories.len(), 1);
}

#[test]
fn executed_files_keep_their_own_rule() {
    let e = entries(&[
        ("$WORKSPACE/a.py", RWC, 1),
        ("$WORKSPACE/b.py", RWC, 1),
        ("$WORKSPACE/c.py", RWC, 1),
        ("$WORKSPACE/tool", &[Read, Exec], 1),
    ]);
    let r = run(e, Granularity::Balanced, &[], 1);
    assert!(!territory(&r, "$WORKSPACE").unwrap().access.contains(Exec));
    assert_eq!(file(&r, "$WORKSPACE/tool").unwrap().access, acc(&[Exec]));
}

#[test]
fn a_read_only_tree_becomes_a_read_territory_at_its_top() {
    let e = entries(&[
        (
            "$HOME/.pyenv/versions/3.11.7/lib/python3.11/os.py",
            &[Read],
            1,
        ),
        (
            "$HOME/.pyenv/versions/3.11.7/lib/python3.11/re.py",
            &[Read],
            1,
        ),
        ("$HOME/.pyenv/versions/3.11.7/bin/python3", &[Read], 1),
        ("$HOME/.pyenv/version", &[Read], 1),
        ("$HOME/.cache/pip/http/a", RWC, 1),
    ]);
    let r = run(e, Granularity::Balanced, &[], 1);
    assert_eq!(
        territory(&r, "$HOME/.pyenv").map(|t| t.access),
        Some(acc(&[Read])),
        "{r:?}"
    );
    // One file written: no territory in the cache yet.
    assert!(file(&r, "$HOME/.cache/pip/http/a").is_some(), "{r:?}");
}

#[test]
fn configuration_read_widely_becomes_a_read_tree_with_guardrail_holes() {
    let e = entries(&[
        ("/etc/inputrc", &[Read], 3),
        ("/etc/wgetrc", &[Read], 3),
        ("/etc/mailcap", &[Read], 3),
        ("/etc/ssl/certs/ca-certificates.crt", &[Read], 3),
        ("/etc/pip.conf", &[Read], 3),
    ]);
    let r = run(e, Granularity::Balanced, &[], 3);
    assert_eq!(
        territory(&r, "/etc").map(|t| t.access),
        Some(acc(&[Read])),
        "{r:?}"
    );
    let strict = entries(&[("/etc/inputrc", &[Read], 3), ("/etc/wgetrc", &[Read], 3)]);
    let r = run(strict, Granularity::Strict, &[], 3);
    assert!(territory(&r, "/etc").is_none(), "{r:?}");
}

#[test]
fn hand_written_globstars_are_kept_and_take_what_they_cover() {
    let e = entries(&[
        ("$WORKSPACE/build/**", &[Read, Write, Create], 1),
        ("$WORKSPACE/build/x.o", &[Write], 1),
        ("$WORKSPACE/build/y.o", &[Delete], 1),
    ]);
    let r = run(e, Granularity::Strict, &[], 1);
    assert!(file(&r, "$WORKSPACE/build/**").is_some());
    assert!(file(&r, "$WORKSPACE/build/x.o").is_none(), "{r:?}");
    // Not allowed by the `**` rule: it does not grow by itself.
    assert!(file(&r, "$WORKSPACE/build/y.o").is_some(), "{r:?}");
}

#[test]
fn eligibility() {
    let e = |p: &str, w| eligible(&segments(p), w);
    assert!(e("$WORKSPACE", true));
    assert!(e("$TMP/tmp.*", true));
    assert!(!e("$HOME", false));
    assert!(e("$HOME/.pyenv", false));
    assert!(!e("$HOME/.config", true));
    assert!(e("$HOME/.cache", true));
    assert!(e("/tmp", true));
    assert!(e("/dev/shm", true));
    assert!(!e("/dev", false));
    assert!(!e("/usr", false));
    assert!(e("/usr/lib", false));
    assert!(!e("/usr/lib/x/y", true));
    // Configuration is read everywhere; never written as a tree.
    assert!(e("/etc", false));
    assert!(!e("/etc", true));
    assert!(!e("/etc/x/y", true));
    assert!(!e("/home/bob", false));
    assert!(e("/home/bob/src", false));
    assert!(!e("/proc/self", false));
    assert!(!e("/", false));
}

#[test]
fn an_anchor_itself_stays_as_written() {
    let e = entries(&[("$HOME", &[Read], 1), ("$WORKSPACE", &[Read], 1)]);
    let r = run(e, Granularity::Balanced, &[], 1);
    assert!(file(&r, "$HOME").is_some(), "{r:?}");
    assert!(file(&r, "$WORKSPACE").is_some(), "{r:?}");
}

#[test]
fn a_file_written_in_a_learned_read_territory_keeps_its_rule() {
    let mut e = entries(&[("$HOME/datasets/inventory.db", RWC, 1)]);
    e.add_territory("$HOME/datasets", acc(&[Read]), 2);
    let r = run(e, Granularity::Balanced, &[], 3);
    assert_eq!(
        territory(&r, "$HOME/datasets").map(|t| t.access),
        Some(acc(&[Read])),
        "{r:?}"
    );
    assert_eq!(
        file(&r, "$HOME/datasets/inventory.db").map(|f| f.access),
        Some(acc(RWC)),
        "{r:?}"
    );
    // What the territory grants folds into it.
    let mut e = entries(&[("$HOME/datasets/sales.csv", &[Read], 1)]);
    e.add_territory("$HOME/datasets", acc(&[Read]), 2);
    let r = run(e, Granularity::Balanced, &[], 3);
    assert!(file(&r, "$HOME/datasets/sales.csv").is_none(), "{r:?}");
}

#[test]
fn what_every_program_reads_weighs_in_the_tree_but_gets_no_rule() {
    let e = entries(&[
        ("/etc/ld.so.cache", &[Read], 2),
        ("/etc/passwd", &[Read], 2),
        ("/etc/localtime", &[Read], 2),
        ("/etc/pip.conf", &[Read], 2),
        ("/dev/null", &[Read, Write], 2),
        ("/dev/urandom", &[Read], 2),
    ]);
    let r = run(e, Granularity::Balanced, &[], 2);
    // Configuration read widely: /etc is a read tree.
    assert_eq!(
        territory(&r, "/etc").map(|t| t.access),
        Some(acc(&[Read])),
        "{r:?}"
    );
    // The null and random devices are allowed anyway: no rule.
    assert!(r.files.is_empty(), "{r:?}");
}

use super::*;
use crate::paths;

const PATTERNS: &[(&str, bool)] = &[
    ("/usr/lib/**", false),
    ("/usr/bin/python3*", false),
    ("/home/u/ws/src/*.rs", false),
    ("/home/u/ws/**/*.py", false),
    ("/tmp/tmp.*", false),
    ("/tmp/*/out", false),
    ("/etc/hosts", false),
    ("/home/u/.cache/*", false),
    ("/proc/*/stat", false),
    ("/x/**", false),
    ("/a/*b*c", false),
    ("**/.ssh/**", true),
    ("**/.env", true),
    ("**/.env.*", true),
    ("/etc/shadow", true),
    ("/etc/cron.*/**", true),
];

const PATHS: &[&str] = &[
    "/",
    "/usr",
    "/usr/lib",
    "/usr/lib/x.so",
    "/usr/lib/.hidden",
    "/usr/lib/a/b/c",
    "/usr/bin/python3",
    "/usr/bin/python3.11",
    "/usr/bin/python",
    "/home/u/ws/src/main.rs",
    "/home/u/ws/src/.main.rs",
    "/home/u/ws/src/a/main.rs",
    "/home/u/ws/a.py",
    "/home/u/ws/x/y/z.py",
    "/home/u/ws/.venv/z.py",
    "/home/u/ws/x/.py",
    "/tmp/tmp.abc",
    "/tmp/tmp.",
    "/tmp/tmpabc",
    "/tmp/q/out",
    "/tmp/.q/out",
    "/tmp/q/r/out",
    "/etc/hosts",
    "/etc/hosts2",
    "/home/u/.cache/pip",
    "/home/u/.cache/.pip",
    "/proc/123/stat",
    "/proc/self/stat",
    "/x",
    "/x/y",
    "/xy",
    "/a/bc",
    "/a/xbyc",
    "/a/bcc",
    "/a/cb",
    "/home/u/.ssh/id_rsa",
    "/root/.ssh",
    "/.ssh/x",
    "/home/u/ws/.env",
    "/home/u/ws/.env.local",
    "/home/u/ws/.envrc",
    "/etc/shadow",
    "/etc/cron.d/job",
    "/etc/cron.daily/a/b",
    "/etc/cron/x",
];

fn build() -> (Dfa, Vec<Glob>) {
    let globs: Vec<Glob> = PATTERNS
        .iter()
        .map(|(p, dot)| {
            if *dot {
                Glob::guardrail(p).unwrap()
            } else {
                Glob::parse(p).unwrap()
            }
        })
        .collect();
    let pairs: Vec<(Glob, u64)> = globs
        .iter()
        .enumerate()
        .map(|(i, g)| (g.clone(), 1u64 << i))
        .collect();
    (Dfa::build(&pairs, 100_000).unwrap(), globs)
}

fn expected(globs: &[Glob], path: &str) -> u64 {
    globs
        .iter()
        .enumerate()
        .filter(|(_, g)| g.matches(path))
        .fold(0, |a, (i, _)| a | 1 << i)
}

#[test]
fn automaton_agrees_with_glob_matching_on_every_pair() {
    let (dfa, globs) = build();
    for path in PATHS {
        assert_eq!(
            dfa.lookup(path),
            expected(&globs, path),
            "{path}: automaton {:b}, globs {:b}",
            dfa.lookup(path),
            expected(&globs, path)
        );
    }
}

#[test]
fn kernel_style_resolution_agrees_with_lexical_normalisation() {
    let (dfa, globs) = build();
    let cases = [
        (Some("/home/u/ws"), "src/main.rs"),
        (Some("/home/u/ws"), "./src/../src/main.rs"),
        (Some("/home/u/ws/src"), "../.env"),
        (Some("/home/u"), ".ssh//id_rsa"),
        (None, "/tmp//tmp.x/"),
        (None, "/etc/../etc/shadow"),
        (Some("/"), "../../etc/hosts"),
        (None, "/"),
        (Some("/usr/lib"), ".."),
    ];
    for (base, rel) in cases {
        let resolved = paths::resolve(base, rel);
        assert_eq!(
            dfa.resolve(base, rel),
            expected(&globs, &resolved),
            "{base:?} + {rel} = {resolved}"
        );
    }
}

#[test]
fn unnamed_bytes_share_one_class_and_the_dead_state_absorbs() {
    let (dfa, _) = build();
    assert_eq!(dfa.classes[b'Q' as usize], dfa.classes[b'#' as usize]);
    assert_ne!(dfa.classes[b'/' as usize], dfa.classes[b'Q' as usize]);
    assert_eq!(dfa.feed(0, b"/usr/lib"), 0);
    // No guardrail starts with Q..., but **/ patterns keep paths alive.
    assert_ne!(dfa.feed(dfa.start, b"/Qzz"), 0);
}

#[test]
fn too_many_states_is_an_error_not_a_truncated_automaton() {
    let pairs: Vec<(Glob, u64)> = (0..50)
        .map(|i| (Glob::parse(&format!("/data/file{i:03}")).unwrap(), 1))
        .collect();
    assert_eq!(Dfa::build(&pairs, 20), Err(DfaError::TooLarge(20)));
    assert!(Dfa::build(&pairs, 10_000).is_ok());
}

#[test]
fn builtin_guardrails_compile_to_a_small_automaton() {
    // Trailing `**` of dotglob patterns folds into a sticky payload;
    // without it these patterns multiply into hundreds of thousands of
    // states.
    let mut dfa_in = Vec::new();
    for g in crate::profile::guardrails::Guardrails::builtin().iter() {
        dfa_in.push((g.pattern.clone(), g.guarded.bits() as u64));
    }
    let dfa = Dfa::build(&dfa_in, 20_000).expect("fits");
    assert!(dfa.states() < 10_000, "{} states", dfa.states());
    assert_ne!(dfa.lookup("/home/u/.aws/x/.ssh/id"), 0);
    assert_eq!(dfa.lookup("/home/u/src/main.rs"), 0);
}

#[test]
fn a_typical_profile_with_places_and_interpreters_compiles_small() {
    use crate::{
        enforce::compile::{compile, Mode},
        profile::{anchors::Anchors, guardrails::Guardrails, parse},
    };
    let text = r#"apiVersion: agentwatch.dev/v2
kind: Profile
agent: a
territories:
  - path: "$WORKSPACE"
    access: [read, write, create, delete, rename]
  - path: "$TMP"
    access: [read, write, create, delete]
  - path: "/usr"
    access: [read]
executables:
  - path: "/usr/bin/*"
    source: package
files:
  - path: "/etc/ld.so.cache"
    access: [read]
"#;
    let (p, f) = parse::parse(text);
    assert!(f.is_empty(), "{f:?}");
    let anchors = Anchors::new(
        Some("/home/u/ws".into()),
        Some("/home/u".into()),
        Some("/tmp".into()),
    );
    let t = std::time::Instant::now();
    let c = compile(
        0,
        &p.unwrap(),
        &anchors,
        &Guardrails::builtin(),
        Mode::Enforce,
    );
    let dfa = c.dfa.expect("fits");
    eprintln!(
        "{} states, {} classes in {:?}",
        dfa.states(),
        dfa.class_count,
        t.elapsed()
    );
    assert!(dfa.states() < 20_000, "{} states", dfa.states());
}

#[test]
#[ignore]
fn state_counts_by_pattern_group() {
    use crate::profile::{glob::Glob, guardrails::Guardrails, interpreters};
    let g: Vec<(Glob, u64)> = Guardrails::builtin()
        .iter()
        .map(|g| (g.pattern.clone(), g.guarded.bits() as u64))
        .collect();
    let i: Vec<(Glob, u64)> = interpreters::KERNEL_PATTERNS
        .iter()
        .map(|(p, _)| (Glob::guardrail(p).unwrap(), 1 << 15))
        .collect();
    let n = |v: &[(Glob, u64)]| Dfa::build(v, 500_000).map(|d| d.states()).unwrap_or(0);
    eprintln!("guardrails {}", n(&g));
    eprintln!("interpreters {}", n(&i));
    let mut both = g.clone();
    both.extend(i.clone());
    eprintln!("both {}", n(&both));
    let pth: Vec<(Glob, u64)> = g
        .iter()
        .filter(|(p, _)| !p.to_string().contains("*.pth"))
        .cloned()
        .collect();
    eprintln!("guardrails without *.pth {}", n(&pth));
    for extra in [
        "/tmp/**",
        "/home/u/ws/**",
        "/home/u/**",
        "/dev/**",
        "/usr/**",
    ] {
        let mut v = both.clone();
        v.push((Glob::guardrail(extra).unwrap(), 1 << 12));
        eprintln!("both + {extra} {}", n(&v));
    }
    let mut v = both.clone();
    for extra in [
        "/tmp/**",
        "/var/tmp/**",
        "/dev/shm/**",
        "/dev/**",
        "/proc/**",
        "/sys/**",
    ] {
        v.push((Glob::guardrail(extra).unwrap(), 1 << 12));
    }
    eprintln!("both + fixed places {}", n(&v));
    v.push((Glob::guardrail("/home/u/ws/**").unwrap(), 1 << 14));
    eprintln!("  + ws {}", n(&v));
    v.push((Glob::guardrail("/home/u/**").unwrap(), 1 << 13));
    eprintln!("  + home {}", n(&v));
    v.push((Glob::parse("/usr/bin/*").unwrap(), 1 << 8));
    eprintln!("  + /usr/bin/* {}", n(&v));
}

#[test]
fn a_pattern_starting_with_any_depth_matches_only_its_suffix() {
    let g = Glob::parse("/**/package.json").unwrap();
    assert!(g.matches("/a/b/package.json"));
    assert!(!g.matches("/etc/hostname"));
    let d = Dfa::build(&[(g, 1)], 10_000).unwrap();
    assert_eq!(d.lookup("/a/b/package.json"), 1);
    assert_eq!(d.lookup("/package.json"), 1);
    assert_eq!(d.lookup("/etc/hostname"), 0);
}

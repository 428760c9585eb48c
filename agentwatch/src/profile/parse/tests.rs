use super::*;
use crate::profile::{yaml::to_yaml, Access, Direction};

fn sample() -> Profile {
    let mut p = Profile::empty("coder");
    p.executables.push(Executable {
        path: "/usr/bin/git".into(),
        sha256: vec!["0".repeat(64)],
        source: None,
        runs: 2,
    });
    p.files.push(FileRule {
        path: "$WORKSPACE/logs/*.log".into(),
        access: AccessSet::of(&[Access::Read, Access::Write, Access::Create]),
        runs: 1,
    });
    p.network.push(NetRule {
        model: false,
        direction: Direction::Connect,
        host: Some("github.com".into()),
        address: None,
        unix: None,
        port: Some(443),
        by: vec!["/usr/bin/git".into()],
        runs: 1,
    });
    p.dns.push(DnsRule {
        name: "github.com".into(),
        runs: 1,
    });
    p.rates
        .per_minute
        .insert(Class::Exec, RateBudget::new(7, 2.0));
    p.resources.insert("memory".into(), "512M".into());
    p.resources.insert("pids".into(), "64".into());
    p.resources.insert("cpu".into(), "0.5".into());
    p.models = Some(vec![crate::profile::pinned::ModelRule {
        path: "$HOME/models/*.gguf".into(),
        sha256: vec!["a".repeat(64)],
    }]);
    p.instructions.push(crate::profile::pinned::Instruction {
        path: "$WORKSPACE/AGENTS.md".into(),
        sha256: "b".repeat(64),
        size: 120,
    });
    p.model_manifests
        .push(crate::profile::pinned::ModelManifest {
            manifest: "$HOME/models/SHA256SUMS".into(),
            key: "/etc/agentwatch/models.pub".into(),
        });
    p.review.push(ReviewItem {
        path: "$HOME/.ssh/id_ed25519".into(),
        access: AccessSet::of(&[Access::Read]),
        guardrail: "secrets".into(),
        pattern: "**/.ssh/**".into(),
        runs: 1,
    });
    p.stability.classes.insert(
        Class::Exec,
        ClassStability {
            stable: true,
            entries: 1,
            quiet_sessions: 0,
            novelty: Vec::new(),
        },
    );
    p.provenance.hosts = vec!["h1".into()];
    p.provenance.sessions = 1;
    p.provenance.started = "2026-11-21T10:00:00Z".into();
    p.provenance.ended = "2026-11-21T10:05:00Z".into();
    p.provenance.events.insert(Class::Exec, 3);
    p
}

fn findings(text: &str) -> Vec<Finding> {
    parse(text).1
}

#[test]
fn written_profiles_read_back_equal() {
    let p = sample();
    let text = to_yaml(&p);
    let (back, f) = parse(&text);
    assert!(f.is_empty(), "{f:?}");
    assert_eq!(back.unwrap(), p);
    assert_eq!(to_yaml(&parse(&text).0.unwrap()), text, "stable round trip");
    // The io_uring switch, off unless written.
    assert!(!back_io_uring(&text));
    let mut open = sample();
    open.io_uring = true;
    let text = to_yaml(&open);
    assert!(text.contains("ioUring: true") && back_io_uring(&text));
}

fn back_io_uring(text: &str) -> bool {
    parse(text).0.expect("a profile").io_uring
}

#[test]
fn unknown_field_is_located() {
    let text = to_yaml(&sample()).replace("    access: [read, write, create]", "    acess: [read]");
    let f = findings(&text);
    assert_eq!(f.len(), 1);
    let line = text.lines().position(|l| l.contains("acess")).unwrap() as u64 + 1;
    assert_eq!((f[0].line, f[0].column), (line, 5));
    assert!(
        f[0].message.contains("unknown field `acess`"),
        "{}",
        f[0].message
    );
}

#[test]
fn malformed_yaml_is_located() {
    let f = findings("apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: \"x\nfiles: []\n");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Error);
    assert!(f[0].line >= 3, "{:?}", f[0]);
}

#[test]
fn unknown_access_is_an_error() {
    let text = to_yaml(&sample()).replace("[read, write, create]", "[read, scribble]");
    let f = findings(&text);
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("scribble"), "{}", f[0].message);
}

#[test]
fn contradictions_are_errors_with_a_fix() {
    let mut p = sample();
    p.files.push(FileRule {
        path: "$HOME/.ssh/*".into(),
        access: AccessSet::of(&[Access::Read]),
        runs: 1,
    });
    p.files.push(FileRule {
        path: "$HOME/.ssh/id_ed25519".into(),
        access: AccessSet::of(&[Access::Read]),
        runs: 1,
    });
    p.rates.per_minute.insert(
        Class::Dns,
        RateBudget {
            peak: 10,
            budget: 5,
        },
    );
    let text = to_yaml(&p);
    let f = findings(&text);
    let msgs: Vec<&str> = f.iter().map(|x| x.message.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("secrets guardrail")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("awaits review")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("below the peak")),
        "{msgs:?}"
    );
    assert!(f
        .iter()
        .all(|x| x.severity == Severity::Error && !x.fix.is_empty()));
    let line = text
        .lines()
        .position(|l| l.contains("$HOME/.ssh/*"))
        .unwrap() as u64
        + 1;
    assert!(f.iter().any(|x| x.line == line && x.column == 11), "{f:?}");
}

#[test]
fn a_path_read_as_allowed_may_have_its_changes_in_review() {
    // What learn writes for a persistence file the agent read and wrote:
    // the read is allowed, the write awaits review. Not a contradiction.
    let mut p = sample();
    p.files.push(FileRule {
        path: "$HOME/.bashrc".into(),
        access: AccessSet::of(&[Access::Read]),
        runs: 1,
    });
    p.resources.insert("memory".into(), "512M".into());
    p.resources.insert("pids".into(), "64".into());
    p.resources.insert("cpu".into(), "0.5".into());
    p.review.push(ReviewItem {
        path: "$HOME/.bashrc".into(),
        access: AccessSet::of(&[Access::Write]),
        guardrail: "persistence".into(),
        pattern: "**/.bashrc".into(),
        runs: 1,
    });
    let f = findings(&to_yaml(&p));
    assert!(
        f.is_empty(),
        "{:?}",
        f.iter().map(|x| &x.message).collect::<Vec<_>>()
    );
    p.files.last_mut().expect("pushed").access = AccessSet::of(&[Access::Read, Access::Write]);
    let f = findings(&to_yaml(&p));
    assert!(
        f.iter()
            .any(|x| x.message.contains("awaits review (write)")),
        "{:?}",
        f.iter().map(|x| &x.message).collect::<Vec<_>>()
    );
}

#[test]
fn a_bad_resource_budget_is_an_error_that_says_what_to_write() {
    let text = to_yaml(&sample()).replace("memory: \"512M\"", "memory: \"lots\"");
    let msgs: Vec<String> = findings(&text).into_iter().map(|f| f.message).collect();
    assert!(
        msgs.iter().any(|m| m.contains("a size (512M, 2G)")),
        "{msgs:?}\n{text}"
    );
    let unknown = to_yaml(&sample()).replace("memory: \"512M\"", "disk: \"1G\"");
    assert!(
        !super::schema::check(&unknown).is_empty(),
        "an unknown budget is named"
    );
}

#[test]
fn bad_values_are_errors() {
    let text = to_yaml(&sample())
        .replace(
            "apiVersion: agentwatch.dev/v2",
            "apiVersion: agentwatch.dev/v9",
        )
        .replace("\"$WORKSPACE/logs/*.log\"", "\"logs/*.log\"")
        .replace("host: \"github.com\"", "address: \"10.0.0.0/99\"");
    let msgs: Vec<String> = findings(&text).into_iter().map(|f| f.message).collect();
    assert!(
        msgs.iter().any(|m| m.contains("unsupported apiVersion")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("must start with /")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("not an IP address or CIDR")),
        "{msgs:?}"
    );
}

#[test]
fn duplicates_name_the_first() {
    let mut p = sample();
    p.dns.push(DnsRule {
        name: "github.com".into(),
        runs: 1,
    });
    let f = findings(&to_yaml(&p));
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("first on line"), "{}", f[0].message);
}

#[test]
fn empty_profile_with_actions_and_approvals_round_trips() {
    use crate::profile::{ActionKind, Approval, Class, Profile};
    let mut p = Profile::empty("bot");
    p.actions.per_class.insert(Class::File, ActionKind::Deny);
    p.approvals.push(Approval {
        id: "bot-1".into(),
        what: "read /etc/os-release".into(),
        by: "root".into(),
        at: "2026-01-01T00:00:00Z".into(),
    });
    let text = crate::profile::yaml::to_yaml(&p);
    let (back, findings) = parse(&text);
    assert!(findings.is_empty(), "{findings:?}\n{text}");
    assert_eq!(back.expect("parsed"), p);
}

#[test]
fn guardrails_cannot_be_set_to_alert() {
    let text =
        "apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: a\nactions:\n  guardrails: alert\n";
    let (_, findings) = parse(text);
    assert!(
        findings.iter().any(|f| f.message.contains("guardrails")),
        "{findings:?}"
    );
}

/// Every section a profile can have, written out, passes the shape
/// check: a field the writer knows and `schema`'s table does not would
/// be reported as unknown there.
#[test]
fn every_section_written_passes_the_shape_check() {
    use crate::profile::{
        ActionKind, Approval, Granularity, Override, Readiness, Territory, UserGuardrail,
    };
    let mut p = sample();
    p.granularity = Granularity::Strict;
    p.overrides.push(Override {
        path: "$WORKSPACE/vendor".into(),
        granularity: Granularity::Open,
    });
    p.territories.push(Territory {
        path: "$WORKSPACE".into(),
        access: AccessSet::of(&[Access::Read, Access::Write]),
        runs: 3,
    });
    p.io_uring = true;
    p.network[0].model = true;
    p.actions.per_class.insert(Class::File, ActionKind::Deny);
    p.guardrails.push(UserGuardrail {
        path: "/srv/keys/**".into(),
        category: "secrets".into(),
    });
    p.approvals.push(Approval {
        id: "coder-1".into(),
        what: "read /etc/os-release".into(),
        by: "root".into(),
        at: "2026-01-01T00:00:00Z".into(),
    });
    p.readiness = Some(Readiness {
        verdict: "ready".into(),
        sessions: 3,
        flagged: 0,
        reason: "every class stable".into(),
        checked: "2026-11-21T10:05:00Z".into(),
    });
    p.stability.warmup_secs = 5;
    p.stability.quiet_secs = 30;
    let text = to_yaml(&p);
    for section in [
        "granularity:",
        "overrides:",
        "territories:",
        "ioUring:",
        "model:",
        "actions:",
        "guardrails:",
        "approvals:",
        "readiness:",
        "stability:",
        "provenance:",
        "review:",
        "rates:",
        "resources:",
        "models:",
        "instructions:",
        "modelManifests:",
    ] {
        assert!(text.contains(section), "{section} not written:\n{text}");
    }
    let problems = super::schema::check(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    let (back, f) = parse(&text);
    assert!(f.iter().all(|f| f.severity != Severity::Error), "{f:?}");
    assert_eq!(back.expect("parsed"), p);
}

#[test]
fn lint_checks_models_and_instruction_pins() {
    let text = [
        "apiVersion: agentwatch.dev/v2",
        "kind: AgentProfile",
        "agent: a",
        "models:",
        "  - path: relative/x.gguf",
        "    sha256: [nothex]",
        "instructions:",
        "  - path: $WORKSPACE/*.md",
        "    sha256: abc",
        "modelManifests:",
        "  - manifest: /nonexistent/SHA256SUMS",
        "    key: /nonexistent/models.pub",
    ]
    .join("\n");
    let (_, f) = parse(&text);
    let errors: Vec<String> = f
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.message.clone())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("must start with /")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"nothex\" is not a sha256")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("not a pattern")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("\"abc\" is not a sha256")),
        "{errors:?}"
    );
    assert!(
        f.iter().any(|f| f.severity == Severity::Warning
            && f.message.contains("this manifest approves nothing here")),
        "{f:?}"
    );
}

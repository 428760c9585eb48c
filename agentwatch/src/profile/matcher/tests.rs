use super::*;
use crate::{
    event::{Access as OpenAccess, Context, Detail, Endpoint, Family},
    profile::{DnsRule, Executable, FileRule, RateBudget},
};

fn ev(detail: Detail) -> Event {
    Event {
        ts_ns: 1_000,
        pid: 4242,
        tid: 4242,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: "agent".into(),
        agent: "a".into(),
        cgroup_id: 0,
        context: Context {
            exe: Some("/usr/bin/curl".into()),
            ..Context::default()
        },
        kernel: None,
        detail,
    }
}

fn open(path: &str, write: bool) -> Event {
    ev(Detail::Open {
        path: path.into(),
        access: OpenAccess {
            read: !write,
            write,
            create: false,
            truncate: false,
        },
        flags: 0,
        syscall: "openat".into(),
        result: Some(3),
    })
}

fn connect(addr: &str, port: u16) -> Event {
    ev(Detail::Connect {
        endpoint: Endpoint {
            family: Family::Ipv4,
            addr: Some(addr.into()),
            port: Some(port),
            path: None,
        },
        result: Some(0),
    })
}

fn matcher() -> Matcher {
    let mut p = Profile::empty("a");
    p.files.push(FileRule {
        path: "$WORKSPACE/logs/*.log".into(),
        access: AccessSet::of(&[Access::Read]),
        runs: 1,
    });
    p.executables.push(Executable {
        path: "/usr/bin/curl".into(),
        sha256: Vec::new(),
        source: None,
        runs: 1,
    });
    p.network.push(NetRule {
        model: false,
        direction: Direction::Connect,
        host: Some("api.example.com".into()),
        address: None,
        unix: None,
        port: Some(443),
        by: vec!["/usr/bin/curl".into()],
        runs: 1,
    });
    p.network.push(NetRule {
        model: false,
        direction: Direction::Connect,
        host: None,
        address: Some("10.1.2.0/24".into()),
        unix: None,
        port: Some(5432),
        by: Vec::new(),
        runs: 1,
    });
    p.dns.push(DnsRule {
        name: "api.example.com".into(),
        runs: 1,
    });
    p.rates
        .per_minute
        .insert(Class::Delete, RateBudget { peak: 1, budget: 2 });
    let anchors = Anchors::new(
        Some("/w".into()),
        Some("/home/u".into()),
        Some("/tmp".into()),
    );
    Matcher::new(&p, anchors, Guardrails::builtin())
}

fn rules(m: &mut Matcher, e: &Event) -> Vec<String> {
    m.check(e)
        .into_iter()
        .map(|f| f.rule.name().into_owned())
        .collect::<Vec<_>>()
}

#[test]
fn files_by_pattern_and_access() {
    let mut m = matcher();
    assert!(rules(&mut m, &open("/w/logs/a.log", false)).is_empty());
    assert_eq!(rules(&mut m, &open("/w/logs/a.log", true)), ["file/access"]);
    assert_eq!(
        rules(&mut m, &open("/w/src/main.rs", false)),
        ["file/unknown"]
    );
    let f = m.check(&open("/w/logs/a.log", true)).remove(0);
    assert_eq!(f.what, "write $WORKSPACE/logs/a.log");
}

#[test]
fn guardrails_flag_whatever_the_profile_says() {
    let mut m = matcher();
    assert_eq!(
        rules(&mut m, &open("/home/u/.ssh/id_rsa", false)),
        ["guardrail/secrets"]
    );
    assert_eq!(
        rules(&mut m, &open("/home/u/.bashrc", true)),
        ["guardrail/persistence"]
    );
}

#[test]
fn endpoints_by_resolved_name_address_and_executable() {
    let mut m = matcher();
    // Unresolved address: not the named endpoint.
    assert_eq!(
        rules(&mut m, &connect("93.184.216.34", 443)),
        ["network/unknown"]
    );
    let answer = ev(Detail::DnsAnswer {
        name: "api.example.com".into(),
        addrs: vec!["93.184.216.34".into()],
        id: 1,
        ttl: 60,
        server: None,
    });
    assert!(rules(&mut m, &answer).is_empty());
    assert!(rules(&mut m, &connect("93.184.216.34", 443)).is_empty());
    assert_eq!(
        rules(&mut m, &connect("93.184.216.34", 80)),
        ["network/unknown"]
    );
    assert!(rules(&mut m, &connect("10.1.2.77", 5432)).is_empty());
    assert_eq!(
        rules(&mut m, &connect("10.1.3.77", 5432)),
        ["network/unknown"]
    );
    let mut other = connect("93.184.216.34", 443);
    other.context.exe = Some("/usr/bin/python3".into());
    let f = m.check(&other).remove(0);
    assert_eq!(
        f.reason,
        "endpoint in the profile, but not for this executable"
    );
    assert_eq!(f.what, "/usr/bin/python3 -> connect api.example.com:443");
}

#[test]
fn dns_exec_and_rates() {
    let mut m = matcher();
    let q = |n: &str| {
        ev(Detail::Dns {
            name: n.into(),
            qtype: "A".into(),
            id: 1,
            server: None,
        })
    };
    assert!(rules(&mut m, &q("API.example.com.")).is_empty());
    assert_eq!(rules(&mut m, &q("evil.example.net")), ["dns/unknown"]);
    let exec = |p: &str| {
        ev(Detail::Exec {
            path: p.into(),
            argv: vec![],
            argv_truncated: false,
            binary: None,
            result: Some(0),
            cwd: None,
            stdin: None,
            written: false,
            selected: false,
        })
    };
    assert!(rules(&mut m, &exec("/usr/bin/curl")).is_empty());
    assert_eq!(rules(&mut m, &exec("/usr/bin/nc")), ["exec/unknown"]);
    let del = ev(Detail::Unlink {
        path: "/w/logs/x".into(),
        dir: false,
        syscall: "unlink".into(),
        result: Some(0),
    });
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(rules(&mut m, &del));
    }
    // Every delete is outside the file rules; the budget trips once.
    assert_eq!(
        got.iter().filter(|r| *r == "rate/delete").count(),
        1,
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|r| *r == "file/unknown").count(), 5);
}

#[test]
fn cidr_matching() {
    let a = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(address_matches("10.0.0.0/8", a("10.200.1.1")));
    assert!(!address_matches("10.0.0.0/8", a("11.0.0.1")));
    assert!(address_matches("0.0.0.0/0", a("1.2.3.4")));
    assert!(address_matches("2001:db8::/32", a("2001:db8:1::1")));
    assert!(!address_matches("2001:db8::/32", a("10.0.0.1")));
    assert!(address_matches("127.0.0.1", a("127.0.0.1")));
    assert!(!address_matches("10.0.0.0/x", a("10.0.0.1")));
}

fn territory_matcher() -> Matcher {
    let mut p = Profile::empty("a");
    p.territories.push(crate::profile::Territory {
        path: "$WORKSPACE".into(),
        access: AccessSet::of(&[Access::Read, Access::Write, Access::Create]),
        runs: 1,
    });
    p.network.push(NetRule {
        model: true,
        direction: Direction::Connect,
        host: None,
        address: Some("10.0.0.9".into()),
        unix: None,
        port: Some(443),
        by: vec![],
        runs: 1,
    });
    let anchors = Anchors::new(
        Some("/w".into()),
        Some("/home/u".into()),
        Some("/tmp".into()),
    );
    Matcher::new(&p, anchors, Guardrails::builtin())
}

fn with_pid(mut e: Event, pid: u32) -> Event {
    e.pid = pid;
    e.tid = pid;
    e
}

#[test]
fn a_territory_covers_new_names_and_dot_files_but_guardrails_carve_it() {
    let mut m = territory_matcher();
    assert!(rules(&mut m, &open("/w/new/dir/x.py", true)).is_empty());
    assert!(rules(&mut m, &open("/w/.pytest_cache/v", true)).is_empty());
    // Persistence carved out of the territory.
    assert_eq!(
        rules(&mut m, &open("/w/.git/hooks/pre-commit", true)),
        ["guardrail/persistence"]
    );
    // Outside: the class's rule.
    assert_eq!(rules(&mut m, &open("/srv/x", true)), ["file/unknown"]);
}

#[test]
fn a_workspace_secret_taints_its_reader_and_the_model_api_is_refused_to_it() {
    let mut m = territory_matcher();
    // git reads the project's .env: allowed, the reader tainted.
    assert!(rules(&mut m, &with_pid(open("/w/.env", false), 10)).is_empty());
    // Another process talking to the model API is fine.
    assert!(rules(&mut m, &with_pid(connect("10.0.0.9", 443), 11)).is_empty());
    // The reader sending to the model API is exfiltration.
    assert_eq!(
        rules(&mut m, &with_pid(connect("10.0.0.9", 443), 10)),
        ["guardrail/exfiltrate"]
    );
    // ... as is its copy outside the workspace.
    assert_eq!(
        rules(&mut m, &with_pid(open("/srv/copy", true), 10)),
        ["guardrail/exfiltrate"]
    );
    // A secret outside the workspace stays a guardrail.
    assert_eq!(
        rules(&mut m, &open("/home/u/.aws/credentials", false)),
        ["guardrail/secrets"]
    );
    // After any secret read, an unknown endpoint is exfiltration too.
    assert_eq!(
        rules(&mut m, &with_pid(connect("10.9.9.9", 80), 12)),
        ["guardrail/exfiltrate"]
    );
}

/// The agent runs `/w/tool`.
fn run_tool() -> Event {
    ev(Detail::Exec {
        path: "/w/tool".into(),
        argv: vec!["./tool".into()],
        argv_truncated: false,
        binary: Some("/w/tool".into()),
        result: Some(0),
        cwd: Some("/w".into()),
        stdin: None,
        written: false,
        selected: false,
    })
}

#[test]
fn a_recompiled_matcher_remembers_the_taint_the_writes_and_the_names_of_the_run() {
    let mut m = territory_matcher();
    assert!(rules(&mut m, &with_pid(open("/w/.env", false), 10)).is_empty());
    assert!(rules(&mut m, &open("/w/tool", true)).is_empty());
    // An approval recompiles the profile mid-run.
    let mut fresh = territory_matcher();
    fresh.carry_over(m);
    assert_eq!(
        rules(&mut fresh, &with_pid(connect("10.0.0.9", 443), 10)),
        ["guardrail/exfiltrate"],
        "the reader of the secret stays tainted"
    );
    let exec = run_tool();
    assert_eq!(rules(&mut fresh, &exec), ["exec/written"]);
    // Without the carry-over, both would have been forgotten.
    let mut forgetful = territory_matcher();
    assert!(rules(&mut forgetful, &with_pid(connect("10.0.0.9", 443), 10)).is_empty());
    assert!(!rules(&mut forgetful, &exec)
        .iter()
        .any(|r| r == "exec/written"));
}

#[test]
fn running_what_the_agent_wrote_is_flagged_whatever_the_profile_lists() {
    let mut m = territory_matcher();
    assert!(rules(&mut m, &open("/w/tool", true)).is_empty());
    let exec = run_tool();
    assert_eq!(rules(&mut m, &exec), ["exec/written"]);
}

#[test]
fn setuid_bits_are_a_guardrail() {
    let mut m = territory_matcher();
    let chmod = |mode| {
        ev(Detail::Chmod {
            path: "/w/x".into(),
            mode,
            syscall: "chmod".into(),
            result: Some(0),
        })
    };
    assert!(rules(&mut m, &chmod(0o755))
        .iter()
        .all(|r| r != "guardrail/privilege"));
    assert!(rules(&mut m, &chmod(0o4755)).contains(&"guardrail/privilege".to_string()));
}

#[test]
fn a_rule_for_a_name_at_any_depth_allows_that_name_only() {
    let mut p = Profile::empty("a");
    p.files.push(FileRule {
        path: "/**/package.json".into(),
        access: AccessSet::of(&[Access::Read]),
        runs: 1,
    });
    let mut m = Matcher::new(&p, Anchors::default(), Guardrails::builtin());
    assert!(m.check(&open("/srv/app/package.json", false)).is_empty());
    let f = m.check(&open("/etc/hostname", false));
    assert_eq!(f.len(), 1, "{f:?}");
}

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
        runs: 1,
    });
    p.network.push(NetRule {
        direction: Direction::Connect,
        host: Some("api.example.com".into()),
        address: None,
        unix: None,
        port: Some(443),
        by: vec!["/usr/bin/curl".into()],
        runs: 1,
    });
    p.network.push(NetRule {
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
    m.check(e).into_iter().map(|f| f.rule).collect::<Vec<_>>()
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
    let a = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(address_matches("10.0.0.0/8", a("10.200.1.1")));
    assert!(!address_matches("10.0.0.0/8", a("11.0.0.1")));
    assert!(address_matches("0.0.0.0/0", a("1.2.3.4")));
    assert!(address_matches("2001:db8::/32", a("2001:db8:1::1")));
    assert!(!address_matches("2001:db8::/32", a("10.0.0.1")));
    assert!(address_matches("127.0.0.1", a("127.0.0.1")));
    assert!(!address_matches("10.0.0.0/x", a("10.0.0.1")));
}

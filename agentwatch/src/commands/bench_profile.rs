//! Hidden `agentwatch bench-profile`, run by `cargo xtask bench`: profile
//! building throughput and match cost per event, each as a ratio against a
//! baseline measured in the same run (a plain hash set of the same paths).
//! The profile has 1,000 file rules and 100 endpoints, as the issue asks.
use std::{collections::HashSet, hint::black_box, time::Instant};

use serde_json::json;

use crate::{
    event::{Access as OpenAccess, Context, Detail, Endpoint, Event, Family},
    profile::{
        anchors::Anchors,
        builder::{LearnConfig, Learner},
        guardrails::Guardrails,
        matcher::Matcher,
        AccessSet, Direction, FileRule, NetRule, Profile,
    },
};

fn event(i: u64, detail: Detail) -> Event {
    Event {
        ts_ns: i * 1_000,
        pid: 4000 + (i % 8) as u32,
        tid: 4000 + (i % 8) as u32,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        comm: "agent".into(),
        agent: "bench".into(),
        cgroup_id: 0,
        context: Context {
            exe: Some("/usr/bin/python3.11".into()),
            ..Context::default()
        },
        kernel: None,
        detail,
    }
}

fn open(i: u64, path: String) -> Event {
    event(
        i,
        Detail::Open {
            path,
            access: OpenAccess {
                read: true,
                ..OpenAccess::default()
            },
            flags: 0,
            syscall: "openat".into(),
            result: Some(3),
        },
    )
}

fn connect(i: u64, addr: String, port: u16) -> Event {
    event(
        i,
        Detail::Connect {
            endpoint: Endpoint {
                family: Family::Ipv4,
                addr: Some(addr),
                port: Some(port),
                path: None,
            },
            result: Some(0),
        },
    )
}

fn anchors() -> Anchors {
    Anchors::new(
        Some("/w".into()),
        Some("/home/u".into()),
        Some("/tmp".into()),
    )
}

/// 600 literal rules, 300 `*.log` patterns, 100 subtrees; 70 named and 30
/// CIDR endpoints.
fn profile() -> Profile {
    let mut p = Profile::empty("bench");
    let read = AccessSet::of(&[crate::profile::Access::Read]);
    for i in 0..600 {
        p.files.push(FileRule {
            path: format!("/srv/app/pkg{}/mod{i}.py", i % 60),
            access: read,
            runs: 1,
        });
    }
    for i in 0..300 {
        p.files.push(FileRule {
            path: format!("$WORKSPACE/logs{i}/*.log"),
            access: read,
            runs: 1,
        });
    }
    for i in 0..100 {
        p.files.push(FileRule {
            path: format!("/srv/data/set{i}/**"),
            access: read,
            runs: 1,
        });
    }
    for i in 0..100u16 {
        let (host, address) = if i < 70 {
            (Some(format!("svc{i}.example.com")), None)
        } else {
            (None, Some(format!("10.{i}.0.0/16")))
        };
        p.network.push(NetRule {
            direction: Direction::Connect,
            host,
            address,
            unix: None,
            port: Some(if i < 70 { 443 } else { 5432 }),
            by: Vec::new(),
            model: false,
            runs: 1,
        });
    }
    p
}

fn file_events(hit: bool) -> Vec<Event> {
    (0..3000u64)
        .map(|i| {
            let k = i % 1000;
            let path = match (hit, k) {
                (true, k) if k < 600 => format!("/srv/app/pkg{}/mod{k}.py", k % 60),
                (true, k) if k < 900 => format!("/w/logs{}/run.log", k - 600),
                (true, k) => format!("/srv/data/set{}/a/b/c.bin", k - 900),
                (false, k) if k < 600 => format!("/srv/app/pkg{}/other{k}.py", k % 60),
                (false, k) if k < 900 => format!("/w/logs{}/run.txt", k - 600),
                (false, k) => format!("/opt/unknown/{k}/file"),
            };
            open(i, path)
        })
        .collect()
}

fn net_events(hit: bool) -> Vec<Event> {
    (0..3000u64)
        .map(|i| {
            let k = (i % 100) as u16;
            match (hit, k) {
                (true, k) if k < 70 => connect(i, format!("192.0.2.{k}"), 443),
                (true, k) => connect(i, format!("10.{k}.1.1"), 5432),
                (false, k) => connect(i, format!("203.0.113.{k}"), 443),
            }
        })
        .collect()
}

/// Median ns per event of `f` over `rounds` passes of `events`.
fn time_per_event(rounds: usize, events: &[Event], mut f: impl FnMut(&Event)) -> f64 {
    let mut v: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for e in events {
                f(e);
            }
            t.elapsed().as_nanos() as f64 / events.len() as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn path_of(e: &Event) -> &str {
    match &e.detail {
        Detail::Open { path, .. } => path,
        Detail::Connect { endpoint, .. } => endpoint.addr.as_deref().unwrap_or(""),
        _ => "",
    }
}

/// A learning workload: library reads, temp files with random names, PID
/// files, connects and DNS, 200,000 events.
fn learn_events() -> Vec<Event> {
    (0..200_000u64)
        .map(|i| match i % 10 {
            0..=5 => open(i, format!("/usr/lib/python3.11/mod{}.py", i % 400)),
            6 => open(
                i,
                format!(
                    "/tmp/tmp.{:010x}",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24
                ),
            ),
            7 => open(i, format!("/w/out/run-{}.log", 4000 + i % 8)),
            8 => connect(i, format!("10.0.{}.{}", i % 4, i % 200), 443),
            _ => event(
                i,
                Detail::Dns {
                    name: format!("svc{}.example.com", i % 50),
                    qtype: "A".into(),
                    id: i as u16,
                    server: None,
                },
            ),
        })
        .collect()
}

pub fn run() -> anyhow::Result<i32> {
    let rounds = 7;
    let p = profile();
    let mut m = Matcher::new(&p, anchors(), Guardrails::builtin());
    // Names for the host-named endpoints, as DNS answers would give them.
    for k in 0..70u16 {
        m.check(&event(
            0,
            Detail::DnsAnswer {
                name: format!("svc{k}.example.com"),
                addrs: vec![format!("192.0.2.{k}")],
                id: k,
                ttl: 300,
                server: None,
            },
        ));
    }
    let baseline_set: HashSet<String> = file_events(true)
        .iter()
        .chain(net_events(true).iter())
        .map(|e| path_of(e).to_string())
        .collect();
    let mut out = serde_json::Map::new();
    for (name, events) in [
        ("file_hit", file_events(true)),
        ("file_miss", file_events(false)),
        ("network_hit", net_events(true)),
        ("network_miss", net_events(false)),
    ] {
        let ns = time_per_event(rounds, &events, |e| {
            black_box(m.check(e));
        });
        let base = time_per_event(rounds, &events, |e| {
            black_box(baseline_set.contains(path_of(e)));
        });
        out.insert(
            name.into(),
            json!({"ns_per_event": ns, "baseline_ns": base, "ratio": ns / base}),
        );
    }

    let events = learn_events();
    let t = Instant::now();
    let mut l = Learner::new(
        LearnConfig::new("bench"),
        anchors(),
        Guardrails::builtin(),
        0,
    );
    for e in &events {
        l.observe(e);
    }
    let profile = l.finish("bench", 200_000_000);
    let learn_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut set = HashSet::new();
    for e in &events {
        set.insert(path_of(e).to_string());
    }
    black_box(&set);
    let base_secs = t.elapsed().as_secs_f64();
    out.insert(
        "build".into(),
        json!({
            "events": events.len(),
            "events_per_sec": events.len() as f64 / learn_secs,
            "baseline_events_per_sec": events.len() as f64 / base_secs,
            "ratio": learn_secs / base_secs,
            "file_rules": profile.files.len(),
        }),
    );
    println!("{}", serde_json::Value::Object(out));
    Ok(0)
}

use super::*;
use crate::{
    enforce::compile::Mode,
    profile::{rule::Rule, Class},
};

fn event(ts_ns: u64) -> Event {
    Event {
        ts_ns,
        ..crate::enforce::decision::tests::event()
    }
}

fn finding(what: &str) -> Finding {
    Finding {
        rule: Rule::FileUnknown,
        class: Class::File,
        what: what.into(),
        reason: "no file rule covers the path".into(),
    }
}

fn admit(t: &mut Throttle, what: &str, approval: Option<&str>, now: Instant) -> bool {
    let f = finding(what);
    let ev = event(crate::clock::monotonic_ns());
    let d = Decision {
        agent: "coder",
        mode: Mode::Monitor,
        finding: &f,
        action: "alert",
        by: DecidedBy::Userspace,
        approval,
        event: &ev,
        time: std::time::SystemTime::now(),
        repeat: None,
        audit: None,
        context: None,
        pinned: None,
    };
    t.admit(&d, now)
}

#[test]
fn identical_alerts_in_a_window_become_one_with_a_count() {
    let mut t = Throttle::new(AlertPolicy::default());
    let t0 = Instant::now();
    assert!(admit(&mut t, "read /etc/shadow", None, t0));
    for i in 1..500 {
        assert!(!admit(
            &mut t,
            "read /etc/shadow",
            None,
            t0 + Duration::from_millis(i)
        ));
    }
    // Another object is its own alert.
    assert!(admit(&mut t, "read /etc/gshadow", None, t0));
    assert!(t.due(t0 + Duration::from_secs(5)).is_empty());
    let out = t.due(t0 + AlertPolicy::WINDOW);
    assert_eq!(out.len(), 1, "only the burst with repeats says anything");
    assert_eq!(out[0].repeat.count, 499);
    assert_eq!(out[0].sample.finding.what, "read /etc/shadow");
    assert!(out[0].repeat.first <= out[0].repeat.last);
    // After the window, the next one goes out again.
    assert!(admit(
        &mut t,
        "read /etc/shadow",
        None,
        t0 + AlertPolicy::WINDOW
    ));
}

#[test]
fn pauses_are_never_folded_and_off_means_off() {
    let mut t = Throttle::new(AlertPolicy::default());
    let t0 = Instant::now();
    assert!(admit(&mut t, "read /etc/shadow", Some("coder-1"), t0));
    assert!(admit(&mut t, "read /etc/shadow", Some("coder-2"), t0));
    let mut off = Throttle::new(AlertPolicy {
        window: None,
        feed_budget: None,
    });
    for _ in 0..10 {
        assert!(admit(&mut off, "read /etc/shadow", None, t0));
        assert!(off.feed_admit(t0));
    }
    assert!(off.drain().is_empty());
}

#[test]
fn a_burst_replaced_before_collection_is_not_lost() {
    let mut t = Throttle::new(AlertPolicy::default());
    let t0 = Instant::now();
    assert!(admit(&mut t, "x", None, t0));
    assert!(!admit(&mut t, "x", None, t0 + Duration::from_secs(1)));
    // The window closed; a new alert comes before `due` ran.
    assert!(admit(&mut t, "x", None, t0 + Duration::from_secs(11)));
    assert!(!admit(&mut t, "x", None, t0 + Duration::from_secs(12)));
    let out = t.due(t0 + Duration::from_secs(15));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].repeat.count, 1);
    let rest = t.drain();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].repeat.count, 1);
}

#[test]
fn the_feed_budget_counts_what_is_over_and_renews_each_minute() {
    let mut t = Throttle::new(AlertPolicy {
        window: None,
        feed_budget: Some(3),
    });
    let t0 = Instant::now();
    let sent = (0..10).filter(|_| t.feed_admit(t0)).count();
    assert_eq!(sent, 3);
    assert_eq!(t.take_over_budget(), 7);
    assert_eq!(t.take_over_budget(), 0);
    assert!(t.feed_admit(t0 + Duration::from_secs(60)));
}

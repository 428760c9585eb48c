//! The contract between the kernel programs and userspace: both sides
//! compile the codes and layouts of `agentwatch_common::policy`; these
//! tests fail when userspace's view of them (class order, counter slots,
//! rule names) drifts from the kernel's.
use agentwatch_common::policy::{class, decided, rule};

use crate::{event::KernelDecision, profile::Class};

#[test]
fn classes_map_one_to_one_onto_the_kernel_indexes() {
    assert_eq!(Class::ALL.len(), class::COUNT);
    let mut seen = [false; class::COUNT];
    for (i, c) in Class::ALL.into_iter().enumerate() {
        // `Class::ALL` is in kernel order: per-class arrays are walked so.
        assert_eq!(c.kernel_index(), i, "{c:?}");
        assert_eq!(Class::from_kernel_index(i), Some(c));
        seen[c.kernel_index()] = true;
    }
    assert!(seen.iter().all(|s| *s));
    assert_eq!(Class::from_kernel_index(class::COUNT), None);
}

#[test]
fn decision_counters_have_a_slot_each() {
    let last = agentwatch_common::policy::MAX_AGENTS - 1;
    let mut slots: Vec<u32> = [0, 1, last]
        .into_iter()
        .flat_map(|a| {
            (0..class::COUNT).flat_map(move |c| [decided::allowed(a, c), decided::acted(a, c)])
        })
        .collect();
    assert!(slots.iter().all(|s| *s < decided::ENTRIES));
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), 3 * 2 * class::COUNT);
}

/// Every rule code the kernel reports, with the name userspace gives it.
const RULES: &[(u8, &str)] = &[
    (rule::FILE, "file"),
    (rule::EXEC, "exec"),
    (rule::NETWORK, "network"),
    (rule::GUARD_SECRETS, "guardrail/secrets"),
    (rule::GUARD_PERSISTENCE, "guardrail/persistence"),
    (rule::GUARD_AGENTWATCH, "guardrail/agentwatch"),
    (rule::GUARD_PRIVILEGE, "guardrail/privilege"),
    (rule::TAMPER, "guardrail/tamper"),
    (rule::ESCAPE, "guardrail/escape"),
    (rule::UNJUDGED, "path/unjudged"),
    (rule::EXFILTRATE, "guardrail/exfiltrate"),
    (rule::EXEC_WRITTEN, "exec/written"),
    (rule::INTERP, "interp"),
    (rule::TERRITORY, "territory"),
    (rule::TAINT, "taint"),
    (rule::PATH, "path"),
    (rule::EXEC_HASH, "exec/hash"),
    (rule::DNS_ANSWER, "dns_answer"),
    (rule::SOCKET, "socket"),
];

fn name(code: u8) -> String {
    KernelDecision {
        verdict: 0,
        rule: code,
        action: 0,
        held: false,
        paths_at_exit: false,
        real_paths: false,
    }
    .rule_name()
}

#[test]
fn rule_codes_are_distinct_and_named_the_same_on_both_sides() {
    let mut codes: Vec<u8> = RULES.iter().map(|(c, _)| *c).collect();
    codes.push(rule::NONE);
    codes.push(rule::DNS);
    // The rate rules are a range, one per class.
    codes.extend((0..class::COUNT as u8).map(|c| rule::RATE + c));
    codes.extend((0..class::COUNT as u8).map(|c| rule::LANDLOCK + c));
    let n = codes.len();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), n, "two rules share a code");
    for (code, want) in RULES {
        assert_eq!(name(*code), *want, "rule code {code}");
    }
    for c in Class::ALL {
        assert_eq!(
            name(rule::RATE + c.kernel_index() as u8),
            format!("rate/{}", c.name())
        );
        assert_eq!(
            name(rule::LANDLOCK + c.kernel_index() as u8),
            format!("landlock/{}", c.name())
        );
    }
}

#[test]
fn findings_carry_the_kernel_rule_their_name_says() {
    use crate::profile::matcher::Finding;
    let finding = |rule: &str| Finding {
        rule: crate::profile::rule::Rule::from_name(rule).expect("a rule name"),
        class: Class::File,
        what: String::new(),
        reason: String::new(),
    };
    // The violation names findings and kernel records share (the kernel's
    // `exec/hash` is a question to userspace, not a violation).
    for (code, name) in RULES
        .iter()
        .filter(|(_, n)| n.contains('/') && *n != "exec/hash")
    {
        assert_eq!(finding(name).kernel_rule(), *code, "{name}");
    }
    for (name, code) in [
        ("file/unknown", rule::FILE),
        ("file/access", rule::FILE),
        ("exec/unknown", rule::EXEC),
        ("exec/hash", rule::EXEC),
        ("network/unknown", rule::NETWORK),
        ("dns/unknown", rule::DNS),
    ] {
        assert_eq!(finding(name).kernel_rule(), code, "{name}");
    }
    for c in Class::ALL {
        let f = finding(&format!("rate/{}", c.name()));
        assert!(f.is_rate() && !f.hard());
        assert_eq!(
            f.kernel_rule(),
            agentwatch_common::policy::rate_rule(c.kernel_index())
        );
    }
    assert!(finding("guardrail/secrets").hard() && finding("exec/written").hard());
    assert!(!finding("file/unknown").hard());
}

#[test]
fn the_action_is_chosen_by_one_function_for_both_sides() {
    use agentwatch_common::policy::{action, wanted, AgentPolicy};
    let mut pol = AgentPolicy {
        guardrail_action: action::KILL,
        rate_action: action::PAUSE,
        ..AgentPolicy::default()
    };
    pol.actions[Class::Network.kernel_index()] = action::DENY;
    // Monitor: only hard rules act.
    assert_eq!(wanted(&pol, rule::GUARD_SECRETS, 0), action::KILL);
    assert_eq!(wanted(&pol, rule::EXEC_WRITTEN, 0), action::KILL);
    assert_eq!(
        wanted(&pol, rule::NETWORK, Class::Network.kernel_index()),
        action::ALERT
    );
    pol.enforce = 1;
    assert_eq!(
        wanted(&pol, rule::NETWORK, Class::Network.kernel_index()),
        action::DENY
    );
    let rate = agentwatch_common::policy::rate_rule(Class::Delete.kernel_index());
    assert_eq!(
        wanted(&pol, rate, Class::Delete.kernel_index()),
        action::PAUSE
    );
    // Each class gets its own action, whatever its neighbours'; an index
    // past the classes an alert.
    let each = [action::KILL, action::PAUSE, action::DENY, action::ALERT];
    for c in Class::ALL {
        for (n, a) in each.iter().enumerate() {
            for (i, slot) in pol.actions.iter_mut().enumerate() {
                *slot = each[(n + i + 1) % each.len()];
            }
            pol.actions[c.kernel_index()] = *a;
            assert_eq!(wanted(&pol, rule::FILE, c.kernel_index()), *a, "{c:?}");
        }
    }
    assert_eq!(wanted(&pol, rule::FILE, 5), action::ALERT);
    assert_eq!(wanted(&pol, rule::FILE, usize::MAX), action::ALERT);
}

/// Every map and program name userspace looks up is in the built object,
/// and the object has none the table lacks.
#[test]
fn map_and_program_names_match_the_object() {
    use agentwatch_common::names;
    let obj =
        aya_obj::Object::parse(crate::sensors::EBPF_OBJECT).expect("the embedded object parses");
    let mut maps: Vec<&str> = obj
        .maps
        .keys()
        .map(String::as_str)
        .filter(|m| !m.starts_with('.'))
        .collect();
    let mut programs: Vec<&str> = obj.programs.keys().map(String::as_str).collect();
    maps.sort_unstable();
    programs.sort_unstable();
    let mut want_maps = names::MAPS.to_vec();
    let mut want_programs = names::PROGRAMS.to_vec();
    want_maps.sort_unstable();
    want_programs.sort_unstable();
    assert_eq!(maps, want_maps);
    assert_eq!(programs, want_programs);
}

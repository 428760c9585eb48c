//! Pairing of entries and exits: which record's kernel verdict stands.
use agentwatch_common::{
    policy::{action, rule, verdict},
    syscalls as nr, RawEvent, RecordKind,
};

use super::{Decoder, Record};

fn record(kind: RecordKind, v: u8, r: u8, a: u8) -> Record {
    // SAFETY: RawEvent is plain old data; all zeroes is a valid value.
    let mut raw: RawEvent = unsafe { std::mem::zeroed() };
    raw.hdr.kind = kind as u8;
    raw.hdr.syscall_nr = nr::OPENAT;
    raw.hdr.pid = 7;
    raw.hdr.tid = 7;
    raw.hdr.verdict = v;
    raw.hdr.rule = r;
    raw.hdr.action = a;
    // openat(AT_FDCWD, ..., O_RDONLY)
    raw.args[0] = nr::AT_FDCWD as i64 as u64;
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw as *const RawEvent).cast::<u8>(),
            std::mem::size_of::<RawEvent>(),
        )
    };
    Record::from_bytes(bytes).expect("a whole record")
}

/// An entry the kernel could not judge, held for userspace.
fn held_entry() -> Record {
    record(
        RecordKind::SysEnter,
        verdict::UNDECIDED,
        rule::PATH,
        action::HOLD,
    )
}

fn pair(enter: Record, exit: Record) -> crate::event::KernelDecision {
    let mut d = Decoder::default();
    let names: Vec<String> = vec!["a".into()];
    assert!(d.decode(&enter, &names).expect("entry").is_empty());
    let out = d.decode(&exit, &names).expect("exit");
    assert_eq!(out.len(), 1);
    out[0].kernel.expect("a kernel decision")
}

#[test]
fn an_exit_violation_overrides_an_entry_left_to_userspace_and_says_it_was_held() {
    let k = pair(
        held_entry(),
        record(
            RecordKind::SysExit,
            verdict::VIOLATION,
            rule::UNJUDGED,
            action::DENY_KILL,
        ),
    );
    assert_eq!(
        (k.verdict, k.rule, k.action),
        (verdict::VIOLATION, rule::UNJUDGED, action::DENY_KILL)
    );
    assert!(k.held);
}

#[test]
fn an_entry_violation_stands_against_its_exit() {
    let k = pair(
        record(
            RecordKind::SysEnter,
            verdict::VIOLATION,
            rule::GUARD_SECRETS,
            action::DENY_KILL,
        ),
        record(
            RecordKind::SysExit,
            verdict::VIOLATION,
            rule::UNJUDGED,
            action::DENY_KILL,
        ),
    );
    assert_eq!(k.rule, rule::GUARD_SECRETS);
    assert!(!k.held);
}

#[test]
fn an_exit_verdict_fills_an_entry_without_one() {
    let k = pair(
        record(RecordKind::SysEnter, verdict::NONE, 0, 0),
        record(
            RecordKind::SysExit,
            verdict::VIOLATION,
            rule::FILE,
            action::PAUSE,
        ),
    );
    assert_eq!(
        (k.rule, k.action, k.held),
        (rule::FILE, action::PAUSE, false)
    );
}

#[test]
fn an_allowed_exit_does_not_replace_an_undecided_entry() {
    let k = pair(
        held_entry(),
        record(RecordKind::SysExit, verdict::ALLOW, rule::NONE, 0),
    );
    assert_eq!((k.verdict, k.action), (verdict::UNDECIDED, action::HOLD));
}

#[test]
fn an_opened_record_judged_by_the_whole_profile_says_its_names_came_late() {
    let names: Vec<String> = vec!["a".into()];
    let opened = |extra: u64| {
        let mut rec = record(RecordKind::Opened, verdict::VIOLATION, rule::FILE, 0);
        rec.raw.args[2] = extra;
        let out = Decoder::default().decode(&rec, &names).expect("opened");
        assert_eq!(out.len(), 1);
        out[0].kernel.expect("a kernel decision")
    };
    assert!(opened(agentwatch_common::open::OPENED_LATE).paths_at_exit);
    assert!(!opened(0).paths_at_exit);
}

/// An ia32 call's number is not looked up in the x86-64 table (5 is
/// `fstat` there, `open` in ia32's), even were it in the header (the
/// kernel writes `escape::IA32_SYSCALL_NR` there); the detail marks it.
#[test]
fn an_ia32_call_is_named_by_its_own_number() {
    use agentwatch_common::escape;
    let tamper = |how: u64| {
        let mut rec = record(RecordKind::Tamper, verdict::VIOLATION, rule::ESCAPE, 0);
        rec.raw.hdr.syscall_nr = 5;
        rec.raw.args[4] = 5;
        rec.raw.args[5] = how;
        let names: Vec<String> = Vec::new();
        let out = Decoder::default().decode(&rec, &names).expect("tamper");
        match &out[0].detail {
            crate::event::Detail::Tamper {
                syscall, ia32_call, ..
            } => (syscall.to_string(), *ia32_call),
            other => panic!("not a tamper detail: {other:?}"),
        }
    };
    let ia32 = ("int 0x80 (ia32 call 5)".to_string(), Some(5));
    assert_eq!(tamper(escape::IA32), ia32);
    assert_eq!(tamper(escape::IA32_REFUSED), ia32);
    let (name, ia32_call) = tamper(0);
    assert!(!name.contains("ia32") && ia32_call.is_none(), "{name}");
}

#[test]
fn a_reached_record_is_the_call_s_entry_and_says_its_real_paths() {
    let k = pair(
        record(
            RecordKind::Reached,
            verdict::VIOLATION,
            rule::GUARD_PERSISTENCE,
            action::DENY,
        ),
        record(
            RecordKind::SysExit,
            verdict::VIOLATION,
            rule::GUARD_PERSISTENCE,
            action::DENY,
        ),
    );
    assert_eq!(
        (k.verdict, k.rule, k.action),
        (verdict::VIOLATION, rule::GUARD_PERSISTENCE, action::DENY)
    );
    assert!(k.real_paths && !k.paths_at_exit);
    let plain = pair(
        record(
            RecordKind::SysEnter,
            verdict::VIOLATION,
            rule::GUARD_PERSISTENCE,
            action::DENY,
        ),
        record(RecordKind::SysExit, verdict::NONE, 0, 0),
    );
    assert!(!plain.real_paths);
}

//! Privileged tests of the launch sandbox (issue 15): Landlock refusing
//! what lies outside the profile's tree by any route; and the escapes: an agent
//! `agentwatch run` starts tries to leave what agentwatch watches (a file
//! handle instead of a path, a private mount or user namespace, io_uring,
//! ptrace, another process's memory or open files) or to end agentwatch (a thread of it,
//! its pidfd, its process group). Each is refused before it runs and
//! alerted; without the sandbox, the eBPF tamper guard still judges each
//! at its entry.
mod support;

use support::{ia32_alerted, privileged, run::*, IA32_OPEN};

const PY: &str = "/usr/bin/python3";

/// A python snippet that prints `<label> <return> <errno>` for one libc
/// call, as a shell command.
fn py(label: &str, call: &str) -> String {
    format!(
        "{PY} -c 'import ctypes, os\nl = ctypes.CDLL(None, use_errno=True)\n\
         r = {call}\nprint(\"{label}\", r, ctypes.get_errno(), flush=True)'"
    )
}

/// `label -1 1`: the call returned -1 with EPERM.
fn refused(stdout: &str, label: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with(&format!("{label} ")) && l.ends_with(" -1 1"))
}

#[test]
fn escapes_of_a_launched_agent_are_refused_before_they_run_and_alerted() {
    let Some(_g) = privileged() else { return };
    let outside = support::ChildGuard(
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("a process outside the agent"),
    );
    let outside = &outside.0;
    let calls = [
        (
            "handle",
            "l.name_to_handle_at(-100, b\"/etc/hostname\", ctypes.create_string_buffer(136), ctypes.byref(ctypes.c_int()), 0)".to_string(),
            "name_to_handle_at",
        ),
        ("mountns", "l.unshare(0x20000)".into(), "unshare"),
        ("userns", "l.unshare(0x10000000)".into(), "unshare"),
        (
            "uring",
            "l.syscall(425, 8, ctypes.create_string_buffer(120))".into(),
            "io_uring_setup",
        ),
        (
            "mount",
            "l.mount(b\"/etc\", b\"/mnt\", None, 4096, None)".into(),
            "mount",
        ),
        (
            "ptrace",
            format!("l.ptrace(16, {}, 0, 0)", outside.id()),
            "ptrace",
        ),
        ("bpf", "l.syscall(321, 0, None, 0)".into(), "bpf"),
        (
            "getfd",
            format!("l.syscall(438, os.pidfd_open({}), 0, 0)", outside.id()),
            "pidfd_getfd",
        ),
        (
            "vmwrite",
            format!("l.process_vm_writev({}, None, 0, None, 0, 0)", outside.id()),
            "process_vm_writev",
        ),
    ];
    let mut script: Vec<String> = calls.iter().map(|(l, c, _)| py(l, c)).collect();
    // What stays allowed: a fork, and a namespace the list does not name.
    script.push(format!(
        "{PY} -c 'import os\npid = os.fork()\nif pid == 0: os._exit(0)\nos.waitpid(pid, 0); print(\"forked\")'"
    ));
    let d = Run::start(
        "sbx-escape",
        &profile("sbx-escape", 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &[],
        &script.join("\n"),
    )
    .finish();
    assert!(d.stdout.contains("forked"), "{}", d.brief());
    for (label, _, syscall) in calls {
        assert!(
            refused(&d.stdout, label),
            "{label} was not refused with EPERM: {}",
            d.brief()
        );
        let hit = d.alerts.iter().any(|a| {
            a["what"].as_str() == Some(syscall)
                && a["decided_by"] == "kernel"
                && a["action"] == "deny"
                && matches!(
                    a["rule"].as_str(),
                    Some("guardrail/escape" | "guardrail/tamper")
                )
        });
        assert!(hit, "no alert for {syscall}: {}", d.brief());
    }
    assert_eq!(d.summary()["sandbox"]["seccomp"], true, "{}", d.brief());
}

#[test]
fn a_launched_agent_cannot_signal_agentwatch() {
    let Some(_g) = privileged() else { return };
    // The agent's shell is agentwatch's child: `ps -o ppid=` of it is
    // agentwatch. A thread of agentwatch, its pidfd, and kill(0) while the
    // agent shares agentwatch's process group.
    let aw = "int(open(\"/proc/%d/stat\" % os.getppid()).read().split()[3])";
    let script = [
        py(
            "tkill",
            &format!("l.syscall(200, int(sorted(os.listdir(\"/proc/%d/task\" % {aw}))[-1]), 15)"),
        ),
        format!(
            "{PY} -c 'import os, signal\nfd = os.pidfd_open({aw})\nsignal.pidfd_send_signal(fd, 15)\nprint(\"pidfd-sent\")'"
        ),
        format!("{PY} -c 'import os\nos.kill(0, 15)'"),
        "echo after-kill0".to_string(),
    ]
    .join("\n");
    let d = Run::start(
        "sbx-signal",
        &profile("sbx-signal", 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    // agentwatch lived to write its summary; the workload's own shell
    // took the kill(0).
    assert!(
        d.alerts.iter().any(|a| a["type"] == "summary"),
        "agentwatch did not finish: {}",
        d.brief()
    );
    assert!(refused(&d.stdout, "tkill"), "{}", d.brief());
    assert!(!d.stdout.contains("pidfd-sent"), "{}", d.brief());
    let tamper = d.alerts_by("guardrail/tamper");
    for what in ["tkill", "pidfd_open", "kill pid 0"] {
        assert!(
            tamper
                .iter()
                .any(|a| a["what"].as_str().unwrap_or("").starts_with(what)),
            "no tamper alert for {what}: {}",
            d.brief()
        );
    }
}

#[test]
fn without_the_sandbox_an_escape_is_judged_at_its_entry() {
    let Some(_g) = privileged() else { return };
    // `--no-sandbox`: what a daemon-selected agent gets. The unshare is
    // seen at entry and the caller killed there (no BPF LSM here).
    let script = format!("{}\necho after", py("mountns", "l.unshare(0x20000)"));
    let d = Run::start(
        "sbx-off",
        &profile("sbx-off", 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &["--no-sandbox"],
        &script,
    )
    .finish();
    assert!(!d.stdout.contains("mountns"), "{}", d.brief());
    assert!(d.stdout.contains("after"), "{}", d.brief());
    let a = d.alerts_by("guardrail/escape");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert_eq!(a[0]["what"], "unshare", "{}", a[0]);
    assert!(d.summary()["sandbox"].is_null(), "{}", d.brief());
}

/// Every class a profile can refuse, refused: Landlock holds them.
const STRICT: &str = "actions:\n  exec: deny\n  file: deny\n  delete: deny\n  guardrails: deny\n";

#[test]
fn landlock_refuses_what_lies_outside_the_profile_tree_whatever_the_route() {
    let Some(_g) = privileged() else { return };
    // A home outside the workspace: a key, a note, a binary nobody listed.
    let home = support::TempDir::new("ll-home");
    std::fs::create_dir_all(home.0.join(".ssh")).unwrap();
    std::fs::write(home.0.join(".ssh/id_rsa"), "key").unwrap();
    std::fs::write(home.0.join("notes.txt"), "notes").unwrap();
    std::fs::copy("/usr/bin/true", home.0.join("tool")).unwrap();
    let h = home.0.display();
    // Each attempt in a subshell: a guardrail's deny kills only it.
    let script = format!(
        "ln -s {h}/.ssh sd && ln -s {h} hd\n\
         (cat sd/id_rsa) || echo read-refused\n\
         (ln sd/id_rsa copy) || echo link-refused\n\
         (cat {h}/notes.txt) || echo direct-refused\n\
         echo payload > p; (mv p hd/.bashrc) || echo rename-refused\n\
         (ln -s /x hd/.profile) || echo symlink-refused\n\
         (mkdir hd/.config) || echo mkdir-refused\n\
         ({h}/tool) || echo exec-refused\n\
         echo hi > a && mv a b && cat b"
    );
    let d = Run::start(
        "ll-tree",
        &profile("ll-tree", 1, STRICT),
        "enforce",
        &[],
        &script,
    )
    .finish();
    for what in [
        "read", "link", "direct", "rename", "symlink", "mkdir", "exec",
    ] {
        assert!(
            d.stdout.contains(&format!("{what}-refused")),
            "{what}: {}",
            d.brief()
        );
    }
    // Nothing landed, and the agent's own work went on.
    for name in ["copy", ".bashrc", ".profile", ".config"] {
        assert!(
            !home.0.join(name).exists(),
            "{name} was made: {}",
            d.brief()
        );
    }
    assert!(d.stdout.lines().any(|l| l == "hi"), "{}", d.brief());
    // Landlock's refusals are alerts, named by the real path.
    let ll = d.alerts_by("landlock/file");
    let said = |needle: &str| {
        ll.iter()
            .any(|a| a["what"].as_str().unwrap_or("").contains(needle))
    };
    assert!(
        said(".ssh/id_rsa"),
        "the read through sd/ names the key: {}",
        d.brief()
    );
    assert!(said("notes.txt") && said(".config"), "{}", d.brief());
    assert!(
        ll.iter()
            .all(|a| a["action"].as_str().unwrap_or("").contains("Landlock")),
        "{}",
        d.brief()
    );
    assert!(!d.alerts_by("landlock/exec").is_empty(), "{}", d.brief());
    // The planted names are guardrails: judged at entry as well.
    assert!(
        !d.alerts_by("guardrail/persistence").is_empty(),
        "{}",
        d.brief()
    );
    let files = &d.summary()["sandbox"]["files"];
    let held: Vec<&str> = files["held"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(held, ["exec", "file", "delete"], "{}", d.brief());
}

#[test]
fn a_class_that_does_not_refuse_gets_no_landlock_rules() {
    let Some(_g) = privileged() else { return };
    // A class that alerts (or pauses: a person decides, and an approval
    // cannot widen a Landlock domain in force) is the eBPF judge's: the
    // read happens and is alerted.
    let home = support::TempDir::new("ll-pause-home");
    std::fs::write(home.0.join("notes.txt"), "notes").unwrap();
    let script = format!("cat {}/notes.txt", home.0.display());
    let d = Run::start(
        "ll-pause",
        &profile("ll-pause", 1, "actions:\n  file: alert\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    assert!(d.stdout.lines().any(|l| l == "notes"), "{}", d.brief());
    assert!(d.summary()["sandbox"]["files"].is_null(), "{}", d.brief());
    assert!(d.alerts_by("landlock/file").is_empty(), "{}", d.brief());
    assert!(!d.alerts_by("file/unknown").is_empty(), "{}", d.brief());
}

#[test]
fn a_profile_that_allows_io_uring_lets_it_through() {
    let Some(_g) = privileged() else { return };
    // `ioUring: true`: io_uring_setup succeeds (a descriptor, not EPERM)
    // and is no escape; without it the same call is refused (above).
    let script = py(
        "uring",
        "l.syscall(425, 8, ctypes.create_string_buffer(120))",
    );
    let d = Run::start(
        "sbx-uring",
        &profile("sbx-uring", 1, "ioUring: true\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    let line = d
        .stdout
        .lines()
        .find(|l| l.starts_with("uring "))
        .unwrap_or_default()
        .to_string();
    let fd: i64 = line
        .split(' ')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    assert!(fd >= 0, "{line}: {}", d.brief());
    assert!(d.alerts_by("guardrail/escape").is_empty(), "{}", d.brief());
    assert_eq!(d.summary()["sandbox"]["io_uring"], true, "{}", d.brief());
}

#[test]
fn an_ia32_call_of_a_launched_agent_is_killed_before_it_runs_and_alerted() {
    let Some(_g) = privileged() else { return };
    if !support::ia32_calls_run() {
        return;
    }
    let secret = support::TempDir::new("sbx-ia32");
    let key = secret.join("id_ed25519");
    std::fs::write(&key, "ia32-secret-bytes").expect("write the secret");
    // The same open by a process nothing sandboxes reads the file: the
    // snippet works on this kernel.
    let plain = std::process::Command::new(PY)
        .args(["-c", IA32_OPEN, &key])
        .output()
        .expect("python3");
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains("ia32-secret-bytes"),
        "the ia32 open does not work here: {plain:?}"
    );
    let d = Run::start(
        "sbx-ia32",
        &profile("sbx-ia32", 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &[],
        &format!("{PY} -c '{IA32_OPEN}' {key}; echo after $?"),
    )
    .finish();
    // 128 + SIGSYS: the seccomp filter admits x86-64 calls only.
    assert!(d.stdout.contains("after 159"), "{}", d.brief());
    assert!(!d.stdout.contains("ia32-secret-bytes"), "{}", d.brief());
    // Found at the killed thread's exit: nothing else saw the call.
    assert!(ia32_alerted(&d, "deny"), "{}", d.brief());
}

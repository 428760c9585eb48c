//! Privileged evasion tests: a watched process tries the usual ways around
//! a profile (a renamed copy of a binary; a symlink, a hard link,
//! `/proc/self/cwd` or `..` and `.` games towards a guardrail; a file
//! moved under a guardrail after the kernel cached it as clean; a double
//! fork into a new session; an exec from a memfd; an IPv4-mapped IPv6
//! address; an ia32 call; a file taken from another process with
//! `pidfd_getfd`; a packet built by hand on a raw socket; a `chroot` into
//! a guardrail's directory) and must still
//! be attributed, flagged and, in enforce mode, acted on.
mod support;

use std::net::TcpListener;

use support::{privileged, run::*};

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

#[test]
fn a_renamed_copy_of_a_binary_is_running_what_the_agent_wrote() {
    let Some(_g) = privileged() else { return };
    // The copy is an inode the agent wrote: renaming it changes nothing.
    // Running it is exec/written, a hard rule: stopped even in monitor
    // mode, before its first instruction.
    let script = "cp /usr/bin/id tool && mv tool renamed && ./renamed > /dev/null && echo ran";
    let d = Run::start(
        "ev-copy",
        &profile("ev-copy", 1, ""),
        "monitor",
        &["--pause-timeout", "2s"],
        script,
    )
    .finish();
    assert!(!d.stdout.contains("ran"), "{}", d.brief());
    let a = d.alerts_by("exec/written");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert!(
        a[0]["what"].as_str().unwrap_or("").ends_with("/renamed"),
        "{}",
        a[0]
    );
    assert_eq!(a[0]["decided_by"], "kernel", "{}", a[0]);
}

#[test]
fn dot_and_dot_dot_games_towards_a_guardrail_are_resolved_and_denied() {
    let Some(_g) = privileged() else { return };
    // A secret beside the run's directory, reached from a subdirectory of
    // the workspace through `..`, `.` and doubled slashes.
    let secret = support::TempDir::new("ev-dots-secret");
    std::fs::create_dir_all(secret.0.join(".ssh")).unwrap();
    std::fs::write(secret.0.join(".ssh/id_ed25519"), "key").unwrap();
    let name = secret.0.file_name().unwrap().to_string_lossy().into_owned();
    let script = format!(
        "mkdir -p sub/deeper && cd sub/deeper && \
         cat ../../../..//{name}/./.ssh/../.ssh/id_ed25519 > /dev/null 2>&1 || echo refused"
    );
    let run = Run::start(
        "ev-dots",
        &profile("ev-dots", 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &[],
        &script,
    );
    let d = run.finish();
    assert!(
        d.stdout.contains("refused"),
        "the read went through: {}",
        d.stdout
    );
    let a = d.alerts_by("guardrail/secrets");
    assert!(!a.is_empty(), "{}", d.brief());
    let what = a[0]["what"].as_str().unwrap_or("");
    assert!(
        what.ends_with("/.ssh/id_ed25519") && !what.contains(".."),
        "judged on the resolved path: {what}"
    );
    assert!(a[0]["action"].as_str().unwrap_or("").starts_with("deny"));
}

#[test]
fn a_double_forked_setsid_process_is_still_the_agent() {
    let Some(_g) = privileged() else { return };
    // The subshell exits at once: the grandchild is an orphan in its own
    // session when it reads outside the profile.
    let script = "( setsid sh -c 'cat /etc/os-release > /dev/null; echo x > orphan-done' & ); \
                  while [ ! -e orphan-done ]; do sleep 0.05; done; echo waited";
    let d = Run::start(
        "ev-setsid",
        &profile("ev-setsid", 1, ""),
        "monitor",
        &[],
        script,
    )
    .finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    let a = d.alerts_by("file/unknown");
    assert!(
        a.iter().any(|x| x["what"] == "read /etc/os-release"),
        "{}",
        d.brief()
    );
}

#[test]
fn an_exec_from_a_memfd_is_running_what_the_agent_wrote() {
    let Some(_g) = privileged() else { return };
    // A memfd has no name (no hard link): whatever its path, running it is
    // running what the agent wrote.
    let script = "/usr/bin/python3 -c 'import os; fd = os.memfd_create(\"payload\"); \
                  os.write(fd, open(\"/usr/bin/true\", \"rb\").read()); \
                  os.execv(\"/proc/self/fd/%d\" % fd, [\"payload\"])' && echo ran";
    let d = Run::start(
        "ev-memfd",
        &profile("ev-memfd", 1, ""),
        "monitor",
        &["--pause-timeout", "2s"],
        script,
    )
    .finish();
    assert!(!d.stdout.contains("ran"), "{}", d.brief());
    let a = d.alerts_by("exec/written");
    assert!(
        a.iter()
            .any(|x| x["what"].as_str().unwrap_or("").contains("/proc/self/fd/")),
        "{}",
        d.brief()
    );
}

#[test]
fn an_ipv4_mapped_ipv6_connect_is_judged_as_the_ipv4_address() {
    let Some(_g) = privileged() else { return };
    let (_ok, ok_port) = listener();
    let (_other, other_port) = listener();
    let script = format!(
        "/usr/bin/python3 -c 'import socket\n\
for port in ({ok_port}, {other_port}):\n    s = socket.socket(socket.AF_INET6)\n    print(port, s.connect_ex((\"::ffff:127.0.0.1\", port)))'"
    );
    let d = Run::start(
        "ev-mapped",
        // Files alert (Python reads a few), so that only the network is acted on.
        &profile("ev-mapped", ok_port, "actions:\n  file: alert\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    // 0: connected (the allowed endpoint); 1: EPERM (refused in the kernel).
    assert!(d.stdout.contains(&format!("{ok_port} 0")), "{}", d.stdout);
    assert!(
        d.stdout.contains(&format!("{other_port} 1")),
        "{}",
        d.stdout
    );
    let a = d.alerts_by("network/unknown");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert!(a[0]["what"]
        .as_str()
        .unwrap_or("")
        .contains(&other_port.to_string()));
}

/// A secret outside the workspace: `(dir, its name, the key's path)`.
fn secret_beside() -> (support::TempDir, String) {
    let secret = support::TempDir::new("ev-secret");
    std::fs::create_dir_all(secret.0.join(".ssh")).unwrap();
    std::fs::write(secret.0.join(".ssh/id_ed25519"), "key").unwrap();
    let key = secret.0.join(".ssh/id_ed25519").display().to_string();
    (secret, key)
}

/// `script` run to its end in enforce mode with guardrails denied.
fn guardrails_denied(name: &str, extra: &[&str], script: &str) -> Done {
    Run::start(
        name,
        &profile(name, 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        extra,
        script,
    )
    .finish()
}

/// Runs `script` in enforce mode with guardrails denied; asserts each
/// `marker` the script echoes when a read was stopped, and returns the
/// secrets alerts.
fn guarded_run(name: &str, script: &str, markers: &[&str]) -> Vec<serde_json::Value> {
    let d = guardrails_denied(name, &[], script);
    for m in markers {
        assert!(
            d.stdout.contains(m),
            "no {m:?}; the read went through: {}",
            d.stdout
        );
    }
    let a: Vec<serde_json::Value> = d
        .alerts_by("guardrail/secrets")
        .into_iter()
        .cloned()
        .collect();
    assert!(!a.is_empty(), "{}", d.brief());
    for x in &a {
        assert!(
            x["action"].as_str().unwrap_or("").starts_with("deny"),
            "{x}"
        );
    }
    a
}

#[test]
fn a_symlink_to_a_guardrail_file_or_its_directory_is_judged_by_the_file_reached() {
    let Some(_g) = privileged() else { return };
    let (secret, key) = secret_beside();
    let dir = secret.0.join(".ssh").display().to_string();
    // The names the process opens are workspace paths the profile allows.
    let script = format!(
        "ln -s {key} key-link && ln -s {dir} keys && \
         (cat key-link > /dev/null 2>&1 || echo refused-file) && \
         (cat keys/id_ed25519 > /dev/null 2>&1 || echo refused-dir)"
    );
    let a = guarded_run("ev-symlink", &script, &["refused-file", "refused-dir"]);
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(
        a.iter().all(|x| x["event"]["path"] == key.as_str()),
        "judged on the real path: {a:?}"
    );
}

#[test]
fn proc_self_cwd_towards_a_guardrail_is_judged_by_the_file_reached() {
    let Some(_g) = privileged() else { return };
    let (secret, key) = secret_beside();
    let dir = secret.0.join(".ssh").display().to_string();
    // `/proc/self/cwd/...` is an absolute /proc path the profile allows.
    let script =
        format!("cd {dir} && (cat /proc/self/cwd/id_ed25519 > /dev/null 2>&1 || echo refused)");
    let a = guarded_run("ev-proc-cwd", &script, &["refused"]);
    assert!(
        a.iter().any(|x| x["event"]["path"] == key.as_str()),
        "{a:?}"
    );
}

#[test]
fn a_hard_link_to_a_guardrail_file_is_refused_and_removed() {
    let Some(_g) = privileged() else { return };
    let (secret, key) = secret_beside();
    // The link would give the secret a second, innocent-looking name in the
    // workspace; the link call itself is the violation.
    let script = format!(
        "(ln {key} hard 2>/dev/null || echo refused); \
         sleep 0.5; if [ -e hard ]; then echo still-there; else echo gone; fi"
    );
    let a = guarded_run("ev-hardlink", &script, &["refused", "gone"]);
    let ev = &a[0]["event"];
    assert_eq!(ev["kind"], "link", "{ev}");
    assert_eq!(ev["from"], key.as_str(), "{ev}");
    assert!(ev["to"].as_str().unwrap_or("").ends_with("/hard"), "{ev}");
    assert!(secret.0.join(".ssh/id_ed25519").exists());
}

#[test]
fn a_file_moved_under_a_guardrail_after_a_clean_open_is_judged_again() {
    let Some(_g) = privileged() else { return };
    let (secret, _) = secret_beside();
    // The kernel remembers that the open file reached no guardrail; a
    // rename by any process (here this unwatched test) must make it judge
    // again, or the file moved under ~/.ssh would be reopened unjudged.
    let script = "mkdir d && echo x > d/f && exec 3< d/f && \
        cat /proc/self/fd/3 > /dev/null && cat /proc/self/fd/3 > /dev/null && touch ready && \
        i=0; while [ ! -e moved ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; \
        (cat /proc/self/fd/3 > /dev/null 2>&1 && echo read-after-move || echo refused)";
    let name = "ev-moved";
    let run = Run::start(
        name,
        &profile(name, 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &[],
        script,
    );
    let ws = run.ws();
    let t = std::time::Instant::now();
    while !ws.join("ready").exists() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "the workload never opened its file"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let moved = secret.0.join(".ssh/d");
    std::fs::rename(ws.join("d"), &moved).expect("move the directory under .ssh");
    std::fs::write(ws.join("moved"), "").expect("signal the move");
    let d = run.finish();
    assert!(d.stdout.contains("refused"), "{}", d.brief());
    let a = d.alerts_by("guardrail/secrets");
    let want = moved.join("f").display().to_string();
    assert!(
        a.iter().any(|x| x["event"]["path"] == want.as_str()),
        "judged on the path after the move: {a:?}"
    );
}

#[test]
fn a_path_longer_than_the_kernel_copy_is_refused_not_judged_by_its_prefix() {
    let Some(_g) = privileged() else { return };
    let (_secret, key) = secret_beside();
    // `sub/` then `./` past the kernel's 2 KiB copy, then `..` out of the
    // workspace to the secret: the prefix the kernel sees is inside the
    // workspace. The run fails closed: the reader dies before its read
    // returns, the secret's bytes never reach it.
    let script = format!(
        "mkdir sub && /usr/bin/python3 -c 'import os\n\
         p = \"sub/\" + \"./\" * 1100 + \"../\" * (os.getcwd().count(\"/\") + 1) + \"{}\"\n\
         print(\"read\", open(p).read(), flush=True)' ; echo after",
        key.trim_start_matches('/')
    );
    let d = Run::start(
        "ev-long",
        &profile("ev-long", 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    assert!(d.stdout.contains("after"), "{}", d.brief());
    assert!(
        !d.stdout.contains("read key"),
        "the secret was read: {}",
        d.brief()
    );
    let a = d.alerts_by("path/unjudged");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert_eq!(a[0]["decided_by"], "kernel", "{}", a[0]);
    assert!(
        a[0]["action"].as_str().unwrap_or("").starts_with("deny"),
        "{}",
        a[0]
    );
}

#[test]
fn symlinks_directories_and_link_names_planted_under_a_guardrail_are_judged_and_undone() {
    let Some(_g) = privileged() else { return };
    // What a daemon-selected agent gets (no sandbox): symlink, mkdir and
    // a hard link's new name are judged at entry as creations, a rename's
    // new name as a rename; the SIGKILL lands after the call, so what it
    // made is removed and what it moved is moved back.
    let script = "echo x > f\n\
                  (ln -s /x .git/hooks/pre-commit) || echo symlink-stopped\n\
                  (ln f .git/hooks/post-commit) || echo link-stopped\n\
                  (mkdir .git/hooks/sub) || echo mkdir-stopped\n\
                  echo payload > pay; (mv pay .git/hooks/pre-push) || echo rename-stopped";
    let run = Run::start_prepared(
        "ev-plant",
        &profile("ev-plant", 1, "actions:\n  guardrails: deny\n"),
        "monitor",
        &["--no-sandbox"],
        script,
        |ws| std::fs::create_dir_all(ws.join(".git/hooks")).expect("hooks"),
    );
    let (d, dir) = run.finish_keeping_dir();
    let hooks = dir.0.join("ws/.git/hooks");
    assert!(hooks.is_dir(), "{}", d.brief());
    for what in ["symlink", "link", "mkdir", "rename"] {
        assert!(
            d.stdout.contains(&format!("{what}-stopped")),
            "{what}: {}",
            d.brief()
        );
    }
    let a = d.alerts_by("guardrail/persistence");
    assert_eq!(a.len(), 4, "{}", d.brief());
    for name in ["pre-commit", "post-commit", "sub", "pre-push"] {
        assert!(
            a.iter()
                .any(|x| x["what"].as_str().unwrap_or("").ends_with(name)),
            "{name}: {}",
            d.brief()
        );
        assert!(
            std::fs::symlink_metadata(hooks.join(name)).is_err(),
            "{name} is still there: {}",
            d.brief()
        );
    }
    // A rename is moved back: the payload is where it was.
    assert_eq!(
        std::fs::read_to_string(dir.0.join("ws/pay"))
            .ok()
            .as_deref(),
        Some("payload\n"),
        "{}",
        d.brief()
    );
}

#[test]
fn an_unconnected_datagram_outside_the_profile_is_refused_before_it_leaves() {
    let Some(_g) = privileged() else { return };
    // Two UDP receivers: the profile allows the first (as a connect rule:
    // the profile's terms for "may send there"), not the second.
    let ok = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let other = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let ok_port = ok.local_addr().unwrap().port();
    let other_port = other.local_addr().unwrap().port();
    other
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let script = format!(
        "/usr/bin/python3 -c 'import socket\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
for port in ({ok_port}, {other_port}):\n    \
try:\n        s.sendto(b\"x\", (\"127.0.0.1\", port)); print(port, \"sent\")\n    \
except OSError as e:\n        print(port, e.errno)'"
    );
    let d = Run::start(
        "ev-udp",
        &profile("ev-udp", ok_port, "actions:\n  file: alert\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    assert!(
        d.stdout.contains(&format!("{ok_port} sent")),
        "{}",
        d.stdout
    );
    // EPERM, from the cgroup sendmsg hook: nothing left.
    assert!(
        d.stdout.contains(&format!("{other_port} 1")),
        "{}",
        d.stdout
    );
    let mut buf = [0u8; 8];
    assert!(other.recv(&mut buf).is_err(), "the datagram arrived");
    let a = d.alerts_by("network/unknown");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert!(
        a[0]["what"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("127.0.0.1:{other_port}")),
        "{}",
        a[0]
    );
    assert_eq!(a[0]["action"], "deny", "{}", a[0]);
}

#[test]
fn a_bind_outside_the_profile_is_refused_before_anything_can_listen() {
    let Some(_g) = privileged() else { return };
    // Serving workspace data needs a listener: a bind to a port the
    // profile does not list fails (EPERM); port 0 (any free port, an
    // ephemeral local listener) is not judged.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = free.local_addr().unwrap().port();
    drop(free);
    let script = format!(
        "/usr/bin/python3 -c 'import socket\n\
for port in ({port}, 0):\n    \
s = socket.socket()\n    \
try:\n        s.bind((\"127.0.0.1\", port)); s.listen(); print(port, \"listening\")\n    \
except OSError as e:\n        print(port, e.errno)'"
    );
    let d = Run::start(
        "ev-bind",
        &profile("ev-bind", 1, "actions:\n  file: alert\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    assert!(d.stdout.contains(&format!("{port} 1")), "{}", d.stdout);
    assert!(d.stdout.contains("0 listening"), "{}", d.stdout);
    let a = d.alerts_by("network/unknown");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert!(
        a[0]["what"]
            .as_str()
            .unwrap_or("")
            .contains(&port.to_string()),
        "{}",
        a[0]
    );
}

#[test]
fn a_forged_dns_answer_allows_nothing_and_answers_expire_with_their_ttl() {
    let Some(_g) = privileged() else { return };
    // The profile may connect to api.allowed.test:443 at the addresses the
    // agent's answers give. The resolver says 192.0.2.11 for 1 s; the
    // agent forges, from a socket of its own, 192.0.2.10 for the same
    // name and id. Loopback is allowed so the forgery can be sent at all.
    let resolver = support::DnsResponder::answering([192, 0, 2, 11], 1);
    let extra = "  - direction: connect\n    host: api.allowed.test\n    port: 443\n  \
                 - direction: connect\n    address: 127.0.0.0/8\n\
                 dns:\n  - name: api.allowed.test\nactions:\n  file: alert\n";
    let script = format!(
        "/usr/bin/python3 -c '{}'",
        FORGER.replace("RESOLVER", &resolver.addr)
    );
    let d = Run::start(
        "ev-dns",
        &profile("ev-dns", 1, extra),
        "enforce",
        &[],
        &script,
    )
    .finish();
    let said = |label: &str| {
        d.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{label} ")))
            .map(str::to_string)
            .unwrap_or_default()
    };
    // 1 is EPERM: the connect hook refused it. Anything else (no route,
    // a timeout) got past agentwatch.
    let genuine = said("genuine");
    assert!(
        !genuine.is_empty() && genuine != "1",
        "{}\n{}",
        d.stdout,
        d.brief()
    );
    assert_eq!(said("forged"), "1", "{}\n{}", d.stdout, d.brief());
    assert_eq!(said("expired"), "1", "{}\n{}", d.stdout, d.brief());
    let forged = d.alerts_by("dns/forged");
    assert_eq!(forged.len(), 1, "{}", d.brief());
    assert!(
        forged[0]["what"]
            .as_str()
            .unwrap_or("")
            .contains("192.0.2.10"),
        "{}",
        forged[0]
    );
}

/// The agent's side of the forged-answer test (RESOLVER: its address).
const FORGER: &str = r#"import socket, struct, time
def q(qid):
    h = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return h + b"\x03api\x07allowed\x04test\x00" + struct.pack(">HH", 1, 1)
def ans(qid, ip):
    r = bytearray(q(qid)); r[2] = 0x81; r[3] = 0x80; r[7] = 1
    return bytes(r) + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + socket.inet_aton(ip)
def reach(ip):
    c = socket.socket(); c.settimeout(0.3)
    return c.connect_ex((ip, 443))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(q(0x2222), ("RESOLVER", 53)); s.recvfrom(512)
print("genuine", reach("192.0.2.11"), flush=True)
f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(q(0x3333), ("RESOLVER", 53))
f.sendto(ans(0x3333, "192.0.2.10"), ("127.0.0.1", s.getsockname()[1]))
for _ in range(2):
    try: s.recvfrom(512)
    except OSError: pass
print("forged", reach("192.0.2.10"), flush=True)
time.sleep(7)
print("expired", reach("192.0.2.11"), flush=True)
"#;

#[test]
fn a_path_string_unmapped_under_the_call_never_lets_a_secret_through() {
    let Some(_g) = privileged() else { return };
    let (_secret, key) = secret_beside();
    // One thread opens the key by a path in a page another thread keeps
    // taking away and giving back: the kernel's copy at entry, at exit or
    // both may fail. Whatever the interleaving, the open never returns
    // the key to the agent: judged (a guardrail), or judged unjudgeable
    // (path/unjudged), the caller dies before the call returns; an open
    // whose path was gone failed (EFAULT) and reached nothing.
    let script = format!(
        "/usr/bin/python3 -c '{}'; echo after $?",
        RACER.replace("KEY", &key)
    );
    let d = guardrails_denied("ev-race", &["--no-sandbox"], &script);
    assert!(d.stdout.contains("after"), "{}", d.brief());
    assert!(
        !d.stdout.contains("read b"),
        "the key was read: {}\n{}",
        d.stdout,
        d.brief()
    );
    // The loop ends at the first open the kernel saw succeed: killed.
    assert!(!d.stdout.contains("tries"), "never stopped: {}", d.stdout);
    assert!(
        d.stdout.contains("after 137"),
        "the racer did not die of SIGKILL: {}",
        d.stdout
    );
    let stopped = d
        .alerts
        .iter()
        .filter(|a| a["type"] == "alert")
        .filter(|a| {
            matches!(
                a["rule"].as_str(),
                Some("guardrail/secrets" | "path/unjudged")
            )
        })
        .count();
    assert!(
        stopped >= 1,
        "killed with no alert: {}\n{}\n{}",
        d.brief(),
        d.summary(),
        d.stderr
    );
}

/// The agent's side of the race on the path's page (KEY: the secret's path).
const RACER: &str = r#"import ctypes, threading, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.open.argtypes = [ctypes.c_void_p, ctypes.c_int]
path = b"KEY\0"
page = libc.mmap(None, 4096, 3, 0x22, -1, 0)
ctypes.memmove(page, path, len(path))
stop = []
# The page is made inaccessible and accessible again, not unmapped and
# mapped again: between an munmap and a MAP_FIXED mmap the interpreter
# may map its own memory at that address, which the mmap would clobber.
def flip():
    while not stop:
        libc.mprotect(page, 4096, 0)
        libc.mprotect(page, 4096, 3)
t = threading.Thread(target=flip, daemon=True)
t.start()
for i in range(20000):
    fd = libc.open(page, 0)
    if fd >= 0:
        print("read", os.read(fd, 64), flush=True)
        break
stop.append(1)
print("tries", i, flush=True)
"#;

#[test]
fn a_sibling_sharing_the_file_table_dies_with_the_denied_process() {
    let Some(_g) = privileged() else { return };
    let (_secret, key) = secret_beside();
    // clone(CLONE_FILES): the sibling sees every descriptor the parent
    // gets. The parent's open of the key is denied by a SIGKILL at the
    // call, which lands after the open installed its descriptor; the
    // sibling must not live to read through it.
    let script = format!(
        "/usr/bin/python3 -c '{}'; echo after",
        SIBLING.replace("KEY", &key)
    );
    let d = Run::start(
        "ev-sibling",
        &profile("ev-sibling", 1, "actions:\n  guardrails: deny\n"),
        "enforce",
        &[],
        &script,
    )
    .finish();
    // The whole tree is killed (the shell too: no "after").
    assert!(!d.stdout.contains("after"), "{}", d.brief());
    assert!(
        !d.stdout.contains("sibling read"),
        "{}\n{}",
        d.stdout,
        d.brief()
    );
    let a = d.alerts_by("guardrail/secrets");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert_eq!(a[0]["action"], "kill", "deny escalates: {}", a[0]);
}

/// The agent's side of the shared-file-table test (KEY: the secret).
const SIBLING: &str = r#"import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
pid = libc.syscall(56, 0x400 | 17, 0, 0, 0, 0)
if pid == 0:
    time.sleep(1.5)
    for fd in range(3, 32):
        try:
            print("sibling read", os.pread(fd, 64, 0), flush=True)
        except OSError:
            pass
    os._exit(0)
time.sleep(0.3)
fd = os.open("KEY", os.O_RDONLY)
print("parent read", os.read(fd, 64), flush=True)
"#;

#[test]
fn a_path_the_kernel_could_read_only_after_the_call_is_not_taken_at_its_word() {
    let Some(_g) = privileged() else { return };
    let (_secret, key) = secret_beside();
    // The path is in a page whose mapping was just dropped: the kernel
    // reads it (faulting it in), the entry's no-fault copy cannot, and
    // the exit's copy reads what the memory says after the call. An open
    // by a workspace name that is a symlink to the key is judged by the
    // file it reached; the caller dies before the open returns to it.
    let script = format!(
        "ln -s {key} link\n/usr/bin/python3 -c '{}' open $PWD/link; echo after $?",
        LATE_PATH
    );
    let d = guardrails_denied("ev-late-open", &[], &script);
    assert!(!d.stdout.contains("read b"), "{}\n{}", d.stdout, d.brief());
    assert!(d.stdout.contains("after 137"), "{}", d.stdout);
    let a = d.alerts_by("guardrail/secrets");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert_eq!(
        a[0]["event"]["kernel"]["paths_at_exit"], true,
        "the entry read the path after all (not the case under test): {}",
        a[0]
    );
    assert_eq!(a[0]["decided_by"], "kernel", "{}", a[0]);
    // Nothing judged such names before the call, so the real file is
    // judged by the whole profile, not only the guardrails: a workspace
    // symlink to a file the profile does not list is file/unknown.
    let outside = support::TempDir::new("ev-notes");
    let notes = outside.0.join("notes");
    std::fs::write(&notes, "notes").unwrap();
    let script = format!(
        "ln -s {} link\n/usr/bin/python3 -c '{}' open $PWD/link; echo after $?",
        notes.display(),
        LATE_PATH
    );
    let d = Run::start(
        "ev-late-outside",
        &profile("ev-late-outside", 1, "actions:\n  file: alert\n"),
        "enforce",
        &["--no-sandbox"],
        &script,
    )
    .finish();
    // Named as alerts name it (`$TMP/...`).
    let tail = notes.strip_prefix(std::env::temp_dir()).unwrap();
    let tail = tail.display().to_string();
    let a: Vec<_> = d
        .alerts_by("file/unknown")
        .into_iter()
        .filter(|a| a["what"].as_str().is_some_and(|w| w.ends_with(&tail)))
        .collect();
    assert_eq!(a.len(), 1, "{}\n{}", d.stdout, d.brief());
    assert_eq!(a[0]["decided_by"], "kernel", "{}", a[0]);
    assert_eq!(a[0]["event"]["kernel"]["paths_at_exit"], true, "{}", a[0]);
    // Any other call whose names came only from its exit has nothing real
    // to be judged by: path/unjudged, and the caller is denied.
    let script = format!(
        "echo x > p\n/usr/bin/python3 -c '{}' rename $PWD/p $PWD/q; echo after $?",
        LATE_PATH
    );
    let d = guardrails_denied("ev-late-rename", &["--no-sandbox"], &script);
    assert!(!d.stdout.contains("renamed"), "{}", d.stdout);
    assert!(d.stdout.contains("after 137"), "{}", d.stdout);
    let a = d.alerts_by("path/unjudged");
    assert_eq!(a.len(), 1, "{}", d.brief());
    assert_eq!(a[0]["event"]["kernel"]["paths_at_exit"], true, "{}", a[0]);
}

/// The agent's side of the late-path test: `open PATH` or `rename FROM
/// TO`, the (last) path given in a shared page whose mapping is dropped
/// just before the call.
const LATE_PATH: &str = r#"import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
fd = os.open("pathpage", os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 4096)
os.pwrite(fd, sys.argv[-1].encode() + b"\0", 0)
m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
libc.madvise(addr, 4096, 4)
if sys.argv[1] == "open":
    got = libc.open(ctypes.c_void_p(addr), os.O_RDONLY)
    print("read", os.read(got, 64) if got >= 0 else got, flush=True)
else:
    r = libc.rename(sys.argv[2].encode(), ctypes.c_void_p(addr))
    print("renamed", r, flush=True)
"#;

/// An ia32 call (`int 0x80`) from a 64-bit process (an allowed interpreter
/// running a few bytes of machine code): no syscall tracepoint sees it, so
/// the path it opens is judged by nothing. Without the launch sandbox (as
/// for a daemon-selected agent) the raw `sys_enter` guard sees it and the
/// caller dies before the call returns; the file was opened, never read.
#[test]
fn an_ia32_call_that_no_syscall_tracepoint_sees_is_killed_before_it_returns() {
    let Some(_g) = privileged() else { return };
    if !support::ia32_calls_run() {
        return;
    }
    let (_secret, key) = secret_beside();
    let d = guardrails_denied(
        "ev-ia32",
        &["--no-sandbox"],
        &format!(
            "/usr/bin/python3 -c '{}' {key}; echo after $?",
            support::IA32_OPEN
        ),
    );
    assert!(d.stdout.contains("after 137"), "{}", d.brief());
    assert!(!d.stdout.contains("ia32-read"), "{}", d.brief());
    assert!(support::ia32_alerted(&d, "deny"), "{}", d.brief());
}

/// `pidfd_getfd` takes an open file from another process (the same right
/// as ptrace): a secret an unwatched process holds open would be read
/// with no open of the agent's to judge. A tamper violation at its entry,
/// as ptrace is: without the launch sandbox (as for a daemon-selected
/// agent) the caller dies before the call returns. (A launched agent's
/// filter refuses it: tests/sandbox.rs.)
#[test]
fn a_file_taken_from_another_process_by_pidfd_getfd_is_never_read() {
    let Some(_g) = privileged() else { return };
    let (_secret, key) = secret_beside();
    // Unwatched: started by the test, holding the key open as fd 7.
    let holder = support::ChildGuard(
        std::process::Command::new("sh")
            .args(["-c", &format!("exec 7<{key}; exec sleep 60")])
            .spawn()
            .expect("a process holding the key"),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = holder.0.id();
    let d = guardrails_denied(
        "ev-getfd",
        &["--no-sandbox"],
        &format!(
            "/usr/bin/python3 -c 'import ctypes, os\nl = ctypes.CDLL(None, use_errno=True)\n\
             fd = l.syscall(438, os.pidfd_open({pid}), 7, 0)\n\
             print(\"taken\", os.read(fd, 64) if fd >= 0 else ctypes.get_errno(), flush=True)'; echo after $?"
        ),
    );
    assert!(!d.stdout.contains("taken"), "{}\n{}", d.stdout, d.brief());
    denied_and_alerted(&d, "after 137", "guardrail/tamper", "pidfd_getfd");
}

/// A raw socket builds its own packets: the cgroup hooks that judge
/// connects and datagrams never see them. A datagram to a port the
/// profile lacks, written by hand (a UDP header on a raw IPv4 socket).
const RAW_UDP: &str = "import socket, struct, sys\n\
try:\n    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)\n\
except OSError as e:\n    print(\"raw refused\", e.errno, flush=True); sys.exit(0)\n\
port = int(sys.argv[1])\n\
s.sendto(struct.pack(\"!HHHH\", 4444, port, 11, 0) + b\"raw\", (\"127.0.0.1\", 0))\n\
print(\"raw sent\", flush=True)";

/// `RAW_UDP` run in enforce mode with guardrails denied and `allow` in
/// the profile; whether its datagram reached a receiver outside the agent.
fn raw_datagram(extra: &[&str], name: &str, allow: &str) -> (Done, bool) {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    rx.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let d = Run::start(
        name,
        &profile(name, 1, &format!("actions:\n  guardrails: deny\n{allow}")),
        "enforce",
        extra,
        &format!("/usr/bin/python3 -c '{RAW_UDP}' {port}; echo after $?"),
    )
    .finish();
    let mut buf = [0u8; 8];
    (d, rx.recv(&mut buf).is_ok())
}

/// The run printed `marker` and alerted `rule` for what ends with `what`,
/// denied (a launched agent's refusal, or a kill at the call).
fn denied_and_alerted(d: &Done, marker: &str, rule: &str, what: &str) {
    assert!(d.stdout.contains(marker), "{}\n{}", d.stdout, d.brief());
    let denied = d.alerts_by(rule).into_iter().any(|x| {
        x["what"].as_str().is_some_and(|w| w.ends_with(what))
            && x["action"].as_str().unwrap_or("").starts_with("deny")
    });
    assert!(denied, "no {rule} alert for {what}: {}", d.brief());
}

/// A launched agent: the sandbox's filter refuses the raw socket (EPERM)
/// before it exists; alerted from the call's exit.
#[test]
fn a_raw_socket_of_a_launched_agent_is_refused_before_it_exists() {
    let Some(_g) = privileged() else { return };
    let (d, arrived) = raw_datagram(&[], "ev-raw", "");
    assert!(!arrived, "the raw datagram arrived: {}", d.stdout);
    denied_and_alerted(&d, "raw refused 1", "guardrail/escape", "socket");
}

/// Without the launch sandbox (as for a daemon-selected agent) the
/// tamper guard sees the raw socket at its entry and the caller dies
/// before it can send.
#[test]
fn a_raw_socket_of_an_unsandboxed_agent_is_killed_before_it_sends() {
    let Some(_g) = privileged() else { return };
    let (d, arrived) = raw_datagram(&["--no-sandbox"], "ev-raw-off", "");
    assert!(!arrived, "the raw datagram arrived: {}", d.stdout);
    denied_and_alerted(&d, "after 137", "guardrail/escape", "socket");
}

/// `rawSockets: true` (a root `ping` makes one): the same datagram leaves,
/// no escape is alerted, and the run's summary says the sandbox lets raw
/// sockets through.
#[test]
fn a_profile_that_allows_raw_sockets_lets_them_through() {
    let Some(_g) = privileged() else { return };
    let (d, arrived) = raw_datagram(&[], "ev-raw-ok", "rawSockets: true\n");
    assert!(
        arrived,
        "the raw datagram did not arrive: {}\n{}",
        d.stdout,
        d.brief()
    );
    assert!(d.alerts_by("guardrail/escape").is_empty(), "{}", d.brief());
    assert_eq!(d.summary()["sandbox"]["raw_sockets"], true, "{}", d.brief());
}

/// A root agent `chroot`s into a guardrail's directory and opens the key
/// by the name it has there (`/id_ed25519`): the name means nothing, the
/// file it reached (walked to the real root) is the key. Without the
/// launch sandbox, as for a daemon-selected agent.
#[test]
fn a_chroot_into_a_guardrail_directory_is_judged_by_the_file_reached() {
    let Some(_g) = privileged() else { return };
    let (_secret, key) = secret_beside();
    let dir = std::path::Path::new(&key)
        .parent()
        .expect("the key's directory")
        .display()
        .to_string();
    let d = guardrails_denied(
        "ev-chroot",
        &["--no-sandbox"],
        &format!(
            "/usr/bin/python3 -c 'import os\nos.chroot(\"{dir}\")\n\
             print(\"read\", open(\"/id_ed25519\").read(), flush=True)'; echo after $?"
        ),
    );
    assert!(!d.stdout.contains("read"), "{}\n{}", d.stdout, d.brief());
    denied_and_alerted(&d, "after 137", "guardrail/secrets", "/.ssh/id_ed25519");
}

/// Names that do not lead where the kernel goes, on a kernel with the BPF
/// LSM tier: a rename through a symlinked directory (`sd` -> `.git/hooks`),
/// which the entry judges by the name it was given, and a rename whose
/// destination a second thread rewrites between the entry's copy and the
/// kernel's own (`tests/tools/race.c`). Landlock cannot refuse either
/// (`.git/hooks` is inside the granted workspace); the LSM path hooks
/// judge the dentries the kernel reached. `cargo xtask vm-test` runs the
/// same on 6.1; without BPF LSM this is a known limit (README).
#[test]
fn names_that_do_not_lead_where_the_kernel_goes_are_judged_by_what_it_reached() {
    let Some(_g) = privileged() else { return };
    if !support::bpf_lsm_tier(
        "the LSM path hooks are what judges the real destination (README, known limits); the 6.1 VM test runs this",
    ) {
        return;
    }
    let bin = support::race_tool();
    let yaml = profile("ev-race", 1, "actions:\n  guardrails: deny\n").replace(
        "executables:\n",
        &format!("executables:\n  - path: \"{bin}\"\n"),
    );
    let script = format!(
        "ln -s .git/hooks sd; echo x > p2; (mv p2 sd/pre-commit) || echo symlinked-refused\n\
         {bin} .git/hooks/pre-commit 4000"
    );
    let run = Run::start_prepared("ev-race", &yaml, "enforce", &[], &script, |ws| {
        std::fs::create_dir_all(ws.join(".git/hooks")).expect("hooks")
    });
    let (d, dir) = run.finish_keeping_dir();
    let hook = dir.0.join("ws/.git/hooks/pre-commit");
    assert!(d.stdout.contains("symlinked-refused"), "{}", d.brief());
    assert!(
        d.stdout.contains("planted=0"),
        "{}\n{}",
        d.stdout,
        d.brief()
    );
    assert!(std::fs::symlink_metadata(&hook).is_err(), "{}", d.brief());
    let real: Vec<_> = d
        .alerts_by("guardrail/persistence")
        .into_iter()
        .filter(|a| a["event"]["kernel"]["real_paths"] == true)
        .collect();
    assert!(!real.is_empty(), "{}", d.brief());
    assert_eq!(
        real[0]["event"]["to"],
        hook.display().to_string(),
        "{}",
        real[0]
    );
    assert_eq!(real[0]["action"], "deny", "{}", real[0]);
}

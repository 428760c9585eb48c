//! The exit-code contract (README "Exit codes", `agentwatch::exit`), at
//! least one case per command: 0 ok, 1 a verdict, 2 usage or bad input,
//! 3 the environment, 4 a failure while working. Errors under `--json`
//! are one JSON object on stderr. Control commands run with their socket
//! paths pointed into an empty temp dir, so nothing answers them.
mod support;

use std::process::{Command, Stdio};

use serde_json::Value;
use support::{agentwatch, privileged, TempDir};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn expect(self, code: i32, what: &str) -> Self {
        assert_eq!(
            self.code, code,
            "{what}: exit {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// The one JSON error object on stderr.
    fn json_error(&self) -> Value {
        serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}): {}", self.stderr))
    }
}

fn output(mut c: Command) -> Out {
    let o = c.output().expect("run agentwatch");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `agentwatch ARGS` with nothing to talk to: the run and daemon socket
/// paths are in `dir`, where nothing listens.
fn aw(dir: &TempDir, args: &[&str]) -> Out {
    let mut c = agentwatch();
    c.args(args)
        .env("AGENTWATCH_RUN_DIR", dir.join("agents"))
        .env("AGENTWATCH_SOCKET", dir.join("daemon.sock"));
    output(c)
}

const PROFILE: &str = "apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: exitcodes\nexecutables:\n  - path: \"/usr/bin/true\"\nfiles:\n  - path: \"/usr/**\"\n    access: [read, exec]\n";

#[test]
fn usage_and_bad_input_exit_2() {
    let dir = TempDir::new("exit-usage");
    let profile = dir.join("p.yaml");
    std::fs::write(&profile, PROFILE).unwrap();
    let missing = dir.join("missing.jsonl");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();

    aw(
        &dir,
        &["check", "--profile", &profile, "--events", &missing],
    )
    .expect(2, "check of a missing events file");
    let o = aw(&dir, &["check", "--profile", &profile]).expect(2, "check without input");
    assert!(o.stderr.contains("--events"), "{}", o.stderr);
    let o = aw(&dir, &["check", "--profile", &profile, "--events", &empty])
        .expect(2, "check of an empty events file");
    assert!(o.stderr.contains("no events"), "{}", o.stderr);
    let o = aw(
        &dir,
        &[
            "check",
            "--profile",
            &profile,
            "--events",
            &empty,
            "--",
            "true",
        ],
    )
    .expect(2, "check with both a file and a command");
    assert!(o.stderr.contains("not both"), "{}", o.stderr);

    aw(&dir, &["audit", "verify", &missing]).expect(2, "audit verify of a missing log");
    aw(&dir, &["profile", "show", &missing]).expect(2, "profile show of a missing file");
    std::fs::write(dir.join("bad.yaml"), "agent: [unclosed\n").unwrap();
    aw(&dir, &["profile", "lint", &dir.join("bad.yaml")]).expect(2, "lint of a broken profile");
    aw(&dir, &["profile", "diff", &profile, &missing]).expect(2, "diff against a missing file");
    aw(&dir, &["profile", "merge", &missing]).expect(2, "merge of a missing file");
    aw(&dir, &["approve", "not-an-id"]).expect(2, "approve of a malformed id");
    aw(&dir, &["run", "--profile", &missing, "--", "true"]).expect(2, "run without its profile");
    let o = aw(&dir, &["run", "--profile", &profile]).expect(2, "run with nothing to run");
    assert!(o.stderr.contains("--select"), "{}", o.stderr);
    aw(
        &dir,
        &[
            "run",
            "--profile",
            &profile,
            "--select",
            "cgroup=/nonexistent-aw",
        ],
    )
    .expect(2, "run selecting a cgroup that does not exist");
    aw(&dir, &["audit", "verify", "--key", &missing, &profile])
        .expect(2, "audit verify with a missing key");
    aw(&dir, &["profile", "show", &profile, "--overlay", &missing])
        .expect(2, "profile show with a missing overlay");
    aw(&dir, &["report", "--html", &dir.join("r.html"), &missing])
        .expect(2, "report of a missing log");
    aw(&dir, &["drift", "coder", "--config", &missing]).expect(2, "drift without a configuration");
    aw(&dir, &["daemon", "--config", &missing]).expect(2, "daemon without its config");
    aw(&dir, &["--log", "verbose", "doctor"]).expect(2, "an unknown log level");
    aw(&dir, &["learn"]).expect(2, "learn without --agent (clap)");
    aw(&dir, &["no-such-command"]).expect(2, "an unknown command (clap)");

    // Under --json the error is one object on stderr, with its kind.
    let o = aw(&dir, &["profile", "show", &missing, "--json"]).expect(2, "show --json");
    let e = o.json_error();
    assert_eq!(e["kind"], "usage", "{e}");
    assert_eq!(e["exit"], 2, "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("missing.jsonl"),
        "{e}"
    );
}

#[test]
fn verdicts_exit_1_and_agreement_exits_0() {
    let dir = TempDir::new("exit-verdict");
    let profile = dir.join("p.yaml");
    std::fs::write(&profile, PROFILE).unwrap();
    let other = dir.join("q.yaml");
    std::fs::write(&other, PROFILE.replace("/usr/bin/true", "/usr/bin/false")).unwrap();

    let o = aw(&dir, &["profile", "diff", &profile, &profile]).expect(0, "diff of one file");
    assert!(o.stdout.contains("no differences"), "{}", o.stdout);
    aw(&dir, &["profile", "diff", &profile, &other]).expect(1, "diff of two profiles");
    aw(&dir, &["profile", "show", &profile]).expect(0, "profile show");
    aw(&dir, &["profile", "lint", &profile]).expect(0, "lint of a good profile");
    // Reports under --json are one object, whatever the verdict.
    let report = |o: Out| -> serde_json::Value {
        serde_json::from_str(o.stdout.trim())
            .unwrap_or_else(|e| panic!("one JSON object ({e}): {}", o.stdout))
    };
    let same = report(
        aw(&dir, &["profile", "diff", "--json", &profile, &profile]).expect(0, "diff --json"),
    );
    assert_eq!(
        (
            same["same"].as_bool(),
            same["changes"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0))
    );
    let differ =
        report(aw(&dir, &["profile", "diff", "--json", &profile, &other]).expect(1, "diff --json"));
    assert_eq!(differ["same"], false);
    let lint =
        report(aw(&dir, &["profile", "lint", "--json", &profile, &other]).expect(0, "lint --json"));
    assert_eq!(
        (lint["ok"].as_bool(), lint["errors"].as_u64()),
        (Some(true), Some(0))
    );

    // A log with a record changed: broken.
    let log = dir.0.join("audit.jsonl");
    std::fs::write(&log, "{\"not\": \"a chained record\"}\n").unwrap();
    aw(&dir, &["audit", "verify", &log.to_string_lossy()]).expect(1, "verify of a broken log");
    std::fs::write(&log, "").unwrap();
    let o = aw(&dir, &["audit", "verify", &log.to_string_lossy()])
        .expect(1, "verify of an emptied log");
    assert!(o.stdout.contains("no records"), "{}", o.stdout);
}

#[test]
fn nothing_to_talk_to_exits_3() {
    let dir = TempDir::new("exit-env");
    let o = aw(&dir, &["pending"]).expect(3, "pending with nothing running");
    assert!(o.stderr.contains("nothing to ask"), "{}", o.stderr);
    aw(&dir, &["status"]).expect(3, "status with nothing running");
    aw(&dir, &["status", "ghost"]).expect(3, "status of an agent nobody runs");
    aw(&dir, &["approve", "ghost-1"]).expect(3, "approve for an agent nobody runs");
    aw(&dir, &["deny", "ghost-1"]).expect(3, "deny for an agent nobody runs");
    aw(&dir, &["mode", "ghost", "enforce"]).expect(3, "mode of an agent nobody runs");
    aw(&dir, &["pause", "ghost"]).expect(3, "pause of an agent nobody runs");
    aw(&dir, &["resume", "ghost"]).expect(3, "resume of an agent nobody runs");
    aw(&dir, &["reload"]).expect(3, "reload without a daemon");
    aw(&dir, &["exec", "--agent", "ghost", "--", "true"]).expect(3, "exec without a daemon");
    let o = aw(&dir, &["status", "--json"]).expect(3, "status --json");
    assert_eq!(o.json_error()["kind"], "environment");
}

#[test]
fn not_root_exits_3() {
    // setpriv drops to nobody; as nobody the test itself cannot skip.
    let Some(_k) = privileged() else { return };
    let dir = TempDir::new("exit-notroot");
    let profile = dir.join("p.yaml");
    std::fs::write(&profile, PROFILE).unwrap();
    // nobody must read the profile.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX", &dir.0.to_string_lossy()])
        .status();
    for args in [
        vec!["trace", "--", "/bin/true"],
        vec!["run", "--profile", &profile, "--", "/bin/true"],
        vec![
            "learn",
            "--agent",
            "x",
            "--out",
            "/tmp/never.yaml",
            "--",
            "/bin/true",
        ],
    ] {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_agentwatch"))
            .args(&args);
        let o = output(c).expect(3, &format!("{} as nobody", args[0]));
        assert!(o.stderr.contains("root"), "{}", o.stderr);
    }
}

/// Real events judged: what `trace --json` recorded, checked against a
/// profile that does and one that does not cover it.
#[test]
fn check_of_recorded_events_exits_0_or_1() {
    let Some(_k) = privileged() else { return };
    let dir = TempDir::new("exit-check");
    let events = dir.join("events.jsonl");
    let profile = dir.join("learned.yaml");
    let narrow = dir.join("narrow.yaml");
    std::fs::write(&narrow, PROFILE).unwrap();
    aw(
        &dir,
        &[
            "trace",
            "--json",
            "-o",
            &events,
            "--",
            "/bin/cat",
            "/etc/hostname",
        ],
    )
    .expect(0, "trace");
    aw(
        &dir,
        &[
            "learn",
            "--agent",
            "exitcodes",
            "--out",
            &profile,
            "--",
            "/bin/cat",
            "/etc/hostname",
        ],
    )
    .expect(0, "learn");
    aw(&dir, &["check", "--profile", &profile, "--events", &events]).expect(0, "check, covered");
    let o = aw(&dir, &["check", "--profile", &narrow, "--events", &events])
        .expect(1, "check, not covered");
    assert!(o.stdout.contains("flag"), "{}", o.stdout);
    aw(&dir, &["doctor"]).expect(0, "doctor");

    // A reader that stops early (`| head`) ends a report quietly: enough
    // findings to fill the pipe after head has gone.
    let recorded = std::fs::read_to_string(&events).unwrap();
    let many = dir.join("many.jsonl");
    std::fs::write(&many, recorded.repeat(2000)).unwrap();
    let script = format!(
        "{} check --profile {narrow} --events {many} | head -n 1",
        env!("CARGO_BIN_EXE_agentwatch"),
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stdout.starts_with("flag"), "{stdout}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Completions and man pages come from the command line's own
/// definition: every command and flag is in them.
#[test]
fn completions_and_man_pages_are_generated() {
    let dir = TempDir::new("exit-manual");
    let o = aw(&dir, &["completions", "bash"]).expect(0, "completions bash");
    assert!(o.stdout.contains("--alert-window") && o.stdout.contains("approve"));
    aw(&dir, &["completions", "zsh"]).expect(0, "completions zsh");
    aw(&dir, &["completions", "tcsh"]).expect(2, "a shell clap does not know");
    let man = dir.0.join("man");
    aw(&dir, &["man-pages", &man.to_string_lossy()]).expect(0, "man-pages");
    let run = std::fs::read_to_string(man.join("agentwatch-run.1")).expect("agentwatch-run.1");
    assert!(run.contains("alert\\-window"), "{run}");
    assert!(man.join("agentwatch.1").exists() && man.join("agentwatch-learn.1").exists());
    // Renamed flags keep their old spelling.
    let o = aw(&dir, &["learn", "--help"]).expect(0, "learn --help");
    assert!(
        o.stdout.contains("--output") && o.stdout.contains("--stable-after"),
        "{}",
        o.stdout
    );
}

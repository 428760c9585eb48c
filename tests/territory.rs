//! Privileged tests of profiles that hold on a coding agent: learned from
//! three sessions (`learn`, then `learn --append`), a held-out session that
//! does new things of the same kind runs clean under enforce, while running
//! what the agent wrote and reading an agent credential are stopped.
mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;
use support::{agentwatch, privileged, TempDir, PYTHON};

/// One coding session: a new module and its test, an edit in place with
/// `sed -i`, a scratch copy in a `mktemp -d` directory and a `mktemp`
/// file, the tests run with Python, notes in a new directory, an archive.
/// `$NAME` differs per session, as the files a real agent creates do.
const SESSION: &str = r#"
set -e
mkdir -p src tests "notes/$NAME"
printf 'def value():\n    return 1\n' > "src/mod_$NAME.py"
printf 'import unittest\nimport mod_%s as m\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertTrue(m.value() > 0)\n' "$NAME" > "tests/test_$NAME.py"
sed -i 's/return 1/return 2/' "src/mod_$NAME.py"
d=$(mktemp -d)
cp "src/mod_$NAME.py" "$d/"
echo scratch > "$d/scratch-$NAME.txt"
rm -rf "$d"
t=$(mktemp)
ls src tests > "$t"
rm -f "$t"
PYTHONPATH=src PYTHONDONTWRITEBYTECODE=1 @PYTHON@ -m unittest discover -s tests -q 2>&1
echo "- $NAME" > "notes/$NAME/summary.md"
cat src/*.py > /dev/null
tar -cf "$TMPDIR/snapshot.tar" src tests
rm -f "$TMPDIR/snapshot.tar"
echo session-complete
"#;

/// The held-out session: the same kind of work on names and places never
/// seen (a file at the workspace root, a new directory tree, a new file
/// inside a `mktemp -d` directory that Python compiles; running it as a
/// script would be `exec/written`, as the next test shows).
const HELD_OUT: &str = r#"
set -e
echo '# geometry' > README.md
mkdir -p docs/api
echo 'area(), perimeter()' > docs/api/index.md
d=$(mktemp -d)
printf 'print(6 * 7)\n' > "$d/calc.py"
@PYTHON@ -m py_compile "$d/calc.py"
ls "$d"
rm -rf "$d"
"#;

/// A workspace, home and temp dir of the agent's own, as on a real host.
struct Agent {
    root: TempDir,
}

impl Agent {
    fn new(tag: &str) -> Self {
        let root = TempDir::new(tag);
        for d in ["ws", "tmp", "home/.claude"] {
            std::fs::create_dir_all(root.path().join(d)).expect("agent dirs");
        }
        std::fs::write(
            root.path().join("home/.claude/credentials.json"),
            "{\"token\": \"not-a-real-token\"}\n",
        )
        .expect("credentials");
        Self { root }
    }

    fn ws(&self) -> std::path::PathBuf {
        self.root.path().join("ws")
    }

    /// `agentwatch ARGS -- sh -c SCRIPT` in the workspace, with the
    /// agent's HOME and TMPDIR.
    fn command(&self, args: &[&str], script: &str, name: &str) -> Command {
        let mut c = agentwatch();
        c.args(args)
            .args(["--", "sh", "-c", &script.replace("@PYTHON@", PYTHON)])
            .current_dir(self.ws())
            .env("HOME", self.root.path().join("home"))
            .env("TMPDIR", self.root.path().join("tmp"))
            .env("NAME", name)
            .env("SOURCE_DATE_EPOCH", "1795219200")
            // cargo's library path would send every exec probing its dirs.
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null());
        c
    }

    /// Runs `script` under `run --mode enforce` with `profile`; returns the
    /// exit status, stdout and the alerts.
    fn enforce(&self, profile: &Path, script: &str) -> (i32, String, Vec<Value>) {
        let alerts = self.root.path().join("alerts.jsonl");
        let _ = std::fs::remove_file(&alerts);
        let args = [
            "run",
            "--agent",
            "coder",
            "--profile",
            &profile.display().to_string(),
            "--mode",
            "enforce",
            "--pause-timeout",
            "1s",
            "--workspace",
            &self.ws().display().to_string(),
            "--json",
            "-o",
            &alerts.display().to_string(),
        ];
        let o = self
            .command(&args, script, "heldout")
            .output()
            .expect("agentwatch run");
        let alerts: Vec<Value> = std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &Value| v["type"] == "alert")
            .collect();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            alerts,
        )
    }
}

/// Learns agent `coder` from three sessions, each in a checkout of its own
/// (the profile is anchored, so it holds in another workspace).
fn learn_three(dir: &TempDir) -> std::path::PathBuf {
    let profile = dir.path().join("coder.yaml");
    let p = profile.display().to_string();
    for (i, name) in ["strutil", "ops", "calc"].iter().enumerate() {
        let agent = Agent::new(&format!("learn-{name}"));
        // The workspace is the working directory, as for `run`.
        let mut args = vec!["learn", "--agent", "coder"];
        if i == 0 {
            args.extend(["--out", &p]);
        } else {
            args.extend(["--append", &p]);
        }
        let o = agent
            .command(&args, SESSION, name)
            .output()
            .expect("agentwatch learn");
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("session-complete"),
            "learn session {name}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    profile
}

fn rules(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{}: {}",
                a["rule"].as_str().unwrap_or(""),
                a["what"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn a_coding_agent_learned_from_three_sessions_holds_and_stops_what_matters() {
    let Some(_g) = privileged() else { return };
    let dir = TempDir::new("territory");
    let profile = learn_three(&dir);
    let text = std::fs::read_to_string(&profile).expect("profile");
    assert!(
        text.contains("territories:") && text.contains("\"$WORKSPACE\""),
        "the workspace should be learned as a territory:\n{text}"
    );

    // A held-out session: new names, a new directory, a mktemp -d file.
    let agent = Agent::new("heldout");
    let (status, stdout, alerts) = agent.enforce(&profile, HELD_OUT);
    assert!(
        alerts.is_empty(),
        "false alarms: {:?}\n{text}",
        rules(&alerts)
    );
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains("__pycache__"), "{stdout}");
    assert!(agent.ws().join("docs/api/index.md").is_file());

    // Running a script the agent wrote: exec/written, and it never runs.
    let agent = Agent::new("written");
    let script =
        "printf '#!/bin/sh\\necho RAN-$((6*7))\\n' > helper.sh; chmod +x helper.sh; ./helper.sh";
    let (_, stdout, alerts) = agent.enforce(&profile, script);
    let first = alerts
        .first()
        .unwrap_or_else(|| panic!("no alert; {stdout}"));
    assert_eq!(first["rule"], "exec/written", "{:?}", rules(&alerts));
    assert!(
        first["what"].as_str().unwrap_or("").contains("helper.sh"),
        "{:?}",
        rules(&alerts)
    );
    assert!(
        !stdout.contains("RAN-42"),
        "the written script ran: {stdout}"
    );

    // The same for an interpreter fed a script the agent wrote.
    let agent = Agent::new("interpreted");
    let script =
        "d=$(mktemp -d); printf 'print(6 * 7)\\n' > \"$d/calc.py\"; @PYTHON@ \"$d/calc.py\"";
    let (_, stdout, alerts) = agent.enforce(&profile, script);
    let first = alerts
        .first()
        .unwrap_or_else(|| panic!("no alert; {stdout}"));
    assert_eq!(first["rule"], "exec/written", "{:?}", rules(&alerts));
    assert!(!stdout.contains("42"), "the written script ran: {stdout}");

    // An agent credential: a guardrail, whatever was learned.
    let agent = Agent::new("token");
    let script = "cat \"$HOME/.claude/credentials.json\"";
    let (_, stdout, alerts) = agent.enforce(&profile, script);
    let first = alerts
        .first()
        .unwrap_or_else(|| panic!("no alert; {stdout}"));
    assert_eq!(first["rule"], "guardrail/secrets", "{:?}", rules(&alerts));
    assert_eq!(first["what"], "read $HOME/.claude/credentials.json");
    assert!(
        !stdout.contains("not-a-real-token"),
        "the token was read: {stdout}"
    );
}

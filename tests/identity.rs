//! Privileged tests of who an agent runs as (`crate::identity`): an agent
//! process that becomes a person's account (a UID in the human range, a
//! login account with a home under /home) is flagged, with the person's
//! credentials it can reach; `--identity refuse` kills it; every identity
//! the agent ran as is in the audit log.
mod support;

use std::process::Command;

use serde_json::Value;
use support::{privileged, run::*, TempDir};

/// A login account made for the test, removed (with its home) on drop.
struct HumanAccount {
    name: String,
    uid: u32,
}

impl HumanAccount {
    /// None (after saying why) when useradd cannot make one here.
    fn make(tag: &str) -> Option<Self> {
        let name = format!("aw-{tag}-{}", std::process::id() % 100_000);
        let _ = Command::new("userdel").args(["-r", &name]).output();
        let made = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", &name])
            .output()
            .ok()?;
        if !made.status.success() {
            eprintln!(
                "SKIP: useradd could not make a login account: {}",
                String::from_utf8_lossy(&made.stderr)
            );
            return None;
        }
        // Made: the guard removes it even if its UID cannot be read.
        let mut me = Self { name, uid: 0 };
        let out = Command::new("id").args(["-u", &me.name]).output().ok()?;
        me.uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        Some(me)
    }

    fn home(&self) -> String {
        format!("/home/{}", self.name)
    }
}

impl Drop for HumanAccount {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

#[test]
fn an_agent_running_as_a_person_is_flagged_with_the_credentials_it_reaches() {
    let Some(_g) = privileged() else { return };
    let Some(alice) = HumanAccount::make("human") else {
        return;
    };
    // The person's own cloud credentials, in their home.
    std::fs::create_dir_all(format!("{}/.aws", alice.home())).unwrap();
    std::fs::write(format!("{}/.aws/credentials", alice.home()), "[default]\n").unwrap();
    let logs = TempDir::new("identity-audit");
    let audit = logs.join("audit.jsonl");
    let script = format!(
        "setpriv --reuid={0} --regid={0} --clear-groups -- /bin/true; echo done",
        alice.uid
    );
    let d = Run::start(
        "identity",
        &profile("identity", 9, ""),
        "monitor",
        &["--audit", &audit],
        &script,
    )
    .finish();
    assert_eq!(d.status, 0, "{}", d.stderr);
    assert!(d.stdout.contains("done"));
    let flagged: Vec<&Value> = d
        .alerts
        .iter()
        .filter(|a| a["type"] == "identity" && a["rule"] == "identity/human")
        .collect();
    assert_eq!(
        flagged.len(),
        1,
        "one finding for the person's UID: {:?}",
        d.alerts
    );
    let f = flagged[0];
    assert_eq!(f["uid"], alice.uid);
    assert_eq!(f["action"], "alert");
    let what = f["what"].as_str().unwrap_or("");
    assert!(
        what.starts_with(&format!("runs as {}, a person's account", alice.name)),
        "{what}"
    );
    assert!(
        f["credentials"].as_array().is_some_and(|c| c
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.ends_with("/.aws/credentials")))),
        "{f}"
    );
    // Every identity it ran as is audited: root (no finding) and the person.
    let ids: Vec<Value> = support::daemon::audit_records(std::path::Path::new(&audit))
        .into_iter()
        .filter(|r| r["type"] == "identity")
        .collect();
    assert!(
        ids.iter().any(|r| r["uid"] == 0 && r["human"] == false),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .any(|r| r["uid"] == alice.uid && r["human"] == true && r["rule"] == "identity/human"),
        "{ids:?}"
    );
}

#[test]
fn refuse_kills_an_agent_that_runs_as_a_person() {
    let Some(_g) = privileged() else { return };
    let Some(bob) = HumanAccount::make("refuse") else {
        return;
    };
    let script = format!(
        "setpriv --reuid={0} --regid={0} --clear-groups -- sleep 10; echo survived",
        bob.uid
    );
    let d = Run::start(
        "identity-refuse",
        &profile("identity-refuse", 9, ""),
        "monitor",
        &["--identity", "refuse"],
        &script,
    )
    .finish();
    assert!(!d.stdout.contains("survived"), "{}", d.stdout);
    assert_ne!(d.status, 0, "{}", d.stderr);
    let f = d
        .alerts
        .iter()
        .find(|a| a["type"] == "identity")
        .unwrap_or_else(|| panic!("no identity finding: {:?}", d.alerts));
    assert_eq!(f["action"], "kill");
    assert_eq!(f["uid"], bob.uid);
}

#[test]
fn doctor_reads_who_configured_agents_run_as_from_their_selectors() {
    let Some(_g) = privileged() else { return };
    let Some(carol) = HumanAccount::make("doctor") else {
        return;
    };
    let dir = TempDir::new("identity-doctor");
    std::fs::write(dir.0.join("a.yaml"), profile("a", 9, "")).unwrap();
    let config = dir.0.join("agentwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[agent]]\nname = \"person\"\nprofile = \"a.yaml\"\n[agent.select]\nuser = \"{}\"\n\n\
             [[agent]]\nname = \"service\"\nprofile = \"a.yaml\"\n[agent.select]\nuser = \"root\"\n",
            carol.name
        ),
    )
    .unwrap();
    let out = support::agentwatch()
        .args(["doctor", "--json", "--config"])
        .arg(&config)
        .output()
        .expect("doctor");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let ids = v["identities"].as_array().expect("identities");
    let person = ids.iter().find(|i| i["agent"] == "person").expect("person");
    assert_eq!(person["human"], true, "{person}");
    assert_eq!(person["uid"], carol.uid);
    assert_eq!(person["selector"], format!("user={}", carol.name));
    let service = ids
        .iter()
        .find(|i| i["agent"] == "service")
        .expect("service");
    assert_eq!(service["human"], false, "{service}");
    // A configuration with a problem is a usage error, said as such.
    std::fs::write(&config, "[identity]\nhuman = \"block\"\n").unwrap();
    let out = support::agentwatch()
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .expect("doctor");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("off, alert or refuse"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

use super::*;
use crate::profile::Class;

const PROFILE: &str = "apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: coder\nexecutables:\n  - path: /usr/bin/*\n";

/// A temp dir holding a valid profile; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("aw-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("coder.yaml"), PROFILE).unwrap();
        Self(d)
    }
    fn parse(&self, text: &str) -> Result<Config, ConfigReport> {
        parse(&self.0.join("agentwatch.toml"), text)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn only_problem(r: Result<Config, ConfigReport>) -> Problem {
    let report = r.expect_err("the config should be refused");
    assert_eq!(report.problems.len(), 1, "{report}");
    report.problems[0].clone()
}

#[test]
fn a_full_config_reads_back() {
    let d = Dir::new("full");
    let c = d
        .parse(
            r#"
[daemon]
pause_timeout = "90s"
ring_buffer_mb = 16

[audit]
path = "audit.jsonl"
fsync = "1s"
rotate_mb = 2

[[agent]]
name = "coder"
profile = "coder.yaml"
mode = "enforce"
workspace = "/srv/coder"
[agent.select]
systemd_unit = "coder"
user = ["root", 1234]
exe = "/usr/bin/true"
[agent.actions]
file = "deny"
guardrails = "kill"
"#,
        )
        .unwrap();
    assert_eq!(c.pause_timeout, Duration::from_secs(90));
    assert_eq!(c.ring_buffer_mb, 16);
    let audit = c.audit.unwrap();
    assert_eq!(audit.path, d.0.join("audit.jsonl"));
    assert_eq!(audit.fsync, Fsync::Interval(Duration::from_secs(1)));
    assert_eq!(audit.rotate_bytes, Some(2 << 20));
    let a = &c.agents[0];
    assert_eq!(a.mode, Mode::Enforce);
    assert_eq!(a.profile_path, d.0.join("coder.yaml"));
    assert_eq!(a.profile.actions.for_class(Class::File), ActionKind::Deny);
    assert_eq!(a.profile.actions.guardrails, ActionKind::Kill);
    // Not overridden: the profile's default.
    assert_eq!(
        a.profile.actions.for_class(Class::Network),
        ActionKind::Deny
    );
    assert_eq!(a.anchors.workspace.as_deref(), Some("/srv/coder"));
    assert_eq!(
        a.selectors,
        vec![
            Selector::SystemdUnit("coder.service".into()),
            Selector::Uid("root".into()),
            Selector::Uid("1234".into()),
            Selector::Exe("/usr/bin/true".into()),
        ]
    );
    assert_eq!(
        a.profile_sha256,
        crate::audit::line_hash(PROFILE.as_bytes())
    );
}

#[test]
fn syntax_and_unknown_keys_are_named_by_line_and_column() {
    let d = Dir::new("syntax");
    let p = only_problem(d.parse("[daemon]\npause_timeout = \n"));
    assert_eq!((p.line, p.file.clone()), (2, d.0.join("agentwatch.toml")));
    let p = only_problem(d.parse("[daemon]\nring_bufer_mb = 8\n"));
    assert_eq!(p.line, 2);
    assert!(p.message.contains("ring_bufer_mb"), "{}", p.message);
    let p = only_problem(d.parse(
        "[[agent]]\nname = \"coder\"\nprofile = \"coder.yaml\"\nmode = \"block\"\n[agent.select]\nuser = \"root\"\n",
    ));
    assert_eq!(p.line, 4, "{}", p.message);
}

#[test]
fn semantic_errors_point_at_their_value() {
    let d = Dir::new("semantic");
    let agent = |select: &str, extra: &str| {
        format!("[[agent]]\nname = \"coder\"\nprofile = \"coder.yaml\"\n{extra}[agent.select]\n{select}\n")
    };
    let p = only_problem(d.parse(&agent("user = \"no-such-user-xyz\"", "")));
    assert_eq!((p.line, p.column), (5, 8));
    assert!(p.message.contains("no-such-user-xyz"));
    let p = only_problem(d.parse(&agent("exe = \"bin/x\"", "")));
    assert!(p.message.contains("absolute"), "{}", p.message);
    let p = only_problem(d.parse(&agent("", "")));
    assert!(p.message.contains("names nothing"), "{}", p.message);
    let p = only_problem(d.parse(&format!(
        "[daemon]\npause_timeout = \"5w\"\n{}",
        agent("user = \"root\"", "")
    )));
    assert_eq!(p.line, 2);
    let p = only_problem(d.parse(&agent(
        "user = \"root\"",
        "[agent.actions]\nguardrails = \"alert\"\n",
    )));
    // The table that says it.
    assert_eq!(p.line, 4);
    assert!(p.message.contains("guardrails"), "{}", p.message);
}

#[test]
fn a_bad_profile_is_reported_at_the_config_line_with_its_own_report() {
    let d = Dir::new("profile");
    std::fs::write(d.0.join("bad.yaml"), "agent: [\n").unwrap();
    let text =
        "[[agent]]\nname = \"coder\"\nprofile = \"bad.yaml\"\n[agent.select]\nuser = \"root\"\n";
    let p = only_problem(d.parse(text));
    assert_eq!(p.line, 3);
    assert!(p.detail.unwrap().contains("bad.yaml"));
    let text = text.replace("bad.yaml", "missing.yaml");
    let p = only_problem(d.parse(&text));
    assert!(p.message.contains("missing.yaml"), "{}", p.message);
}

#[test]
fn agents_cannot_share_a_name_or_a_selector() {
    let d = Dir::new("dup");
    let one = |name: &str, user: &str| {
        format!("[[agent]]\nname = \"{name}\"\nprofile = \"coder.yaml\"\n[agent.select]\nuser = \"{user}\"\n")
    };
    let p = only_problem(d.parse(&(one("a", "root") + &one("a", "1"))));
    assert!(p.message.contains("defined twice"), "{}", p.message);
    let p = only_problem(d.parse(&(one("a", "root") + &one("b", "root"))));
    assert!(
        p.message.contains("already selects agent a"),
        "{}",
        p.message
    );
    assert_eq!(p.line, 10);
}

#[test]
fn line_and_column_count_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
}

#[test]
fn the_shipped_example_is_valid() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agentwatch.example.toml");
    let c = load(&example).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(c.agents.len(), 1);
    assert_eq!(c.agents[0].name, "coder");
    assert_eq!(
        c.audit.unwrap().fsync,
        Fsync::Interval(Duration::from_secs(1))
    );
}

#[test]
fn a_learning_agent_starts_without_a_profile_and_records_beside_the_audit_log() {
    let d = Dir::new("learn");
    let c = d
        .parse(
            r#"
[audit]
path = "state/audit.jsonl"

[[agent]]
name = "newbie"
profile = "newbie.yaml"
learn = true
learn_idle = "2s"
[agent.select]
systemd_unit = "newbie"
"#,
        )
        .unwrap_or_else(|r| panic!("{r}"));
    let a = c.agent("newbie").expect("the agent");
    let s = a.shadow.as_ref().expect("learning");
    assert_eq!(s.profile, d.0.join("newbie.yaml"));
    assert_eq!(s.sessions, d.0.join("state/sessions/newbie"));
    assert_eq!(s.fallback, d.0.join("state/profiles/newbie.yaml"));
    assert_eq!(s.idle, Duration::from_secs(2));
    assert_eq!(s.longest, Duration::from_secs(3600));
    assert!(a.profile.files.is_empty());
}

#[test]
fn learning_is_refused_under_enforce_and_a_bad_session_length_is_named() {
    let d = Dir::new("learn-enforce");
    let p = only_problem(d.parse(
        "[[agent]]\nname = \"coder\"\nprofile = \"coder.yaml\"\nmode = \"enforce\"\nlearn = true\n[agent.select]\nsystemd_unit = \"coder\"\n",
    ));
    assert!(
        p.message.contains("learn = true needs mode"),
        "{}",
        p.message
    );
    assert_eq!(p.line, 5);
    let p = only_problem(d.parse(
        "[[agent]]\nname = \"coder\"\nprofile = \"coder.yaml\"\nlearn = true\nlearn_session = \"soon\"\n[agent.select]\nsystemd_unit = \"coder\"\n",
    ));
    assert!(p.message.starts_with("learn_session:"), "{}", p.message);
    // A missing profile is an error for an agent that is not learned.
    let p = only_problem(d.parse(
        "[[agent]]\nname = \"coder\"\nprofile = \"absent.yaml\"\n[agent.select]\nsystemd_unit = \"coder\"\n",
    ));
    assert!(p.message.contains("is not usable"), "{}", p.message);
}

#[test]
fn ui_listens_on_loopback_or_a_unix_socket_with_its_address_beside_the_state() {
    let d = Dir::new("ui");
    let agent =
        "[[agent]]\nname = \"coder\"\nprofile = \"coder.yaml\"\n[agent.select]\nuser = \"root\"\n";
    let c = d
        .parse(&format!("[ui]\nlisten = \"127.0.0.1:7878\"\n{agent}"))
        .unwrap();
    let ui = c.ui.expect("a ui");
    assert_eq!(ui.listen, "127.0.0.1:7878".parse().unwrap());
    assert_eq!(ui.url_file, PathBuf::from("/run/agentwatch/ui.url"));
    let c = d
        .parse(&format!(
            "[ui]\nlisten = \"unix:/run/aw/ui.sock\"\nurl_file = \"u.url\"\n{agent}"
        ))
        .unwrap();
    assert_eq!(c.ui.unwrap().url_file, d.0.join("u.url"));
    let p = only_problem(d.parse(&format!("[ui]\nlisten = \"0.0.0.0:7878\"\n{agent}")));
    assert_eq!(p.line, 2, "{}", p.message);
    assert!(p.message.contains("serves only this host"), "{}", p.message);
    assert!(d.parse(agent).unwrap().ui.is_none());
}

#[test]
fn identity_policy_reads_back_and_a_bad_word_is_named_at_its_line() {
    let d = Dir::new("identity");
    let agent =
        "[[agent]]\nname = \"coder\"\nprofile = \"coder.yaml\"\n[agent.select]\nuser = \"root\"\n";
    let c = d.parse(agent).unwrap();
    assert_eq!(c.identity, crate::identity::Policy::default());
    let c = d
        .parse(&format!(
            "[identity]\nhuman = \"refuse\"\ncredentials = \"off\"\nhuman_uids = \"2000-3000\"\n{agent}"
        ))
        .unwrap();
    assert_eq!(c.identity.human, crate::identity::Act::Refuse);
    assert_eq!(c.identity.credentials, crate::identity::Act::Off);
    assert_eq!(c.identity.human_uids, 2000..=3000);
    let p = only_problem(d.parse(&format!("[identity]\nhuman = \"block\"\n{agent}")));
    assert_eq!(p.line, 2, "{}", p.message);
    assert!(p.message.contains("off, alert or refuse"), "{}", p.message);
    let p = only_problem(d.parse(&format!("[identity]\nhuman_uids = \"1000\"\n{agent}")));
    assert!(p.message.contains("FIRST-LAST"), "{}", p.message);
}

//! The `[[agent]]` tables: each validated (its profile loaded, users and
//! groups looked up, selectors checked), no two claiming the same
//! processes.
use super::*;

/// Every `[[agent]]`, each once, no two claiming the same processes.
pub(super) fn agents(
    p: &mut Problems,
    docs: &[Spanned<AgentDoc>],
    abs: &dyn Fn(&Path) -> PathBuf,
    have_api: bool,
    spool_base: &Path,
) -> Vec<AgentConfig> {
    let mut agents: Vec<AgentConfig> = Vec::new();
    let mut claimed: Vec<(Selector, String)> = Vec::new();
    for a in docs {
        if let Some(cfg) = agent(p, a, abs, &mut claimed, have_api, spool_base) {
            if agents.iter().any(|o| o.name == cfg.name) {
                p.at(
                    Some(a.get_ref().name.span()),
                    format!("agent {:?} is defined twice", cfg.name),
                );
            }
            agents.push(cfg);
        }
    }
    agents
}

/// Validates one `[[agent]]` table.
fn agent(
    p: &mut Problems,
    a: &Spanned<AgentDoc>,
    abs: &dyn Fn(&Path) -> PathBuf,
    claimed: &mut Vec<(Selector, String)>,
    have_api: bool,
    spool_base: &Path,
) -> Option<AgentConfig> {
    let d = a.get_ref();
    let name = d.name.get_ref().clone();
    check_name(p, &d.name);
    let pods =
        crate::daemon::k8s_config::pods(p, d.select.get_ref().kubernetes.as_ref(), &name, have_api);
    let selectors = selectors(p, &d.select, &name, claimed);
    let profile_path = abs(d.profile.get_ref());
    let loaded = std::fs::read(&profile_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            parse::load(&profile_path)
                .map(|prof| (prof, bytes))
                .map_err(|r| r.to_string())
        });
    let learn = d.learn.as_ref().is_some_and(|l| *l.get_ref());
    if learn && d.mode != Mode::Monitor {
        p.at(
            d.learn.as_ref().map(Spanned::span),
            format!("agent {name}: learn = true needs mode = \"monitor\" (nothing but guardrails is enforced while an agent is learned); set the mode to enforce once `agentwatch profile readiness` says the profile is ready"),
        );
    }
    let (mut profile, mut bytes) = match loaded {
        Ok(v) => v,
        // Learning starts from nothing: the first session writes the file.
        Err(_) if learn && !profile_path.exists() => (Profile::empty(&name), Vec::new()),
        Err(why) => {
            p.with_detail(
                Some(d.profile.span()),
                format!(
                    "agent {name}: profile {} is not usable",
                    profile_path.display()
                ),
                Some(why),
            );
            return None;
        }
    };
    // What `approve --learn` put beside a profile it could not write.
    let overlay = crate::profile::overlay::path_for(spool_base, &name);
    match crate::profile::overlay::load(&overlay) {
        Ok(Some(o)) => {
            crate::profile::overlay::apply(&mut profile, &o);
            // The profile's version names the overlay too.
            bytes.extend(std::fs::read(&overlay).unwrap_or_default());
        }
        Ok(None) => {}
        Err(r) => p.with_detail(
            Some(d.profile.span()),
            format!(
                "agent {name}: the overlay {} of learned approvals is not usable; fix or remove it",
                overlay.display()
            ),
            Some(r.to_string()),
        ),
    }
    let file_actions = profile.actions.clone();
    if let Some(act) = &d.actions {
        if act.get_ref().guardrails == Some(ActionKind::Alert) {
            p.at(
                Some(act.span()),
                "[agent.actions] guardrails = \"alert\" would let a guardrail be crossed; use deny, pause or kill".into(),
            );
        }
        act.get_ref().apply(&mut profile.actions);
    }
    let anchors = Anchors::new(
        d.workspace.as_ref().map(|w| w.display().to_string()),
        d.home.as_ref().map(|w| w.display().to_string()),
        d.tmp.as_ref().map(|w| w.display().to_string()),
    );
    let shadow = learn.then(|| shadow_config(p, d, &name, &profile_path, spool_base, &anchors));
    let drift = spool_base.join("drift").join(format!("{name}.json"));
    Some(AgentConfig {
        shadow,
        budget_action: d.budget_action,
        name,
        profile_path,
        overlay,
        drift,
        drift_threshold: d.drift_threshold,
        context: d.context,
        profile,
        file_actions,
        profile_sha256: crate::audit::line_hash(&bytes),
        mode: d.mode,
        anchors,
        selectors,
        pods,
    })
}

/// A duration key of a learning agent, at least 1s; `default` when absent.
fn learn_duration(
    p: &mut Problems,
    key: &str,
    v: Option<&Spanned<String>>,
    default: Duration,
) -> Duration {
    let Some(v) = v else {
        return default;
    };
    match crate::units::parse_duration(v.get_ref()) {
        Ok(d) if d >= Duration::from_secs(1) => d,
        Ok(_) => {
            p.at(Some(v.span()), format!("{key}: give at least 1s"));
            default
        }
        Err(e) => {
            p.at(Some(v.span()), format!("{key}: {e}"));
            default
        }
    }
}

/// The selectors of `[agent.select]`; names a selector another agent
/// already claimed, a user that does not exist, or an empty table.
fn selectors(
    p: &mut Problems,
    s: &Spanned<SelectDoc>,
    agent: &str,
    claimed: &mut Vec<(Selector, String)>,
) -> Vec<Selector> {
    let d = s.get_ref();
    let mut out: Vec<(Selector, Range<usize>)> = Vec::new();
    if let Some(v) = &d.systemd_unit {
        for u in v.get_ref().to_vec() {
            out.push((
                Selector::SystemdUnit(crate::selectors::unit_name(&u)),
                v.span(),
            ));
        }
    }
    if let Some(v) = &d.cgroup {
        for c in v.get_ref().to_vec() {
            out.push((Selector::Cgroup(c), v.span()));
        }
    }
    if let Some(v) = &d.user {
        for u in v.get_ref().to_vec() {
            let text = match u {
                UserDoc::Id(n) => n.to_string(),
                UserDoc::Name(n) => n,
            };
            let sel = Selector::Uid(text);
            if let Err(e) = sel.resolve(None) {
                p.at(Some(v.span()), format!("agent {agent}: {e}"));
            }
            out.push((sel, v.span()));
        }
    }
    if let Some(v) = &d.exe {
        for e in v.get_ref().to_vec() {
            if !e.is_absolute() {
                p.at(
                    Some(v.span()),
                    format!("agent {agent}: exe {}: give an absolute path", e.display()),
                );
            }
            out.push((Selector::Exe(e), v.span()));
        }
    }
    if out.is_empty() && d.kubernetes.is_none() && !d.launched {
        p.at(
            Some(s.span()),
            format!("agent {agent}: [agent.select] names nothing; give systemd_unit, cgroup, user, exe or kubernetes, or launched = true (only what `agentwatch exec --agent {agent}` starts)"),
        );
    }
    for (sel, span) in &out {
        if let Some((_, other)) = claimed.iter().find(|(c, _)| c == sel) {
            p.at(
                Some(span.clone()),
                format!("agent {agent}: {sel} already selects agent {other}; a process can belong to one agent only"),
            );
        } else {
            claimed.push((sel.clone(), agent.to_string()));
        }
    }
    out.into_iter().map(|(s, _)| s).collect()
}

/// An agent's name names its control socket and approval ids.
fn check_name(p: &mut Problems, name: &Spanned<String>) {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !n.starts_with('.');
    if !ok {
        p.at(
            Some(name.span()),
            format!("agent name {n:?}: use letters, digits, '-', '_' and '.' (it names the control socket and approval ids)"),
        );
    }
}

/// Where and how a `learn = true` agent's sessions are learned.
fn shadow_config(
    p: &mut Problems,
    d: &AgentDoc,
    name: &str,
    profile_path: &Path,
    spool_base: &Path,
    anchors: &Anchors,
) -> ShadowConfig {
    ShadowConfig {
        agent: name.to_string(),
        profile: profile_path.to_path_buf(),
        fallback: spool_base.join("profiles").join(format!("{name}.yaml")),
        sessions: spool_base.join("sessions").join(name),
        anchors: anchors.clone(),
        // Long enough by default for a restart not to split a session.
        idle: learn_duration(
            p,
            "learn_idle",
            d.learn_idle.as_ref(),
            Duration::from_secs(10),
        ),
        longest: learn_duration(
            p,
            "learn_session",
            d.learn_session.as_ref(),
            Duration::from_secs(3600),
        ),
        stable_sessions: d
            .stable_sessions
            .unwrap_or(crate::profile::merge::DEFAULT_STABLE_SESSIONS),
    }
}

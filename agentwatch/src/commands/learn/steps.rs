//! The steps of one learning session that `run` strings together:
//! checking what to learn, the agent's own files, the recording, starting
//! to watch, and waiting for the session to end.
use super::*;

/// Starts watching the agent: the selected processes (and what they
/// exec), or the command, spawned watched. The inner error is the
/// command's failure to start, which ends the session with its status.
pub(super) fn start_watching(
    s: &mut Session,
    selected: Option<&Selected>,
    opts: &LearnOptions,
) -> anyhow::Result<Result<Option<std::process::Child>, crate::spawn::SpawnError>> {
    let Some(sel) = selected else {
        return Ok(s.spawn(&opts.cmd).map(Some));
    };
    let n = s.select(&sel.resolved)?;
    eprintln!(
        "agentwatch: learning {}: {n} running process(es) and every new exec matching {}",
        opts.agent,
        sel.shown.join(", ")
    );
    Ok(Ok(None))
}

/// Closes the session's recording, if one was kept.
pub(super) fn finish_recording(recorder: &Mutex<Option<Recorder>>) -> anyhow::Result<()> {
    let recording = recorder
        .lock()
        .map_err(|_| anyhow::anyhow!("recorder poisoned"))?
        .take();
    if let Some(r) = recording {
        let path = r.finish().context("cannot finish the session recording")?;
        eprintln!("agentwatch: recorded the session in {}", path.display());
    }
    Ok(())
}

/// Refuses a learn with nothing to watch, or with both a command and
/// selectors.
pub(super) fn check_what_to_learn(opts: &LearnOptions, selected: bool) -> anyhow::Result<()> {
    match (selected, opts.cmd.is_empty()) {
        (false, true) => bail!("nothing to learn: give the agent's command after --, select it with --select KIND=VALUE or --config FILE, or --replay recorded sessions"),
        (true, false) => bail!("give either a command or selectors (--select, --config), not both"),
        (true, true) if opts.duration.is_none() && !opts.until_stable => {
            eprintln!("agentwatch: note: no --duration or --until-stable; learning until Ctrl-C");
        }
        _ => {}
    }
    if !(opts.headroom.is_finite() && opts.headroom >= 1.0) {
        bail!("--headroom must be 1.0 or more (budget = peak x headroom)");
    }
    Ok(())
}

/// The profile being written (and the temporary file it is written
/// through) and agentwatch's binary are its own files. Not the whole
/// directory: `--out /tmp/x.yaml` must not make all of /tmp a guardrail.
pub(super) fn own_files(out_dir: &Path, out: &Path) -> Vec<String> {
    let out_file = out_dir.join(out.file_name().unwrap_or_default());
    [
        Some(out_file.display().to_string()),
        Some(format!(
            "{}.yaml.tmp-*",
            out_file.with_extension("").display()
        )),
        std::env::current_exe()
            .ok()
            .map(|p| p.display().to_string()),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A recording of this session in `dir` (`--record`).
pub(super) fn recorder(
    dir: &Path,
    agent: &str,
    host: &str,
    anchors: &Anchors,
) -> anyhow::Result<Recorder> {
    let h = Header::new(
        agent,
        host,
        anchors,
        crate::timestamp::profile_time(std::time::SystemTime::now()),
    );
    Recorder::create(dir, &h)
        .with_context(|| format!("cannot record the session in {}", dir.display()))
}

/// Shows progress until the session ends; says why it ended.
pub(super) fn watch(
    opts: &LearnOptions,
    learner: &Arc<Mutex<Learner>>,
    mut child: Option<&mut std::process::Child>,
    view: &mut Progress,
    start: Instant,
    mut meter: Option<&mut crate::budget::Meter>,
) -> anyhow::Result<&'static str> {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(m) = meter.as_mut() {
            m.sample();
        }
        let progress = lock(learner)?.progress(monotonic_ns());
        view.show(start.elapsed(), &progress);
        if let Some(Ok(Some(_))) = child.as_mut().map(|c| c.try_wait()) {
            return Ok("the command exited");
        }
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            return Ok("the duration passed");
        }
        if opts.until_stable && progress.iter().all(|p| p.stable) {
            return Ok("every class is stable");
        }
        if session::stop_requested() {
            return Ok("interrupted");
        }
    }
}

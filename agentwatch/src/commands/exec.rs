//! `agentwatch exec --agent NAME -- CMD`: starts CMD as a process of an
//! agent the daemon enforces, in the launch sandbox, for a systemd unit's
//! `ExecStart` or a container's entrypoint. It asks the daemon for the
//! agent's profile and the classes Landlock is to hold, builds the
//! sandbox, has the daemon watch its own pid, enters the sandbox and
//! execs CMD: the same pid, watched and sandboxed from CMD's first
//! instruction. Nothing of agentwatch stays in the process.
use std::{
    ffi::OsString, os::fd::AsRawFd as _, os::unix::process::CommandExt, path::PathBuf,
    process::Command,
};

use crate::{
    commands::anchor_args::AnchorArgs,
    control::{self, ControlError, Envelope, Request},
    profile::{guardrails::Guardrails, parse},
    sandbox::{files, shield, Held, Sandbox},
};

#[derive(Debug, clap::Args)]
pub struct ExecOptions {
    /// The daemon's agent this process becomes.
    #[arg(long)]
    pub agent: String,
    #[command(flatten)]
    pub anchors: AnchorArgs,
    /// Start CMD watched but without the launch sandbox.
    #[arg(long)]
    pub no_sandbox: bool,
    /// Run CMD as this user (name or uid), with its primary group and
    /// supplementary groups: `exec` itself must run as root to ask the
    /// daemon (a systemd unit without `User=`, or a root entrypoint).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD", required = true)]
    pub cmd: Vec<OsString>,
}

/// Exit status when the daemon cannot be asked (not running, no such
/// agent, refused): CMD never starts unwatched.
const NOT_LAUNCHED: i32 = 3;

pub fn exec(opts: ExecOptions) -> anyhow::Result<i32> {
    let ask = |req: Request| {
        let env = Envelope {
            agent: Some(opts.agent.clone()),
            req,
        };
        control::request_env(&control::daemon_socket(), &env)
    };
    let info = match ask(Request::LaunchInfo) {
        Ok(v) => v,
        Err(e) => return not_launched(&opts.agent, e),
    };
    let user = opts
        .user
        .as_deref()
        .map(lookup_user)
        .transpose()
        .map_err(crate::exit::usage)?;
    // The user's home is the profile's $HOME, unless --home says.
    let mut anchors = opts.anchors.clone();
    if let (None, Some(u)) = (&anchors.home, &user) {
        anchors.home = Some(u.dir.clone());
    }
    let sandbox = if opts.no_sandbox {
        None
    } else {
        Some(prepare(&anchors, &info)?)
    };
    if let Some(s) = &sandbox {
        // SAFETY: single-threaded here, and exec follows. Before the
        // daemon watches this pid: these mounts are not the agent's.
        unsafe { s.enter_mounts() }.map_err(|e| {
            anyhow::anyhow!("cannot make the guardrails inside the agent's tree read-only: {e}")
        })?;
    }
    let pid = std::process::id();
    let landlock = sandbox
        .as_ref()
        .map(|s| s.landlock_flags() | s.shield_flags());
    // The reasons pipe: the daemon opens the write end through /proc
    // while this process holds it; the command inherits the read end.
    let (ours, reasons) = crate::enforce::steer::reasons_pipe()?;
    let reasons = reasons.inheritable()?;
    let reasons_fd = Some(ours.as_raw_fd());
    let launch = Request::Launch {
        pid,
        landlock,
        reasons_fd,
    };
    if let Err(e) = ask(launch) {
        return not_launched(&opts.agent, e);
    }
    drop(ours);
    if let Some(u) = &user {
        become_user(u)?;
    }
    if let Some(s) = &sandbox {
        // SAFETY: single-threaded here, and exec follows: the sandbox
        // holds this thread and what it execs.
        unsafe { s.enter() }
            .map_err(|e| anyhow::anyhow!("cannot enter the launch sandbox: {e}"))?;
    }
    let (prog, args) = opts
        .cmd
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command given"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env(crate::enforce::steer::ENV, reasons.as_raw_fd().to_string());
    if let Some(u) = &user {
        cmd.env("HOME", &u.dir)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
    }
    let err = cmd.exec();
    eprintln!("agentwatch: cannot run {}: {err}", prog.to_string_lossy());
    Ok(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// The sandbox for the agent's profile (`info`: the daemon's answer), as
/// `run` builds it.
fn prepare(anchors: &AnchorArgs, info: &serde_json::Value) -> anyhow::Result<Sandbox> {
    let held_names: Vec<&str> = info["held"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let held = Held::from_names(&held_names);
    let shielded = info["shield"].as_bool().unwrap_or(false);
    if !held.any() && !shielded {
        return Ok(Sandbox::prepare(None, allowed_of(info), None)?);
    }
    let path = PathBuf::from(info["profile"].as_str().unwrap_or_default());
    let profile = parse::load(&path).map_err(|report| {
        anyhow::anyhow!(
            "cannot read the agent's profile {}: {report}",
            path.display()
        )
    })?;
    let anchors = anchors.anchors();
    let grants = files::grants(&profile, &anchors);
    let files = held.any().then(|| {
        let abi = landlock::ABI::from(crate::sandbox::landlock_abi().unwrap_or(0));
        files::resolve(&grants, held, abi)
    });
    // The daemon's guardrails beyond the built-in ones are its own files,
    // outside any agent's tree.
    let shield = shielded
        .then(|| shield::for_profile(&profile, &anchors, &Guardrails::builtin()))
        .flatten();
    Ok(Sandbox::prepare(files, allowed_of(info), shield)?)
}

/// The escapes the daemon's answer says the profile allows.
fn allowed_of(info: &serde_json::Value) -> crate::sandbox::Allowed {
    crate::sandbox::Allowed {
        io_uring: info["io_uring"].as_bool().unwrap_or(false),
        raw_sockets: info["raw_sockets"].as_bool().unwrap_or(false),
    }
}

/// The user `--user` names (a name, else a uid).
fn lookup_user(name: &str) -> Result<nix::unistd::User, String> {
    let found = match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(name),
    };
    match found {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(format!("--user {name}: no such user")),
        Err(e) => Err(format!("--user {name}: {e}")),
    }
}

/// Drops to `u` (supplementary groups, group, then user): after the
/// daemon watches this pid, before the sandbox and the exec.
fn become_user(u: &nix::unistd::User) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(u.name.as_str())
        .map_err(|_| anyhow::anyhow!("--user {}: a NUL in the name", u.name))?;
    nix::unistd::initgroups(&name, u.gid)
        .and_then(|()| nix::unistd::setgid(u.gid))
        .and_then(|()| nix::unistd::setuid(u.uid))
        .map_err(|e| anyhow::anyhow!("cannot become user {}: {e}", u.name))
}

fn not_launched(agent: &str, e: ControlError) -> anyhow::Result<i32> {
    eprintln!(
        "agentwatch: not starting the command: the daemon did not take it as agent {agent}: {e} (is `agentwatch daemon` running with [[agent]] name = \"{agent}\"?)"
    );
    Ok(NOT_LAUNCHED)
}

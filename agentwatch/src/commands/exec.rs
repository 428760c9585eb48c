//! `agentwatch exec --agent NAME -- CMD`: starts CMD as a process of an
//! agent the daemon enforces, in the launch sandbox, for a systemd unit's
//! `ExecStart` or a container's entrypoint. It asks the daemon for the
//! agent's profile and the classes Landlock is to hold, builds the
//! sandbox, has the daemon watch its own pid, enters the sandbox and
//! execs CMD: the same pid, watched and sandboxed from CMD's first
//! instruction. Nothing of agentwatch stays in the process.
use std::{ffi::OsString, os::unix::process::CommandExt, path::PathBuf, process::Command};

use crate::{
    control::{self, ControlError, Envelope, Request},
    profile::parse,
    sandbox::{files, Held, Sandbox},
};

#[derive(Debug, clap::Args)]
pub struct ExecOptions {
    /// The daemon's agent this process becomes.
    #[arg(long)]
    pub agent: String,
    #[command(flatten)]
    pub anchors: super::anchor_args::AnchorArgs,
    /// Start CMD watched but without the launch sandbox.
    #[arg(long)]
    pub no_sandbox: bool,
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
    let sandbox = if opts.no_sandbox {
        None
    } else {
        Some(prepare(&opts, &info)?)
    };
    let pid = std::process::id();
    let landlock = sandbox.as_ref().map(Sandbox::landlock_flags);
    if let Err(e) = ask(Request::Launch { pid, landlock }) {
        return not_launched(&opts.agent, e);
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
    let err = Command::new(prog).args(args).exec();
    eprintln!("agentwatch: cannot run {}: {err}", prog.to_string_lossy());
    Ok(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// The sandbox for the agent's profile (`info`: the daemon's answer), as
/// `run` builds it.
fn prepare(opts: &ExecOptions, info: &serde_json::Value) -> anyhow::Result<Sandbox> {
    let held_names: Vec<&str> = info["held"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let held = Held {
        exec: held_names.contains(&"exec"),
        file: held_names.contains(&"file"),
        delete: held_names.contains(&"delete"),
    };
    let files = if held.any() {
        let path = PathBuf::from(info["profile"].as_str().unwrap_or_default());
        let profile = parse::load(&path).map_err(|report| {
            anyhow::anyhow!(
                "cannot read the agent's profile {}: {report}",
                path.display()
            )
        })?;
        let anchors = opts.anchors.anchors();
        let abi = landlock::ABI::from(crate::sandbox::landlock_abi().unwrap_or(0));
        Some(files::resolve(
            &files::grants(&profile, &anchors),
            held,
            abi,
        ))
    } else {
        None
    };
    let io_uring = info["io_uring"].as_bool().unwrap_or(false);
    Ok(Sandbox::prepare(files, io_uring)?)
}

fn not_launched(agent: &str, e: ControlError) -> anyhow::Result<i32> {
    eprintln!(
        "agentwatch: not starting the command: the daemon did not take it as agent {agent}: {e} (is `agentwatch daemon` running with [[agent]] name = \"{agent}\"?)"
    );
    Ok(NOT_LAUNCHED)
}

//! `--workspace`, `--home`, `--tmp`: the anchors a profile's `$WORKSPACE`,
//! `$HOME` and `$TMP` stand for, as `run`, `exec` and `check` take them.
use std::path::PathBuf;

use crate::profile::anchors::Anchors;

#[derive(Debug, Clone, clap::Args)]
pub struct AnchorArgs {
    /// The agent's workspace, what `$WORKSPACE` in the profile stands for
    /// [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// The agent's home, what `$HOME` in the profile stands for [default:
    /// $HOME].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The agent's temp dir, what `$TMP` in the profile stands for
    /// [default: $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    pub tmp: Option<PathBuf>,
}

impl AnchorArgs {
    /// The anchors: these flags, else the environment.
    pub fn anchors(&self) -> Anchors {
        Anchors::from_env_with(
            self.workspace.as_deref(),
            self.home.as_deref(),
            self.tmp.as_deref(),
        )
    }
}

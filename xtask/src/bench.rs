//! `cargo xtask bench` (filled in below).
#[derive(clap::Args)]
pub struct Options {}

pub fn run(_o: Options) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}

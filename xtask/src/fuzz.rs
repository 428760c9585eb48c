//! `cargo xtask fuzz`: runs each cargo-fuzz target (fuzz/) for a bounded
//! time, starting from the corpus kept in fuzz/corpus/<target>. New
//! inputs go to a scratch directory unless `--keep` folds them into the
//! repository's corpus. A crash fails the run and names its input.
use std::process::Command;

use anyhow::{bail, Context as _};

pub const TARGETS: [&str; 3] = ["profile_parser", "config_parser", "event_decoder"];

#[derive(clap::Args)]
pub struct Options {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// Add the new interesting inputs to fuzz/corpus (to commit).
    #[arg(long)]
    keep: bool,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let ws = crate::workspace();
    let fuzz = ws.join("fuzz");
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        bail!("cargo-fuzz is not installed: `cargo install cargo-fuzz --locked` (scripts/setup.sh does it)");
    }
    let targets: Vec<&str> = match &o.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let scratch = std::env::temp_dir().join(format!("agentwatch-fuzz-{}", std::process::id()));
    let mut failed = Vec::new();
    for t in targets {
        let seeds = fuzz.join("corpus").join(t);
        let work = scratch.join(t);
        std::fs::create_dir_all(&work)?;
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz)
            // The library's build script skips the eBPF object here.
            .env("AGENTWATCH_NO_EBPF", "1")
            .args(["+nightly", "fuzz", "run", t]);
        if o.keep {
            cmd.arg(&seeds).arg(&work);
        } else {
            cmd.arg(&work).arg(&seeds);
        }
        cmd.args([
            "--",
            &format!("-max_total_time={}", o.seconds),
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ]);
        eprintln!("fuzz: {t} for {} s", o.seconds);
        let st = cmd
            .status()
            .with_context(|| format!("running cargo fuzz run {t}"))?;
        if !st.success() {
            failed.push(t);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if !failed.is_empty() {
        bail!(
            "fuzz target(s) {} found a crash; the input is in fuzz/artifacts/<target>/ (reproduce: cd fuzz && AGENTWATCH_NO_EBPF=1 cargo +nightly fuzz run <target> <input>)",
            failed.join(", ")
        );
    }
    eprintln!("fuzz: no crash");
    Ok(())
}

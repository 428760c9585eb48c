//! Developer tasks: `cargo xtask vm-test` (the eBPF object on a Debian
//! kernel under qemu), `cargo xtask bench` (cost against baselines) and
//! `cargo xtask fuzz` (the fuzz targets, bounded in time), `cargo xtask
//! detection` (the corpus benchmark), `cargo xtask man` (the man pages),
//! `cargo xtask dist` (the tarball and the .deb).
use clap::{Parser, Subcommand};

mod bench;
mod bench_daemon;
mod bench_docs;
mod bench_enforce;
mod bench_intent;
mod bench_kernel;
mod bench_open_cost;
mod bench_peers;
mod bench_peers_load;
mod bench_peers_report;
mod bench_pins;
mod bench_profile;
mod bench_shield;
mod detection;
mod dist;
mod fuzz;
mod peers;
mod stats;
mod vm;
mod vm_budget;
mod vm_enforce;
mod vm_race;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Boot a Debian kernel under qemu and run agentwatch inside it.
    VmTest {
        /// Kernel series: 6.1 (Debian 12's) or 6.12 (its backport).
        #[arg(long, default_value = "6.1")]
        kernel: String,
    },
    /// Measure overhead and throughput; prints ratios against baselines.
    Bench(bench::Options),
    /// Run the fuzz targets (profile parser, config parser, event
    /// decoder) for a bounded time each.
    Fuzz(fuzz::Options),
    /// The detection corpus: learn, held-out sessions and attacks under
    /// enforce; writes docs/detection.md.
    Detection(detection::Options),
    /// The release tarball and .deb (target/dist): install without a
    /// toolchain.
    Dist(dist::Options),
    /// Build the man pages from the command line's definition.
    Man {
        /// Where to write them.
        #[arg(long, default_value = "target/man")]
        out: std::path::PathBuf,
    },
}

/// `cargo xtask man`: builds agentwatch and has it write its man pages.
fn man(out: &std::path::Path) -> anyhow::Result<()> {
    let ws = workspace();
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "agentwatch"])
        .current_dir(&ws)
        .status()?;
    anyhow::ensure!(status.success(), "cargo build -p agentwatch failed");
    let out = ws.join(out);
    let status = std::process::Command::new(ws.join("target/debug/agentwatch"))
        .arg("man-pages")
        .arg(&out)
        .status()?;
    anyhow::ensure!(status.success(), "agentwatch man-pages failed");
    println!("man pages in {}", out.display());
    Ok(())
}

/// The repository root (xtask lives one level below it).
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::VmTest { kernel } => vm::run(&kernel),
        Task::Bench(o) => bench::run(o),
        Task::Fuzz(o) => fuzz::run(o),
        Task::Detection(o) => detection::run(o),
        Task::Dist(o) => dist::run(o),
        Task::Man { out } => man(&out),
    }
}

//! Developer tasks: `cargo xtask vm-test` (the eBPF object on a Debian
//! kernel under qemu), `cargo xtask bench` (cost against baselines) and
//! `cargo xtask fuzz` (the fuzz targets, bounded in time), `cargo xtask
//! detection` (the corpus benchmark).
use clap::{Parser, Subcommand};

mod bench;
mod bench_daemon;
mod bench_enforce;
mod bench_peers;
mod bench_peers_load;
mod bench_peers_report;
mod detection;
mod fuzz;
mod peers;
mod vm;
mod vm_enforce;

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
    }
}

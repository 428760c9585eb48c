//! `cargo xtask bench --pins-only`: what an approved model's check costs.
//! A model file (GGUF magic, `--pins-mib` MiB, in the page cache) is
//! opened by a python loop: once, then `REPEATS` more times, each open
//! timed. Under `agentwatch run --mode enforce` with a profile that
//! approves the file by sha256, the first open is held until agentwatch
//! has hashed it; the repeats find the hash cached by file identity.
//! Baselines in the same invocation: `sha256sum` of the same file, and
//! the same loop unwatched.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::bench::{median, Bench};

pub const HEADING: &str = "\n## Approved models: hashing on first open";

/// Opens after the first, per run.
const REPEATS: u32 = 200;

const CLIENT: &str = r#"
import os, sys, time
p, n = sys.argv[1], int(sys.argv[2])
def once():
    t = time.perf_counter_ns()
    os.close(os.open(p, os.O_RDONLY))
    return time.perf_counter_ns() - t
first = once()
rest = sorted(once() for _ in range(n))
print("first_ns", first)
print("repeat_ns", rest[len(rest) // 2])
"#;

/// Scratch space with the model, the loop and the profile; removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a GGUF-looking file of `mib` MiB; its sha256 from sha256sum.
fn model(dir: &Path, mib: u64) -> anyhow::Result<(PathBuf, String)> {
    use std::io::Write;
    let path = dir.join("bench.gguf");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    f.write_all(b"GGUF\x03\0\0\0")?;
    // Not all zeros: a pattern that changes every block.
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
        }
        f.write_all(&block)?;
    }
    f.flush()?;
    let (_, sha) = sha256sum(&path)?;
    Ok((path, sha))
}

/// `sha256sum FILE`: seconds and the digest.
fn sha256sum(path: &Path) -> anyhow::Result<(f64, String)> {
    let t = std::time::Instant::now();
    let out = Command::new("sha256sum").arg(path).output()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("sha256sum failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sha = text.get(..64).context("sha256sum printed no digest")?;
    Ok((secs, sha.to_string()))
}

fn profile(dir: &Path, sha: &str) -> String {
    format!(
        "apiVersion: agentwatch.dev/v2\nkind: Profile\nagent: pins-bench\nexecutables:\n  - path: \"/usr/bin/*\"\nfiles:\n  - path: \"/usr/**\"\n    access: [read, exec]\n  - path: \"/etc/**\"\n    access: [read]\n  - path: \"{d}/**\"\n    access: [read]\n  - path: \"/proc/**\"\n    access: [read]\n  - path: \"/dev/null\"\n    access: [read, write]\nmodels:\n  - path: \"{d}/bench.gguf\"\n    sha256: [\"{sha}\"]\n",
        d = dir.display()
    )
}

/// The loop's first and repeated open times, in ns.
fn timed(mut c: Command) -> anyhow::Result<(f64, f64)> {
    let out = c.env_remove("LD_LIBRARY_PATH").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the open loop failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .context("the loop printed no timing")?
            .trim()
            .parse()
            .context("a timing")
    };
    Ok((field("first_ns ")?, field("repeat_ns ")?))
}

/// Measures and renders the section.
pub fn section(bench: &Bench, rounds: usize, mib: u64) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("agentwatch-pins-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let s = Scratch(dir);
    let (path, sha) = model(&s.0, mib)?;
    std::fs::write(s.0.join("open.py"), CLIENT)?;
    std::fs::write(s.0.join("profile.yaml"), profile(&s.0, &sha))?;
    let argv = [
        "/usr/bin/python3".to_string(),
        "open.py".into(),
        path.display().to_string(),
        REPEATS.to_string(),
    ];
    let (mut sums, mut plain_first, mut plain_rep, mut first, mut rep) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        sums.push(sha256sum(&path)?.0);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]).current_dir(&s.0);
        let (f, r) = timed(c)?;
        plain_first.push(f);
        plain_rep.push(r);
        let mut c = Command::new(&bench.agentwatch);
        c.args(["run", "--mode", "enforce", "--profile", "profile.yaml"])
            .args(["-o", "/dev/null", "--"])
            .args(&argv)
            .current_dir(&s.0);
        let (f, r) = timed(c)?;
        first.push(f);
        rep.push(r);
        eprint!("\rpins: round {}/{rounds}", round + 1);
    }
    eprintln!();
    let gib = mib as f64 / 1024.0;
    let sum_s = median(&mut sums) / gib;
    let first_s = median(&mut first) / 1e9 / gib;
    let (pr, r) = (median(&mut plain_rep), median(&mut rep));
    Ok(format!(
        "{HEADING}\n\nGenerated by `cargo xtask bench --pins-only`: a {mib} MiB GGUF file in the page cache, approved by sha256 in the profile, opened by a python loop under `agentwatch run --mode enforce` (each run a fresh agentwatch: nothing cached); {rounds} rounds, medians.\n\n| measure | value |\n|---|---|\n| `sha256sum`, per GiB | {sum_s:.3} s |\n| first open under enforce (held until hashed), per GiB | {first_s:.3} s |\n| ratio, first open to sha256sum | {:.2} |\n| first open unwatched | {:.1} µs |\n| repeated open under enforce (median of {REPEATS}) | {:.1} µs |\n| repeated open unwatched | {:.1} µs |\n| ratio, repeated open to unwatched | {:.2} |\n\nThe first open of an approved model costs one sha256 of the file while the opener is stopped: {first_s:.3} s per GiB here, {:.2}x the time `sha256sum` (coreutils) takes on the same cached file (agentwatch's sha2 uses the CPU's SHA instructions where there are some). Every later open of the same file identity is a cache hit: {:.0} µs, {:.0}x less than the first open of this file, is the round trip of a held open (the record, the stop, the check of the cache, the release), not a rehash. A file rewritten in place has a new identity (size, modification time) and is hashed again.\n",
        first_s / sum_s,
        median(&mut plain_first) / 1e3,
        r / 1e3,
        pr / 1e3,
        r / pr,
        first_s / sum_s,
        r / 1e3,
        first_s * gib * 1e9 / r,
    ))
}

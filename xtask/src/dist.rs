//! `cargo xtask dist`: what a user installs without a toolchain.
//!
//! - `agentwatch-VERSION-x86_64-linux.tar.gz`: the binary (the eBPF object
//!   is built into it), the systemd unit, an example configuration and
//!   profile, shell completions, man pages and the docs, under one
//!   directory laid out like `/usr/local` (`bin/`, `share/`, `lib/`, `etc/`);
//! - `agentwatch_VERSION_amd64.deb`: the same in Debian's places, the unit
//!   pointed at `/usr/bin/agentwatch`, `/etc/agentwatch/agentwatch.toml` a
//!   conffile, and `libc6 (>= X)` from the newest glibc symbol version the
//!   binary needs.
//!
//! Archives are reproducible: files sorted, owned by root, and stamped
//! with `SOURCE_DATE_EPOCH` (default: the last commit's time). The
//! container recipe (`packaging/container/Containerfile`) and the Helm
//! chart (`packaging/helm/agentwatch`) are not built here.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context};

#[derive(clap::Args)]
pub struct Options {
    /// Package the debug build (what the test suite built) instead of
    /// building a release one: for tests, not for shipping.
    #[arg(long)]
    debug: bool,
    /// Where the archives go.
    #[arg(long, default_value = "target/dist")]
    out: PathBuf,
}

const ARCH_TAR: &str = "x86_64-linux";
const ARCH_DEB: &str = "amd64";

pub fn run(o: Options) -> anyhow::Result<()> {
    let ws = super::workspace();
    let version = env!("CARGO_PKG_VERSION");
    let bin = build(&ws, o.debug)?;
    let out = ws.join(&o.out);
    std::fs::create_dir_all(&out)?;
    let epoch = source_date_epoch(&ws);
    let glibc = glibc_needed(&bin)?;

    let name = format!("agentwatch-{version}-{ARCH_TAR}");
    let stage = out.join(&name);
    let _ = std::fs::remove_dir_all(&stage);
    lay_out(&ws, &bin, &stage, Layout::Tarball)?;
    let tarball = out.join(format!("{name}.tar.gz"));
    tar(&out, &name, &tarball, &epoch)?;

    let deb_root = out.join("deb-root");
    let _ = std::fs::remove_dir_all(&deb_root);
    lay_out(&ws, &bin, &deb_root, Layout::Debian)?;
    debian_control(&deb_root, version, &glibc)?;
    let deb = out.join(format!("agentwatch_{version}_{ARCH_DEB}.deb"));
    run_cmd(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&deb_root)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", &epoch),
    )?;
    println!("{}", tarball.display());
    println!("{}", deb.display());
    println!("needs glibc {glibc} or later (x86_64)");
    Ok(())
}

/// Builds the binary; its path. The debug build is the suite's own
/// (`cargo build --all-targets`, as scripts/test.sh runs it), so packaging
/// it after the suite's build compiles nothing.
fn build(ws: &Path, debug: bool) -> anyhow::Result<PathBuf> {
    let mut c = Command::new(env!("CARGO"));
    c.current_dir(ws);
    if debug {
        c.args(["build", "--all-targets"]);
    } else {
        c.args([
            "build",
            "--release",
            "-p",
            "agentwatch",
            "--bin",
            "agentwatch",
        ]);
    }
    run_cmd(&mut c)?;
    Ok(ws
        .join("target")
        .join(if debug { "debug" } else { "release" })
        .join("agentwatch"))
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Relative to a prefix (`/usr/local`): bin/, share/, lib/, etc/.
    Tarball,
    /// Debian's places under `/`.
    Debian,
}

/// Puts the binary and what goes with it under `root`.
fn lay_out(ws: &Path, bin: &Path, root: &Path, layout: Layout) -> anyhow::Result<()> {
    let (usr, etc, unit_dir) = match layout {
        Layout::Tarball => (
            root.to_path_buf(),
            root.join("etc"),
            root.join("lib/systemd/system"),
        ),
        Layout::Debian => (
            root.join("usr"),
            root.join("etc"),
            root.join("lib/systemd/system"),
        ),
    };
    let share = usr.join("share");
    let doc = share.join("doc/agentwatch");
    for d in [
        usr.join("bin"),
        etc.join("agentwatch/profiles"),
        unit_dir.clone(),
        doc.join("docs"),
    ] {
        std::fs::create_dir_all(&d)?;
    }
    copy(bin, &usr.join("bin/agentwatch"), 0o755)?;
    let exe = usr.join("bin/agentwatch");
    // Debug information stays behind (the symbols stay: backtraces).
    run_cmd(Command::new("strip").arg("--strip-debug").arg(&exe))?;
    let unit = std::fs::read_to_string(ws.join("packaging/systemd/agentwatch.service"))?;
    let unit = match layout {
        Layout::Tarball => unit,
        Layout::Debian => unit.replace("/usr/local/bin/agentwatch", "/usr/bin/agentwatch"),
    };
    write(&unit_dir.join("agentwatch.service"), &unit, 0o644)?;
    copy(
        &ws.join("packaging/agentwatch.example.toml"),
        &etc.join("agentwatch/agentwatch.toml"),
        0o644,
    )?;
    copy(
        &ws.join("packaging/profiles/coder.yaml"),
        &etc.join("agentwatch/profiles/coder.yaml.example"),
        0o644,
    )?;
    // Completions and man pages, from the binary's own definition.
    for (shell, rel) in [
        ("bash", "bash-completion/completions/agentwatch"),
        ("zsh", "zsh/vendor-completions/_agentwatch"),
        ("fish", "fish/vendor_completions.d/agentwatch.fish"),
    ] {
        let out = Command::new(&exe).args(["completions", shell]).output()?;
        ensure!(
            out.status.success(),
            "agentwatch completions {shell} failed"
        );
        let path = share.join(rel);
        std::fs::create_dir_all(path.parent().unwrap_or(&share))?;
        std::fs::write(&path, &out.stdout)?;
    }
    let man = share.join("man/man1");
    run_cmd(Command::new(&exe).arg("man-pages").arg(&man))?;
    if layout == Layout::Debian {
        // Debian ships man pages and the changelog compressed.
        for e in std::fs::read_dir(&man)?.flatten() {
            run_cmd(Command::new("gzip").args(["-9n"]).arg(e.path()))?;
        }
    }
    for f in ["README.md", "CHANGELOG.md", "ARCHITECTURE.md"] {
        copy(&ws.join(f), &doc.join(f), 0o644)?;
    }
    for e in std::fs::read_dir(ws.join("docs"))?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "md") {
            copy(&p, &doc.join("docs").join(e.file_name()), 0o644)?;
        }
    }
    write(
        &doc.join("copyright"),
        "agentwatch\nLicense: MIT OR Apache-2.0 (at your option)\n",
        0o644,
    )?;
    Ok(())
}

/// DEBIAN/: control, conffiles, and the maintainer scripts.
fn debian_control(root: &Path, version: &str, glibc: &str) -> anyhow::Result<()> {
    let d = root.join("DEBIAN");
    std::fs::create_dir_all(&d)?;
    let size_kib = du_kib(root)?;
    write(
        &d.join("control"),
        &format!(
            "Package: agentwatch\n\
             Version: {version}\n\
             Architecture: {ARCH_DEB}\n\
             Maintainer: agentwatch developers <agentwatch@example.invalid>\n\
             Installed-Size: {size_kib}\n\
             Depends: libc6 (>= {glibc}), libgcc-s1\n\
             Section: admin\n\
             Priority: optional\n\
             Homepage: https://example.invalid/agentwatch\n\
             Description: eBPF runtime monitor and enforcer for AI agents\n \
             Watches what each AI agent's process tree does (execs, files,\n \
             sockets, DNS), learns a per-agent baseline profile, and flags,\n \
             blocks or pauses what falls outside it, with a tamper-evident\n \
             audit log and SOC feeds. The daemon is not enabled on install:\n \
             configure /etc/agentwatch/agentwatch.toml, then\n \
             `systemctl enable --now agentwatch`.\n"
        ),
        0o644,
    )?;
    write(
        &d.join("conffiles"),
        "/etc/agentwatch/agentwatch.toml\n",
        0o644,
    )?;
    // The unit is installed, not enabled: a daemon with the example
    // configuration would enforce nothing useful.
    write(
        &d.join("postinst"),
        "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n",
        0o755,
    )?;
    write(
        &d.join("prerm"),
        "#!/bin/sh\nset -e\nif [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then systemctl stop agentwatch.service || true; fi\n",
        0o755,
    )?;
    write(
        &d.join("postrm"),
        "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n",
        0o755,
    )?;
    Ok(())
}

/// The newest `GLIBC_2.N` symbol version the binary references: the
/// oldest C library it runs on.
fn glibc_needed(bin: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(bin).with_context(|| format!("cannot read {}", bin.display()))?;
    let needle = b"GLIBC_2.";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + at + needle.len();
        let digits: Vec<u8> = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .copied()
            .collect();
        let text = String::from_utf8_lossy(&digits);
        let mut parts = text.split('.').filter_map(|p| p.parse::<u32>().ok());
        if let Some(minor) = parts.next() {
            let v = (minor, parts.next().unwrap_or(0));
            best = best.max(Some(v));
        }
        i = start;
    }
    match best {
        Some((m, 0)) => Ok(format!("2.{m}")),
        Some((m, p)) => Ok(format!("2.{m}.{p}")),
        None => bail!("{} references no glibc symbol version", bin.display()),
    }
}

fn source_date_epoch(ws: &Path) -> String {
    if let Ok(e) = std::env::var("SOURCE_DATE_EPOCH") {
        return e;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(ws)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".into())
}

fn tar(dir: &Path, name: &str, out: &Path, epoch: &str) -> anyhow::Result<()> {
    run_cmd(
        Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                &format!("--mtime=@{epoch}"),
                "-czf",
            ])
            .arg(out)
            .arg("-C")
            .arg(dir)
            .arg(name),
    )
}

fn du_kib(root: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len().div_ceil(1024);
            }
        }
    }
    Ok(total)
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write(to: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    std::fs::write(to, text).with_context(|| format!("write {}", to.display()))?;
    set_mode(to, mode)
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn run_cmd(c: &mut Command) -> anyhow::Result<()> {
    let st = c.status().with_context(|| format!("cannot run {c:?}"))?;
    ensure!(st.success(), "{c:?} failed: {st}");
    Ok(())
}

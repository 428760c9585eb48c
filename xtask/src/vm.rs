//! `cargo xtask vm-test`: the same agentwatch build, on a Debian kernel
//! booted under qemu (software emulation), so the eBPF object is proven
//! portable (CO-RE relocations, no offsets fixed for one kernel) and the
//! hooks this host refuses (BPF LSM) are probed where they work.
//!
//! The guest is an initramfs: busybox, the agentwatch binary and its shared
//! libraries, and an /init that runs `doctor`, `trace` and `run --mode
//! enforce` (the BPF LSM tier, `vm_enforce`) and prints their output
//! between markers on the serial console.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, ensure, Context as _};

fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Downloads (once) the newest Debian cloud kernel of `series` and returns
/// its vmlinuz.
fn kernel(series: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    let pattern = match series {
        "6.1" => r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
        "6.12" => r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$",
        other => bail!("unknown kernel series {other}: use 6.1 or 6.12"),
    };
    let dir = cache.join(format!("kernel-{series}"));
    if let Some(v) = find_vmlinuz(&dir) {
        return Ok(v);
    }
    let list = sh(Command::new("apt-cache").args(["search", "--names-only", pattern]))?;
    let mut names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_by_key(|n| version_key(n));
    let pkg = names
        .last()
        .with_context(|| format!("no Debian package matches {pattern}; run apt-get update"))?;
    fs::create_dir_all(&dir)?;
    println!("vm-test: downloading {pkg}");
    sh(Command::new("apt-get")
        .args(["download", "-q", pkg])
        .current_dir(&dir))?;
    let deb = fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    sh(Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(dir.join("root")))?;
    find_vmlinuz(&dir).context("the kernel package has no boot/vmlinuz-*")
}

fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir.join("root/boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /sys/fs/bpf
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "=== AW-KERNEL $(uname -r)"
echo "=== AW-DOCTOR-BEGIN"
/agentwatch doctor --json
echo "=== AW-DOCTOR-END"
mkdir -p /work && cd /work
echo "=== AW-TRACE-BEGIN"
/agentwatch trace --json --agent vm-agent -- /bin/sh -c 'echo hi > /tmp/f; /bin/cat /tmp/f >/dev/null; mv /tmp/f /tmp/g; rm /tmp/g; cd /tmp && /bin/cat missing 2>/dev/null; exit 7'
echo "=== AW-TRACE-END status=$?"
"#;

/// Builds the guest initramfs around `binary`.
fn initramfs(binary: &Path, out: &Path) -> anyhow::Result<()> {
    let root = out.with_extension("d");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("bin"))?;
    let busybox = Path::new("/bin/busybox");
    ensure!(
        busybox.exists(),
        "busybox-static is not installed (scripts/setup.sh installs it)"
    );
    fs::copy(busybox, root.join("bin/busybox"))?;
    // A stripped copy keeps the archive small and quick to unpack.
    sh(Command::new("strip")
        .arg("--strip-debug")
        .arg(binary)
        .arg("-o")
        .arg(root.join("agentwatch")))?;
    for lib in shared_libraries(binary)? {
        let dest = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        fs::create_dir_all(dest.parent().expect("library has a directory"))?;
        fs::copy(&lib, &dest).with_context(|| format!("copying {}", lib.display()))?;
    }
    let init = root.join("init");
    fs::write(
        &init,
        format!(
            "{INIT}{}{}{}poweroff -f\n",
            crate::vm_enforce::INIT_PART,
            crate::vm_budget::INIT_PART,
            crate::vm_race::init_part(),
        ),
    )?;
    crate::vm_race::build_helper(&root)?;
    fs::write(root.join("lsm-profile.yaml"), crate::vm_enforce::PROFILE)?;
    fs::write(root.join("lsm-workload.sh"), crate::vm_enforce::WORKLOAD)?;
    sh(Command::new("chmod").arg("+x").arg(&init))?;
    let script = format!(
        "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
        root.display(),
        out.display()
    );
    sh(Command::new("sh").arg("-c").arg(script))?;
    Ok(())
}

fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = sh(Command::new("ldd").arg(binary))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

/// Boots the guest and returns its serial console output.
fn boot(vmlinuz: &Path, initrd: &Path, log: &Path) -> anyhow::Result<String> {
    let _ = fs::remove_file(log);
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-m",
            "1024",
            // Two CPUs: the race test needs a second thread running
            // while the first is in its call.
            "-smp",
            "2",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 quiet lsm=lockdown,capability,landlock,bpf panic=-1",
        ])
        .spawn()
        .context("starting qemu-system-x86_64 (scripts/setup.sh installs qemu-system-x86)")?;
    // Bounded: TCG boots in seconds; verification under emulation is slower.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("qemu exited with {status}");
            }
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the VM did not finish within 300 s; console log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(fs::read_to_string(log).unwrap_or_default())
}

fn between<'a>(log: &'a str, begin: &str, end: &str) -> anyhow::Result<&'a str> {
    let b = log
        .find(begin)
        .with_context(|| format!("no {begin} in the console log"))?;
    let rest = &log[b + begin.len()..];
    let e = rest
        .find(end)
        .with_context(|| format!("no {end} in the console log"))?;
    Ok(&rest[..e])
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str(l.trim_end_matches('\r')).ok())
        .collect()
}

pub fn run(series: &str) -> anyhow::Result<()> {
    let ws = crate::workspace();
    let cache = ws.join("target/vm");
    fs::create_dir_all(&cache)?;
    let vmlinuz = kernel(series, &cache)?;
    sh(Command::new("cargo")
        .args(["build", "-p", "agentwatch"])
        .current_dir(&ws))?;
    let initrd = cache.join("initramfs.cpio.gz");
    initramfs(&ws.join("target/debug/agentwatch"), &initrd)?;
    println!("vm-test: booting {} under qemu", vmlinuz.display());
    let log = boot(
        &vmlinuz,
        &initrd,
        &cache.join(format!("console-{series}.log")),
    )?;
    check(&log).with_context(|| format!("guest console:\n{log}"))?;
    println!("vm-test: kernel {series} ok");
    println!("vm-test: 1 passed, 0 failed");
    Ok(())
}

/// What must hold inside the guest.
fn check(log: &str) -> anyhow::Result<()> {
    let kernel = log
        .lines()
        .find_map(|l| l.split("=== AW-KERNEL ").nth(1))
        .unwrap_or("?")
        .trim();
    println!("vm-test: guest kernel {kernel}");
    let doctor: serde_json::Value =
        serde_json::from_str(between(log, "=== AW-DOCTOR-BEGIN", "=== AW-DOCTOR-END")?.trim())
            .context("doctor JSON")?;
    ensure!(
        doctor["ready"] == true,
        "doctor says the guest is not ready: {doctor}"
    );
    // A kernel whose Landlock lacks scoping falls back, and says how.
    let sandbox = &doctor["sandbox"];
    println!("vm-test: sandbox in the guest: {sandbox}");
    ensure!(
        sandbox["seccomp"] == true
            && sandbox["scoped"] == false
            && sandbox["note"]
                .as_str()
                .is_some_and(|n| n.contains("eBPF tamper guard instead")),
        "doctor must report the guest's Landlock ABI and the fallback: {sandbox}"
    );
    let tier1 = &doctor["enforcement"][0];
    println!(
        "vm-test: BPF LSM tier available in the guest: {}",
        tier1["available"]
    );
    ensure!(
        tier1["available"] == true,
        "booted with lsm=...,bpf, BPF LSM must load: {tier1}"
    );
    ensure!(
        tier1["classes"] == serde_json::json!(["exec", "file"]),
        "doctor must put exec and file deny on the LSM tier: {tier1}"
    );

    let trace = between(log, "=== AW-TRACE-BEGIN", "=== AW-TRACE-END")?;
    let status_line = log
        .lines()
        .find(|l| l.contains("=== AW-TRACE-END"))
        .unwrap_or_default();
    ensure!(
        status_line.contains("status=7"),
        "trace must exit with the command's status: {status_line}"
    );
    let events = json_lines(trace);
    let has = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().any(pred);
    ensure!(
        has(&|e| e["kind"] == "open"
            && e["path"] == "/tmp/f"
            && e["access"] == serde_json::json!(["write", "create", "truncate"])),
        "open /tmp/f for write"
    );
    ensure!(
        has(&|e| e["kind"] == "exec" && e["path"] == "/bin/cat" && e["argv"][1] == "/tmp/f"),
        "exec /bin/cat /tmp/f"
    );
    ensure!(
        has(&|e| e["kind"] == "rename" && e["from"] == "/tmp/f" && e["to"] == "/tmp/g"),
        "rename /tmp/f -> /tmp/g"
    );
    ensure!(
        has(&|e| e["kind"] == "unlink" && e["path"] == "/tmp/g" && e["result"] == 0),
        "unlink /tmp/g"
    );
    ensure!(
        has(&|e| e["kind"] == "open" && e["path"] == "/tmp/missing" && e["result"] == -2),
        "cwd-relative open of a missing file resolved to /tmp/missing with -ENOENT"
    );
    ensure!(
        has(&|e| e["kind"] == "exit" && e["code"] == 7),
        "exit code 7"
    );
    ensure!(
        events
            .iter()
            .all(|e| e["agent"] == "vm-agent" || e["kind"] == "loss"),
        "every event is the agent's"
    );
    println!("vm-test: {} events checked", events.len());

    let run = between(log, "=== AW-RUN-BEGIN", "=== AW-RUN-END")?;
    let alerts = json_lines(between(log, "=== AW-ALERTS-BEGIN", "=== AW-ALERTS-END")?);
    crate::vm_enforce::check(run, &alerts)
        .with_context(|| format!("agentwatch run in the guest:\n{run}"))?;
    let budget = between(log, "=== AW-BUDGET-BEGIN", "=== AW-BUDGET-END")?;
    let budget_alerts = json_lines(between(
        log,
        "=== AW-BUDGET-END",
        "=== AW-BUDGET-ALERTS-END",
    )?);
    let left = log
        .lines()
        .find_map(|l| l.split("=== AW-BUDGET-LEFT ").nth(1))
        .unwrap_or("?");
    crate::vm_budget::check(&doctor, budget, &budget_alerts, left)?;
    let race = between(log, "=== AW-RACE-BEGIN", "=== AW-RACE-END")?;
    let status = log
        .lines()
        .find(|l| l.contains("=== AW-RACE-END"))
        .unwrap_or_default();
    let changed = log
        .lines()
        .find_map(|l| l.split("=== AW-RACE-CHANGED ").nth(1))
        .unwrap_or("?");
    let race_alerts = json_lines(between(log, "=== AW-RACE-END", "=== AW-RACE-ALERTS-END")?);
    crate::vm_race::check(
        race,
        status,
        log.contains("=== AW-RACE-PLANTED"),
        log.contains("=== AW-RACE-CONFIG-KEPT"),
        log.contains("=== AW-RACE-DEEP-PLANTED"),
        changed,
        &race_alerts,
    )
    .with_context(|| format!("the race in the guest:\n{race}"))?;
    Ok(())
}

//! What ships beside the binary is checked by the tools that consume it:
//! the systemd unit by `systemd-analyze verify` (warnings count as
//! failures: systemd ignores a directive it cannot parse and runs on).
use std::{path::Path, process::Command};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd-analyze is not installed (scripts/setup.sh installs systemd)");
        return;
    }
    let unit = std::fs::read_to_string(repo().join("packaging/systemd/agentwatch.service"))
        .expect("the unit file");
    // verify checks that ExecStart's binary exists: point it at this build.
    let unit = unit.replace(
        "/usr/local/bin/agentwatch",
        env!("CARGO_BIN_EXE_agentwatch"),
    );
    let dir = std::env::temp_dir().join(format!("aw-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agentwatch.service");
    std::fs::write(&path, &unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned:\n{said}"
    );
    for directive in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=",
        "ProtectSystem=strict",
        "ExecReload=",
    ] {
        assert!(unit.contains(directive), "the unit lost {directive}");
    }
}

//! What ships beside the binary is checked by the tools that consume it:
//! the systemd unit by `systemd-analyze verify` (warnings count as
//! failures: systemd ignores a directive it cannot parse and runs on);
//! the Kubernetes manifests by `kubernetes-validate --strict` (PyPI)
//! against the Kubernetes schemas, and the configuration they ship by
//! `agentwatch daemon --check`.
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

#[test]
fn kubernetes_manifests_validate_strictly_and_their_config_checks() {
    let tools = std::env::var_os("AGENTWATCH_PYTOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/agentwatch/pytools".into());
    let validate = tools.join("bin/kubernetes-validate");
    if !validate.exists() {
        eprintln!(
            "SKIP: no {} (scripts/setup.sh installs kubernetes-validate)",
            validate.display()
        );
        return;
    }
    let dir = repo().join("packaging/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let out = Command::new(&validate)
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for kind in [
        "daemonset/agentwatch",
        "serviceaccount/agentwatch",
        "clusterrole/agentwatch",
        "clusterrolebinding/agentwatch",
        "configmap/agentwatch-config",
    ] {
        assert!(
            said.contains(&format!("passed for resource {kind}")),
            "{kind} not validated: {said}"
        );
    }

    // The ConfigMap's configuration and profile, as the pod sees them.
    let cm: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("configmap.yaml")).unwrap())
            .expect("configmap YAML");
    let etc = std::env::temp_dir().join(format!("aw-cm-{}", std::process::id()));
    std::fs::create_dir_all(&etc).unwrap();
    for (name, text) in cm["data"].as_object().expect("data") {
        std::fs::write(etc.join(name), text.as_str().unwrap()).unwrap();
    }
    let check = Command::new(env!("CARGO_BIN_EXE_agentwatch"))
        .args(["daemon", "--check", "--config"])
        .arg(etc.join("agentwatch.toml"))
        .output()
        .expect("daemon --check");
    let _ = std::fs::remove_dir_all(&etc);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

//! What ships beside the binary is checked by the tools that consume it:
//! the systemd unit by `systemd-analyze verify` (warnings count as
//! failures: systemd ignores a directive it cannot parse and runs on);
//! the Kubernetes manifests and the Helm chart's rendering by
//! `kubernetes-validate --strict` (PyPI) against the Kubernetes schemas
//! (the chart by `helm lint` first), and the configuration they ship by
//! `agentwatch daemon --check`; the tarball and .deb of `cargo xtask
//! dist` by running the binary they carry.
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
    let etc = std::env::temp_dir().join(format!("aw-cm-{}", std::process::id()));
    let _gone = Gone(etc.clone());
    configmap_checks(
        &std::fs::read_to_string(dir.join("configmap.yaml")).unwrap(),
        &etc,
        "packaging/kubernetes",
    );
}

/// Writes a ConfigMap's files into `etc`, as the pod sees them, and has
/// `agentwatch daemon --check` check its configuration.
fn configmap_checks(yaml: &str, etc: &Path, what: &str) {
    let cm: serde_json::Value = serde_saphyr::from_str(yaml).expect("ConfigMap YAML");
    std::fs::create_dir_all(etc).unwrap();
    for (name, text) in cm["data"].as_object().expect("data") {
        std::fs::write(etc.join(name), text.as_str().unwrap()).unwrap();
    }
    let check = Command::new(env!("CARGO_BIN_EXE_agentwatch"))
        .args(["daemon", "--check", "--config"])
        .arg(etc.join("agentwatch.toml"))
        .output()
        .expect("daemon --check");
    assert!(
        check.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The oldest C library the packaged binary runs on, as docs/install.md
/// claims it: Debian 12, Ubuntu 22.04, RHEL 9 and later.
const GLIBC_CLAIMED: (u32, u32) = (2, 34);

fn dist() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let version = env!("CARGO_PKG_VERSION");
    let d = repo().join("target/dist");
    let tarball = d.join(format!("agentwatch-{version}-x86_64-linux.tar.gz"));
    let deb = d.join(format!("agentwatch_{version}_amd64.deb"));
    if !tarball.exists() || !deb.exists() {
        eprintln!(
            "SKIP: no {} or {}: run `cargo xtask dist --debug` first (scripts/test.sh does)",
            tarball.display(),
            deb.display()
        );
        return None;
    }
    Some((tarball, deb))
}

/// Every `GLIBC_2.N[.M]` version the binary references, newest first.
fn glibc_versions(bin: &Path) -> Vec<(u32, u32)> {
    let bytes = std::fs::read(bin).expect("the packaged binary");
    let text = String::from_utf8_lossy(&bytes);
    let mut v: Vec<(u32, u32)> = text
        .match_indices("GLIBC_2.")
        .filter_map(|(i, m)| {
            let rest: String = text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            rest.parse().ok().map(|minor| (2, minor))
        })
        .collect();
    v.sort();
    v.dedup();
    v.reverse();
    v
}

/// The tarball and the .deb as a user gets them: the binary from the
/// tarball (not from target/) runs, loads its eBPF object into this
/// kernel and traces a command; it needs no newer glibc than
/// docs/install.md claims; the tarball carries the unit, an example
/// configuration that checks, completions and man pages; the .deb puts
/// them in Debian's places, with the unit pointed at /usr/bin and the
/// configuration a conffile.
#[test]
fn the_packaged_binary_runs_from_the_tarball_and_the_deb_installs_in_place() {
    let Some((tarball, deb)) = dist() else { return };
    let dir = std::env::temp_dir().join(format!("aw-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _gone = Gone(dir.clone());
    let ok = |c: &mut Command| {
        let out = c.output().expect("run");
        assert!(out.status.success(), "{c:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir));
    let top = dir.join(format!(
        "agentwatch-{}-x86_64-linux",
        env!("CARGO_PKG_VERSION")
    ));
    let bin = top.join("bin/agentwatch");
    assert!(ok(Command::new(&bin).arg("--version")).contains(env!("CARGO_PKG_VERSION")));
    let newest = glibc_versions(&bin);
    assert!(!newest.is_empty(), "no glibc symbol versions found");
    assert!(
        newest[0] <= GLIBC_CLAIMED,
        "the binary needs glibc {:?}, newer than the {:?} docs/install.md claims",
        newest[0],
        GLIBC_CLAIMED
    );
    let install = std::fs::read_to_string(repo().join("docs/install.md")).unwrap();
    assert!(
        install.contains("glibc 2.34"),
        "docs/install.md no longer states the claim"
    );
    for f in [
        "lib/systemd/system/agentwatch.service",
        "etc/agentwatch/agentwatch.toml",
        "share/bash-completion/completions/agentwatch",
        "share/zsh/vendor-completions/_agentwatch",
        "share/fish/vendor_completions.d/agentwatch.fish",
        "share/man/man1/agentwatch.1",
        "share/man/man1/agentwatch-run.1",
        "share/doc/agentwatch/README.md",
        "share/doc/agentwatch/docs/install.md",
    ] {
        let p = top.join(f);
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 0),
            "{f} missing or empty"
        );
    }
    assert!(
        std::fs::read_to_string(top.join("share/man/man1/agentwatch.1"))
            .unwrap()
            .starts_with(".ie")
    );

    if std::fs::metadata("/sys/fs/bpf").is_ok() && nix::unistd::geteuid().is_root() {
        // The packaged binary's own eBPF object, in this kernel.
        let events = ok(Command::new(&bin).args(["trace", "--json", "--", "/bin/true"]));
        assert!(
            events
                .lines()
                .any(|l| l.contains("\"kind\":\"exec\"") && l.contains("/bin/true")),
            "{events}"
        );
    } else {
        eprintln!("SKIP (the trace part): not root, or no bpffs");
    }

    // The .deb: metadata, and its files where Debian puts them.
    let info = ok(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains("Package: agentwatch"), "{info}");
    let depends = info
        .lines()
        .find(|l| l.trim_start().starts_with("Depends:"))
        .unwrap_or_default();
    assert!(
        depends.contains(&format!("libc6 (>= 2.{})", newest[0].1)),
        "{depends}"
    );
    let root = dir.join("deb");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let control = dir.join("control");
    ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/agentwatch/agentwatch.toml"
    );
    assert!(
        ok(Command::new(root.join("usr/bin/agentwatch")).arg("--version"))
            .contains(env!("CARGO_PKG_VERSION"))
    );
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/agentwatch.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/agentwatch daemon"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
    assert!(root.join("usr/share/man/man1/agentwatch.1.gz").exists());
    assert!(root
        .join("usr/share/bash-completion/completions/agentwatch")
        .exists());
}

/// The container recipe builds from source in stages: the image takes
/// the binary from its build stage, never from the host's target/. (The
/// image itself is not built here: this machine reaches no registry.)
#[test]
fn the_container_recipe_builds_from_source_in_stages() {
    let text = std::fs::read_to_string(repo().join("packaging/container/Containerfile")).unwrap();
    let stages: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "not multi-stage: {stages:?}");
    assert!(stages[0].contains(" AS build"), "{stages:?}");
    assert!(text.contains("COPY --from=build "), "{text}");
    assert!(text.contains("cargo build --release --locked"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("COPY target/")),
        "copies a host build: {text}"
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

/// The Helm chart: `helm lint --strict`, then what `helm template`
/// renders (with the defaults, and with feed and audit-key Secrets) is
/// checked by `kubernetes-validate --strict`, and the configuration and
/// profile its ConfigMap carries pass `agentwatch daemon --check`.
#[test]
fn the_helm_chart_lints_renders_valid_manifests_and_a_config_that_checks() {
    let tools = std::env::var_os("AGENTWATCH_PYTOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/agentwatch/pytools".into());
    let (helm, validate) = (
        tools.join("bin/helm"),
        tools.join("bin/kubernetes-validate"),
    );
    if !helm.exists() || !validate.exists() {
        eprintln!(
            "SKIP: no helm or kubernetes-validate in {} (scripts/setup.sh installs them)",
            tools.display()
        );
        return;
    }
    let chart = repo().join("packaging/helm/agentwatch");
    let lint = Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let dir = std::env::temp_dir().join(format!("aw-helm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _gone = Gone(dir.clone());
    for (tag, sets) in [
        ("defaults", vec![]),
        (
            "secrets",
            vec!["feedSecrets[0]=siem", "auditKeySecret=audit-key"],
        ),
    ] {
        let mut c = Command::new(&helm);
        c.args(["template", "agentwatch"])
            .arg(&chart)
            .args(["-n", "agentwatch-system"]);
        for s in &sets {
            c.args(["--set", s]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = dir.join(format!("{tag}.yaml"));
        std::fs::write(&rendered, &out.stdout).unwrap();
        let v = Command::new(&validate)
            .arg("--strict")
            .arg(&rendered)
            .output()
            .unwrap();
        let said =
            String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success(), "{tag}: {said}");
        for kind in [
            "daemonset/agentwatch",
            "configmap/agentwatch-config",
            "clusterrole/agentwatch",
        ] {
            assert!(
                said.contains(&format!("passed for resource {kind}")),
                "{tag}: {kind}: {said}"
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if tag == "secrets" {
            assert!(
                text.contains("mountPath: /etc/agentwatch-secrets/siem"),
                "{text}"
            );
            assert!(text.contains("defaultMode: 0400"), "{text}");
        }
        // The ConfigMap's files, as the pod sees them, check.
        let cm = text
            .split("\n---\n")
            .find(|d| d.contains("kind: ConfigMap"))
            .expect("a ConfigMap");
        configmap_checks(cm, &dir.join(format!("etc-{tag}")), tag);
    }
}

/// A directory removed on drop, also when the test fails.
struct Gone(std::path::PathBuf);

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

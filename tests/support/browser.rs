//! Debian's chromium, headless, for what a person would see: the DOM a
//! page renders to, and a screenshot kept under target/test-output.
use std::{path::PathBuf, process::Command};

/// The chromium binary, or None (after printing why).
pub fn chromium() -> Option<PathBuf> {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(c).exists() {
            return Some(c.into());
        }
    }
    eprintln!("SKIP: chromium is not installed (scripts/setup.sh installs Debian's chromium)");
    None
}

fn headless(bin: &PathBuf) -> Command {
    let mut c = Command::new(bin);
    // As root chromium needs --no-sandbox; its D-Bus complaints are noise.
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ]);
    c
}

/// The DOM `url` renders to.
pub fn dump_dom(bin: &PathBuf, url: &str) -> String {
    let out = headless(bin)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `url` in target/test-output/NAME.png; its path.
pub fn screenshot(bin: &PathBuf, url: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-output"
    ));
    std::fs::create_dir_all(&dir).expect("test output directory");
    let png = dir.join(format!("{name}.png"));
    let out = headless(bin)
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success() && png.exists(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    png
}

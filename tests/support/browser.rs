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

/// Chromium driven over the DevTools protocol through a pipe
/// (`--remote-debugging-pipe`: chromium reads commands on fd 3 and writes
/// answers on fd 4, each message ended by a NUL), so a test can load a
/// page, wait for what it renders, click, and take a screenshot. The
/// browser is killed and its profile directory removed on drop.
pub struct Cdp {
    child: std::process::Child,
    to: std::fs::File,
    from: std::sync::mpsc::Receiver<serde_json::Value>,
    next: u64,
    session: String,
    /// Its profile directory, removed after the browser (fields drop
    /// after `drop` ran).
    _profile: super::TempDir,
}

impl Cdp {
    /// Starts headless chromium with a blank page attached.
    pub fn launch(bin: &PathBuf) -> Cdp {
        use std::os::{fd::FromRawFd, unix::process::CommandExt};
        let pipe = || {
            let mut fds = [0i32; 2];
            // SAFETY: fds has room for the two descriptors.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(rc, 0, "pipe2");
            fds
        };
        let (cmd_pipe, answer_pipe) = (pipe(), pipe());
        let (child_reads, child_writes) = (cmd_pipe[0], answer_pipe[1]);
        let profile = super::TempDir::new("chromium-profile");
        let mut c = headless(bin);
        // Its own process group: its helpers (renderer, zygote, crash
        // handler) go with it on drop, before its profile is removed.
        c.process_group(0)
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // ends are first moved above 10 so that dup2 onto 3 and 4 cannot
        // clobber one with the other.
        unsafe {
            c.pre_exec(move || {
                let r = libc::fcntl(child_reads, libc::F_DUPFD, 10);
                let w = libc::fcntl(child_writes, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().expect("start chromium");
        // SAFETY: each descriptor is ours and closed exactly once here.
        let (to, from_file) = unsafe {
            libc::close(child_reads);
            libc::close(child_writes);
            (
                std::fs::File::from_raw_fd(cmd_pipe[1]),
                std::fs::File::from_raw_fd(answer_pipe[0]),
            )
        };
        let (tx, from) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut r = std::io::BufReader::new(from_file);
            let mut msg = Vec::new();
            while r.read_until(0, &mut msg).is_ok_and(|n| n > 0) {
                if msg.last() == Some(&0) {
                    msg.pop();
                }
                if let Ok(v) = serde_json::from_slice(&msg) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                msg.clear();
            }
        });
        let mut cdp = Cdp {
            child,
            to,
            from,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = cdp.call(
            "Target.createTarget",
            serde_json::json!({"url": "about:blank"}),
        );
        let target = target["targetId"].as_str().expect("a target").to_string();
        let attached = cdp.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target, "flatten": true}),
        );
        cdp.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        cdp
    }

    /// Sends a command (to the page once attached); its result.
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        self.next += 1;
        let id = self.next;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = serde_json::json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", serde_json::json!({"url": url}));
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expr: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` (a string) until `ok` holds for it; the last value.
    pub fn wait_for(&mut self, expr: &str, ok: impl Fn(&str) -> bool) -> String {
        let t = std::time::Instant::now();
        loop {
            let v = self.eval(expr);
            let s = v.as_str().unwrap_or("").to_string();
            if ok(&s) {
                return s;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "the page never showed what was awaited ({expr}); last: {s:?}; body: {}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// A screenshot in target/test-output/NAME.png; its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or(""))
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-output"
        ));
        std::fs::create_dir_all(&dir).expect("test output directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this Cdp started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        // Helpers may still be exiting; wait until none is left.
        let t = std::time::Instant::now();
        // SAFETY: a signal 0 only asks whether the group still exists.
        while unsafe { libc::kill(-(self.child.id() as i32), 0) } == 0
            && t.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

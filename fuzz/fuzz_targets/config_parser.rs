//! Any text as the daemon's configuration: validation never panics, and
//! every problem it reports points inside the text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = std::path::Path::new("/nonexistent/agentwatch-fuzz/agentwatch.toml");
    if let Err(report) = agentwatch::daemon::config::parse(file, text) {
        let lines = text.lines().count().max(1);
        for p in &report.problems {
            assert!(p.line >= 1 && p.line <= lines + 1, "line {} of {lines}", p.line);
        }
        let _ = report.to_string();
    }
});

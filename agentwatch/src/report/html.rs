//! The report as one self-contained HTML page: inline style, no script,
//! nothing fetched from elsewhere. Every text from the log is escaped.
use std::fmt::Write as _;

use super::{AgentView, Entry, Report, Tone};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
.chain{padding:.5em 1em;border-radius:4px}.ok{background:#e8f5e9}.broken{background:#ffebee}
table{border-collapse:collapse;width:100%;table-layout:fixed}td.time{width:12em}td.rule{width:11em}td{padding:.35em .5em;border-bottom:1px solid #eee;vertical-align:top}
td.time{white-space:nowrap;color:#666;font-size:.9em}td.rule{color:#666;font-size:.85em;white-space:nowrap}
tr.blocked td.what{border-left:4px solid #c62828}tr.paused td.what{border-left:4px solid #ef6c00}
tr.reported td.what{border-left:4px solid #f9a825}tr.approved td.what{border-left:4px solid #2e7d32}
tr.info td.what{border-left:4px solid #90a4ae}tr.session td.what{border-left:4px solid #1565c0;background:#f3f8fd}details pre{white-space:pre-wrap;font-size:.8em;background:#f5f5f5;padding:.5em}
.summary{color:#444}.why{color:#444;font-size:.9em;font-style:italic}";

/// `s` with `<`, `>`, `&`, `"` and `'` escaped.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The CSS class (and the UI's `tone`) of a timeline entry.
pub fn tone_class(t: Tone) -> &'static str {
    match t {
        Tone::Blocked => "blocked",
        Tone::Paused => "paused",
        Tone::Reported => "reported",
        Tone::Approved => "approved",
        Tone::Info => "info",
        Tone::Session => "session",
    }
}

/// The page.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let files: Vec<String> = r.files.iter().map(|f| f.display().to_string()).collect();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>agentwatch report: {}</title><style>{STYLE}</style></head><body>\n<h1>agentwatch report</h1>\n<p class=\"summary\">From {}. Made by agentwatch {} at {}.</p>\n<p class=\"chain {}\" id=\"chain\">{}{}</p>\n",
        escape(&files.join(", ")),
        escape(&files.join(", ")),
        env!("CARGO_PKG_VERSION"),
        escape(&crate::timestamp::now()),
        if r.chain_ok { "ok" } else { "broken" },
        escape(&r.chain),
        if r.checkpoints > 0 {
            format!("; {} signed checkpoint(s) (check them with <code>agentwatch audit verify --key</code>)", r.checkpoints)
        } else {
            String::new()
        }
    );
    for a in &r.agents {
        agent(&mut o, a);
    }
    if !r.log.is_empty() {
        o.push_str("<h2 id=\"log\">agentwatch itself</h2>\n");
        table(&mut o, &r.log);
    }
    o.push_str("</body></html>\n");
    o
}

fn agent(o: &mut String, a: &AgentView) {
    let _ = write!(
        o,
        "<h2 class=\"agent\" id=\"agent-{}\">Agent {}</h2>\n<p class=\"summary\">{} session(s); {} violation(s): {} blocked, {} paused ({} approved); {} new name(s) learned in place.</p>\n",
        escape(&a.name),
        escape(&a.name),
        a.sessions,
        a.violations,
        a.blocked,
        a.paused,
        a.approved,
        a.learned
    );
    table(o, &a.entries);
}

fn table(o: &mut String, entries: &[Entry]) {
    o.push_str("<table>\n");
    for e in entries {
        let raw = serde_json::to_string_pretty(&e.raw).unwrap_or_default();
        let _ = writeln!(
            o,
            "<tr class=\"{}\"><td class=\"time\">{}</td><td class=\"what\">{}{}<details><summary>record</summary><pre>{}</pre></details></td><td class=\"rule\">{}</td></tr>",
            tone_class(e.tone),
            escape(&shown_time(&e.time)),
            escape(&e.text),
            e.why
                .as_deref()
                .map(|w| format!("<div class=\"why\">Why: {}</div>", escape(w)))
                .unwrap_or_default(),
            escape(&raw),
            escape(e.rule.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>\n");
}

/// `2026-11-27T10:01:00.123456Z` as `2026-11-27 10:01:00 UTC`.
fn shown_time(t: &str) -> String {
    match t.get(..19) {
        Some(s) if t.ends_with('Z') => format!("{} UTC", s.replace('T', " ")),
        _ => t.to_string(),
    }
}

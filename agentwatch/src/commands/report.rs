//! `agentwatch report --html FILE LOG...`: the audit log as a page people
//! can read (`crate::report`). Exit 0 when written and the chain holds, 1
//! when written but the chain is broken (the page says where), 2 when a log
//! cannot be read.
use std::path::{Path, PathBuf};

pub fn run(html: &Path, logs: &[PathBuf], json: bool) -> anyhow::Result<i32> {
    let r = crate::report::build(logs)
        .map_err(|e| crate::exit::usage(format!("cannot read the audit log: {e}")))?;
    let page = crate::report::html::render(&r);
    std::fs::write(html, page)
        .map_err(|e| crate::exit::failed(format!("cannot write {}: {e}", html.display())))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"html": html.display().to_string(), "chain_ok": r.chain_ok,
                "chain": r.chain, "agents": r.agents.iter().map(|a| &a.name).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "{}: {} agent(s); {}",
            html.display(),
            r.agents.len(),
            r.chain
        );
    }
    Ok(if r.chain_ok { 0 } else { 1 })
}

//! `agentwatch ui [--config FILE] [--json]`: the address of the running
//! daemon's live page (`crate::ui`), token included, as the daemon wrote
//! it at start. Reading it takes what reading the daemon's state takes
//! (root: the file is mode 0600).

#[derive(Debug, clap::Args)]
pub struct UiOptions {
    #[command(flatten)]
    pub config: super::daemon::ConfigArg,
    /// One JSON object: the URL and where it was read.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: UiOptions) -> anyhow::Result<i32> {
    let cfg = o.config.load()?;
    let Some(ui) = cfg.ui else {
        return Err(crate::exit::usage(format!(
            "{} has no [ui] section: add\n[ui]\nlisten = \"127.0.0.1:7878\"\nand restart the daemon",
            o.config.config.display()
        )));
    };
    let url = match std::fs::read_to_string(&ui.url_file) {
        Ok(u) => u.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(crate::exit::failed(format!(
                "the daemon is not serving its UI (no {}): is `agentwatch daemon --config {}` running?",
                ui.url_file.display(),
                o.config.config.display()
            )))
        }
        Err(e) => {
            return Err(crate::exit::usage(format!(
                "cannot read {}: {e} (the UI's address carries its token: root only)",
                ui.url_file.display()
            )))
        }
    };
    if o.json {
        println!(
            "{}",
            serde_json::json!({"url": url, "file": ui.url_file.display().to_string()})
        );
    } else {
        println!("{url}");
    }
    Ok(0)
}

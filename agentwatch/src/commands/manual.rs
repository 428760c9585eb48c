//! `agentwatch completions SHELL` and the man pages (`cargo xtask man`),
//! both generated from the command line's own definition, so they never
//! disagree with `--help`.
use std::path::Path;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, mut root: clap::Command) -> anyhow::Result<i32> {
    clap_complete::generate(shell, &mut root, "agentwatch", &mut std::io::stdout());
    Ok(0)
}

/// Writes agentwatch.1 and one agentwatch-SUBCOMMAND.1 per visible
/// subcommand into `dir`.
pub fn man_pages(root: clap::Command, dir: &Path) -> anyhow::Result<i32> {
    std::fs::create_dir_all(dir)?;
    let mut pages = vec![("agentwatch".to_string(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("agentwatch-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, cmd) in pages {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
    }
    Ok(0)
}

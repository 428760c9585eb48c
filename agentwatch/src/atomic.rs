//! Writing a file whole or not at all: a temporary twin, synced, renamed
//! over the target, so a crash never leaves half a profile.
use std::{io::Write, path::Path};

/// Writes `bytes` to a temporary file beside `path` and renames it over,
/// so a crash never leaves half a profile.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("yaml.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!(
            "cannot write the profile to {}: {e}; nothing was written",
            path.display()
        )
    })
}

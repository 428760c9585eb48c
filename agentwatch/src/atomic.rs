//! Writing a file whole or not at all: a temporary twin, synced, renamed
//! over the target, so a crash never leaves half a profile.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// A profile that could not be written; the file was left as it was.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the profile to {}: {source}; nothing was written", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` to a temporary file beside `path` and renames it over,
/// so a crash never leaves half a file.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let tmp = path.with_extension(format!("yaml.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        WriteError {
            path: path.to_path_buf(),
            source,
        }
    })
}

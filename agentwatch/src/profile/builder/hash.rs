//! sha256 of the binaries an agent runs, cached by file identity so a
//! binary run a thousand times is read once.
use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read},
    os::unix::fs::MetadataExt,
};

use sha2::{Digest, Sha256};

/// (dev, inode, size, mtime seconds, mtime nanoseconds).
pub type FileId = (u64, u64, u64, i64, i64);

#[derive(Debug, Default)]
pub struct HashCache {
    by_id: HashMap<FileId, String>,
}

impl HashCache {
    /// The sha256 of the file the process ran: `/proc/PID/exe` while it
    /// lives (the exact inode, even if the path was replaced since), else
    /// the path. None when neither can be read.
    pub fn sha256(&mut self, path: &str, pid: u32) -> Option<String> {
        let via_proc = format!("/proc/{pid}/exe");
        let file = File::open(&via_proc)
            .ok()
            .filter(|f| {
                // /proc/PID/exe is the interpreter for a script; only use
                // it when it is the file at `path`.
                let (a, b) = (f.metadata().ok(), std::fs::metadata(path).ok());
                matches!((a, b), (Some(a), Some(b)) if a.dev() == b.dev() && a.ino() == b.ino())
            })
            .or_else(|| File::open(path).ok())?;
        self.hash_file(file).ok()
    }

    /// How many digests were computed (not served from the cache).
    pub fn computed(&self) -> usize {
        self.by_id.len()
    }

    /// The sha256 already computed for a file identity.
    pub fn known(&self, id: &FileId) -> Option<String> {
        self.by_id.get(id).cloned()
    }

    /// Keeps a digest computed elsewhere (a hashing thread).
    pub fn remember(&mut self, id: FileId, sha256: String) {
        self.by_id.insert(id, sha256);
    }

    /// The sha256 of an open file, computed once per file identity.
    pub fn hash_file(&mut self, mut f: File) -> io::Result<String> {
        let id = file_id(&f)?;
        if let Some(h) = self.by_id.get(&id) {
            return Ok(h.clone());
        }
        let hex = digest_hex::<Sha256>(&mut f)?;
        self.by_id.insert(id, hex.clone());
        Ok(hex)
    }
}

/// A file's identity for caching its digest: a changed file has another.
pub fn file_id(f: &File) -> io::Result<FileId> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The digest `D` of a file's contents, as lower-case hex.
pub fn digest_hex<D: Digest>(f: &mut File) -> io::Result<String> {
    let mut hasher = D::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::hex::encode(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_a_file_and_caches_it() {
        let dir = std::env::temp_dir().join(format!("aw-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x");
        std::fs::write(&p, b"abc").unwrap();
        let mut c = HashCache::default();
        let h = c.sha256(p.to_str().unwrap(), u32::MAX).unwrap();
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(c.by_id.len(), 1);
        assert_eq!(c.sha256("/nonexistent/x", u32::MAX), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The distribution's package database: which binaries a package
//! installed, and whether the file on disk is still the one it installed.
//! dpkg keeps an md5 of every file of every package in
//! `/var/lib/dpkg/info/PACKAGE.md5sums`; a binary whose md5 matches is
//! "package-owned, unmodified", the provenance an executable entry with
//! `source: package` asks for. Hosts without dpkg have no such binaries.
use std::{
    collections::HashMap,
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use md5::Md5;

use super::builder::hash::{digest_hex, file_id, FileId};

/// dpkg's database directory on Debian and its derivatives.
pub const DPKG_INFO: &str = "/var/lib/dpkg/info";

/// Package files and their checksums, read once.
#[derive(Debug, Default)]
pub struct Packages {
    /// Absolute path -> (package, md5 hex).
    files: HashMap<String, (String, String)>,
    /// md5 of files already read, by identity.
    sums: Mutex<HashMap<FileId, String>>,
}

impl Packages {
    /// The host's database, read on first use and shared.
    pub fn host() -> &'static Packages {
        static HOST: OnceLock<Packages> = OnceLock::new();
        HOST.get_or_init(|| Packages::read(Path::new(DPKG_INFO)).unwrap_or_default())
    }

    /// Reads every `*.md5sums` file in `dir`.
    pub fn read(dir: &Path) -> io::Result<Self> {
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(package) = name.strip_suffix(".md5sums") else {
                continue;
            };
            let package = package.split(':').next().unwrap_or(package).to_string();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines() {
                let Some((sum, file)) = line.split_once("  ") else {
                    continue;
                };
                files.insert(format!("/{file}"), (package.clone(), sum.to_string()));
            }
        }
        Ok(Self {
            files,
            sums: Mutex::default(),
        })
    }

    /// The package that installed the file at `path` (as executed), when
    /// the file is still the one it installed. The path's symlinks are
    /// followed first (`/bin` is `/usr/bin` on merged-/usr systems).
    pub fn owner_unmodified(&self, path: &str) -> Option<&str> {
        let real = std::fs::canonicalize(path).ok()?;
        let (package, want) = self.entry(&real)?;
        let have = self.md5(&real).ok()?;
        (have == *want).then_some(package.as_str())
    }

    fn entry(&self, real: &Path) -> Option<&(String, String)> {
        let p = real.to_str()?;
        if let Some(e) = self.files.get(p) {
            return Some(e);
        }
        // Packages may still list the pre-merge name (/bin/ls for
        // /usr/bin/ls).
        let unmerged = ["/usr/bin/", "/usr/sbin/", "/usr/lib/", "/usr/lib64/"]
            .iter()
            .find_map(|d| p.strip_prefix(d).map(|rest| format!("{}{rest}", &d[4..])))?;
        self.files.get(&unmerged)
    }

    fn md5(&self, path: &PathBuf) -> io::Result<String> {
        let mut f = File::open(path)?;
        let id = file_id(&f)?;
        if let Some(h) = self.sums.lock().ok().and_then(|s| s.get(&id).cloned()) {
            return Ok(h);
        }
        let hex = digest_hex::<Md5>(&mut f)?;
        if let Ok(mut s) = self.sums.lock() {
            s.insert(id, hex.clone());
        }
        Ok(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_unmodified_by_md5() {
        let d = tempfile::tempdir().unwrap();
        let info = d.path().join("info");
        let root = d.path().join("root");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        let bin = root.join("tool");
        std::fs::write(&bin, b"abc").unwrap();
        let rel = bin.to_str().unwrap().trim_start_matches('/').to_string();
        // md5("abc")
        std::fs::write(
            info.join("tools:amd64.md5sums"),
            format!("900150983cd24fb0d6963f7d28e17f72  {rel}\n"),
        )
        .unwrap();
        let p = Packages::read(&info).unwrap();
        assert_eq!(p.owner_unmodified(bin.to_str().unwrap()), Some("tools"));
        std::fs::write(&bin, b"abd").unwrap();
        assert_eq!(p.owner_unmodified(bin.to_str().unwrap()), None);
        assert_eq!(p.owner_unmodified("/nonexistent"), None);
    }

    #[test]
    fn this_hosts_coreutils_if_dpkg_is_here() {
        if !Path::new(DPKG_INFO).join("coreutils.md5sums").exists() {
            eprintln!("SKIP: no dpkg database on this host");
            return;
        }
        assert_eq!(
            Packages::host().owner_unmodified("/usr/bin/seq"),
            Some("coreutils")
        );
        assert_eq!(
            Packages::host().owner_unmodified("/bin/ls"),
            Some("coreutils")
        );
    }
}

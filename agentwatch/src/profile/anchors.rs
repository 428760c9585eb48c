//! `$WORKSPACE`, `$HOME` and `$TMP`: the agent's own places, so a profile
//! learned in one checkout or on one host holds on another.
use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
};

/// Where this agent's workspace, home and temp directory are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchors {
    pub workspace: Option<String>,
    pub home: Option<String>,
    pub tmp: Option<String>,
}

impl Anchors {
    /// The anchors of a command agentwatch starts: its working directory,
    /// and HOME and TMPDIR from its environment (TMPDIR defaults to /tmp).
    pub fn for_command(cwd: &Path, home: Option<&OsStr>, tmpdir: Option<&OsStr>) -> Self {
        Self::new(
            Some(cwd.to_string_lossy().into_owned()),
            home.map(|h| h.to_string_lossy().into_owned()),
            Some(
                tmpdir
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "/tmp".into()),
            ),
        )
    }

    /// The anchors of this process's environment (`check` over a file).
    pub fn from_env() -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Self::for_command(
            &cwd,
            std::env::var_os("HOME").as_deref(),
            std::env::var_os("TMPDIR").as_deref(),
        )
    }

    /// The anchors of a running process, read from /proc: for agents
    /// selected by cgroup, UID or executable rather than started by us.
    pub fn for_pid(pid: u32) -> std::io::Result<Self> {
        let cwd = fs::read_link(format!("/proc/{pid}/cwd"))?;
        let environ = fs::read(format!("/proc/{pid}/environ"))?;
        let var = |name: &str| {
            environ.split(|b| *b == 0).find_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.strip_prefix(name)
                    .and_then(|v| v.strip_prefix('='))
                    .map(str::to_string)
            })
        };
        let (home, tmp) = (var("HOME"), var("TMPDIR"));
        Ok(Self::for_command(
            &cwd,
            home.as_deref().map(OsStr::new),
            tmp.as_deref().map(OsStr::new),
        ))
    }

    /// This process's anchors (`from_env`), each replaced by the directory
    /// given on the command line, if any (`--workspace`, `--home`, `--tmp`).
    pub fn from_env_with(
        workspace: Option<&std::path::Path>,
        home: Option<&std::path::Path>,
        tmp: Option<&std::path::Path>,
    ) -> Self {
        let env = Self::from_env();
        let given = |p: Option<&std::path::Path>| p.map(|p| p.display().to_string());
        Self::new(
            given(workspace).or(env.workspace),
            given(home).or(env.home),
            given(tmp).or(env.tmp),
        )
    }

    /// Cleans each directory; `/` and relative values are dropped, since
    /// anchoring at the root would rewrite every path.
    pub fn new(workspace: Option<String>, home: Option<String>, tmp: Option<String>) -> Self {
        let clean = |d: Option<String>| {
            d.map(|d| crate::paths::resolve(None, &d))
                .filter(|d| d.starts_with('/') && d != "/")
        };
        Self {
            workspace: clean(workspace),
            home: clean(home),
            tmp: clean(tmp),
        }
    }

    /// Anchor name and directory, most specific first. On a tie the
    /// workspace wins over the temp dir, and both over home.
    fn ordered(&self) -> Vec<(&'static str, &str)> {
        let mut v: Vec<(&'static str, &str)> = [
            ("$WORKSPACE", &self.workspace),
            ("$TMP", &self.tmp),
            ("$HOME", &self.home),
        ]
        .into_iter()
        .filter_map(|(n, d)| d.as_deref().map(|d| (n, d)))
        .collect();
        // Stable sort keeps the tie order above.
        v.sort_by_key(|(_, d)| std::cmp::Reverse(d.len()));
        v
    }

    /// Rewrites an absolute path under an anchor as `$ANCHOR/rest`.
    pub fn anchor(&self, path: &str) -> String {
        for (name, dir) in self.ordered() {
            if path == dir {
                return name.to_string();
            }
            if let Some(rest) = path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
                return format!("{name}/{rest}");
            }
        }
        path.to_string()
    }

    /// Turns an anchored pattern back into an absolute one; `None` when the
    /// pattern's anchor is not known here.
    pub fn expand(&self, pattern: &str) -> Option<String> {
        let (head, rest) = match pattern.split_once('/') {
            Some((h, r)) => (h, Some(r)),
            None => (pattern, None),
        };
        let dir = match head {
            "$WORKSPACE" => self.workspace.as_deref()?,
            "$HOME" => self.home.as_deref()?,
            "$TMP" => self.tmp.as_deref()?,
            _ => return Some(pattern.to_string()),
        };
        Some(match rest {
            Some(r) => format!("{dir}/{r}"),
            None => dir.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors() -> Anchors {
        Anchors::new(
            Some("/home/ana/src/proj".into()),
            Some("/home/ana".into()),
            Some("/tmp".into()),
        )
    }

    #[test]
    fn most_specific_anchor_wins() {
        let a = anchors();
        assert_eq!(
            a.anchor("/home/ana/src/proj/src/main.rs"),
            "$WORKSPACE/src/main.rs"
        );
        assert_eq!(a.anchor("/home/ana/.cache/pip/x"), "$HOME/.cache/pip/x");
        assert_eq!(a.anchor("/tmp/tmp.AbC"), "$TMP/tmp.AbC");
        assert_eq!(a.anchor("/home/ana"), "$HOME");
        assert_eq!(a.anchor("/home/anatoly/x"), "/home/anatoly/x");
        assert_eq!(a.anchor("/etc/hosts"), "/etc/hosts");
    }

    #[test]
    fn workspace_inside_tmp_is_workspace() {
        let a = Anchors::new(
            Some("/tmp/run-1/ws".into()),
            None,
            Some("/tmp/run-1".into()),
        );
        assert_eq!(a.anchor("/tmp/run-1/ws/out"), "$WORKSPACE/out");
        assert_eq!(a.anchor("/tmp/run-1/x"), "$TMP/x");
    }

    #[test]
    fn root_is_never_an_anchor() {
        let a = Anchors::new(Some("/".into()), Some("/".into()), None);
        assert_eq!(a.anchor("/etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn a_running_process_gives_its_own_anchors() {
        let a = Anchors::for_pid(std::process::id()).unwrap();
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(a.workspace.as_deref(), Some(cwd.to_str().unwrap()));
        let tmp = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
        assert_eq!(
            a.tmp.as_deref(),
            Some(crate::paths::resolve(None, &tmp).as_str())
        );
        assert!(Anchors::for_pid(u32::MAX).is_err());
    }

    #[test]
    fn expand_is_the_inverse() {
        let a = anchors();
        assert_eq!(
            a.expand("$WORKSPACE/src/*.rs").unwrap(),
            "/home/ana/src/proj/src/*.rs"
        );
        assert_eq!(a.expand("$HOME").unwrap(), "/home/ana");
        assert_eq!(a.expand("/etc/*").unwrap(), "/etc/*");
        assert_eq!(Anchors::default().expand("$TMP/x"), None);
    }
}

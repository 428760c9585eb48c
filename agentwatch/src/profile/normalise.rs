//! Normalising what varies between runs of the same workload, before a
//! path becomes a profile entry: PIDs and TIDs, UUIDs, long hex and digit
//! runs, `mktemp` and Python `tempfile` names, `sed -i` and editor temp
//! files, random-looking session ids. The rest of a name is kept, so
//! `sess-4f9c2a1e` becomes `sess-*`, never a bare `*` unless the whole
//! name varied.
//!
//! Names `mktemp` makes are recognised from the `mktemp` process itself
//! (`TempNames`): its template says exactly which characters are random,
//! whatever the template's shape.
use std::collections::{HashMap, HashSet};

use super::anchors::Anchors;

/// Normalises an absolute path: lexically cleaned, anchored, then each
/// segment after the anchor normalised. `None` for a path that is not
/// absolute (its base was unknown), which cannot become a rule.
pub fn path(path: &str, anchors: &Anchors, pids: &HashSet<u32>) -> Option<String> {
    path_with(path, anchors, pids, &TempNames::default())
}

/// As `path`, with the temp names this session's `mktemp` runs made.
pub fn path_with(
    path: &str,
    anchors: &Anchors,
    pids: &HashSet<u32>,
    temps: &TempNames,
) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let clean = crate::paths::resolve(None, path);
    let clean = temps.rewrite(&crate::paths::usr_name(&clean));
    let anchored = anchors.anchor(&clean);
    let segs: Vec<&str> = anchored.split('/').collect();
    let mut out: Vec<String> = Vec::with_capacity(segs.len());
    for (i, seg) in segs.iter().enumerate() {
        let after_proc = i >= 2 && segs[0].is_empty() && segs[1] == "proc";
        let n = if i == 0 {
            (*seg).to_string()
        } else if after_proc && (i == 2 || (i == 4 && segs[3] == "task")) && is_digits(seg) {
            // /proc/PID and /proc/PID/task/TID
            "*".to_string()
        } else {
            segment(seg, pids)
        };
        out.push(n);
    }
    Some(out.join("/"))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Normalises one path segment (a file or directory name).
pub fn segment(name: &str, pids: &HashSet<u32>) -> String {
    if let Some(n) = mktemp_name(name) {
        return n;
    }
    let name = replace_uuids(name);
    let mut out = String::with_capacity(name.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() {
            if varies(token, pids) {
                out.push('*');
            } else {
                out.push_str(token);
            }
            token.clear();
        }
    };
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    collapse_stars(&out)
}

/// Temp names known to be random: coreutils `mktemp`'s default
/// (`tmp.` + 10 alphanumerics), Python `tempfile` (`tmp` + 8 of
/// `[a-z0-9_]`, then an optional suffix), `sed -i`'s `sedXXXXXX`, and
/// editors' swap and probe files (`.name.swp`, vim's `4913`).
fn mktemp_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("sed") {
        let random = rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric());
        if random
            && rest
                .bytes()
                .any(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Some("sed*".into());
        }
    }
    if name == "4913" {
        return Some("4913".into());
    }
    if let Some(swap) = [".swp", ".swo", ".swx", ".swn"]
        .iter()
        .find(|s| name.starts_with('.') && name.ends_with(*s) && name.len() > s.len() + 1)
    {
        return Some(format!(".*{swap}"));
    }
    if let Some(rest) = name.strip_prefix("tmp.") {
        if rest.len() == 10 && rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Some("tmp.*".into());
        }
    }
    let rest = name.strip_prefix("tmp")?;
    let head = rest.get(..8)?;
    let suffix = &rest[8..];
    let random = head
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if random && (suffix.is_empty() || suffix.starts_with('.')) {
        return Some(format!("tmp*{suffix}"));
    }
    None
}

/// Replaces 8-4-4-4-12 hex UUIDs with `*`.
fn replace_uuids(name: &str) -> String {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let b = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < b.len() {
        if i + 36 <= b.len() && (i == 0 || !b[i - 1].is_ascii_hexdigit()) {
            let cand = &b[i..i + 36];
            let mut pos = 0;
            let ok = SHAPE.iter().enumerate().all(|(k, &len)| {
                let part_ok = cand[pos..pos + len].iter().all(u8::is_ascii_hexdigit);
                pos += len;
                let sep_ok = k == 4 || cand[pos] == b'-';
                pos += 1;
                part_ok && sep_ok
            });
            let ends = i + 36 == b.len() || !b[i + 36].is_ascii_hexdigit();
            if ok && ends {
                out.push('*');
                i += 36;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Does this alphanumeric token vary between runs?
fn varies(token: &str, pids: &HashSet<u32>) -> bool {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    if digits {
        // Long digit runs (timestamps, counters, PIDs), or any of this
        // agent's PIDs and TIDs of three digits or more.
        let pid = token.len() >= 3 && token.parse::<u32>().is_ok_and(|p| pids.contains(&p));
        return token.len() >= 4 || pid;
    }
    let has_digit = token.bytes().any(|b| b.is_ascii_digit());
    let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
    if hex && has_digit && token.len() >= 8 {
        return true;
    }
    looks_random(token)
}

/// A random-looking id: six or more characters mixing letters and digits,
/// switching between lower case, upper case and digits at least four times
/// (`a8Zk3q`, not `utf8mb4`, `python3` or `x86`).
fn looks_random(token: &str) -> bool {
    if token.len() < 6 {
        return false;
    }
    let class = |c: u8| {
        if c.is_ascii_digit() {
            0
        } else if c.is_ascii_uppercase() {
            1
        } else {
            2
        }
    };
    let b = token.as_bytes();
    let has_letter = b.iter().any(u8::is_ascii_alphabetic);
    let has_digit = b.iter().any(u8::is_ascii_digit);
    let switches = b.windows(2).filter(|w| class(w[0]) != class(w[1])).count();
    has_letter && has_digit && switches >= 4
}

fn collapse_stars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '*' && out.ends_with('*')) {
            out.push(c);
        }
    }
    out
}

/// The names this session's `mktemp` runs made, so that a directory
/// made by `mktemp -d /tmp/job.XXXXXX` reads `job.*` in every path
/// beneath it, whatever the template's shape.
#[derive(Debug, Default, Clone)]
pub struct TempNames {
    /// Template (its last path segment) of each running `mktemp`, by pid.
    templates: HashMap<u32, Template>,
    /// Concrete absolute path -> the same path with its random part `*`.
    made: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    /// Characters before and after the run of Xs in the last segment.
    prefix: String,
    random: usize,
    suffix: String,
}

impl TempNames {
    /// Notes an exec: a `mktemp` run's template, from its argv.
    pub fn exec(&mut self, pid: u32, path: &str, argv: &[String]) {
        if path.rsplit('/').next() != Some("mktemp") {
            self.templates.remove(&pid);
            return;
        }
        self.templates.insert(pid, template(argv));
    }

    /// Notes a file or directory created by `pid`: when it is a `mktemp`
    /// run's, remembers its random part.
    pub fn created(&mut self, pid: u32, path: &str) {
        let Some(t) = self.templates.get(&pid) else {
            return;
        };
        let Some((dir, name)) = path.rsplit_once('/') else {
            return;
        };
        let fits = name.len() == t.prefix.len() + t.random + t.suffix.len()
            && name.starts_with(&t.prefix)
            && name.ends_with(&t.suffix);
        if fits && t.random > 0 {
            self.made
                .insert(path.to_string(), format!("{dir}/{}*{}", t.prefix, t.suffix));
        }
    }

    /// Rewrites a temp path, or a path beneath a temp directory.
    pub fn rewrite(&self, path: &str) -> String {
        if self.made.is_empty() {
            return path.to_string();
        }
        // The longest made prefix wins (a temp name inside a temp dir).
        let mut cut = path.len();
        loop {
            let head = &path[..cut];
            if let Some(n) = self.made.get(head) {
                return format!("{n}{}", &path[cut..]);
            }
            match head.rfind('/') {
                Some(i) if i > 0 => cut = i,
                _ => return path.to_string(),
            }
        }
    }
}

/// The template of a `mktemp` command line: the operand (the last
/// argument that is not an option), else coreutils' default; `--suffix`
/// adds after the Xs.
fn template(argv: &[String]) -> Template {
    let mut operand = None;
    let mut suffix = String::new();
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if let Some(s) = a.strip_prefix("--suffix=") {
            suffix = s.to_string();
        } else if a == "--suffix" {
            suffix = args.next().cloned().unwrap_or_default();
        } else if a == "-p" || a == "--tmpdir" {
            args.next();
        } else if !a.starts_with('-') {
            operand = Some(a.clone());
        }
    }
    let t = operand.unwrap_or_else(|| "tmp.XXXXXXXXXX".into());
    let last = t.rsplit('/').next().unwrap_or(&t).to_string();
    // The Xs are the last run of them (coreutils: at the end of the
    // template, before any --suffix).
    let end = last.rfind('X').map_or(0, |i| i + 1);
    let start = last[..end].trim_end_matches('X').len();
    Template {
        prefix: last[..start].to_string(),
        random: end - start,
        suffix: format!("{}{suffix}", &last[end..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> String {
        let anchors = Anchors::new(
            Some("/home/ana/src/agent".into()),
            Some("/home/ana".into()),
            Some("/tmp".into()),
        );
        let pids: HashSet<u32> = [812, 4711].into();
        path(p, &anchors, &pids).unwrap()
    }

    #[test]
    fn pids_and_tids_in_proc() {
        assert_eq!(norm("/proc/4711/status"), "/proc/*/status");
        assert_eq!(norm("/proc/4711/task/4712/comm"), "/proc/*/task/*/comm");
        assert_eq!(norm("/proc/self/maps"), "/proc/self/maps");
        assert_eq!(norm("/proc/sys/kernel/pid_max"), "/proc/sys/kernel/pid_max");
    }

    #[test]
    fn pids_inside_names() {
        // A short PID is only replaced when it is one of the agent's.
        assert_eq!(
            norm("/home/ana/src/agent/run.812.lock"),
            "$WORKSPACE/run.*.lock"
        );
        assert_eq!(
            norm("/home/ana/src/agent/run.813.lock"),
            "$WORKSPACE/run.813.lock"
        );
        assert_eq!(norm("/var/run/agent-123456.pid"), "/var/run/agent-*.pid");
    }

    #[test]
    fn uuids_and_hex() {
        assert_eq!(
            norm("/home/ana/.cache/sessions/550e8400-e29b-41d4-a716-446655440000.json"),
            "$HOME/.cache/sessions/*.json"
        );
        assert_eq!(
            norm("/home/ana/src/agent/.git/objects/3f/9c2e1b7d4a6f8e0c1b2a3d4e5f6a7b8c9d0e1f2a"),
            "$WORKSPACE/.git/objects/3f/*"
        );
        assert_eq!(norm("/var/cache/deadbeef"), "/var/cache/deadbeef");
    }

    #[test]
    fn digit_runs_and_timestamps() {
        assert_eq!(
            norm("/home/ana/src/agent/logs/run-20261121-101500.log"),
            "$WORKSPACE/logs/run-*-*.log"
        );
        assert_eq!(
            norm("/usr/lib/python3.11/os.py"),
            "/usr/lib/python3.11/os.py"
        );
        assert_eq!(
            norm("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
    }

    #[test]
    fn mktemp_and_python_tempfile() {
        assert_eq!(norm("/tmp/tmp.Xk3a9QzP1m"), "$TMP/tmp.*");
        assert_eq!(norm("/tmp/tmp.abcdefghij/out"), "$TMP/tmp.*/out");
        assert_eq!(norm("/tmp/tmpk3j2_9xq"), "$TMP/tmp*");
        assert_eq!(norm("/tmp/tmpab3defgh.txt"), "$TMP/tmp*.txt");
        // Not temp names: wrong length, or a real word.
        assert_eq!(
            norm("/usr/lib/tmpfiles.d/x.conf"),
            "/usr/lib/tmpfiles.d/x.conf"
        );
    }

    #[test]
    fn session_directories() {
        assert_eq!(norm("/tmp/sess-a8Zk3qP2/state"), "$TMP/sess-*/state");
        assert_eq!(
            norm("/home/ana/.agent/sessions/9f86d081884c7d65/log"),
            "$HOME/.agent/sessions/*/log"
        );
        assert_eq!(norm("/home/ana/utf8mb4/python3"), "$HOME/utf8mb4/python3");
    }

    #[test]
    fn fixed_names_are_kept() {
        assert_eq!(norm("/etc/ld.so.cache"), "/etc/ld.so.cache");
        assert_eq!(
            norm("/home/ana/src/agent/README.md"),
            "$WORKSPACE/README.md"
        );
        assert_eq!(norm("/home/ana/src/agent/a/../b/./c"), "$WORKSPACE/b/c");
        assert_eq!(norm("/home/ana/.bashrc"), "$HOME/.bashrc");
    }

    #[test]
    fn sed_and_editor_temp_files() {
        assert_eq!(
            norm("/home/ana/src/agent/src/sedzZuUyg"),
            "$WORKSPACE/src/sed*"
        );
        assert_eq!(
            norm("/home/ana/src/agent/src/sed4k2Ab9"),
            "$WORKSPACE/src/sed*"
        );
        // A word that starts with sed is a word.
        assert_eq!(norm("/home/ana/src/agent/sedated"), "$WORKSPACE/sedated");
        assert_eq!(
            norm("/home/ana/src/agent/.calc.py.swp"),
            "$WORKSPACE/.*.swp"
        );
        assert_eq!(norm("/home/ana/src/agent/4913"), "$WORKSPACE/4913");
    }

    fn mk(argv: &str, made: &str) -> TempNames {
        let mut t = TempNames::default();
        let argv: Vec<String> = argv.split(' ').map(String::from).collect();
        t.exec(7, "/usr/bin/mktemp", &argv);
        t.created(7, made);
        t
    }

    #[test]
    fn every_mktemp_template_shape() {
        let cases = [
            ("mktemp", "/tmp/tmp.AbC123xYz0", "/tmp/tmp.*"),
            ("mktemp -d", "/tmp/tmp.AbC123xYz0", "/tmp/tmp.*"),
            ("mktemp /tmp/job.XXXXXX", "/tmp/job.UroEOx", "/tmp/job.*"),
            ("mktemp -t job.XXX", "/tmp/job.aB3", "/tmp/job.*"),
            ("mktemp XXXXXXXX", "/w/q1W2e3R4", "/w/*"),
            ("mktemp abcXXX", "/w/abcQ2z", "/w/abc*"),
            (
                "mktemp --suffix=.txt out-XXXXXX",
                "/w/out-a1B2c3.txt",
                "/w/out-*.txt",
            ),
            (
                "mktemp --suffix .json -p /w rep.XXXX",
                "/w/rep.a1B2.json",
                "/w/rep.*.json",
            ),
            ("mktemp x.XXXXXX.log", "/w/x.k2J9aa.log", "/w/x.*.log"),
        ];
        for (argv, made, want) in cases {
            let t = mk(argv, made);
            assert_eq!(t.rewrite(made), want, "{argv}");
            assert_eq!(t.rewrite(&format!("{made}/a/b")), format!("{want}/a/b"));
        }
        // Another process's file of the same shape is left alone.
        let mut t = TempNames::default();
        t.exec(7, "/usr/bin/mktemp", &["mktemp".into()]);
        t.created(8, "/tmp/tmp.AbC123xYz0");
        assert_eq!(t.rewrite("/tmp/tmp.AbC123xYz0"), "/tmp/tmp.AbC123xYz0");
    }

    #[test]
    fn relative_paths_are_not_rules() {
        assert_eq!(path("x/y", &Anchors::default(), &HashSet::new()), None);
    }
}

//! Path patterns of profiles and guardrails.
//!
//! A pattern is a path whose segments may hold `*` (any run of characters
//! within one segment) or be exactly `**` (any number of segments). It
//! starts with `/`, with an anchor (`$HOME`, `$WORKSPACE`, `$TMP`) or with
//! `**`. As in the shell, a wildcard in a profile pattern does not match a
//! leading dot: `$WORKSPACE/*` does not cover `$WORKSPACE/.env`; write the
//! dot (`.cache/*`). Guardrail patterns are built with `dotglob`, so
//! `**/.ssh/**` also reaches `~/.config/.ssh/.x`.
use std::{collections::HashMap, fmt};

use thiserror::Error;

/// Anchors a profile path may start with.
pub const ANCHORS: [&str; 3] = ["$HOME", "$WORKSPACE", "$TMP"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GlobError {
    #[error("path pattern is empty")]
    Empty,
    #[error("{0:?} must start with /, $HOME, $WORKSPACE, $TMP or **")]
    NotAbsolute(String),
    #[error("{0:?} has an empty segment (//) or ends with /")]
    EmptySegment(String),
    #[error("{0:?}: ** must be a whole segment (a/**/b), and *** means nothing")]
    BadGlobstar(String),
    #[error("{0:?}: . and .. segments are not allowed; write the path they lead to")]
    DotSegment(String),
    #[error("{0:?}: ${1} is not an anchor; use $HOME, $WORKSPACE or $TMP, as the first segment")]
    UnknownAnchor(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    /// A segment without wildcards (also the empty root segment and anchors).
    Lit(String),
    /// A segment holding at least one `*`.
    Wild(String),
    /// `**`: zero or more segments.
    Globstar,
}

/// One segment of a pattern, as `parts` yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    Lit(&'a str),
    Wild(&'a str),
    Globstar,
}

/// A parsed path pattern; compares and orders by its text.
#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    segs: Vec<Seg>,
    dotglob: bool,
}

impl PartialEq for Glob {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text && self.dotglob == o.dotglob
    }
}
impl Eq for Glob {}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Glob {
    /// Parses a profile pattern (wildcards skip leading dots).
    pub fn parse(text: &str) -> Result<Self, GlobError> {
        Self::parse_with(text, false)
    }

    /// Parses a guardrail pattern (wildcards match dot-files too).
    pub fn guardrail(text: &str) -> Result<Self, GlobError> {
        Self::parse_with(text, true)
    }

    fn parse_with(text: &str, dotglob: bool) -> Result<Self, GlobError> {
        if text.is_empty() {
            return Err(GlobError::Empty);
        }
        let parts: Vec<&str> = text.split('/').collect();
        let first = parts[0];
        if !(first.is_empty() || first == "**" || ANCHORS.contains(&first)) {
            return Err(match first.strip_prefix('$') {
                Some(name) => GlobError::UnknownAnchor(text.into(), name.into()),
                None => GlobError::NotAbsolute(text.into()),
            });
        }
        let mut segs = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            if i > 0 && p.is_empty() {
                // "/" alone is the root directory.
                if text == "/" {
                    break;
                }
                return Err(GlobError::EmptySegment(text.into()));
            }
            if *p == "." || *p == ".." {
                return Err(GlobError::DotSegment(text.into()));
            }
            if i > 0 && p.starts_with('$') && ANCHORS.contains(p) {
                return Err(GlobError::UnknownAnchor(text.into(), p[1..].into()));
            }
            segs.push(if *p == "**" {
                Seg::Globstar
            } else if p.contains("**") {
                return Err(GlobError::BadGlobstar(text.into()));
            } else if p.contains('*') {
                Seg::Wild((*p).to_string())
            } else {
                Seg::Lit((*p).to_string())
            });
        }
        Ok(Self {
            text: text.to_string(),
            segs,
            dotglob,
        })
    }

    /// Wildcards match a leading dot (guardrail patterns).
    pub fn dotglob(&self) -> bool {
        self.dotglob
    }

    /// No wildcards: the pattern names one path.
    pub fn is_literal(&self) -> bool {
        self.segs.iter().all(|s| matches!(s, Seg::Lit(_)))
    }

    /// The segments, for indexes that walk patterns segment by segment.
    pub fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        self.segs.iter().map(|s| match s {
            Seg::Lit(t) => Part::Lit(t),
            Seg::Wild(t) => Part::Wild(t),
            Seg::Globstar => Part::Globstar,
        })
    }

    /// Does the pattern match this (absolute or anchored) path?
    pub fn matches(&self, path: &str) -> bool {
        let names: Vec<&str> = path.split('/').collect();
        let mut memo = HashMap::new();
        self.match_from(0, &names, 0, &mut memo)
    }

    fn match_from(
        &self,
        i: usize,
        names: &[&str],
        j: usize,
        memo: &mut HashMap<(usize, usize), bool>,
    ) -> bool {
        if let Some(&r) = memo.get(&(i, j)) {
            return r;
        }
        let r = match self.segs.get(i) {
            None => j == names.len(),
            Some(Seg::Globstar) => {
                self.match_from(i + 1, names, j, memo)
                    || (j < names.len()
                        && (self.dotglob || !names[j].starts_with('.'))
                        && self.match_from(i, names, j + 1, memo))
            }
            Some(Seg::Lit(l)) => {
                j < names.len() && names[j] == l && self.match_from(i + 1, names, j + 1, memo)
            }
            Some(Seg::Wild(w)) => {
                j < names.len()
                    && segment_matches(w, names[j], self.dotglob)
                    && self.match_from(i + 1, names, j + 1, memo)
            }
        };
        memo.insert((i, j), r);
        r
    }

    /// Is there a path both patterns match?
    pub fn intersects(&self, other: &Glob) -> bool {
        let mut memo = HashMap::new();
        intersect_segs(self, 0, other, 0, &mut memo)
    }

    /// Does this pattern match every path `other` matches? Exact for a
    /// literal `other` or equal patterns; otherwise answered conservatively
    /// (false) unless `other`'s segments are each covered one to one.
    pub fn covers(&self, other: &Glob) -> bool {
        if self == other || (other.is_literal() && self.matches(&other.text)) {
            return true;
        }
        // Segment-wise: our `*` covers their wildcard segment when ours is a
        // bare `*` and theirs cannot start with a dot we would refuse.
        if self.segs.len() != other.segs.len() {
            return false;
        }
        self.segs
            .iter()
            .zip(&other.segs)
            .all(|(a, b)| match (a, b) {
                (Seg::Lit(x), Seg::Lit(y)) => x == y,
                (Seg::Wild(x), Seg::Lit(y)) => segment_matches(x, y, self.dotglob),
                (Seg::Wild(x), Seg::Wild(y)) => x == "*" && (self.dotglob || !y.starts_with('.')),
                (Seg::Globstar, Seg::Globstar) => true,
                _ => false,
            })
    }
}

/// Glob match of one segment; `*` never crosses `/` (there is none here).
/// Without `dotglob`, a leading `*` does not match a leading `.`.
pub fn segment_matches(pat: &str, name: &str, dotglob: bool) -> bool {
    if !dotglob && name.starts_with('.') && !pat.starts_with('.') {
        return false;
    }
    let (p, n) = (pat.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

fn seg_text(s: &Seg) -> &str {
    match s {
        Seg::Lit(t) | Seg::Wild(t) => t,
        Seg::Globstar => "*",
    }
}

/// Can one segment name match both segment patterns? A product of the two
/// star automata; `started` is whether a character has been produced
/// (a star of a non-dotglob side may not produce a leading `.`).
fn segments_intersect(a: &str, da: bool, b: &str, db: bool) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut memo = HashMap::new();
    seg_inter(a, 0, da, b, 0, db, false, &mut memo)
}

#[allow(clippy::too_many_arguments)]
fn seg_inter(
    a: &[u8],
    i: usize,
    da: bool,
    b: &[u8],
    j: usize,
    db: bool,
    started: bool,
    memo: &mut HashMap<(usize, usize, bool), bool>,
) -> bool {
    if let Some(&r) = memo.get(&(i, j, started)) {
        return r;
    }
    // A star may consume character c unless it would be a leading dot.
    let may = |c: u8, dot_ok: bool| started || c != b'.' || dot_ok;
    let r = match (a.get(i), b.get(j)) {
        (None, None) => true,
        (Some(b'*'), Some(b'*')) => {
            seg_inter(a, i + 1, da, b, j, db, started, memo)
                || seg_inter(a, i, da, b, j + 1, db, started, memo)
        }
        (Some(b'*'), Some(&c)) => {
            seg_inter(a, i + 1, da, b, j, db, started, memo)
                || (may(c, da) && seg_inter(a, i, da, b, j + 1, db, true, memo))
        }
        (Some(&c), Some(b'*')) => {
            seg_inter(a, i, da, b, j + 1, db, started, memo)
                || (may(c, db) && seg_inter(a, i + 1, da, b, j, db, true, memo))
        }
        (Some(b'*'), None) => seg_inter(a, i + 1, da, b, j, db, started, memo),
        (None, Some(b'*')) => seg_inter(a, i, da, b, j + 1, db, started, memo),
        (Some(&x), Some(&y)) => x == y && seg_inter(a, i + 1, da, b, j + 1, db, true, memo),
        _ => false,
    };
    memo.insert((i, j, started), r);
    r
}

/// Can a `**` of a pattern with this dot rule consume segment `s`?
fn globstar_takes(s: &Seg, dotglob: bool) -> bool {
    dotglob || !seg_text(s).starts_with('.') || matches!(s, Seg::Globstar)
}

fn intersect_segs(
    a: &Glob,
    i: usize,
    b: &Glob,
    j: usize,
    memo: &mut HashMap<(usize, usize), bool>,
) -> bool {
    if let Some(&r) = memo.get(&(i, j)) {
        return r;
    }
    let r = match (a.segs.get(i), b.segs.get(j)) {
        (None, None) => true,
        (Some(Seg::Globstar), None) => intersect_segs(a, i + 1, b, j, memo),
        (None, Some(Seg::Globstar)) => intersect_segs(a, i, b, j + 1, memo),
        (None, _) | (_, None) => false,
        (Some(Seg::Globstar), Some(sb)) => {
            intersect_segs(a, i + 1, b, j, memo)
                || (globstar_takes(sb, a.dotglob) && intersect_segs(a, i, b, j + 1, memo))
        }
        (Some(sa), Some(Seg::Globstar)) => {
            intersect_segs(a, i, b, j + 1, memo)
                || (globstar_takes(sa, b.dotglob) && intersect_segs(a, i + 1, b, j, memo))
        }
        (Some(sa), Some(sb)) => {
            segments_intersect(seg_text(sa), a.dotglob, seg_text(sb), b.dotglob)
                && intersect_segs(a, i + 1, b, j + 1, memo)
        }
    };
    memo.insert((i, j), r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Glob {
        Glob::parse(s).unwrap()
    }

    #[test]
    fn parse_rejects_what_cannot_be_a_rule() {
        assert_eq!(
            Glob::parse("etc/passwd"),
            Err(GlobError::NotAbsolute("etc/passwd".into()))
        );
        assert!(matches!(
            Glob::parse("$HOMEDIR/x"),
            Err(GlobError::UnknownAnchor(..))
        ));
        assert!(matches!(
            Glob::parse("/a//b"),
            Err(GlobError::EmptySegment(_))
        ));
        assert!(matches!(
            Glob::parse("/a/***"),
            Err(GlobError::BadGlobstar(_))
        ));
        assert!(matches!(
            Glob::parse("/a/x**"),
            Err(GlobError::BadGlobstar(_))
        ));
        assert!(matches!(
            Glob::parse("/a/../b"),
            Err(GlobError::DotSegment(_))
        ));
        assert!(Glob::parse("/").is_ok());
        assert!(Glob::parse("$WORKSPACE/build/**").is_ok());
    }

    #[test]
    fn star_stays_in_its_segment() {
        assert!(g("/proc/*/status").matches("/proc/412/status"));
        assert!(!g("/proc/*/status").matches("/proc/412/task/3/status"));
        assert!(g("$TMP/sess-*/out.log").matches("$TMP/sess-9f2/out.log"));
        assert!(g("/var/log/*.log").matches("/var/log/a.log"));
        assert!(!g("/var/log/*.log").matches("/var/log/a.log.1"));
    }

    #[test]
    fn globstar_spans_segments_but_not_dotfiles() {
        let p = g("$WORKSPACE/build/**");
        assert!(p.matches("$WORKSPACE/build"));
        assert!(p.matches("$WORKSPACE/build/a/b/c.o"));
        assert!(!p.matches("$WORKSPACE/build/.git/config"));
        assert!(!g("$WORKSPACE/*").matches("$WORKSPACE/.env"));
        assert!(g("$WORKSPACE/.*").matches("$WORKSPACE/.env"));
    }

    #[test]
    fn guardrails_match_dotfiles_anywhere() {
        let ssh = Glob::guardrail("**/.ssh/**").unwrap();
        assert!(ssh.matches("/home/u/.ssh/id_ed25519"));
        assert!(ssh.matches("/root/.ssh/.hidden"));
        assert!(Glob::guardrail("**/.env")
            .unwrap()
            .matches("/home/u/.config/app/.env"));
    }

    #[test]
    fn intersection_is_exact_for_stars() {
        let env = Glob::guardrail("**/.env.*").unwrap();
        // Profile wildcards never make a leading dot, so *.log misses .env.log.
        assert!(!g("$WORKSPACE/logs/*.log").intersects(&env));
        assert!(g("$WORKSPACE/.env.*").intersects(&env));
        let cron = Glob::guardrail("/etc/cron.*/**").unwrap();
        assert!(g("/etc/*/hourly").intersects(&cron));
        assert!(!g("/etc/apt/*").intersects(&cron));
        assert!(g("/**").intersects(&Glob::guardrail("/etc/shadow").unwrap()));
        assert!(!g("/usr/**").intersects(&Glob::guardrail("/etc/shadow").unwrap()));
        assert!(g("/a/*b*").intersects(&g("/a/*c*")));
        assert!(!g("/a/x*").intersects(&g("/a/y*")));
    }

    #[test]
    fn covers_literal_and_wildcard_segments() {
        assert!(g("/var/log/*.log").covers(&g("/var/log/a.log")));
        assert!(g("/proc/*/status").covers(&g("/proc/*/status")));
        assert!(g("/a/*/c").covers(&g("/a/b*/c")));
        assert!(!g("/a/b*/c").covers(&g("/a/*/c")));
    }
}

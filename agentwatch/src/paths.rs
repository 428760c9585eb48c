//! Turning what the kernel sent into absolute, normalised paths.

/// Joins leaf-first NUL-terminated components (a kernel dentry walk) into
/// an absolute path: `b"c\0b\0a\0"` -> `/a/b/c`.
pub fn from_reversed_components(bytes: &[u8]) -> String {
    let mut parts: Vec<&[u8]> = bytes.split(|b| *b == 0).filter(|p| !p.is_empty()).collect();
    parts.reverse();
    let mut out = String::new();
    for p in parts {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(p));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Resolves `path` against `base` (when relative) and normalises it
/// lexically: no `.`/`..` components, no repeated or trailing slashes.
/// `..` at the root stays at the root, as the kernel does.
pub fn resolve(base: Option<&str>, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        match base {
            Some(b) if path.is_empty() => b.to_string(),
            Some(b) => format!("{b}/{path}"),
            // No base known: keep it relative rather than invent one.
            None => return path.to_string(),
        }
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_components_make_absolute_path() {
        assert_eq!(from_reversed_components(b"c\0b\0a\0"), "/a/b/c");
        assert_eq!(from_reversed_components(b""), "/");
        assert_eq!(from_reversed_components(b"tmp\0"), "/tmp");
    }

    #[test]
    fn resolve_relative_against_base() {
        assert_eq!(
            resolve(Some("/home/u/work"), "src/main.rs"),
            "/home/u/work/src/main.rs"
        );
        assert_eq!(resolve(Some("/home/u/work"), "./a/../b"), "/home/u/work/b");
        assert_eq!(resolve(Some("/"), "etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn resolve_normalises_absolute() {
        assert_eq!(resolve(None, "/tmp//x/./y/../z/"), "/tmp/x/z");
        assert_eq!(resolve(Some("/ignored"), "/../../etc"), "/etc");
    }

    #[test]
    fn empty_path_means_the_base_itself() {
        assert_eq!(resolve(Some("/tmp/dir"), ""), "/tmp/dir");
    }

    #[test]
    fn relative_without_base_stays_relative() {
        assert_eq!(resolve(None, "x/y"), "x/y");
    }
}

/// The top-level directories that are links into `/usr` on this host
/// (`/bin` -> `/usr/bin` on a merged-/usr system): (alias, real).
pub fn usr_merged() -> &'static [(String, String)] {
    static MERGED: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    MERGED.get_or_init(|| {
        ["bin", "sbin", "lib", "lib32", "lib64"]
            .iter()
            .filter_map(|d| {
                let target = std::fs::read_link(format!("/{d}")).ok()?;
                let t = target.to_string_lossy();
                (t == format!("usr/{d}") || t == format!("/usr/{d}"))
                    .then(|| (format!("/{d}"), format!("/usr/{d}")))
            })
            .collect()
    })
}

/// The `/usr` name of a path reached through a merged-/usr link
/// (`/bin/bash` -> `/usr/bin/bash`); other paths as they are.
pub fn usr_name(path: &str) -> std::borrow::Cow<'_, str> {
    for (alias, real) in usr_merged() {
        if let Some(rest) = path.strip_prefix(alias.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{real}{rest}").into();
            }
        }
    }
    path.into()
}

/// The other names of a `/usr` pattern on a merged-/usr host: for
/// `/usr/bin/*`, `/bin/*`; for `/usr` itself (a territory), every alias.
pub fn usr_aliases(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (alias, real) in usr_merged() {
        if pattern == "/usr" {
            out.push(alias.clone());
        } else if let Some(rest) = pattern.strip_prefix(real.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                out.push(format!("{alias}{rest}"));
            }
        }
    }
    out
}

/// The directories above a path pattern, nearest first, `/` left out:
/// for `/a/b/*.py`, `/a/b` and `/a`. Listing a directory on the way to
/// what a profile allows is within it (pip lists `$HOME` looking for its
/// configuration; a shell completes a path), so both sides add these as
/// reads.
pub fn parent_dirs(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = pattern.strip_suffix("/**").unwrap_or(pattern);
    while let Some(i) = p.rfind('/') {
        p = &p[..i];
        if p.is_empty() {
            break;
        }
        // A parent with a `**` component is not a directory on the way
        // but every file beneath its prefix: `/**/package.json` would
        // grant reading all of `/`. The literal directories above it are
        // the way.
        if p.split('/').any(|c| c == "**") {
            continue;
        }
        out.push(p.to_string());
    }
    out
}

#[cfg(test)]
mod usr_tests {
    use super::*;

    #[test]
    fn parents_of_patterns_nearest_first() {
        assert_eq!(parent_dirs("/a/b/*.py"), ["/a/b", "/a"]);
        assert_eq!(parent_dirs("/w/src/**"), ["/w"]);
        assert_eq!(parent_dirs("/x"), Vec::<String>::new());
        assert_eq!(parent_dirs("/h/{.a,.b}/c"), ["/h/{.a,.b}", "/h"]);
        // Never a parent that is a whole tree.
        assert_eq!(parent_dirs("/**/package.json"), Vec::<String>::new());
        assert_eq!(parent_dirs("/w/**/src/*.py"), ["/w"]);
    }

    #[test]
    fn merged_usr_names_when_this_host_has_them() {
        if !usr_merged().iter().any(|(a, _)| a == "/bin") {
            eprintln!("SKIP: /bin is not a link to usr/bin here");
            return;
        }
        assert_eq!(usr_name("/bin/bash"), "/usr/bin/bash");
        assert_eq!(usr_name("/binary/x"), "/binary/x");
        assert_eq!(usr_name("/usr/bin/x"), "/usr/bin/x");
        assert!(usr_aliases("/usr/bin/*").contains(&"/bin/*".to_string()));
        assert!(usr_aliases("/usr").contains(&"/lib".to_string()));
        assert!(usr_aliases("/usr/share/x").is_empty());
    }
}

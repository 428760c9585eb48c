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

//! docs/benchmarks.md by sections: a benchmark run alone rewrites its
//! own section and leaves the others as they were.
use std::path::Path;

use crate::bench_profile::PROFILE_HEADING;

/// Prints `section` and splices it into docs/benchmarks.md under `heading`.
pub fn write_section(ws: &Path, heading: &str, section: &str) -> anyhow::Result<()> {
    print!("{section}");
    let path = ws.join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, splice(&old, heading, section))?;
    eprintln!("section written to {}", path.display());
    Ok(())
}

/// `old` with its enforcement section replaced by `section`.
pub fn splice_enforce(old: &str, section: &str) -> String {
    splice(old, crate::bench_enforce::HEADING, section)
}

/// `old` with the section under `heading` replaced by `section` (or
/// inserted before the profile section).
pub fn splice(old: &str, heading: &str, section: &str) -> String {
    if let Some((start, end)) = section_span(old, heading) {
        return format!("{}{section}{}", &old[..start], &old[end..]);
    }
    match old.find(PROFILE_HEADING) {
        Some(p) => format!("{}{section}{}", &old[..p], &old[p..]),
        None => format!("{old}{section}"),
    }
}

/// Byte range of the section of `doc` under `heading`, up to the next
/// section.
fn section_span(doc: &str, heading: &str) -> Option<(usize, usize)> {
    let start = doc.find(heading)?;
    let body = start + heading.len();
    let end = doc[body..].find("\n## ").map_or(doc.len(), |i| body + i);
    Some((start, end))
}

/// The section of `doc` under `heading`, up to the next section.
fn section_of<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    section_span(doc, heading).map(|(start, end)| &doc[start..end])
}

/// `new` with the sections under `headings` that it lacks taken from
/// `old`: a full run does not rerun every benchmark (intent, pins), and
/// must not drop what their own runs wrote.
pub fn keep_sections(old: &str, new: &str, headings: &[&str]) -> String {
    let mut out = new.to_string();
    for h in headings {
        if out.contains(h) {
            continue;
        }
        if let Some(s) = section_of(old, h) {
            out = splice(&out, h, s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_report_keeps_the_sections_it_did_not_rerun() {
        let old = "# B\n\n## Intent\nold intent\n\n## Pins\nold pins\n";
        let new = "# B\n\n## Pins\nnew pins\n";
        let out = keep_sections(old, new, &["\n## Intent", "\n## Pins"]);
        assert!(out.contains("old intent"), "{out}");
        assert!(
            out.contains("new pins") && !out.contains("old pins"),
            "{out}"
        );
    }

    #[test]
    fn splice_replaces_only_its_own_section() {
        let old = "# B\n\n## A\nold a\n\n## C\nc\n";
        let out = splice(old, "\n## A", "\n## A\nnew a\n");
        assert_eq!(out, "# B\n\n## A\nnew a\n\n## C\nc\n");
        // The last section runs to the end of the document.
        let out = splice(old, "\n## C", "\n## C\nnew c\n");
        assert_eq!(out, "# B\n\n## A\nold a\n\n## C\nnew c\n");
    }
}

//! Shells and script interpreters: where an exec of one takes its program
//! from. `python3 -c CODE` and `sh -c CMD` carry it on the command line;
//! `python3 x.py` reads a file, which may be one the agent wrote;
//! `curl ... | sh` reads standard input, which is then a pipe. The last
//! two are "executing what the agent wrote" (`exec/written`).

/// The interpreter families agentwatch knows, by program name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Shell,
    Python,
    Perl,
    Ruby,
    Node,
    Php,
    Lua,
    Tcl,
}

/// The executables the kernel treats as interpreters (dot-glob patterns,
/// and whether each is a shell), so it can tell `sh -c` (program inline)
/// from `sh run.sh` and `curl | sh`. Kept in step with `family` by a test.
pub const KERNEL_PATTERNS: &[(&str, bool)] = &[
    ("**/sh", true),
    ("**/bash", true),
    ("**/dash", true),
    ("**/zsh", true),
    ("**/ksh", true),
    ("**/mksh", true),
    ("**/ash", true),
    ("**/busybox", true),
    ("**/fish", true),
    ("**/csh", true),
    ("**/tcsh", true),
    ("**/python*", false),
    ("**/pypy*", false),
    ("**/perl*", false),
    ("**/ruby*", false),
    ("**/node", false),
    ("**/nodejs", false),
    ("**/deno", false),
    ("**/bun", false),
    ("**/php*", false),
    ("**/lua*", false),
    ("**/tclsh*", false),
    ("**/wish*", false),
];

/// Where the program of an interpreter's exec comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// On the command line (`-c`, `-e`, `-m module`).
    Inline,
    /// A file, as named in argv (relative to the process's cwd).
    File(String),
    /// Standard input (no program argument, or `-s`, or `-`).
    Stdin,
}

/// The family of an executable path, by its file name (`python3.11`,
/// `bash`, `/usr/bin/node`).
pub fn family(path: &str) -> Option<Family> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    Some(match stem {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "busybox" | "fish" | "csh"
        | "tcsh" => Family::Shell,
        "python" | "pypy" => Family::Python,
        "perl" => Family::Perl,
        "ruby" => Family::Ruby,
        "node" | "nodejs" | "deno" | "bun" => Family::Node,
        "php" => Family::Php,
        "lua" | "luajit" => Family::Lua,
        "tclsh" | "wish" => Family::Tcl,
        _ => return None,
    })
}

/// Options of each family that take the program inline, and options
/// that consume the next argument (so it is not the script).
fn options(f: Family) -> (&'static [&'static str], &'static [&'static str]) {
    match f {
        Family::Shell => (&["-c"], &["-o", "-O", "+O", "+o"]),
        Family::Python => (&["-c", "-m"], &["-W", "-X", "-Q"]),
        Family::Perl => (&["-e", "-E"], &["-I", "-M", "-m", "-x"]),
        Family::Ruby => (&["-e"], &["-I", "-r", "-C", "-E"]),
        Family::Node => (
            &["-e", "--eval", "-p", "--print"],
            &["-r", "--require", "--import", "--loader"],
        ),
        Family::Php => (&["-r"], &["-c", "-d", "-z"]),
        Family::Lua => (&["-e"], &["-l"]),
        Family::Tcl => (&[], &[]),
    }
}

/// Where `argv` (argv[0] first) of an exec of family `f` takes its
/// program from.
pub fn program(f: Family, argv: &[String]) -> Program {
    let (inline, takes_arg) = options(f);
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let a = a.as_str();
        if a == "--" {
            return args.next().map_or(Program::Stdin, |s| file_or_stdin(s));
        }
        if a == "-" || (f == Family::Shell && a == "-s") {
            return Program::Stdin;
        }
        if inline.contains(&a) || inline.iter().any(|o| o.len() == 2 && joined(a, o)) {
            return Program::Inline;
        }
        // Bundled short shell options that include `c` (`-ec`, `-lc`).
        if f == Family::Shell && a.starts_with('-') && !a.starts_with("--") && a.contains('c') {
            return Program::Inline;
        }
        if takes_arg.contains(&a) {
            args.next();
            continue;
        }
        if a.starts_with('-') || (f == Family::Shell && a.starts_with('+')) {
            continue;
        }
        return file_or_stdin(a);
    }
    Program::Stdin
}

/// `-cCODE` / `-mmodule`: an inline option with its value joined (never
/// for a shell, whose `-c` takes the next argument).
fn joined(a: &str, opt: &str) -> bool {
    a.len() > opt.len() && a.starts_with(opt) && !a.starts_with("--")
}

fn file_or_stdin(a: &str) -> Program {
    if a == "-" || a == "/dev/stdin" || a == "/proc/self/fd/0" {
        Program::Stdin
    } else {
        Program::File(a.to_string())
    }
}

/// Is standard input, as the exec event names it, something another
/// process feeds (a pipe, a FIFO or a socket)?
pub fn fed(stdin: Option<&str>) -> bool {
    matches!(stdin, Some("pipe" | "socket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn families_by_file_name() {
        assert_eq!(family("/usr/bin/python3.11"), Some(Family::Python));
        assert_eq!(family("/bin/sh"), Some(Family::Shell));
        assert_eq!(family("/usr/bin/bash"), Some(Family::Shell));
        assert_eq!(family("/usr/bin/node"), Some(Family::Node));
        assert_eq!(family("/usr/bin/perl5.36.0"), Some(Family::Perl));
        assert_eq!(family("/usr/bin/git"), None);
        assert_eq!(family("/usr/bin/shred"), None);
    }

    #[test]
    fn programs_on_the_command_line() {
        let p = |f, s: &str| program(f, &argv(s));
        assert_eq!(p(Family::Shell, "sh -c true"), Program::Inline);
        assert_eq!(p(Family::Shell, "bash -lc true"), Program::Inline);
        assert_eq!(p(Family::Shell, "bash -e -c true"), Program::Inline);
        assert_eq!(p(Family::Python, "python3 -c pass"), Program::Inline);
        assert_eq!(p(Family::Python, "python3 -m pytest -q"), Program::Inline);
        assert_eq!(p(Family::Python, "python3 -mpytest"), Program::Inline);
        assert_eq!(p(Family::Node, "node -e 1"), Program::Inline);
        assert_eq!(p(Family::Perl, "perl -e 1"), Program::Inline);
    }

    #[test]
    fn programs_from_files_and_stdin() {
        let p = |f, s: &str| program(f, &argv(s));
        assert_eq!(
            p(Family::Python, "python3 -u /tmp/x.py a"),
            Program::File("/tmp/x.py".into())
        );
        assert_eq!(
            p(Family::Python, "python3 -W ignore x.py"),
            Program::File("x.py".into())
        );
        assert_eq!(
            p(Family::Shell, "sh -x run.sh"),
            Program::File("run.sh".into())
        );
        assert_eq!(
            p(Family::Shell, "bash -o pipefail run.sh"),
            Program::File("run.sh".into())
        );
        assert_eq!(p(Family::Shell, "sh"), Program::Stdin);
        assert_eq!(p(Family::Shell, "sh -s arg"), Program::Stdin);
        assert_eq!(p(Family::Python, "python3 -"), Program::Stdin);
        assert_eq!(p(Family::Python, "python3"), Program::Stdin);
    }

    #[test]
    fn kernel_patterns_agree_with_families() {
        use crate::profile::glob::Glob;
        for name in [
            "sh",
            "bash",
            "dash",
            "zsh",
            "python3",
            "python3.11",
            "perl",
            "node",
            "ruby3.1",
            "php8.2",
            "lua5.4",
            "busybox",
        ] {
            let path = format!("/usr/bin/{name}");
            let f = family(&path).unwrap_or_else(|| panic!("{name}"));
            let hit = KERNEL_PATTERNS
                .iter()
                .find(|(p, _)| Glob::guardrail(p).unwrap().matches(&path))
                .unwrap_or_else(|| panic!("no kernel pattern for {name}"));
            assert_eq!(hit.1, f == Family::Shell, "{name}");
        }
        assert!(!KERNEL_PATTERNS
            .iter()
            .any(|(p, _)| Glob::guardrail(p).unwrap().matches("/usr/bin/git")));
    }

    #[test]
    fn what_feeds_stdin() {
        assert!(fed(Some("pipe")));
        assert!(fed(Some("socket")));
        assert!(!fed(Some("tty")));
        assert!(!fed(Some("file")));
        assert!(!fed(None));
    }
}

//! Executing what the agent itself wrote: never normal. Learning puts it
//! in review; matching flags it as `exec/written`, whatever the profile
//! lists, unless the executable is listed by path and sha256.
//!
//! What counts: an exec of a file a process of the agent wrote or created
//! (renames and hard links followed), of one with no name left (a memfd, a
//! deleted file: the kernel says so in the event), of a file in a temp
//! place that is not the agent's workspace or home; and an interpreter
//! (`python3 x.py`, `sh run.sh`) fed its program from such a file, or
//! from a pipe or socket (`curl ... | sh`).
use std::collections::HashSet;

use super::{
    anchors::Anchors,
    interpreters::{self, Program},
};
use crate::event::{Detail, Event};

/// Why an exec runs what the agent wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Written,
    FromPipe,
    InTemp,
}

impl Why {
    /// As the review list and findings say it.
    pub fn text(self) -> &'static str {
        match self {
            Why::Written => "written by the agent",
            Why::FromPipe => "program from a pipe",
            Why::InTemp => "in a temp place",
        }
    }
}

/// The files a process of the agent wrote, by absolute path, from the
/// events seen.
#[derive(Debug, Default, Clone)]
pub struct WrittenPaths {
    paths: HashSet<String>,
}

impl WrittenPaths {
    /// Follows one event's writes, creations, renames and links.
    pub fn track(&mut self, ev: &Event) {
        let ok = |r: &Option<i64>| r.is_none_or(|r| r >= 0);
        match &ev.detail {
            Detail::Open {
                path,
                access,
                result,
                ..
            } if ok(result) && (access.write || access.create || access.truncate) => {
                self.paths.insert(path.clone());
            }
            Detail::Rename {
                from, to, result, ..
            } if ok(result) && self.paths.remove(from) => {
                self.paths.insert(to.clone());
            }
            Detail::Link {
                from, to, result, ..
            } if ok(result) && self.paths.contains(from) => {
                self.paths.insert(to.clone());
            }
            _ => {}
        }
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path)
    }
}

/// For an exec event: the file the agent wrote that it runs (the binary,
/// or an interpreter's script; the interpreter itself for a program from
/// a pipe) and why. `written` answers whether a process of the agent
/// wrote an absolute path.
pub fn exec_of_written(
    ev: &Event,
    anchors: &Anchors,
    written: &dyn Fn(&str) -> bool,
) -> Option<(String, Why)> {
    let Detail::Exec {
        path,
        argv,
        result,
        cwd,
        stdin,
        written: binary_written,
        binary,
        ..
    } = &ev.detail
    else {
        return None;
    };
    if result.is_some_and(|r| r < 0) {
        return None;
    }
    if *binary_written || written(path) {
        return Some((path.clone(), Why::Written));
    }
    if in_temp_place(path, anchors) {
        return Some((path.clone(), Why::InTemp));
    }
    let interp = binary.as_deref().unwrap_or(path);
    let family = interpreters::family(interp).or(interpreters::family(path))?;
    match interpreters::program(family, argv) {
        Program::Inline => None,
        Program::Stdin => {
            interpreters::fed(stdin.as_deref()).then(|| (interp.to_string(), Why::FromPipe))
        }
        Program::File(f) => {
            let script = if f.starts_with('/') {
                crate::paths::resolve(None, &f)
            } else {
                crate::paths::resolve(Some(cwd.as_deref()?), &f)
            };
            if written(&script) {
                Some((script, Why::Written))
            } else if in_temp_place(&script, anchors) {
                Some((script, Why::InTemp))
            } else {
                None
            }
        }
    }
}

/// `/tmp`, `/var/tmp`, `/dev/shm` or the agent's `$TMP`, or beneath one;
/// but not its workspace or home, wherever they are.
pub fn in_temp_place(path: &str, anchors: &Anchors) -> bool {
    let under = |dir: &str| {
        path.strip_prefix(dir)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    };
    let own = anchors.workspace.as_deref().is_some_and(under)
        || anchors.home.as_deref().is_some_and(under);
    let temp = ["/tmp", "/var/tmp", "/dev/shm"].iter().any(|d| under(d))
        || anchors.tmp.as_deref().is_some_and(under);
    temp && !own
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Access, Context};

    fn ev(detail: Detail) -> Event {
        Event {
            ts_ns: 0,
            pid: 9,
            tid: 9,
            ppid: 1,
            uid: 0,
            gid: 0,
            comm: "x".into(),
            agent: "a".into(),
            cgroup_id: 0,
            context: Context::default(),
            kernel: None,
            detail,
        }
    }

    fn exec(path: &str, argv: &str, stdin: Option<&str>) -> Event {
        ev(Detail::Exec {
            path: path.into(),
            argv: argv.split(' ').map(String::from).collect(),
            argv_truncated: false,
            binary: Some(path.into()),
            result: Some(0),
            cwd: Some("/w".into()),
            stdin: stdin.map(String::from),
            written: false,
            selected: false,
        })
    }

    fn write(path: &str) -> Event {
        ev(Detail::Open {
            path: path.into(),
            access: Access {
                write: true,
                create: true,
                ..Access::default()
            },
            flags: 0o101,
            syscall: "openat".into(),
            result: Some(3),
        })
    }

    #[test]
    fn what_counts_as_running_what_it_wrote() {
        let anchors = Anchors::new(Some("/w".into()), Some("/h".into()), Some("/t".into()));
        let mut w = WrittenPaths::default();
        w.track(&write("/w/payload"));
        w.track(&write("/w/x.py"));
        w.track(&ev(Detail::Rename {
            from: "/w/payload".into(),
            to: "/w/tool".into(),
            syscall: "rename".into(),
            result: Some(0),
        }));
        let check = |e: &Event| exec_of_written(e, &anchors, &|p| w.contains(p)).map(|x| x.1);
        assert_eq!(check(&exec("/w/tool", "tool", None)), Some(Why::Written));
        assert_eq!(check(&exec("/w/payload", "payload", None)), None);
        assert_eq!(
            check(&exec("/usr/bin/python3", "python3 x.py", None)),
            Some(Why::Written)
        );
        assert_eq!(
            check(&exec("/usr/bin/python3", "python3 -m pytest", None)),
            None
        );
        assert_eq!(check(&exec("/usr/bin/python3", "python3 y.py", None)), None);
        assert_eq!(
            check(&exec("/bin/sh", "sh", Some("pipe"))),
            Some(Why::FromPipe)
        );
        assert_eq!(check(&exec("/bin/sh", "sh", Some("tty"))), None);
        assert_eq!(check(&exec("/bin/sh", "sh -c true", Some("pipe"))), None);
        assert_eq!(check(&exec("/t/run", "run", None)), Some(Why::InTemp));
        assert_eq!(check(&exec("/dev/shm/x", "x", None)), Some(Why::InTemp));
        assert_eq!(
            check(&exec("/bin/bash", "bash /tmp/x.sh", None)),
            Some(Why::InTemp)
        );
        let mut memfd = exec("/proc/self/fd/3", "x", None);
        if let Detail::Exec { written, .. } = &mut memfd.detail {
            *written = true;
        }
        assert_eq!(check(&memfd), Some(Why::Written));
    }

    #[test]
    fn a_workspace_or_home_inside_tmp_is_not_a_temp_place() {
        let a = Anchors::new(
            Some("/tmp/run/ws".into()),
            Some("/tmp/run/home".into()),
            Some("/tmp".into()),
        );
        assert!(!in_temp_place("/tmp/run/ws/build.sh", &a));
        assert!(!in_temp_place("/tmp/run/home/bin/x", &a));
        assert!(in_temp_place("/tmp/run/x", &a));
    }
}

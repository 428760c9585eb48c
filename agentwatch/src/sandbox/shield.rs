//! Read-only guardrails inside the profile's tree, for the agents
//! agentwatch starts on a kernel without the BPF LSM tier.
//!
//! Landlock grants a workspace as a whole and cannot carve `.git/hooks`
//! out of it, and the syscall entry judges a rename or symlink by the
//! names it was given: through a symlinked directory (`sd` ->
//! `.git/hooks`), or with a name another thread rewrites under the call,
//! a hook could be planted unnoticed. So the agent starts in a mount
//! namespace of its own where every guardrail that exists inside its
//! writable tree is a read-only bind mount of itself, and every directory
//! on the way to one a mount point (which cannot be renamed or removed:
//! `.git` moved aside and made again would leave `hooks` behind). The
//! kernel then refuses any change there before the effect, by the real
//! hierarchy: EROFS for a write, create, symlink, mkdir, unlink or chmod,
//! EXDEV for a rename or link across the mount, EBUSY for replacing or
//! removing a bound file or moving a directory on the way. The seccomp
//! filter and Landlock forbid the agent to unmount or remount. The eBPF
//! exit reports those failures (`watch::SHIELDED`) and userspace names
//! the guardrail by the real path.
//!
//! Only what exists at launch is bound; the walk that finds it is bounded
//! (`Limits`), and the run's summary says when it stopped short. It is
//! used wherever the guardrails' action acts (deny, kill, pause): a
//! refused call that pauses the agent asks a person, and an approval
//! lifts that guardrail's mount in the agent's namespace (`lift`), so the
//! agent's retry goes through.
use std::{
    collections::VecDeque,
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::files;
use crate::profile::{
    anchors::Anchors,
    guardrails::{mutating, Guardrails},
    Profile,
};

/// How far the walk looks, so a huge tree cannot stall a launch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Directory entries read in all.
    pub entries: usize,
    /// Levels below a root.
    pub depth: usize,
    /// Guardrails bound (each is a mount in the agent's namespace, plus
    /// the directories on the way that no other one pins).
    pub mounts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            entries: 200_000,
            depth: 16,
            mounts: 512,
        }
    }
}

/// What the shield holds, for the run's summary (`sandbox.shield`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShieldLayer {
    /// The guardrails bound read-only.
    pub paths: Vec<String>,
    /// Why the walk stopped before the whole tree, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

/// What one mount of the shield does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A directory on the way from a root to a guardrail, bound onto
    /// itself as it is: a mount point cannot be renamed or removed
    /// (EBUSY), so `.git` cannot be moved aside and made again around an
    /// unbound `hooks`.
    Pin,
    /// A guardrail, bound onto itself read-only.
    ReadOnly,
    /// A root of the tree, bound onto itself with everything beneath it,
    /// first: it cannot be moved either, and the mounts after it land on
    /// it.
    Root,
}

/// The mounts to make in the agent's namespace, in order.
#[derive(Debug, Clone)]
pub struct Shield {
    mounts: Vec<(CString, Kind)>,
    pub layer: ShieldLayer,
}

/// A name no guardrail pattern is about: a directory whose made-up child
/// is guarded has guarded contents (`**/.git/hooks/**`).
const PROBE: &str = "agentwatch-shield-probe";

/// The guardrails that exist beneath `roots` (directories the agent may
/// change), breadth first so the shallow ones come before any limit.
/// Symlinks are never followed (their target is judged where it lies).
pub fn plan(roots: &[PathBuf], guardrails: &Guardrails, limits: Limits) -> Shield {
    let guarded = |p: &Path| guardrails.hit(&p.to_string_lossy(), mutating()).is_some();
    let guarded_dir = |p: &Path| guarded(p) || guarded(&p.join(PROBE));
    let mut found: Vec<PathBuf> = Vec::new();
    let mut incomplete = None;
    let mut entries = 0usize;
    let mut too_deep = false;
    let mut queue: VecDeque<(PathBuf, usize)> = VecDeque::new();
    let roots = outermost(roots);
    for root in &roots {
        if guarded_dir(root) {
            found.push(root.clone());
        } else {
            queue.push_back((root.clone(), 0));
        }
    }
    'walk: while let Some((dir, depth)) = queue.pop_front() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            entries += 1;
            if entries > limits.entries {
                incomplete = Some(format!("stopped after {} entries", limits.entries));
                break 'walk;
            }
            let Ok(kind) = e.file_type() else { continue };
            let path = e.path();
            let hit = if kind.is_dir() {
                guarded_dir(&path)
            } else {
                kind.is_file() && guarded(&path)
            };
            if hit {
                if found.len() == limits.mounts {
                    incomplete = Some(format!("stopped at {} mounts", limits.mounts));
                    break 'walk;
                }
                found.push(path);
            } else if kind.is_dir() {
                if depth < limits.depth {
                    queue.push_back((path, depth + 1));
                } else {
                    too_deep = true;
                }
            }
        }
    }
    if incomplete.is_none() && too_deep {
        incomplete = Some(format!("stopped at depth {}", limits.depth));
    }
    Shield {
        mounts: order(&roots, &found)
            .into_iter()
            .filter_map(|(p, k)| Some((CString::new(p.as_os_str().as_bytes()).ok()?, k)))
            .collect(),
        layer: ShieldLayer {
            paths: found
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            incomplete,
        },
    }
}

/// The mounts for the guardrails `found` beneath `roots`, in the order the
/// child makes them: per root, the root itself with everything mounted
/// beneath it, then the directories on the way (outermost first), then
/// the guardrails. Each lands on the one before, so one mount holds each
/// guardrail on every route (`enter` moves the working directory onto
/// them), and one unmount lifts it.
fn order(roots: &[PathBuf], found: &[PathBuf]) -> Vec<(PathBuf, Kind)> {
    let mut out = Vec::new();
    for root in roots {
        let mine: Vec<&PathBuf> = found.iter().filter(|p| p.starts_with(root)).collect();
        if mine.contains(&root) {
            out.push((root.clone(), Kind::ReadOnly));
            continue;
        }
        if mine.is_empty() {
            continue;
        }
        let mut on_the_way: Vec<&Path> = mine
            .iter()
            .flat_map(|p| p.ancestors().skip(1))
            .filter(|a| a.starts_with(root) && *a != root.as_path())
            .collect();
        on_the_way.sort_by_key(|a| (a.components().count(), a.to_path_buf()));
        on_the_way.dedup();
        out.push((root.clone(), Kind::Root));
        out.extend(on_the_way.into_iter().map(|a| (a.to_path_buf(), Kind::Pin)));
        out.extend(mine.into_iter().map(|p| (p.clone(), Kind::ReadOnly)));
    }
    out
}

/// The roots that are not beneath another, existing directories only;
/// never the kernel's own trees or `/` itself.
fn outermost(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = roots
        .iter()
        .filter(|r| r.is_absolute() && r.as_path() != Path::new("/"))
        .filter(|r| !["/proc", "/sys", "/dev"].iter().any(|k| r.starts_with(k)))
        .filter(|r| std::fs::symlink_metadata(r).is_ok_and(|m| m.is_dir()))
        .cloned()
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !out.iter().any(|o| d.starts_with(o)) {
            out.push(d);
        }
    }
    out
}

/// Whether an agent under `policy` gets the shield: its guardrails act
/// (deny, kill, pause; in either mode, as guardrails do). A paused
/// agent's approval lifts the one mount that refused the call (`lift`).
pub fn wanted(policy: &agentwatch_common::policy::AgentPolicy) -> bool {
    use agentwatch_common::policy::action;
    matches!(
        policy.guardrail_action,
        action::DENY | action::KILL | action::PAUSE
    )
}

/// The shield of an agent's profile: the guardrails in force (with the
/// profile's own) inside its writable tree. None, with a note on stderr,
/// when this process may not give the agent its own mounts (`probe`).
pub fn for_profile(
    profile: &Profile,
    anchors: &Anchors,
    guardrails: &Guardrails,
) -> Option<Shield> {
    if let Err(why) = probe() {
        eprintln!("agentwatch: note: {why}: the guardrails inside the agent's tree are not made read-only (eBPF judges them by the names a call gives)");
        return None;
    }
    let guardrails = guardrails
        .clone()
        .with_profile(&profile.guardrails, Some(anchors));
    let roots = files::writable_roots(&files::grants(profile, anchors));
    let plan = plan(&roots, &guardrails, Limits::default());
    if let Some(why) = &plan.layer.incomplete {
        eprintln!("agentwatch: note: the search for guardrails inside the agent's tree {why}; those deeper are judged by eBPF only");
    }
    Some(plan)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 1;

impl Shield {
    pub fn is_empty(&self) -> bool {
        self.layer.paths.is_empty()
    }

    /// Enters a mount namespace of the process's own, receiving the
    /// host's later mounts but sending none back, and makes the mounts
    /// (`order`): each guardrail a read-only bind mount of itself, the
    /// directories on the way and the root mount points. A path gone
    /// since the walk is skipped. Needs CAP_SYS_ADMIN; syscalls only (no allocation).
    ///
    /// # Safety
    /// Call only in a forked child before exec, or in a single-threaded
    /// process about to exec.
    pub unsafe fn enter(&self) -> std::io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let fail = || Err(std::io::Error::last_os_error());
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail();
        }
        let root = c"/";
        let none = std::ptr::null();
        if libc::mount(
            none,
            root.as_ptr(),
            none,
            libc::MS_REC | libc::MS_SLAVE,
            none.cast(),
        ) != 0
        {
            return fail();
        }
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        for (p, kind) in &self.mounts {
            let flags = match kind {
                Kind::Root => libc::MS_BIND | libc::MS_REC,
                Kind::Pin | Kind::ReadOnly => libc::MS_BIND,
            };
            if libc::mount(p.as_ptr(), p.as_ptr(), none, flags, none.cast()) != 0 {
                if *libc::__errno_location() == libc::ENOENT {
                    continue;
                }
                return fail();
            }
            if *kind != Kind::ReadOnly {
                continue;
            }
            let r = libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                p.as_ptr(),
                0,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            );
            if r != 0 {
                return fail();
            }
        }
        // The working directory was taken on the mounts beneath (the
        // spawn changed into it first): taken again by its path, it is on
        // the shield's, as absolute paths are.
        let mut cwd = [0u8; libc::PATH_MAX as usize];
        if !libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()).is_null()
            && libc::chdir(cwd.as_ptr().cast()) != 0
        {
            return fail();
        }
        Ok(())
    }
}

/// Lifts the shield's mount at `path` (a guardrail's, or a directory's on
/// the way, with the guardrails bound beneath it) in the mount namespace
/// of process `pid` (one of the agent's): a person approved the call it
/// refused, so the agent's retry goes through. Later calls there are
/// judged by the names they give, as without the shield. The caller
/// checks that `path` is one of the shield's mounts.
pub fn lift(pid: u32, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let fd = ns.as_raw_fd();
    // SAFETY (in the child): setns and umount2 on values made before
    // the fork.
    let code = in_child(|| unsafe {
        let flags = libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW;
        if libc::setns(fd, libc::CLONE_NEWNS) != 0 || libc::umount2(p.as_ptr(), flags) != 0 {
            *libc::__errno_location()
        } else {
            0
        }
    })?;
    match code {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Runs `f` in a forked child; returns the child's exit code (`f`'s: 0,
/// or the errno it failed with). `f` makes raw syscalls only: this
/// process may have other threads, and the child has just one.
fn in_child(f: impl FnOnce() -> i32) -> std::io::Result<i32> {
    // SAFETY: the child runs `f` and _exit, both async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the forked child; _exit never returns.
        unsafe { libc::_exit(f()) }
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) {
        return Err(std::io::Error::other("the child died"));
    }
    Ok(libc::WEXITSTATUS(status))
}

/// Whether this process may give a child a mount namespace of its own:
/// tried in a forked child, so a kernel, container runtime or seccomp
/// policy that refuses it says so before the agent is started. Err: why.
pub fn probe() -> Result<(), String> {
    // SAFETY (in the child): unshare only.
    let tried = in_child(|| unsafe {
        if libc::unshare(libc::CLONE_NEWNS) == 0 {
            0
        } else {
            *libc::__errno_location()
        }
    });
    match tried {
        Ok(0) => Ok(()),
        Ok(errno) => Err(format!(
            "a mount namespace is refused here ({}; it needs CAP_SYS_ADMIN)",
            std::io::Error::from_raw_os_error(errno)
        )),
        Err(e) => Err(format!("the mount namespace probe failed ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::own_namespace::OwnNamespace;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        let w = d.path();
        for dir in [
            ".git/hooks",
            "src/deep/.ssh",
            "venv/lib/site-packages",
            "big",
        ] {
            std::fs::create_dir_all(w.join(dir)).expect("mkdir");
        }
        for f in [
            ".git/config",
            ".git/HEAD",
            ".env",
            "src/main.rs",
            "venv/lib/site-packages/evil.pth",
        ] {
            std::fs::write(w.join(f), "x").expect("write");
        }
        std::os::unix::fs::symlink(w.join(".git/hooks"), w.join("sd")).expect("symlink");
        d
    }

    fn rel(s: &Shield, root: &Path) -> Vec<String> {
        let mut v: Vec<String> = s
            .layer
            .paths
            .iter()
            .map(|p| {
                p.strip_prefix(&*root.to_string_lossy())
                    .unwrap_or(p)
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_guardrails_inside_the_tree_are_found_and_nothing_else() {
        let d = tree();
        let s = plan(
            &[d.path().to_path_buf()],
            &Guardrails::builtin(),
            Limits::default(),
        );
        // Directories whose contents are guarded are bound whole; guarded
        // files one by one; a symlink (sd) never.
        assert_eq!(
            rel(&s, d.path()),
            [
                "/.env",
                "/.git/config",
                "/.git/hooks",
                "/src/deep/.ssh",
                "/venv/lib/site-packages/evil.pth"
            ]
        );
        assert_eq!(s.layer.incomplete, None);
    }

    #[test]
    fn the_root_comes_first_then_the_directories_on_the_way_then_the_guardrails() {
        let d = tree();
        let root = d.path().to_path_buf();
        let s = plan(
            std::slice::from_ref(&root),
            &Guardrails::builtin(),
            Limits::default(),
        );
        let r = root.to_string_lossy().into_owned();
        let seen: Vec<(String, Kind)> = s
            .mounts
            .iter()
            .map(|(p, k)| {
                let p = p.to_string_lossy();
                (p.strip_prefix(&*r).unwrap_or(&p).to_string(), *k)
            })
            .collect();
        let pins: Vec<&str> = seen
            .iter()
            .filter(|(_, k)| *k == Kind::Pin)
            .map(|(p, _)| p.as_str())
            .collect();
        // Outermost first; each once; never the root or a guardrail.
        assert_eq!(
            pins,
            [
                "/.git",
                "/src",
                "/venv",
                "/src/deep",
                "/venv/lib",
                "/venv/lib/site-packages"
            ]
        );
        let at = |p: &str, k: Kind| seen.iter().position(|x| x.0 == p && x.1 == k);
        let hooks = at("/.git/hooks", Kind::ReadOnly).expect("hooks bound");
        assert!(at("/.git", Kind::Pin) < Some(hooks));
        assert_eq!(seen.first(), Some(&(String::new(), Kind::Root)));
        // A root that is a guardrail is bound read-only, nothing more.
        let git = root.join(".git/hooks");
        let only = plan(
            std::slice::from_ref(&git),
            &Guardrails::builtin(),
            Limits::default(),
        );
        assert_eq!(only.mounts.len(), 1);
        assert_eq!(only.mounts[0].1, Kind::ReadOnly);
    }

    #[test]
    fn a_bounded_walk_says_where_it_stopped() {
        let d = tree();
        let roots = [d.path().to_path_buf()];
        let g = Guardrails::builtin();
        let shallow = plan(
            &roots,
            &g,
            Limits {
                depth: 0,
                ..Limits::default()
            },
        );
        // Breadth first: the top-level guardrail is found before the limit.
        assert_eq!(rel(&shallow, d.path()), ["/.env"]);
        assert!(shallow.layer.incomplete.is_some());
        let few = plan(
            &roots,
            &g,
            Limits {
                mounts: 1,
                ..Limits::default()
            },
        );
        assert_eq!(few.layer.paths.len(), 1);
        assert!(few.layer.incomplete.is_some());
    }

    #[test]
    fn only_guardrails_that_act_get_the_shield() {
        use agentwatch_common::policy::{action, AgentPolicy};
        let with = |a: u8| AgentPolicy {
            guardrail_action: a,
            ..AgentPolicy::default()
        };
        for a in [action::DENY, action::KILL, action::PAUSE] {
            assert!(wanted(&with(a)), "{a}");
        }
        assert!(!wanted(&with(action::ALERT)));
    }

    #[test]
    fn the_probe_answers_in_a_child_and_leaves_this_process_as_it_was() {
        let before = std::fs::read_link("/proc/self/ns/mnt").ok();
        let r = probe();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(r, Ok(()));
        } else {
            assert!(r.is_err_and(|why| why.contains("CAP_SYS_ADMIN")));
        }
        assert_eq!(std::fs::read_link("/proc/self/ns/mnt").ok(), before);
    }

    #[test]
    fn a_lift_unmounts_the_read_only_bind_in_the_other_namespace_only() {
        let d = tempfile::tempdir().expect("tempdir");
        let sub = d.path().join("hooks");
        std::fs::create_dir(&sub).expect("mkdir");
        // `hooks` read-only there, as the shield leaves an agent; it
        // tries to write there when told.
        let setup = "mount --bind hooks hooks && mount -o remount,ro,bind hooks";
        let Some(mut ns) = OwnNamespace::start(d.path(), setup, "touch hooks/x && echo wrote")
        else {
            return;
        };
        // Read-only there, writable here: a mount of its namespace only.
        assert!(std::fs::write(sub.join("here"), "x").is_ok());
        lift(ns.pid(), &sub).expect("lift");
        // Not a mount in this namespace: nothing to lift here.
        assert!(lift(std::process::id(), &sub).is_err());
        assert_eq!(ns.go(), "wrote\n");
        assert!(sub.join("x").exists());
    }

    #[test]
    fn roots_inside_others_and_the_kernels_trees_are_not_walked_twice() {
        let d = tree();
        let w = d.path().to_path_buf();
        let roots = [
            w.join("src"),
            w.clone(),
            PathBuf::from("/proc"),
            PathBuf::from("/"),
            w.join("missing"),
        ];
        assert_eq!(outermost(&roots), [w]);
    }
}

//! Enrich stage: adds who and where to each event: executable, ancestry,
//! user name, cgroup path, and container / pod ids parsed from that path.
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::event::{Ancestor, Detail, Event};

/// Longest ancestry chain attached to an event.
const MAX_ANCESTRY: usize = 16;

#[derive(Debug, Clone, Default)]
struct Proc {
    ppid: u32,
    exe: Option<String>,
    /// Seen in an event: part of a watched agent (ancestry stops at the
    /// first ancestor that is not, i.e. at the agent's root).
    watched: bool,
}

/// State the enrich stage keeps between events.
pub struct Enricher {
    procs: HashMap<u32, Proc>,
    users: HashMap<u32, Option<String>>,
    cgroups: CgroupNames,
    /// This node's pods, on Kubernetes.
    pods: Option<crate::k8s::Pods>,
}

impl Enricher {
    pub fn new(cgroup2: Option<PathBuf>) -> Self {
        Self {
            procs: HashMap::new(),
            users: HashMap::new(),
            cgroups: CgroupNames::new(cgroup2),
            pods: None,
        }
    }

    /// Events of processes in a pod get its namespace, name, container and
    /// service account from `pods`.
    pub fn with_pods(mut self, pods: crate::k8s::Pods) -> Self {
        self.pods = Some(pods);
        self
    }

    pub fn enrich(&mut self, ev: &mut Event) {
        match &ev.detail {
            Detail::Exec {
                path,
                result: Some(0),
                ..
            } => {
                let e = self.procs.entry(ev.pid).or_default();
                e.exe = Some(path.clone());
                e.ppid = ev.ppid;
            }
            Detail::Fork { child_pid } => {
                let exe = self.procs.get(&ev.pid).and_then(|p| p.exe.clone());
                self.procs.insert(
                    *child_pid,
                    Proc {
                        ppid: ev.pid,
                        exe,
                        watched: true,
                    },
                );
            }
            _ => {}
        }
        let known = self
            .procs
            .entry(ev.pid)
            .or_insert_with(|| proc_from_fs(ev.pid));
        known.watched = true;
        if known.ppid == 0 {
            known.ppid = ev.ppid;
        }
        ev.context.exe = known.exe.clone();
        ev.context.ancestry = self.ancestry(ev.ppid);
        ev.context.user = self.user(ev.uid);
        if let Some(path) = self.cgroups.path(ev.cgroup_id) {
            let ids = parse_container_ids(&path);
            if let (Some(pods), Some(uid)) = (&self.pods, &ids.pod_uid) {
                ev.context.k8s = pods.meta(uid, ids.container_id.as_deref());
            }
            ev.context.container_id = ids.container_id;
            ev.context.pod_uid = ids.pod_uid;
            ev.context.cgroup = Some(path);
        }
        if matches!(ev.detail, Detail::Exit { .. }) {
            self.procs.remove(&ev.pid);
        }
    }

    fn ancestry(&mut self, mut pid: u32) -> Vec<Ancestor> {
        let mut out = Vec::new();
        while pid > 1 && out.len() < MAX_ANCESTRY {
            let p = self
                .procs
                .entry(pid)
                .or_insert_with(|| proc_from_fs(pid))
                .clone();
            if !p.watched {
                break;
            }
            out.push(Ancestor {
                pid,
                exe: p.exe.clone(),
            });
            if p.ppid == pid {
                break;
            }
            pid = p.ppid;
        }
        out
    }

    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
}

/// Parent and executable of a live process, from /proc (empty if gone).
fn proc_from_fs(pid: u32) -> Proc {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces and parens: fields start after the last ')'.
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    Proc {
        ppid,
        exe,
        watched: false,
    }
}

/// Maps cgroup ids (the inode number of a cgroup2 directory) to paths,
/// rescanning the hierarchy on a miss at most once a second.
struct CgroupNames {
    root: Option<PathBuf>,
    names: HashMap<u64, String>,
    last_scan: Option<Instant>,
}

impl CgroupNames {
    fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            names: HashMap::new(),
            last_scan: None,
        }
    }

    fn path(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.names.get(&id) {
            return Some(p.clone());
        }
        if self
            .last_scan
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        let root = self.root.clone()?;
        self.names.clear();
        scan(&root, &root, &mut self.names, 0);
        self.last_scan = Some(Instant::now());
        self.names.get(&id).cloned()
    }
}

fn scan(root: &Path, dir: &Path, out: &mut HashMap<u64, String>, depth: usize) {
    if depth > 16 {
        return;
    }
    if let Ok(md) = fs::metadata(dir) {
        let rel = dir
            .strip_prefix(root)
            .map(|r| format!("/{}", r.display()))
            .unwrap_or_default();
        out.insert(
            md.ino(),
            if rel == "/" {
                "/".into()
            } else {
                rel.trim_end_matches('/').to_string()
            },
        );
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            scan(root, &e.path(), out, depth + 1);
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct ContainerIds {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

/// Container and pod ids from a cgroup path, for the layouts of the
/// systemd and cgroupfs drivers used by docker, containerd, CRI-O and
/// kubelet (`.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`,
/// `/kubepods/besteffort/pod<uid>/<id>`, `/docker/<id>`).
pub fn parse_container_ids(path: &str) -> ContainerIds {
    let mut ids = ContainerIds::default();
    for comp in path.split('/') {
        let stem = comp.trim_end_matches(".scope").trim_end_matches(".slice");
        let is_pod_dir = stem.starts_with("kubepods") || stem.starts_with("pod");
        if let Some(uid) = stem
            .rfind("pod")
            .map(|i| &stem[i + 3..])
            .filter(|_| is_pod_dir)
        {
            let uid_like = uid
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '_' || c == '-');
            if uid.len() >= 32 && uid_like {
                ids.pod_uid = Some(uid.replace('_', "-"));
                continue;
            }
        }
        let id = stem.rsplit(['-', ':']).next().unwrap_or(stem);
        if id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            ids.container_id = Some(id.to_string());
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";

    #[test]
    fn kubelet_systemd_driver() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-{CID}.scope"
        );
        let ids = parse_container_ids(&p);
        assert_eq!(
            ids.pod_uid.as_deref(),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        );
        assert_eq!(ids.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn kubelet_cgroupfs_driver() {
        let p = format!("/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/{CID}");
        let ids = parse_container_ids(&p);
        assert_eq!(
            ids.pod_uid.as_deref(),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        );
        assert_eq!(ids.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn docker_and_crio() {
        assert_eq!(
            parse_container_ids(&format!("/system.slice/docker-{CID}.scope"))
                .container_id
                .as_deref(),
            Some(CID)
        );
        assert_eq!(
            parse_container_ids(&format!("/docker/{CID}"))
                .container_id
                .as_deref(),
            Some(CID)
        );
        assert_eq!(
            parse_container_ids(&format!("/crio-{CID}.scope"))
                .container_id
                .as_deref(),
            Some(CID)
        );
    }

    #[test]
    fn plain_host_cgroups_have_no_ids() {
        assert_eq!(
            parse_container_ids("/user.slice/user-0.slice/session-3.scope"),
            ContainerIds::default()
        );
        assert_eq!(parse_container_ids("/"), ContainerIds::default());
    }
}

//! Privileged test of the daemon on a Kubernetes node's terms: processes
//! in kubelet-shaped cgroups (the systemd driver's pod and container
//! scopes) are selected by namespace, labels and service account, and
//! their events carry namespace, pod, container and service account.
//! No cluster runs here: the pod list comes from a stand-in for the API
//! server on loopback, answering `GET /api/v1/pods` as the real one does.
mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde_json::{json, Value};
use support::{
    cgroup2_mount,
    daemon::Daemon,
    privileged,
    receiver::{free_port, HttpReceiver},
    run::profile,
};

/// kubelet's cgroups for one pod and container; removed on drop.
struct PodCgroup {
    dirs: Vec<PathBuf>,
}

impl PodCgroup {
    fn new(root: &std::path::Path, qos: &str, uid: &str, container_id: &str) -> Option<Self> {
        let slice = root.join("kubepods.slice");
        let qos_dir = slice.join(format!("kubepods-{qos}.slice"));
        let pod = qos_dir.join(format!("kubepods-{qos}-pod{}.slice", uid.replace('-', "_")));
        let ctr = pod.join(format!("cri-containerd-{container_id}.scope"));
        std::fs::create_dir_all(&ctr).ok()?;
        Some(Self {
            dirs: vec![ctr, pod, qos_dir, slice],
        })
    }

    fn container(&self) -> &std::path::Path {
        &self.dirs[0]
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            for _ in 0..50 {
                // Parents shared with another pod stay until it is gone.
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                if std::fs::read_dir(d)
                    .is_ok_and(|mut e| e.any(|e| e.is_ok_and(|e| e.path().is_dir())))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn pod(uid: &str, ns: &str, name: &str, sa: &str, container_id: &str) -> Value {
    json!({
        "metadata": {"uid": uid, "namespace": ns, "name": name, "labels": {"app": "coder"}},
        "spec": {"serviceAccountName": sa, "nodeName": "test-node"},
        "status": {"containerStatuses": [{"name": "coder", "containerID": format!("containerd://{container_id}")}]}
    })
}

#[test]
fn pods_listed_by_the_api_server_are_selected_and_named_in_events() {
    pods_are_selected_and_named(false);
}

#[test]
fn pods_listed_by_the_kubelet_are_selected_and_named_in_events() {
    pods_are_selected_and_named(true);
}

/// Two pods with the same labels; the agent selects the one whose
/// namespace and service account also match. `kubelet`: list pods from
/// the node's kubelet (`/pods`) rather than the API server.
fn pods_are_selected_and_named(kubelet: bool) {
    let Some(_k) = privileged() else { return };
    let Some(root) = cgroup2_mount() else {
        eprintln!("SKIP: no cgroup v2 hierarchy");
        return;
    };
    let (uid_a, uid_b) = (
        "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901",
        "9b2c3d4e-5f60-7182-93a4-b5c6d7e8f902",
    );
    let (cid_a, cid_b) = ("a".repeat(64), "b".repeat(64));
    let (Some(pa), Some(pb)) = (
        PodCgroup::new(&root, "besteffort", uid_a, &cid_a),
        PodCgroup::new(&root, "besteffort", uid_b, &cid_b),
    ) else {
        eprintln!("SKIP: cannot create kubelet-shaped cgroups");
        return;
    };
    let pod_a = pod(uid_a, "agents", "coder-7d9f", "coder-sa", &cid_a);
    // Same labels, another namespace and service account: not selected.
    let pod_b = pod(uid_b, "other", "coder-x", "default", &cid_b);
    // The kubelet lists both. The API server lists B only; A comes from
    // the watch (a pod scheduled after the list), with a list refresh far
    // too slow to find it in time.
    let items = if kubelet {
        json!([pod_a, pod_b])
    } else {
        json!([pod_b])
    };
    let list = json!({"kind": "PodList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "100"}, "items": items})
    .to_string();
    let mut added = pod_a.clone();
    added["metadata"]["resourceVersion"] = json!("101");
    let watch = format!("{}\n", json!({"type": "ADDED", "object": added}));
    let port = free_port();
    let api = HttpReceiver::start_with(
        port,
        Arc::new(move |r| {
            if r.path.contains("watch=1") {
                ("200 OK", watch.clone())
            } else if r.path.starts_with("/api/v1/pods?") || r.path == "/pods" {
                ("200 OK", list.clone())
            } else {
                ("404 Not Found", "{}".into())
            }
        }),
    );
    let refresh = if kubelet { "300ms" } else { "60s" };

    let source = if kubelet { "kubelet" } else { "api" };
    let yaml = profile("k8s-coder", 1, "");
    let d = Daemon::prepare(&format!("k8s-{source}"), "", &[("k8s-coder.yaml", &yaml)]);
    let token = d.dir.0.join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    d.write_config(&format!(
        r#"[daemon]
alerts = "alerts.jsonl"
rescan = "200ms"
[kubernetes]
{source} = "http://127.0.0.1:{port}"
node = "test-node"
refresh = "{refresh}"
token_file = "{token}"

[[agent]]
name = "k8s-coder"
profile = "k8s-coder.yaml"
mode = "monitor"
workspace = "WS"
[agent.select.kubernetes]
namespace = "agents"
labels = {{ app = "coder" }}
service_account = "coder-sa"
"#,
        token = token.display()
    ));
    let mut d = d.start();
    // Both pods' processes run before they are watched, waiting for "go".
    let script = |tag: &str| {
        format!("while [ ! -e go ]; do sleep 0.1; done; cat /etc/hostname > /dev/null; touch done-{tag}")
    };
    d.workload(pa.container(), &script("a"));
    d.workload(pb.container(), &script("b"));
    let t = std::time::Instant::now();
    while d.json(&["status", "k8s-coder"])["processes"].as_u64() == Some(0) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pod A's process never watched: {}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(d.ws().join("go"), "").unwrap();
    let t = std::time::Instant::now();
    while !(d.ws().join("done-a").exists() && d.ws().join("done-b").exists()) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "workloads did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let alerts = d.alerts();
    let hostname: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["event"]["path"] == "/etc/hostname")
        .collect();
    assert_eq!(hostname.len(), 1, "only pod A is the agent: {alerts:?}");
    let ev = &hostname[0]["event"];
    assert_eq!(ev["namespace"], "agents");
    assert_eq!(ev["pod"], "coder-7d9f");
    assert_eq!(ev["container"], "coder");
    assert_eq!(ev["service_account"], "coder-sa");
    assert_eq!(ev["pod_uid"], uid_a);
    assert_eq!(ev["container_id"], cid_a.as_str());
    // The daemon asked for this node's pods.
    let asked = if kubelet {
        "/pods"
    } else {
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dtest-node"
    };
    assert!(api.requests().iter().any(|r| r.path == asked));
    if !kubelet {
        let watched = api
            .requests()
            .iter()
            .any(|r| r.path.contains("watch=1") && r.path.contains("resourceVersion=100"));
        assert!(watched, "no watch from the list's version");
    }
    let bearer = |t: &str| {
        let want = format!("Bearer {t}");
        api.requests()
            .iter()
            .any(|r| r.header("authorization") == Some(want.as_str()))
    };
    assert!(bearer("first-token"), "the token was not sent");
    // The kubelet rotates the projected token: the next request has it.
    std::fs::write(&token, "second-token\n").unwrap();
    let t = std::time::Instant::now();
    while !bearer("second-token") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the rotated token was never sent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.stop(), Some(0));
    drop(d);
    drop((pa, pb));
}

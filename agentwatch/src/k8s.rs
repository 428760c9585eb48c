//! Kubernetes: which namespace, pod, container and service account a
//! process on this node belongs to, and which pods an agent's selector
//! picks. The cgroup path gives a process's pod uid and container id (see
//! `pipeline::enrich::parse_container_ids`); the list of this node's pods,
//! from the API server (filtered by node) or from the node's kubelet
//! (`/pods`), gives the rest. Read with the DaemonSet's service account:
//! the API server's list is then watched (`ApiClient::watch`), the
//! kubelet's listed again every `refresh` (`daemon/pods.rs`).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum K8sError {
    #[error("kubernetes API {url}: {reason}")]
    Api { url: String, reason: String },
    #[error("{path}: {source} (is this running in a pod with a service account?)")]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no Kubernetes API address: set [kubernetes] api, or run in a pod (KUBERNETES_SERVICE_HOST)")]
    NoApi,
    #[error("the pod watch's resource version is too old; listing again")]
    Gone,
}

/// A pod of this node, as the API server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// Container id (without the runtime's `containerd://` prefix) to name.
    pub containers: BTreeMap<String, String>,
}

pub use crate::event::PodMeta;

/// Selects pods: every given field must match (labels: each pair).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSelector {
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
}

impl PodSelector {
    pub fn matches(&self, p: &Pod) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == p.namespace)
            && self
                .service_account
                .as_ref()
                .is_none_or(|s| *s == p.service_account)
            && self.labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
    }
}

impl std::fmt::Display for PodSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = &self.namespace {
            parts.push(format!("namespace={n}"));
        }
        for (k, v) in &self.labels {
            parts.push(format!("{k}={v}"));
        }
        if let Some(s) = &self.service_account {
            parts.push(format!("serviceaccount={s}"));
        }
        write!(f, "pods({})", parts.join(","))
    }
}

/// This node's pods by uid, shared by the enricher and the daemon.
#[derive(Debug, Clone, Default)]
pub struct Pods(Arc<RwLock<BTreeMap<String, Pod>>>);

impl Pods {
    pub fn replace(&self, pods: Vec<Pod>) {
        if let Ok(mut m) = self.0.write() {
            *m = pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
        }
    }

    /// A pod added or changed (a watch event).
    pub fn upsert(&self, pod: Pod) {
        if let Ok(mut m) = self.0.write() {
            m.insert(pod.uid.clone(), pod);
        }
    }

    /// A pod deleted (a watch event).
    pub fn remove(&self, uid: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(uid);
        }
    }

    /// The pod (and container) of a process, from the ids its cgroup
    /// path gave.
    pub fn meta(&self, pod_uid: &str, container_id: Option<&str>) -> Option<PodMeta> {
        let m = self.0.read().ok()?;
        let p = m.get(pod_uid)?;
        Some(PodMeta {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
            container: container_id.and_then(|c| p.containers.get(c).cloned()),
            service_account: p.service_account.clone(),
        })
    }

    pub fn matching(&self, sel: &PodSelector) -> Vec<Pod> {
        self.0
            .read()
            .map(|m| m.values().filter(|p| sel.matches(p)).cloned().collect())
            .unwrap_or_default()
    }
}

/// How to reach the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Base URL; None: the in-cluster address from the environment.
    pub api: Option<String>,
    /// The node's kubelet (`https://127.0.0.1:10250`): pods are listed
    /// from its `/pods` instead of the API server.
    pub kubelet: Option<String>,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    /// This node's name (the DaemonSet sets NODE_NAME from spec.nodeName).
    pub node: String,
    pub refresh: Duration,
}

impl ApiConfig {
    pub const SA_DIR: &'static str = "/var/run/secrets/kubernetes.io/serviceaccount";

    pub fn default_node() -> String {
        std::env::var("NODE_NAME").unwrap_or_else(|_| crate::origin::host().to_string())
    }
}

pub struct ApiClient {
    agent: ureq::Agent,
    /// For watches: no overall timeout (the server ends a watch itself,
    /// after `timeoutSeconds`).
    watcher: ureq::Agent,
    /// Pods are listed from the kubelet, which cannot be watched.
    kubelet: bool,
    /// The URL that lists this node's pods.
    url: String,
    /// The service-account token, read again for every request: the
    /// kubelet rotates projected tokens (hourly by default).
    token_file: PathBuf,
}

impl ApiClient {
    pub fn new(cfg: &ApiConfig) -> Result<Self, K8sError> {
        let base = match (&cfg.kubelet, &cfg.api) {
            (Some(k), _) => k.trim_end_matches('/').to_string(),
            (None, Some(a)) => a.trim_end_matches('/').to_string(),
            (None, None) => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| K8sError::NoApi)?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        // Unreadable credentials are said now, not at the first request.
        read_if_exists(&cfg.token_file)?;
        let tls = Self::tls(&base, cfg)?;
        let build = |timeout: Option<Duration>| {
            let mut b = ureq::Agent::config_builder()
                .timeout_global(timeout)
                .timeout_connect(Some(Duration::from_secs(10)))
                .http_status_as_error(true);
            if let Some(t) = &tls {
                b = b.tls_config(t.clone());
            }
            ureq::Agent::from(b.build())
        };
        let url = match &cfg.kubelet {
            // The kubelet lists its own pods.
            Some(_) => format!("{base}/pods"),
            None => format!(
                "{base}/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
                cfg.node
            ),
        };
        Ok(Self {
            agent: build(Some(Duration::from_secs(10))),
            watcher: build(None),
            kubelet: cfg.kubelet.is_some(),
            url,
            token_file: cfg.token_file.clone(),
        })
    }

    /// The TLS configuration for an https API: the cluster's CA.
    fn tls(base: &str, cfg: &ApiConfig) -> Result<Option<ureq::tls::TlsConfig>, K8sError> {
        if base.starts_with("https://") {
            if let Some(pem) = read_if_exists(&cfg.ca_file)? {
                let certs: Vec<_> = ureq::tls::parse_pem(pem.as_bytes())
                    .filter_map(Result::ok)
                    .filter_map(|i| match i {
                        ureq::tls::PemItem::Certificate(c) => Some(c),
                        _ => None,
                    })
                    .collect();
                return Ok(Some(
                    ureq::tls::TlsConfig::builder()
                        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                        .build(),
                ));
            }
        }
        Ok(None)
    }

    /// The pods scheduled on this node, and the list's resourceVersion
    /// (where a watch starts).
    pub fn list(&self) -> Result<(Vec<Pod>, Option<String>), K8sError> {
        let url = &self.url;
        let body = self
            .get(&self.agent, url)?
            .body_mut()
            .read_to_string()
            .map_err(|e| api_err(url, e))?;
        let v: Value = serde_json::from_str(&body).map_err(|e| api_err(url, e))?;
        let version = v["metadata"]["resourceVersion"].as_str().map(String::from);
        Ok((parse_pod_list(&v), version))
    }

    /// Whether pods can be watched (the API server), rather than polled
    /// (the kubelet).
    pub fn can_watch(&self) -> bool {
        !self.kubelet
    }

    /// Follows changes to this node's pods from `version` until the server
    /// ends the watch: each added or changed pod is `upsert`, each deleted
    /// one removed. Returns the version to watch from next; `Gone` when
    /// `version` is too old (list again).
    pub fn watch(&self, version: &str, pods: &Pods) -> Result<String, K8sError> {
        let url = format!(
            "{}&watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion={version}",
            self.url
        );
        let mut resp = self.get(&self.watcher, &url)?;
        let mut version = version.to_string();
        let reader = std::io::BufReader::new(resp.body_mut().as_reader());
        for line in std::io::BufRead::lines(reader) {
            let line = line.map_err(|e| api_err(&url, e))?;
            let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let object = &ev["object"];
            if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                version = v.to_string();
            }
            match ev["type"].as_str() {
                Some("ADDED" | "MODIFIED") => {
                    if let Some(p) = parse_pod(object) {
                        pods.upsert(p);
                    }
                }
                Some("DELETED") => {
                    if let Some(uid) = object["metadata"]["uid"].as_str() {
                        pods.remove(uid);
                    }
                }
                Some("ERROR") => return Err(K8sError::Gone),
                _ => {}
            }
        }
        Ok(version)
    }

    fn get(
        &self,
        agent: &ureq::Agent,
        url: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, K8sError> {
        let mut req = agent.get(url);
        if let Some(t) = read_if_exists(&self.token_file)? {
            req = req.header("Authorization", &format!("Bearer {}", t.trim()));
        }
        req.call().map_err(|e| api_err(url, e))
    }
}

fn api_err(url: &str, reason: impl std::fmt::Display) -> K8sError {
    K8sError::Api {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

fn read_if_exists(path: &Path) -> Result<Option<String>, K8sError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(K8sError::Credentials {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The pods of a PodList (`GET /api/v1/pods`).
pub fn parse_pod_list(v: &Value) -> Vec<Pod> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(parse_pod)
        .collect()
}

/// One pod object (a list item, or a watch event's object).
fn parse_pod(p: &Value) -> Option<Pod> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let meta = &p["metadata"];
    let uid = meta["uid"].as_str()?.to_string();
    let labels = meta["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default();
    let containers = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|k| p["status"][k].as_array().into_iter().flatten())
        .filter_map(|c| {
            let id = c["containerID"].as_str()?;
            let id = id.rsplit("://").next().unwrap_or(id).to_string();
            Some((id, s(&c["name"])))
        })
        .collect();
    Some(Pod {
        uid,
        namespace: s(&meta["namespace"]),
        name: s(&meta["name"]),
        labels,
        service_account: p["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        containers,
    })
}

/// The container cgroup directories of every pod on this node, by pod
/// uid: kubelet names each pod's directory after its uid (both drivers'
/// layouts; see `parse_container_ids`), and each container is a directory
/// below it. One walk of the hierarchy, a few levels deep.
pub fn pod_cgroups(cgroup2: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut level = vec![cgroup2.to_path_buf()];
    for _ in 0..6 {
        let mut next = Vec::new();
        for dir in &level {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                match crate::pipeline::enrich::parse_container_ids(&name).pod_uid {
                    Some(uid) => {
                        let containers = std::fs::read_dir(e.path())
                            .into_iter()
                            .flatten()
                            .flatten()
                            .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|c| c.path());
                        out.entry(uid).or_default().extend(containers);
                    }
                    None => next.push(e.path()),
                }
            }
        }
        level = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_list() -> Value {
        serde_json::json!({"kind": "PodList", "items": [{
            "metadata": {"uid": "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", "namespace": "agents",
                "name": "coder-7d9f", "labels": {"app": "coder", "tier": "dev"}},
            "spec": {"serviceAccountName": "coder-sa", "nodeName": "n1"},
            "status": {"containerStatuses": [
                {"name": "coder", "containerID": "containerd://aaaa"},
                {"name": "sidecar", "containerID": "cri-o://bbbb"}]}
        }, {
            "metadata": {"uid": "u2", "namespace": "other", "name": "x"},
            "spec": {}, "status": {}
        }]})
    }

    #[test]
    fn pods_are_read_from_a_pod_list_and_looked_up_by_uid_and_container() {
        let pods = Pods::default();
        pods.replace(parse_pod_list(&pod_list()));
        let m = pods
            .meta("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", Some("bbbb"))
            .unwrap();
        assert_eq!(
            m,
            PodMeta {
                namespace: "agents".into(),
                pod: "coder-7d9f".into(),
                container: Some("sidecar".into()),
                service_account: "coder-sa".into(),
            }
        );
        assert_eq!(pods.meta("u2", None).unwrap().service_account, "default");
        assert!(pods.meta("nope", None).is_none());
    }

    #[test]
    fn container_cgroups_are_found_under_their_pods_directory() {
        let root = std::env::temp_dir().join(format!("aw-k8s-cg-{}", std::process::id()));
        let pod = root.join("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice");
        std::fs::create_dir_all(pod.join("cri-containerd-aaaa.scope")).unwrap();
        std::fs::create_dir_all(
            root.join("kubepods/burstable/pod22222222-3333-4444-5555-666666666666/cid"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("system.slice/ssh.service")).unwrap();
        let found = pod_cgroups(&root);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found["1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"],
            vec![pod.join("cri-containerd-aaaa.scope")]
        );
        assert_eq!(found["22222222-3333-4444-5555-666666666666"].len(), 1);
    }

    #[test]
    fn a_selector_needs_every_field_it_names() {
        let pods = Pods::default();
        pods.replace(parse_pod_list(&pod_list()));
        let mut sel = PodSelector {
            namespace: Some("agents".into()),
            labels: [("app".to_string(), "coder".to_string())].into(),
            service_account: Some("coder-sa".into()),
        };
        assert_eq!(pods.matching(&sel).len(), 1);
        sel.labels.insert("tier".into(), "prod".into());
        assert!(pods.matching(&sel).is_empty());
        assert_eq!(pods.matching(&PodSelector::default()).len(), 2);
        let ns_only = PodSelector {
            namespace: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(pods.matching(&ns_only)[0].name, "x");
    }
}

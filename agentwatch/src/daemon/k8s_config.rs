//! The `[kubernetes]` table (how to reach the API server) and the
//! `[agent.select.kubernetes]` pod selector of the daemon's configuration.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use super::config::Problems;
use crate::k8s::{ApiConfig, PodSelector};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct KubernetesDoc {
    api: Option<Spanned<String>>,
    kubelet: Option<Spanned<String>>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    node: Option<String>,
    refresh: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PodSelectDoc {
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    service_account: Option<String>,
}

pub(super) fn api(p: &mut Problems, doc: Option<&KubernetesDoc>) -> Option<ApiConfig> {
    let d = doc?;
    for (key, v) in [("api", &d.api), ("kubelet", &d.kubelet)] {
        if let Some(a) = v {
            if !(a.get_ref().starts_with("https://") || a.get_ref().starts_with("http://")) {
                p.at(
                    Some(a.span()),
                    format!("kubernetes {key}: give a URL (https://HOST:PORT)"),
                );
            }
        }
    }
    let refresh = match &d.refresh {
        Some(r) => crate::units::parse_duration(r.get_ref()).unwrap_or_else(|e| {
            p.at(Some(r.span()), format!("kubernetes refresh: {e}"));
            Duration::from_secs(5)
        }),
        None => Duration::from_secs(5),
    };
    let sa = PathBuf::from(ApiConfig::SA_DIR);
    Some(ApiConfig {
        api: d.api.as_ref().map(|a| a.get_ref().clone()),
        kubelet: d.kubelet.as_ref().map(|a| a.get_ref().clone()),
        token_file: d.token_file.clone().unwrap_or_else(|| sa.join("token")),
        ca_file: d.ca_file.clone().unwrap_or_else(|| sa.join("ca.crt")),
        node: d.node.clone().unwrap_or_else(ApiConfig::default_node),
        refresh,
    })
}

/// The pod selector of an agent; needs `[kubernetes]` and at least one
/// field.
pub(super) fn pods(
    p: &mut Problems,
    doc: Option<&Spanned<PodSelectDoc>>,
    agent: &str,
    have_api: bool,
) -> Option<PodSelector> {
    let d = doc?;
    let s = d.get_ref();
    if s.namespace.is_none() && s.labels.is_empty() && s.service_account.is_none() {
        p.at(
            Some(d.span()),
            format!("agent {agent}: [agent.select.kubernetes] names nothing; give namespace, labels or service_account"),
        );
    }
    if !have_api {
        p.at(
            Some(d.span()),
            format!("agent {agent}: selecting pods needs a [kubernetes] table (empty in a pod: the in-cluster API and service account are used)"),
        );
    }
    Some(PodSelector {
        namespace: s.namespace.clone(),
        labels: s.labels.clone(),
        service_account: s.service_account.clone(),
    })
}

//! Keeping this node's pods current: a thread lists them from the API
//! server every `refresh`, so enrichment and pod selectors see new pods
//! within that time. An unreachable API server is said once per outage;
//! the last list stays in use.
use tracing::{info, warn};

use crate::k8s::{ApiClient, ApiConfig, Pods};

pub(super) fn refresh_in_background(api: &ApiConfig, pods: Pods) -> anyhow::Result<()> {
    // Records name the node from now on.
    crate::origin::set_node(&api.node);
    let client = ApiClient::new(api)?;
    // The first list before agents are selected by pod, when reachable.
    match client.node_pods() {
        Ok(list) => {
            info!(pods = list.len(), node = %api.node, "listed this node's pods");
            pods.replace(list);
        }
        Err(e) => warn!(error = %e, "cannot list this node's pods yet; retrying"),
    }
    let every = api.refresh;
    std::thread::Builder::new()
        .name("aw-pods".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                std::thread::sleep(every);
                match client.node_pods() {
                    Ok(list) => {
                        if failing {
                            info!("the Kubernetes API answers again");
                            failing = false;
                        }
                        pods.replace(list);
                    }
                    Err(e) => {
                        if !failing {
                            warn!(error = %e, "cannot list this node's pods; using the last list");
                            failing = true;
                        }
                    }
                }
            }
        })?;
    Ok(())
}

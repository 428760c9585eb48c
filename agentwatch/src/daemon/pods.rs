//! Keeping this node's pods current, so enrichment and pod selectors see
//! a new pod within about a second. From the API server: one list, then
//! a watch that follows every change (listed again when the watch breaks
//! or its version is too old). From the kubelet, which cannot be watched:
//! a list every `refresh`. An unreachable server is said once per outage;
//! the last pods known stay in use.
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::k8s::{ApiClient, ApiConfig, K8sError, Pods};

pub(super) fn refresh_in_background(api: &ApiConfig, pods: Pods) -> anyhow::Result<()> {
    // Records name the node from now on.
    crate::origin::set_node(&api.node);
    let client = ApiClient::new(api)?;
    // The first list before agents are selected by pod, when reachable.
    let mut version = match client.list() {
        Ok((list, version)) => {
            info!(pods = list.len(), node = %api.node, "listed this node's pods");
            pods.replace(list);
            version
        }
        Err(e) => {
            warn!(error = %e, "cannot list this node's pods yet; retrying");
            None
        }
    };
    let every = api.refresh;
    std::thread::Builder::new()
        .name("aw-pods".into())
        .spawn(move || {
            let mut outage = Outage::default();
            loop {
                version = match version.take().filter(|_| client.can_watch()) {
                    Some(v) => follow(&client, &pods, v, &mut outage, every),
                    None => {
                        std::thread::sleep(every);
                        relist(&client, &pods, &mut outage)
                    }
                };
            }
        })?;
    Ok(())
}

/// Watches from `version`; the version to go on from, or None to list
/// again.
fn follow(
    client: &ApiClient,
    pods: &Pods,
    version: String,
    outage: &mut Outage,
    every: Duration,
) -> Option<String> {
    let started = Instant::now();
    match client.watch(&version, pods) {
        Ok(next) => {
            outage.over();
            // A server that ends watches at once is not hammered.
            if started.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_secs(1));
            }
            Some(next)
        }
        Err(K8sError::Gone) => relist(client, pods, outage),
        Err(e) => {
            outage.failed(&e);
            std::thread::sleep(every);
            relist(client, pods, outage)
        }
    }
}

fn relist(client: &ApiClient, pods: &Pods, outage: &mut Outage) -> Option<String> {
    match client.list() {
        Ok((list, version)) => {
            outage.over();
            pods.replace(list);
            version
        }
        Err(e) => {
            outage.failed(&e);
            None
        }
    }
}

/// Says an outage once, and its end once.
#[derive(Default)]
struct Outage(bool);

impl Outage {
    fn failed(&mut self, e: &K8sError) {
        if !self.0 {
            warn!(error = %e, "cannot reach the Kubernetes API; using the last pods known");
            self.0 = true;
        }
    }

    fn over(&mut self) {
        if self.0 {
            info!("the Kubernetes API answers again");
            self.0 = false;
        }
    }
}

//! A profile's starting point and its canonical form: an empty profile,
//! and every list in one order, so that equal profiles are equal files.
use std::collections::BTreeMap;

use super::*;

impl Profile {
    /// An empty profile for `agent`, as a starting point.
    pub fn empty(agent: &str) -> Self {
        Self {
            agent: agent.to_string(),
            granularity: Granularity::default(),
            overrides: Vec::new(),
            territories: Vec::new(),
            io_uring: false,
            raw_sockets: false,
            executables: Vec::new(),
            files: Vec::new(),
            network: Vec::new(),
            dns: Vec::new(),
            rates: Rates {
                headroom: 2.0,
                per_minute: BTreeMap::new(),
            },
            resources: BTreeMap::new(),
            models: None,
            model_manifests: Vec::new(),
            instructions: Vec::new(),
            actions: Actions::default(),
            guardrails: Vec::new(),
            review: Vec::new(),
            approvals: Vec::new(),
            stability: Stability {
                warmup_secs: 0,
                quiet_secs: 0,
                classes: BTreeMap::new(),
            },
            provenance: Provenance {
                hosts: Vec::new(),
                sessions: 0,
                started: String::new(),
                ended: String::new(),
                events: BTreeMap::new(),
            },
            readiness: None,
        }
    }

    /// Puts every list in its canonical order, so equal profiles are
    /// equal files.
    pub fn sort(&mut self) {
        self.overrides.sort_by(|a, b| a.path.cmp(&b.path));
        self.territories.sort_by(|a, b| a.path.cmp(&b.path));
        self.guardrails
            .sort_by(|a, b| (&a.path, &a.category).cmp(&(&b.path, &b.category)));
        self.executables.sort_by(|a, b| a.path.cmp(&b.path));
        for e in &mut self.executables {
            e.sha256.sort();
            e.sha256.dedup();
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(m) = &mut self.models {
            pinned::sort_models(m);
        }
        self.instructions.sort_by(|a, b| a.path.cmp(&b.path));
        self.model_manifests.sort();
        self.model_manifests.dedup();
        for n in &mut self.network {
            n.by.sort();
            n.by.dedup();
        }
        self.network.sort_by_key(|a| a.key());
        self.dns.sort_by(|a, b| a.name.cmp(&b.name));
        self.review
            .sort_by(|a, b| (&a.path, &a.guardrail).cmp(&(&b.path, &b.guardrail)));
        self.provenance.hosts.sort();
        self.provenance.hosts.dedup();
    }
}

impl Profile {
    /// Whether opening a model file is checked: a `models` section (even
    /// empty) or a signed manifest.
    pub fn checks_models(&self) -> bool {
        self.models.is_some() || !self.model_manifests.is_empty()
    }
}

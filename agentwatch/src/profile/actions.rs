//! What enforcement does about violations: the action kinds, the
//! per-class defaults, and the overrides a profile or a daemon
//! configuration writes.
use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use super::Class;
/// What enforcement does about a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Record it; let it happen.
    Alert,
    /// Refuse it (EPERM) where a hook can; else kill the process at the call.
    Deny,
    /// Stop the agent's whole tree and ask (`agentwatch pending`).
    Pause,
    /// Kill the agent's whole tree.
    Kill,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Alert => "alert",
            ActionKind::Deny => "deny",
            ActionKind::Pause => "pause",
            ActionKind::Kill => "kill",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Actions per class in enforce mode, and for guardrail hits and rate
/// excursions. Defaults: exec, file and delete pause (a person decides);
/// network denies (the connect fails with EPERM); dns denies (the query
/// is dropped as it leaves: a name is itself a channel out); guardrails
/// and rates pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actions {
    pub per_class: BTreeMap<Class, ActionKind>,
    pub guardrails: ActionKind,
    pub rate: ActionKind,
}

impl Default for Actions {
    fn default() -> Self {
        use ActionKind::*;
        Self {
            per_class: [
                (Class::Exec, Pause),
                (Class::File, Pause),
                (Class::Delete, Pause),
                (Class::Network, Deny),
                (Class::Dns, Deny),
            ]
            .into_iter()
            .collect(),
            guardrails: Pause,
            rate: Pause,
        }
    }
}

impl Actions {
    pub fn for_class(&self, c: Class) -> ActionKind {
        self.per_class.get(&c).copied().unwrap_or(ActionKind::Alert)
    }
}

/// Actions as a profile's `actions:` or a daemon config's
/// `[agent.actions]` write them: each given class replaces the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionOverrides {
    pub exec: Option<ActionKind>,
    pub file: Option<ActionKind>,
    pub delete: Option<ActionKind>,
    pub network: Option<ActionKind>,
    pub dns: Option<ActionKind>,
    pub guardrails: Option<ActionKind>,
    pub rate: Option<ActionKind>,
}

impl ActionOverrides {
    pub fn apply(&self, a: &mut Actions) {
        for (c, v) in [
            (Class::Exec, self.exec),
            (Class::File, self.file),
            (Class::Delete, self.delete),
            (Class::Network, self.network),
            (Class::Dns, self.dns),
        ] {
            if let Some(v) = v {
                a.per_class.insert(c, v);
            }
        }
        if let Some(g) = self.guardrails {
            a.guardrails = g;
        }
        if let Some(r) = self.rate {
            a.rate = r;
        }
    }
}

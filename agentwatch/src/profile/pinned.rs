//! The profile's pinned files: the model weights an agent may load
//! (`models`) and the instruction files that steer it (`instructions`),
//! each with the sha256 a reviewer approved. `crate::pins` checks them
//! when the agent reads one.
use serde::{Deserialize, Serialize};

/// Model files the agent may load: a path pattern, and the sha256 of
/// each approved version (empty: any file there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRule {
    pub path: String,
    pub sha256: Vec<String>,
}

/// A signed list of approved model hashes: `manifest` in `sha256sum`'s
/// format, its Ed25519 signature beside it (`MANIFEST.sig`: the 64 raw
/// bytes, or them in hex), checked with the public key `key` (PEM). Any
/// model file whose sha256 it lists is approved, wherever it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelManifest {
    pub manifest: String,
    pub key: String,
}

/// A file that steers the agent, pinned at the content it had when it
/// was learned or last approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    pub path: String,
    pub sha256: String,
    /// Its size then, in bytes: a change is reported with the new size.
    pub size: u64,
}

/// `to` with `from`'s models added: a path both list has the union of
/// their hashes (any approved version stays approved). Absent in both is
/// absent: models are checked only where a profile lists them.
pub fn union_models(to: &mut Option<Vec<ModelRule>>, from: &Option<Vec<ModelRule>>) {
    let Some(from) = from else {
        return;
    };
    let to = to.get_or_insert_with(Vec::new);
    for m in from {
        match to.iter_mut().find(|t| t.path == m.path) {
            Some(t) => t.sha256.extend(m.sha256.iter().cloned()),
            None => to.push(m.clone()),
        }
    }
    sort_models(to);
}

/// Models by path, each one's hashes sorted and unique.
pub fn sort_models(models: &mut [ModelRule]) {
    models.sort_by(|a, b| a.path.cmp(&b.path));
    for m in models {
        m.sha256.sort();
        m.sha256.dedup();
    }
}

/// `to` with `from`'s instructions added where `to` pins no such path
/// (`keep`) or replacing them (`!keep`: an approval's new pin).
pub fn add_instructions(to: &mut Vec<Instruction>, from: &[Instruction], keep: bool) {
    for i in from {
        match to.iter_mut().find(|t| t.path == i.path) {
            Some(t) if !keep => *t = i.clone(),
            Some(_) => {}
            None => to.push(i.clone()),
        }
    }
    to.sort_by(|a, b| a.path.cmp(&b.path));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(path: &str, h: &[&str]) -> ModelRule {
        ModelRule {
            path: path.into(),
            sha256: h.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn models_unite_by_path_and_absent_stays_absent() {
        let mut none = None;
        union_models(&mut none, &None);
        assert_eq!(none, None);
        let mut to = Some(vec![m("/m/a.gguf", &["bb"])]);
        union_models(
            &mut to,
            &Some(vec![m("/m/a.gguf", &["aa", "bb"]), m("/m/b.gguf", &[])]),
        );
        assert_eq!(
            to,
            Some(vec![m("/m/a.gguf", &["aa", "bb"]), m("/m/b.gguf", &[])])
        );
        // An empty list is a list: no model may be loaded.
        let mut empty = None;
        union_models(&mut empty, &Some(Vec::new()));
        assert_eq!(empty, Some(Vec::new()));
    }

    #[test]
    fn an_approval_replaces_a_pin_and_a_merge_keeps_it() {
        let pin = |h: &str| Instruction {
            path: "$WORKSPACE/AGENTS.md".into(),
            sha256: h.into(),
            size: 1,
        };
        let mut to = vec![pin("old")];
        add_instructions(&mut to, &[pin("new")], true);
        assert_eq!(to, vec![pin("old")]);
        add_instructions(&mut to, &[pin("new")], false);
        assert_eq!(to, vec![pin("new")]);
    }
}

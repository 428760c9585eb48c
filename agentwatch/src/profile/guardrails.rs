//! Guardrails: paths that hold whatever was learned. Learning never turns
//! them into allowed entries (they go to the profile's `review` list) and
//! never generalises a pattern over them.
use super::{glob::Glob, matcher::trie::PathTrie, Access, AccessSet};

/// Secrets: any access, reading included.
const SECRETS: &[&str] = &[
    "**/.ssh/**",
    "**/.aws/**",
    "**/.azure/**",
    "**/.config/gcloud/**",
    "**/.kube/**",
    "**/.docker/config.json",
    "**/.netrc",
    "**/.git-credentials",
    "**/.gnupg/**",
    "**/.npmrc",
    "**/.pypirc",
    "**/.env",
    "**/.env.*",
    "**/.config/gh/hosts.yml",
    "**/.claude/.credentials.json",
    "**/.codex/auth.json",
    "/etc/shadow",
    "/etc/gshadow",
    "/run/secrets/**",
    "/var/run/secrets/**",
];

/// Persistence places: changing them (reading is normal, shells read rc files).
const PERSISTENCE: &[&str] = &[
    "**/.bashrc",
    "**/.bash_profile",
    "**/.bash_login",
    "**/.bash_logout",
    "**/.profile",
    "**/.zshrc",
    "**/.zprofile",
    "**/.zshenv",
    "**/.config/fish/config.fish",
    "**/.config/autostart/**",
    "**/.config/systemd/**",
    "**/.ssh/authorized_keys",
    "**/.git/hooks/**",
    "/etc/profile",
    "/etc/profile.d/**",
    "/etc/bash.bashrc",
    "/etc/environment",
    "/etc/ld.so.preload",
    "/etc/crontab",
    "/etc/cron.*/**",
    "/var/spool/cron/**",
    "/etc/systemd/**",
    "/lib/systemd/system/**",
    "/usr/lib/systemd/system/**",
    "/etc/init.d/**",
    "/etc/rc.local",
    "/etc/sudoers",
    "/etc/sudoers.d/**",
    "/etc/passwd",
    "/etc/group",
];

/// agentwatch's own files: changing them is tampering.
const AGENTWATCH: &[&str] = &[
    "/etc/agentwatch/**",
    "/var/lib/agentwatch/**",
    "/var/log/agentwatch/**",
    "/run/agentwatch/**",
    "/sys/fs/bpf/**",
];

/// One guardrail: a pattern and the accesses it protects.
#[derive(Debug, Clone)]
pub struct Guardrail {
    pub category: &'static str,
    pub pattern: Glob,
    pub guarded: AccessSet,
}

/// The guardrail set in force, indexed by segment for matching.
#[derive(Debug)]
pub struct Guardrails {
    list: Vec<Guardrail>,
    index: PathTrie,
}

impl Clone for Guardrails {
    fn clone(&self) -> Self {
        Self::from_list(self.list.clone())
    }
}

fn mutating() -> AccessSet {
    AccessSet::of(&[
        Access::Write,
        Access::Create,
        Access::Delete,
        Access::Rename,
        Access::Chmod,
    ])
}

fn all() -> AccessSet {
    AccessSet::of(&Access::ALL)
}

impl Guardrails {
    /// The built-in guardrails.
    pub fn builtin() -> Self {
        let mut list = Vec::new();
        for (category, pats, guarded) in [
            ("secrets", SECRETS, all()),
            ("persistence", PERSISTENCE, mutating()),
            ("agentwatch", AGENTWATCH, mutating()),
        ] {
            for p in pats {
                // The built-in lists are constants; a typo is caught by the
                // unit test below, so a bad one is skipped, not fatal.
                if let Ok(pattern) = Glob::guardrail(p) {
                    list.push(Guardrail {
                        category,
                        pattern,
                        guarded,
                    });
                }
            }
        }
        Self::from_list(list)
    }

    fn from_list(list: Vec<Guardrail>) -> Self {
        let mut index = PathTrie::dotglob();
        for (i, g) in list.iter().enumerate() {
            index.insert(&g.pattern, i);
        }
        Self { list, index }
    }

    /// Adds agentwatch's own files of this run (its binary, the profile
    /// being written) as tamper guardrails.
    pub fn with_agentwatch_paths<'a>(self, paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut list = self.list;
        for p in paths {
            if let Ok(pattern) = Glob::guardrail(p) {
                list.push(Guardrail {
                    category: "agentwatch",
                    pattern,
                    guarded: mutating(),
                });
            }
        }
        Self::from_list(list)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Guardrail> {
        self.list.iter()
    }

    /// The guardrail an access to an absolute path falls under, and the
    /// guarded part of the access. Secrets come first.
    pub fn hit(&self, path: &str, access: AccessSet) -> Option<(&Guardrail, AccessSet)> {
        let mut first: Option<usize> = None;
        let list = &self.list;
        self.index.matches(path, &mut |i| {
            if !access.intersection(list[i].guarded).is_empty() && first.is_none_or(|f| i < f) {
                first = Some(i);
            }
        });
        let g = &self.list[first?];
        Some((g, access.intersection(g.guarded)))
    }

    /// The first guardrail a pattern with this access would reach into.
    pub fn overlapped_by(&self, pattern: &Glob, access: AccessSet) -> Option<&Guardrail> {
        self.list
            .iter()
            .find(|g| !access.intersection(g.guarded).is_empty() && pattern.intersects(&g.pattern))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read() -> AccessSet {
        AccessSet::of(&[Access::Read])
    }
    fn write() -> AccessSet {
        AccessSet::of(&[Access::Write])
    }

    #[test]
    fn every_builtin_pattern_parses() {
        let n = SECRETS.len() + PERSISTENCE.len() + AGENTWATCH.len();
        assert_eq!(Guardrails::builtin().iter().count(), n);
    }

    #[test]
    fn secrets_guard_reads() {
        let g = Guardrails::builtin();
        let (hit, part) = g.hit("/home/ana/.ssh/id_ed25519", read()).unwrap();
        assert_eq!((hit.category, part), ("secrets", read()));
        assert!(g.hit("/srv/app/.env", read()).is_some());
        assert!(g.hit("/srv/app/.env.production", read()).is_some());
        assert!(g
            .hit(
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
                read()
            )
            .is_some());
        assert!(g.hit("/srv/app/env.py", read()).is_none());
    }

    #[test]
    fn persistence_guards_changes_not_reads() {
        let g = Guardrails::builtin();
        assert!(g.hit("/home/ana/.bashrc", read()).is_none());
        let (hit, _) = g.hit("/home/ana/.bashrc", write()).unwrap();
        assert_eq!(hit.category, "persistence");
        assert!(g
            .hit("/home/ana/src/x/.git/hooks/pre-commit", write())
            .is_some());
        assert!(g
            .hit("/etc/cron.d/job", AccessSet::of(&[Access::Create]))
            .is_some());
        assert!(g.hit("/home/ana/src/x/.git/config", write()).is_none());
    }

    #[test]
    fn agentwatch_paths_of_this_run() {
        let g = Guardrails::builtin().with_agentwatch_paths(["/opt/aw/profiles/**"]);
        let (hit, _) = g.hit("/opt/aw/profiles/demo.yaml", write()).unwrap();
        assert_eq!(hit.category, "agentwatch");
        assert!(g.hit("/opt/aw/profiles/demo.yaml", read()).is_none());
    }

    #[test]
    fn patterns_that_would_reach_a_guardrail() {
        let g = Guardrails::builtin();
        let p = |s: &str| Glob::parse(s).unwrap();
        assert!(g.overlapped_by(&p("/etc/*"), write()).is_some());
        assert!(g.overlapped_by(&p("/etc/*"), read()).is_some()); // /etc/shadow
        assert!(g.overlapped_by(&p("/etc/*.conf"), read()).is_none());
        assert!(g.overlapped_by(&p("/home/ana/src/*.log"), all()).is_none());
        assert!(g.overlapped_by(&p("/home/ana/.ssh/*"), read()).is_some());
    }
}

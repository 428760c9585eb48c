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
    "**/.oci/**",
    "**/.aliyun/**",
    "**/.ibmcloud/**",
    "**/.bluemix/**",
    "**/.config/doctl/**",
    "**/.config/hcloud/**",
    "**/.config/linode-cli",
    "**/.terraform.d/credentials.tfrc.json",
    "**/.s3cfg",
    "**/.boto",
    "**/.kube/**",
    "**/.docker/config.json",
    "**/.netrc",
    "**/.git-credentials",
    "**/.gnupg/**",
    "**/.password-store/**",
    "**/.npmrc",
    "**/.yarnrc.yml",
    "**/.pypirc",
    "**/.gem/credentials",
    "**/.cargo/credentials",
    "**/.cargo/credentials.toml",
    "**/.vault-token",
    "**/.pgpass",
    "**/.my.cnf",
    "**/.env",
    "**/.env.*",
    // Agent and tool credentials.
    "**/.claude/**",
    "**/.claude.json",
    "**/.codex/**",
    "**/.config/gh/**",
    "**/.config/hub",
    "**/.config/glab-cli/**",
    // History files hold what was typed, passwords included.
    "**/.bash_history",
    "**/.zsh_history",
    "**/.zhistory",
    "**/.sh_history",
    "**/.history",
    "**/.local/share/fish/fish_history",
    "**/.python_history",
    "**/.psql_history",
    "**/.mysql_history",
    "**/.sqlite_history",
    "**/.node_repl_history",
    "**/.rediscli_history",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d/**",
    "/etc/ssl/private/**",
    "/etc/ssh/ssh_host_*key",
    "/run/secrets/**",
    "/var/run/secrets/**",
    // Other processes' environment and memory (the agent's own are
    // allowed: see `own_proc`).
    "/proc/*/environ",
    "/proc/*/task/*/environ",
    "/proc/*/mem",
    "/proc/*/task/*/mem",
];

/// Persistence places: changing them (reading is normal, shells read rc files).
const PERSISTENCE: &[&str] = &[
    "**/.bashrc",
    "**/.bash_profile",
    "**/.bash_login",
    "**/.bash_logout",
    "**/.bash_aliases",
    "**/.profile",
    "**/.shrc",
    "**/.kshrc",
    "**/.mkshrc",
    "**/.cshrc",
    "**/.tcshrc",
    "**/.login",
    "**/.logout",
    "**/.zshrc",
    "**/.zprofile",
    "**/.zshenv",
    "**/.zlogin",
    "**/.zlogout",
    "**/.inputrc",
    "**/.xprofile",
    "**/.xinitrc",
    "**/.xsession",
    "**/.config/fish/**",
    "**/.config/autostart/**",
    "**/.config/systemd/**",
    "**/.config/environment.d/**",
    "**/.local/share/systemd/**",
    "**/.ssh/authorized_keys",
    "**/.ssh/authorized_keys2",
    "**/.ssh/rc",
    "**/.git/hooks/**",
    "**/.git/config",
    "**/.gitconfig",
    "**/.config/git/config",
    "**/.gitmodules",
    // Code Python runs at every start.
    "**/*.pth",
    "**/sitecustomize.py",
    "**/usercustomize.py",
    "/etc/profile",
    "/etc/profile.d/**",
    "/etc/bash.bashrc",
    "/etc/zsh/**",
    "/etc/environment",
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d/**",
    "/etc/crontab",
    "/etc/cron.*/**",
    "/var/spool/cron/**",
    "/etc/anacrontab",
    "/etc/systemd/**",
    "/lib/systemd/**",
    "/usr/lib/systemd/**",
    "/run/systemd/**",
    "/etc/init.d/**",
    "/etc/rc.local",
    "/etc/sudoers",
    "/etc/sudoers.d/**",
    "/etc/passwd",
    "/etc/group",
    "/etc/pam.d/**",
    "/etc/security/**",
    "/etc/ssh/**",
    "/etc/udev/rules.d/**",
    "/etc/modprobe.d/**",
    "/etc/modules-load.d/**",
];

/// agentwatch's own files: changing them is tampering.
const AGENTWATCH: &[&str] = &[
    "/etc/agentwatch/**",
    "/var/lib/agentwatch/**",
    "/var/log/agentwatch/**",
    "/run/agentwatch/**",
    "/sys/fs/bpf/**",
];

/// A guarded `/proc` file of the caller's own process: `/proc/self/...`,
/// `/proc/thread-self/...` or `/proc/PID/...` with the caller's PID name
/// the caller, so they are not another process's environment or memory.
fn own_proc(path: &str, pid: Option<u32>) -> bool {
    let Some(rest) = path.strip_prefix("/proc/") else {
        return false;
    };
    let Some((who, rest)) = rest.split_once('/') else {
        return false;
    };
    let own =
        matches!(who, "self" | "thread-self") || pid.is_some_and(|p| who.parse::<u32>() == Ok(p));
    let file = match rest.strip_prefix("task/").and_then(|t| t.split_once('/')) {
        Some((tid, f)) if !tid.is_empty() && tid.bytes().all(|b| b.is_ascii_digit()) => f,
        _ => rest,
    };
    own && matches!(file, "environ" | "mem")
}

/// One guardrail: a pattern and the accesses it protects.
#[derive(Debug, Clone)]
pub struct Guardrail {
    pub category: &'static str,
    pub pattern: Glob,
    pub guarded: AccessSet,
    /// Judged against the pid the file belongs to (`/proc/PID/environ`):
    /// a process's own is not guarded.
    pub pid_owned: bool,
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

/// The accesses that change a file or its name (all but read and exec).
pub fn mutating() -> AccessSet {
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
                        pid_owned: p.starts_with("/proc/"),
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

    /// Adds the guardrails a profile lists (`guardrails:`), expanded with
    /// `anchors` when given; they can only add to the built-in ones. An
    /// unknown category guards every access.
    pub fn with_profile(
        self,
        extra: &[super::UserGuardrail],
        anchors: Option<&super::anchors::Anchors>,
    ) -> Self {
        let mut list = self.list;
        for g in extra {
            let path = match anchors {
                Some(a) => match a.expand(&g.path) {
                    Some(p) => p,
                    None => continue,
                },
                None => g.path.clone(),
            };
            let (category, guarded) = match g.category.as_str() {
                "persistence" => ("persistence", mutating()),
                _ => ("secrets", all()),
            };
            if let Ok(pattern) = Glob::guardrail(&path) {
                list.push(Guardrail {
                    category,
                    pattern,
                    guarded,
                    pid_owned: false,
                });
            }
        }
        Self::from_list(list)
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
                    pid_owned: false,
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
        self.hit_by(path, access, None)
    }

    /// As `hit`, for an access by process `pid` (its own `/proc` files are
    /// not another process's).
    pub fn hit_by(
        &self,
        path: &str,
        access: AccessSet,
        pid: Option<u32>,
    ) -> Option<(&Guardrail, AccessSet)> {
        if own_proc(path, pid) {
            return None;
        }
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

    /// The guardrail a pattern's own paths fall under: its representative
    /// path (each wildcard read as a plain name) is guarded. A wider
    /// pattern that merely reaches a guarded path is carved by the
    /// guardrails at match time, so it contradicts nothing.
    pub fn guarding_pattern(&self, pattern: &str, access: AccessSet) -> Option<&Guardrail> {
        let sample: Vec<&str> = pattern
            .split('/')
            .map(|seg| if seg.contains('*') { "x" } else { seg })
            .collect();
        let g = Glob::parse(&sample.join("/")).ok()?;
        self.overlapped_by(&g, access)
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
    fn new_secrets_of_the_threat_model() {
        let g = Guardrails::builtin();
        for p in [
            "/home/ana/.claude/credentials.json",
            "/home/ana/.claude/.credentials.json",
            "/home/ana/.codex/auth.json",
            "/home/ana/.config/gh/hosts.yml",
            "/home/ana/.vault-token",
            "/home/ana/.pgpass",
            "/home/ana/.cargo/credentials.toml",
            "/home/ana/.oci/config",
            "/home/ana/.bash_history",
            "/etc/sudoers",
            "/proc/4711/environ",
            "/proc/4711/task/4712/mem",
        ] {
            assert_eq!(
                g.hit(p, read()).map(|(h, _)| h.category),
                Some("secrets"),
                "{p}"
            );
        }
        // A process's own environment and memory are its own.
        assert!(g.hit("/proc/self/environ", read()).is_none());
        assert!(g.hit("/proc/thread-self/environ", read()).is_none());
        assert!(g.hit_by("/proc/4711/environ", read(), Some(4711)).is_none());
        assert!(g.hit_by("/proc/4711/environ", read(), Some(4712)).is_some());
        assert!(g.hit("/proc/self/status", read()).is_none());
    }

    #[test]
    fn new_persistence_places() {
        let g = Guardrails::builtin();
        for p in [
            "/w/.git/config",
            "/home/ana/.gitconfig",
            "/usr/lib/python3/dist-packages/evil.pth",
            "/home/ana/.local/lib/python3.11/site-packages/sitecustomize.py",
            "/etc/ld.so.conf.d/x.conf",
            "/home/ana/.local/share/systemd/user/x.service",
            "/run/systemd/system/x.service",
            "/home/ana/.shrc",
            "/home/ana/.config/fish/conf.d/x.fish",
        ] {
            assert_eq!(
                g.hit(p, write()).map(|(h, _)| h.category),
                Some("persistence"),
                "{p}"
            );
        }
        assert!(g.hit("/w/.git/config", read()).is_none());
    }

    #[test]
    fn profile_guardrails_add_to_the_builtin_ones() {
        let extra = [crate::profile::UserGuardrail {
            path: "$WORKSPACE/customers/**".into(),
            category: "secrets".into(),
        }];
        let anchors = crate::profile::anchors::Anchors::new(Some("/w".into()), None, None);
        let g = Guardrails::builtin().with_profile(&extra, Some(&anchors));
        assert!(g.hit("/w/customers/a.csv", read()).is_some());
        assert!(g.hit("/home/ana/.ssh/id_rsa", read()).is_some());
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
        assert!(g.hit("/home/ana/src/x/.git/description", write()).is_none());
    }

    #[test]
    fn agentwatch_paths_of_this_run() {
        let g = Guardrails::builtin().with_agentwatch_paths(["/opt/aw/profiles/**"]);
        let (hit, _) = g.hit("/opt/aw/profiles/demo.yaml", write()).unwrap();
        assert_eq!(hit.category, "agentwatch");
        assert!(g.hit("/opt/aw/profiles/demo.yaml", read()).is_none());
    }

    #[test]
    fn patterns_whose_own_paths_are_guarded() {
        let g = Guardrails::builtin();
        assert!(g.guarding_pattern("/home/u/.ssh/*", read()).is_some());
        assert!(g.guarding_pattern("/home/u/.aws/**", read()).is_some());
        // Reaching a guarded path is not being one: carved at match time.
        assert!(g.guarding_pattern("/w/out/w-*", write()).is_none());
        assert!(g.guarding_pattern("/etc/*", read()).is_none());
        assert!(g.guarding_pattern("/w/.git/hooks/*", write()).is_some());
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

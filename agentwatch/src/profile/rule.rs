//! A finding's rule, typed. Its name (`guardrail/secrets`, `rate/file`)
//! is what alerts, the audit log and the feeds carry; its kernel code
//! (`policy::rule`) is what the kernel reports for the same violation, so
//! both sides choose the action with one function (`policy::wanted`).
use std::borrow::Cow;

use agentwatch_common::policy::{landlock_class, landlock_rule, rate_class, rate_rule, rule};
use serde::{Serialize, Serializer};

use super::Class;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    GuardSecrets,
    GuardPersistence,
    GuardAgentwatch,
    /// Setuid/setgid bits or file capabilities set.
    GuardPrivilege,
    /// A signal aimed at agentwatch, ptrace, another process's memory or open files, bpf().
    GuardTamper,
    /// Leaving the sandbox: mounts, namespaces, file handles, io_uring,
    /// the kernel (`agentwatch_common::escape`).
    GuardEscape,
    /// A secret on its way out.
    GuardExfiltrate,
    ExecUnknown,
    /// A listed path whose binary is not one the profile lists.
    ExecHash,
    /// Running what the agent wrote.
    ExecWritten,
    /// No file rule covers the path.
    FileUnknown,
    /// A rule covers the path, not this access.
    FileAccess,
    NetworkUnknown,
    DnsUnknown,
    /// A DNS answer that answers no query of the process (id and name),
    /// or comes from elsewhere than the resolver asked: its addresses are
    /// not allowed.
    DnsForged,
    /// Over the class's per-minute budget.
    Rate(Class),
    /// A paused agent with no request that explains it (a restart).
    PausedUnexplained,
    /// A path the kernel could not judge (cut short, unreadable at entry
    /// and exit, or read only after the call): refused in enforce mode.
    PathUnjudged,
    /// Refused before the effect by the launch sandbox's Landlock rules
    /// (outside the tree the profile grants).
    Landlock(Class),
    /// A model file no `models` entry approves.
    ModelUnapproved,
    /// An approved model path whose file has another sha256.
    ModelChanged,
    /// A pinned instruction file whose content changed.
    ConfigChanged,
    /// A kernel decision no finding explains, by the kernel's code.
    Kernel(u8),
}

impl Rule {
    /// The rule of a guardrail category (`secrets`, `persistence`,
    /// `agentwatch`); a category a configuration added holds as secrets do.
    pub fn guardrail(category: &str) -> Rule {
        match category {
            "persistence" => Rule::GuardPersistence,
            "agentwatch" => Rule::GuardAgentwatch,
            "privilege" => Rule::GuardPrivilege,
            _ => Rule::GuardSecrets,
        }
    }

    /// The rule the kernel's code names.
    pub fn from_kernel(code: u8) -> Rule {
        match code {
            rule::GUARD_SECRETS => Rule::GuardSecrets,
            rule::GUARD_PERSISTENCE => Rule::GuardPersistence,
            rule::GUARD_AGENTWATCH => Rule::GuardAgentwatch,
            rule::GUARD_PRIVILEGE => Rule::GuardPrivilege,
            rule::TAMPER => Rule::GuardTamper,
            rule::ESCAPE => Rule::GuardEscape,
            rule::EXFILTRATE => Rule::GuardExfiltrate,
            rule::EXEC_WRITTEN => Rule::ExecWritten,
            rule::EXEC_HASH => Rule::ExecHash,
            rule::UNJUDGED => Rule::PathUnjudged,
            c => {
                if let Some(class) = rate_class(c).and_then(Class::from_kernel_index) {
                    Rule::Rate(class)
                } else if let Some(class) = landlock_class(c).and_then(Class::from_kernel_index) {
                    Rule::Landlock(class)
                } else {
                    Rule::Kernel(c)
                }
            }
        }
    }

    /// The kernel's code for it: a finding's family (`file/...` is
    /// `FILE`) for the profile's rules.
    pub fn kernel_code(self) -> u8 {
        match self {
            Rule::GuardSecrets => rule::GUARD_SECRETS,
            Rule::GuardPersistence => rule::GUARD_PERSISTENCE,
            Rule::GuardAgentwatch => rule::GUARD_AGENTWATCH,
            Rule::GuardPrivilege => rule::GUARD_PRIVILEGE,
            Rule::GuardTamper => rule::TAMPER,
            Rule::GuardEscape => rule::ESCAPE,
            Rule::GuardExfiltrate => rule::EXFILTRATE,
            Rule::ExecWritten => rule::EXEC_WRITTEN,
            Rule::ExecUnknown | Rule::ExecHash => rule::EXEC,
            Rule::FileUnknown | Rule::FileAccess => rule::FILE,
            Rule::NetworkUnknown => rule::NETWORK,
            Rule::DnsUnknown => rule::DNS,
            Rule::DnsForged => rule::DNS_ANSWER,
            Rule::Rate(c) => rate_rule(c.kernel_index()),
            Rule::PausedUnexplained => rule::NONE,
            Rule::PathUnjudged => rule::UNJUDGED,
            Rule::ModelUnapproved | Rule::ModelChanged => rule::MODEL,
            Rule::ConfigChanged => rule::CONFIG,
            Rule::Landlock(c) => landlock_rule(c.kernel_index()),
            Rule::Kernel(c) => c,
        }
    }

    /// Holds in every mode, whatever the profile says.
    pub fn hard(self) -> bool {
        agentwatch_common::policy::hard_rule(self.kernel_code())
    }

    pub fn is_rate(self) -> bool {
        matches!(self, Rule::Rate(_))
    }

    /// Its name, as alerts carry it.
    pub fn name(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Rule::GuardSecrets => "guardrail/secrets",
            Rule::GuardPersistence => "guardrail/persistence",
            Rule::GuardAgentwatch => "guardrail/agentwatch",
            Rule::GuardPrivilege => "guardrail/privilege",
            Rule::GuardTamper => "guardrail/tamper",
            Rule::GuardEscape => "guardrail/escape",
            Rule::GuardExfiltrate => "guardrail/exfiltrate",
            Rule::ExecUnknown => "exec/unknown",
            Rule::ExecHash => "exec/hash",
            Rule::ExecWritten => "exec/written",
            Rule::FileUnknown => "file/unknown",
            Rule::FileAccess => "file/access",
            Rule::NetworkUnknown => "network/unknown",
            Rule::DnsUnknown => "dns/unknown",
            Rule::DnsForged => "dns/forged",
            Rule::Rate(c) => return Cow::Owned(format!("rate/{}", c.name())),
            Rule::PausedUnexplained => "paused/unexplained",
            Rule::PathUnjudged => "path/unjudged",
            Rule::ModelUnapproved => "model/unapproved",
            Rule::ModelChanged => "model/changed",
            Rule::ConfigChanged => "config/changed",
            Rule::Landlock(c) => return Cow::Owned(format!("landlock/{}", c.name())),
            Rule::Kernel(c) => kernel_name(c),
        })
    }

    /// The part of its name before the `/` (`file` for `file/unknown`).
    pub fn family(self) -> &'static str {
        match self {
            Rule::GuardSecrets
            | Rule::GuardPersistence
            | Rule::GuardAgentwatch
            | Rule::GuardPrivilege
            | Rule::GuardTamper
            | Rule::GuardEscape
            | Rule::GuardExfiltrate => "guardrail",
            Rule::ExecUnknown | Rule::ExecHash | Rule::ExecWritten => "exec",
            Rule::FileUnknown | Rule::FileAccess => "file",
            Rule::NetworkUnknown => "network",
            Rule::DnsUnknown | Rule::DnsForged => "dns",
            Rule::Rate(_) => "rate",
            Rule::PausedUnexplained => "paused",
            Rule::PathUnjudged => "path",
            Rule::ModelUnapproved | Rule::ModelChanged => "model",
            Rule::ConfigChanged => "config",
            Rule::Landlock(_) => "landlock",
            Rule::Kernel(c) => kernel_name(c),
        }
    }

    /// The rule a name says, if it is one (tests build findings by name).
    #[cfg(test)]
    pub fn from_name(name: &str) -> Option<Rule> {
        let all = [
            Rule::GuardSecrets,
            Rule::GuardPersistence,
            Rule::GuardAgentwatch,
            Rule::GuardPrivilege,
            Rule::GuardTamper,
            Rule::GuardEscape,
            Rule::GuardExfiltrate,
            Rule::ExecUnknown,
            Rule::ExecHash,
            Rule::ExecWritten,
            Rule::FileUnknown,
            Rule::FileAccess,
            Rule::NetworkUnknown,
            Rule::DnsUnknown,
            Rule::DnsForged,
            Rule::PausedUnexplained,
            Rule::PathUnjudged,
            Rule::ModelUnapproved,
            Rule::ModelChanged,
            Rule::ConfigChanged,
        ];
        if let Some(r) = all.into_iter().find(|r| r.name() == name) {
            return Some(r);
        }
        let class = |c: &str| Class::ALL.into_iter().find(|k| k.name() == c);
        if let Some(c) = name.strip_prefix("rate/") {
            return class(c).map(Rule::Rate);
        }
        if let Some(c) = name.strip_prefix("landlock/") {
            return class(c).map(Rule::Landlock);
        }
        (0..=u8::MAX)
            .map(Rule::Kernel)
            .find(|r| r.name() == name && name != "none")
    }
}

/// Names of the kernel's codes that no finding has.
fn kernel_name(code: u8) -> &'static str {
    match code {
        rule::FILE => "file",
        rule::EXEC => "exec",
        rule::NETWORK => "network",
        rule::DNS => "dns",
        rule::INTERP => "interp",
        rule::TERRITORY => "territory",
        rule::TAINT => "taint",
        rule::PATH => "path",
        rule::DNS_ANSWER => "dns_answer",
        rule::SOCKET => "socket",
        rule::PINNED => "pinned",
        _ => "none",
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.name())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl PartialEq<&str> for Rule {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_kernel_codes_round_trip() {
        for r in [
            Rule::GuardSecrets,
            Rule::GuardTamper,
            Rule::ExecWritten,
            Rule::FileAccess,
            Rule::Rate(Class::Delete),
            Rule::Landlock(Class::File),
            Rule::Kernel(rule::SOCKET),
        ] {
            assert_eq!(Rule::from_name(&r.name()), Some(r), "{r}");
        }
        for code in 0..=u8::MAX {
            let r = Rule::from_kernel(code);
            // Only exec/hash is a question in the kernel and an exec
            // violation in a finding.
            if code != rule::EXEC_HASH {
                assert_eq!(r.kernel_code(), code, "{r}");
            }
        }
        assert_eq!(format!("{:<12}|", Rule::FileUnknown), "file/unknown|");
        assert_eq!(Rule::Rate(Class::File).family(), "rate");
        assert_eq!(Rule::from_name("nonsense"), None);
    }
}

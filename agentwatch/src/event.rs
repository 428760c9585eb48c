//! The event model every stage after decode works on, and its JSON form.
//! Field names here are a contract with scripts reading `--json`.
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A static name (syscall, stage, reason) that reads back owned from JSON.
pub type Name = Cow<'static, str>;

/// One thing a watched process did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Nanoseconds since boot (CLOCK_MONOTONIC), as the kernel stamped it.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    /// Name of the agent the process belongs to.
    pub agent: String,
    pub cgroup_id: u64,
    #[serde(flatten)]
    pub context: Context,
    /// What the kernel decided, for an agent run under a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelDecision>,
    #[serde(flatten)]
    pub detail: Detail,
}

/// The kernel's verdict on an event (`agentwatch_common::policy` codes),
/// written by name in JSON: `{"verdict":"violation","rule":"file","action":"pause"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDecision {
    pub verdict: u8,
    pub rule: u8,
    pub action: u8,
    /// The call was held (SIGSTOP) at its entry for userspace to judge,
    /// and its exit brought the verdict: unless the verdict ends or
    /// pauses the caller, userspace must release it.
    pub held: bool,
    /// The entry could not read the call's paths (a page not mapped at
    /// the time); the event's paths are what the exit read, after the
    /// call: possibly not what the kernel used (`enforce::agent::reached`).
    pub paths_at_exit: bool,
    /// The BPF LSM tier found what the call reached, by the kernel's own
    /// dentries, to be a guardrail the names its entry read did not lead
    /// to (a symlinked directory on the way, or names another thread
    /// rewrote under the call). The event's paths are the real ones (a
    /// `RecordKind::Reached` record).
    pub real_paths: bool,
}

impl KernelDecision {
    pub fn verdict_name(&self) -> &'static str {
        use agentwatch_common::policy::verdict::*;
        match self.verdict {
            ALLOW => "allow",
            VIOLATION => "violation",
            UNDECIDED => "undecided",
            _ => "none",
        }
    }

    /// The rule, in the names findings use (`guardrail/secrets`, ...).
    pub fn rule_name(&self) -> String {
        crate::profile::rule::Rule::from_kernel(self.rule)
            .name()
            .into_owned()
    }

    pub fn action_name(&self) -> &'static str {
        use agentwatch_common::policy::action::*;
        match self.action {
            DENY => "deny",
            PAUSE => "pause",
            KILL => "kill",
            DENY_KILL => "deny_kill",
            HOLD => "hold",
            DENY_LANDLOCK => "deny_landlock",
            _ => "alert",
        }
    }
}

impl Serialize for KernelDecision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("verdict", self.verdict_name())?;
        m.serialize_entry("rule", &self.rule_name())?;
        m.serialize_entry("action", self.action_name())?;
        if self.held {
            m.serialize_entry("held", &true)?;
        }
        if self.paths_at_exit {
            m.serialize_entry("paths_at_exit", &true)?;
        }
        if self.real_paths {
            m.serialize_entry("real_paths", &true)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for KernelDecision {
    /// Recorded verdicts are read back as "none": a replay re-decides.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Self {
            verdict: 0,
            rule: 0,
            action: 0,
            held: false,
            paths_at_exit: false,
            real_paths: false,
        })
    }
}

/// What enrichment adds: who and where, beyond the kernel's numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Context {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Executable of the process, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Parent chain, nearest first, up to the agent's root process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<Ancestor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Namespace, pod, container and service account, on a Kubernetes
    /// node (from the pod uid and container id, and the API server).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<PodMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

/// Access modes of an open, as a list in JSON (`["read","write"]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub truncate: bool,
}

impl Access {
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.read, "read"),
            (self.write, "write"),
            (self.create, "create"),
            (self.truncate, "truncate"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

impl Serialize for Access {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Access {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut a = Access::default();
        for n in names {
            match n.as_str() {
                "read" => a.read = true,
                "write" => a.write = true,
                "create" => a.create = true,
                "truncate" => a.truncate = true,
                other => {
                    return Err(serde::de::Error::unknown_variant(
                        other,
                        &["read", "write", "create", "truncate"],
                    ))
                }
            }
        }
        Ok(a)
    }
}

/// Socket address families as they appear in events.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
    Unix,
    Other,
}

/// A socket endpoint: address and port, or a unix socket path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub family: Family,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Per-kind fields; `kind` names the variant in JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Detail {
    Exec {
        /// Absolute path the process asked to execute.
        path: String,
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        argv_truncated: bool,
        /// The binary the kernel loaded (the interpreter, for a script);
        /// absent when the exec failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        binary: Option<String>,
        /// 0, or -errno for an exec that failed (argv is then empty).
        result: Option<i64>,
        /// The working directory (a script argument is relative to it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        /// What standard input was: `pipe` (a pipe or FIFO), `socket`,
        /// `device` (a terminal, /dev/null), `file`, `directory` or
        /// `other`; absent when it was closed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdin: Option<String>,
        /// The binary is a file a process of this agent wrote, or one
        /// with no name left (a memfd, a deleted file).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        written: bool,
        /// The process joined the agent here, by a selector: the agent
        /// started (or started again).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        selected: bool,
    },
    Fork {
        child_pid: u32,
    },
    Exit {
        /// Exit status (0-255) when the process exited normally.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// Terminating signal number, when killed by one.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    Open {
        path: String,
        access: Access,
        flags: u64,
        syscall: Name,
        result: Option<i64>,
    },
    Unlink {
        path: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dir: bool,
        syscall: Name,
        result: Option<i64>,
    },
    Rename {
        from: String,
        to: String,
        syscall: Name,
        result: Option<i64>,
    },
    /// A hard link: `to` becomes a second name of `from`.
    Link {
        from: String,
        to: String,
        syscall: Name,
        result: Option<i64>,
    },
    /// A new name made without opening it: a directory (`mkdir`), a
    /// symbolic link (`symlink`), a device, FIFO or socket (`mknod`).
    Make {
        path: String,
        syscall: Name,
        result: Option<i64>,
    },
    Chmod {
        path: String,
        mode: u32,
        syscall: Name,
        result: Option<i64>,
    },
    Chown {
        path: String,
        owner: i64,
        group: i64,
        syscall: Name,
        result: Option<i64>,
    },
    Connect {
        #[serde(flatten)]
        endpoint: Endpoint,
        result: Option<i64>,
    },
    Bind {
        #[serde(flatten)]
        endpoint: Endpoint,
        result: Option<i64>,
    },
    Listen {
        #[serde(flatten)]
        endpoint: Endpoint,
        backlog: i64,
        result: Option<i64>,
    },
    /// A datagram sent to an address the sender named (unconnected UDP):
    /// judged as a connect there.
    Datagram {
        #[serde(flatten)]
        endpoint: Endpoint,
        syscall: Name,
    },
    Accept {
        #[serde(flatten)]
        endpoint: Endpoint,
        result: Option<i64>,
    },
    Dns {
        name: String,
        qtype: String,
        /// The message id its answer must carry.
        #[serde(default)]
        id: u16,
        /// The resolver it went to (`addr:port`), when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
    /// A DNS answer received: the name asked and the addresses given
    /// (A and AAAA records, following CNAMEs).
    #[serde(rename = "dns_answer")]
    DnsAnswer {
        name: String,
        addrs: Vec<String>,
        /// The id of the query it answers.
        #[serde(default)]
        id: u16,
        /// The shortest time to live of its address records, in seconds.
        #[serde(default)]
        ttl: u32,
        /// Who sent it (`addr:port`), when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
    /// A signal, ptrace or bpf() call aimed at agentwatch by an agent.
    Tamper {
        syscall: Name,
        /// The pid signalled or traced (bpf: the command).
        target: i64,
        /// The signal, for kill/tkill/tgkill.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i64>,
        /// The file, for setxattr (file capabilities).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// The ia32 number of an ia32 call (`int 0x80`), which names
        /// another call in the x86-64 table; None for an x86-64 call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ia32_call: Option<i64>,
    },
    /// Plain text on a TLS connection of an agent with intent capture
    /// (`crate::intent`): the enforcer's intent log parses it; it is never
    /// written out (`data` is not serialised).
    Tls {
        /// The `SSL *`: the connection, within its process.
        ssl: u64,
        /// Written by the agent (a request), else read (a response).
        write: bool,
        /// The call's length.
        len: u64,
        /// Where `data` starts in the call's bytes.
        offset: u64,
        #[serde(skip)]
        data: Vec<u8>,
    },
    /// Records lost at a pipeline stage since the last loss event.
    Loss {
        stage: Name,
        reason: Name,
        count: u64,
    },
}

impl Detail {
    pub fn kind(&self) -> &'static str {
        match self {
            Detail::Exec { .. } => "exec",
            Detail::Fork { .. } => "fork",
            Detail::Exit { .. } => "exit",
            Detail::Open { .. } => "open",
            Detail::Unlink { .. } => "unlink",
            Detail::Rename { .. } => "rename",
            Detail::Link { .. } => "link",
            Detail::Make { .. } => "make",
            Detail::Chmod { .. } => "chmod",
            Detail::Chown { .. } => "chown",
            Detail::Connect { .. } => "connect",
            Detail::Bind { .. } => "bind",
            Detail::Listen { .. } => "listen",
            Detail::Datagram { .. } => "datagram",
            Detail::Accept { .. } => "accept",
            Detail::Dns { .. } => "dns",
            Detail::DnsAnswer { .. } => "dns_answer",
            Detail::Tamper { .. } => "tamper",
            Detail::Loss { .. } => "loss",
            Detail::Tls { .. } => "tls",
        }
    }

    /// The syscall's result, for the kinds that have one, when known.
    pub fn result(&self) -> Option<i64> {
        self.clone().result_mut().and_then(|r| *r)
    }

    /// The syscall result slot, for the kinds that have one.
    pub fn result_mut(&mut self) -> Option<&mut Option<i64>> {
        match self {
            Detail::Open { result, .. }
            | Detail::Exec { result, .. }
            | Detail::Unlink { result, .. }
            | Detail::Rename { result, .. }
            | Detail::Link { result, .. }
            | Detail::Make { result, .. }
            | Detail::Chmod { result, .. }
            | Detail::Chown { result, .. }
            | Detail::Connect { result, .. }
            | Detail::Bind { result, .. }
            | Detail::Listen { result, .. }
            | Detail::Accept { result, .. } => Some(result),
            _ => None,
        }
    }

    /// The file paths it names, to rewrite.
    pub fn paths_mut(&mut self) -> Vec<&mut String> {
        match self {
            Detail::Open { path, .. }
            | Detail::Exec { path, .. }
            | Detail::Unlink { path, .. }
            | Detail::Make { path, .. }
            | Detail::Chmod { path, .. }
            | Detail::Chown { path, .. } => vec![path],
            Detail::Rename { from, to, .. } | Detail::Link { from, to, .. } => vec![from, to],
            _ => Vec::new(),
        }
    }
}

/// What events carry about the pod of their process.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodMeta {
    pub namespace: String,
    pub pod: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub service_account: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_read_back_as_the_same_event() {
        let ev = Event {
            ts_ns: 1,
            pid: 2,
            tid: 2,
            ppid: 1,
            uid: 0,
            gid: 0,
            comm: "sh".into(),
            agent: "a".into(),
            cgroup_id: 9,
            context: Context::default(),
            kernel: None,
            detail: Detail::Unlink {
                path: "/tmp/x".into(),
                dir: false,
                syscall: "unlinkat".into(),
                result: Some(0),
            },
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert!(!text.contains("ancestry") && !text.contains("\"dir\""));
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), ev);
        let answer = Detail::DnsAnswer {
            name: "x.test".into(),
            addrs: vec!["10.0.0.1".into()],
            id: 7,
            ttl: 60,
            server: Some("127.0.0.53:53".into()),
        };
        let ev2 = Event {
            detail: answer,
            ..ev
        };
        let text = serde_json::to_string(&ev2).unwrap();
        assert!(text.contains("\"kind\":\"dns_answer\""), "{text}");
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), ev2);
    }
}

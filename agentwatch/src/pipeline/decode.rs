//! Decode: kernel records -> [`Event`]s. Pairs each syscall entry with its
//! exit (same thread) to fill in the result. An entry whose exit never comes
//! (the thread died inside the call) is flushed when its process exits, with
//! no result, rather than dropped.
use std::collections::HashMap;

use agentwatch_common::{
    open,
    policy::{access, exec_flags},
    slot, syscalls as nr, EventHeader, RawEvent, RecordKind, DATA_LEN, RAW_EVENT_FIXED_LEN,
    SLOT_ARGV, SLOT_LEN, SLOT_REVERSED_COMPONENTS, SLOT_TRUNCATED, SLOT_USED,
};
use thiserror::Error;

use crate::{
    event::{Access, Context, Detail, Endpoint, Event, Family, KernelDecision},
    net, paths,
};

#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the {RAW_EVENT_FIXED_LEN}-byte header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
}

/// A kernel record copied out of the ring buffer.
pub struct Record {
    raw: Box<RawEvent>,
    data_len: usize,
}

impl Record {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < RAW_EVENT_FIXED_LEN {
            return Err(DecodeError::Short(bytes.len()));
        }
        // SAFETY: RawEvent is plain old data (repr(C), integers and byte
        // arrays), so any bit pattern is valid; we copy at most its size.
        let mut raw: Box<RawEvent> = Box::new(unsafe { std::mem::zeroed() });
        let n = bytes.len().min(std::mem::size_of::<RawEvent>());
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut *raw as *mut RawEvent).cast::<u8>(),
                n,
            );
        }
        Ok(Self {
            raw,
            data_len: n - RAW_EVENT_FIXED_LEN,
        })
    }

    pub fn header(&self) -> &EventHeader {
        &self.raw.hdr
    }

    /// Bytes of string slot `i`, and whether it was filled / truncated.
    fn slot(&self, i: usize) -> Option<(&[u8], u16)> {
        let s = self.raw.slots[i];
        if s.flags & SLOT_USED == 0 {
            return None;
        }
        let start = i * SLOT_LEN;
        let end = (start + s.len as usize).min(self.data_len).min(DATA_LEN);
        Some((self.raw.data.get(start..end.max(start))?, s.flags))
    }

    fn text(&self, i: usize) -> Option<String> {
        let (b, flags) = self.slot(i)?;
        if flags & SLOT_REVERSED_COMPONENTS != 0 {
            return Some(paths::from_reversed_components(b));
        }
        Some(String::from_utf8_lossy(b).into_owned())
    }

    /// Path argument `path_slot`, made absolute against `base_slot`.
    fn path(&self, path_slot: usize, base_slot: usize) -> String {
        let base = self.text(base_slot);
        match self.text(path_slot) {
            Some(p) => paths::resolve(base.as_deref(), &p),
            None => base.unwrap_or_default(),
        }
    }

    fn endpoint(&self) -> Endpoint {
        let a = &self.raw.addr;
        let len = (a.len as usize).min(a.bytes.len());
        net::parse_sockaddr(&a.bytes[..len]).unwrap_or(Endpoint {
            family: Family::Other,
            addr: None,
            port: None,
            path: None,
        })
    }
}

/// Maps agent ids (from the kernel) to names.
pub trait AgentNames {
    fn name(&self, id: u32) -> String;
}

/// Agent names that change while the pipeline runs (the daemon's reload).
impl AgentNames for std::sync::Arc<std::sync::RwLock<std::collections::BTreeMap<u32, String>>> {
    fn name(&self, id: u32) -> String {
        self.read()
            .ok()
            .and_then(|m| m.get(&id).cloned())
            .unwrap_or_else(|| format!("agent-{id}"))
    }
}

impl AgentNames for Vec<String> {
    fn name(&self, id: u32) -> String {
        self.get(id as usize)
            .cloned()
            .unwrap_or_else(|| format!("agent-{id}"))
    }
}

/// A syscall entry waiting for its exit, with the directories its relative
/// paths hang off, in case the exit brings a path the entry could not read.
struct Pending {
    ev: Event,
    base1: Option<String>,
    base2: Option<String>,
}

/// Stateful decoder: holds syscall entries until their exits arrive.
#[derive(Default)]
pub struct Decoder {
    pending: HashMap<u32, Pending>,
}

/// An open's access as the event model says it (the kernel reads the
/// same flags with the same functions).
pub fn access_from_flags(flags: u64) -> Access {
    let bits = open::open_access(flags);
    Access {
        read: bits & access::READ != 0,
        write: open::writes(flags),
        create: bits & access::CREATE != 0,
        truncate: flags & open::O_TRUNC != 0,
    }
}

/// The kind of file standard input was, from its S_IFMT bits.
fn stdin_name(mode: u64) -> Option<String> {
    Some(
        match mode & 0o170000 {
            0 => return None,
            0o010000 => "pipe",
            0o140000 => "socket",
            0o020000 => "device",
            0o100000 => "file",
            0o040000 => "directory",
            _ => "other",
        }
        .into(),
    )
}

/// The name of a file call (the record's syscall number).
fn syscall_name(sysno: u32) -> &'static str {
    nr::name(sysno).unwrap_or("other")
}

const AT_REMOVEDIR: u64 = 0x200;

impl Decoder {
    /// Decodes one record. Returns the events it completes (zero, one, or
    /// several when an exit flushes entries that never got their result).
    pub fn decode(
        &mut self,
        rec: &Record,
        agents: &dyn AgentNames,
    ) -> Result<Vec<Event>, DecodeError> {
        let h = rec.header();
        let kind = RecordKind::from_u8(h.kind).ok_or(DecodeError::UnknownKind(h.kind))?;
        let a = rec.raw.args;
        let detail = match kind {
            RecordKind::SysExit => return Ok(self.complete(rec)),
            RecordKind::SysEnter => match self.enter_detail(rec, h.syscall_nr) {
                Some(d) => {
                    let p = Pending {
                        ev: base_event(h, agents, d),
                        base1: rec.text(slot::BASE1),
                        base2: rec.text(slot::BASE2),
                    };
                    // A second entry on the same thread means the first
                    // never returned (e.g. interrupted): emit it as is.
                    return Ok(self
                        .pending
                        .insert(h.tid, p)
                        .into_iter()
                        .map(|p| p.ev)
                        .collect());
                }
                None => return Ok(Vec::new()),
            },
            RecordKind::Exec => {
                let filename = rec.path(slot::PATH1, slot::BASE1);
                let (argv, argv_truncated) = match rec.slot(slot::PATH2) {
                    Some((b, flags)) if flags & SLOT_ARGV != 0 => {
                        let mut v: Vec<String> = b
                            .split(|c| *c == 0)
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect();
                        if v.last().is_some_and(|s| s.is_empty()) {
                            v.pop();
                        }
                        (v, flags & SLOT_TRUNCATED != 0)
                    }
                    _ => (Vec::new(), false),
                };
                let binary = rec.text(slot::BASE2).unwrap_or_else(|| filename.clone());
                // A successful execve's entry is dropped at its exit (see
                // `complete`), except when a thread exec'd and took over
                // the pid: its exit comes under the new tid, so the entry
                // under the old one is dropped here.
                let old_tid = a[0] as u32;
                if old_tid != h.tid
                    && self
                        .pending
                        .get(&old_tid)
                        .is_some_and(|p| matches!(p.ev.detail, Detail::Exec { .. }))
                {
                    self.pending.remove(&old_tid);
                }
                let f = a[4];
                Detail::Exec {
                    path: filename,
                    argv,
                    argv_truncated,
                    binary: Some(binary),
                    result: Some(0),
                    cwd: rec.text(slot::BASE1),
                    stdin: stdin_name(a[5]),
                    written: f & (exec_flags::WRITTEN | exec_flags::NO_LINK) != 0,
                }
            }
            RecordKind::Fork => Detail::Fork {
                child_pid: a[0] as u32,
            },
            RecordKind::Exit => {
                let status = a[0] as i32;
                let (code, signal) = if status & 0x7f == 0 {
                    (Some((status >> 8) & 0xff), None)
                } else {
                    (None, Some(status & 0x7f))
                };
                let mut out: Vec<Event> = self.flush_process(h.pid);
                out.push(base_event(h, agents, Detail::Exit { code, signal }));
                return Ok(out);
            }
            // An open judged at its exit by the file it reached: one record,
            // its real path in BASE1, the fd as its result.
            RecordKind::Opened => {
                let flags = a[1];
                Detail::Open {
                    path: rec.path(slot::PATH1, slot::BASE1),
                    access: access_from_flags(flags),
                    flags,
                    syscall: syscall_name(h.syscall_nr).into(),
                    result: Some(a[0] as i64),
                }
            }
            RecordKind::Tamper => {
                let (syscall, target, signal) = match h.syscall_nr {
                    nr::KILL => ("kill", a[0] as i32 as i64, Some(a[1] as i64)),
                    nr::TKILL => ("tkill", a[0] as i32 as i64, Some(a[1] as i64)),
                    nr::TGKILL => ("tgkill", a[0] as i32 as i64, Some(a[2] as i64)),
                    nr::PTRACE => ("ptrace", a[1] as i32 as i64, None),
                    nr::SETXATTR => ("setxattr", 0, None),
                    nr::LSETXATTR => ("lsetxattr", 0, None),
                    nr::FSETXATTR => ("fsetxattr", a[0] as i64, None),
                    _ => ("bpf", a[0] as i64, None),
                };
                let path = (rec.slot(slot::PATH1).is_some() || rec.slot(slot::BASE1).is_some())
                    .then(|| rec.path(slot::PATH1, slot::BASE1));
                Detail::Tamper {
                    syscall: syscall.into(),
                    target,
                    signal,
                    path,
                }
            }
            RecordKind::Dns => {
                let Some((b, _)) = rec.slot(slot::PATH1) else {
                    return Ok(Vec::new());
                };
                if let Some(q) = net::parse_dns_query(b) {
                    Detail::Dns {
                        name: q.name,
                        qtype: q.qtype,
                    }
                } else if let Some(a) = net::parse_dns_answer(b) {
                    Detail::DnsAnswer {
                        name: a.name,
                        addrs: a.addrs.iter().map(ToString::to_string).collect(),
                    }
                } else if h.action == agentwatch_common::policy::action::HOLD {
                    // Held until userspace has read it: whatever arrived,
                    // the process must be let go.
                    Detail::DnsAnswer {
                        name: String::new(),
                        addrs: Vec::new(),
                    }
                } else {
                    return Ok(Vec::new());
                }
            }
        };
        Ok(vec![base_event(h, agents, detail)])
    }

    fn enter_detail(&self, rec: &Record, sysno: u32) -> Option<Detail> {
        let a = rec.raw.args;
        let syscall: crate::event::Name = syscall_name(sysno).into();
        let path1 = || rec.path(slot::PATH1, slot::BASE1);
        Some(match sysno {
            nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT => {
                let flags = match sysno {
                    nr::OPEN => a[1],
                    nr::OPENAT => a[2],
                    nr::OPENAT2 => a[5],
                    _ => open::CREAT_FLAGS,
                };
                Detail::Open {
                    path: path1(),
                    access: access_from_flags(flags),
                    flags,
                    syscall,
                    result: None,
                }
            }
            nr::UNLINK | nr::RMDIR | nr::UNLINKAT => {
                let dir = sysno == nr::RMDIR || (sysno == nr::UNLINKAT && a[2] & AT_REMOVEDIR != 0);
                Detail::Unlink {
                    path: path1(),
                    dir,
                    syscall,
                    result: None,
                }
            }
            nr::RENAME | nr::RENAMEAT | nr::RENAMEAT2 => Detail::Rename {
                from: path1(),
                to: rec.path(slot::PATH2, slot::BASE2),
                syscall,
                result: None,
            },
            nr::LINK | nr::LINKAT => Detail::Link {
                from: path1(),
                to: rec.path(slot::PATH2, slot::BASE2),
                syscall,
                result: None,
            },
            nr::CHMOD | nr::FCHMOD | nr::FCHMODAT | nr::FCHMODAT2 => {
                let mode = if sysno == nr::CHMOD || sysno == nr::FCHMOD {
                    a[1]
                } else {
                    a[2]
                };
                Detail::Chmod {
                    path: path1(),
                    mode: mode as u32,
                    syscall,
                    result: None,
                }
            }
            nr::CHOWN | nr::FCHOWN | nr::LCHOWN | nr::FCHOWNAT => {
                let (o, g) = if sysno == nr::FCHOWNAT {
                    (a[2], a[3])
                } else {
                    (a[1], a[2])
                };
                Detail::Chown {
                    path: path1(),
                    owner: o as u32 as i32 as i64,
                    group: g as u32 as i32 as i64,
                    syscall,
                    result: None,
                }
            }
            // Only failures surface from these: a success is dropped at its
            // exit (sched_process_exec reports it with argv).
            nr::EXECVE | nr::EXECVEAT => Detail::Exec {
                path: path1(),
                argv: Vec::new(),
                argv_truncated: false,
                binary: None,
                result: None,
                cwd: None,
                stdin: None,
                written: false,
            },
            nr::CONNECT => Detail::Connect {
                endpoint: rec.endpoint(),
                result: None,
            },
            nr::BIND => Detail::Bind {
                endpoint: rec.endpoint(),
                result: None,
            },
            nr::LISTEN => Detail::Listen {
                endpoint: rec.endpoint(),
                backlog: a[1] as i32 as i64,
                result: None,
            },
            // Accept's address comes with its exit.
            nr::ACCEPT | nr::ACCEPT4 => Detail::Accept {
                endpoint: Endpoint {
                    family: Family::Other,
                    addr: None,
                    port: None,
                    path: None,
                },
                result: None,
            },
            _ => return None,
        })
    }

    /// Fills the result of the entry pending on `rec`'s thread; accept also
    /// gets the peer address the kernel read from the new socket.
    fn complete(&mut self, rec: &Record) -> Vec<Event> {
        let ret = rec.raw.args[0] as i64;
        let Some(Pending {
            mut ev,
            base1,
            base2,
        }) = self.pending.remove(&rec.header().tid)
        else {
            return Vec::new();
        };
        let late1 = rec
            .text(slot::PATH1)
            .map(|p| paths::resolve(base1.as_deref(), &p));
        let late2 = rec
            .text(slot::PATH2)
            .map(|p| paths::resolve(base2.as_deref(), &p));
        match &mut ev.detail {
            Detail::Accept { endpoint, .. } if ret >= 0 => *endpoint = rec.endpoint(),
            Detail::Rename { from, to, .. } | Detail::Link { from, to, .. } => {
                if let Some(p) = late1 {
                    *from = p;
                }
                if let Some(p) = late2 {
                    *to = p;
                }
            }
            Detail::Open { path, .. }
            | Detail::Unlink { path, .. }
            | Detail::Chmod { path, .. }
            | Detail::Chown { path, .. } => {
                if let Some(p) = late1 {
                    *path = p;
                }
            }
            _ => {}
        }
        // A successful exec is reported by its exec record, with argv.
        if matches!(ev.detail, Detail::Exec { .. }) && ret == 0 {
            return Vec::new();
        }
        // The LSM tier decides execs after their entry was sent.
        let h = rec.header();
        if ev.kernel.is_none() && h.verdict != 0 {
            ev.kernel = Some(KernelDecision {
                verdict: h.verdict,
                rule: h.rule,
                action: h.action,
            });
        }
        // `create` means the open made a file: not when it failed, nor when
        // it opened a device or a pipe (the exit says what it opened). A
        // create the kernel refused keeps it: the attempt is what is judged.
        let refused = ev.kernel.is_some_and(|k| {
            k.verdict == agentwatch_common::policy::verdict::VIOLATION
                && k.action == agentwatch_common::policy::action::DENY
        });
        if let Detail::Open { access, .. } = &mut ev.detail {
            let kind = rec.raw.args[1] & 0o170000;
            if (ret < 0 && !refused) || (kind != 0 && kind != 0o100000) {
                access.create = false;
            }
        }
        if let Some(r) = ev.detail.result_mut() {
            *r = Some(ret);
        }
        vec![ev]
    }

    /// Entries of threads of `pid` still waiting for a result.
    fn flush_process(&mut self, pid: u32) -> Vec<Event> {
        let tids: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.ev.pid == pid)
            .map(|(t, _)| *t)
            .collect();
        let mut out: Vec<Event> = tids
            .into_iter()
            .filter_map(|t| self.pending.remove(&t).map(|p| p.ev))
            .collect();
        out.sort_by_key(|e| e.ts_ns);
        out
    }

    /// Everything still pending, oldest first (at shutdown).
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out: Vec<Event> = self.pending.drain().map(|(_, p)| p.ev).collect();
        out.sort_by_key(|e| e.ts_ns);
        out
    }
}

fn base_event(h: &EventHeader, agents: &dyn AgentNames, detail: Detail) -> Event {
    let end = h.comm.iter().position(|c| *c == 0).unwrap_or(h.comm.len());
    Event {
        ts_ns: h.ts_ns,
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        comm: String::from_utf8_lossy(&h.comm[..end]).into_owned(),
        agent: agents.name(h.agent_id),
        cgroup_id: h.cgroup_id,
        context: Context::default(),
        kernel: (h.verdict != 0).then_some(KernelDecision {
            verdict: h.verdict,
            rule: h.rule,
            action: h.action,
        }),
        detail,
    }
}

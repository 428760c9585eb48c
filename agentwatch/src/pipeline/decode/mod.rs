//! Decode: kernel records -> [`Event`]s. Pairs each syscall entry with its
//! exit (same thread) to fill in the result. An entry whose exit never comes
//! (the thread died inside the call) is flushed when its process exits, with
//! no result, rather than dropped.
//!
//! Each family of records has its decoder: `file`, `net` (sockets and
//! DNS), `process` (exec, fork, exit, tamper); the syscall entries are
//! dispatched by their row in `agentwatch_common::calls`.
mod file;
mod net;
mod process;
mod record;

use std::collections::HashMap;

use agentwatch_common::{
    calls::{self, Family as CallFamily},
    slot, syscalls as nr, EventHeader, RecordKind, RAW_EVENT_FIXED_LEN,
};
use thiserror::Error;

use crate::{
    event::{Context, Detail, Event, KernelDecision},
    paths,
};
pub use file::access_from_flags;
pub use record::Record;

#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the {RAW_EVENT_FIXED_LEN}-byte header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
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

/// The name of a file call (the record's syscall number).
fn syscall_name(sysno: u32) -> &'static str {
    nr::name(sysno).unwrap_or("other")
}

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
            // A `Reached` record is the call's entry with its real paths.
            RecordKind::SysEnter | RecordKind::Reached => {
                match self.enter_detail(rec, h.syscall_nr) {
                    Some(d) => {
                        let mut ev = base_event(h, agents, d);
                        if kind == RecordKind::Reached {
                            if let Some(k) = ev.kernel.as_mut() {
                                k.real_paths = true;
                            }
                        }
                        let p = Pending {
                            ev,
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
                }
            }
            RecordKind::Exec => {
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
                process::exec(rec)
            }
            RecordKind::Fork => Detail::Fork {
                child_pid: a[0] as u32,
            },
            RecordKind::Exit => {
                let mut out: Vec<Event> = self.flush_process(h.pid);
                out.push(base_event(h, agents, process::exit(rec)));
                return Ok(out);
            }
            // An open judged at its exit by the file it reached.
            RecordKind::Opened => {
                let (detail, late) = file::opened(rec);
                let mut ev = base_event(h, agents, detail);
                if let Some(k) = ev.kernel.as_mut() {
                    k.paths_at_exit = late;
                }
                return Ok(vec![ev]);
            }
            RecordKind::Tamper => process::tamper(rec),
            RecordKind::Datagram => Detail::Datagram {
                endpoint: rec.endpoint(),
                syscall: syscall_name(h.syscall_nr).into(),
            },
            RecordKind::Tls => Detail::Tls {
                ssl: a[0],
                write: a[1] == agentwatch_common::tls::WRITE,
                len: a[2],
                offset: a[3],
                data: rec.slot_bytes(),
            },
            RecordKind::Dns => match net::dns(rec) {
                Some(d) => d,
                None => return Ok(Vec::new()),
            },
        };
        Ok(vec![base_event(h, agents, detail)])
    }

    /// An entry's detail, by its call's family; None for a call that is
    /// not watched.
    fn enter_detail(&self, rec: &Record, sysno: u32) -> Option<Detail> {
        let call = calls::find(sysno)?;
        match call.family {
            CallFamily::File => file::enter(rec, &call),
            CallFamily::Net => net::enter(rec, &call),
            CallFamily::Exec => Some(process::exec_attempt(rec)),
        }
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
        // The exit carries paths only when the entry could not read them.
        let paths_at_exit = late1.is_some() || late2.is_some();
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
            | Detail::Make { path, .. }
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
        // The exit's verdict stands when the entry had none (the LSM tier
        // decides execs after their entry was sent) and when the entry
        // left the call to userspace but its exit found a violation (a
        // path unreadable at both ends, a Landlock refusal).
        let h = rec.header();
        let violation = agentwatch_common::policy::verdict::VIOLATION;
        let entry_violates = ev.kernel.is_some_and(|k| k.verdict == violation);
        if h.verdict != 0 && (ev.kernel.is_none() || h.verdict == violation && !entry_violates) {
            let held = ev
                .kernel
                .is_some_and(|k| k.action == agentwatch_common::policy::action::HOLD);
            ev.kernel = Some(KernelDecision {
                verdict: h.verdict,
                rule: h.rule,
                action: h.action,
                held,
                paths_at_exit: false,
                real_paths: false,
            });
        }
        if let Some(k) = ev.kernel.as_mut() {
            k.paths_at_exit |= paths_at_exit;
        }
        // `create` means the open made a file: not when it failed, nor when
        // it opened a device or a pipe (the exit says what it opened). A
        // create the kernel refused keeps it: the attempt is what is judged.
        let refused = ev.kernel.is_some_and(|k| {
            k.verdict == agentwatch_common::policy::verdict::VIOLATION
                && matches!(
                    k.action,
                    agentwatch_common::policy::action::DENY
                        | agentwatch_common::policy::action::DENY_LANDLOCK
                )
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
            held: false,
            paths_at_exit: false,
            real_paths: false,
        }),
        detail,
    }
}

#[cfg(test)]
mod tests;

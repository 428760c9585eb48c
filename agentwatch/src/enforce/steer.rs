//! Steer, not only stop: an agent agentwatch started can learn why an
//! action was refused or paused, and how a request was answered, instead
//! of retrying blindly. `run` gives the agent the read end of a pipe (its
//! number in `AGENTWATCH_REASONS_FD`) and writes one JSON line to it per
//! refusal, pause and answer; `agentwatch exec` makes the pipe itself and
//! the daemon opens its write end through `/proc/PID/fd/N` (`open_launched`).
//! Lines are at most `PIPE_BUF` bytes, so each
//! arrives whole; the write never blocks: a pipe nobody reads fills up
//! (64 KiB, a few hundred reasons) and the rest are counted as dropped.
//! A daemon agent has one pipe per launch (`Steers`); each hears only
//! what its own process tree did, and the answers to its own requests.
use std::{
    collections::{HashMap, HashSet},
    io::Write as _,
    os::fd::{AsFd as _, AsRawFd, OwnedFd, RawFd},
};

use crate::event::{Detail, Event};

use serde_json::{json, Value};

/// The environment variable that names the reasons' descriptor.
pub const ENV: &str = "AGENTWATCH_REASONS_FD";
/// The longest line that a pipe delivers whole (POSIX `PIPE_BUF` on Linux).
const LINE_MAX: usize = 4096;
/// Characters kept of a path or reason in a line.
const FIELD_MAX: usize = 512;

/// The write end, agentwatch's.
#[derive(Debug)]
pub struct Steer {
    out: std::fs::File,
    dropped: u64,
    /// Nobody holds the read end any more (the agent is gone).
    closed: bool,
    /// The pid `agentwatch exec` launched: this pipe hears that process
    /// tree only. None (`run`): every process of the agent.
    launch: Option<u32>,
    /// Requests this pipe was told of, whose answers it is owed.
    requests: HashSet<String>,
}

/// What a refusal, pause or kill says to the agent: by which rule, what,
/// why, what happens now (the action) and the request it opened.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub rule: &'a str,
    pub what: &'a str,
    pub reason: &'a str,
    pub action: &'a str,
    pub request: Option<&'a str>,
}

/// The read end, the agent's: close-on-exec until the launcher clears it
/// in the child (`spawn::spawn_watched`).
#[derive(Debug)]
pub struct ReasonsEnd(OwnedFd);

impl ReasonsEnd {
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Keeps the read end open across exec (the launcher's command
    /// inherits it as `AGENTWATCH_REASONS_FD`).
    pub fn inheritable(self) -> std::io::Result<OwnedFd> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        fcntl(self.0.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))?;
        Ok(self.0)
    }
}

/// A reasons pipe: the write end (close-on-exec) and the read end
/// (close-on-exec until `ReasonsEnd::inheritable`).
pub fn reasons_pipe() -> std::io::Result<(OwnedFd, ReasonsEnd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((w, ReasonsEnd(r)))
}

impl Steer {
    /// A new pipe: agentwatch's non-blocking write end, the agent's read end.
    pub fn pipe() -> std::io::Result<(Steer, ReasonsEnd)> {
        use nix::fcntl::OFlag;
        let (w, r) = reasons_pipe()?;
        let flags = nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok((Self::writing_to(std::fs::File::from(w), None), r))
    }

    /// Reasons written to `out` (a pipe's non-blocking write end) for
    /// `launch`'s process tree (None: the whole agent).
    fn writing_to(out: std::fs::File, launch: Option<u32>) -> Steer {
        Steer {
            out,
            dropped: 0,
            closed: false,
            launch,
            requests: HashSet::new(),
        }
    }

    /// The write end of the pipe process `pid` (`agentwatch exec`, about
    /// to exec the agent) holds as descriptor `fd`, opened anew through
    /// /proc. Anything but a pipe is refused: the daemon writes nowhere
    /// else.
    pub fn open_launched(pid: u32, fd: i32) -> std::io::Result<Steer> {
        use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
        let path = format!("/proc/{pid}/fd/{fd}");
        if !std::fs::metadata(&path)?.file_type().is_fifo() {
            return Err(std::io::Error::other(format!("{path} is not a pipe")));
        }
        let out = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)?;
        Ok(Self::writing_to(out, Some(pid)))
    }

    /// Whether the agent's end is closed: nothing written here is read.
    /// A pipe's write end polls as an error once no reader is left.
    pub fn closed(&mut self) -> bool {
        if !self.closed {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut fds = [PollFd::new(self.out.as_fd(), PollFlags::empty())];
            let gone = poll(&mut fds, PollTimeout::ZERO).is_ok()
                && fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLERR));
            self.closed = gone;
        }
        self.closed
    }

    /// Reasons that did not fit in the pipe (or could not be written).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// An action refused or paused: what, by which rule, why, and what
    /// happens now.
    pub fn refused(&mut self, r: &Refusal) {
        let mut v = json!({
            "time": crate::timestamp::now(),
            "rule": r.rule,
            "what": cut(r.what),
            "reason": cut(r.reason),
            "action": r.action,
            "outcome": crate::report::words::outcome_of(r.action),
        });
        if let Some(id) = r.request {
            v["request"] = json!(id);
            self.requests.insert(id.to_string());
        }
        self.tell(&v);
    }

    /// Requests answered: `outcome` as the audit log says it (approved,
    /// denied, timed_out, ...), by whom. Only those this pipe was told of.
    pub fn answered(&mut self, ids: &[String], outcome: &str, by: &str) {
        for id in ids {
            if !self.requests.remove(id) {
                continue;
            }
            self.tell(&json!({
                "time": crate::timestamp::now(),
                "request": id,
                "answer": outcome,
                "by": by,
            }));
        }
    }

    fn tell(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        if line.len() > LINE_MAX {
            // `cut` bounds every free-text field; this cannot happen, and
            // half a line would be worse than none.
            self.dropped += 1;
            return;
        }
        match self.out.write(line.as_bytes()) {
            Ok(n) if n == line.len() => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => self.closed = true,
            _ => self.dropped += 1,
        }
    }
}

/// Every reasons pipe of one agent, and which launch each of its
/// processes belongs to.
#[derive(Debug, Default)]
pub struct Steers {
    pipes: Vec<Steer>,
    /// pid -> the launch it descends from, followed through forks.
    launch_of: HashMap<u32, u32>,
}

impl Steers {
    pub fn add(&mut self, steer: Steer) {
        if let Some(pid) = steer.launch {
            self.launch_of.insert(pid, pid);
        }
        self.pipes.push(steer);
    }

    /// Follows forks and exits of launched trees. Only pids already in a
    /// launch are kept, so the map is as large as the launched trees.
    pub fn follow(&mut self, ev: &Event) {
        match ev.detail {
            Detail::Fork { child_pid } => {
                if let Some(l) = self.launch_of.get(&ev.pid).copied() {
                    self.launch_of.insert(child_pid, l);
                }
            }
            Detail::Exit { .. } => {
                self.launch_of.remove(&ev.pid);
            }
            _ => {}
        }
    }

    /// The launch `ev`'s process belongs to: followed through forks, else
    /// found in its ancestry.
    fn launch(&self, ev: &Event) -> Option<u32> {
        self.launch_of.get(&ev.pid).copied().or_else(|| {
            ev.context
                .ancestry
                .iter()
                .map(|a| a.pid)
                .find(|p| self.pipes.iter().any(|s| s.launch == Some(*p)))
        })
    }

    /// Tells a refusal to the pipes that should hear it: the launch whose
    /// tree did it, and any pipe for the whole agent. `ev` None: the
    /// whole agent did it (a budget), and every pipe hears it.
    pub fn refused(&mut self, ev: Option<&Event>, r: &Refusal) {
        let launch = ev.map(|e| self.launch(e));
        for s in &mut self.pipes {
            let hears = match launch {
                None => true,
                Some(l) => s.launch.is_none() || s.launch == l,
            };
            if hears {
                s.refused(r);
            }
        }
    }

    /// Tells each pipe the answers to the requests it was told of.
    pub fn answered(&mut self, ids: &[String], outcome: &str, by: &str) {
        for s in &mut self.pipes {
            s.answered(ids, outcome, by);
        }
    }

    /// Drops the pipes nobody reads any more (their launch is over), so a
    /// daemon that launches for months holds no descriptor per launch.
    /// A poll per pipe: called once a second, not per event.
    pub fn prune(&mut self) {
        let before = self.pipes.len();
        self.pipes.retain_mut(|s| !s.closed());
        if self.pipes.len() == before {
            return;
        }
        let pipes = &self.pipes;
        self.launch_of
            .retain(|_, l| pipes.iter().any(|s| s.launch == Some(*l)));
    }
}

fn cut(s: &str) -> String {
    if s.len() <= FIELD_MAX {
        return s.to_string();
    }
    let mut end = FIELD_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn reasons_arrive_as_lines_and_a_full_pipe_drops_rather_than_blocks() {
        let (mut steer, end) = Steer::pipe().unwrap();
        steer.refused(&Refusal {
            rule: "guardrail/secrets",
            what: "read /root/.ssh/id_rsa",
            reason: "a secret",
            action: "deny (SIGKILL at the call)",
            request: Some("bot-1"),
        });
        steer.answered(&["bot-1".into()], "approved", "alice");
        let long = "x".repeat(10_000);
        let mut r = std::fs::File::from(end.0);
        // Fill the pipe: every write either lands whole or is counted.
        for _ in 0..2000 {
            steer.refused(&Refusal {
                rule: "file/unknown",
                what: &long,
                reason: &long,
                action: "pause",
                request: Some("bot-2"),
            });
        }
        assert!(steer.dropped() > 0, "a full pipe drops");
        drop(steer);
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line whole JSON"))
            .collect();
        assert_eq!(lines[0]["rule"], "guardrail/secrets");
        assert_eq!(lines[0]["outcome"], "blocked");
        assert_eq!(lines[1]["answer"], "approved");
        assert_eq!(lines[1]["request"], "bot-1");
        assert!(lines[2]["what"].as_str().unwrap().ends_with('…'));
        assert_eq!(lines[2]["outcome"], "paused for a decision");
    }

    /// A launched pipe for `pid`, and its read end (non-blocking).
    fn launched(pid: u32) -> (Steer, std::fs::File) {
        let (mut s, end) = Steer::pipe().unwrap();
        s.launch = Some(pid);
        let r = std::fs::File::from(end.0);
        nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        (s, r)
    }

    fn lines(r: &mut std::fs::File) -> Vec<Value> {
        let mut text = String::new();
        let _ = r.read_to_string(&mut text);
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn by(pid: u32, detail: Detail, ancestry: &[u32]) -> Event {
        let mut e = crate::enforce::decision::tests::event();
        e.pid = pid;
        e.tid = pid;
        e.detail = detail;
        e.context.ancestry = ancestry
            .iter()
            .map(|p| crate::event::Ancestor { pid: *p, exe: None })
            .collect();
        e
    }

    #[test]
    fn each_launch_hears_its_own_tree_and_the_answers_to_its_own_requests() {
        let (a, mut ra) = launched(100);
        let (b, mut rb) = launched(200);
        let mut steers = Steers::default();
        steers.add(a);
        steers.add(b);
        let exit = Detail::Exit {
            code: Some(0),
            signal: None,
        };
        // 100 forks 101; 101 is refused and asks: only launch A hears it.
        steers.follow(&by(100, Detail::Fork { child_pid: 101 }, &[]));
        let paused = |request| Refusal {
            rule: "file/unknown",
            what: "write /srv/x",
            reason: "no file rule covers the path",
            action: "pause",
            request,
        };
        steers.refused(Some(&by(101, exit.clone(), &[])), &paused(Some("r-1")));
        // A grandchild of B whose fork was not seen: found by ancestry.
        steers.refused(Some(&by(777, exit.clone(), &[250, 200])), &paused(None));
        steers.answered(&["r-1".into()], "approved", "alice");
        // The whole agent's budget: both hear it.
        steers.refused(None, &paused(None));
        let (la, lb) = (lines(&mut ra), lines(&mut rb));
        assert_eq!(la.len(), 3, "{la:?}");
        assert_eq!(la[0]["request"], "r-1");
        assert_eq!(la[1]["answer"], "approved");
        assert_eq!(lb.len(), 2, "{lb:?}");
        assert!(lb.iter().all(|l| l.get("answer").is_none()), "{lb:?}");
        // A process of neither launch: nobody hears it.
        steers.refused(Some(&by(999, exit.clone(), &[1])), &paused(None));
        assert!(lines(&mut ra).is_empty() && lines(&mut rb).is_empty());
        // Launch B is over (its reader closed): its pipe is let go.
        drop(rb);
        steers.prune();
        assert_eq!(steers.pipes.len(), 1);
        assert!(!steers.launch_of.values().any(|l| *l == 200));
        steers.follow(&by(101, exit, &[]));
        assert!(!steers.launch_of.contains_key(&101));
    }
}

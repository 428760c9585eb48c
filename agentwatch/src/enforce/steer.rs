//! Steer, not only stop: an agent agentwatch started can learn why an
//! action was refused or paused, and how a request was answered, instead
//! of retrying blindly. `run` gives the agent the read end of a pipe (its
//! number in `AGENTWATCH_REASONS_FD`) and writes one JSON line to it per
//! refusal, pause and answer; `agentwatch exec` makes the pipe itself and
//! the daemon opens its write end through `/proc/PID/fd/N` (`open_launched`).
//! Lines are at most `PIPE_BUF` bytes, so each
//! arrives whole; the write never blocks: a pipe nobody reads fills up
//! (64 KiB, a few hundred reasons) and the rest are counted as dropped.
use std::{
    io::Write as _,
    os::fd::{AsRawFd, OwnedFd, RawFd},
};

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
}

/// The read end, the agent's: close-on-exec until the launcher clears it
/// in the child (`spawn::spawn_watched`).
#[derive(Debug)]
pub struct ReasonsEnd(OwnedFd);

impl ReasonsEnd {
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Steer {
    /// A new pipe: agentwatch's non-blocking write end, the agent's read end.
    pub fn pipe() -> std::io::Result<(Steer, ReasonsEnd)> {
        use nix::fcntl::OFlag;
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let flags = nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok((Self::writing_to(std::fs::File::from(w)), ReasonsEnd(r)))
    }

    /// Reasons written to `out` (a pipe's non-blocking write end).
    fn writing_to(out: std::fs::File) -> Steer {
        Steer {
            out,
            dropped: 0,
            closed: false,
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
        Ok(Self::writing_to(out))
    }

    /// Whether the agent's end is closed: nothing written here is read.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Reasons that did not fit in the pipe (or could not be written).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// An action refused or paused: what, by which rule, why, and what
    /// happens now.
    pub fn refused(
        &mut self,
        rule: &str,
        what: &str,
        reason: &str,
        action: &str,
        request: Option<&str>,
    ) {
        let mut v = json!({
            "time": crate::timestamp::now(),
            "rule": rule,
            "what": cut(what),
            "reason": cut(reason),
            "action": action,
            "outcome": crate::report::words::outcome_of(action),
        });
        if let Some(id) = request {
            v["request"] = json!(id);
        }
        self.tell(&v);
    }

    /// Requests answered: `outcome` as the audit log says it (approved,
    /// denied, timed_out, ...), by whom.
    pub fn answered(&mut self, ids: &[String], outcome: &str, by: &str) {
        for id in ids {
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
        steer.refused(
            "guardrail/secrets",
            "read /root/.ssh/id_rsa",
            "a secret",
            "deny (SIGKILL at the call)",
            None,
        );
        steer.answered(&["bot-1".into()], "approved", "alice");
        let long = "x".repeat(10_000);
        let mut r = std::fs::File::from(end.0);
        // Fill the pipe: every write either lands whole or is counted.
        for _ in 0..2000 {
            steer.refused("file/unknown", &long, &long, "pause", Some("bot-2"));
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
}

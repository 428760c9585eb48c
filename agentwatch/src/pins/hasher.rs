//! Hashing pinned files off the event thread. The first read of a large
//! model takes seconds to hash; done where events are judged, it would
//! hold up every agent's events (other agents' held calls included). The
//! reader stays held by the kernel meanwhile; the enforcer collects what
//! is done (`Hasher::done`) on each event and each turn of the main loop.
use std::{
    io,
    sync::mpsc::{channel, Receiver, Sender, TryRecvError},
    thread::JoinHandle,
};

use tracing::warn;

use super::HashJob;

/// A finished job: what it was sent with, the job, and its digest.
pub type Done<T> = (T, HashJob, io::Result<String>);

/// One hashing thread, started on the first job; jobs are hashed in the
/// order they came.
pub struct Hasher<T: Send + 'static> {
    work: Option<Sender<(T, HashJob)>>,
    done: Option<Receiver<Done<T>>>,
    thread: Option<JoinHandle<()>>,
    pending: usize,
    /// Jobs hashed on the caller's thread (no thread could be started).
    finished_here: Vec<Done<T>>,
}

impl<T: Send + 'static> Default for Hasher<T> {
    fn default() -> Self {
        Self {
            work: None,
            done: None,
            thread: None,
            pending: 0,
            finished_here: Vec::new(),
        }
    }
}

impl<T: Send + 'static> Hasher<T> {
    /// Hands `job` to the thread. When no thread can be started, it is
    /// hashed here (slower for everyone, but nothing is lost).
    pub fn submit(&mut self, tag: T, job: HashJob) {
        if self.work.is_none() && !self.start() {
            let mut job = job;
            let sha = job.hash();
            self.finished_here.push((tag, job, sha));
            return;
        }
        if let Some(tx) = &self.work {
            if let Err(e) = tx.send((tag, job)) {
                let (tag, mut job) = e.0;
                let sha = job.hash();
                self.finished_here.push((tag, job, sha));
                return;
            }
            self.pending += 1;
        }
    }

    /// Jobs handed over and not yet collected.
    pub fn pending(&self) -> usize {
        self.pending + self.finished_here.len()
    }

    /// The jobs finished since the last call; with `wait`, every job
    /// handed over (the end of a run: a held reader is never left held).
    pub fn done(&mut self, wait: bool) -> Vec<Done<T>> {
        let mut out = std::mem::take(&mut self.finished_here);
        let Some(rx) = &self.done else {
            return out;
        };
        while self.pending > 0 {
            let next = if wait {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match next {
                Ok(d) => {
                    self.pending -= 1;
                    out.push(d);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    warn!(lost = self.pending, "the hashing thread ended early");
                    self.pending = 0;
                }
            }
        }
        out
    }

    fn start(&mut self) -> bool {
        let (work_tx, work_rx) = channel::<(T, HashJob)>();
        let (done_tx, done_rx) = channel::<Done<T>>();
        let spawned = std::thread::Builder::new()
            .name("aw-hash".into())
            .spawn(move || {
                for (tag, mut job) in work_rx {
                    let sha = job.hash();
                    if done_tx.send((tag, job, sha)).is_err() {
                        return;
                    }
                }
            });
        match spawned {
            Ok(t) => {
                self.work = Some(work_tx);
                self.done = Some(done_rx);
                self.thread = Some(t);
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot start a hashing thread; hashing on the event thread");
                false
            }
        }
    }
}

impl<T: Send + 'static> Drop for Hasher<T> {
    fn drop(&mut self) {
        // The thread ends when its queue closes, after the file it reads.
        self.work = None;
        let _ = self.thread.take();
    }
}

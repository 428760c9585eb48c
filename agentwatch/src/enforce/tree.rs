//! Signals to an agent's whole process tree (the processes the kernel
//! watch map lists for it): the userspace side of pause, resume and kill.
use nix::{sys::signal::Signal, unistd::Pid};

/// Sends `sig` to every pid; returns how many it reached.
pub fn signal_all(pids: &[u32], sig: Signal) -> usize {
    pids.iter()
        .filter(|p| nix::sys::signal::kill(Pid::from_raw(**p as i32), sig).is_ok())
        .count()
}

pub fn stop(pids: &[u32]) -> usize {
    signal_all(pids, Signal::SIGSTOP)
}

pub fn resume(pids: &[u32]) -> usize {
    signal_all(pids, Signal::SIGCONT)
}

pub fn kill(pids: &[u32]) -> usize {
    signal_all(pids, Signal::SIGKILL)
}

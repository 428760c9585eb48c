//! The one signal setup every long-running command uses: caught signals
//! record who sent them, so a signal from a watched process (an agent
//! trying to stop its monitor) can be told from an operator's.
use std::sync::atomic::{AtomicI32, Ordering};

/// Slots by signal number (1..=64).
const SLOTS: usize = 65;

/// The sender's pid of the last caught signal of each number (0: none;
/// 1 stands for the kernel or a sender with no pid).
static FROM: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let pid = unsafe { (*info).si_pid() }.max(1);
    if let Some(slot) = usize::try_from(sig).ok().and_then(|s| FROM.get(s)) {
        slot.store(pid, Ordering::Relaxed);
    }
}

/// Catches `sigs` (restarting interrupted calls); each records its sender.
pub fn catch(sigs: &[libc::c_int]) {
    // SAFETY: the handler only stores to atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        for &sig in sigs {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The sender of one of `sigs` caught since the last take, if any; every
/// one of them is cleared.
pub fn take(sigs: &[libc::c_int]) -> Option<i32> {
    sigs.iter()
        .filter_map(|&s| usize::try_from(s).ok().and_then(|s| FROM.get(s)))
        .map(|slot| slot.swap(0, Ordering::Relaxed))
        .fold(None, |first, pid| first.or((pid != 0).then_some(pid)))
}

/// Whether one of `sigs` was caught (and not taken).
pub fn caught(sigs: &[libc::c_int]) -> bool {
    sigs.iter()
        .filter_map(|&s| usize::try_from(s).ok().and_then(|s| FROM.get(s)))
        .any(|slot| slot.load(Ordering::Relaxed) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_signal_records_its_sender_until_taken() {
        catch(&[libc::SIGUSR2]);
        assert!(!caught(&[libc::SIGUSR2]));
        // SAFETY: raising a signal we catch.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert!(caught(&[libc::SIGUSR2]));
        assert_eq!(
            take(&[libc::SIGUSR1, libc::SIGUSR2]),
            Some(std::process::id() as i32)
        );
        assert_eq!(take(&[libc::SIGUSR2]), None);
    }
}

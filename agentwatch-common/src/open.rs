//! Open flags as both sides read them: the kernel decides an open's
//! access at its entry with these functions, and userspace decodes the
//! same flags from the record with them, so the two cannot disagree.
use crate::policy::access;

pub const O_ACCMODE: u64 = 0o3;
pub const O_WRONLY: u64 = 0o1;
pub const O_RDWR: u64 = 0o2;
pub const O_CREAT: u64 = 0o100;
pub const O_TRUNC: u64 = 0o1000;
pub const O_DIRECTORY: u64 = 0o200000;
pub const O_PATH: u64 = 0o10000000;
/// `O_TMPFILE` alone; the flag userspace passes includes `O_DIRECTORY`.
const O_TMPFILE_ONLY: u64 = 0o20000000;
pub const O_TMPFILE: u64 = O_TMPFILE_ONLY | O_DIRECTORY;
/// What `creat(2)` means: `O_CREAT | O_WRONLY | O_TRUNC`.
pub const CREAT_FLAGS: u64 = O_CREAT | O_WRONLY | O_TRUNC;

/// In `args[2]` of an `Opened` record: the open's entry could not read the
/// names it gave, so the file it reached was judged by the whole profile
/// (userspace reports `paths_at_exit`).
pub const OPENED_LATE: u64 = 1;

/// Whether the open may write (write-only or read-write mode), apart from
/// truncation.
#[inline(always)]
pub fn writes(flags: u64) -> bool {
    let mode = flags & O_ACCMODE;
    mode == O_WRONLY || mode == O_RDWR
}

/// Whether the file an open returns is open for writing (the kernel's
/// `FMODE_WRITE`): a writing mode, and not `O_PATH`, which drops the mode.
/// The kernel's exit reads it from the flags it kept at entry instead of
/// from the file.
#[inline(always)]
pub fn opened_for_write(flags: u64) -> bool {
    writes(flags) && flags & O_PATH == 0
}

/// The access bits (`policy::access`) an open asks for: read unless
/// write-only; write for a writing mode or a truncation; create for
/// `O_CREAT` or `O_TMPFILE`.
#[inline(always)]
pub fn open_access(flags: u64) -> u64 {
    let mut acc = 0;
    if flags & O_ACCMODE != O_WRONLY {
        acc |= access::READ;
    }
    if writes(flags) || flags & O_TRUNC != 0 {
        acc |= access::WRITE;
    }
    if flags & O_CREAT != 0 || flags & O_TMPFILE == O_TMPFILE {
        acc |= access::CREATE;
    }
    acc
}

/// An open that lists a directory or walks through it: `O_PATH`, or
/// `O_DIRECTORY` read-only without create, truncate or `O_TMPFILE` (whose
/// bits include `O_DIRECTORY`). It yields names, never contents, so only
/// guardrails judge it.
#[inline(always)]
pub fn open_listing(flags: u64) -> bool {
    if flags & O_PATH != 0 {
        return true;
    }
    flags & O_DIRECTORY != 0
        && flags & O_ACCMODE == 0
        && flags & (O_CREAT | O_TRUNC | O_TMPFILE_ONLY) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_read_only_directory_or_path_opens() {
        assert!(open_listing(O_DIRECTORY));
        assert!(open_listing(O_DIRECTORY | 0o2000000 | 0o4000 | 0o400000)); // + CLOEXEC, NONBLOCK, NOFOLLOW
        assert!(open_listing(O_PATH));
        assert!(!open_listing(0)); // a plain read of a file
        assert!(!open_listing(O_DIRECTORY | O_RDWR));
        assert!(!open_listing(O_TMPFILE | O_RDWR));
        assert!(!open_listing(O_DIRECTORY | O_CREAT));
    }

    #[test]
    fn opened_for_write_is_a_writing_mode_without_o_path() {
        assert!(opened_for_write(O_WRONLY));
        assert!(opened_for_write(O_RDWR | O_CREAT));
        assert!(opened_for_write(CREAT_FLAGS));
        assert!(!opened_for_write(0));
        assert!(!opened_for_write(O_TRUNC)); // truncates, but opened read-only
        assert!(!opened_for_write(O_ACCMODE)); // mode 3: neither read nor write
        assert!(!opened_for_write(O_PATH | O_RDWR));
    }

    #[test]
    fn access_follows_mode_truncation_and_creation() {
        assert_eq!(open_access(0), access::READ);
        assert_eq!(open_access(O_WRONLY), access::WRITE);
        assert_eq!(open_access(O_RDWR), access::READ | access::WRITE);
        assert_eq!(open_access(O_TRUNC), access::READ | access::WRITE);
        assert_eq!(open_access(CREAT_FLAGS), access::WRITE | access::CREATE);
        assert_eq!(
            open_access(O_TMPFILE | O_RDWR),
            access::READ | access::WRITE | access::CREATE
        );
    }
}

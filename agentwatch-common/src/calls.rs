//! The table of watched file, network and exec calls: for each, its
//! number, tracepoint, how many arguments its tracepoint record holds,
//! probe family, where its paths, open flags and mode are among its
//! arguments, how its entry is judged, its class and the access it
//! takes. The kernel's entry and exit programs dispatch on it, the loader
//! attaches to every row, and userspace decodes by it; adding a call of a
//! known shape is one row.
use crate::{
    policy::{access, class},
    syscalls as nr,
};

/// Which probe family reads and judges a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Family {
    /// Paths and files: `probes::file`.
    File = 1,
    /// Sockets and addresses: `probes::net`.
    Net = 2,
    /// Exec attempts: judged at `sched_process_exec`; the pair reports
    /// failures.
    Exec = 3,
}

/// Where a call's paths are among its arguments. The first path goes to
/// slots PATH1/BASE1, the second to PATH2/BASE2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Paths {
    None = 0,
    /// A path in arg 0, relative to the cwd.
    Cwd0 = 1,
    /// A dirfd in arg 0 and a path in arg 1.
    At01 = 2,
    /// Two paths in args 0 and 1, relative to the cwd.
    Cwd0Cwd1 = 3,
    /// dirfd 0 and path 1, then dirfd 2 and path 3.
    At01At23 = 4,
    /// An open fd in arg 0, whose path the kernel walks.
    Fd0 = 5,
    /// A path in arg 1, relative to the cwd (symlink's new name).
    Cwd1 = 6,
    /// A dirfd in arg 1 and a path in arg 2 (symlinkat's new name).
    At12 = 7,
}

/// Where an open-type call's flags are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpenFlags {
    None = 0,
    Arg1 = 1,
    Arg2 = 2,
    /// In the `struct open_how` arg 2 points to (its first u64).
    How2 = 3,
    /// `creat`: O_CREAT|O_WRONLY|O_TRUNC.
    Creat = 4,
}

/// The entry programs the watched calls are split between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Entry {
    /// `sys_enter`: every call not below.
    Judged,
    /// `names_enter`: the calls making a name (`Call::makes_name`).
    Names,
    /// `opens_enter`: the opens whose records hold at least
    /// `OPENS_DIRECT_ARGS` arguments (`openat`, `openat2`: every open glibc
    /// makes), judged through the kernel's cache of recent names' verdicts.
    Opens,
    /// `legacy_opens_enter`: the other opens (`open`, `creat`), judged as
    /// `Opens`; their shorter records let it load fewer arguments directly.
    LegacyOpens,
}

/// How many arguments `opens_enter` loads from its record directly: all an
/// open reads. Opens with shorter records go to `legacy_opens_enter`.
pub const OPENS_DIRECT_ARGS: u8 = 4;

impl Entry {
    /// How many argument slots the program loads from its record directly;
    /// the rest a row needs come through one helper read. The kernel
    /// refuses to attach a program where any of its loads reaches past the
    /// record's end, so this is the fewest arguments among the records of
    /// the program's rows (derived from the table, never written by hand).
    pub const fn direct_args(self) -> usize {
        let mut fewest = 6;
        let mut i = 0;
        while i < CALLS.len() {
            let c = CALLS[i];
            if c.entry() as u8 == self as u8 && (c.args as usize) < fewest {
                fewest = c.args as usize;
            }
            i += 1;
        }
        fewest
    }
}

/// How the kernel judges a call's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Judge {
    /// An open: the access its flags ask for; listings by guardrails only.
    Open = 1,
    /// The first path, with the row's access.
    First = 2,
    /// A hard link: its source as read and written, by guardrails only;
    /// its new name as created.
    LinkSource = 3,
    /// Both paths, with the row's access (rename).
    Both = 4,
    /// The socket address, as a connect.
    Connect = 5,
    /// The socket address, as a bind.
    Bind = 6,
    /// Not at the entry (listen, accept, exec): userspace or another hook.
    Later = 7,
}

/// One watched call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub nr: u32,
    /// Its tracepoints are `syscalls:sys_enter_<name>` and `sys_exit_<name>`.
    pub name: &'static str,
    /// How many arguments its `sys_enter_*` record holds (checked against
    /// tracefs by the loader).
    pub args: u8,
    pub family: Family,
    pub paths: Paths,
    pub open_flags: OpenFlags,
    /// The argument holding a file mode (chmod family), if any.
    pub mode_arg: Option<u8>,
    pub judge: Judge,
    /// `policy::class` a violation counts under.
    pub class: usize,
    /// `policy::access` the call takes (opens: from their flags).
    pub access: u64,
}

impl Call {
    pub const fn is_open(&self) -> bool {
        matches!(self.judge, Judge::Open)
    }

    /// An open-type call's flags, from its record's arguments (openat2's
    /// were read from its `struct open_how` into `args[5]`); 0 for other
    /// calls. Both sides read them with this.
    #[inline(always)]
    pub const fn open_flags_of(&self, args: &[u64; 6]) -> u64 {
        match self.open_flags {
            OpenFlags::Arg1 => args[1],
            OpenFlags::Arg2 => args[2],
            OpenFlags::How2 => args[5],
            OpenFlags::Creat => crate::open::CREAT_FLAGS,
            OpenFlags::None => 0,
        }
    }

    /// Which entry program judges the call: each explores only its own
    /// rows, so each stays within older verifiers' budget (6.1's).
    #[inline(always)]
    pub const fn entry(&self) -> Entry {
        if self.makes_name() {
            Entry::Names
        } else if self.is_open() {
            if self.args >= OPENS_DIRECT_ARGS {
                Entry::Opens
            } else {
                Entry::LegacyOpens
            }
        } else {
            Entry::Judged
        }
    }

    /// Whether the call makes a new name (a hard link, a directory, a
    /// symlink, a node): its entry is `names_enter`'s.
    #[inline(always)]
    pub const fn makes_name(&self) -> bool {
        matches!(
            self.nr,
            nr::LINK
                | nr::LINKAT
                | nr::MKDIR
                | nr::MKDIRAT
                | nr::SYMLINK
                | nr::SYMLINKAT
                | nr::MKNOD
                | nr::MKNODAT
        )
    }

    /// The file mode a chmod-type call sets; 0 for other calls.
    #[inline(always)]
    pub const fn mode_of(&self, args: &[u64; 6]) -> u64 {
        match self.mode_arg {
            Some(1) => args[1],
            Some(2) => args[2],
            _ => 0,
        }
    }
}

macro_rules! calls {
    ($( $nr:ident $name:literal $args:literal $family:ident $paths:ident $flags:ident $mode:expr, $judge:ident $class:ident $access:expr; )*) => {
        /// One constant per row, named after its call.
        mod rows {
            use super::*;
            $(pub const $nr: Call = Call {
                nr: nr::$nr,
                name: $name,
                args: $args,
                family: Family::$family,
                paths: Paths::$paths,
                open_flags: OpenFlags::$flags,
                mode_arg: $mode,
                judge: Judge::$judge,
                class: class::$class,
                access: $access,
            };)*
        }

        /// Every watched call, in one table.
        pub const CALLS: &[Call] = &[$(rows::$nr),*];

        /// The row of call `nr`, if it is watched. A `match` of constants:
        /// the kernel's programs get each field as an immediate.
        #[inline(always)]
        pub const fn find(nr: u32) -> Option<Call> {
            match nr {
                $(nr::$nr => Some(rows::$nr),)*
                _ => None,
            }
        }
    };
}

const NO: u64 = 0;
const RW: u64 = access::READ | access::WRITE;

calls! {
    OPEN      "open"      3 File Cwd0     Arg1  None,    Open       FILE    NO;
    CREAT     "creat"     2 File Cwd0     Creat None,    Open       FILE    NO;
    OPENAT    "openat"    4 File At01     Arg2  None,    Open       FILE    NO;
    OPENAT2   "openat2"   4 File At01     How2  None,    Open       FILE    NO;
    UNLINK    "unlink"    1 File Cwd0     None  None,    First      DELETE  access::DELETE;
    UNLINKAT  "unlinkat"  3 File At01     None  None,    First      DELETE  access::DELETE;
    RMDIR     "rmdir"     1 File Cwd0     None  None,    First      DELETE  access::DELETE;
    RENAME    "rename"    2 File Cwd0Cwd1 None  None,    Both       FILE    access::RENAME;
    RENAMEAT  "renameat"  4 File At01At23 None  None,    Both       FILE    access::RENAME;
    RENAMEAT2 "renameat2" 5 File At01At23 None  None,    Both       FILE    access::RENAME;
    LINK      "link"      2 File Cwd0Cwd1 None  None,    LinkSource FILE    RW;
    LINKAT    "linkat"    5 File At01At23 None  None,    LinkSource FILE    RW;
    MKDIR     "mkdir"     2 File Cwd0     None  None,    First      FILE    access::CREATE;
    MKDIRAT   "mkdirat"   3 File At01     None  None,    First      FILE    access::CREATE;
    SYMLINK   "symlink"   2 File Cwd1     None  None,    First      FILE    access::CREATE;
    SYMLINKAT "symlinkat" 3 File At12     None  None,    First      FILE    access::CREATE;
    MKNOD     "mknod"     3 File Cwd0     None  None,    First      FILE    access::CREATE;
    MKNODAT   "mknodat"   4 File At01     None  None,    First      FILE    access::CREATE;
    CHMOD     "chmod"     2 File Cwd0     None  Some(1), First      FILE    access::CHMOD;
    FCHMOD    "fchmod"    2 File Fd0      None  Some(1), First      FILE    access::CHMOD;
    FCHMODAT  "fchmodat"  3 File At01     None  Some(2), First      FILE    access::CHMOD;
    FCHMODAT2 "fchmodat2" 4 File At01     None  Some(2), First      FILE    access::CHMOD;
    CHOWN     "chown"     3 File Cwd0     None  None,    First      FILE    access::CHMOD;
    FCHOWN    "fchown"    3 File Fd0      None  None,    First      FILE    access::CHMOD;
    LCHOWN    "lchown"    3 File Cwd0     None  None,    First      FILE    access::CHMOD;
    FCHOWNAT  "fchownat"  5 File At01     None  None,    First      FILE    access::CHMOD;
    CONNECT   "connect"   3 Net  None     None  None,    Connect    NETWORK NO;
    BIND      "bind"      3 Net  None     None  None,    Bind       NETWORK NO;
    LISTEN    "listen"    2 Net  None     None  None,    Later      NETWORK NO;
    ACCEPT    "accept"    3 Net  None     None  None,    Later      NETWORK NO;
    ACCEPT4   "accept4"   4 Net  None     None  None,    Later      NETWORK NO;
    EXECVE    "execve"    3 Exec Cwd0     None  None,    Later      EXEC    access::EXEC;
    EXECVEAT  "execveat"  5 Exec At01     None  None,    Later      EXEC    access::EXEC;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_agrees_with_the_table_and_names() {
        for c in CALLS {
            assert_eq!(find(c.nr), Some(*c), "{}", c.name);
            assert_eq!(nr::name(c.nr), Some(c.name), "{}", c.name);
        }
        for (i, a) in CALLS.iter().enumerate() {
            assert!(
                CALLS[i + 1..].iter().all(|b| a.nr != b.nr),
                "{} twice",
                a.name
            );
        }
        assert_eq!(find(nr::KILL), None);
    }

    #[test]
    fn rows_are_consistent() {
        for c in CALLS {
            assert_eq!(c.is_open(), c.open_flags != OpenFlags::None, "{}", c.name);
            let paths = c.paths != Paths::None;
            assert_eq!(paths, c.family != Family::Net, "{}", c.name);
            let two = matches!(c.paths, Paths::Cwd0Cwd1 | Paths::At01At23);
            assert_eq!(
                two,
                matches!(c.judge, Judge::Both | Judge::LinkSource),
                "{}",
                c.name
            );
        }
    }

    /// Each entry program loads directly as many arguments as the shortest
    /// record among its rows holds; every open glibc makes (`openat`,
    /// `openat2`) is on the program that loads all an open reads.
    #[test]
    fn entry_programs_load_what_their_records_hold() {
        for c in CALLS {
            assert_eq!(
                c.is_open(),
                matches!(c.entry(), Entry::Opens | Entry::LegacyOpens),
                "{}",
                c.name
            );
        }
        assert_eq!(Entry::Opens.direct_args(), OPENS_DIRECT_ARGS as usize);
        assert!(Entry::LegacyOpens.direct_args() < OPENS_DIRECT_ARGS as usize);
        for glibc in [nr::OPENAT, nr::OPENAT2] {
            assert_eq!(find(glibc).map(|c| c.entry()), Some(Entry::Opens));
        }
        // What each program loads on this table: unlink's record holds one
        // argument, link's two, creat's two.
        assert_eq!(Entry::Judged.direct_args(), 1);
        assert_eq!(Entry::Names.direct_args(), 2);
        assert_eq!(Entry::LegacyOpens.direct_args(), 2);
    }
}

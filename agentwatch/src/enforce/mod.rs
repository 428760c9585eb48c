//! Enforcement: a profile compiled into the kernel's maps (`compile`), the
//! path automaton those maps hold (`dfa`), and the actions userspace takes
//! on what the kernel reports.
pub mod agent;
pub mod approvals;
pub mod audit_trail;
pub mod compile;
pub mod dfa;
pub mod own_files;
pub mod tree;

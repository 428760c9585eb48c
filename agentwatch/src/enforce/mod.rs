//! Enforcement: a profile compiled into the kernel's maps (`compile`, with
//! the path automaton of `profile::automaton`), and the actions userspace
//! takes on what the kernel reports.
pub mod activity;
pub mod agent;
pub mod approvals;
pub mod audit_trail;
pub mod compile;
pub mod decision;
pub mod drift;
pub mod own_files;
pub mod resolutions;
pub mod steer;
pub mod throttle;
pub mod tree;

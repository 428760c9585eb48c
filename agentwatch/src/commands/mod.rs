//! One module per CLI command; `main.rs` only dispatches here.
pub mod anchor_args;
pub mod audit;
pub mod bench_profile;
pub mod check;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod doctor_classes;
pub mod exec;
pub mod learn;
pub mod manual;
pub mod profile;
pub mod run;
pub mod session;
pub mod trace;

//! One module per CLI command; `main.rs` only dispatches here.
pub mod demo;
pub mod doctor;
pub mod trace;

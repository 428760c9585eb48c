//! agentwatch: eBPF runtime monitor and enforcer for AI agents.
//!
//! Layout: `sensors` (kernel programs as userspace sees them), `pipeline`
//! (source -> decode -> enrich -> sinks), `sinks`, `event` (the model),
//! `commands` (one module per CLI command).
pub mod atomic;
pub mod audit;
pub mod clock;
pub mod commands;
pub mod control;
pub mod daemon;
pub mod enforce;
pub mod event;
pub mod feeds;
pub mod k8s;
pub mod net;
pub mod paths;
pub mod pipeline;
pub mod profile;
pub mod selectors;
pub mod sensors;
pub mod sinks;
pub mod spawn;

#[cfg(test)]
mod contract_tests;

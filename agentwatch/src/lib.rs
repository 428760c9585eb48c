//! agentwatch: eBPF runtime monitor and enforcer for AI agents.
//!
//! Layout: `sensors` (kernel programs as userspace sees them), `pipeline`
//! (source -> decode -> enrich -> sinks), `sinks`, `event` (the model),
//! `commands` (one module per CLI command).
mod atomic;
mod audit;
mod budget;
mod clock;
pub mod commands;
pub mod control;
pub mod daemon;
pub mod enforce;
mod event;
pub mod exit;
mod feeds;
mod hex;
pub mod identity;
pub mod intent;
mod k8s;
mod lifecycle;
mod net;
mod origin;
mod paths;
mod pins;
pub mod pipeline;
pub mod profile;
mod report;
mod sandbox;
mod selectors;
pub mod sensors;
mod signals;
mod sinks;
mod spawn;
mod timestamp;
pub mod ui;
mod units;

#[cfg(test)]
mod contract_tests;

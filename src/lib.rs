//! NSPS → WTL HLR/HSS connector.
//!
//! An event flows one way: [`http`] (auth, trace ids, limits) → [`nsps`] (typed event) →
//! [`plan`] (pure decision: which WTL calls) → [`wtl`] (the calls) → back to [`http`], which
//! turns the outcome into the answer NSPS stores.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod golive;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod nsps;
pub mod openapi;
pub mod plan;
pub mod rotation;
pub mod simulator;
pub mod telemetry;
pub mod wtl;

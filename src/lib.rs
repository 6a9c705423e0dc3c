//! NSPS → WTL HLR/HSS connector.
//!
//! An event flows one way: `http` (auth, trace ids, limits) → `nsps` (typed event) → `plan`
//! (pure decision: which WTL calls) → `wtl` (the calls) → back to `http`, which turns the
//! outcome into the answer NSPS stores. `memory` keeps redeliveries in order, `telemetry`
//! writes the lines and spans, `config` reads the environment into each module's settings,
//! `rotation` swaps secrets and TLS files while the service runs, `app` puts it together.
//!
//! The modules are private; the items below are what the binary and the tests use.

#![warn(unreachable_pub, clippy::too_many_lines)]

mod app;
mod cli;
mod config;
mod demo;
mod golive;
mod http;
mod memory;
mod metrics;
mod nsps;
mod plan;
mod rotation;
mod simulator;
mod telemetry;
mod wtl;

pub use app::{Application, StartError};
pub use cli::main;
pub use config::{ConfigError, Settings};
pub use golive::{Check, check};
pub use http::{AppState, set_not_ready};
pub use nsps::{Event, SAMPLE_CREATED, SAMPLE_UPDATED, parse_event};
pub use plan::{Plan, PlanRules, plan};
pub use rotation::POLL as ROTATION_POLL;
pub use simulator::{Simulator, SimulatorHandle};

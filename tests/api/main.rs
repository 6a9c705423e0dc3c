//! Integration tests: the whole connector on 127.0.0.1:0 against a WTL stand-in on loopback.
//! One test binary with a module per area (faster to build than one binary per file).

// Test helpers are shared between the test modules as `pub`; the visibility lint is for the
// library's API.
#![allow(unreachable_pub)]

mod cancellation;
mod connectivity;
mod dry_run;
mod edge;
mod errors;
mod fixtures;
mod hardening;
mod helpers;
mod redelivery;
mod resilience;
mod rotation;
mod shared_memory;
mod stands;
mod stories;
mod surface;

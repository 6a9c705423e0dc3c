//! The HTTP server's settings: who may call, where, how much and how long. The `config` module
//! fills them from the environment and checks them.

use std::net::IpAddr;
use std::time::Duration;

use super::tokens::ApiTokens;

/// `PORT`'s default.
pub(crate) const DEFAULT_PORT: u16 = 8000;
/// `MAX_BODY_BYTES`'s default.
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;
/// `SHUTDOWN_TIMEOUT`'s default, in seconds.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: f64 = 8.0;
/// `HEADER_READ_TIMEOUT`'s default, in seconds.
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: f64 = 10.0;
/// `REQUEST_TIMEOUT` is by default this much longer than `WTL_TOTAL_TIMEOUT`, in seconds.
pub(crate) const REQUEST_TIMEOUT_MARGIN: f64 = 5.0;
/// `MAX_IN_FLIGHT`'s default.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;
/// Paths the connector serves itself, which `EVENTS_PATH` cannot take.
pub(crate) const RESERVED_PATHS: &[&str] = &["", "/health", "/ready", "/process-event", "/metrics", "/openapi.json"];

/// Everything the HTTP server needs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `API_TOKEN`: the tokens NSPS may send (rotated in place through `API_TOKEN_FILE`).
    pub(crate) api_tokens: ApiTokens,
    /// `TRUSTED_PROXIES`: how many proxies in front append to `X-Forwarded-For` (0 = none).
    pub(crate) trusted_proxies: usize,
    /// `ALLOWED_SOURCE_RANGES`: who may call the event routes and `/metrics`; `None` = anyone.
    pub(crate) allowed_sources: Option<Vec<ipnet::IpNet>>,
    pub(crate) port: u16,
    /// `BIND_ADDRESS`; unset = dual-stack `[::]`, or `0.0.0.0` where the host has no IPv6.
    pub(crate) bind_address: Option<IpAddr>,
    /// `EVENTS_PATH`: a second path events are accepted on, besides `/` and `/process-event`.
    pub(crate) events_path: Option<String>,
    pub(crate) max_body_bytes: usize,
    pub(crate) shutdown_timeout: Duration,
    /// A client must send its whole request head within this time (slow-client protection).
    pub(crate) header_read_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) metrics_public: bool,
}

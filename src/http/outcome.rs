//! How an event ended, as the access line and `nsps_events_total` name it. The event route puts
//! it on each answer about an event (once its sender is authenticated and the event admitted
//! past `MAX_IN_FLIGHT`: refused bodies, processed, failed, skipped, timed out and cut off at
//! shutdown alike); the layer that writes the access line records it, once. Answers that are
//! not about an event (401, 403, the 503 of a full or stopping service) carry none.

use std::time::Duration;

use axum::response::Response;

/// How an event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every WTL call made (2xx).
    Processed,
    /// A WTL call failed; the answer says why (4xx/5xx).
    Failed,
    /// Nothing to do for this event (2xx).
    Ignored,
    /// Processed before, within `EVENT_DEDUP_TTL` (2xx).
    Duplicate,
    /// A newer event was applied to the IMSI (2xx).
    Stale,
    /// `WTL_DRY_RUN`: planned, not sent (2xx).
    DryRun,
    /// The body or a field is not acceptable (4xx).
    Invalid,
    /// The shared redelivery store could not be asked (503).
    StoreUnavailable,
    /// Not done within `REQUEST_TIMEOUT` (503).
    Timeout,
    /// Still running when `SHUTDOWN_TIMEOUT` ran out (503).
    CutOff,
}

impl Outcome {
    /// The label in log lines and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Failed => "failed",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::DryRun => "dry_run",
            Self::Invalid => "invalid",
            Self::StoreUnavailable => "store_unavailable",
            Self::Timeout => "timeout",
            Self::CutOff => "cut_off",
        }
    }
}

/// An event route's answer, as the access layer records it.
#[derive(Clone, Debug)]
pub(crate) struct Ended {
    pub(crate) outcome: Outcome,
    /// The event's type, when the event was read far enough to know it.
    pub(crate) event_type: Option<String>,
    /// The time `nsps_event_duration_seconds` counts: from the handler's start (after the body
    /// was read) for an event it answered, from the body's reading for a refused body,
    /// `REQUEST_TIMEOUT` for a timeout; `None`: the access line's latency.
    pub(crate) took: Option<Duration>,
}

/// `response`, marked with how the event ended.
pub(crate) fn ended(
    mut response: Response,
    outcome: Outcome,
    event_type: Option<&str>,
    took: Option<Duration>,
) -> Response {
    response.extensions_mut().insert(Ended {
        outcome,
        event_type: event_type.map(str::to_string),
        took,
    });
    response
}

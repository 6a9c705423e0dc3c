//! The bodies of the connector's successful answers. They are `Serialize` types, and the
//! OpenAPI document describes them from the same types (`utoipa::ToSchema`).

use std::borrow::Cow;

use crate::plan::{Action, WtlCall};
use crate::wtl::Done;

/// A 202 answer: processed (`actions` lists the event's WTL calls and how each ended, a call
/// skipped as stale included), ignored (`message` starts with `Event ignored:`), or already
/// processed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Accepted<'a> {
    pub(crate) message: &'a str,
    pub(crate) event_id: &'a str,
    /// The WTL calls of an event that made them, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) actions: Option<Vec<ActionTaken<'a>>>,
    /// Present and true only with `WTL_DRY_RUN=true`: no WTL call was made.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) dry_run: bool,
}

/// One WTL call of an event, and how it ended.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ActionTaken<'a> {
    action: Action,
    imsi: Cow<'a, str>,
    result: CallResult,
}

/// How a WTL call ended: `applied` (WTL applied it), `already_applied` (WTL already held the
/// result: `insert` answered 409, `delete` answered 404), `planned` (`WTL_DRY_RUN`: the call
/// was not made), `stale` (not made: its IMSI already has a newer event applied, as when the new
/// SIM of a redelivered `SIM/Replaced` had a later event of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CallResult {
    Applied,
    AlreadyApplied,
    Planned,
    Stale,
}

impl From<Done> for CallResult {
    fn from(done: Done) -> Self {
        match done {
            Done::Applied => Self::Applied,
            Done::AlreadyApplied => Self::AlreadyApplied,
        }
    }
}

impl<'a> ActionTaken<'a> {
    pub(crate) fn of(call: &'a WtlCall, result: CallResult) -> Self {
        Self {
            action: call.action,
            imsi: Cow::Borrowed(call.imsi.as_str()),
            result,
        }
    }
}

impl ActionTaken<'_> {
    /// The same, owning its IMSI (for an error answer, which outlives the event).
    pub(crate) fn into_owned(self) -> ActionTaken<'static> {
        ActionTaken {
            action: self.action,
            imsi: Cow::Owned(self.imsi.into_owned()),
            result: self.result,
        }
    }
}

/// `GET /health`: the process is up.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    status: HealthStatus,
    service: &'static str,
    version: &'static str,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
enum HealthStatus {
    Healthy,
}

impl Health {
    pub(crate) const NOW: Self = Self {
        status: HealthStatus::Healthy,
        service: super::SERVICE_NAME,
        version: env!("CARGO_PKG_VERSION"),
    };
}

/// `GET /ready`: serving, and the redelivery memory can be used.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    status: ReadyStatus,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
enum ReadyStatus {
    Ready,
}

impl Ready {
    pub(crate) const NOW: Self = Self {
        status: ReadyStatus::Ready,
    };
}

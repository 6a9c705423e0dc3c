//! Redelivery memory: duplicate events, concurrent deliveries and out-of-order events.
//!
//! NSPS redelivers every event that did not get a 2xx, and may deliver an old attempt after a
//! newer event for the same SIM was applied. The memory remembers which events were processed,
//! which event was applied last to each IMSI, and lets one event at a time run per IMSI.
//!
//! Two back ends behind one interface ([`Store`]): in process ([`local`], one instance), or
//! shared through Redis ([`shared`], `REDIS_URL`), so several instances behave as one. The event
//! handler does not know which it has.

mod bounded;
pub(crate) mod local;
pub(crate) mod shared;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::nsps::Event;
use crate::plan::{Imsi, WtlCall};

/// What to do with a delivery; `T` is the right to go ahead ([`Ticket`] here, each back end's
/// own inside it).
pub enum Admission<T = Ticket> {
    /// Processed successfully within `EVENT_DEDUP_TTL`.
    Duplicate,
    /// Every IMSI of the event already has a newer event applied (named: the first of them).
    Stale { imsi: Imsi, applied: String },
    /// Go ahead; report the outcome on the ticket. The calls to any IMSI the ticket names as
    /// [`Ticket::newer`] are stale and are not made.
    Proceed(T),
    /// The shared store could not be asked (and `REDIS_FAIL_OPEN` is off): nothing may be
    /// applied without its guarantees.
    Unavailable { reason: String },
}

impl<T> Admission<T> {
    fn map<U>(self, ticket: impl FnOnce(T) -> U) -> Admission<U> {
        match self {
            Self::Duplicate => Admission::Duplicate,
            Self::Stale { imsi, applied } => Admission::Stale { imsi, applied },
            Self::Proceed(t) => Admission::Proceed(ticket(t)),
            Self::Unavailable { reason } => Admission::Unavailable { reason },
        }
    }
}

/// The redelivery settings: how long and how many event ids are remembered, the stale-event
/// check, and the shared store. The `config` module fills them from the environment.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `EVENT_DEDUP_TTL`: how long a processed event id is remembered (zero: not at all).
    pub(crate) dedup_ttl: Duration,
    /// `EVENT_DEDUP_MAX`: at most this many event ids (and IMSIs) in the in-process memory.
    pub(crate) dedup_max: usize,
    /// `STALE_EVENT_CHECK`: skip an event older than the last one applied to its IMSI.
    pub(crate) stale_event_check: bool,
    /// `STALE_EVENT_TTL`: how long the time of the last event applied to an IMSI is kept in
    /// the shared memory (at least).
    pub(crate) stale_event_ttl: Duration,
    /// `REDIS_URL` and its companions: the memory shared by every instance.
    pub(crate) redis: Option<shared::RedisSettings>,
}

/// `EVENT_DEDUP_TTL`'s default, in seconds.
pub(crate) const DEFAULT_DEDUP_TTL: f64 = 600.0;
/// `EVENT_DEDUP_MAX`'s default.
pub(crate) const DEFAULT_DEDUP_MAX: u32 = 100_000;
/// `STALE_EVENT_TTL`'s default: 35 days.
pub(crate) const DEFAULT_STALE_EVENT_TTL: Duration = Duration::from_secs(35 * 86_400);

/// An IMSI that already has a newer event applied than the one admitted, and that event's time
/// (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Newer {
    pub imsi: Imsi,
    pub applied: String,
}

/// The right to execute one delivery. Dropping it without an outcome counts as a failure (the
/// request was cut off): what it holds is released, so waiting deliveries go ahead.
pub struct Ticket(Holder);

enum Holder {
    Local(local::Ticket),
    Shared(shared::Ticket),
    /// Processed without the shared memory (`REDIS_FAIL_OPEN` while Redis is down).
    Unguarded,
}

impl Ticket {
    /// The event's IMSIs that already have a newer event applied (never all of them: such an
    /// event is not admitted). A `SIM/Replaced` whose new SIM had a later event still releases
    /// the old one, and the other way round: only the calls to these IMSIs are skipped.
    pub fn newer(&self) -> &[Newer] {
        match &self.0 {
            Holder::Local(t) => t.newer(),
            Holder::Shared(t) => t.newer(),
            Holder::Unguarded => &[],
        }
    }

    /// Records the success; false when the shared store could not (the event stands: WTL has it).
    pub async fn succeeded(self) -> bool {
        match self.0 {
            Holder::Local(t) => {
                t.succeeded();
                true
            }
            Holder::Shared(t) => t.succeeded().await,
            Holder::Unguarded => true,
        }
    }

    pub async fn failed(self) {
        match self.0 {
            Holder::Local(t) => t.failed(),
            Holder::Shared(t) => t.failed().await,
            Holder::Unguarded => {}
        }
    }
}

/// The redelivery memory the service uses.
pub struct Store(Backend);

enum Backend {
    Local(Arc<local::Memory>),
    Shared {
        redis: Arc<shared::SharedMemory>,
        /// `REDIS_FAIL_OPEN`: process events without the shared memory while Redis is down.
        fail_open: bool,
    },
}

impl Store {
    /// The memory the settings ask for: in process, or shared through Redis. `lease` is how
    /// long a running event holds its id and IMSIs in the shared memory (its whole time budget).
    pub(crate) fn open(
        settings: &Settings,
        lease: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, shared::StoreSetupError> {
        Ok(Self(match &settings.redis {
            None => Backend::Local(local::Memory::new(
                settings.dedup_ttl,
                settings.dedup_max,
                settings.stale_event_check,
            )),
            Some(redis) => Backend::Shared {
                redis: shared::SharedMemory::new(redis, settings, lease, metrics)?,
                fail_open: redis.fail_open,
            },
        }))
    }

    /// A new `REDIS_URL` (its file changed): the shared memory's next operations go there.
    pub(crate) fn rotate_url(&self, url: secrecy::SecretString) -> Result<(), String> {
        match &self.0 {
            Backend::Shared { redis, .. } => redis.rotate_url(url).map_err(|e| e.to_string()),
            Backend::Local(_) => Ok(()),
        }
    }

    /// Decides whether this delivery runs. May wait: for a concurrent delivery of the same
    /// event, and for events executing on the same IMSIs. Safe to drop at any await.
    pub async fn admit(&self, event: &Event, calls: &[WtlCall]) -> Admission {
        match &self.0 {
            Backend::Local(memory) => memory.admit(event, calls).await.map(|t| Ticket(Holder::Local(t))),
            Backend::Shared { redis, fail_open } => match redis.admit(event, calls).await {
                Ok(admission) => admission.map(|t| Ticket(Holder::Shared(t))),
                Err(e) if *fail_open => {
                    tracing::warn!(
                        error = %e,
                        "redelivery store unavailable; processing without duplicate, order and per-IMSI guarantees (REDIS_FAIL_OPEN)"
                    );
                    Admission::Proceed(Ticket(Holder::Unguarded))
                }
                Err(e) => Admission::Unavailable { reason: e.to_string() },
            },
        }
    }

    /// What keeps the memory, for span attributes: `redis` or `in-process`.
    pub fn system(&self) -> &'static str {
        match &self.0 {
            Backend::Local(_) => "in-process",
            Backend::Shared { .. } => "redis",
        }
    }

    /// Whether the memory is shared through Redis (its operations are round trips).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.0, Backend::Shared { .. })
    }

    /// Can the memory be used right now? The in-process one always can; the shared one when
    /// Redis answers a `PING` within `REDIS_TIMEOUT`.
    pub async fn available(&self) -> bool {
        match &self.0 {
            Backend::Local(_) => true,
            Backend::Shared { redis, .. } => redis.ping().await.is_ok(),
        }
    }

    /// Event ids marked running and IMSI locks held or awaited in this process (for tests;
    /// both are zero when no delivery is in flight). The shared store keeps these in Redis.
    pub fn in_flight(&self) -> (usize, usize) {
        match &self.0 {
            Backend::Local(memory) => memory.in_flight(),
            Backend::Shared { .. } => (0, 0),
        }
    }

    /// Remembered event ids and IMSIs of the in-process memory.
    pub fn sizes(&self) -> (usize, usize) {
        match &self.0 {
            Backend::Local(memory) => memory.sizes(),
            Backend::Shared { .. } => (0, 0),
        }
    }
}

/// A time as µs since 1970, the unit both memories keep an IMSI's time in.
fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// A time in µs since 1970 as RFC 3339, for the stale answer.
fn shown_time(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The event's own time: `updated_at`, else `created_at`. Unreadable → none (the event applies).
pub(crate) fn event_time(event: &Event) -> Option<OffsetDateTime> {
    event
        .updated_at
        .as_deref()
        .and_then(parse_time)
        .or_else(|| event.created_at.as_deref().and_then(parse_time))
}

/// RFC 3339, or an ISO-8601 date-time without offset (read as UTC).
fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let format = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day][first [T] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|t| t.assume_utc())
}

/// The IMSIs of `calls`, sorted and without repeats (locks are always taken in this order, so
/// two deliveries can never wait for each other).
fn imsis_of(calls: &[WtlCall]) -> Vec<Imsi> {
    let mut imsis: Vec<Imsi> = calls.iter().map(|c| c.imsi.clone()).collect();
    imsis.sort();
    imsis.dedup();
    imsis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_and_without_offset_parse() {
        assert!(parse_time("2025-03-12T16:47:30.443939+00:00").is_some());
        assert!(parse_time("2025-05-16T12:59:46").is_some());
        assert!(parse_time("2025-05-16 12:59:46.5").is_some());
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2025-03-12T16:47:30+02:00") < parse_time("2025-03-12T15:47:30Z"));
    }
}

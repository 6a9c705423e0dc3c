//! `POST /process-event`: the event route's own layers, the parsed-event extractor, and the
//! handler (load shedding, time limits, plan, redelivery memory, WTL calls, answer).
//!
//! Every await between receiving an event and answering it may be the last one (NSPS hangs up,
//! `REQUEST_TIMEOUT` or the shutdown cut-off fires). What each leaves behind when dropped:
//! - reading the body: nothing shared (the `MAX_IN_FLIGHT` slot and the `REQUEST_TIMEOUT`
//!   timer are released by their drops);
//! - `Memory::admit`, waiting for a twin delivery or for the IMSI's lock: the `Ticket` exists
//!   before the first wait, and its drop unregisters the event and releases or forgets the
//!   locks, telling waiting twins to go ahead;
//! - the rate limiter: the booked slot is given back when no later caller booked after it;
//! - the OAuth2 token fetch: the single-flight lock is released with its guard and the cache
//!   is unchanged until an answer arrives (the refresh token is kept);
//! - the WTL call and the retry sleeps: nothing shared beyond the ticket, released as above.
//!   The call may have reached WTL; the event was not answered 2xx, so NSPS redelivers it and
//!   the idempotent call is repeated.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use tokio::time::Instant;
use tower::ServiceBuilder;

use super::AppState;
use super::answers::{Accepted, ActionTaken, CallResult};
use super::error::{ApiError, Body as ErrorBody};
use super::outcome::{Outcome, ended};
use crate::memory::{Admission, Ticket};
use crate::metrics::Metrics;
use crate::nsps::{self, Event};
use crate::plan::{self, Plan, WtlCall};
use crate::telemetry::{self, StepSpan, TraceIds};

fn accepted(message: &str, event_id: &str, actions: Option<&[(&WtlCall, CallResult)]>) -> Response {
    let answer = Accepted {
        message,
        event_id,
        dry_run: false,
        actions: actions.map(|done| {
            done.iter()
                .map(|(call, result)| ActionTaken::of(call, *result))
                .collect()
        }),
    };
    (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
}

/// `WTL_DRY_RUN`: each planned call is logged (action, IMSI, the exact body) and the event is
/// answered 202 with `"dry_run": true`; no WTL call is made and the redelivery memory records
/// nothing.
fn dry_run(event: &Event, calls: &[WtlCall]) -> Response {
    for call in calls {
        crate::wtl::log_planned(call);
    }
    let answer = Accepted {
        message: "Dry run: event planned, no WTL call made",
        event_id: &event.event_id,
        dry_run: true,
        actions: Some(
            calls
                .iter()
                .map(|call| ActionTaken::of(call, CallResult::Planned))
                .collect(),
        ),
    };
    (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
}

/// `POST` to an event path: the source allowlist, the Bearer check and the shutdown gate
/// ([`gate`]), then the body limit; the handler itself sheds load beyond `MAX_IN_FLIGHT`, and
/// bounds the event by `REQUEST_TIMEOUT` and the shutdown cut-off.
pub(crate) fn route(state: &AppState) -> MethodRouter<AppState> {
    post(handle_event).layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .layer(DefaultBodyLimit::max(state.server.max_body_bytes)),
    )
}

/// Who may send comes first: a source outside `ALLOWED_SOURCE_RANGES`, then an unauthenticated
/// sender, learns nothing and its body is never read. Once shutdown has begun, new events are
/// refused (NSPS redelivers them to a running instance).
pub(crate) async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(refused) = super::source::refusal(&state, &req) {
        return refused;
    }
    if let Err(reason) = super::check_bearer(req.headers(), &state.server) {
        tracing::warn!(reason, "event refused: authentication failed");
        return ApiError::unauthorized().into_response();
    }
    if !state.ready.load(std::sync::atomic::Ordering::Relaxed) {
        return ApiError::shutting_down().into_response();
    }
    next.run(req).await
}

fn shed(metrics: &Metrics) -> Response {
    metrics.shed();
    tracing::warn!("event refused: MAX_IN_FLIGHT reached");
    ApiError::overloaded().into_response()
}

fn timed_out(limit: Duration) -> Response {
    tracing::error!(
        timeout_s = limit.as_secs_f64(),
        "event not completed within REQUEST_TIMEOUT"
    );
    ended(
        ApiError::request_timeout(limit).into_response(),
        Outcome::Timeout,
        None,
        Some(limit),
    )
}

/// An event delivery, read and parsed: the handler's input. The rejection is the error answer
/// (415 for a content type that is not JSON, 413 beyond `MAX_BODY_BYTES`, 400 for a body that
/// could not be read, 422 naming the field for one that does not parse).
pub(crate) struct Delivery(pub(crate) Event);

impl FromRequest<AppState> for Delivery {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let started = Instant::now();
        let refuse = |api: ApiError| ended(api.into_response(), Outcome::Invalid, None, Some(started.elapsed()));
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE)
            && !is_json(ct.to_str().unwrap_or("?"))
        {
            return Err(refuse(ApiError::unsupported_media_type(
                ct.to_str().unwrap_or("(not text)"),
            )));
        }
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(BytesRejection::FailedToBufferBody(e)) if is_length_limit(&e) => {
                return Err(refuse(ApiError::payload_too_large(state.server.max_body_bytes)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the event body");
                return Err(refuse(ApiError::unreadable_body(
                    "the connection failed while it was sent",
                )));
            }
        };
        match nsps::parse_event(&bytes) {
            Ok(event) => {
                tracing::debug!(bytes = bytes.len(), "event received");
                Ok(Self(event))
            }
            Err(problem) => {
                tracing::warn!(field = %problem.field, problem = %problem.message, "event refused: invalid payload");
                Err(refuse(ApiError::invalid_event(problem)))
            }
        }
    }
}

fn is_length_limit(e: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(e, axum::extract::rejection::FailedToBufferBody::LengthLimitError(_))
}

/// The event route: plans and executes a parsed event, and answers it.
#[utoipa::path(post, path = "/process-event", tag = "events", operation_id = "process_event",
    summary = "Process an NSPS event",
    description = "Authenticates, parses, decides the WTL calls, makes them and answers. Safe to redeliver.",
    security(("bearerAuth" = [])),
    request_body(content = Event, content_type = "application/json"),
    responses(
        (status = 202, body = Accepted, description = "Processed (`actions` lists the event's WTL calls and how each ended, \
            a call skipped as stale included), ignored \
            (`message` starts with `Event ignored:`), or already processed."),
        (status = 400, body = ErrorBody, description = "The body could not be read (the connection failed while sending it)."),
        (status = 401, body = ErrorBody, description = "Missing or wrong Bearer token.",
         headers(("www-authenticate" = String, description = "Always `Bearer`."))),
        (status = 403, body = ErrorBody, description = "The caller's address is outside ALLOWED_SOURCE_RANGES, or unknown \
            (AUTHENTICATION_ERROR, `Source address not allowed`); answered before the token is checked or the body read."),
        (status = 404, body = ErrorBody, description = "WTL does not know the subscriber (WTL answered 404 to a call other than delete)."),
        (status = 413, body = ErrorBody, description = "The body is larger than MAX_BODY_BYTES."),
        (status = 415, body = ErrorBody, description = "The Content-Type is not JSON."),
        (status = 422, body = ErrorBody, description = "Malformed JSON, a missing or mistyped field, a field rule broken \
            (`details` names the field), or WTL rejected the data (WTL's text in `error`)."),
        (status = 429, body = ErrorBody, description = "WTL is rate limiting the connector.",
         headers(("retry-after" = String, description = "Seconds to wait before redelivering."))),
        (status = 500, body = ErrorBody, description = "WTL failed or rejected the connector's credentials (SERVICE_ERROR), \
            or an internal error (INTERNAL_ERROR)."),
        (status = 503, body = ErrorBody, description = "WTL or its token endpoint unreachable or timed out, or the shared \
            redelivery store (Redis) unavailable (CONNECTION_ERROR); the connector busy or shutting down (SERVICE_ERROR).",
         headers(("retry-after" = String, description = "Seconds to wait before redelivering."))),
    ))]
pub(crate) async fn handle_event(State(state): State<AppState>, req: Request) -> Response {
    // Held until the answer is made: `MAX_IN_FLIGHT` events at most are read and run at once.
    let Ok(_slot) = state.event_slots.clone().try_acquire_owned() else {
        return shed(&state.metrics);
    };
    let limit = state.server.request_timeout;
    let mut cut_off = state.cut_off.clone();
    tokio::select! {
        biased;
        done = tokio::time::timeout(limit, read_and_decide(&state, req)) => {
            done.unwrap_or_else(|_| timed_out(limit))
        }
        _ = cut_off.wait_for(|cut| *cut) => {
            tracing::warn!("event cut off at SHUTDOWN_TIMEOUT; NSPS will redeliver it");
            ended(ApiError::shutting_down().into_response(), Outcome::CutOff, None, None)
        }
    }
}

/// Reads and parses the event, decides and makes its calls. When `REQUEST_TIMEOUT` or
/// `SHUTDOWN_TIMEOUT` runs out first, [`handle_event`] drops this and answers 503 (never
/// 2xx: the WTL calls may be incomplete); dropping it is safe, see the module comment.
async fn read_and_decide(state: &AppState, mut req: Request) -> Response {
    let ids = match req.extensions_mut().remove::<TraceIds>() {
        Some(ids) => ids,
        None => TraceIds::from_headers(req.headers()),
    };
    let event = match Delivery::from_request(req, state).await {
        Ok(Delivery(event)) => event,
        Err(refused) => return refused,
    };
    let started = Instant::now();
    telemetry::note_event(&event.event_id, &event.data.event_type);
    let (response, outcome) = decide(state, &event, &ids, started).await;
    ended(response, outcome, Some(&event.data.event_type), Some(started.elapsed()))
}

async fn decide(state: &AppState, event: &Event, ids: &TraceIds, started: Instant) -> (Response, Outcome) {
    let calls = match plan::plan(event, &state.rules) {
        Err(problem) => {
            tracing::warn!(field = %problem.field, problem = %problem.message, "event refused: a field breaks a rule");
            return (ApiError::invalid_event(problem).into_response(), Outcome::Invalid);
        }
        Ok(Plan::Skip(reason)) => {
            let message = format!("Event ignored: {reason}");
            tracing::info!(reason = %reason, "event ignored");
            return (accepted(&message, &event.event_id, None), Outcome::Ignored);
        }
        Ok(Plan::Calls(calls)) => calls,
    };

    if state.wtl.dry_run() {
        return (dry_run(event, &calls), Outcome::DryRun);
    }

    let ticket = match admit(state, event, &calls).await {
        Ok(ticket) => ticket,
        Err(answer) => return answer,
    };
    execute(state, event, &calls, ticket, ids, started).await
}

/// Makes the calls in order, stopping at the first failure; the ticket records the outcome.
/// A call to an IMSI that already has a newer event applied is not made: it is in the answer's
/// `actions` as `stale` (the message stays the contract's), and logged with the newer time.
async fn execute(
    state: &AppState,
    event: &Event,
    calls: &[WtlCall],
    ticket: Ticket,
    ids: &TraceIds,
    started: Instant,
) -> (Response, Outcome) {
    let deadline = started + state.wtl.total_timeout();
    let newer = ticket.newer().to_vec();
    let mut done: Vec<(&WtlCall, CallResult)> = Vec::with_capacity(calls.len());
    for call in calls {
        if let Some(n) = newer.iter().find(|n| n.imsi == call.imsi) {
            tracing::info!(imsi = %n.imsi, applied = %n.applied, action = call.action.as_str(), "stale call skipped");
            done.push((call, CallResult::Stale));
            continue;
        }
        match state.wtl.execute(call, ids, deadline).await {
            Ok(result) => done.push((call, result.into())),
            Err(err) => {
                record_span(state, "record failure").around(ticket.failed()).await;
                let api = ApiError::from_wtl(&err, call, &done, &event.event_id);
                tracing::warn!(
                    imsi = %call.imsi,
                    action = call.action.as_str(),
                    status = api.status.as_u16(),
                    error = %err,
                    "event failed"
                );
                return (api.into_response(), Outcome::Failed);
            }
        }
    }
    let recording = record_span(state, "record success");
    if !recording.around(ticket.succeeded()).await {
        recording.failed("store_error");
    }
    // The access line carries the outcome; this detail is for DEBUG.
    tracing::debug!(calls = done.len(), "event processed");
    (
        accepted("Event processed successfully", &event.event_id, Some(&done)),
        Outcome::Processed,
    )
}

/// The span of recording how the event ended: a Redis round trip has one; the in-process memory
/// records in a map update that never waits, which a span would only make costlier to export.
fn record_span(state: &AppState, operation: &'static str) -> StepSpan {
    if state.memory.is_shared() {
        StepSpan::store(operation, state.memory.system())
    } else {
        StepSpan::none()
    }
}

/// Redelivery protection: a duplicate is answered from memory, a stale event is skipped, and
/// concurrent deliveries of one event share one execution. `Err` is the answer when the event
/// does not run.
async fn admit(state: &AppState, event: &Event, calls: &[WtlCall]) -> Result<Ticket, (Response, Outcome)> {
    let span = StepSpan::store("admit", state.memory.system());
    let admission = span.around(state.memory.admit(event, calls)).await;
    if matches!(admission, Admission::Unavailable { .. }) {
        span.failed("store_unavailable");
    }
    match admission {
        Admission::Proceed(ticket) => Ok(ticket),
        Admission::Duplicate => {
            state.metrics.dedup_hit();
            tracing::info!("event already processed; answering from memory");
            Err((
                accepted("Event already processed", &event.event_id, None),
                Outcome::Duplicate,
            ))
        }
        Admission::Stale { imsi, applied } => {
            state.metrics.stale_hit();
            let message =
                format!("Event ignored: stale event: IMSI {imsi} already has a newer event applied ({applied})");
            tracing::info!(%imsi, applied = %applied, "stale event ignored");
            Err((accepted(&message, &event.event_id, None), Outcome::Stale))
        }
        Admission::Unavailable { reason } => {
            tracing::error!(error = %reason, "event refused: the redelivery store is unavailable");
            Err((
                ApiError::store_unavailable(&reason).into_response(),
                Outcome::StoreUnavailable,
            ))
        }
    }
}

/// `application/json`, with parameters, or any `application/*+json`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().as_bytes();
    let (Some(kind), Some(suffix)) = (essence.get(..12), essence.get(essence.len().saturating_sub(5)..)) else {
        return false;
    };
    essence.eq_ignore_ascii_case(b"application/json")
        || (kind.eq_ignore_ascii_case(b"application/") && suffix.eq_ignore_ascii_case(b"+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.nsps.event+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json(""));
        assert!(!is_json("application/jsonx"));
        assert!(is_json(" application/problem+JSON ; q=1"));
    }
}

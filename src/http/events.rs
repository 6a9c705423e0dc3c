//! `POST /process-event`: authenticate, read, parse, plan, execute, answer.
//!
//! Every await between receiving an event and answering it may be the last one (NSPS hangs up,
//! `REQUEST_TIMEOUT` or the shutdown cut-off fires). What each leaves behind when dropped:
//! - reading the body: nothing shared (the `MAX_IN_FLIGHT` permit is released by its drop);
//! - `Memory::admit`, waiting for a twin delivery or for the IMSI's lock: the `Ticket` exists
//!   before the first wait, and its drop unregisters the event and releases or forgets the
//!   locks, telling waiting twins to go ahead;
//! - the rate limiter: the booked slot is given back when no later caller booked after it;
//! - the OAuth2 token fetch: the single-flight lock is released with its guard and the cache
//!   is unchanged until an answer arrives (the refresh token is kept);
//! - the WTL call and the retry sleeps: nothing shared beyond the ticket, released as above.
//!   The call may have reached WTL; the event was not answered 2xx, so NSPS redelivers it and
//!   the idempotent call is repeated.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use crate::memory::Admission;
use crate::nsps::{self, Event};
use crate::plan::{self, Plan, WtlCall};
use crate::telemetry::TraceIds;
use crate::words::push_json_string;
use crate::wtl::Done;

/// A 202 answer: `{"message", "event_id", "actions": [{"action", "imsi", "result"}]}`, the
/// actions only for an event that made WTL calls. Written directly: every value is a short
/// string.
fn accepted(message: &str, event_id: &str, actions: Option<&[(WtlCall, &'static str)]>) -> Response {
    let mut json = String::with_capacity(96 + message.len() + event_id.len() + actions.map_or(0, |a| a.len() * 72));
    json.push_str("{\"message\":");
    push_json_string(&mut json, message);
    json.push_str(",\"event_id\":");
    push_json_string(&mut json, event_id);
    if let Some(actions) = actions {
        json.push_str(",\"actions\":[");
        for (i, (call, result)) in actions.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str("{\"action\":");
            push_json_string(&mut json, call.action.as_str());
            json.push_str(",\"imsi\":");
            push_json_string(&mut json, call.imsi.as_str());
            json.push_str(",\"result\":");
            push_json_string(&mut json, result);
            json.push('}');
        }
        json.push(']');
    }
    json.push('}');
    let json_type = HeaderValue::from_static("application/json");
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, json_type)], json).into_response()
}

/// Metric label for how an event ended.
type Outcome = &'static str;

/// The event route as an axum handler (the trace ids come from the request's extensions).
pub async fn handle_event(State(state): State<AppState>, req: Request) -> Response {
    let ids = req
        .extensions()
        .get::<TraceIds>()
        .cloned()
        .unwrap_or_else(TraceIds::generated);
    handle(&state, req, &ids).await
}

/// Serves one event delivery: any request body type (axum's, or hyper's straight from the
/// connection on the front door's fast path).
pub async fn handle<B>(state: &AppState, req: http::Request<B>, ids: &TraceIds) -> Response
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();

    // Auth comes first: an unauthenticated sender learns nothing and its body is never read.
    if let Err(reason) = super::check_bearer(&parts.headers, &state.settings) {
        tracing::warn!(reason, "event refused: authentication failed");
        return ApiError::unauthorized().into_response();
    }
    if !state.ready.load(std::sync::atomic::Ordering::Relaxed) {
        return ApiError::shutting_down().into_response();
    }
    // Bounded concurrency: beyond MAX_IN_FLIGHT, answer at once rather than queue.
    let Ok(_permit) = state.event_slots.clone().try_acquire_owned() else {
        state.metrics.shed();
        tracing::warn!(
            max_in_flight = state.settings.max_in_flight,
            "event refused: MAX_IN_FLIGHT reached"
        );
        return ApiError::overloaded().into_response();
    };
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        if !is_json(ct.to_str().unwrap_or("?")) {
            return ApiError::unsupported_media_type(ct.to_str().unwrap_or("(not text)")).into_response();
        }
    }
    let limit = state.settings.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::payload_too_large(limit).into_response();
    }

    let timeout = state.settings.request_timeout;
    let work = tokio::time::timeout(timeout, process(state, body, ids, started));
    // Dropping `work` at either exit below is safe: everything it holds in shared state is
    // released by guards (see `memory::Ticket`), so a redelivery finds the event free.
    let mut cut_off = state.cut_off.clone();
    let (response, event_type, outcome) = tokio::select! {
        biased;
        done = work => match done {
            Ok(done) => done,
            Err(_) => {
                tracing::error!(
                    timeout_s = timeout.as_secs_f64(),
                    "event not completed within REQUEST_TIMEOUT"
                );
                (ApiError::request_timeout(timeout).into_response(), None, "timeout")
            }
        },
        _ = cut_off.wait_for(|cut| *cut) => {
            tracing::warn!("event cut off at SHUTDOWN_TIMEOUT; NSPS will redeliver it");
            (ApiError::shutting_down().into_response(), None, "cut_off")
        }
    };
    crate::telemetry::note_outcome(outcome);
    state
        .metrics
        .event(event_type.as_deref().unwrap_or("unknown"), outcome, started.elapsed());
    response
}

/// Reads, parses, plans and executes one event. Returns the answer, the event type (once
/// known) and the outcome label.
async fn process<B>(state: &AppState, body: B, ids: &TraceIds, started: Instant) -> (Response, Option<String>, Outcome)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = state.settings.max_body_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return (ApiError::payload_too_large(limit).into_response(), None, "invalid");
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the event body");
            return (
                ApiError::unreadable_body("the connection failed while it was sent").into_response(),
                None,
                "invalid",
            );
        }
    };
    let event = match nsps::parse_event(&bytes) {
        Ok(e) => e,
        Err(problem) => {
            tracing::warn!(field = %problem.field, problem = %problem.message, "event refused: invalid payload");
            return (ApiError::invalid_event(problem).into_response(), None, "invalid");
        }
    };
    crate::telemetry::note_event(&event.event_id, &event.data.event_type);
    let event_type = Some(event.data.event_type.clone());
    tracing::debug!(bytes = bytes.len(), "event received");

    let (response, outcome) = decide(state, &event, ids, started).await;
    (response, event_type, outcome)
}

async fn decide(state: &AppState, event: &Event, ids: &TraceIds, started: Instant) -> (Response, Outcome) {
    let calls = match plan::plan(event, &state.settings.rules) {
        Err(problem) => {
            tracing::warn!(field = %problem.field, problem = %problem.message, "event refused: a field breaks a rule");
            return (ApiError::invalid_event(problem).into_response(), "invalid");
        }
        Ok(Plan::Skip(reason)) => {
            let message = format!("Event ignored: {reason}");
            tracing::info!(reason = %reason, "event ignored");
            return (accepted(&message, &event.event_id, None), "ignored");
        }
        Ok(Plan::Calls(calls)) => calls,
    };

    // Redelivery protection: a duplicate is answered from memory, a stale event is skipped, and
    // concurrent deliveries of one event share one execution.
    let ticket = match state.memory.admit(event, &calls).await {
        Admission::Duplicate => {
            state.metrics.dedup_hit();
            tracing::info!("event already processed; answering from memory");
            return (accepted("Event already processed", &event.event_id, None), "duplicate");
        }
        Admission::Stale { imsi, applied } => {
            state.metrics.stale_hit();
            let message =
                format!("Event ignored: stale event: IMSI {imsi} already has a newer event applied ({applied})");
            tracing::info!(%imsi, applied = %applied, "stale event ignored");
            return (accepted(&message, &event.event_id, None), "stale");
        }
        Admission::Proceed(ticket) => ticket,
        Admission::Unavailable { reason } => {
            tracing::error!(error = %reason, "event refused: the redelivery store is unavailable");
            return (
                ApiError::store_unavailable(&reason).into_response(),
                "store_unavailable",
            );
        }
    };

    let deadline = started + state.settings.wtl.total_timeout;
    let mut done: Vec<(WtlCall, &'static str)> = Vec::with_capacity(calls.len());
    for call in &calls {
        match state.wtl.execute(call, ids, deadline).await {
            Ok(result) => done.push((
                call.clone(),
                match result {
                    Done::Applied => "applied",
                    Done::AlreadyApplied => "already_applied",
                },
            )),
            Err(err) => {
                ticket.failed().await;
                let api = ApiError::from_wtl(&err, call, &done, &event.event_id);
                tracing::warn!(
                    imsi = %call.imsi,
                    action = call.action.as_str(),
                    status = api.status.as_u16(),
                    error = %err,
                    "event failed"
                );
                return (api.into_response(), "failed");
            }
        }
    }
    ticket.succeeded().await;
    // The access line carries the outcome; this detail is for DEBUG.
    tracing::debug!(calls = done.len(), "event processed");
    (
        accepted("Event processed successfully", &event.event_id, Some(&done)),
        "processed",
    )
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

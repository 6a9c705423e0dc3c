//! The HTTP edge: routes and the layers every request goes through, on axum and tower-http.
//!
//! Every route, the event route included, goes through the same layers, each in one place
//! (outermost first):
//! 1. trailing slashes trimmed (`NormalizePath`);
//! 2. unusable trace ids dropped, then `x-b3-traceid` and `x-request-id` set (a UUID v4 when
//!    missing) and echoed on the answer (`SetRequestId`, `PropagateRequestId`);
//! 3. the request's trace ids and context worked out once ([`access::with_trace_ids`]), where its
//!    exported server span starts when spans are exported;
//! 4. the request's span of the logs (`TraceLayer`, [`access::request_span`]): every line logged
//!    for it carries its ids;
//! 5. the access line ([`access::log`]), with Cloud Logging's `httpRequest` object; it first works
//!    out the client address ([`source::note_client`]: the socket's peer, or the entry of
//!    `X-Forwarded-For` that `TRUSTED_PROXIES` points at), runs the rest in the server span's
//!    context and ends that span with the answer;
//! 6. a panic answered 500 `INTERNAL_ERROR` (`CatchPanic`).
//!
//! The event routes and `/metrics` refuse sources outside `ALLOWED_SOURCE_RANGES`
//! ([`source::refusal`]) first; the event routes then add, in this order: the constant-time
//! Bearer check and the shutdown gate (both in [`events::gate`], with the source check),
//! load shedding beyond `MAX_IN_FLIGHT`, `REQUEST_TIMEOUT`, and the body limit; the handler
//! reads and parses the event and stops it at the shutdown cut-off.
//!
//! It knows nothing about WTL beyond the outcome types the client returns, which
//! [`error::ApiError`] turns into statuses in one place.

mod access;
pub(crate) mod answers;
pub(crate) mod error;
pub(crate) mod events;
mod openapi;
mod outcome;
mod settings;
pub(crate) mod source;
mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;
use tower::{Layer, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::memory::Store;
use crate::metrics::Metrics;
use crate::plan::PlanRules;
use crate::telemetry::{self, MakeTraceId, X_B3_TRACEID, X_REQUEST_ID};
use crate::wtl::WtlClient;
use error::ApiError;
pub(crate) use openapi::document as openapi_document;
pub(crate) use settings::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PORT, DEFAULT_SHUTDOWN_TIMEOUT,
    REQUEST_TIMEOUT_MARGIN, RESERVED_PATHS, Settings,
};
pub(crate) use tokens::ApiTokens;

/// The service name in the health answer.
pub(crate) const SERVICE_NAME: &str = "WTL HLR/HSS Connector";

/// Everything a request handler can reach. Every layer of the event route holds a copy, so a
/// request clones it several times: one shared pointer keeps that to one counter each time.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    /// The server's settings.
    pub(crate) server: Arc<Settings>,
    /// What each event type does to the HLR/HSS.
    pub(crate) rules: Arc<PlanRules>,
    pub(crate) wtl: Arc<WtlClient>,
    /// What `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// The redelivery memory.
    pub memory: Arc<Store>,
    /// `MAX_IN_FLIGHT` permits; an event that finds none is refused with 503.
    pub(crate) event_slots: Arc<Semaphore>,
    /// The Cloud project log lines name their traces in, once known.
    pub(crate) project: telemetry::Project,
    /// False once shutdown has begun.
    pub ready: Arc<AtomicBool>,
    /// Becomes true when `SHUTDOWN_TIMEOUT` has run out: events still in flight stop and are
    /// answered 503, so NSPS redelivers them instead of losing the answer with the connection.
    pub(crate) cut_off: tokio::sync::watch::Receiver<bool>,
}

/// The HTTP surface plus `extra` routes, which go through the same layers (used to embed the
/// connector, and by tests).
pub(crate) fn router_with(state: AppState, extra: Router<AppState>) -> NormalizePath<Router> {
    let mut app = extra
        .route("/", get(health).merge(events::route(&state)))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(metrics).layer(middleware::from_fn_with_state(state.clone(), source::allow_source)),
        )
        .route("/openapi.json", get(openapi))
        .route("/process-event", events::route(&state));
    if let Some(path) = &state.server.events_path {
        app = app.route(path, events::route(&state));
    }
    let project = state.project.clone();
    let events_path = state.server.events_path.clone();
    let app = app
        .fallback(not_found)
        // Registered after every route so it covers them all; axum adds the `Allow` header.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .map_request(access::drop_unusable_ids)
                .layer(SetRequestIdLayer::new(X_B3_TRACEID.clone(), MakeTraceId))
                .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeTraceId))
                .layer(PropagateRequestIdLayer::new(X_B3_TRACEID.clone()))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
                .map_request(move |req| access::with_trace_ids(req, events_path.as_deref()))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(move |req: &Request| access::request_span(req, project.get()))
                        // The access line below replaces the layer's own lines.
                        .on_request(())
                        .on_response(())
                        .on_failure(()),
                )
                .layer(middleware::from_fn_with_state(state.clone(), access::log))
                .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response())),
        )
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(app)
}

/// At most `max` bytes of `text`, cut at a character boundary: request-supplied text quoted in
/// a log line or an answer is cut short.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[utoipa::path(get, path = "/health", tag = "operations", summary = "Health", operation_id = "health",
    responses((status = 200, description = "Healthy.", body = answers::Health)))]
pub(crate) async fn health() -> Response {
    axum::Json(answers::Health::NOW).into_response()
}

/// Ready while serving and while the redelivery memory can be used (with `REDIS_URL`: Redis
/// answers), so a load balancer sends no events to an instance that would refuse them.
#[utoipa::path(get, path = "/ready", tag = "operations", summary = "Readiness", operation_id = "ready",
    responses(
        (status = 200, description = "Serving.", body = answers::Ready),
        (status = 503, description = "Shutting down, or the shared redelivery store (Redis) does not answer.",
         body = error::Body, headers(("retry-after" = String, description = "Seconds to wait before asking again."))),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        return ApiError::shutting_down().into_response();
    }
    if !state.memory.available().await {
        return ApiError::store_unavailable("Redis does not answer").into_response();
    }
    axum::Json(answers::Ready::NOW).into_response()
}

/// Prometheus metrics; behind the Bearer token unless `METRICS_PUBLIC=true`.
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics", operation_id = "metrics",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or wrong Bearer token (unless METRICS_PUBLIC=true).", body = error::Body,
         headers(("www-authenticate" = String, description = "Always `Bearer`."))),
        (status = 403, description = "The caller's address is outside ALLOWED_SOURCE_RANGES, or unknown.", body = error::Body),
    ))]
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.server.metrics_public && check_bearer(&headers, &state.server).is_err() {
        return ApiError::unauthorized().into_response();
    }
    state.metrics.set_token_requests(state.wtl.token_requests());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", summary = "This document", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
pub(crate) async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
        .into_response()
}

/// `Authorization: Bearer <token>`, scheme in any case, token compared in constant time against
/// every `API_TOKEN`. The error says why, for the log (never the value).
pub(crate) fn check_bearer(headers: &HeaderMap, settings: &Settings) -> Result<(), &'static str> {
    let value = headers.get(header::AUTHORIZATION).ok_or("no Authorization header")?;
    let text = value.to_str().map_err(|_| "Authorization header is not text")?;
    let (scheme, token) = text
        .trim()
        .split_once(' ')
        .ok_or("Authorization header has no scheme")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization scheme is not Bearer");
    }
    if settings.api_tokens.matches(token.trim().as_bytes()) {
        Ok(())
    } else {
        Err("the token is not one of API_TOKEN")
    }
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(uri.path()).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::method_not_allowed(method.as_str(), uri.path()).into_response()
}

/// Marks the service as no longer ready (shutdown has begun).
pub fn set_not_ready(flag: &AtomicBool) {
    flag.store(false, Ordering::Relaxed);
}

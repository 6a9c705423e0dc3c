//! The HTTP edge: routes and the layers every request goes through, on axum and tower-http.
//!
//! Every route, the event route included, goes through the same layers, each in one place
//! (outermost first):
//! 1. trailing slashes trimmed (`NormalizePath`);
//! 2. unusable trace ids dropped, then `x-b3-traceid` and `x-request-id` set (a UUID v4 when
//!    missing) and echoed on the answer (`SetRequestId`, `PropagateRequestId`);
//! 3. the request's span (`TraceLayer`): every line logged for it carries its ids;
//! 4. the access line ([`access_log`]), with Cloud Logging's `httpRequest` object; it first works
//!    out the client address ([`source::note_client`]: the socket's peer, or the entry of
//!    `X-Forwarded-For` that `TRUSTED_PROXIES` points at);
//! 5. a panic answered 500 `INTERNAL_ERROR` (`CatchPanic`).
//!
//! The event routes and `/metrics` refuse sources outside `ALLOWED_SOURCE_RANGES`
//! ([`source::refusal`]) first; the event routes then add, in this order: the constant-time
//! Bearer check and the shutdown gate (both in [`events::gate`], with the source check),
//! load shedding beyond `MAX_IN_FLIGHT`, `REQUEST_TIMEOUT`, and the body limit; the handler
//! reads and parses the event and stops it at the shutdown cut-off.
//!
//! It knows nothing about WTL beyond the outcome types the client returns, which
//! [`error::ApiError`] turns into statuses in one place.

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
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::memory::Store;
use crate::metrics::Metrics;
use crate::plan::PlanRules;
use crate::telemetry::{self, MakeTraceId, TraceContext, TraceIds, X_B3_TRACEID, X_REQUEST_ID};
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
                .map_request(drop_unusable_ids)
                .layer(SetRequestIdLayer::new(X_B3_TRACEID.clone(), MakeTraceId))
                .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeTraceId))
                .layer(PropagateRequestIdLayer::new(X_B3_TRACEID.clone()))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
                .map_request(with_trace_context)
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(move |req: &Request| {
                            let computed;
                            let ids = match req.extensions().get::<TraceIds>() {
                                Some(ids) => ids,
                                None => {
                                    computed = trace_ids_of(req);
                                    &computed
                                }
                            };
                            telemetry::request_span(
                                &ids.request_id,
                                &ids.unique_id,
                                req.method().as_str(),
                                route_of(req.uri().path(), events_path.as_deref()),
                                &ids.trace,
                                project.get(),
                            )
                        })
                        // The access line below replaces the layer's own lines.
                        .on_request(())
                        .on_response(())
                        .on_failure(()),
                )
                .layer(middleware::from_fn_with_state(state.clone(), access_log))
                .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response())),
        )
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(app)
}

/// A trace id header that is not a sane value (printable ASCII, at most 128 characters) is
/// dropped, so a fresh id replaces it: it would otherwise reach logs and WTL's headers.
fn drop_unusable_ids(mut req: Request) -> Request {
    for name in [&X_B3_TRACEID, &X_REQUEST_ID] {
        if req.headers().get(name).is_some_and(|v| !usable_id(v.as_bytes())) {
            req.headers_mut().remove(name);
        }
    }
    req
}

/// The request's trace ids and context, worked out once from its headers and kept in its
/// extensions: the span, the logs and every WTL call of the request use these.
fn with_trace_context(mut req: Request) -> Request {
    let ids = trace_ids_of(&req);
    req.extensions_mut().insert(ids);
    req
}

/// The trace ids and context of a request (the ids already checked or generated at the edge).
pub(crate) fn trace_ids_of(req: &Request) -> TraceIds {
    TraceIds::new(req.headers(), TraceContext::from_headers(req.headers()))
}

/// The route a request path names, for span names (a bounded set: an unknown path is `/*`).
fn route_of<'a>(path: &'a str, events_path: Option<&str>) -> &'a str {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    match path {
        "/" | "/health" | "/ready" | "/metrics" | "/openapi.json" | "/process-event" => path,
        p if Some(p) == events_path => p,
        _ => "/*",
    }
}

fn usable_id(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 128 && value.iter().all(u8::is_ascii_graphic)
}

/// One access line per request, inside the request's span (so it carries the ids, and the
/// event's id, type and outcome once known): method, path, status, latency, and Cloud
/// Logging's `httpRequest` object.
async fn access_log(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let _in_flight = state.metrics.in_flight();
    source::note_client(&state, &mut req);
    let started = Instant::now();
    let method = req.method().clone();
    let path = prefix(req.uri().path(), 200).to_string();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| prefix(v, 200).to_string());
    let remote_ip = req
        .extensions()
        .get::<source::ClientAddr>()
        .and_then(|c| c.0)
        .map(|ip| ip.to_string());
    let url = full_url(&req, state.server.trusted_proxies > 0);
    let protocol = protocol_name(req.version());
    let request_size = body_size(req.headers());
    let resp = next.run(req).await;
    let latency = started.elapsed();
    let status = resp.status().as_u16();
    telemetry::note_status(status);
    if let Some(end) = resp.extensions().get::<outcome::Ended>() {
        telemetry::note_outcome(end.outcome.as_str());
        let event_type = end.event_type.as_deref().unwrap_or("unknown");
        state
            .metrics
            .event(event_type, end.outcome.as_str(), end.took.unwrap_or(latency));
    }
    // Sizes as decimal strings: they are int64 in Cloud Logging's HttpRequest.
    let response_size = http_body::Body::size_hint(resp.body()).exact().map(|n| n.to_string());
    tracing::info!(
        method = method.as_str(),
        path = path.as_str(),
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        "httpRequest.requestMethod" = method.as_str(),
        "httpRequest.requestUrl" = url.as_str(),
        "httpRequest.requestSize" = request_size,
        "httpRequest.status" = status,
        "httpRequest.responseSize" = response_size,
        "httpRequest.latency" = format!("{:.3}s", latency.as_secs_f64()),
        "httpRequest.protocol" = protocol,
        "httpRequest.userAgent" = user_agent,
        "httpRequest.remoteIp" = remote_ip,
        "request completed"
    );
    resp
}

/// The URL the caller asked for: scheme (behind a trusted proxy, `X-Forwarded-Proto`), host
/// (`Host`, or the HTTP/2 authority), path and query; cut at 2000 characters.
fn full_url(req: &Request, behind_proxy: bool) -> String {
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = behind_proxy
        .then(|| text("x-forwarded-proto"))
        .flatten()
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| text("host"))
        .unwrap_or("localhost");
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    prefix(&format!("{scheme}://{host}{path}"), 2000).to_string()
}

/// `Content-Length` of the request, as a decimal string.
fn body_size(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n.to_string())
}

fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_trace_ids_are_kept() {
        assert!(usable_id(b"4bf92f3577b34da6"));
        assert!(!usable_id(b""));
        assert!(!usable_id(b"has space"));
        assert!(!usable_id("é".as_bytes()));
        assert!(!usable_id(&[b'a'; 129]));
    }
}

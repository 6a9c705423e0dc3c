//! The HTTP edge: routes, trace ids, access log, auth, error bodies.
//!
//! It knows nothing about WTL beyond the outcome types the client returns, which
//! [`error::ApiError`] turns into statuses in one place.
//!
//! [`FrontDoor`] is the service the server runs. An event delivery (`POST` to the event path)
//! goes from it straight to the event handler, with the same trace ids, request log fields,
//! access line and panic answer the router's middleware gives; every other request goes
//! through axum's router. The event path is the one NSPS calls for every event, and the
//! router's per-request work (route lookup, boxed middleware, path rewriting) measurably cost
//! throughput there (see the README's performance section).

pub mod error;
pub mod events;

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::config::{LogFormat, Settings};
use crate::memory::Store;
use crate::metrics::Metrics;
use crate::telemetry::{RequestLog, TraceIds, X_B3_TRACEID, X_REQUEST_ID};
use crate::wtl::WtlClient;
use error::ApiError;

/// The service name in the health answer.
pub const SERVICE_NAME: &str = "WTL HLR/HSS Connector";

/// Everything a request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub wtl: Arc<WtlClient>,
    pub metrics: Arc<Metrics>,
    pub memory: Arc<Store>,
    /// `MAX_IN_FLIGHT` permits; an event that finds none is refused with 503.
    pub event_slots: Arc<Semaphore>,
    /// False once shutdown has begun.
    pub ready: Arc<AtomicBool>,
    /// Becomes true when `SHUTDOWN_TIMEOUT` has run out: events still in flight stop and are
    /// answered 503, so NSPS redelivers them instead of losing the answer with the connection.
    pub cut_off: tokio::sync::watch::Receiver<bool>,
}

/// The whole HTTP surface. Trailing slashes are trimmed before routing.
pub fn router(state: AppState) -> NormalizePath<Router> {
    router_with(state, Router::new())
}

/// The HTTP surface plus `extra` routes, which get the same trace ids, access log, panic
/// handling and error bodies (used to embed the connector, and by tests).
pub fn router_with(state: AppState, extra: Router<AppState>) -> NormalizePath<Router> {
    let mut app = extra
        .route("/", get(health).post(events::handle_event))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/process-event", post(events::handle_event));
    if let Some(path) = &state.settings.events_path {
        app = app.route(path, post(events::handle_event));
    }
    let app = app
        .fallback(not_found)
        // Registered after every route so it covers them all; axum adds the `Allow` header.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(middleware::from_fn_with_state(state.clone(), trace_requests))
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(app)
}

/// The service the server runs: event deliveries straight to their handler, the rest through
/// the router.
#[derive(Clone)]
pub struct FrontDoor {
    state: AppState,
    router: NormalizePath<Router>,
}

impl FrontDoor {
    pub fn new(state: AppState, router: NormalizePath<Router>) -> Self {
        Self { state, router }
    }
}

/// The paths an event is delivered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventRoute {
    Root,
    ProcessEvent,
    /// `EVENTS_PATH`.
    Custom,
}

impl EventRoute {
    /// Which one a `POST` to `path` is, trailing slashes aside (the router trims them the same
    /// way). Anything else, however close, is left to the router.
    fn of(method: &Method, path: &str, events_path: Option<&str>) -> Option<Self> {
        if method != Method::POST {
            return None;
        }
        match path.trim_end_matches('/') {
            "" => Some(Self::Root),
            "/process-event" => Some(Self::ProcessEvent),
            trimmed => (events_path == Some(trimmed)).then_some(Self::Custom),
        }
    }

    /// The path as the access line names it.
    fn path(self, events_path: Option<&str>) -> &str {
        match self {
            Self::Root => "/",
            Self::ProcessEvent => "/process-event",
            Self::Custom => events_path.unwrap_or_default(),
        }
    }
}

type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for FrontDoor {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedAnswer;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let events_path = self.state.settings.events_path.as_deref();
        if let Some(route) = EventRoute::of(req.method(), req.uri().path(), events_path) {
            let state = self.state.clone();
            Box::pin(async move {
                let ids = trace_ids(req.headers());
                let path = route.path(state.settings.events_path.as_deref());
                let work = CatchPanic(Box::pin(events::handle(&state, req, &ids)));
                Ok(traced(&state, &ids, &Method::POST, path, work).await)
            })
        } else {
            let router = self.router.clone();
            Box::pin(async move {
                let req = req.map(axum::body::Body::new);
                router.oneshot(req).await
            })
        }
    }
}

/// Polls a future and answers 500 `INTERNAL_ERROR` if it panics (the panic hook has logged it).
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future<Output = Response>> Future for CatchPanic<F> {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(ApiError::internal().into_response()),
        }
    }
}

/// The caller's trace ids, or fresh ones.
fn trace_ids(headers: &HeaderMap) -> TraceIds {
    TraceIds {
        request_id: incoming_id(headers, &X_B3_TRACEID),
        unique_id: incoming_id(headers, &X_REQUEST_ID),
    }
}

/// Trace ids in, trace ids out, the request's log fields and one access line (the router's
/// middleware; the front door does the same for event deliveries).
async fn trace_requests(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ids = trace_ids(req.headers());
    let method = req.method().clone();
    let uri = req.uri().clone();
    req.extensions_mut().insert(ids.clone());
    traced(&state, &ids, &method, uri.path(), next.run(req)).await
}

/// Runs `work` with the request's log fields, then puts the trace ids on its answer and writes
/// the access line.
async fn traced<F>(state: &AppState, ids: &TraceIds, method: &Method, path: &str, work: F) -> Response
where
    F: Future<Output = Response>,
{
    let _in_flight = state.metrics.in_flight();
    let started = Instant::now();
    // JSON lines take the request's fields from `RequestLog`; text lines need a span for them.
    let span = match state.settings.log_format {
        LogFormat::Text => tracing::info_span!(
            "request",
            request_id = ids.request_id.as_str(),
            unique_id = ids.unique_id.as_str(),
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty,
            outcome = tracing::field::Empty,
        ),
        LogFormat::Json => tracing::Span::none(),
    };
    let log = RequestLog::new(ids, span);
    log.scope(async move {
        let mut resp = work.await;
        ids.write_headers(resp.headers_mut());
        let status = resp.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            method = method.as_str(),
            path = prefix(path, 200),
            status,
            latency_ms,
            "request completed"
        );
        resp
    })
    .await
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The caller's id when it is a sane header value (printable ASCII, at most 128 characters),
/// else a fresh UUID v4.
fn incoming_id(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(crate::telemetry::new_trace_id)
}

async fn health() -> Response {
    let body = serde_json::json!({
        "status": "Healthy",
        "service": SERVICE_NAME,
        "version": env!("CARGO_PKG_VERSION"),
    });
    axum::Json(body).into_response()
}

/// Ready while serving and while the redelivery memory can be used (with `REDIS_URL`: Redis
/// answers), so a load balancer sends no events to an instance that would refuse them.
async fn ready(State(state): State<AppState>) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        return ApiError::shutting_down().into_response();
    }
    if !state.memory.available().await {
        return ApiError::store_unavailable("Redis does not answer").into_response();
    }
    axum::Json(serde_json::json!({"status": "Ready"})).into_response()
}

/// Prometheus metrics; behind the Bearer token unless `METRICS_PUBLIC=true`.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.settings.metrics_public && check_bearer(&headers, &state.settings).is_err() {
        return ApiError::unauthorized().into_response();
    }
    if let Some(tokens) = state.wtl.token_source() {
        state
            .metrics
            .set_token_requests(tokens.requests.load(Ordering::Relaxed));
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

/// `Authorization: Bearer <token>`, scheme in any case, token compared in constant time against
/// every `API_TOKEN`. The error says why, for the log (never the value).
pub fn check_bearer(headers: &HeaderMap, settings: &Settings) -> Result<(), &'static str> {
    let value = headers.get(header::AUTHORIZATION).ok_or("no Authorization header")?;
    let text = value.to_str().map_err(|_| "Authorization header is not text")?;
    let (scheme, token) = text
        .trim()
        .split_once(' ')
        .ok_or("Authorization header has no scheme")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization scheme is not Bearer");
    }
    if settings.token_matches(token.trim().as_bytes()) {
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
    fn event_deliveries_are_told_apart_from_other_requests() {
        let custom = Some("/nsps/events");
        let logged = |method: &Method, path: &str| EventRoute::of(method, path, custom).map(|r| r.path(custom));
        for (path, named) in [
            ("/", "/"),
            ("/process-event", "/process-event"),
            ("/process-event/", "/process-event"),
            ("/process-event//", "/process-event"),
            ("/nsps/events", "/nsps/events"),
            ("/nsps/events/", "/nsps/events"),
        ] {
            assert_eq!(logged(&Method::POST, path), Some(named), "{path}");
        }
        for path in ["/process-event", "/"] {
            assert_eq!(logged(&Method::GET, path), None, "GET {path}");
            assert_eq!(logged(&Method::PUT, path), None, "PUT {path}");
        }
        for path in [
            "/process-events",
            "/process",
            "/health",
            "//process-event",
            "/nsps/events/x",
            "/nsps",
        ] {
            assert_eq!(logged(&Method::POST, path), None, "{path}");
        }
        assert_eq!(EventRoute::of(&Method::POST, "/nsps/events", None), None);
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_internal_error() {
        let boom = async {
            let v: Vec<u8> = Vec::new();
            #[allow(clippy::indexing_slicing)]
            let _ = v[usize::from(v.is_empty())];
            StatusCode::OK.into_response()
        };
        let resp = CatchPanic(Box::pin(boom)).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["type"], "INTERNAL_ERROR", "{json}");

        let fine = CatchPanic(Box::pin(async { StatusCode::ACCEPTED.into_response() })).await;
        assert_eq!(fine.status(), StatusCode::ACCEPTED);
    }
}

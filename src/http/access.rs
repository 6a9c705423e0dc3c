//! The request's identity and its access line: trace ids checked and kept, the request's span,
//! and the one line logged per request with Cloud Logging's `httpRequest` object.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Duration;
use tokio::time::Instant;

use super::{AppState, outcome, source};
use crate::telemetry::{self, ServerSpan, TraceIds, X_B3_TRACEID, X_REQUEST_ID};

/// A trace id header that is not a sane value (printable ASCII, at most 128 characters) is
/// dropped, so a fresh id replaces it: it would otherwise reach logs and WTL's headers.
pub(super) fn drop_unusable_ids(mut req: Request) -> Request {
    for name in [&X_B3_TRACEID, &X_REQUEST_ID] {
        if req.headers().get(name).is_some_and(|v| !usable_id(v.as_bytes())) {
            req.headers_mut().remove(name);
        }
    }
    req
}

/// The request's trace ids and context, worked out once from its headers (after the id
/// layers) and kept in its extensions: the span, the logs and every WTL call of the request use
/// these. When spans are exported, the request's server span starts here (its ids become the
/// request's) and is kept beside them.
pub(super) fn with_trace_ids(mut req: Request, events_path: Option<&str>) -> Request {
    let mut ids = TraceIds::from_headers(req.headers());
    let route = route_of(req.uri().path(), events_path);
    if let Some(server) = ServerSpan::start(req.method().as_str(), route, &ids.request_id, &mut ids.trace) {
        req.extensions_mut().insert(server);
    }
    req.extensions_mut().insert(ids);
    req
}

/// The request's span for its log lines, from the ids [`with_trace_ids`] kept (or, for a request
/// that did not pass it, its headers).
pub(super) fn request_span(req: &Request, project: Option<&str>) -> tracing::Span {
    let from_headers;
    let ids = match req.extensions().get::<TraceIds>() {
        Some(ids) => ids,
        None => {
            from_headers = TraceIds::from_headers(req.headers());
            &from_headers
        }
    };
    telemetry::request_span(&ids.request_id, &ids.unique_id, &ids.trace, project)
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
pub(super) async fn log(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let _in_flight = state.metrics.in_flight();
    source::note_client(&state, &mut req);
    let started = Instant::now();
    let method = req.method().clone();
    let path = super::prefix(req.uri().path(), 200).to_string();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| super::prefix(v, 200).to_string());
    let remote_ip = req
        .extensions()
        .get::<source::ClientAddr>()
        .and_then(|c| c.0)
        .map(|ip| ip.to_string());
    let url = full_url(&req, state.server.trusted_proxies > 0);
    let protocol = protocol_name(req.version());
    let request_size = body_size(req.headers());
    let server = req.extensions().get::<ServerSpan>().cloned();
    let resp = ServerSpan::around(server.as_ref(), next.run(req)).await;
    let latency = started.elapsed();
    let status = resp.status().as_u16();
    let ended = resp.extensions().get::<outcome::Ended>();
    if let Some(server) = &server {
        server.end(status, ended.map(|end| end.outcome.as_str()));
    }
    if let Some(end) = ended {
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
        "httpRequest.latency" = latency_text(latency).as_str(),
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
    let mut url = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    for part in [scheme, "://", host, path] {
        url.push_str(part);
    }
    url.truncate(super::prefix(&url, 2000).len());
    url
}

/// Cloud Logging's `latency` (a `Duration` in JSON: seconds with an `s`), to the nearest
/// millisecond: `0.004s`.
fn latency_text(latency: Duration) -> String {
    use std::fmt::Write as _;
    let millis = (latency.as_micros() + 500) / 1000;
    let mut text = String::with_capacity(16);
    let _ = write!(text, "{}.{:03}s", millis / 1000, millis % 1000);
    text
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

    #[test]
    fn latency_is_seconds_to_the_nearest_millisecond() {
        assert_eq!(latency_text(Duration::ZERO), "0.000s");
        assert_eq!(latency_text(Duration::from_micros(499)), "0.000s");
        assert_eq!(latency_text(Duration::from_micros(500)), "0.001s");
        assert_eq!(latency_text(Duration::from_micros(4_321)), "0.004s");
        assert_eq!(latency_text(Duration::from_micros(12_345_678)), "12.346s");
        assert_eq!(latency_text(Duration::from_millis(3_000)), "3.000s");
    }
}

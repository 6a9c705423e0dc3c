//! Logs and traces.
//!
//! Logs: one JSON object per line on stdout, through tracing-subscriber.
//! Every line has `timestamp` (RFC 3339, UTC; and `timestampSeconds`/`timestampNanos`, the form
//! Cloud Logging takes as the entry's time), `level` (and `severity`, which Cloud Logging reads),
//! `message`, `target`, the event's own fields and the fields of the spans it was written in.
//! Each request runs in a `request` span (made by the HTTP edge's trace layer) that carries
//! `request_id` and `unique_id`, then `event_id`, `event_type` and `outcome` once known, and, when
//! the Cloud project is known, `logging.googleapis.com/trace`, `.../spanId` and `.../trace_sampled`;
//! so every line written for a request has them at the top level. The layout is in [`line`];
//! lines go to stdout in batches ([`batch`]): a request only appends its line to a buffer, and a
//! writer thread writes the batch with one system call at most 50 ms after its first line.
//!
//! Traces: the request's trace context ([`context`]) is continued on every WTL call; with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` the spans are exported over OTLP ([`otel`]).

mod batch;
mod context;
mod gcp;
mod line;
pub(crate) mod otel;
mod redact;
mod settings;
mod spans;

use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub(crate) use context::TraceContext;
pub(crate) use gcp::{CloudSettings, METADATA_HOST, Project};
pub(crate) use line::{JsonLine, NoText, SpanFields};
pub(crate) use otel::{OtelSettings, Protocol, SamplerSetting};
pub(crate) use redact::hide_userinfo;
pub(crate) use settings::Settings;
pub(crate) use spans::{CallTarget, ServerSpan, StepSpan};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Json,
    Text,
}

/// The NSPS trace ids of one request: `x-b3-traceid` (logged as `request_id`) and
/// `x-request-id` (logged as `unique_id`), sent on every WTL call made for the request, and the
/// request's trace context (continued on every WTL call as `traceparent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceIds {
    pub request_id: String,
    pub unique_id: String,
    pub trace: TraceContext,
}

/// The header NSPS sends its trace id in (`request_id` in logs).
pub(crate) static X_B3_TRACEID: http::HeaderName = http::HeaderName::from_static("x-b3-traceid");
/// The header NSPS sends its delivery id in (`unique_id` in logs).
pub(crate) static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
/// W3C Trace Context, read from NSPS and sent to WTL.
pub(crate) static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// Google's own trace header (`TRACE_ID/SPAN_ID;o=1`).
pub(crate) static X_CLOUD_TRACE_CONTEXT: http::HeaderName = http::HeaderName::from_static("x-cloud-trace-context");

impl TraceIds {
    /// The ids on a request whose id headers the edge has already checked or generated, and the
    /// trace context the edge worked out for it.
    pub(crate) fn new(headers: &http::HeaderMap, trace: TraceContext) -> Self {
        let text = |name: &http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Self {
            request_id: text(&X_B3_TRACEID).unwrap_or_else(new_trace_id),
            unique_id: text(&X_REQUEST_ID).unwrap_or_else(new_trace_id),
            trace,
        }
    }

    /// The ids and trace context of a request, all from its headers.
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Self {
        Self::new(headers, TraceContext::from_headers(headers))
    }

    #[cfg(test)]
    pub(crate) fn generated() -> Self {
        Self {
            request_id: new_trace_id(),
            unique_id: new_trace_id(),
            trace: TraceContext::from_headers(&http::HeaderMap::new()),
        }
    }

    /// The `traceparent` for a call made in `step` (its client span when spans are exported,
    /// else the request's own span).
    pub(crate) fn traceparent_for(&self, step: &StepSpan) -> String {
        match step.span_context() {
            Some(cx) => format!(
                "00-{}-{}-{:02x}",
                cx.trace_id(),
                cx.span_id(),
                u8::from(cx.is_sampled())
            ),
            None => self.trace.traceparent(&self.trace.span_id, self.trace.sampled),
        }
    }
}

/// A fresh UUID v4 for a trace id the caller did not send. Trace ids need to be unique, not
/// secret, so the random bits come from a fast per-thread generator rather than the operating
/// system (a system call per id, two per request).
pub(crate) fn new_trace_id() -> String {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    id.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// tower-http's request-id layer with [`new_trace_id`].
#[derive(Clone, Copy, Default)]
pub(crate) struct MakeTraceId;

impl tower_http::request_id::MakeRequestId for MakeTraceId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        http::HeaderValue::from_str(&new_trace_id())
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The span of one request, whose fields are on every log line written for it (the exported
/// server span is [`ServerSpan`]). Made at ERROR level so it exists whatever `LOG_LEVEL` lets
/// through.
pub(crate) fn request_span(
    request_id: &str,
    unique_id: &str,
    trace: &TraceContext,
    project: Option<&str>,
) -> tracing::Span {
    let span = tracing::error_span!(
        "request",
        request_id,
        unique_id,
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        outcome = tracing::field::Empty,
        "logging.googleapis.com/trace" = tracing::field::Empty,
        "logging.googleapis.com/spanId" = tracing::field::Empty,
        "logging.googleapis.com/trace_sampled" = tracing::field::Empty,
    );
    if let Some(project) = project {
        span.record(
            "logging.googleapis.com/trace",
            format!("projects/{project}/traces/{}", trace.trace_id),
        );
        span.record("logging.googleapis.com/spanId", trace.span_id.as_str());
        span.record("logging.googleapis.com/trace_sampled", trace.sampled);
    }
    span
}

/// The event being served: its id and type go on every later line of the request, and on the
/// request's server span when spans are exported.
pub(crate) fn note_event(event_id: &str, event_type: &str) {
    let span = tracing::Span::current();
    span.record("event_id", event_id);
    span.record("event_type", event_type);
    spans::note_event(event_id, event_type);
}

/// How the event ended, for the access line.
pub(crate) fn note_outcome(outcome: &'static str) {
    tracing::Span::current().record("outcome", outcome);
}

/// The filter directives for a `LOG_LEVEL` (Python level names, any case). Chatty libraries are
/// held one step quieter so that DEBUG shows the connector's own decisions.
pub(crate) fn filter_for(log_level: &str) -> String {
    let level = match log_level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    let libs = if level == "debug" { "info" } else { "warn" };
    format!(
        "{level},hyper={libs},hyper_util={libs},h2={libs},reqwest={libs},rustls={libs},tower={libs},tower_http={libs},redis={libs},opentelemetry={libs},opentelemetry_sdk={libs},opentelemetry_otlp={libs},tonic={libs}"
    )
}

/// What keeps the logs and traces going: dropping it flushes every line still queued and the
/// spans not yet exported (bounded).
pub(crate) struct Guard {
    _lines: batch::BatchGuard,
    spans: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.spans.take() {
            // The last export runs on the async runtime: shutting down from a thread of its own
            // never blocks the runtime's own workers.
            let _ =
                std::thread::spawn(move || provider.shutdown_with_timeout(std::time::Duration::from_secs(3))).join();
        }
    }
}

/// Installs the global subscriber. `rust_log`, when set, replaces the `LOG_LEVEL` filter. With
/// `otel`, spans are exported too (call from inside the async runtime then).
pub(crate) fn init(log_level: &str, rust_log: Option<&str>, format: LogFormat, otel: Option<&OtelSettings>) -> Guard {
    let directives = rust_log.map(str::to_string).unwrap_or_else(|| filter_for(log_level));
    // RUST_LOG is checked at start-up, so the fallback is for the tests.
    let filter = directives
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let (writer, guard) = batch::batched(std::io::stdout());
    let layer = match format {
        LogFormat::Json => SpanFields
            .and_then(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLine)
                    .fmt_fields(NoText)
                    .with_writer(writer),
            )
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .boxed(),
    };
    let (provider, problem) = match otel.map(otel::provider) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(problem)) => (None, Some(problem)),
        None => (None, None),
    };
    // The spans are made by `spans` through this tracer; the log lines never become spans.
    if let Some(provider) = &provider {
        otel::tracer(provider);
    }
    // A second initialisation (tests starting several apps in one process) keeps the first.
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
    install_panic_hook();
    if let Some(problem) = problem {
        tracing::warn!(error = %problem, "OpenTelemetry export is off");
    }
    Guard {
        _lines: guard,
        spans: provider,
    }
}

/// A panic becomes one ERROR line (message and location, no backtrace), written on the panicking
/// request's thread inside its span, so it carries the request's ids. The request itself is
/// answered 500 by the HTTP edge.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(panic = %message, location, "internal error: a panic was caught");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_trace_ids_are_distinct_uuid_v4() {
        let a = new_trace_id();
        let b = new_trace_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(id, parsed.hyphenated().to_string());
        }
    }

    #[test]
    fn filter_maps_python_levels() {
        assert!(filter_for("warning").starts_with("warn,"));
        assert!(filter_for("CRITICAL").starts_with("error,"));
        assert!(filter_for("Debug").starts_with("debug,"));
        assert!(filter_for("INFO").starts_with("info,"));
    }

    #[test]
    fn without_export_a_call_continues_the_request_span() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            &TRACEPARENT,
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let ids = TraceIds::new(&headers, TraceContext::from_headers(&headers));
        let sent = ids.traceparent_for(&StepSpan::none());
        assert_eq!(
            sent,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", ids.trace.span_id)
        );
    }
}

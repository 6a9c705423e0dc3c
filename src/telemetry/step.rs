//! The spans of the steps inside a request (each WTL attempt, each token fetch, each visit to the
//! redelivery store), made straight through the OpenTelemetry SDK when spans are exported and
//! not at all when they are not.
//!
//! The request's own span is a `tracing` span: its fields are on every log line, and
//! tracing-opentelemetry hands it to the SDK. A step's span carries nothing a log line shows, so
//! it does not go through `tracing` (its span registry, the log layer and the OpenTelemetry layer
//! would each do work for it on every event): the SDK builds it as a child of the request's span,
//! it takes its answer's attributes when the step ends, and it ends when dropped, so a step whose
//! future is dropped half-way still ends its span there.

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Status, Tracer as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// One step's span; empty when spans are not exported.
pub(crate) struct StepSpan(Option<opentelemetry_sdk::trace::Span>);

impl StepSpan {
    /// No span (for a step that is not worth one).
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// A client span for one HTTP call (a WTL attempt, a token fetch). The URL comes parsed: the
    /// WTL URL is parsed once, not per call.
    pub(crate) fn client(name: &'static str, url: &url::Url, attempt: u32) -> Self {
        Self::start(name, SpanKind::Client, || {
            vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("url.full", url.as_str().to_string()),
                KeyValue::new("server.address", url.host_str().unwrap_or_default().to_string()),
                KeyValue::new(
                    "server.port",
                    i64::from(url.port_or_known_default().unwrap_or_default()),
                ),
                KeyValue::new("http.request.resend_count", i64::from(attempt.saturating_sub(1))),
            ]
        })
    }

    /// The span of one visit to the redelivery store: a client span for Redis, an internal one
    /// for the in-process memory.
    pub(crate) fn store(operation: &'static str, system: &'static str) -> Self {
        let kind = if system == "redis" {
            SpanKind::Client
        } else {
            SpanKind::Internal
        };
        Self::start(operation, kind, || {
            vec![
                KeyValue::new("db.system.name", system),
                KeyValue::new("db.operation.name", operation),
            ]
        })
    }

    /// A span started now as the child of the current request's span.
    fn start(name: &'static str, kind: SpanKind, attributes: impl FnOnce() -> Vec<KeyValue>) -> Self {
        let Some(tracer) = super::otel::tracer_in_use() else {
            return Self::none();
        };
        let parent = tracing::Span::current().context();
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes())
            .start_with_context(tracer, &parent);
        Self(Some(span))
    }

    /// How a client span's call ended: its status, or why it failed (which marks the span as an
    /// error). Ends the span.
    pub(crate) fn answered(&mut self, status: Option<u16>, error: Option<&str>) {
        let Some(span) = &mut self.0 else {
            return;
        };
        if let Some(status) = status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        }
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", error.to_string()));
            span.set_status(Status::error(error.to_string()));
        }
        span.end();
    }

    /// The span's ids, for the `traceparent` of the call it covers (its parent's sampling
    /// decision included); none when spans are not exported.
    pub(crate) fn span_context(&self) -> Option<&SpanContext> {
        self.0
            .as_ref()
            .map(opentelemetry::trace::Span::span_context)
            .filter(|cx| cx.is_valid())
    }
}

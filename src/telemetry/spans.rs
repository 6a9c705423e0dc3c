//! The spans the connector exports, made straight through the OpenTelemetry SDK when spans are
//! exported and not at all when they are not: a server span per request ([`ServerSpan`]) and,
//! as its children, a span per step of it ([`StepSpan`]: each WTL attempt, each token fetch,
//! each visit to the redelivery store).
//!
//! The request's log fields live on a `tracing` span of their own (see [`super::line`]); the
//! exported spans carry what the specification lists for traces, plus NSPS's `request_id` on the
//! server span, the one log field that leads from a log line to its trace. The
//! server span is the request's current OpenTelemetry context while its handler runs (the
//! access-line middleware attaches it to every poll), which is where a step finds its parent.
//! Every span ends when its last handle is dropped, so a request or step whose future is
//! dropped half-way still ends its span there.

use std::cell::Cell;
use std::sync::Arc;

use futures_util::future::Either;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, SpanRef, Status, TraceContextExt as _, TraceId, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use super::TraceContext;
use super::context::Source;

/// The SDK's random ids, except for the trace id of a server span whose caller named its trace
/// but no span of it (`X-Cloud-Trace-Context: TRACE;o=1`, `x-b3-traceid` alone): that span has
/// no parent to take the trace id from, and the SDK would start a trace of its own, which the
/// logs and WTL's `traceparent` would then carry instead of the caller's. Such a span is a root
/// in the caller's trace, sampled by the sampler's rule for roots.
#[derive(Debug, Default)]
pub(super) struct CallerTraceIds(RandomIdGenerator);

thread_local! {
    /// The trace id the span being started on this thread takes, set only around that start.
    static NAMED_TRACE: Cell<Option<TraceId>> = const { Cell::new(None) };
}

impl CallerTraceIds {
    /// Runs `start` (which starts one span, synchronously) so that a span it starts without a
    /// parent takes `trace_id` when given.
    fn starting<T>(trace_id: Option<TraceId>, start: impl FnOnce() -> T) -> T {
        NAMED_TRACE.set(trace_id);
        let started = start();
        NAMED_TRACE.set(None);
        started
    }
}

impl IdGenerator for CallerTraceIds {
    fn new_trace_id(&self) -> TraceId {
        NAMED_TRACE.take().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// A request's server span, in the context its steps are children of.
#[derive(Clone, Debug)]
pub(crate) struct ServerSpan(Context);

impl ServerSpan {
    /// Starts the server span of a request, as the child of the caller's span when the request
    /// named one (in the caller's trace when it named only that), and gives `trace` its ids (the
    /// SDK's, sampling decision included), which the logs and WTL calls then use. `request_id`
    /// (NSPS's trace id, on every log line) goes on the span too, so a log line leads to its
    /// trace where the logs carry no trace id. `None` when spans are not exported (or the SDK
    /// gives no valid ids: the request keeps its own). `route` is one of a bounded set (the
    /// routes, `/*` for any other path), as the span's name has it.
    pub(crate) fn start(method: &str, route: &str, request_id: &str, trace: &mut TraceContext) -> Option<Self> {
        let tracer = super::otel::tracer_in_use()?;
        let parent = remote_parent(trace);
        let named_trace = if parent.is_none() && trace.source != Source::New {
            TraceId::from_hex(&trace.trace_id).ok()
        } else {
            None
        };
        let parent = parent.unwrap_or_default();
        let builder = tracer
            .span_builder(format!("{} {route}", known_method(method).unwrap_or("HTTP")))
            .with_kind(SpanKind::Server)
            .with_attributes(server_attributes(method, route, request_id));
        let span = CallerTraceIds::starting(named_trace, || builder.start_with_context(tracer, &parent));
        let ids = span.span_context();
        if !ids.is_valid() {
            return None;
        }
        trace.trace_id = super::context::trace_id_text(ids.trace_id().to_bytes());
        trace.span_id = ids.span_id().to_string();
        trace.sampled = ids.is_sampled();
        Some(Self(parent.with_span(span)))
    }

    /// The request's handler, run with the server span (when there is one) as its current
    /// context on every poll, where its steps find their parent.
    pub(crate) fn around<F: Future>(server: Option<&Self>, handler: F) -> InContext<F> {
        in_context(server.map(|s| &s.0), handler)
    }

    /// The answer's status (a 5xx marks the span as an error) and, for an event, its outcome;
    /// then the span ends.
    pub(crate) fn end(&self, status: u16, outcome: Option<&'static str>) {
        let span = self.0.span();
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        if let Some(outcome) = outcome {
            span.set_attribute(KeyValue::new("outcome", outcome));
        }
        if status >= 500 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// The HTTP semantic conventions' method and route, and `request_id`; a method HTTP does not
/// define is `_OTHER` (and the span is named `HTTP <route>`), so that names stay a bounded set
/// whatever a caller sends. (`url.path` and `url.scheme` are left out: the path is the route but
/// for the `/*` of unknown paths, the scheme is the platform's, and each attribute costs every
/// exported event about 1 % of its CPU.)
fn server_attributes(method: &str, route: &str, request_id: &str) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(4);
    match known_method(method) {
        Some(method) => attributes.push(KeyValue::new("http.request.method", method)),
        None => {
            attributes.push(KeyValue::new("http.request.method", "_OTHER"));
            attributes.push(KeyValue::new("http.request.method_original", method.to_string()));
        }
    }
    attributes.push(KeyValue::new("http.route", route.to_string()));
    attributes.push(KeyValue::new("request_id", request_id.to_string()));
    attributes
}

/// The method's name when HTTP defines it (the semantic conventions' known methods).
fn known_method(method: &str) -> Option<&'static str> {
    [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ]
    .into_iter()
    .find(|known| *known == method)
}

/// The event being served, on the current request's server span (when spans are exported).
pub(super) fn note_event(event_id: &str, event_type: &str) {
    if super::otel::tracer_in_use().is_none() {
        return;
    }
    Context::map_current(|cx| {
        let span: SpanRef<'_> = cx.span();
        span.set_attribute(KeyValue::new("event_id", event_id.to_string()));
        span.set_attribute(KeyValue::new("event_type", event_type.to_string()));
    });
}

/// A future run with an OpenTelemetry context attached to each of its polls, or as it is.
pub(crate) type InContext<F> = Either<WithContext<F>, F>;

/// `future` with `cx` as its current context on every poll; without one, as it is. A plain
/// function, not an `async fn`: an `async fn` holding the future it awaits would be twice its
/// size, and the request's largest futures (the WTL call, the admission) pass through here.
fn in_context<F: Future>(cx: Option<&Context>, future: F) -> InContext<F> {
    match cx {
        Some(cx) => Either::Left(future.with_context(cx.clone())),
        None => Either::Right(future),
    }
}

/// The caller's span as a remote parent, when the request named one.
fn remote_parent(trace: &TraceContext) -> Option<Context> {
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};
    let parent = trace.parent_span_id.as_deref()?;
    let flags = if trace.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_hex(&trace.trace_id).ok()?,
        SpanId::from_hex(parent).ok()?,
        flags,
        true,
        TraceState::default(),
    );
    Some(Context::new().with_remote_span_context(remote))
}

/// Where a client span's calls go, worked out once from the URL when the client is built (the
/// WTL `/prov` URL, the token URL): its text and host shared by every span rather than copied
/// into each.
#[derive(Debug)]
pub(crate) struct CallTarget {
    url: Arc<str>,
    address: Arc<str>,
    port: i64,
}

impl CallTarget {
    pub(crate) fn new(url: &url::Url) -> Self {
        Self {
            url: url.as_str().into(),
            address: url.host_str().unwrap_or_default().into(),
            port: i64::from(url.port_or_known_default().unwrap_or_default()),
        }
    }
}

/// One step's span, in the context its own steps are children of (a token fetch made for a WTL
/// attempt is the attempt's child); empty when spans are not exported.
pub(crate) struct StepSpan(Option<Context>);

impl StepSpan {
    /// No span (for a step that is not worth one).
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// A client span for one HTTP call (a WTL attempt, a token fetch) to `target`.
    pub(crate) fn client(name: &'static str, target: &CallTarget, attempt: u32) -> Self {
        Self::start(name, SpanKind::Client, || {
            vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("url.full", target.url.clone()),
                KeyValue::new("server.address", target.address.clone()),
                KeyValue::new("server.port", target.port),
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

    /// A span started now as the child of the current span (the request's server span, or the
    /// step this one is part of); none outside a request's span, where it would start a trace
    /// of its own that nothing else belongs to.
    fn start(name: &'static str, kind: SpanKind, attributes: impl FnOnce() -> Vec<KeyValue>) -> Self {
        let Some(tracer) = super::otel::tracer_in_use() else {
            return Self::none();
        };
        Self(Context::map_current(|parent| {
            parent.has_active_span().then(|| {
                let builder = tracer.span_builder(name).with_kind(kind).with_attributes(attributes());
                parent.with_span(builder.start_with_context(tracer, parent))
            })
        }))
    }

    /// `step`, run with this span as its current span on every poll, so the spans it starts are
    /// children of this one.
    pub(crate) fn around<F: Future>(&self, step: F) -> InContext<F> {
        in_context(self.0.as_ref(), step)
    }

    /// How a client span's call ended: its status, or why it failed (which marks the span as an
    /// error). Ends the span.
    pub(crate) fn answered(&self, status: Option<u16>, error: Option<&str>) {
        let Some(cx) = &self.0 else {
            return;
        };
        let span = cx.span();
        if let Some(status) = status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        }
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", error.to_string()));
            span.set_status(Status::error(error.to_string()));
        }
        span.end();
    }

    /// The step failed for `error` (which marks the span as an error). Ends the span.
    pub(crate) fn failed(&self, error: &str) {
        self.answered(None, Some(error));
    }

    /// The span's ids, for the `traceparent` of the call it covers (its parent's sampling
    /// decision included); none when spans are not exported.
    pub(crate) fn span_context(&self) -> Option<SpanContext> {
        let cx = self.0.as_ref()?;
        let ids = cx.span().span_context().clone();
        ids.is_valid().then_some(ids)
    }
}

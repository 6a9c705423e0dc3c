//! Logs: one JSON object per line on stdout, through tracing-subscriber and tracing-appender.
//!
//! Every line has `timestamp` (RFC 3339, UTC), `level` (and `severity`, which Cloud Logging
//! reads), `message`, `target`, the event's own fields and the fields of the spans it was
//! written in. Each request runs in a `request` span (made by the HTTP edge's trace layer) that
//! carries `request_id` and `unique_id`, then `event_id`, `event_type` and `outcome` once known,
//! and `logging.googleapis.com/trace` on Cloud Run; so every line written for a request has
//! them at the top level. Values are encoded by serde_json, so no input can forge a line.
//!
//! The layout is the one thing written here: [`JsonLine`] (a tracing-subscriber `FormatEvent`
//! that hands the fields to serde_json) and [`SpanFields`] (a layer keeping each span's fields
//! as JSON values, so a field recorded later does not reformat the others). Lines go to stdout
//! through tracing-appender's writer thread, so a request never waits for a write.

use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The NSPS trace ids of one request: `x-b3-traceid` (logged as `request_id`) and
/// `x-request-id` (logged as `unique_id`), and the W3C `traceparent` when the caller sent one.
/// All are sent on every WTL call made for the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceIds {
    pub request_id: String,
    pub unique_id: String,
    pub traceparent: Option<String>,
}

/// The header NSPS sends its trace id in (`request_id` in logs).
pub static X_B3_TRACEID: http::HeaderName = http::HeaderName::from_static("x-b3-traceid");
/// The header NSPS sends its delivery id in (`unique_id` in logs).
pub static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
/// W3C Trace Context, forwarded to WTL and read for Cloud Logging.
pub static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// Google's own trace header (`TRACE_ID/SPAN_ID;o=1`).
pub static X_CLOUD_TRACE_CONTEXT: http::HeaderName = http::HeaderName::from_static("x-cloud-trace-context");

impl TraceIds {
    /// The ids on a request whose id headers the edge has already checked or generated.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let text = |name: &http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Self {
            request_id: text(&X_B3_TRACEID).unwrap_or_else(new_trace_id),
            unique_id: text(&X_REQUEST_ID).unwrap_or_else(new_trace_id),
            traceparent: text(&TRACEPARENT).filter(|t| trace_id_of_traceparent(t).is_some()),
        }
    }

    #[cfg(test)]
    pub(crate) fn generated() -> Self {
        Self {
            request_id: new_trace_id(),
            unique_id: new_trace_id(),
            traceparent: None,
        }
    }
}

/// A fresh UUID v4 for a trace id the caller did not send. Trace ids need to be unique, not
/// secret, so the random bits come from a fast per-thread generator rather than the operating
/// system (a system call per id, two per request).
pub fn new_trace_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .to_string()
}

/// tower-http's request-id layer with [`new_trace_id`].
#[derive(Clone, Copy, Default)]
pub struct MakeTraceId;

impl tower_http::request_id::MakeRequestId for MakeTraceId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        http::HeaderValue::from_str(&new_trace_id())
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The trace id (32 lower-case hex digits, not all zero) of a W3C `traceparent`
/// (`00-<trace id>-<parent id>-<flags>`).
pub fn trace_id_of_traceparent(value: &str) -> Option<&str> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

/// The trace id of `X-Cloud-Trace-Context` (`TRACE_ID[/SPAN_ID][;o=OPTIONS]`).
pub fn trace_id_of_cloud_context(value: &str) -> Option<&str> {
    let trace = value.trim().split(['/', ';']).next()?;
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

/// Cloud Logging's trace name for a request, when `GOOGLE_CLOUD_PROJECT` is set and the request
/// carries `traceparent` or `X-Cloud-Trace-Context`.
pub fn cloud_trace(project: Option<&str>, headers: &http::HeaderMap) -> Option<String> {
    let project = project?;
    let text = |name: &http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let trace = text(&TRACEPARENT)
        .and_then(trace_id_of_traceparent)
        .or_else(|| text(&X_CLOUD_TRACE_CONTEXT).and_then(trace_id_of_cloud_context))?;
    Some(format!("projects/{project}/traces/{}", trace.to_ascii_lowercase()))
}

/// The span every line written while serving one request is logged in.
pub fn request_span(ids: &TraceIds, cloud_trace: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = ids.request_id.as_str(),
        unique_id = ids.unique_id.as_str(),
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        outcome = tracing::field::Empty,
        "logging.googleapis.com/trace" = cloud_trace,
    )
}

/// The event being served: its id and type go on every later line of the request.
pub fn note_event(event_id: &str, event_type: &str) {
    let span = tracing::Span::current();
    span.record("event_id", event_id);
    span.record("event_type", event_type);
}

/// How the event ended, for the access line.
pub fn note_outcome(outcome: &'static str) {
    tracing::Span::current().record("outcome", outcome);
}

/// The filter directives for a `LOG_LEVEL` (Python level names, any case). Chatty libraries are
/// held one step quieter so that DEBUG shows the connector's own decisions.
pub fn filter_for(log_level: &str) -> String {
    let level = match log_level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    let libs = if level == "debug" { "info" } else { "warn" };
    format!(
        "{level},hyper={libs},hyper_util={libs},h2={libs},reqwest={libs},rustls={libs},tower={libs},tower_http={libs},redis={libs}"
    )
}

/// Lines queued for the writer thread, at most this many; then writers wait (no line is lost).
const LOG_QUEUE: usize = 8_192;

/// Installs the global subscriber. `rust_log`, when set, replaces the `LOG_LEVEL` filter.
/// Keep the returned guard alive: dropping it flushes every line still queued.
pub fn init(log_level: &str, rust_log: Option<&str>, format: LogFormat) -> WorkerGuard {
    let directives = rust_log.map(str::to_string).unwrap_or_else(|| filter_for(log_level));
    // RUST_LOG is checked at start-up, so the fallback is for the tests.
    let filter = directives
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE)
        .thread_name("log-writer")
        .finish(std::io::stdout());
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
    // A second initialisation (tests starting several apps in one process) keeps the first.
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
    install_panic_hook();
    guard
}

use tracing_subscriber::Layer as _;

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

/// Keeps each span's fields as JSON values in the span's extensions, for [`JsonLine`] (recording
/// a field later, as `event_id` is, replaces its value without reformatting the others).
pub struct SpanFields;

/// A span's fields.
struct Stored(FieldValues);

impl<S> tracing_subscriber::Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = FieldValues::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Stored(fields));
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(stored) = span.extensions_mut().get_mut::<Stored>() {
                values.record(&mut stored.0);
            }
        }
    }
}

/// The fmt layer's own span formatting is not used by [`JsonLine`] ([`SpanFields`] keeps the
/// fields): this formats nothing.
pub struct NoText;

impl<'writer> FormatFields<'writer> for NoText {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(&self, _: Writer<'writer>, _: R) -> fmt::Result {
        Ok(())
    }
}

/// The JSON line layout: written with serde_json's serializer, member by member.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut own = FieldValues::default();
        event.record(&mut own);
        let spans: Vec<_> = ctx.event_scope().map(|scope| scope.collect()).unwrap_or_default();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        let span_fields = extensions
            .iter()
            .filter_map(|ext| ext.get::<Stored>())
            .flat_map(|stored| stored.0.0.iter());
        let line = Line {
            meta: event.metadata(),
            own: &own,
            // The line's own fields first, then the nearest span's: the first of a name wins.
            fields: own.0.iter().chain(span_fields).collect(),
        };
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// One log line, serialised by serde.
struct Line<'a> {
    meta: &'static tracing::Metadata<'static>,
    own: &'a FieldValues,
    fields: Vec<&'a (&'static str, Value)>,
}

impl serde::Serialize for Line<'_> {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        let level = level_name(self.meta.level());
        map.serialize_entry(
            "timestamp",
            &OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        )?;
        map.serialize_entry("level", level)?;
        map.serialize_entry("severity", level)?;
        map.serialize_entry("message", self.own.get("message").unwrap_or(&Value::Null))?;
        map.serialize_entry("target", self.meta.target())?;
        let mut written: Vec<&str> = vec!["message"];
        let mut http_request = Map::new();
        for (name, value) in &self.fields {
            if written.contains(name) || name.starts_with("log.") {
                continue;
            }
            written.push(name);
            if let Some(member) = name.strip_prefix("httpRequest.") {
                http_request.insert(member.to_string(), value.clone());
            } else if let (Some(nested), Value::String(text)) = (name.strip_suffix("_json"), value) {
                match serde_json::from_str::<Value>(text) {
                    Ok(parsed) => map.serialize_entry(nested, &parsed)?,
                    Err(_) => map.serialize_entry(name, value)?,
                }
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        if !http_request.is_empty() {
            map.serialize_entry("httpRequest", &http_request)?;
        }
        map.end()
    }
}

/// Fields as JSON values; a name recorded again keeps its latest value.
#[derive(Default)]
struct FieldValues(Vec<(&'static str, Value)>);

impl FieldValues {
    fn set(&mut self, field: &Field, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == field.name()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field.name(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

impl Visit for FieldValues {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, format!("{value:?}").into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Not-a-number and infinities have no JSON form: `null`.
        self.set(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, value.to_string().into());
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        let buf = Buffer::default();
        let writer = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(JsonLine)
            .fmt_fields(NoText)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(SpanFields).with(layer);
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn lines_carry_the_request_span_fields_at_the_top_level() {
        let lines = capture(|| {
            let ids = TraceIds {
                request_id: "r-\"1".into(),
                unique_id: "u-1".into(),
                traceparent: None,
            };
            let span = request_span(&ids, None);
            let _g = span.enter();
            tracing::info!("before");
            note_event("e-9", "SIM/Updated");
            tracing::info!(outcome = "applied", "WTL call");
            note_outcome("processed");
            tracing::info!("after");
            drop(_g);
            tracing::info!("outside");
        });
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["request_id"], "r-\"1");
        assert_eq!(lines[0]["unique_id"], "u-1");
        assert!(lines[0].get("event_id").is_none());
        assert_eq!(lines[1]["event_id"], "e-9");
        assert_eq!(lines[1]["event_type"], "SIM/Updated");
        assert_eq!(lines[1]["outcome"], "applied", "the line's own field wins");
        assert_eq!(lines[2]["outcome"], "processed");
        assert_eq!(lines[2]["request_id"], "r-\"1");
        assert!(lines[3].get("request_id").is_none() && lines[3].get("outcome").is_none());
        for l in &lines {
            assert!(l["timestamp"].as_str().expect("ts").ends_with('Z'));
            assert_eq!(l["severity"], "INFO");
        }
    }

    #[test]
    fn hostile_values_cannot_break_the_line() {
        let lines = capture(|| {
            tracing::info!(
                value = "x\"}\n{\"level\":\"ERROR\",\"message\":\"forged\u{2028}",
                "hostile"
            );
        });
        assert_eq!(lines.len(), 1, "one event, one line");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(
            lines[0]["value"],
            "x\"}\n{\"level\":\"ERROR\",\"message\":\"forged\u{2028}"
        );
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        struct Shown;
        impl fmt::Display for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("tab\there \"quoted\" \u{1}ctl é")
            }
        }
        let err = std::io::Error::other("broken \"pipe\"");
        let lines = capture(|| {
            let span = tracing::info_span!("outer", shared = "outer", only_outer = 1u64);
            let _o = span.enter();
            let inner = tracing::info_span!("inner", shared = "inner");
            let _i = inner.enter();
            tracing::error!(
                shown = %Shown,
                debugged = ?"q\"",
                negative = -5i64,
                flag = true,
                latency_ms = 1.5,
                nan = f64::NAN,
                error = &err as &(dyn std::error::Error + 'static),
                "all kinds"
            );
        });
        let l = &lines[0];
        assert_eq!(l["shown"], "tab\there \"quoted\" \u{1}ctl é");
        assert_eq!(l["debugged"], "\"q\\\"\"");
        assert_eq!(l["negative"], -5);
        assert_eq!(l["flag"], true);
        assert_eq!(l["latency_ms"], 1.5);
        assert!(l["nan"].is_null());
        assert_eq!(l["error"], "broken \"pipe\"");
        assert_eq!(l["shared"], "inner", "the nearest span wins");
        assert_eq!(l["only_outer"], 1);
        assert_eq!(l["level"], "ERROR");
        assert_eq!(l["message"], "all kinds");
        assert_eq!(l["target"], module_path!());
    }

    #[test]
    fn json_fields_nest_as_values_and_http_request_nests_for_cloud_logging() {
        let lines = capture(|| {
            let config = serde_json::json!({"PORT": "8000"});
            tracing::info!(config_json = %config, "effective configuration");
            tracing::info!(
                "httpRequest.requestMethod" = "POST",
                "httpRequest.status" = 202u64,
                "httpRequest.latency" = "0.012s",
                "request completed"
            );
        });
        assert_eq!(lines[0]["config"]["PORT"], "8000");
        assert_eq!(
            lines[1]["httpRequest"],
            serde_json::json!({"requestMethod": "POST", "status": 202, "latency": "0.012s"})
        );
    }

    #[test]
    fn the_cloud_trace_field_is_on_every_line_of_the_request() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            &TRACEPARENT,
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let trace = cloud_trace(Some("my-project"), &headers);
        assert_eq!(
            trace.as_deref(),
            Some("projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(cloud_trace(None, &headers), None, "only with GOOGLE_CLOUD_PROJECT");
        let lines = capture(|| {
            let span = request_span(&TraceIds::generated(), trace.as_deref());
            let _g = span.enter();
            tracing::info!("one");
            tracing::warn!("two");
        });
        for l in &lines {
            assert_eq!(
                l["logging.googleapis.com/trace"],
                "projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
            );
        }
    }

    #[test]
    fn trace_headers_are_read_strictly() {
        assert_eq!(
            trace_id_of_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(trace_id_of_traceparent(bad), None, "{bad}");
        }
        assert_eq!(
            trace_id_of_cloud_context("105445aa7843bc8bf206b12000100000/1;o=1"),
            Some("105445aa7843bc8bf206b12000100000")
        );
        assert_eq!(trace_id_of_cloud_context("short/1"), None);
    }

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
}

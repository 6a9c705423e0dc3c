//! The JSON line layout: [`JsonLine`] (a tracing-subscriber `FormatEvent` that hands the fields to
//! serde_json) and [`SpanFields`] (a layer keeping each span's fields as JSON values, so a field
//! recorded later does not reformat the others). Values are encoded by serde_json, so no input can
//! forge a line.
//!
//! Span fields whose names hold a dot (`http.request.method`, `otel.kind`, ...) are attributes for
//! OpenTelemetry, not log fields; the Cloud Logging fields (`logging.googleapis.com/...`) are the
//! exception.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Keeps each span's fields as JSON values in the span's extensions, for [`JsonLine`] (recording
/// a field later, as `event_id` is, replaces its value without reformatting the others).
pub(crate) struct SpanFields;

/// A span's fields.
struct Stored(FieldValues);

impl<S> tracing_subscriber::Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = FieldValues::of_span();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Stored(fields));
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(stored) = span.extensions_mut().get_mut::<Stored>()
        {
            values.record(&mut stored.0);
        }
    }
}

/// The fmt layer's own span formatting is not used by [`JsonLine`] ([`SpanFields`] keeps the
/// fields): this formats nothing.
pub(crate) struct NoText;

impl<'writer> FormatFields<'writer> for NoText {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(&self, _: Writer<'writer>, _: R) -> fmt::Result {
        Ok(())
    }
}

/// The JSON line layout: written with serde_json's serializer, member by member.
pub(crate) struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut own = FieldValues::of_event();
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
        // Room for a long line up front: serde_json writes a line in many small pieces.
        let mut text = Vec::with_capacity(LINE_CAPACITY);
        serde_json::to_writer(&mut text, &line).map_err(|_| fmt::Error)?;
        let text = std::str::from_utf8(&text).map_err(|_| fmt::Error)?;
        writer.write_str(text)?;
        writer.write_char('\n')
    }
}

/// Bytes reserved for a line: the access line of an event is about 900.
const LINE_CAPACITY: usize = 2048;

/// One log line, serialised by serde.
struct Line<'a> {
    meta: &'static tracing::Metadata<'static>,
    own: &'a FieldValues,
    fields: Vec<&'a (&'static str, Value)>,
}

/// The RFC 3339 time of a line (UTC, nanoseconds), written without an intermediate string.
struct Timestamp(OffsetDateTime);

impl serde::Serialize for Timestamp {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        let mut text = [0u8; 40];
        let mut cursor = std::io::Cursor::new(&mut text[..]);
        let written = self.0.format_into(&mut cursor, &Rfc3339).unwrap_or(0);
        serializer.serialize_str(std::str::from_utf8(&text[..written]).unwrap_or_default())
    }
}

impl serde::Serialize for Line<'_> {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        let level = level_name(self.meta.level());
        let now = OffsetDateTime::now_utc();
        map.serialize_entry("timestamp", &Timestamp(now))?;
        // The same instant as Cloud Logging takes it for the entry's time.
        map.serialize_entry("timestampSeconds", &now.unix_timestamp())?;
        map.serialize_entry("timestampNanos", &now.nanosecond())?;
        map.serialize_entry("level", level)?;
        map.serialize_entry("severity", level)?;
        map.serialize_entry("message", self.own.get("message").unwrap_or(&Value::Null))?;
        map.serialize_entry("target", self.meta.target())?;
        let mut written: Vec<&str> = vec!["message"];
        // Cloud Logging's `HttpRequest`, its members borrowed from the fields, in name order.
        let mut http_request: BTreeMap<&str, &Value> = BTreeMap::new();
        for (name, value) in &self.fields {
            if written.contains(name) || name.starts_with("log.") {
                continue;
            }
            written.push(name);
            if let Some(member) = name.strip_prefix("httpRequest.") {
                http_request.insert(member, value);
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
struct FieldValues(Vec<(&'static str, Value)>, bool);

/// A span field that is an OpenTelemetry attribute (its name holds a dot), not a log field; the
/// Cloud Logging fields are log fields.
fn is_attribute(name: &str) -> bool {
    name.contains('.') && !name.starts_with("logging.googleapis.com/")
}

impl FieldValues {
    /// A line's own fields, with room for those of the access line (15).
    fn of_event() -> Self {
        Self(Vec::with_capacity(16), false)
    }

    /// A span's fields: its OpenTelemetry attributes are left out.
    fn of_span() -> Self {
        Self(Vec::new(), true)
    }

    fn set(&mut self, field: &Field, value: Value) {
        if self.1 && is_attribute(field.name()) {
            return;
        }
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
    use crate::telemetry::{TraceContext, note_event, note_outcome, request_span};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

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
            let trace = TraceContext::from_headers(&http::HeaderMap::new());
            let span = request_span("r-\"1", "u-1", "POST", "/process-event", &trace, None);
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
        for attribute in ["otel.name", "otel.kind", "http.request.method", "http.route"] {
            assert!(
                lines[0].get(attribute).is_none(),
                "{attribute} is a span attribute, not a log field"
            );
        }
        assert!(
            lines[0].get("logging.googleapis.com/trace").is_none(),
            "no project, no trace name"
        );
    }

    #[test]
    fn the_time_is_also_given_as_seconds_and_nanos_for_cloud_logging() {
        let lines = capture(|| tracing::info!("now"));
        let text = lines[0]["timestamp"].as_str().expect("text");
        let parsed = OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339");
        assert_eq!(lines[0]["timestampSeconds"], parsed.unix_timestamp());
        assert_eq!(lines[0]["timestampNanos"], parsed.nanosecond());
    }

    #[test]
    fn every_line_of_a_request_carries_the_cloud_trace_fields() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let trace = TraceContext::from_headers(&headers);
        let lines = capture(|| {
            let span = request_span("r", "u", "POST", "/process-event", &trace, Some("my-project"));
            let _g = span.enter();
            tracing::info!("one");
            tracing::warn!("two");
        });
        for l in &lines {
            assert_eq!(
                l["logging.googleapis.com/trace"],
                "projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(l["logging.googleapis.com/spanId"], trace.span_id.as_str());
            assert_eq!(l["logging.googleapis.com/trace_sampled"], true);
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
}

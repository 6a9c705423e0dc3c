//! The JSON line layout: [`JsonLine`] (a tracing-subscriber `FormatEvent` that hands the fields to
//! serde_json) and [`SpanFields`] (a layer keeping each span's fields as JSON values, so a field
//! recorded later does not reformat the others). Values are encoded by serde_json, so no input can
//! forge a line.

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
        let mut fields = FieldValues(Vec::new());
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

/// The JSON line layout: written with serde_json's serializer, member by member. The line's own
/// fields go straight from tracing's visitor into the line; the spans' fields come from
/// [`SpanFields`].
pub(crate) struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let spans: Vec<_> = ctx.event_scope().map(|scope| scope.collect()).unwrap_or_default();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        let span_fields = extensions
            .iter()
            .filter_map(|ext| ext.get::<Stored>())
            .flat_map(|stored| stored.0.0.iter());
        // Room for a long line up front: serde_json writes a line in many small pieces.
        let mut text = Vec::with_capacity(LINE_CAPACITY);
        write_line(&mut text, event, span_fields).map_err(|_| fmt::Error)?;
        let text = std::str::from_utf8(&text).map_err(|_| fmt::Error)?;
        writer.write_str(text)?;
        writer.write_char('\n')
    }
}

/// Bytes reserved for a line: the access line of an event is about 900.
const LINE_CAPACITY: usize = 2048;

/// One line: time, level, message, target, then the line's own fields, then the spans' (the
/// nearest span first; the first of a name wins), and Cloud Logging's `httpRequest` object.
fn write_line<'a>(
    out: &mut Vec<u8>,
    event: &Event<'_>,
    span_fields: impl Iterator<Item = &'a (&'static str, Value)>,
) -> Result<(), serde_json::Error> {
    use serde::Serializer as _;
    use serde::ser::SerializeMap;
    let meta = event.metadata();
    let mut serializer = serde_json::Serializer::new(out);
    let mut map = serializer.serialize_map(None)?;
    let level = level_name(meta.level());
    let now = OffsetDateTime::now_utc();
    map.serialize_entry("timestamp", &Timestamp(now))?;
    // The same instant as Cloud Logging takes it for the entry's time.
    map.serialize_entry("timestampSeconds", &now.unix_timestamp())?;
    map.serialize_entry("timestampNanos", &now.nanosecond())?;
    map.serialize_entry("level", level)?;
    map.serialize_entry("severity", level)?;
    let mut fields = LineFields {
        map: &mut map,
        target: meta.target(),
        message_written: false,
        written: Vec::with_capacity(24),
        http_request: Vec::new(),
        failed: None,
    };
    fields.written.push("message");
    event.record(&mut fields);
    if !fields.message_written {
        fields.message(None);
    }
    for (name, value) in span_fields {
        fields.put_span_field(name, value);
    }
    fields.finish()?;
    map.end()
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

/// Named values written as a JSON object, in their order.
struct Members<'a>(&'a [(&'static str, Value)]);

impl serde::Serialize for Members<'_> {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// A value written as text (`%` and `?` fields, the message, errors), encoded as a JSON string
/// while it is formatted.
struct Shown<'a>(&'a dyn fmt::Display);

impl serde::Serialize for Shown<'_> {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_str(self.0)
    }
}

/// Writes fields into the line: first the line's own as tracing visits them (the message,
/// which tracing's macros make the first field, and the target, then the others), then the
/// spans'. The `httpRequest.` members are kept for the object written last.
struct LineFields<'m, M> {
    map: &'m mut M,
    target: &'static str,
    message_written: bool,
    written: Vec<&'static str>,
    http_request: Vec<(&'static str, Value)>,
    failed: Option<serde_json::Error>,
}

impl<M: serde::ser::SerializeMap<Error = serde_json::Error>> LineFields<'_, M> {
    /// The message (`null` for a line without one), then the target.
    fn message(&mut self, message: Option<&dyn fmt::Display>) {
        self.message_written = true;
        let written = self
            .map
            .serialize_entry("message", &message.map(Shown))
            .and_then(|()| self.map.serialize_entry("target", self.target));
        if let Err(error) = written {
            self.failed.get_or_insert(error);
        }
    }

    fn put<T: serde::Serialize + ?Sized>(&mut self, name: &'static str, value: &T) {
        if self.failed.is_some() || name == "message" || name.starts_with("log.") {
            return;
        }
        self.written.push(name);
        let written = match name.strip_prefix("httpRequest.") {
            Some(member) => serde_json::to_value(value).map(|v| self.put_http_member(member, v)),
            None => self.map.serialize_entry(name, value),
        };
        if let Err(error) = written {
            self.failed = Some(error);
        }
    }

    /// An `httpRequest` member; a name given again keeps its later value.
    fn put_http_member(&mut self, member: &'static str, value: Value) {
        match self.http_request.iter_mut().find(|(name, _)| *name == member) {
            Some(slot) => slot.1 = value,
            None => self.http_request.push((member, value)),
        }
    }

    /// A `*_json` field holding JSON text is nested as a value; any other text stays text.
    fn put_text(&mut self, name: &'static str, text: &str) {
        if let Some(nested) = name.strip_suffix("_json")
            && self.failed.is_none()
            && let Ok(parsed) = serde_json::from_str::<Value>(text)
        {
            self.written.push(name);
            if let Err(error) = self.map.serialize_entry(nested, &parsed) {
                self.failed = Some(error);
            }
            return;
        }
        self.put(name, text);
    }

    /// A span's field, unless the line or a nearer span already has one of that name.
    fn put_span_field(&mut self, name: &'static str, value: &Value) {
        if self.written.contains(&name) {
            return;
        }
        match value {
            Value::String(text) => self.put_text(name, text),
            other => self.put(name, other),
        }
    }

    /// Cloud Logging's `HttpRequest` object (its members in name order), or the first error.
    fn finish(mut self) -> Result<(), serde_json::Error> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.http_request.is_empty() {
            return Ok(());
        }
        self.http_request.sort_unstable_by_key(|(name, _)| *name);
        self.map.serialize_entry("httpRequest", &Members(&self.http_request))
    }
}

impl<M: serde::ser::SerializeMap<Error = serde_json::Error>> Visit for LineFields<'_, M> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if !self.message_written {
                self.message(Some(&value));
            }
        } else {
            self.put_text(field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            if !self.message_written {
                self.message(Some(&format_args!("{value:?}")));
            }
        } else if field.name().ends_with("_json") {
            self.put_text(field.name(), &format!("{value:?}"));
        } else {
            self.put(field.name(), &Shown(&format_args!("{value:?}")));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), &value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), &value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Not-a-number and infinities have no JSON form: `null`.
        self.put(field.name(), &value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field.name(), &Shown(value));
    }
}

/// A span's fields as JSON values, its OpenTelemetry attributes left out; a name recorded again
/// keeps its latest value.
struct FieldValues(Vec<(&'static str, Value)>);

impl FieldValues {
    fn set(&mut self, field: &Field, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == field.name()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field.name(), value)),
        }
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
        capture_text(f)
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }

    fn capture_text(f: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let writer = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(JsonLine)
            .fmt_fields(NoText)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(SpanFields).with(layer);
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf8")
    }

    #[test]
    fn lines_carry_the_request_span_fields_at_the_top_level() {
        let lines = capture(|| {
            let trace = TraceContext::from_headers(&http::HeaderMap::new());
            let span = request_span("r-\"1", "u-1", &trace, None);
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
            let span = request_span("r", "u", &trace, Some("my-project"));
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

    /// The `httpRequest` object of the one line `f` writes, as its text.
    fn http_request_text(f: impl FnOnce()) -> String {
        let text = capture_text(f);
        let (_, object) = text.rsplit_once(r#","httpRequest":"#).expect("an httpRequest object");
        object
            .trim_end()
            .strip_suffix('}')
            .expect("the object ends the line")
            .to_string()
    }

    #[test]
    fn an_http_request_member_given_twice_keeps_its_later_value() {
        let object = http_request_text(|| {
            tracing::info!(
                "httpRequest.status" = 500u64,
                "httpRequest.latency" = "0.012s",
                "httpRequest.status" = 202u64,
                "request completed"
            );
        });
        assert_eq!(object, r#"{"latency":"0.012s","status":202}"#);
    }

    #[test]
    fn http_request_members_are_written_in_name_order() {
        let object = http_request_text(|| {
            tracing::info!(
                "httpRequest.status" = 202u64,
                "httpRequest.requestMethod" = "POST",
                "httpRequest.latency" = "0.012s",
                "request completed"
            );
        });
        assert_eq!(object, r#"{"latency":"0.012s","requestMethod":"POST","status":202}"#);
    }
}

//! Logs: one JSON object per line on stdout.
//!
//! Every line has `timestamp` (RFC 3339, UTC), `level` (and `severity`, which Cloud Logging
//! reads), `message`, the event's own fields, and the fields of every span it was written in, so
//! a line written while serving a request carries that request's `request_id` and `unique_id`.
//! Values are JSON-escaped, so no input can forge a line. Lines from libraries that use the `log`
//! crate are routed through the same layer, so nothing reaches stdout as plain text.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The NSPS trace ids of one request: `x-b3-traceid` (logged as `request_id`) and
/// `x-request-id` (logged as `unique_id`). Sent on every WTL call made for the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceIds {
    pub request_id: String,
    pub unique_id: String,
}

impl TraceIds {
    pub fn generated() -> Self {
        Self {
            request_id: uuid::Uuid::new_v4().to_string(),
            unique_id: uuid::Uuid::new_v4().to_string(),
        }
    }
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
    format!("{level},hyper={libs},hyper_util={libs},h2={libs},reqwest={libs},rustls={libs},tower={libs}")
}

/// Installs the global subscriber. `rust_log`, when set, replaces the `LOG_LEVEL` filter.
/// Keep the returned guard alive: dropping it flushes every line still queued.
pub fn init(log_level: &str, rust_log: Option<&str>, format: LogFormat) -> LogGuard {
    let directives = rust_log.map(str::to_string).unwrap_or_else(|| filter_for(log_level));
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (lines, guard) = StdoutLines::start();
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(JsonLayer::new(lines)).try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(lines))
            .try_init(),
    };
    // A second initialisation (tests starting several apps in one process) keeps the first.
    let _ = result;
    install_panic_hook();
    guard
}

/// Lines queued for the writer thread, at most this many (then writers wait: no line is lost).
const LOG_QUEUE: usize = 8_192;

enum LogMsg {
    Line(Vec<u8>),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Log lines go to one thread that writes them to stdout through a buffer and flushes whenever
/// it has caught up, so a request never waits for a write system call.
#[derive(Clone)]
pub struct StdoutLines(std::sync::mpsc::SyncSender<LogMsg>);

/// Flushes the queued lines when dropped.
pub struct LogGuard(std::sync::mpsc::SyncSender<LogMsg>);

impl StdoutLines {
    fn start() -> (Self, LogGuard) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<LogMsg>(LOG_QUEUE);
        let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
            while let Ok(msg) = rx.recv() {
                let mut pending = Some(msg);
                while let Some(msg) = pending.take() {
                    match msg {
                        LogMsg::Line(line) => {
                            let _ = out.write_all(&line);
                        }
                        LogMsg::Flush(ack) => {
                            let _ = out.flush();
                            let _ = ack.send(());
                        }
                    }
                    pending = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
        });
        if spawned.is_err() {
            eprintln!("warning: the log writer thread could not start; logs are lost");
        }
        (Self(tx.clone()), LogGuard(tx))
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        if self.0.send(LogMsg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
}

impl std::io::Write for StdoutLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(LogMsg::Line(buf.to_vec()))
            .map_err(|_| std::io::Error::other("log writer stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for StdoutLines {
    type Writer = StdoutLines;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A panic becomes one ERROR line (message and location, no backtrace) in the current span,
/// so it carries the request's ids. The request itself is answered 500 by the HTTP edge.
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

/// The JSON line layer.
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W> {
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// Fields recorded on a span, already JSON-encoded.
#[derive(Default)]
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, json: String) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = json,
            None => self.0.push((name, json)),
        }
    }
}

struct Recorder<'a>(&'a mut SpanFields);

impl Visit for Recorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.set(field.name(), json_string(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        // Fields named `*_json` carry JSON produced by the connector itself (the start-up
        // configuration): nested as a value when it parses, else quoted like any text.
        match field.name().strip_suffix("_json") {
            Some(name) if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() => {
                self.0.set(name_static(field.name(), name), text)
            }
            _ => self.0.set(field.name(), json_string(&text)),
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let text = if value.is_finite() {
            // Three decimals are enough for milliseconds and keep lines short.
            let rounded = (value * 1000.0).round() / 1000.0;
            rounded.to_string()
        } else {
            "null".to_string()
        };
        self.0.set(field.name(), text);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.set(field.name(), json_string(&value.to_string()));
    }
}

/// The field name without its `_json` suffix. Field names are `'static`, so a prefix is too.
fn name_static(full: &'static str, prefix: &str) -> &'static str {
    &full[..prefix.len()]
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

const TIMESTAMP: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut Recorder(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<SpanFields>() {
                values.record(&mut Recorder(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        event.record(&mut Recorder(&mut fields));
        let meta = event.metadata();
        let level = level_name(meta.level());
        let timestamp = time::OffsetDateTime::now_utc().format(TIMESTAMP).unwrap_or_default();

        let mut line = String::with_capacity(320);
        let _ = write!(
            line,
            "{{\"timestamp\":\"{timestamp}\",\"level\":\"{level}\",\"severity\":\"{level}\""
        );
        let mut written: Vec<&'static str> = Vec::with_capacity(16);
        // `message` first (log-crate records carry it as `message` too).
        for (k, v) in &fields.0 {
            if *k == "message" {
                let _ = write!(line, ",\"message\":{v}");
                written.push("message");
            }
        }
        if written.is_empty() {
            line.push_str(",\"message\":\"\"");
            written.push("message");
        }
        let _ = write!(line, ",\"target\":{}", json_string(meta.target()));
        for (k, v) in &fields.0 {
            // Records bridged from the `log` crate carry their origin as `log.*` fields.
            if written.contains(k) || k.starts_with("log.") {
                continue;
            }
            let _ = write!(line, ",{}:{v}", json_string(k));
            written.push(k);
        }
        // Inner spans first, so the field nearest the event wins.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                if let Some(span_fields) = ext.get::<SpanFields>() {
                    for (k, v) in &span_fields.0 {
                        if written.contains(k) {
                            continue;
                        }
                        let _ = write!(line, ",{}:{v}", json_string(k));
                        written.push(k);
                    }
                }
            }
        }
        line.push_str("}\n");
        let mut writer = self.make_writer.make_writer();
        let _ = writer.write_all(line.as_bytes());
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

    fn capture(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buffer::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(move || out.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn lines_carry_span_fields_and_recorded_values() {
        let lines = capture(|| {
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                unique_id = "u-1",
                event_id = tracing::field::Empty
            );
            let _g = span.enter();
            tracing::info!("before");
            span.record("event_id", "e-9");
            tracing::warn!(imsi = "001", latency_ms = 1.23456, "after");
        });
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["request_id"], "r-1");
        assert_eq!(lines[0]["unique_id"], "u-1");
        assert!(lines[0].get("event_id").is_none());
        assert_eq!(lines[1]["event_id"], "e-9");
        assert_eq!(lines[1]["level"], "WARNING");
        assert_eq!(lines[1]["message"], "after");
        assert_eq!(lines[1]["latency_ms"], 1.235);
        assert!(lines[1]["timestamp"].as_str().expect("ts").ends_with('Z'));
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
    }

    #[test]
    fn json_fields_nest_as_values() {
        let lines = capture(|| {
            let config = serde_json::json!({"PORT": "8000"});
            tracing::info!(config_json = %config, "effective configuration");
        });
        assert_eq!(lines[0]["config"]["PORT"], "8000");
    }

    #[test]
    fn filter_maps_python_levels() {
        assert!(filter_for("warning").starts_with("warn,"));
        assert!(filter_for("CRITICAL").starts_with("error,"));
        assert!(filter_for("Debug").starts_with("debug,"));
        assert!(filter_for("INFO").starts_with("info,"));
    }
}

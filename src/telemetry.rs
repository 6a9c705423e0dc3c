//! Logs: one JSON object per line on stdout.
//!
//! Every line has `timestamp` (RFC 3339, UTC), `level` (and `severity`, which Cloud Logging
//! reads), `message`, the event's own fields, the fields of the request being served
//! ([`RequestLog`]: `request_id`, `unique_id`, then `event_id`, `event_type` and `outcome` once
//! known) and those of every span it was written in.
//! Values are JSON-escaped, so no input can forge a line. Lines from libraries that use the `log`
//! crate are routed through the same layer, so nothing reaches stdout as plain text.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
use crate::words::{push_escaped, push_json_string};

/// The NSPS trace ids of one request: `x-b3-traceid` (logged as `request_id`) and
/// `x-request-id` (logged as `unique_id`). Sent on every WTL call made for the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceIds {
    pub request_id: String,
    pub unique_id: String,
}

tokio::task_local! {
    static REQUEST: RequestLog;
}

/// The fields every line logged while serving one request carries. They live with the request's
/// task, already JSON-encoded, so a line copies them instead of walking tracing spans (a span per
/// request cost about a tenth of the work of serving an event). The text log format has no
/// access to them and gets a span with the same fields instead.
pub struct RequestLog {
    fields: RefCell<Fields>,
    span: tracing::Span,
}

impl RequestLog {
    /// `span` is the request's span for the text format, or `Span::none()`.
    pub fn new(ids: &TraceIds, span: tracing::Span) -> Self {
        let mut fields = Fields::with_capacity(192);
        fields.push_text("request_id", &ids.request_id);
        fields.push_text("unique_id", &ids.unique_id);
        Self {
            fields: RefCell::new(fields),
            span,
        }
    }

    /// Runs `work` with these fields on every line it logs.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        let span = self.span.clone();
        REQUEST.scope(self, tracing::Instrument::instrument(work, span)).await
    }
}

/// Adds a field to the lines of the request being served (no effect outside one).
fn note(name: &'static str, value: &str) {
    let _ = REQUEST.try_with(|log| {
        log.span.record(name, value);
        if let Ok(mut fields) = log.fields.try_borrow_mut() {
            fields.push_text(name, value);
        }
    });
}

/// The event being served: its id and type go on every later line of the request.
pub fn note_event(event_id: &str, event_type: &str) {
    note("event_id", event_id);
    note("event_type", event_type);
}

/// How the request's event ended (the metric label), for its access line.
pub fn note_outcome(outcome: &'static str) {
    note("outcome", outcome);
}

/// The header NSPS sends its trace id in (`request_id` in logs).
pub static X_B3_TRACEID: http::HeaderName = http::HeaderName::from_static("x-b3-traceid");
/// The header NSPS sends its delivery id in (`unique_id` in logs).
pub static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl TraceIds {
    /// Sets both ids on outgoing headers: the answer to NSPS and every WTL call. Ids are printable
    /// ASCII (checked on the way in, or generated), so they are always valid header values.
    pub fn write_headers(&self, headers: &mut http::HeaderMap) {
        if let Ok(v) = http::HeaderValue::from_str(&self.request_id) {
            headers.insert(X_B3_TRACEID.clone(), v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&self.unique_id) {
            headers.insert(X_REQUEST_ID.clone(), v);
        }
    }

    pub fn generated() -> Self {
        Self {
            request_id: new_trace_id(),
            unique_id: new_trace_id(),
        }
    }
}

/// A fresh UUID v4 for a trace id the caller did not send. Trace ids need to be unique, not
/// secret, so the random bits come from a fast per-thread generator rather than the operating
/// system (a system call per id).
pub fn new_trace_id() -> String {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut buf).to_string()
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
    // Static per-target levels: deciding whether a line is wanted costs a prefix match, with no
    // bookkeeping per span (RUST_LOG is checked at start-up, so the fallback is for the tests).
    let filter = directives
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
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
/// How long the writer thread lets lines gather after writing a batch.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

enum LogMsg {
    Line(Vec<u8>),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Log lines go to one thread that writes them to stdout through a buffer, in batches, so a
/// request never waits for a write system call. A line reaches stdout within a few milliseconds.
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
                // Lines written in the next moment wait in the queue and go out together: under
                // load this thread then wakes a few hundred times a second instead of once per
                // line, and request threads never pay for waking it.
                std::thread::sleep(BATCH_WINDOW);
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

/// A panic becomes one ERROR line (message and location, no backtrace), written on the panicking
/// request's task, so it carries the request's ids. The request itself is answered 500 by the
/// HTTP edge.
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

/// Where the JSON layer hands its finished lines.
pub trait LineSink: Send + Sync + 'static {
    fn line(&self, line: Vec<u8>);
}

impl LineSink for StdoutLines {
    fn line(&self, line: Vec<u8>) {
        // Only fails once the writer thread is gone (process exit): nothing left to write to.
        let _ = self.0.send(LogMsg::Line(line));
    }
}

/// The JSON line layer.
pub struct JsonLayer<W> {
    sink: W,
}

impl<W> JsonLayer<W> {
    pub fn new(sink: W) -> Self {
        Self { sink }
    }
}

/// Fields already JSON-encoded: each name with the byte range of its value in one buffer, so
/// recording a field allocates nothing once the buffer has grown to fit.
#[derive(Default)]
struct Fields {
    names: Vec<(&'static str, usize, usize)>,
    json: String,
}

impl Fields {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            names: Vec::with_capacity(8),
            json: String::with_capacity(bytes),
        }
    }

    /// Records the value written to the buffer since `start` under `name`. A name recorded again
    /// (a span field set later) points at its new value.
    fn close(&mut self, name: &'static str, start: usize) {
        let end = self.json.len();
        match self.names.iter_mut().find(|(k, _, _)| *k == name) {
            Some(slot) => *slot = (name, start, end),
            None => self.names.push((name, start, end)),
        }
    }

    /// Records `value` as a JSON string under `name`.
    fn push_text(&mut self, name: &'static str, value: &str) {
        let start = self.json.len();
        push_json_string(&mut self.json, value);
        self.close(name, start);
    }

    fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.names.iter().map(|&(k, s, e)| (k, &self.json[s..e]))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

struct Recorder<'a>(&'a mut Fields);

impl Recorder<'_> {
    fn number(&mut self, field: &Field, value: impl fmt::Display) {
        let start = self.0.json.len();
        let _ = write!(self.0.json, "{value}");
        self.0.close(field.name(), start);
    }

    /// Formatted text as a JSON string, escaped as it is written.
    fn quoted(&mut self, field: &Field, text: fmt::Arguments<'_>) {
        let start = self.0.json.len();
        self.0.json.push('"');
        let _ = Escaping(&mut self.0.json).write_fmt(text);
        self.0.json.push('"');
        self.0.close(field.name(), start);
    }
}

impl Visit for Recorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_text(field.name(), value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Fields named `*_json` carry JSON produced by the connector itself (the start-up
        // configuration): nested as a value when it parses, else quoted like any text.
        if let Some(name) = field.name().strip_suffix("_json") {
            let text = format!("{value:?}");
            if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
                let start = self.0.json.len();
                self.0.json.push_str(&text);
                self.0.close(name_static(field.name(), name), start);
            } else {
                self.record_str(field, &text);
            }
            return;
        }
        self.quoted(field, format_args!("{value:?}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Three decimals are enough for milliseconds and keep lines short.
        let thousandths = (value * 1000.0).round();
        if !value.is_finite() {
            self.number(field, "null");
        } else if thousandths.abs() < 1e15 {
            // Integer arithmetic: exact, and far cheaper than formatting a float.
            let n = thousandths as i64;
            let start = self.0.json.len();
            let sign = if n < 0 { "-" } else { "" };
            let (whole, frac) = (n.unsigned_abs() / 1000, n.unsigned_abs() % 1000);
            let _ = write!(self.0.json, "{sign}{whole}");
            if frac != 0 {
                let mut digits = [b'.', b'0', b'0', b'0'];
                put_digits(&mut digits[1..], frac);
                let used = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
                self.0
                    .json
                    .push_str(std::str::from_utf8(&digits[..used]).unwrap_or_default());
            }
            self.0.close(field.name(), start);
        } else {
            // Too large for thousandths to matter.
            self.number(field, value);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.quoted(field, format_args!("{value}"));
    }
}

/// The field name without its `_json` suffix. Field names are `'static`, so a prefix is too.
fn name_static(full: &'static str, prefix: &str) -> &'static str {
    &full[..prefix.len()]
}

/// A `fmt::Write` that escapes as it writes, so a `Display` value lands in the line without an
/// intermediate string.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
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

/// Appends `t` as RFC 3339 UTC with microseconds: `2025-03-12T16:47:30.443939Z`.
fn push_timestamp(out: &mut String, t: std::time::SystemTime) {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut buf[0..4], year.clamp(0, 9999) as u64);
    put_digits(&mut buf[5..7], u64::from(month));
    put_digits(&mut buf[8..10], u64::from(day));
    put_digits(&mut buf[11..13], rem / 3600);
    put_digits(&mut buf[14..16], rem / 60 % 60);
    put_digits(&mut buf[17..19], rem % 60);
    put_digits(&mut buf[20..26], u64::from(since.subsec_micros()));
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// Writes `n` as decimal digits filling `slot`, zero-padded on the left.
fn put_digits(slot: &mut [u8], mut n: u64) {
    for d in slot.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), by whole 400-year eras.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: LineSink,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::with_capacity(160);
        attrs.record(&mut Recorder(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                values.record(&mut Recorder(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::with_capacity(256);
        event.record(&mut Recorder(&mut fields));
        let meta = event.metadata();
        let level = level_name(meta.level());

        let mut line = String::with_capacity(512);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, std::time::SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(level);
        line.push_str("\",\"severity\":\"");
        line.push_str(level);
        // `message` first (log-crate records carry it as `message` too).
        line.push_str("\",\"message\":");
        line.push_str(fields.get("message").unwrap_or("\"\""));
        line.push_str(",\"target\":");
        push_json_string(&mut line, meta.target());
        let mut written: Vec<&'static str> = Vec::with_capacity(16);
        written.push("message");
        let mut push_field = |line: &mut String, k: &'static str, v: &str| {
            if written.contains(&k) {
                return;
            }
            line.push(',');
            push_json_string(line, k);
            line.push(':');
            line.push_str(v);
            written.push(k);
        };
        for (k, v) in fields.iter() {
            // Records bridged from the `log` crate carry their origin as `log.*` fields.
            if !k.starts_with("log.") {
                push_field(&mut line, k, v);
            }
        }
        let _ = REQUEST.try_with(|log| {
            if let Ok(request) = log.fields.try_borrow() {
                for (k, v) in request.iter() {
                    push_field(&mut line, k, v);
                }
            }
        });
        // Inner spans first, so the field nearest the event wins.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                if let Some(span_fields) = ext.get::<Fields>() {
                    for (k, v) in span_fields.iter() {
                        push_field(&mut line, k, v);
                    }
                }
            }
        }
        line.push_str("}\n");
        self.sink.line(line.into_bytes());
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

    impl LineSink for Buffer {
        fn line(&self, line: Vec<u8>) {
            self.0.lock().expect("lock").extend_from_slice(&line);
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(buf.clone()));
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
        assert_eq!(lines[1]["request_id"], "r-1");
        assert!(lines[1]["timestamp"].as_str().expect("ts").ends_with('Z'));
    }

    #[test]
    fn lines_carry_the_fields_of_the_request_being_served() {
        let lines = capture(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let ids = TraceIds {
                request_id: "r-\"1".into(),
                unique_id: "u-1".into(),
            };
            runtime.block_on(RequestLog::new(&ids, tracing::Span::none()).scope(async {
                tracing::info!("before");
                note_event("e-9", "SIM/Updated");
                tracing::info!(outcome = "applied", "WTL call");
                note_outcome("processed");
                tracing::info!("after");
            }));
            tracing::info!("outside");
            note_outcome("lost");
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
        assert!(l["nan"].is_null());
        assert_eq!(l["error"], "broken \"pipe\"");
        assert_eq!(l["shared"], "inner", "the nearest span wins");
        assert_eq!(l["only_outer"], 1);
        assert_eq!(l["level"], "ERROR");
        assert_eq!(l["target"], module_path!());
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_reads_back_as_itself_and_stays_on_one_line(text in "(?s).{0,40}", cut in 0usize..40) {
            // Any text, with the characters that need escaping mixed in at a random place.
            let mut text = text;
            let at = text.char_indices().nth(cut).map_or(text.len(), |(i, _)| i);
            text.insert_str(at, "\"\\\n\r\t\u{0}\u{1f}\u{2028}\u{2029}\u{2030}é");
            let mut json = String::new();
            push_json_string(&mut json, &text);
            let back: String = serde_json::from_str(&json).expect("valid JSON string");
            proptest::prop_assert_eq!(&back, &text);
            let breaks_line = json.chars().any(|c| (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}');
            proptest::prop_assert!(!breaks_line, "raw control or separator in {}", json);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        // Leap days, century rules, year ends, and a day far ahead.
        for secs in [
            0u64,
            951_782_400,
            951_868_799,
            1_709_164_800,
            4_107_542_399,
            1_741_798_050,
            253_402_300_799,
        ] {
            for micros in [0u32, 1, 443_939, 999_999] {
                let t = UNIX_EPOCH + Duration::new(secs, micros * 1000);
                let mut ours = String::new();
                push_timestamp(&mut ours, t);
                let expected = time::OffsetDateTime::from(t)
                    .format(time::macros::format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
                    ))
                    .expect("format");
                assert_eq!(ours, expected);
            }
        }
    }

    #[test]
    fn floats_keep_three_decimals() {
        let cases = [
            (1.23456, "1.235"),
            (2.0, "2"),
            (0.1, "0.1"),
            (0.0004, "0"),
            (-1.5, "-1.5"),
            (12.05, "12.05"),
            (1e20, "1e20"),
        ];
        for (value, text) in cases {
            let lines = capture(|| tracing::info!(v = value, "f"));
            assert_eq!(
                lines[0]["v"],
                serde_json::from_str::<serde_json::Value>(text).expect("json"),
                "{value}"
            );
        }
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
    fn generated_trace_ids_are_distinct_uuid_v4() {
        let a = new_trace_id();
        let b = new_trace_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
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

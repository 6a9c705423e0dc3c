//! The trace a request belongs to, taken from its headers in this order: W3C `traceparent`,
//! Google's `X-Cloud-Trace-Context`, B3 (`x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`; a 16-digit
//! trace id is left-padded to 32), else a new one. The request's own span id is new in every case;
//! every WTL call continues the trace with a `traceparent` naming the span it was made from.

use http::HeaderMap;

use super::{TRACEPARENT, X_B3_TRACEID, X_CLOUD_TRACE_CONTEXT};

static X_B3_SPANID: http::HeaderName = http::HeaderName::from_static("x-b3-spanid");
static X_B3_SAMPLED: http::HeaderName = http::HeaderName::from_static("x-b3-sampled");

/// Where the trace came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    TraceParent,
    CloudTraceContext,
    B3,
    /// No usable trace header: a trace of its own.
    New,
}

/// One request's trace: the trace id (32 lower-case hex digits), the caller's span (when it
/// sent one), whether the caller sampled it, and this request's own span id (16 hex digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub trace_id: String,
    pub parent_span_id: Option<String>,
    pub sampled: bool,
    pub span_id: String,
    pub source: Source,
}

impl TraceContext {
    /// The trace of a request, from its headers (see the module's order).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let continued = text(&TRACEPARENT)
            .and_then(from_traceparent)
            .or_else(|| text(&X_CLOUD_TRACE_CONTEXT).and_then(from_cloud_context))
            .or_else(|| {
                let trace = text(&X_B3_TRACEID)?;
                from_b3(trace, text(&X_B3_SPANID), text(&X_B3_SAMPLED))
            });
        match continued {
            Some((trace_id, parent_span_id, sampled, source)) => Self {
                trace_id,
                parent_span_id,
                sampled,
                span_id: new_span_id(),
                source,
            },
            None => Self {
                trace_id: new_w3c_trace_id(),
                parent_span_id: None,
                sampled: false,
                span_id: new_span_id(),
                source: Source::New,
            },
        }
    }

    /// The `traceparent` for a call made from the span `span_id` of this trace.
    pub(crate) fn traceparent(&self, span_id: &str, sampled: bool) -> String {
        let flags = if sampled { "01" } else { "00" };
        let mut text = String::with_capacity(8 + self.trace_id.len() + span_id.len());
        for part in ["00-", &self.trace_id, "-", span_id, "-", flags] {
            text.push_str(part);
        }
        text
    }
}

/// A trace id: 32 lower-case hex digits, not all zero.
fn new_w3c_trace_id() -> String {
    trace_id_text(fastrand::u128(1..).to_be_bytes())
}

/// A trace id's 16 bytes as W3C Trace Context writes them: 32 lower-case hex digits (uuid's
/// encoder, which writes them without the formatting machinery a `{:032x}` goes through).
pub(super) fn trace_id_text(bytes: [u8; 16]) -> String {
    let id = uuid::Uuid::from_bytes(bytes);
    id.simple().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned()
}

/// A span id: 16 hex digits, not all zero.
pub(super) fn new_span_id() -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(16);
    let _ = write!(text, "{:016x}", fastrand::u64(1..));
    text
}

type Continued = (String, Option<String>, bool, Source);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Digits and `a` to `f` only, as W3C Trace Context writes its ids.
fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn not_zero(s: &str) -> bool {
    s.bytes().any(|b| b != b'0')
}

/// `00-<trace id>-<parent id>-<flags>` (W3C Trace Context; lower-case hex).
fn from_traceparent(value: &str) -> Option<Continued> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = is_hex(version, 2)
        && is_lower_hex(version)
        && version != "ff"
        && is_hex(trace, 32)
        && is_lower_hex(trace)
        && not_zero(trace)
        && is_hex(parent, 16)
        && is_lower_hex(parent)
        && not_zero(parent)
        && is_hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    if !valid {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
    Some((
        trace.to_string(),
        Some(parent.to_string()),
        sampled,
        Source::TraceParent,
    ))
}

/// `TRACE_ID[/SPAN_ID][;o=OPTIONS]`: a 32-digit hex trace id, a decimal span id, `o=1` sampled.
fn from_cloud_context(value: &str) -> Option<Continued> {
    let value = value.trim();
    let (ids, options) = value.split_once(';').unwrap_or((value, ""));
    let (trace, span) = ids.split_once('/').map_or((ids, None), |(t, s)| (t, Some(s)));
    if !is_hex(trace, 32) || !not_zero(trace) {
        return None;
    }
    let parent = span
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s != 0)
        .map(|s| format!("{s:016x}"));
    let sampled = options.trim() == "o=1";
    Some((trace.to_ascii_lowercase(), parent, sampled, Source::CloudTraceContext))
}

/// B3: a 16- or 32-digit hex trace id (16 is left-padded with zeros), a 16-digit span id,
/// `x-b3-sampled` `1` (or `true`) sampled.
fn from_b3(trace: &str, span: Option<&str>, sampled: Option<&str>) -> Option<Continued> {
    let trace = trace.trim();
    let trace = if is_hex(trace, 16) {
        format!("{:0>32}", trace)
    } else if is_hex(trace, 32) {
        trace.to_string()
    } else {
        return None;
    };
    if !not_zero(&trace) {
        return None;
    }
    let parent = span
        .map(str::trim)
        .filter(|s| is_hex(s, 16) && not_zero(s))
        .map(str::to_ascii_lowercase);
    let sampled = matches!(sampled.map(str::trim), Some("1" | "true" | "d"));
    Some((trace.to_ascii_lowercase(), parent, sampled, Source::B3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn traceparent_comes_first() {
        let ctx = TraceContext::from_headers(&headers(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("x-cloud-trace-context", "105445aa7843bc8bf206b12000100000/1;o=1"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ]));
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled);
        assert_eq!(ctx.source, Source::TraceParent);
        assert_ne!(ctx.span_id, "00f067aa0ba902b7", "the request has a span of its own");
        assert_eq!(ctx.span_id.len(), 16);
    }

    #[test]
    fn cloud_trace_context_then_b3() {
        let ctx = TraceContext::from_headers(&headers(&[
            ("x-cloud-trace-context", "105445AA7843BC8BF206B12000100000/12345;o=1"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ]));
        assert_eq!(ctx.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("0000000000003039"));
        assert!(ctx.sampled);
        assert_eq!(ctx.source, Source::CloudTraceContext);
        let ctx = TraceContext::from_headers(&headers(&[(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000",
        )]));
        assert!(!ctx.sampled && ctx.parent_span_id.is_none());
    }

    #[test]
    fn b3_ids_and_a_short_trace_id_left_padded() {
        let ctx = TraceContext::from_headers(&headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00F067AA0BA902B7"),
            ("x-b3-sampled", "1"),
        ]));
        assert_eq!(ctx.trace_id, "0000000000000000a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled);
        assert_eq!(ctx.source, Source::B3);
        let unsampled = TraceContext::from_headers(&headers(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-sampled", "0"),
        ]));
        assert!(!unsampled.sampled);
    }

    #[test]
    fn unusable_headers_start_a_trace_of_its_own() {
        for bad in [
            vec![("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
            vec![("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")],
            vec![("traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
            vec![("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")],
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            )],
            vec![("x-cloud-trace-context", "short/1;o=1")],
            vec![("x-b3-traceid", "5f1a6b3e-8f7b-4c9e-9a53-0b6b2f1a9d10")],
            vec![],
        ] {
            let ctx = TraceContext::from_headers(&headers(&bad));
            assert_eq!(ctx.source, Source::New, "{bad:?}");
            assert_eq!(ctx.trace_id.len(), 32);
            assert!(is_lower_hex(&ctx.trace_id) && not_zero(&ctx.trace_id));
            assert!(ctx.span_id.len() == 16 && is_lower_hex(&ctx.span_id) && not_zero(&ctx.span_id));
            assert!(ctx.parent_span_id.is_none() && !ctx.sampled);
        }
    }

    #[test]
    fn a_call_continues_the_trace() {
        let ctx = TraceContext::from_headers(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]));
        assert_eq!(
            ctx.traceparent("1111111111111111", true),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
        );
        assert_eq!(
            ctx.traceparent("1111111111111111", false),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-00"
        );
    }

    #[test]
    fn a_trace_id_is_written_as_opentelemetry_writes_it() {
        for bytes in [[0u8; 16], [0xff; 16], fastrand::u128(..).to_be_bytes()] {
            let id = opentelemetry::trace::TraceId::from_bytes(bytes);
            assert_eq!(trace_id_text(bytes), id.to_string());
        }
        assert_eq!(
            trace_id_text(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128.to_be_bytes()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}

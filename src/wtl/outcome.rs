//! What one WTL answer means, decided in one place.
//!
//! [`classify`] turns a status and body into success, a final failure, or a failure worth
//! another attempt. It knows nothing of NSPS; the HTTP edge maps [`WtlError`] to statuses.

use std::time::{Duration, SystemTime};

use crate::plan::Action;

/// A call that reached its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Done {
    /// WTL applied the call.
    Applied,
    /// WTL already held the result: `insert` answered 409, or `delete` answered 404.
    AlreadyApplied,
}

/// Why a connection-level failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NetFailure {
    Timeout,
    Connect,
    Dns,
    /// The connection broke while the request or answer was on the wire.
    Transport,
    /// The TLS handshake failed: a certificate refused on either side, no common protocol.
    /// Waiting does not mend it, so it is not retried.
    Tls,
}

impl NetFailure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connection refused or failed",
            Self::Dns => "DNS lookup failed",
            Self::Transport => "connection broken",
            Self::Tls => "TLS failure",
        }
    }
}

/// A call that failed, after any retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WtlError {
    /// WTL answered 400/409/422: it refused the data.
    #[error("WTL rejected the request (HTTP {status}): {text}")]
    Rejected { status: u16, text: String },
    /// WTL answered 404 to something other than a delete.
    #[error("WTL does not know the subscriber (HTTP 404): {text}")]
    NotFound { text: String },
    /// WTL answered 429 and retrying did not help (or it asked for too long a wait).
    #[error("WTL is rate limiting the connector (HTTP 429)")]
    RateLimited { retry_after: Option<Duration> },
    /// WTL answered 401/403: the connector's WTL credentials are wrong.
    #[error("WTL authentication failed (HTTP {status}): check the WTL credentials (WTL_AUTH and its settings)")]
    AuthFailed { status: u16 },
    /// WTL answered 5xx, a failure body, an unreadable body, or an unexpected status.
    #[error("WTL failed: {text}")]
    Service {
        status: Option<u16>,
        text: String,
        retry_after: Option<Duration>,
    },
    /// WTL could not be reached.
    #[error("WTL could not be reached: {}: {detail}", kind.as_str())]
    Unreachable { kind: NetFailure, detail: String },
    /// The event's time budget (`WTL_TOTAL_TIMEOUT`) ran out.
    #[error("WTL did not complete the call within WTL_TOTAL_TIMEOUT ({}s)", budget.as_secs_f64())]
    DeadlineExceeded { budget: Duration },
    /// The OAuth2 token endpoint could not be reached.
    #[error("the WTL token endpoint could not be reached: {detail}")]
    TokenEndpointUnreachable { detail: String },
    /// The OAuth2 token endpoint answered, but not with a usable token.
    #[error("the WTL token endpoint refused or gave no usable token: {detail}")]
    TokenEndpointFailed { detail: String },
}

impl WtlError {
    /// A short label for logs and metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::NotFound { .. } => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::AuthFailed { .. } => "auth_failed",
            Self::Service { .. } => "server_error",
            Self::Unreachable { .. } => "unreachable",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::TokenEndpointUnreachable { .. } => "token_unreachable",
            Self::TokenEndpointFailed { .. } => "token_failed",
        }
    }

    /// The status WTL answered, when it answered.
    pub(crate) fn wtl_status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. } | Self::AuthFailed { status } => Some(*status),
            Self::NotFound { .. } => Some(404),
            Self::RateLimited { .. } => Some(429),
            Self::Service { status, .. } => *status,
            _ => None,
        }
    }

    /// Is this failure worth another attempt (connection errors, timeouts, 429, 502/503/504)?
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { kind, .. } => *kind != NetFailure::Tls,
            Self::RateLimited { .. } => true,
            Self::Service { status, .. } => matches!(status, Some(502..=504)),
            _ => false,
        }
    }

    /// The wait WTL asked for with `Retry-After`, if any.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Service { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Longest piece of WTL's answer quoted back in an error (NSPS stores every answer).
const MAX_QUOTED: usize = 300;

/// Classifies one answer from `POST /prov`.
pub(crate) fn classify(
    action: Action,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Done, WtlError> {
    match status {
        200..=299 => success_body(body),
        409 if action == Action::Insert => Ok(Done::AlreadyApplied),
        404 if action == Action::Delete => Ok(Done::AlreadyApplied),
        404 => Err(WtlError::NotFound {
            text: error_text(body, status),
        }),
        400 if is_client_certificate_page(body) => Err(WtlError::Unreachable {
            kind: NetFailure::Tls,
            detail: format!(
                "the TLS front of WTL refused the client certificate or wants one (HTTP 400: {}); set WTL_CLIENT_CERT_FILE and WTL_CLIENT_KEY_FILE to a certificate it trusts",
                error_text(body, status)
            ),
        }),
        400 | 409 | 422 => Err(WtlError::Rejected {
            status,
            text: error_text(body, status),
        }),
        401 | 403 => Err(WtlError::AuthFailed { status }),
        429 => Err(WtlError::RateLimited { retry_after }),
        _ => Err(WtlError::Service {
            status: Some(status),
            text: format!("HTTP {status}: {}", error_text(body, status)),
            retry_after: if matches!(status, 502..=504) { retry_after } else { None },
        }),
    }
}

/// The page a TLS-terminating web server (nginx and its kin) answers with 400 when mutual TLS
/// failed: not a verdict on the data, so never a 422 to NSPS.
fn is_client_certificate_page(body: &[u8]) -> bool {
    const MARKS: [&str; 2] = ["No required SSL certificate was sent", "The SSL certificate error"];
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    MARKS.iter().any(|m| text.contains(m))
}

/// A 2xx is a success unless its JSON says otherwise (`"result": false` or an `"error"` member).
fn success_body(body: &[u8]) -> Result<Done, WtlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Done::Applied);
    }
    let failed = verdict(body).map_err(|_| WtlError::Service {
        status: None,
        text: format!("WTL answered 2xx with a body that is not JSON: {}", quote(body)),
        retry_after: None,
    })?;
    if failed {
        return Err(WtlError::Service {
            status: None,
            text: format!("WTL reported a failure: {}", error_text(body, 200)),
            retry_after: None,
        });
    }
    Ok(Done::Applied)
}

/// Does a 2xx body say it failed? Its top-level `result` is `false`, or its `error` is anything
/// but `null`, `false` or `""` (of a repeated member, the last counts). Any other JSON, of any
/// shape, is a success; the other members are only skipped, never decoded, so what they hold
/// (a number beyond `f64`, a lone surrogate) cannot turn a success into a failure. `Err` when
/// the body is not JSON.
fn verdict(body: &[u8]) -> Result<bool, serde_json::Error> {
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object {
        return serde_json::from_slice::<serde::de::IgnoredAny>(body).map(|_| false);
    }
    serde_json::from_slice::<Verdict>(body).map(|v| v.failed)
}

/// The two members of a JSON object that carry WTL's verdict (see [`verdict`]).
struct Verdict {
    failed: bool,
}

impl<'de> serde::Deserialize<'de> for Verdict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Verdict;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Verdict, A::Error> {
                use serde_json::Value;
                let (mut result, mut error) = (None, None);
                while let Some(name) = map.next_key::<String>()? {
                    match name.as_str() {
                        "result" => result = Some(map.next_value::<Value>()?),
                        "error" => error = Some(map.next_value::<Value>()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let raised = |v: &Value| !matches!(v, Value::Null | Value::Bool(false)) && v.as_str() != Some("");
                Ok(Verdict {
                    failed: result == Some(Value::Bool(false)) || error.as_ref().is_some_and(raised),
                })
            }
        }
        d.deserialize_map(Members)
    }
}

/// WTL's own words for a failure: a JSON `error` / `message` / `detail` member, else the body text.
pub(crate) fn error_text(body: &[u8], status: u16) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["error", "message", "detail", "description", "error_description"] {
            match value.get(key) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => return clean(s),
                Some(serde_json::Value::Object(o)) => {
                    if let Some(serde_json::Value::String(s)) = o.get("message") {
                        return clean(s);
                    }
                }
                _ => {}
            }
        }
    }
    let text = quote(body);
    if text.is_empty() {
        match http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
        {
            Some(reason) => reason.to_string(),
            None => format!("HTTP {status}"),
        }
    } else {
        text
    }
}

fn quote(body: &[u8]) -> String {
    clean(&String::from_utf8_lossy(body))
}

/// Trims, drops control characters and cuts to [`MAX_QUOTED`] characters.
fn clean(text: &str) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED)
        .collect();
    if text.trim().chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out
}

/// `Retry-After`: delta seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_server_refusing_the_client_certificate_is_a_tls_failure_not_a_data_error() {
        let page = b"<html><head><title>400 No required SSL certificate was sent</title></head></html>";
        let err = classify(Action::Update, 400, None, page).expect_err("a failure");
        assert!(
            matches!(&err, WtlError::Unreachable { kind: NetFailure::Tls, detail } if detail.contains("WTL_CLIENT_CERT_FILE")),
            "{err:?}"
        );
        assert!(!err.is_transient(), "a certificate problem is not retried");
        let plain = classify(Action::Update, 400, None, br#"{"error":"bad imsi"}"#).expect_err("a failure");
        assert!(matches!(plain, WtlError::Rejected { status: 400, .. }));
    }

    #[test]
    fn plain_2xx_is_success() {
        assert_eq!(classify(Action::Update, 200, None, b""), Ok(Done::Applied));
        assert_eq!(classify(Action::Update, 204, None, b""), Ok(Done::Applied));
        assert_eq!(
            classify(Action::Update, 200, None, br#"{"result":true}"#),
            Ok(Done::Applied)
        );
        assert_eq!(
            classify(Action::Update, 201, None, br#"{"error":null}"#),
            Ok(Done::Applied)
        );
    }

    /// The rule the verdict implements, on a fully built JSON value.
    fn failed_by_rule(value: &serde_json::Value) -> bool {
        value.get("result") == Some(&serde_json::Value::Bool(false))
            || value
                .get("error")
                .is_some_and(|e| !matches!(e, serde_json::Value::Null | serde_json::Value::Bool(false)) && e != "")
    }

    fn answer_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            prop_oneof![Just(""), Just("x"), Just("no such profile")].prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![Just("result"), Just("error"), Just("r\\u0065sult"), Just("n")],
                        inner
                    ),
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    proptest::proptest! {
        /// A 2xx body's verdict follows the rule for any shape, including escaped member names
        /// and repeated members (the last one counts).
        #[test]
        fn the_verdict_matches_the_rule(value in answer_json(), repeat in proptest::prelude::any::<bool>()) {
            let mut text = value.to_string().replace("r\\\\u0065sult", "r\\u0065sult");
            if repeat && text.starts_with('{') && text.len() > 2 {
                text = format!(r#"{{"result":false,"error":"early",{}"#, &text[1..]);
            }
            let expected = serde_json::from_str::<serde_json::Value>(&text).map(|v| failed_by_rule(&v)).ok();
            let got = serde_json::from_str::<serde_json::Value>(&text).ok().map(|_| success_body(text.as_bytes()).is_err());
            proptest::prop_assert_eq!(got, expected, "{}", text);
        }
    }

    #[test]
    fn what_other_members_hold_never_turns_a_success_into_a_failure() {
        for body in [
            &br#"{"result":true,"data":"\ud800"}"#[..],
            br#"{"result":true,"data":1e400}"#,
            br#"{"result":true,"data":[-1e400]}"#,
            b"{\"result\":true,\"data\":\"\xff\xfe\"}",
            br#"[1e400]"#,
            br#""just text""#,
        ] {
            assert!(
                matches!(classify(Action::Update, 200, None, body), Ok(Done::Applied)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(classify(Action::Update, 200, None, br#"{"result":tru"#).is_err());
    }

    #[test]
    fn failure_bodies_in_a_2xx_are_service_errors() {
        let e = classify(
            Action::Update,
            200,
            None,
            br#"{"result":false,"error":"no such profile"}"#,
        )
        .expect_err("fails");
        assert!(
            matches!(&e, WtlError::Service { text, .. } if text.contains("no such profile")),
            "{e:?}"
        );
        assert!(classify(Action::Update, 200, None, br#"{"error":"boom"}"#).is_err());
        let e = classify(Action::Update, 200, None, b"<html>").expect_err("unreadable");
        assert!(!e.is_transient());
    }

    #[test]
    fn repeat_answers_count_as_success() {
        assert_eq!(classify(Action::Insert, 409, None, b""), Ok(Done::AlreadyApplied));
        assert_eq!(classify(Action::Delete, 404, None, b""), Ok(Done::AlreadyApplied));
        assert!(matches!(
            classify(Action::Update, 404, None, b""),
            Err(WtlError::NotFound { .. })
        ));
        assert!(matches!(
            classify(Action::Update, 409, None, b""),
            Err(WtlError::Rejected { status: 409, .. })
        ));
    }

    #[test]
    fn statuses_map_to_their_kinds() {
        let e = classify(Action::Update, 400, None, br#"{"error":"bad msisdn"}"#).expect_err("rejected");
        assert_eq!(
            e,
            WtlError::Rejected {
                status: 400,
                text: "bad msisdn".into()
            }
        );
        assert!(matches!(
            classify(Action::Update, 422, None, b"nope"),
            Err(WtlError::Rejected { status: 422, .. })
        ));
        assert!(matches!(
            classify(Action::Update, 401, None, b""),
            Err(WtlError::AuthFailed { status: 401 })
        ));
        assert!(matches!(
            classify(Action::Update, 403, None, b""),
            Err(WtlError::AuthFailed { status: 403 })
        ));
        let e = classify(Action::Update, 429, Some(Duration::from_secs(2)), b"").expect_err("429");
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        for s in [502, 503, 504] {
            assert!(
                classify(Action::Update, s, None, b"").expect_err("5xx").is_transient(),
                "{s}"
            );
        }
        let e = classify(Action::Update, 500, None, b"").expect_err("500");
        assert!(!e.is_transient());
        assert!(matches!(e, WtlError::Service { status: Some(500), .. }));
    }

    #[test]
    fn quoted_text_is_bounded_and_clean() {
        let long = "x".repeat(1000);
        let t = error_text(long.as_bytes(), 500);
        assert!(t.chars().count() <= MAX_QUOTED + 1);
        assert_eq!(error_text(b"line1\nline2", 400), "line1 line2");
        assert_eq!(error_text(b"", 503), "Service Unavailable");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(120)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(120));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}

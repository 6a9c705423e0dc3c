//! Error answers: the one place where failures become HTTP statuses and JSON bodies.
//!
//! Every error body is `{"message", "error", "type", "details"?}`. Nothing here ever includes a
//! secret, a stack trace or a Rust type name.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::answers::{ActionTaken, CallResult};
use crate::nsps::FieldProblem;
use crate::plan::{Action, WtlCall};
use crate::wtl::WtlError;

/// The `type` member of an error body.
#[allow(clippy::enum_variant_names)] // the names are the wire values NSPS sees
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ErrorType {
    ValidationError,
    AuthenticationError,
    ServiceError,
    ConnectionError,
    RateLimitError,
    InternalError,
}

/// An error answer's body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct Body<'a> {
    message: &'a str,
    error: &'a str,
    #[serde(rename = "type")]
    kind: ErrorType,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    details: Option<&'a Details>,
}

/// What an error is about, where there is more to say than the message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Details {
    /// What is wrong with the event, field by field.
    Fields(Vec<FieldProblem>),
    /// The WTL call that failed.
    WtlFailure(WtlFailure),
}

/// A failed WTL call: the event, the call, WTL's status, and the calls of the event completed
/// before it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WtlFailure {
    event_id: String,
    failed_call: FailedCall,
    /// WTL's HTTP status; null when WTL gave no answer.
    #[schema(required = true)]
    wtl_status: Option<u16>,
    completed_calls: Vec<ActionTaken<'static>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FailedCall {
    action: Action,
    imsi: String,
}

/// An error answer, ready to become a response.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: String,
    pub error: String,
    pub(crate) details: Option<Details>,
    pub retry_after: Option<Duration>,
    pub www_authenticate: bool,
}

impl ApiError {
    fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            error: status.canonical_reason().unwrap_or("Error").to_string(),
            details: None,
            retry_after: None,
            www_authenticate: false,
        }
    }

    fn with_details(mut self, details: Details) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn unauthorized() -> Self {
        Self {
            error: "Unauthorized".into(),
            www_authenticate: true,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::AuthenticationError,
                "Invalid access token",
            )
        }
    }

    /// The caller's address is not in `ALLOWED_SOURCE_RANGES` (or could not be known).
    pub(crate) fn source_not_allowed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorType::AuthenticationError,
            "Source address not allowed",
        )
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::ValidationError,
            format!("No such endpoint: {}", super::prefix(path, 200)),
        )
    }

    pub(crate) fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::ValidationError,
            format!(
                "Method {} is not allowed on {}",
                super::prefix(method, 200),
                super::prefix(path, 200)
            ),
        )
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::ValidationError,
            format!("The request body is larger than MAX_BODY_BYTES ({limit} bytes)"),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorType::ValidationError,
            format!(
                "Content-Type must be application/json, got {}",
                super::prefix(content_type, 200)
            ),
        )
    }

    pub(crate) fn unreadable_body(reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::ValidationError,
            format!("The request body could not be read: {reason}"),
        )
    }

    /// A payload that does not parse, or breaks a field rule: 422 naming the field.
    pub(crate) fn invalid_event(problem: FieldProblem) -> Self {
        let message = format!("Invalid event: {}: {}", problem.field, problem.message);
        let details = Details::Fields(vec![problem]);
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorType::ValidationError, message).with_details(details)
    }

    pub(crate) fn overloaded() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ServiceError,
                "The connector is at MAX_IN_FLIGHT events; retry shortly",
            )
        }
    }

    pub(crate) fn request_timeout(limit: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ConnectionError,
            format!(
                "The event was not completed within REQUEST_TIMEOUT ({}s)",
                limit.as_secs_f64()
            ),
        )
    }

    /// The shared redelivery memory (Redis) could not be asked: nothing is applied without it.
    pub(crate) fn store_unavailable(reason: &str) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(5)),
            error: reason.to_string(),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ConnectionError,
                "redelivery store unavailable",
            )
        }
    }

    pub(crate) fn shutting_down() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ServiceError,
                "The connector is shutting down",
            )
        }
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::InternalError,
            "The connector hit an internal error; it has been logged",
        )
    }

    /// The answer for a failed WTL call: its status and type (SPEC §5), what failed, and the
    /// calls of the event that were completed before it.
    pub(crate) fn from_wtl(
        err: &WtlError,
        failed: &WtlCall,
        completed: &[(&WtlCall, CallResult)],
        event_id: &str,
    ) -> Self {
        let call = format!("{} of IMSI {}", failed.action, failed.imsi);
        let (status, kind, message, error) = classify_wtl_failure(err, &call);
        Self {
            error,
            retry_after: err.retry_after(),
            ..Self::new(status, kind, message)
        }
        .with_details(failure_details(err, failed, completed, event_id))
    }
}

/// Status, type, message and `error` text for a WTL failure of `call`.
fn classify_wtl_failure(err: &WtlError, call: &str) -> (StatusCode, ErrorType, String, String) {
    let (status, kind) = status_of(err);
    let (message, error) = words_for(err, call);
    (status, kind, message, error)
}

/// The status NSPS stores for a WTL failure (it redelivers every non-2xx), and the error type.
fn status_of(err: &WtlError) -> (StatusCode, ErrorType) {
    match err {
        WtlError::Rejected { .. } => (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::ValidationError),
        WtlError::NotFound { .. } => (StatusCode::NOT_FOUND, ErrorType::ValidationError),
        WtlError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorType::RateLimitError),
        WtlError::Service {
            retry_after: Some(_), ..
        } => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::ServiceError),
        WtlError::AuthFailed { .. } | WtlError::Service { .. } | WtlError::TokenEndpointFailed { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::ServiceError)
        }
        WtlError::Unreachable { .. }
        | WtlError::DeadlineExceeded { .. }
        | WtlError::TokenEndpointUnreachable { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::ConnectionError),
    }
}

/// The answer's `message` (what happened to `call`) and `error` (WTL's words, or ours).
fn words_for(err: &WtlError, call: &str) -> (String, String) {
    match err {
        WtlError::Rejected { status, text } => (format!("WTL rejected the {call} (HTTP {status})"), text.clone()),
        WtlError::NotFound { text } => (
            format!("WTL does not know the subscriber for the {call} (HTTP 404)"),
            text.clone(),
        ),
        WtlError::RateLimited { .. } => (
            format!("WTL is rate limiting the connector; the {call} was not done"),
            "Too Many Requests".to_string(),
        ),
        WtlError::AuthFailed { status } => (
            format!("WTL authentication failed (HTTP {status}) for the {call}: check the connector's WTL credentials"),
            "WTL authentication failed".to_string(),
        ),
        WtlError::Service {
            retry_after: Some(_),
            text,
            ..
        } => (
            format!("WTL is unavailable and asked to retry later; the {call} was not done"),
            text.clone(),
        ),
        WtlError::Service { text, .. } => (format!("WTL failed the {call}"), text.clone()),
        WtlError::Unreachable {
            kind: crate::wtl::NetFailure::Tls,
            ..
        } => (
            format!("The TLS connection to WTL failed for the {call}"),
            err.to_string(),
        ),
        WtlError::Unreachable { .. } | WtlError::DeadlineExceeded { .. } => {
            (format!("WTL could not be reached for the {call}"), err.to_string())
        }
        WtlError::TokenEndpointUnreachable { .. } => (
            format!("The WTL token endpoint could not be reached for the {call}"),
            err.to_string(),
        ),
        WtlError::TokenEndpointFailed { .. } => (
            format!("The WTL token endpoint gave no usable token for the {call}"),
            err.to_string(),
        ),
    }
}

/// The `details` of a WTL failure: the event, the failed call, WTL's status, the calls done.
fn failure_details(err: &WtlError, failed: &WtlCall, completed: &[(&WtlCall, CallResult)], event_id: &str) -> Details {
    Details::WtlFailure(WtlFailure {
        event_id: event_id.to_string(),
        failed_call: FailedCall {
            action: failed.action,
            imsi: failed.imsi.as_str().to_string(),
        },
        wtl_status: err.wtl_status(),
        completed_calls: completed
            .iter()
            .map(|(call, result)| ActionTaken::of(call, *result).into_owned())
            .collect(),
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            message: &self.message,
            error: &self.error,
            kind: self.kind,
            details: self.details.as_ref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            json,
        )
            .into_response();
        if self.www_authenticate {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up, as RFC 9110 wants.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

//! Which connection-level failure a reqwest error is, and a description of it that is safe to
//! show (no URL, so no credentials).

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

use super::outcome::NetFailure;

/// Classifies a failed exchange: TLS anywhere in the causes wins (a handshake refused is not a
/// network fault), then timeout, DNS, connect, and anything else broke on the wire.
pub(crate) fn classify(e: &reqwest::Error) -> (NetFailure, String) {
    if let Some(why) = tls_failure(e) {
        return (NetFailure::Tls, format!("TLS handshake failed: {why}"));
    }
    let detail = describe(e);
    let kind = if e.is_timeout() {
        NetFailure::Timeout
    } else if e.is_connect() && detail.contains("dns error") {
        NetFailure::Dns
    } else if e.is_connect() {
        NetFailure::Connect
    } else {
        NetFailure::Transport
    };
    (kind, detail)
}

/// Did a request fail because the limit it was given ran out (not, say, a connect timeout or
/// the TCP keepalive giving up, which keep their own description)?
pub(crate) fn limit_ran_out(e: &reqwest::Error, started: tokio::time::Instant, limit: std::time::Duration) -> bool {
    e.is_timeout() && !e.is_connect() && started.elapsed() >= limit
}

/// What went wrong with TLS, if anything among the causes is a TLS failure: a rustls error
/// (possibly inside nested I/O errors, whose own `source` skips what they wrap), or an alert
/// the server sent, which the HTTP/2 layer passes on only as the text of an I/O error.
fn tls_failure(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = rustls_inside(c) {
            return Some(explain_tls(tls));
        }
        if let Some(alert) = alert_in_text(c) {
            return Some(explain_alert(&alert));
        }
        cause = c.source();
    }
    None
}

fn rustls_inside<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_inside(inner)
}

/// The alert name in an I/O error that carries a TLS alert only as text.
fn alert_in_text(e: &(dyn StdError + 'static)) -> Option<String> {
    let io = e.downcast_ref::<std::io::Error>()?;
    if io.kind() != std::io::ErrorKind::InvalidData {
        return None;
    }
    let text = io.to_string();
    text.strip_prefix("received fatal alert: ")
        .map(|name| name.trim().to_string())
}

/// A TLS failure in words an operator can act on.
fn explain_tls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the server's certificate is signed by an unknown issuer (trust its CA with WTL_CA_FILE)".to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate is not valid for the host name in WTL_API_URL".to_string()
            }
            CertificateError::Revoked => "the server's certificate has been revoked".to_string(),
            other => format!("the server's certificate was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => explain_alert(&format!("{alert:?}")),
        other => other.to_string(),
    }
}

/// A TLS alert from the server, by its name.
fn explain_alert(name: &str) -> String {
    let certificate_refused = [
        "BadCertificate",
        "UnknownCA",
        "CertificateUnknown",
        "UnsupportedCertificate",
        "CertificateExpired",
        "CertificateRevoked",
        "AccessDenied",
    ];
    if name == format!("{:?}", AlertDescription::CertificateRequired) {
        "the server requires a client certificate (set WTL_CLIENT_CERT_FILE and WTL_CLIENT_KEY_FILE)".to_string()
    } else if certificate_refused.contains(&name) {
        format!("the server refused the client certificate (alert {name})")
    } else {
        format!("the server ended the handshake (alert {name})")
    }
}

/// An error with its causes on one line, without the URL reqwest's own text names (it may
/// carry credentials): the description starts at the first cause.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    match e.source() {
        Some(cause) => chain(cause),
        None => e
            .to_string()
            .replace(e.url().map(|u| u.as_str()).unwrap_or("\u{0}"), "WTL"),
    }
}

/// An error and its causes, outermost first, without repeating a cause whose text the outer
/// one already holds.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

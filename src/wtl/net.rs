//! Which connection-level failure a reqwest error is, and a description of it that is safe to
//! show (no URL, so no credentials).

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

use super::outcome::NetFailure;

/// Classifies a failed exchange: TLS anywhere in the causes wins (a handshake refused is not a
/// network fault), then timeout, DNS, connect, and anything else broke on the wire.
pub(crate) fn classify(e: &reqwest::Error) -> (NetFailure, String) {
    if let Some(tls) = tls_cause(e) {
        return (NetFailure::Tls, explain_tls(tls));
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

/// The rustls error among the causes, including one wrapped in (possibly nested) I/O errors,
/// whose own `source` skips the error they wrap.
fn tls_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = rustls_inside(c) {
            return Some(tls);
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

/// A TLS failure in words an operator can act on.
fn explain_tls(e: &rustls::Error) -> String {
    let why = match e {
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
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate (set WTL_CLIENT_CERT_FILE and WTL_CLIENT_KEY_FILE)".to_string()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied),
        ) => format!("the server refused the client certificate (alert {alert:?})"),
        other => other.to_string(),
    };
    format!("TLS handshake failed: {why}")
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

//! TLS material for the WTL client, read once at start-up: extra trusted CAs (`WTL_CA_FILE`)
//! and the client identity for mutual TLS (`WTL_CLIENT_CERT_FILE` + `WTL_CLIENT_KEY_FILE`).
//!
//! Each setting holds a file path, or the PEM text itself (a value starting with `-----BEGIN`;
//! `\n` written as two characters is read as a line break), for platforms that hand secrets
//! over as environment variables only (App Runner).
//!
//! The files are checked here, before reqwest sees them, so a mistake stops start-up with one
//! line naming the setting and the file instead of a generic builder error.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ClientBuildError;

/// Where the TLS material is: paths, or PEM text given inline.
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.as_deref().map(shown);
        f.debug_struct("TlsFiles")
            .field("ca_file", &show(&self.ca_file))
            .field("client_cert_file", &show(&self.client_cert_file))
            .field("client_key_file", &show(&self.client_key_file))
            .finish()
    }
}

/// What the files hold, ready for the client builder.
pub(crate) struct TlsMaterial {
    pub(crate) extra_roots: Vec<reqwest::Certificate>,
    pub(crate) identity: Option<reqwest::Identity>,
}

pub(crate) fn load(files: &TlsFiles) -> Result<TlsMaterial, ClientBuildError> {
    let extra_roots = match &files.ca_file {
        Some(path) => ca_certificates(path)?,
        None => Vec::new(),
    };
    let identity = match (&files.client_cert_file, &files.client_key_file) {
        (Some(cert), Some(key)) => Some(client_identity(cert, key)?),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ClientBuildError::missing_pair(
                "WTL_CLIENT_KEY_FILE",
                "WTL_CLIENT_CERT_FILE",
            ));
        }
        (None, Some(_)) => {
            return Err(ClientBuildError::missing_pair(
                "WTL_CLIENT_CERT_FILE",
                "WTL_CLIENT_KEY_FILE",
            ));
        }
    };
    Ok(TlsMaterial { extra_roots, identity })
}

/// Is this setting's value the PEM text itself rather than a path?
pub(crate) fn is_inline_pem(value: &str) -> bool {
    value.trim_start().starts_with("-----BEGIN")
}

/// How a setting's value is named in messages: its path, or a mention of inline PEM (never
/// the PEM itself: it may be a private key).
pub(crate) fn shown(value: &str) -> String {
    if is_inline_pem(value) {
        format!("(PEM given inline, {} bytes)", value.len())
    } else {
        value.to_string()
    }
}

/// The PEM a setting names: its file's content, or the value itself when it is inline PEM.
pub(crate) fn pem_bytes(value: &str) -> std::io::Result<Vec<u8>> {
    if is_inline_pem(value) {
        return Ok(value.replace("\\n", "\n").into_bytes());
    }
    std::fs::read(Path::new(value))
}

fn read(var: &'static str, value: &str) -> Result<Vec<u8>, ClientBuildError> {
    pem_bytes(value).map_err(|e| ClientBuildError::file(var, value, format!("cannot be read: {e}")))
}

/// Every certificate in a PEM file; none at all is an error.
fn pem_certificates(
    var: &'static str,
    path: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ClientBuildError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientBuildError::file(var, path, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ClientBuildError::file(
            var,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

fn ca_certificates(path: &str) -> Result<Vec<reqwest::Certificate>, ClientBuildError> {
    const VAR: &str = "WTL_CA_FILE";
    let pem = read(VAR, path)?;
    pem_certificates(VAR, path, &pem)?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der)
                .map_err(|e| ClientBuildError::file(VAR, path, format!("holds a certificate that cannot be used: {e}")))
        })
        .collect()
}

/// The client certificate chain and its key (PKCS#8, PKCS#1 or SEC1) as one identity.
fn client_identity(cert_path: &str, key_path: &str) -> Result<reqwest::Identity, ClientBuildError> {
    let cert_pem = read("WTL_CLIENT_CERT_FILE", cert_path)?;
    pem_certificates("WTL_CLIENT_CERT_FILE", cert_path, &cert_pem)?;
    let key_pem = read("WTL_CLIENT_KEY_FILE", key_path)?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        ClientBuildError::file(
            "WTL_CLIENT_KEY_FILE",
            key_path,
            format!("holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let mut both = cert_pem;
    both.push(b'\n');
    both.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&both).map_err(|e| {
        ClientBuildError::file(
            "WTL_CLIENT_CERT_FILE",
            cert_path,
            format!(
                "and WTL_CLIENT_KEY_FILE ({}) do not make a client identity: {e}",
                shown(key_path)
            ),
        )
    })
}

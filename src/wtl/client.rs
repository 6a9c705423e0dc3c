//! The one HTTP client for every WTL call, built once at start-up from the settings: TLS (the
//! system's roots plus `WTL_CA_FILE`, the client identity), proxies, timeouts, pooling.

use std::time::Duration;

use super::{AGENT, NetFailure, net, tls};
use super::{ProxySettings, Settings};

/// Why the WTL client could not be built. Each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBuildError {
    #[error("{var}: {path} {problem}")]
    File {
        var: &'static str,
        path: String,
        problem: String,
    },
    #[error("{missing} is required when {given} is set (mutual TLS needs both)")]
    MissingPair { missing: &'static str, given: &'static str },
    #[error("{var}: {problem}")]
    Setting { var: &'static str, problem: String },
    #[error("the WTL HTTP client could not be built: {0}")]
    Client(String),
}

impl ClientBuildError {
    pub(crate) fn file(var: &'static str, path: &str, problem: impl Into<String>) -> Self {
        Self::File {
            var,
            path: tls::shown(path),
            problem: problem.into(),
        }
    }

    pub(crate) fn missing_pair(missing: &'static str, given: &'static str) -> Self {
        Self::MissingPair { missing, given }
    }
}

/// Makes aws-lc-rs the process's TLS crypto provider, once. Chosen explicitly so that a
/// dependency enabling a second provider can never leave rustls unable to pick one (which
/// would panic when the first TLS configuration is built). Later calls change nothing.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // `Err` only means a provider was installed already (by an embedding program).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// The one HTTP client for every WTL call: TLS (system roots plus `WTL_CA_FILE`, the client
/// identity), proxies, timeouts and pooling, all from the settings.
pub(crate) fn http_client(settings: &Settings) -> Result<reqwest::Client, ClientBuildError> {
    build_client(settings, false)
}

/// The same client, keeping the server's certificate on each answer (for `check`).
pub(crate) fn http_client_with_tls_info(settings: &Settings) -> Result<reqwest::Client, ClientBuildError> {
    build_client(settings, true)
}

/// Which connection-level failure a client error is, and a description safe to show.
pub(crate) fn classify_failure(e: &reqwest::Error) -> (NetFailure, String) {
    net::classify(e)
}

fn build_client(settings: &Settings, tls_info: bool) -> Result<reqwest::Client, ClientBuildError> {
    install_crypto_provider();
    let material = tls::load(&settings.tls)?;
    let mut builder = reqwest::Client::builder()
        .user_agent(AGENT)
        .connect_timeout(settings.connect_timeout)
        // Below the idle timeout of common servers and load balancers, so a pooled connection
        // is rarely found closed by the other side.
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        // Credentials must never follow a redirect to another host, and WTL has no reason to
        // redirect.
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(material.extra_roots)
        .tls_info(tls_info);
    if let Some(identity) = material.identity {
        builder = builder.identity(identity);
    }
    builder = with_proxies(builder, &settings.proxy)?;
    builder.build().map_err(|e| {
        if settings.tls.client_cert_file.is_some() {
            ClientBuildError::Setting {
                var: "WTL_CLIENT_CERT_FILE",
                problem: format!(
                    "the client certificate and WTL_CLIENT_KEY_FILE could not be used together: {}",
                    net::describe(&e)
                ),
            }
        } else {
            ClientBuildError::Client(net::describe(&e))
        }
    })
}

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The proxies from the settings; reqwest's own reading of the environment is turned off, so
/// what the start-up line shows is exactly what is used.
fn with_proxies(
    mut builder: reqwest::ClientBuilder,
    proxy: &ProxySettings,
) -> Result<reqwest::ClientBuilder, ClientBuildError> {
    builder = builder.no_proxy();
    let invalid = |var: &'static str| {
        move |e: reqwest::Error| ClientBuildError::Setting {
            var,
            problem: format!("not a usable proxy URL: {}", net::describe(&e)),
        }
    };
    if let Some(explicit) = &proxy.explicit {
        return Ok(builder.proxy(reqwest::Proxy::all(explicit.as_str()).map_err(invalid("WTL_PROXY"))?));
    }
    let no_proxy = || reqwest::NoProxy::from_string(proxy.no_proxy.as_deref().unwrap_or(""));
    if let Some(url) = &proxy.https {
        let p = reqwest::Proxy::https(url.as_str()).map_err(invalid("HTTPS_PROXY"))?;
        builder = builder.proxy(p.no_proxy(no_proxy()));
    }
    if let Some(url) = &proxy.http {
        let p = reqwest::Proxy::http(url.as_str()).map_err(invalid("HTTP_PROXY"))?;
        builder = builder.proxy(p.no_proxy(no_proxy()));
    }
    if let Some(url) = &proxy.all {
        let p = reqwest::Proxy::all(url.as_str()).map_err(invalid("ALL_PROXY"))?;
        builder = builder.proxy(p.no_proxy(no_proxy()));
    }
    Ok(builder)
}

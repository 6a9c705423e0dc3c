//! Reaching Redis: the settings, the client (with `REDIS_CA_FILE` for `rediss://`) and the
//! connection every operation shares.

use std::time::Duration;

use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};

/// `REDIS_KEY_PREFIX`'s default.
pub(crate) const DEFAULT_KEY_PREFIX: &str = "nsps-wtl:";
/// `REDIS_TIMEOUT`'s default, in seconds.
pub(crate) const DEFAULT_TIMEOUT: f64 = 2.0;

/// How to reach Redis and how long things are kept.
#[derive(Clone)]
pub(crate) struct RedisSettings {
    /// The whole `REDIS_URL`, credentials included.
    pub url: SecretString,
    /// `REDIS_URL` with its password hidden, for logs.
    pub shown: String,
    pub key_prefix: String,
    /// Limit of one Redis operation (`REDIS_TIMEOUT`).
    pub timeout: Duration,
    /// PEM with the CA Redis's certificate is issued by (`REDIS_CA_FILE`), for `rediss://`.
    pub ca_file: Option<String>,
    pub fail_open: bool,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.shown)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file.as_deref().map(crate::wtl::tls::shown))
            .field("fail_open", &self.fail_open)
            .finish()
    }
}

/// Why the shared store could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub(crate) struct StoreSetupError {
    pub var: &'static str,
    pub problem: String,
}

/// The connection, made at first use and remade after every failure, so the connector starts
/// and recovers while Redis is down. Redis errors describe the failure (refused, timed out,
/// NOAUTH, ...); they never carry the URL or its password.
pub(super) fn connection(settings: &RedisSettings) -> Result<ConnectionManager, StoreSetupError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.timeout))
        .set_response_timeout(Some(settings.timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client(settings)?, config).map_err(|e| StoreSetupError {
        var: "REDIS_URL",
        problem: format!("the connection could not be prepared: {e}"),
    })
}

/// The Redis client for `REDIS_URL`, with `REDIS_CA_FILE` as the trusted CA for `rediss://`.
fn client(settings: &RedisSettings) -> Result<redis::Client, StoreSetupError> {
    let url = settings.url.expose_secret();
    let invalid = |e: redis::RedisError| StoreSetupError {
        var: "REDIS_URL",
        problem: format!("not a usable Redis URL: {}", e),
    };
    match &settings.ca_file {
        None => redis::Client::open(url).map_err(invalid),
        Some(ca) => {
            let pem = crate::wtl::tls::pem_bytes(ca).map_err(|e| StoreSetupError {
                var: "REDIS_CA_FILE",
                problem: format!("{} cannot be read: {e}", crate::wtl::tls::shown(ca)),
            })?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url, certificates).map_err(invalid)
        }
    }
}

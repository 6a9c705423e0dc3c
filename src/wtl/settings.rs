//! What the WTL client is built from. The `config` module fills it from the environment and
//! checks it; the defaults are here, beside the fields they are for.

use std::time::Duration;

use secrecy::SecretString;

use super::ProxySettings;
use super::tls::TlsFiles;

/// `WTL_HTTP_REQUESTS_TIMEOUT`'s default, in seconds.
pub(crate) const DEFAULT_ATTEMPT_TIMEOUT: f64 = 30.0;
/// `WTL_CONNECT_TIMEOUT`'s default, in seconds.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;
/// `WTL_TOTAL_TIMEOUT`'s default, in seconds.
pub(crate) const DEFAULT_TOTAL_TIMEOUT: f64 = 45.0;
/// `WTL_MAX_RETRIES`'s default.
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 2;
/// `WTL_RETRY_BASE_MS`'s default, in milliseconds.
pub(crate) const DEFAULT_RETRY_BASE_MS: u64 = 200;
/// `WTL_RETRY_AFTER_MAX`'s default, in seconds.
pub(crate) const DEFAULT_RETRY_AFTER_MAX: f64 = 10.0;
/// `WTL_RATE_LIMIT` bounds: one call in 1000 s at the slowest, a million a second at most.
pub(crate) const MIN_RATE_LIMIT: f64 = 0.001;
pub(crate) const MAX_RATE_LIMIT: f64 = 1_000_000.0;

/// How the connector authenticates to the WTL API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthMode {
    None,
    Bearer,
    Basic,
    OAuth2,
}

impl AuthMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::OAuth2 => "oauth2",
        }
    }
}

/// OAuth2 / JWT settings for `WTL_AUTH=oauth2`.
#[derive(Clone, Debug)]
pub(crate) struct OAuthSettings {
    pub(crate) token_url: String,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<SecretString>,
    pub(crate) scope: Option<String>,
}

/// Everything the WTL client needs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Base URL without a trailing slash; calls go to `{base_url}/prov`.
    pub(crate) base_url: String,
    pub(crate) auth: AuthMode,
    pub(crate) api_token: Option<SecretString>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<SecretString>,
    pub(crate) oauth: Option<OAuthSettings>,
    /// Limit for one attempt (connect, send, read the answer).
    pub(crate) attempt_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Limit for a whole event: every attempt, every back-off wait, token renewals.
    pub(crate) total_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) retry_base: Duration,
    pub(crate) retry_after_max: Duration,
    /// Calls per second across the process; `None` = unlimited.
    pub(crate) rate_limit: Option<f64>,
    /// Extra trusted CAs and the client identity for mutual TLS.
    pub(crate) tls: TlsFiles,
    pub(crate) proxy: ProxySettings,
    /// `WTL_DRY_RUN`: events are planned and answered, no WTL call is made.
    pub(crate) dry_run: bool,
}

impl Settings {
    /// The defaults for a WTL API at `base_url`: no authentication, no TLS files, no proxy.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            base_url,
            auth: AuthMode::None,
            api_token: None,
            username: None,
            password: None,
            oauth: None,
            attempt_timeout: Duration::from_secs_f64(DEFAULT_ATTEMPT_TIMEOUT),
            connect_timeout: Duration::from_secs_f64(DEFAULT_CONNECT_TIMEOUT),
            total_timeout: Duration::from_secs_f64(DEFAULT_TOTAL_TIMEOUT),
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base: Duration::from_millis(DEFAULT_RETRY_BASE_MS),
            retry_after_max: Duration::from_secs_f64(DEFAULT_RETRY_AFTER_MAX),
            rate_limit: None,
            tls: TlsFiles::default(),
            proxy: ProxySettings::default(),
            dry_run: false,
        }
    }
}

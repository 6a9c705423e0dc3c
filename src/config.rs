//! Settings, read once at start-up from the environment (and `.env`).
//!
//! Every variable is first collected as text with `envy`, then parsed here so that a bad value
//! produces one sentence naming the variable and what is wrong with it. Secret values are held in
//! [`SecretString`] and never printed: not in errors, not in `Debug`, not in the start-up log.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::plan::{Action, PlanRules, Profile};

/// Why start-up was refused: always names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// How the connector authenticates to the WTL API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WtlAuthMode {
    None,
    Bearer,
    Basic,
    OAuth2,
}

impl WtlAuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::OAuth2 => "oauth2",
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// OAuth2 / JWT settings for `WTL_AUTH=oauth2`.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    pub token_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub scope: Option<String>,
}

/// Everything the WTL client needs.
#[derive(Clone, Debug)]
pub struct WtlSettings {
    /// Base URL without a trailing slash; calls go to `{base_url}/prov`.
    pub base_url: String,
    pub auth: WtlAuthMode,
    pub api_token: Option<SecretString>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub oauth: Option<OAuthSettings>,
    /// Limit for one attempt (connect, send, read the answer).
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// Limit for a whole event: every attempt, every back-off wait, token renewals.
    pub total_timeout: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
    pub retry_after_max: Duration,
    /// Calls per second across the process; `None` = unlimited.
    pub rate_limit: Option<f64>,
    /// Extra trusted CAs and the client identity for mutual TLS.
    pub tls: crate::wtl::tls::TlsFiles,
    pub proxy: ProxySettings,
}

/// Egress proxies for every WTL call. `explicit` (`WTL_PROXY`) wins over the environment's.
/// The URLs may carry proxy credentials: they are used, and shown only through
/// [`ProxySettings::shown`].
#[derive(Clone, Default)]
pub struct ProxySettings {
    pub explicit: Option<String>,
    pub https: Option<String>,
    pub http: Option<String>,
    pub all: Option<String>,
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl ProxySettings {
    /// Reads `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (the lower-case spelling
    /// first, as curl does) and `WTL_PROXY`, each checked to be a URL.
    fn from_vars(vars: &BTreeMap<String, String>, explicit: Option<String>) -> Result<Self, ConfigError> {
        let read = |upper: &'static str| -> Result<Option<String>, ConfigError> {
            let lower = upper.to_ascii_lowercase();
            let value = [lower.as_str(), upper]
                .iter()
                .find_map(|k| vars.get(*k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()));
            value.map(|v| check_proxy_url(upper, &v)).transpose()
        };
        let no_proxy = ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|k| vars.get(*k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()));
        Ok(Self {
            explicit: explicit.map(|v| check_proxy_url("WTL_PROXY", v.trim())).transpose()?,
            https: read("HTTPS_PROXY")?,
            http: read("HTTP_PROXY")?,
            all: read("ALL_PROXY")?,
            no_proxy,
        })
    }

    /// What is in force, for the start-up line: proxy credentials as `***`.
    pub fn shown(&self) -> String {
        if let Some(p) = &self.explicit {
            return format!("{} (WTL_PROXY, for every WTL call)", hide_userinfo(p));
        }
        let mut parts = Vec::new();
        for (name, value) in [("https", &self.https), ("http", &self.http), ("all", &self.all)] {
            if let Some(v) = value {
                parts.push(format!("{name}={}", hide_userinfo(v)));
            }
        }
        if parts.is_empty() {
            return "none".into();
        }
        if let Some(n) = &self.no_proxy {
            parts.push(format!("no_proxy={n}"));
        }
        parts.join(" ")
    }
}

/// A proxy URL as reqwest takes it: a scheme it knows and a host. A bare `host:port` is read as
/// `http://host:port`, as curl does.
fn check_proxy_url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let text = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let url = url::Url::parse(&text).map_err(|e| ConfigError::new(var, format!("not a valid proxy URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(var, "must be an http:// or https:// proxy URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(var, "has no host"));
    }
    Ok(text)
}

/// A URL with its `user:password@` replaced by `***@`, for showing.
fn hide_userinfo(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        Ok(_) => text.to_string(),
        Err(_) => "(not shown)".to_string(),
    }
}

/// Everything the connector needs, parsed and checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub api_tokens: Vec<SecretString>,
    pub port: u16,
    /// `BIND_ADDRESS`; unset = dual-stack `[::]`, or `0.0.0.0` where the host has no IPv6.
    pub bind_address: Option<std::net::IpAddr>,
    pub events_path: Option<String>,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    /// A client must send its whole request head within this time (slow-client protection).
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub dedup_ttl: Duration,
    pub dedup_max: usize,
    pub metrics_public: bool,
    pub stale_event_check: bool,
    /// How long the time of the last event applied to an IMSI is kept in the shared memory.
    pub stale_event_ttl: Duration,
    /// `REDIS_URL` and its companions: the redelivery memory shared by every instance.
    pub redis: Option<crate::memory::shared::RedisSettings>,
    /// `GOOGLE_CLOUD_PROJECT`: log lines of a traced request carry Cloud Logging's trace name.
    pub google_cloud_project: Option<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub rust_log: Option<String>,
    pub app_name: Option<String>,
    pub rules: PlanRules,
    pub wtl: WtlSettings,
    /// Settings that are allowed but probably not what the operator meant.
    pub warnings: Vec<String>,
}

/// The raw text of every variable the connector knows. `envy` maps `API_TOKEN` to `api_token`.
#[derive(Deserialize, Default)]
struct RawEnv {
    api_token: Option<String>,
    wtl_api_url: Option<String>,
    wtl_api_token: Option<String>,
    wtl_auth: Option<String>,
    wtl_api_username: Option<String>,
    wtl_api_password: Option<String>,
    wtl_oauth_token_url: Option<String>,
    wtl_oauth_client_id: Option<String>,
    wtl_oauth_client_secret: Option<String>,
    wtl_oauth_scope: Option<String>,
    wtl_default_cs_profile: Option<String>,
    wtl_default_eps_profile: Option<String>,
    wtl_http_requests_timeout: Option<String>,
    wtl_connect_timeout: Option<String>,
    wtl_total_timeout: Option<String>,
    wtl_max_retries: Option<String>,
    wtl_retry_base_ms: Option<String>,
    wtl_retry_after_max: Option<String>,
    wtl_rate_limit: Option<String>,
    wtl_imsi_regexp: Option<String>,
    wtl_event_actions: Option<String>,
    wtl_ca_file: Option<String>,
    wtl_client_cert_file: Option<String>,
    wtl_client_key_file: Option<String>,
    wtl_proxy: Option<String>,
    bind_address: Option<String>,
    redis_url: Option<String>,
    redis_key_prefix: Option<String>,
    redis_timeout: Option<String>,
    redis_ca_file: Option<String>,
    redis_fail_open: Option<String>,
    stale_event_ttl: Option<String>,
    google_cloud_project: Option<String>,
    events_path: Option<String>,
    max_body_bytes: Option<String>,
    shutdown_timeout: Option<String>,
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    max_in_flight: Option<String>,
    event_dedup_ttl: Option<String>,
    event_dedup_max: Option<String>,
    metrics_public: Option<String>,
    stale_event_check: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    rust_log: Option<String>,
    port: Option<String>,
    app_name: Option<String>,
    // Accepted so that a deploy configuration written for the reference keeps working.
    #[allow(dead_code)]
    debug: Option<String>,
}

/// `WTL_RATE_LIMIT` bounds: one call in 1000 s at the slowest, a million a second at most.
pub const MIN_RATE_LIMIT: f64 = 0.001;
pub const MAX_RATE_LIMIT: f64 = 1_000_000.0;

/// Default event type → WTL action table.
pub const DEFAULT_EVENT_ACTIONS: &str = "SIM/Updated=update,SIM/Created=insert,SIM/Deleted=delete,SIM/Replaced=update";

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from name/value pairs (tests pass their own instead of the environment).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        // Only the connector's own variables are handed to envy, so an unrelated variable in the
        // environment holding non-UTF-8 or odd content can never stop start-up. An empty value
        // means "unset", as it does for the reference.
        // A later value for the same name wins, as in a shell.
        let pairs: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| KNOWN_VARS.contains(&k.as_str()) || PROXY_VARS.contains(&k.as_str()))
            .collect();
        let proxy_vars: BTreeMap<String, String> = pairs
            .iter()
            .filter(|(k, _)| PROXY_VARS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pairs = pairs
            .into_iter()
            .filter(|(k, v)| !v.trim().is_empty() && KNOWN_VARS.contains(&k.as_str()));
        let raw: RawEnv = envy::from_iter(pairs).map_err(|e| ConfigError::new("environment", e.to_string()))?;
        Self::from_raw(raw, &proxy_vars)
    }

    fn from_raw(raw: RawEnv, proxy_vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();

        let api_tokens = parse_tokens(raw.api_token)?;
        let wtl_api_url = raw
            .wtl_api_url
            .ok_or_else(|| ConfigError::new("WTL_API_URL", "required (the WTL API base URL)"))?;
        let (base_url, url_credentials) = parse_http_url("WTL_API_URL", &wtl_api_url)?;
        let base_url = base_url.trim_end_matches('/').to_string();

        let cs = parse_profile("WTL_DEFAULT_CS_PROFILE", raw.wtl_default_cs_profile)?;
        let eps = parse_profile("WTL_DEFAULT_EPS_PROFILE", raw.wtl_default_eps_profile)?;
        let imsi_filter = raw
            .wtl_imsi_regexp
            .map(|p| {
                Regex::new(p.trim())
                    .map_err(|e| ConfigError::new("WTL_IMSI_REGEXP", format!("not a valid regular expression: {e}")))
            })
            .transpose()?;
        let event_actions = parse_event_actions(raw.wtl_event_actions.as_deref().unwrap_or(DEFAULT_EVENT_ACTIONS))?;

        let attempt_timeout = parse_seconds("WTL_HTTP_REQUESTS_TIMEOUT", raw.wtl_http_requests_timeout, 30.0)?;
        let connect_timeout = parse_seconds("WTL_CONNECT_TIMEOUT", raw.wtl_connect_timeout, 5.0)?;
        let total_timeout = parse_seconds("WTL_TOTAL_TIMEOUT", raw.wtl_total_timeout, 45.0)?;
        if attempt_timeout > total_timeout {
            warnings.push(format!(
                "WTL_HTTP_REQUESTS_TIMEOUT ({}s) is longer than WTL_TOTAL_TIMEOUT ({}s): an attempt is cut short at the total",
                attempt_timeout.as_secs_f64(),
                total_timeout.as_secs_f64()
            ));
        }
        if connect_timeout > attempt_timeout {
            warnings.push(format!(
                "WTL_CONNECT_TIMEOUT ({}s) is longer than WTL_HTTP_REQUESTS_TIMEOUT ({}s): the attempt limit applies first",
                connect_timeout.as_secs_f64(),
                attempt_timeout.as_secs_f64()
            ));
        }
        let max_retries = parse_int::<u32>("WTL_MAX_RETRIES", raw.wtl_max_retries, 2, 0, 100)?;
        let retry_base = Duration::from_millis(parse_int::<u64>(
            "WTL_RETRY_BASE_MS",
            raw.wtl_retry_base_ms,
            200,
            1,
            600_000,
        )?);
        let retry_after_max = parse_seconds_allow_zero("WTL_RETRY_AFTER_MAX", raw.wtl_retry_after_max, 10.0)?;
        let rate_limit = match raw.wtl_rate_limit {
            None => None,
            Some(text) => {
                let value: f64 = text.trim().parse().map_err(|_| {
                    ConfigError::new(
                        "WTL_RATE_LIMIT",
                        format!("expected calls per second (a number), got {text:?}"),
                    )
                })?;
                if !(MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(&value) {
                    return Err(ConfigError::new(
                        "WTL_RATE_LIMIT",
                        format!(
                            "must be between {MIN_RATE_LIMIT} and {MAX_RATE_LIMIT} calls per second (leave it unset for no limit)"
                        ),
                    ));
                }
                Some(value)
            }
        };

        let api_token = raw.wtl_api_token.map(SecretString::from);
        let mut username = raw.wtl_api_username;
        let mut password = raw.wtl_api_password.map(SecretString::from);
        // Credentials inside WTL_API_URL are its Basic credentials, when nothing else says how
        // to authenticate; beside other WTL credentials they would be ambiguous.
        let url_basic = match url_credentials {
            None => false,
            Some(_) if raw.wtl_auth.is_some() || api_token.is_some() || username.is_some() || password.is_some() => {
                return Err(ConfigError::new(
                    "WTL_API_URL",
                    "carries credentials (user:password@) while WTL_AUTH or other WTL credentials are set; give them as WTL_API_USERNAME and WTL_API_PASSWORD instead",
                ));
            }
            Some(c) => {
                username = Some(c.username);
                password = Some(c.password.unwrap_or_else(|| SecretString::from(String::new())));
                true
            }
        };
        let auth = match raw.wtl_auth.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
            None if url_basic => WtlAuthMode::Basic,
            None if api_token.is_some() => WtlAuthMode::Bearer,
            None => WtlAuthMode::None,
            Some(mode) => match mode.as_str() {
                "none" => WtlAuthMode::None,
                "bearer" => WtlAuthMode::Bearer,
                "basic" => WtlAuthMode::Basic,
                "oauth2" | "oauth" | "jwt" => WtlAuthMode::OAuth2,
                _ => {
                    return Err(ConfigError::new(
                        "WTL_AUTH",
                        format!("expected none, bearer, basic or oauth2, got {mode:?}"),
                    ));
                }
            },
        };
        let oauth = match auth {
            WtlAuthMode::Bearer if api_token.is_none() => {
                return Err(ConfigError::new("WTL_API_TOKEN", "required when WTL_AUTH=bearer"));
            }
            WtlAuthMode::Basic if username.is_none() => {
                return Err(ConfigError::new("WTL_API_USERNAME", "required when WTL_AUTH=basic"));
            }
            WtlAuthMode::Basic if password.is_none() => {
                return Err(ConfigError::new("WTL_API_PASSWORD", "required when WTL_AUTH=basic"));
            }
            WtlAuthMode::OAuth2 => {
                let token_url = raw
                    .wtl_oauth_token_url
                    .ok_or_else(|| ConfigError::new("WTL_OAUTH_TOKEN_URL", "required when WTL_AUTH=oauth2"))?;
                let (token_url, url_client) = parse_http_url("WTL_OAUTH_TOKEN_URL", &token_url)?;
                let mut client_id = raw.wtl_oauth_client_id;
                let mut client_secret = raw.wtl_oauth_client_secret.map(SecretString::from);
                // Credentials inside the token URL are the client's id and secret (sent with
                // HTTP Basic, as RFC 6749 §2.3.1 has it), unless those are set on their own.
                if let Some(c) = url_client {
                    if client_id.is_some() || client_secret.is_some() {
                        return Err(ConfigError::new(
                            "WTL_OAUTH_TOKEN_URL",
                            "carries credentials (user:password@) while WTL_OAUTH_CLIENT_ID or WTL_OAUTH_CLIENT_SECRET is set; give them in those settings only",
                        ));
                    }
                    client_id = Some(c.username);
                    client_secret = c.password;
                }
                let has_user = username.is_some() && password.is_some();
                if client_id.is_none() && !has_user {
                    return Err(ConfigError::new(
                        "WTL_OAUTH_CLIENT_ID",
                        "WTL_AUTH=oauth2 needs WTL_OAUTH_CLIENT_ID (client_credentials grant) or WTL_API_USERNAME and WTL_API_PASSWORD (password grant)",
                    ));
                }
                if username.is_some() != password.is_some() {
                    return Err(ConfigError::new(
                        if username.is_some() {
                            "WTL_API_PASSWORD"
                        } else {
                            "WTL_API_USERNAME"
                        },
                        "the password grant needs both WTL_API_USERNAME and WTL_API_PASSWORD",
                    ));
                }
                if !has_user && client_secret.is_none() {
                    return Err(ConfigError::new(
                        "WTL_OAUTH_CLIENT_SECRET",
                        "required for the client_credentials grant (WTL_AUTH=oauth2 without a username and password)",
                    ));
                }
                Some(OAuthSettings {
                    token_url,
                    client_id,
                    client_secret,
                    scope: raw.wtl_oauth_scope,
                })
            }
            _ => None,
        };
        if auth != WtlAuthMode::Bearer && auth != WtlAuthMode::OAuth2 && api_token.is_some() {
            warnings.push(format!(
                "WTL_API_TOKEN is set but WTL_AUTH={}: the token is not sent",
                auth.as_str()
            ));
        }
        if auth == WtlAuthMode::None && (username.is_some() || password.is_some()) {
            warnings.push("WTL_API_USERNAME/WTL_API_PASSWORD are set but WTL_AUTH=none: they are not sent".to_string());
        }
        if base_url.starts_with("http://") && auth != WtlAuthMode::None && !is_loopback_url(&base_url) {
            warnings.push("WTL_API_URL uses plain http: WTL credentials cross the network unencrypted".to_string());
        }

        let port = parse_int::<u16>("PORT", raw.port, 8000, 0, u16::MAX)?;
        let bind_address = raw.bind_address.map(|a| parse_bind_address(&a)).transpose()?;
        let tls_files = crate::wtl::tls::TlsFiles {
            ca_file: raw.wtl_ca_file.map(|p| p.trim().to_string()),
            client_cert_file: raw.wtl_client_cert_file.map(|p| p.trim().to_string()),
            client_key_file: raw.wtl_client_key_file.map(|p| p.trim().to_string()),
        };
        match (&tls_files.client_cert_file, &tls_files.client_key_file) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "WTL_CLIENT_KEY_FILE",
                    "required when WTL_CLIENT_CERT_FILE is set (mutual TLS needs both)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "WTL_CLIENT_CERT_FILE",
                    "required when WTL_CLIENT_KEY_FILE is set (mutual TLS needs both)",
                ));
            }
            _ => {}
        }
        if base_url.starts_with("http://") && (tls_files.ca_file.is_some() || tls_files.client_cert_file.is_some()) {
            warnings.push(
                "WTL_CA_FILE or WTL_CLIENT_CERT_FILE is set but WTL_API_URL uses plain http: TLS settings apply only to https"
                    .to_string(),
            );
        }
        let proxy = ProxySettings::from_vars(proxy_vars, raw.wtl_proxy)?;
        let events_path = match raw.events_path {
            None => None,
            Some(p) => {
                let p = p.trim().trim_end_matches('/').to_string();
                if !p.starts_with('/') || p.contains(char::is_whitespace) || p.contains('{') || p.contains('*') {
                    return Err(ConfigError::new(
                        "EVENTS_PATH",
                        "must be a plain path starting with '/', such as /nsps/events",
                    ));
                }
                if RESERVED_PATHS.contains(&p.as_str()) {
                    return Err(ConfigError::new(
                        "EVENTS_PATH",
                        format!("{p} is already a path of the connector"),
                    ));
                }
                Some(p)
            }
        };
        let max_body_bytes = parse_int::<usize>("MAX_BODY_BYTES", raw.max_body_bytes, 2 * 1024 * 1024, 1024, 1 << 30)?;
        let shutdown_timeout = parse_seconds_allow_zero("SHUTDOWN_TIMEOUT", raw.shutdown_timeout, 8.0)?;
        let header_read_timeout = parse_seconds("HEADER_READ_TIMEOUT", raw.header_read_timeout, 10.0)?;
        let default_request_timeout = total_timeout.as_secs_f64() + 5.0;
        let request_timeout = parse_seconds("REQUEST_TIMEOUT", raw.request_timeout, default_request_timeout)?;
        if request_timeout < total_timeout {
            warnings.push(format!(
                "REQUEST_TIMEOUT ({}s) is shorter than WTL_TOTAL_TIMEOUT ({}s): an event may be cut off while WTL calls are still being retried",
                request_timeout.as_secs_f64(),
                total_timeout.as_secs_f64()
            ));
        }
        let max_in_flight = parse_int::<usize>("MAX_IN_FLIGHT", raw.max_in_flight, 1024, 1, 1_000_000)?;
        let dedup_ttl = parse_seconds_allow_zero("EVENT_DEDUP_TTL", raw.event_dedup_ttl, 600.0)?;
        let dedup_max = parse_int::<usize>("EVENT_DEDUP_MAX", raw.event_dedup_max, 100_000, 1, 100_000_000)?;
        let metrics_public = parse_bool("METRICS_PUBLIC", raw.metrics_public, false)?;
        let stale_event_check = parse_bool("STALE_EVENT_CHECK", raw.stale_event_check, true)?;
        let stale_event_ttl = parse_long_seconds("STALE_EVENT_TTL", raw.stale_event_ttl, 35.0 * 86_400.0)?;
        let redis = parse_redis(
            raw.redis_url,
            raw.redis_key_prefix,
            raw.redis_timeout,
            raw.redis_ca_file,
            raw.redis_fail_open,
        )?;
        if redis.is_some() && dedup_ttl.is_zero() && !stale_event_check {
            warnings.push(
                "REDIS_URL is set but EVENT_DEDUP_TTL=0 and STALE_EVENT_CHECK=false: the shared memory only keeps one event at a time per IMSI"
                    .to_string(),
            );
        }

        let log_level = match raw.log_level.as_deref().map(|s| s.trim().to_ascii_uppercase()) {
            None => "INFO".to_string(),
            Some(level) if LOG_LEVELS.contains(&level.as_str()) => level,
            Some(level) => {
                return Err(ConfigError::new(
                    "LOG_LEVEL",
                    format!("expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level:?}"),
                ));
            }
        };
        let log_format = match raw.log_format.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
            None => LogFormat::Json,
            Some(f) if f == "json" => LogFormat::Json,
            Some(f) if f == "text" => LogFormat::Text,
            Some(f) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected json or text, got {f:?}"),
                ));
            }
        };
        let rust_log = raw.rust_log;
        if let Some(filter) = &rust_log {
            if filter.parse::<tracing_subscriber::filter::Targets>().is_err() {
                return Err(ConfigError::new(
                    "RUST_LOG",
                    "not a valid filter: a comma-separated list of `level` and `target=level`",
                ));
            }
        }

        Ok(Self {
            api_tokens,
            port,
            events_path,
            max_body_bytes,
            shutdown_timeout,
            header_read_timeout,
            request_timeout,
            max_in_flight,
            dedup_ttl,
            dedup_max,
            metrics_public,
            stale_event_check,
            stale_event_ttl,
            redis,
            google_cloud_project: raw.google_cloud_project.map(|p| p.trim().to_string()),
            log_level,
            log_format,
            rust_log,
            app_name: raw.app_name,
            rules: PlanRules {
                default_cs_profile: cs,
                default_eps_profile: eps,
                imsi_filter,
                event_actions,
            },
            wtl: WtlSettings {
                base_url,
                auth,
                api_token,
                username,
                password,
                oauth,
                attempt_timeout,
                connect_timeout,
                total_timeout,
                max_retries,
                retry_base,
                retry_after_max,
                rate_limit,
                tls: tls_files,
                proxy,
            },
            bind_address,
            warnings,
        })
    }

    /// The effective configuration as name → printable value, secrets replaced by `***`.
    /// Logged once at start-up.
    pub fn redacted(&self) -> BTreeMap<&'static str, String> {
        let secret = |s: &Option<SecretString>| match s {
            Some(_) => "***".to_string(),
            None => "unset".to_string(),
        };
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "unset".to_string());
        let secs = |d: Duration| format!("{}", d.as_secs_f64());
        let mut m = BTreeMap::new();
        m.insert("API_TOKEN", format!("*** ({} token(s))", self.api_tokens.len()));
        m.insert("PORT", self.port.to_string());
        m.insert("EVENTS_PATH", opt(&self.events_path));
        m.insert("MAX_BODY_BYTES", self.max_body_bytes.to_string());
        m.insert("SHUTDOWN_TIMEOUT", secs(self.shutdown_timeout));
        m.insert("HEADER_READ_TIMEOUT", secs(self.header_read_timeout));
        m.insert("REQUEST_TIMEOUT", secs(self.request_timeout));
        m.insert("MAX_IN_FLIGHT", self.max_in_flight.to_string());
        m.insert("EVENT_DEDUP_TTL", secs(self.dedup_ttl));
        m.insert("EVENT_DEDUP_MAX", self.dedup_max.to_string());
        m.insert("METRICS_PUBLIC", self.metrics_public.to_string());
        m.insert("STALE_EVENT_CHECK", self.stale_event_check.to_string());
        m.insert("LOG_LEVEL", self.log_level.clone());
        m.insert(
            "LOG_FORMAT",
            match self.log_format {
                LogFormat::Json => "json".into(),
                LogFormat::Text => "text".into(),
            },
        );
        m.insert("RUST_LOG", opt(&self.rust_log));
        m.insert("APP_NAME", opt(&self.app_name));
        m.insert("WTL_API_URL", self.wtl.base_url.clone());
        m.insert(
            "BIND_ADDRESS",
            self.bind_address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unset (:: dual-stack, else 0.0.0.0)".into()),
        );
        let pem = |v: &Option<String>| v.as_deref().map_or_else(|| "unset".to_string(), crate::wtl::tls::shown);
        let redis = self.redis.as_ref();
        m.insert(
            "REDIS_URL",
            redis.map_or_else(|| "unset (in-process memory)".into(), |r| r.shown.clone()),
        );
        m.insert(
            "REDIS_KEY_PREFIX",
            redis.map_or_else(|| "unset".into(), |r| r.key_prefix.clone()),
        );
        m.insert(
            "REDIS_TIMEOUT",
            redis.map_or_else(|| "unset".into(), |r| secs(r.timeout)),
        );
        m.insert("REDIS_CA_FILE", pem(&redis.and_then(|r| r.ca_file.clone())));
        m.insert(
            "REDIS_FAIL_OPEN",
            redis.map_or_else(|| "unset".into(), |r| r.fail_open.to_string()),
        );
        m.insert("STALE_EVENT_TTL", secs(self.stale_event_ttl));
        m.insert("GOOGLE_CLOUD_PROJECT", opt(&self.google_cloud_project));
        m.insert("WTL_CA_FILE", pem(&self.wtl.tls.ca_file));
        m.insert("WTL_CLIENT_CERT_FILE", pem(&self.wtl.tls.client_cert_file));
        m.insert("WTL_CLIENT_KEY_FILE", pem(&self.wtl.tls.client_key_file));
        m.insert(
            "WTL_PROXY / HTTPS_PROXY / HTTP_PROXY / ALL_PROXY",
            self.wtl.proxy.shown(),
        );
        m.insert("WTL_AUTH", self.wtl.auth.as_str().to_string());
        m.insert("WTL_API_TOKEN", secret(&self.wtl.api_token));
        m.insert("WTL_API_USERNAME", opt(&self.wtl.username));
        m.insert("WTL_API_PASSWORD", secret(&self.wtl.password));
        let oauth = self.wtl.oauth.as_ref();
        m.insert(
            "WTL_OAUTH_TOKEN_URL",
            oauth.map(|o| o.token_url.clone()).unwrap_or_else(|| "unset".into()),
        );
        m.insert("WTL_OAUTH_CLIENT_ID", opt(&oauth.and_then(|o| o.client_id.clone())));
        m.insert(
            "WTL_OAUTH_CLIENT_SECRET",
            secret(&oauth.and_then(|o| o.client_secret.clone())),
        );
        m.insert("WTL_OAUTH_SCOPE", opt(&oauth.and_then(|o| o.scope.clone())));
        m.insert("WTL_HTTP_REQUESTS_TIMEOUT", secs(self.wtl.attempt_timeout));
        m.insert("WTL_CONNECT_TIMEOUT", secs(self.wtl.connect_timeout));
        m.insert("WTL_TOTAL_TIMEOUT", secs(self.wtl.total_timeout));
        m.insert("WTL_MAX_RETRIES", self.wtl.max_retries.to_string());
        m.insert("WTL_RETRY_BASE_MS", self.wtl.retry_base.as_millis().to_string());
        m.insert("WTL_RETRY_AFTER_MAX", secs(self.wtl.retry_after_max));
        m.insert(
            "WTL_RATE_LIMIT",
            self.wtl
                .rate_limit
                .map(|r| r.to_string())
                .unwrap_or_else(|| "unlimited".into()),
        );
        m.insert(
            "WTL_DEFAULT_CS_PROFILE",
            self.rules.default_cs_profile.as_str().to_string(),
        );
        m.insert(
            "WTL_DEFAULT_EPS_PROFILE",
            self.rules.default_eps_profile.as_str().to_string(),
        );
        m.insert(
            "WTL_IMSI_REGEXP",
            self.rules
                .imsi_filter
                .as_ref()
                .map(|r| r.as_str().to_string())
                .unwrap_or_else(|| "unset".into()),
        );
        m.insert("WTL_EVENT_ACTIONS", self.rules.event_actions_text());
        m
    }

    /// Does any configured API token equal `candidate`? Compares in constant time against every
    /// token (no early exit), so the answer time does not reveal which token or prefix matched.
    pub fn token_matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let mut found = subtle::Choice::from(0u8);
        for token in &self.api_tokens {
            found |= token.expose_secret().as_bytes().ct_eq(candidate);
        }
        found.into()
    }
}

/// Every variable the connector reads (see README, configuration).
pub const KNOWN_VARS: &[&str] = &[
    "API_TOKEN",
    "WTL_API_URL",
    "WTL_API_TOKEN",
    "WTL_AUTH",
    "WTL_API_USERNAME",
    "WTL_API_PASSWORD",
    "WTL_OAUTH_TOKEN_URL",
    "WTL_OAUTH_CLIENT_ID",
    "WTL_OAUTH_CLIENT_SECRET",
    "WTL_OAUTH_SCOPE",
    "WTL_DEFAULT_CS_PROFILE",
    "WTL_DEFAULT_EPS_PROFILE",
    "WTL_HTTP_REQUESTS_TIMEOUT",
    "WTL_CONNECT_TIMEOUT",
    "WTL_TOTAL_TIMEOUT",
    "WTL_MAX_RETRIES",
    "WTL_RETRY_BASE_MS",
    "WTL_RETRY_AFTER_MAX",
    "WTL_RATE_LIMIT",
    "WTL_IMSI_REGEXP",
    "WTL_EVENT_ACTIONS",
    "WTL_CA_FILE",
    "WTL_CLIENT_CERT_FILE",
    "WTL_CLIENT_KEY_FILE",
    "WTL_PROXY",
    "BIND_ADDRESS",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "REDIS_TIMEOUT",
    "REDIS_CA_FILE",
    "REDIS_FAIL_OPEN",
    "STALE_EVENT_TTL",
    "GOOGLE_CLOUD_PROJECT",
    "EVENTS_PATH",
    "MAX_BODY_BYTES",
    "SHUTDOWN_TIMEOUT",
    "HEADER_READ_TIMEOUT",
    "REQUEST_TIMEOUT",
    "MAX_IN_FLIGHT",
    "EVENT_DEDUP_TTL",
    "EVENT_DEDUP_MAX",
    "METRICS_PUBLIC",
    "STALE_EVENT_CHECK",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "RUST_LOG",
    "PORT",
    "APP_NAME",
    "DEBUG",
];

/// The standard proxy variables, read in either case (see [`ProxySettings`]).
pub const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

const LOG_LEVELS: &[&str] = &["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"];
const RESERVED_PATHS: &[&str] = &["", "/health", "/ready", "/process-event", "/metrics", "/openapi.json"];

fn parse_tokens(value: Option<String>) -> Result<Vec<SecretString>, ConfigError> {
    let value = value.ok_or_else(|| ConfigError::new("API_TOKEN", "required (the Bearer token NSPS sends)"))?;
    let tokens: Vec<SecretString> = value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| SecretString::from(t.to_string()))
        .collect();
    if tokens.is_empty() {
        return Err(ConfigError::new("API_TOKEN", "holds no token"));
    }
    if tokens
        .iter()
        .any(|t| t.expose_secret().chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ConfigError::new(
            "API_TOKEN",
            "a token contains white space or control characters",
        ));
    }
    Ok(tokens)
}

/// User name and password found inside a URL (`user:pass@host`), percent-decoded.
pub struct UrlCredentials {
    pub username: String,
    pub password: Option<SecretString>,
}

/// An http(s) URL from the configuration, split into the address (never holding credentials,
/// so it can be shown anywhere) and the credentials it carried, if any.
fn parse_http_url(var: &'static str, value: &str) -> Result<(String, Option<UrlCredentials>), ConfigError> {
    let value = value.trim();
    // The text is never echoed back: it may hold a password.
    let mut url = url::Url::parse(value).map_err(|e| ConfigError::new(var, format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(var, "must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(var, "has no host"));
    }
    if url.query().is_some() {
        return Err(ConfigError::new(var, "must not carry a query string"));
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| UrlCredentials {
        username: decode(url.username()),
        password: url.password().map(|p| SecretString::from(decode(p))),
    });
    // Both setters only fail for URLs that cannot have credentials, which http(s) ones can.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut text = url.to_string();
    // `Url` writes "http://host/" for "http://host"; keep the operator's form of the path.
    if !value.ends_with('/') && url.path() == "/" {
        text.pop();
    }
    Ok((text, credentials))
}

fn is_loopback_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
}

/// Seconds for a time to live counted in days: above 0, at most 400 days.
fn parse_long_seconds(var: &'static str, value: Option<String>, default: f64) -> Result<Duration, ConfigError> {
    let secs = match value {
        None => default,
        Some(text) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| ConfigError::new(var, format!("expected a number of seconds, got {text:?}")))?,
    };
    if !(1.0..=400.0 * 86_400.0).contains(&secs) {
        return Err(ConfigError::new(
            var,
            "must be between 1 second and 400 days (34560000)",
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `REDIS_URL` and its companions; `None` when `REDIS_URL` is unset (the in-process memory).
fn parse_redis(
    url: Option<String>,
    key_prefix: Option<String>,
    timeout: Option<String>,
    ca_file: Option<String>,
    fail_open: Option<String>,
) -> Result<Option<crate::memory::shared::RedisSettings>, ConfigError> {
    let Some(url) = url.map(|u| u.trim().to_string()) else {
        return Ok(None);
    };
    // The text is never echoed back: it may hold a password.
    let parsed = url::Url::parse(&url).map_err(|e| ConfigError::new("REDIS_URL", format!("not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(ConfigError::new(
            "REDIS_URL",
            "must start with redis:// or rediss:// (TLS)",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new("REDIS_URL", "has no host"));
    }
    let ca_file = ca_file.map(|c| c.trim().to_string());
    if ca_file.is_some() && parsed.scheme() != "rediss" {
        return Err(ConfigError::new(
            "REDIS_CA_FILE",
            "applies only to a rediss:// REDIS_URL (TLS)",
        ));
    }
    let timeout = parse_seconds("REDIS_TIMEOUT", timeout, 2.0)?;
    let key_prefix = key_prefix.unwrap_or_else(|| "nsps-wtl:".to_string());
    if key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new("REDIS_KEY_PREFIX", "must not contain white space"));
    }
    Ok(Some(crate::memory::shared::RedisSettings {
        shown: hide_userinfo(&url),
        url: SecretString::from(url),
        key_prefix,
        timeout,
        ca_file,
        fail_open: parse_bool("REDIS_FAIL_OPEN", fail_open, false)?,
    }))
}

/// An IP address, IPv6 with or without brackets.
fn parse_bind_address(text: &str) -> Result<std::net::IpAddr, ConfigError> {
    let text = text.trim();
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    bare.parse().map_err(|_| {
        ConfigError::new(
            "BIND_ADDRESS",
            format!("expected an IP address such as :: or 0.0.0.0 or 127.0.0.1, got {text:?} (the port is PORT)"),
        )
    })
}

fn parse_profile(var: &'static str, value: Option<String>) -> Result<Profile, ConfigError> {
    let value = value.unwrap_or_else(|| "default".to_string());
    Profile::parse(value.trim()).ok_or_else(|| {
        ConfigError::new(
            var,
            format!("{value:?} is not a valid profile name (a letter, then letters, digits, '-', '_' or '.')"),
        )
    })
}

fn parse_seconds(var: &'static str, value: Option<String>, default: f64) -> Result<Duration, ConfigError> {
    let d = parse_seconds_allow_zero(var, value, default)?;
    if d.is_zero() {
        return Err(ConfigError::new(var, "must be above 0 seconds"));
    }
    Ok(d)
}

fn parse_seconds_allow_zero(var: &'static str, value: Option<String>, default: f64) -> Result<Duration, ConfigError> {
    let secs = match value {
        None => default,
        Some(text) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| ConfigError::new(var, format!("expected a number of seconds, got {text:?}")))?,
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(ConfigError::new(var, "must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_int<T>(var: &'static str, value: Option<String>, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let n = match value {
        None => return Ok(default),
        Some(text) => text
            .trim()
            .parse::<T>()
            .map_err(|_| ConfigError::new(var, format!("expected a whole number, got {text:?}")))?,
    };
    if n < min || n > max {
        return Err(ConfigError::new(var, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

fn parse_bool(var: &'static str, value: Option<String>, default: bool) -> Result<bool, ConfigError> {
    match value.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::new(var, format!("expected true or false, got {v:?}"))),
    }
}

/// Parses `SIM/Updated=update,SIM/Created=insert,...`.
pub fn parse_event_actions(text: &str) -> Result<BTreeMap<String, Action>, ConfigError> {
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (event_type, action) = item.split_once('=').ok_or_else(|| {
            ConfigError::new(
                "WTL_EVENT_ACTIONS",
                format!("{item:?} is not of the form EventType=action (e.g. SIM/Updated=update)"),
            )
        })?;
        let event_type = event_type.trim();
        if event_type.is_empty() {
            return Err(ConfigError::new(
                "WTL_EVENT_ACTIONS",
                format!("{item:?} names no event type"),
            ));
        }
        let action = Action::parse(action.trim()).ok_or_else(|| {
            ConfigError::new(
                "WTL_EVENT_ACTIONS",
                format!(
                    "{:?} for {event_type} is not a WTL action (insert, update, delete, set, unset, modify)",
                    action.trim()
                ),
            )
        })?;
        if map.insert(event_type.to_string(), action).is_some() {
            return Err(ConfigError::new(
                "WTL_EVENT_ACTIONS",
                format!("{event_type} is listed twice"),
            ));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("API_TOKEN", "t1"), ("WTL_API_URL", "http://127.0.0.1:9/wtl/")]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Settings, ConfigError> {
        let mut vars = base();
        vars.extend_from_slice(extra);
        Settings::from_vars(vars)
    }

    #[test]
    fn defaults_match_the_reference() {
        let s = with(&[]).expect("valid");
        assert_eq!(s.port, 8000);
        assert_eq!(s.wtl.base_url, "http://127.0.0.1:9/wtl");
        assert_eq!(s.wtl.attempt_timeout, Duration::from_secs(30));
        assert_eq!(s.wtl.auth, WtlAuthMode::None);
        assert_eq!(s.rules.default_cs_profile.as_str(), "default");
        assert_eq!(s.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(8));
        assert_eq!(s.log_level, "INFO");
        assert_eq!(s.rules.event_actions.len(), 4);
        assert_eq!(s.rules.event_actions.get("SIM/Created"), Some(&Action::Insert));
    }

    #[test]
    fn rust_log_takes_levels_per_target() {
        let s = with(&[("RUST_LOG", "warn,nsps_wtl_connector=debug,hyper=error")]).expect("valid");
        assert_eq!(s.rust_log.as_deref(), Some("warn,nsps_wtl_connector=debug,hyper=error"));
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = Settings::from_vars(vec![("WTL_API_URL", "http://x")]).expect_err("must fail");
        assert_eq!(err.var, "API_TOKEN");
        let err = Settings::from_vars(vec![("API_TOKEN", "x")]).expect_err("must fail");
        assert_eq!(err.var, "WTL_API_URL");
    }

    #[test]
    fn invalid_values_are_named_without_echoing_secrets() {
        for (var, value) in [
            ("WTL_HTTP_REQUESTS_TIMEOUT", "soon"),
            ("PORT", "99999"),
            ("WTL_IMSI_REGEXP", "(unclosed"),
            ("WTL_EVENT_ACTIONS", "SIM/Updated=upsert"),
            ("WTL_AUTH", "kerberos"),
            ("LOG_LEVEL", "LOUD"),
            ("WTL_DEFAULT_CS_PROFILE", "9bad"),
            ("MAX_BODY_BYTES", "-1"),
            ("EVENTS_PATH", "events"),
            ("RUST_LOG", "hyper=loud"),
            ("WTL_RATE_LIMIT", "1e-300"),
            ("WTL_RATE_LIMIT", "0"),
            ("WTL_RATE_LIMIT", "-3"),
            ("WTL_RATE_LIMIT", "NaN"),
            ("WTL_RATE_LIMIT", "inf"),
            ("WTL_RATE_LIMIT", "1e300"),
            ("WTL_HTTP_REQUESTS_TIMEOUT", "1e300"),
            ("WTL_HTTP_REQUESTS_TIMEOUT", "NaN"),
            ("SHUTDOWN_TIMEOUT", "-1"),
            ("EVENT_DEDUP_TTL", "inf"),
        ] {
            let err = with(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
        let err = with(&[("WTL_AUTH", "bearer")]).expect_err("bearer needs a token");
        assert_eq!(err.var, "WTL_API_TOKEN");
        let err = with(&[("WTL_AUTH", "basic"), ("WTL_API_USERNAME", "u")]).expect_err("basic needs a password");
        assert_eq!(err.var, "WTL_API_PASSWORD");
        let err = with(&[("WTL_AUTH", "oauth2")]).expect_err("oauth2 needs a token URL");
        assert_eq!(err.var, "WTL_OAUTH_TOKEN_URL");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = with(&[("WTL_IMSI_REGEXP", ""), ("WTL_API_TOKEN", "  ")]).expect("valid");
        assert!(s.rules.imsi_filter.is_none());
        assert_eq!(s.wtl.auth, WtlAuthMode::None);
    }

    #[test]
    fn bearer_is_the_default_when_a_wtl_token_is_set() {
        let s = with(&[("WTL_API_TOKEN", "wtl-secret")]).expect("valid");
        assert_eq!(s.wtl.auth, WtlAuthMode::Bearer);
    }

    #[test]
    fn token_list_is_split_and_compared() {
        let s = with(&[("API_TOKEN", " old-token , new-token ,")]).expect("valid");
        assert!(s.token_matches(b"old-token"));
        assert!(s.token_matches(b"new-token"));
        assert!(!s.token_matches(b"new-toke"));
        assert!(!s.token_matches(b""));
    }

    #[test]
    fn secrets_never_reach_debug_or_the_redacted_view() {
        let s = with(&[
            ("API_TOKEN", "nsps-secret-1"),
            ("WTL_AUTH", "oauth2"),
            ("WTL_OAUTH_TOKEN_URL", "https://idp.example/token"),
            ("WTL_OAUTH_CLIENT_ID", "cid"),
            ("WTL_OAUTH_CLIENT_SECRET", "client-secret-2"),
            ("WTL_API_TOKEN", "wtl-secret-3"),
        ])
        .expect("valid");
        let debug = format!("{s:?}");
        let redacted = format!("{:?}", s.redacted());
        for secret in ["nsps-secret-1", "client-secret-2", "wtl-secret-3"] {
            assert!(!redacted.contains(secret), "{secret} leaked into the redacted view");
            assert!(!debug.contains(secret), "{secret} leaked into Debug");
        }
        assert!(redacted.contains("cid"));
    }

    #[test]
    fn credentials_in_the_wtl_url_become_its_basic_credentials() {
        let s = Settings::from_vars([
            ("API_TOKEN", "t"),
            ("WTL_API_URL", "https://hlr%20user:p%40ss-secret@hlr.example/wtl/"),
        ])
        .expect("valid");
        assert_eq!(s.wtl.auth, WtlAuthMode::Basic);
        assert_eq!(s.wtl.base_url, "https://hlr.example/wtl");
        assert_eq!(s.wtl.username.as_deref(), Some("hlr user"));
        assert_eq!(s.wtl.password.as_ref().map(|p| p.expose_secret()), Some("p@ss-secret"));
        for shown in [format!("{s:?}"), format!("{:?}", s.redacted())] {
            assert!(!shown.contains("ss-secret"), "{shown}");
        }
    }

    #[test]
    fn credentials_in_the_wtl_url_beside_other_credentials_are_refused() {
        for extra in [
            ("WTL_AUTH", "bearer"),
            ("WTL_API_TOKEN", "x"),
            ("WTL_API_USERNAME", "u"),
        ] {
            let err = Settings::from_vars([
                ("API_TOKEN", "t"),
                ("WTL_API_URL", "https://u:pw-secret@hlr.example"),
                extra,
            ])
            .expect_err("ambiguous credentials");
            assert_eq!(err.var, "WTL_API_URL");
            assert!(!err.to_string().contains("pw-secret"), "{err}");
        }
    }

    #[test]
    fn credentials_in_the_token_url_are_the_client_credentials() {
        let s = with(&[
            ("WTL_AUTH", "oauth2"),
            ("WTL_OAUTH_TOKEN_URL", "https://cid:pw-secret@idp.example/token"),
        ])
        .expect("valid");
        let oauth = s.wtl.oauth.as_ref().expect("oauth");
        assert_eq!(oauth.token_url, "https://idp.example/token");
        assert_eq!(oauth.client_id.as_deref(), Some("cid"));
        assert_eq!(
            oauth.client_secret.as_ref().map(|p| p.expose_secret()),
            Some("pw-secret")
        );
        let err = with(&[
            ("WTL_AUTH", "oauth2"),
            ("WTL_OAUTH_TOKEN_URL", "https://cid:pw-secret@idp.example/token"),
            ("WTL_OAUTH_CLIENT_ID", "other"),
        ])
        .expect_err("two client ids");
        assert_eq!(err.var, "WTL_OAUTH_TOKEN_URL");
    }

    #[test]
    fn a_malformed_url_is_refused_without_echoing_it() {
        let err = Settings::from_vars([("API_TOKEN", "t"), ("WTL_API_URL", "https://u:pw-secret@[bad")])
            .expect_err("not a URL");
        assert_eq!(err.var, "WTL_API_URL");
        assert!(!err.to_string().contains("pw-secret"), "{err}");
    }

    #[test]
    fn contradictions_are_warned_about() {
        let s = with(&[("WTL_HTTP_REQUESTS_TIMEOUT", "60"), ("WTL_TOTAL_TIMEOUT", "10")]).expect("valid");
        assert!(s.warnings.iter().any(|w| w.contains("WTL_HTTP_REQUESTS_TIMEOUT")));
    }

    #[test]
    fn event_actions_parse_and_reject_duplicates() {
        let m = parse_event_actions("Account/Blocked=update, SIM/Deleted=delete").expect("valid");
        assert_eq!(m.get("Account/Blocked"), Some(&Action::Update));
        assert!(parse_event_actions("A=update,A=insert").is_err());
        assert!(parse_event_actions("justtext").is_err());
    }

    #[test]
    fn env_example_lists_every_variable_and_is_valid() {
        let text = include_str!("../.env.example");
        let vars: Vec<(String, String)> = dotenvy::from_read_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .expect(".env.example parses");
        for name in KNOWN_VARS {
            assert!(
                vars.iter().any(|(k, _)| k == name),
                "{name} is missing from .env.example"
            );
        }
        Settings::from_vars(vars).expect(".env.example holds a valid configuration");
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        let mut vars: Vec<(String, String)> = base().into_iter().map(|(a, b)| (a.into(), b.into())).collect();
        vars.push(("HOME".into(), "/root".into()));
        vars.push(("SOMETHING_ELSE".into(), "{{weird".into()));
        assert!(Settings::from_vars(vars).is_ok());
    }
}

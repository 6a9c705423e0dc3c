//! The WTL settings of the validation pass: the URL, limits, credentials, TLS files, proxies.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;

use super::build::{MAX_RATE_LIMIT, MIN_RATE_LIMIT};
use super::env::{Field, RawEnv};
use super::problems::Problems;
use super::{ConfigError, OAuthSettings, ProxySettings, WtlAuthMode, WtlSettings};
use crate::wtl::tls::TlsFiles;

/// The WTL settings' raw values.
pub(super) struct WtlRaw {
    api_token: Option<String>,
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    attempt: Field<f64>,
    connect: Field<f64>,
    total: Field<f64>,
    retries: Field<i128>,
    retry_base_ms: Field<i128>,
    retry_after_max: Field<f64>,
    rate_limit: Field<f64>,
    tls: TlsFiles,
    proxy: Option<String>,
}

impl From<&RawEnv> for WtlRaw {
    fn from(raw: &RawEnv) -> Self {
        let trimmed = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string());
        Self {
            api_token: raw.wtl_api_token.clone(),
            auth: raw.wtl_auth.clone(),
            username: raw.wtl_api_username.clone(),
            password: raw.wtl_api_password.clone(),
            token_url: raw.wtl_oauth_token_url.clone(),
            client_id: raw.wtl_oauth_client_id.clone(),
            client_secret: raw.wtl_oauth_client_secret.clone(),
            scope: raw.wtl_oauth_scope.clone(),
            attempt: raw.wtl_http_requests_timeout.clone(),
            connect: raw.wtl_connect_timeout.clone(),
            total: raw.wtl_total_timeout.clone(),
            retries: raw.wtl_max_retries.clone(),
            retry_base_ms: raw.wtl_retry_base_ms.clone(),
            retry_after_max: raw.wtl_retry_after_max.clone(),
            rate_limit: raw.wtl_rate_limit.clone(),
            tls: TlsFiles {
                ca_file: trimmed(&raw.wtl_ca_file),
                client_cert_file: trimmed(&raw.wtl_client_cert_file),
                client_key_file: trimmed(&raw.wtl_client_key_file),
            },
            proxy: raw.wtl_proxy.clone(),
        }
    }
}

pub(super) fn settings(
    p: &mut Problems,
    url: &Option<String>,
    raw: WtlRaw,
    proxy_vars: &BTreeMap<String, String>,
) -> WtlSettings {
    let (base_url, url_credentials) = match url {
        None => {
            p.add("WTL_API_URL", "required (the WTL API base URL)");
            (String::new(), None)
        }
        Some(text) => match p.ok(parse_http_url("WTL_API_URL", text)) {
            Some((u, c)) => (u.trim_end_matches('/').to_string(), c),
            None => (String::new(), None),
        },
    };
    let limits = wtl_limits(p, &raw);
    let credentials = wtl_credentials(p, &raw, url_credentials);
    tls_files(p, &raw.tls, &base_url);
    if base_url.starts_with("http://") && credentials.auth != WtlAuthMode::None && !is_loopback_url(&base_url) {
        p.warn("WTL_API_URL uses plain http: WTL credentials cross the network unencrypted");
    }
    let proxy = p
        .ok(ProxySettings::from_vars(proxy_vars, raw.proxy))
        .unwrap_or_default();
    WtlSettings {
        base_url,
        auth: credentials.auth,
        api_token: credentials.api_token,
        username: credentials.username,
        password: credentials.password,
        oauth: credentials.oauth,
        attempt_timeout: limits.attempt,
        connect_timeout: limits.connect,
        total_timeout: limits.total,
        max_retries: limits.retries,
        retry_base: limits.retry_base,
        retry_after_max: limits.retry_after_max,
        rate_limit: limits.rate_limit,
        tls: raw.tls,
        proxy,
    }
}

struct Limits {
    attempt: Duration,
    connect: Duration,
    total: Duration,
    retries: u32,
    retry_base: Duration,
    retry_after_max: Duration,
    rate_limit: Option<f64>,
}

fn wtl_limits(p: &mut Problems, raw: &WtlRaw) -> Limits {
    let attempt = p.seconds("WTL_HTTP_REQUESTS_TIMEOUT", raw.attempt.clone(), 30.0, false);
    let connect = p.seconds("WTL_CONNECT_TIMEOUT", raw.connect.clone(), 5.0, false);
    let total = p.seconds("WTL_TOTAL_TIMEOUT", raw.total.clone(), 45.0, false);
    if attempt > total {
        p.warn(format!(
            "WTL_HTTP_REQUESTS_TIMEOUT ({}s) is longer than WTL_TOTAL_TIMEOUT ({}s): an attempt is cut short at the total",
            attempt.as_secs_f64(),
            total.as_secs_f64()
        ));
    }
    if connect > attempt {
        p.warn(format!(
            "WTL_CONNECT_TIMEOUT ({}s) is longer than WTL_HTTP_REQUESTS_TIMEOUT ({}s): the attempt limit applies first",
            connect.as_secs_f64(),
            attempt.as_secs_f64()
        ));
    }
    let retries = p.whole::<u32>("WTL_MAX_RETRIES", raw.retries.clone(), 2, 0, 100);
    let retry_base =
        Duration::from_millis(p.whole::<u64>("WTL_RETRY_BASE_MS", raw.retry_base_ms.clone(), 200, 1, 600_000));
    let retry_after_max = p.seconds("WTL_RETRY_AFTER_MAX", raw.retry_after_max.clone(), 10.0, true);
    let rate_limit = p.field("WTL_RATE_LIMIT", raw.rate_limit.clone()).and_then(|rate| {
        if (MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(&rate) {
            Some(rate)
        } else {
            p.add(
                "WTL_RATE_LIMIT",
                format!(
                    "must be between {MIN_RATE_LIMIT} and {MAX_RATE_LIMIT} calls per second (leave it unset for no limit)"
                ),
            );
            None
        }
    });
    Limits {
        attempt,
        connect,
        total,
        retries,
        retry_base,
        retry_after_max,
        rate_limit,
    }
}

struct Credentials {
    auth: WtlAuthMode,
    api_token: Option<SecretString>,
    username: Option<String>,
    password: Option<SecretString>,
    oauth: Option<OAuthSettings>,
}

fn wtl_credentials(p: &mut Problems, raw: &WtlRaw, url_credentials: Option<UrlCredentials>) -> Credentials {
    let api_token = raw.api_token.clone().map(SecretString::from);
    let mut username = raw.username.clone();
    let mut password = raw.password.clone().map(SecretString::from);
    // Credentials inside WTL_API_URL are its Basic credentials, when nothing else says how to
    // authenticate; beside other WTL credentials they would be ambiguous.
    let url_basic = match url_credentials {
        None => false,
        Some(_) if raw.auth.is_some() || api_token.is_some() || username.is_some() || password.is_some() => {
            p.add(
                "WTL_API_URL",
                "carries credentials (user:password@) while WTL_AUTH or other WTL credentials are set; give them as WTL_API_USERNAME and WTL_API_PASSWORD instead",
            );
            false
        }
        Some(c) => {
            username = Some(c.username);
            password = Some(c.password.unwrap_or_else(|| SecretString::from(String::new())));
            true
        }
    };
    let auth = match raw.auth.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None if url_basic => WtlAuthMode::Basic,
        None if api_token.is_some() => WtlAuthMode::Bearer,
        None => WtlAuthMode::None,
        Some(mode) => match mode.as_str() {
            "none" => WtlAuthMode::None,
            "bearer" => WtlAuthMode::Bearer,
            "basic" => WtlAuthMode::Basic,
            "oauth2" | "oauth" | "jwt" => WtlAuthMode::OAuth2,
            _ => {
                p.add(
                    "WTL_AUTH",
                    format!("expected none, bearer, basic or oauth2, got {mode:?}"),
                );
                WtlAuthMode::None
            }
        },
    };
    match auth {
        WtlAuthMode::Bearer if api_token.is_none() => p.add("WTL_API_TOKEN", "required when WTL_AUTH=bearer"),
        WtlAuthMode::Basic if username.is_none() => p.add("WTL_API_USERNAME", "required when WTL_AUTH=basic"),
        WtlAuthMode::Basic if password.is_none() => p.add("WTL_API_PASSWORD", "required when WTL_AUTH=basic"),
        _ => {}
    }
    let oauth = (auth == WtlAuthMode::OAuth2)
        .then(|| oauth(p, raw, &username, &password))
        .flatten();
    if auth != WtlAuthMode::Bearer && auth != WtlAuthMode::OAuth2 && api_token.is_some() {
        p.warn(format!(
            "WTL_API_TOKEN is set but WTL_AUTH={}: the token is not sent",
            auth.as_str()
        ));
    }
    if auth == WtlAuthMode::None && (username.is_some() || password.is_some()) {
        p.warn("WTL_API_USERNAME/WTL_API_PASSWORD are set but WTL_AUTH=none: they are not sent");
    }
    Credentials {
        auth,
        api_token,
        username,
        password,
        oauth,
    }
}

fn oauth(
    p: &mut Problems,
    raw: &WtlRaw,
    username: &Option<String>,
    password: &Option<SecretString>,
) -> Option<OAuthSettings> {
    let Some(text) = &raw.token_url else {
        p.add("WTL_OAUTH_TOKEN_URL", "required when WTL_AUTH=oauth2");
        return None;
    };
    let (token_url, url_client) = p.ok(parse_http_url("WTL_OAUTH_TOKEN_URL", text))?;
    let mut client_id = raw.client_id.clone();
    let mut client_secret = raw.client_secret.clone().map(SecretString::from);
    // Credentials inside the token URL are the client's id and secret (sent with HTTP Basic, as
    // RFC 6749 §2.3.1 has it), unless those are set on their own.
    if let Some(c) = url_client {
        if client_id.is_some() || client_secret.is_some() {
            p.add(
                "WTL_OAUTH_TOKEN_URL",
                "carries credentials (user:password@) while WTL_OAUTH_CLIENT_ID or WTL_OAUTH_CLIENT_SECRET is set; give them in those settings only",
            );
        } else {
            client_id = Some(c.username);
            client_secret = c.password;
        }
    }
    let has_user = username.is_some() && password.is_some();
    if client_id.is_none() && !has_user {
        p.add(
            "WTL_OAUTH_CLIENT_ID",
            "WTL_AUTH=oauth2 needs WTL_OAUTH_CLIENT_ID (client_credentials grant) or WTL_API_USERNAME and WTL_API_PASSWORD (password grant)",
        );
    }
    if username.is_some() != password.is_some() {
        let missing = if username.is_some() {
            "WTL_API_PASSWORD"
        } else {
            "WTL_API_USERNAME"
        };
        p.add(
            missing,
            "the password grant needs both WTL_API_USERNAME and WTL_API_PASSWORD",
        );
    }
    if !has_user && client_id.is_some() && client_secret.is_none() {
        p.add(
            "WTL_OAUTH_CLIENT_SECRET",
            "required for the client_credentials grant (WTL_AUTH=oauth2 without a username and password)",
        );
    }
    Some(OAuthSettings {
        token_url,
        client_id,
        client_secret,
        scope: raw.scope.clone(),
    })
}

fn tls_files(p: &mut Problems, tls: &TlsFiles, base_url: &str) {
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(_), None) => p.add(
            "WTL_CLIENT_KEY_FILE",
            "required when WTL_CLIENT_CERT_FILE is set (mutual TLS needs both)",
        ),
        (None, Some(_)) => p.add(
            "WTL_CLIENT_CERT_FILE",
            "required when WTL_CLIENT_KEY_FILE is set (mutual TLS needs both)",
        ),
        _ => {}
    }
    if base_url.starts_with("http://") && (tls.ca_file.is_some() || tls.client_cert_file.is_some()) {
        p.warn("WTL_CA_FILE or WTL_CLIENT_CERT_FILE is set but WTL_API_URL uses plain http: TLS settings apply only to https");
    }
}

/// User name and password found inside a URL (`user:pass@host`), percent-decoded.
pub(super) struct UrlCredentials {
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

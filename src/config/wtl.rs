//! The WTL settings of the validation pass: the URL, limits, credentials, TLS files, proxies,
//! read from the typed environment straight into the WTL client's own settings.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;
use super::env::RawEnv;
use super::problems::Problems;
use super::proxy::proxy_settings;
use crate::wtl::settings::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_AFTER_MAX,
    DEFAULT_RETRY_BASE_MS, DEFAULT_TOTAL_TIMEOUT, MAX_RATE_LIMIT, MIN_RATE_LIMIT,
};
use crate::wtl::tls::TlsFiles;
use crate::wtl::{AuthMode, OAuthSettings, Settings};

/// The WTL client's settings, read straight into [`crate::wtl::Settings`].
pub(super) fn settings(p: &mut Problems, raw: &mut RawEnv, proxy_vars: &BTreeMap<String, String>) -> Settings {
    let (base_url, url_credentials) = base_url(p, raw.wtl_api_url.take());
    let mut wtl = Settings::new(base_url);
    limits(p, raw, &mut wtl);
    credentials(p, raw, url_credentials, &mut wtl);
    wtl.tls = TlsFiles {
        ca_file: trimmed(raw.wtl_ca_file.take()),
        client_cert_file: trimmed(raw.wtl_client_cert_file.take()),
        client_key_file: trimmed(raw.wtl_client_key_file.take()),
    };
    tls_files(p, &wtl.tls, &wtl.base_url);
    if wtl.base_url.starts_with("http://") && wtl.auth != AuthMode::None && !is_loopback_url(&wtl.base_url) {
        p.warn("WTL_API_URL uses plain http: WTL credentials cross the network unencrypted");
    }
    wtl.proxy = p
        .ok(proxy_settings(proxy_vars, raw.wtl_proxy.take()))
        .unwrap_or_default();
    wtl
}

fn trimmed(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_string())
}

/// `WTL_API_URL`: the address (without credentials) and the credentials it carried.
fn base_url(p: &mut Problems, url: Option<String>) -> (String, Option<UrlCredentials>) {
    let Some(text) = url else {
        p.add("WTL_API_URL", "required (the WTL API base URL)");
        return (String::new(), None);
    };
    match p.ok(parse_http_url("WTL_API_URL", &text)) {
        Some((u, c)) => (u.trim_end_matches('/').to_string(), c),
        None => (String::new(), None),
    }
}

fn limits(p: &mut Problems, raw: &mut RawEnv, wtl: &mut Settings) {
    use std::mem::take;
    wtl.attempt_timeout = p.seconds(
        "WTL_HTTP_REQUESTS_TIMEOUT",
        take(&mut raw.wtl_http_requests_timeout),
        DEFAULT_ATTEMPT_TIMEOUT,
        false,
    );
    wtl.connect_timeout = p.seconds(
        "WTL_CONNECT_TIMEOUT",
        take(&mut raw.wtl_connect_timeout),
        DEFAULT_CONNECT_TIMEOUT,
        false,
    );
    wtl.total_timeout = p.seconds(
        "WTL_TOTAL_TIMEOUT",
        take(&mut raw.wtl_total_timeout),
        DEFAULT_TOTAL_TIMEOUT,
        false,
    );
    warn_on_timeout_order(p, wtl);
    wtl.max_retries = p.whole::<u32>(
        "WTL_MAX_RETRIES",
        take(&mut raw.wtl_max_retries),
        DEFAULT_MAX_RETRIES,
        0,
        100,
    );
    wtl.retry_base = Duration::from_millis(p.whole::<u64>(
        "WTL_RETRY_BASE_MS",
        take(&mut raw.wtl_retry_base_ms),
        DEFAULT_RETRY_BASE_MS,
        1,
        600_000,
    ));
    wtl.retry_after_max = p.seconds(
        "WTL_RETRY_AFTER_MAX",
        take(&mut raw.wtl_retry_after_max),
        DEFAULT_RETRY_AFTER_MAX,
        true,
    );
    wtl.rate_limit = p.field("WTL_RATE_LIMIT", take(&mut raw.wtl_rate_limit)).and_then(|rate| {
        if (MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(&rate) {
            return Some(rate);
        }
        p.add(
            "WTL_RATE_LIMIT",
            format!("must be between {MIN_RATE_LIMIT} and {MAX_RATE_LIMIT} calls per second (leave it unset for no limit)"),
        );
        None
    });
}

fn warn_on_timeout_order(p: &mut Problems, wtl: &Settings) {
    let (attempt, connect, total) = (wtl.attempt_timeout, wtl.connect_timeout, wtl.total_timeout);
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
}

/// `WTL_AUTH` and the credentials it needs, checked together.
fn credentials(p: &mut Problems, raw: &mut RawEnv, url_credentials: Option<UrlCredentials>, wtl: &mut Settings) {
    wtl.api_token = raw.wtl_api_token.take().map(SecretString::from);
    wtl.username = raw.wtl_api_username.take();
    wtl.password = raw.wtl_api_password.take().map(SecretString::from);
    let auth_text = raw.wtl_auth.take();
    let url_basic = url_basic(p, url_credentials, auth_text.is_some(), wtl);
    wtl.auth = auth_mode(p, auth_text, url_basic, wtl.api_token.is_some());
    match wtl.auth {
        AuthMode::Bearer if wtl.api_token.is_none() => p.add("WTL_API_TOKEN", "required when WTL_AUTH=bearer"),
        AuthMode::Basic if wtl.username.is_none() => p.add("WTL_API_USERNAME", "required when WTL_AUTH=basic"),
        AuthMode::Basic if wtl.password.is_none() => p.add("WTL_API_PASSWORD", "required when WTL_AUTH=basic"),
        _ => {}
    }
    if wtl.auth == AuthMode::OAuth2 {
        wtl.oauth = oauth(p, raw, &wtl.username, &wtl.password);
    }
    if wtl.auth != AuthMode::Bearer && wtl.auth != AuthMode::OAuth2 && wtl.api_token.is_some() {
        p.warn(format!(
            "WTL_API_TOKEN is set but WTL_AUTH={}: the token is not sent",
            wtl.auth.as_str()
        ));
    }
    if wtl.auth == AuthMode::None && (wtl.username.is_some() || wtl.password.is_some()) {
        p.warn("WTL_API_USERNAME/WTL_API_PASSWORD are set but WTL_AUTH=none: they are not sent");
    }
}

/// Credentials inside `WTL_API_URL` are its Basic credentials, when nothing else says how to
/// authenticate; beside other WTL credentials they would be ambiguous. True when they are used.
fn url_basic(p: &mut Problems, url_credentials: Option<UrlCredentials>, auth_set: bool, wtl: &mut Settings) -> bool {
    let Some(c) = url_credentials else {
        return false;
    };
    if auth_set || wtl.api_token.is_some() || wtl.username.is_some() || wtl.password.is_some() {
        p.add(
            "WTL_API_URL",
            "carries credentials (user:password@) while WTL_AUTH or other WTL credentials are set; give them as WTL_API_USERNAME and WTL_API_PASSWORD instead",
        );
        return false;
    }
    wtl.username = Some(c.username);
    wtl.password = Some(c.password.unwrap_or_else(|| SecretString::from(String::new())));
    true
}

fn auth_mode(p: &mut Problems, text: Option<String>, url_basic: bool, has_token: bool) -> AuthMode {
    match text.map(|s| s.trim().to_ascii_lowercase()) {
        None if url_basic => AuthMode::Basic,
        None if has_token => AuthMode::Bearer,
        None => AuthMode::None,
        Some(mode) => match mode.as_str() {
            "none" => AuthMode::None,
            "bearer" => AuthMode::Bearer,
            "basic" => AuthMode::Basic,
            "oauth2" | "oauth" | "jwt" => AuthMode::OAuth2,
            _ => {
                p.add(
                    "WTL_AUTH",
                    format!("expected none, bearer, basic or oauth2, got {mode:?}"),
                );
                AuthMode::None
            }
        },
    }
}

fn oauth(
    p: &mut Problems,
    raw: &mut RawEnv,
    username: &Option<String>,
    password: &Option<SecretString>,
) -> Option<OAuthSettings> {
    let Some(text) = raw.wtl_oauth_token_url.take() else {
        p.add("WTL_OAUTH_TOKEN_URL", "required when WTL_AUTH=oauth2");
        return None;
    };
    let (token_url, url_client) = p.ok(parse_http_url("WTL_OAUTH_TOKEN_URL", &text))?;
    let mut client_id = raw.wtl_oauth_client_id.take();
    let mut client_secret = raw.wtl_oauth_client_secret.take().map(SecretString::from);
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
        scope: raw.wtl_oauth_scope.take(),
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

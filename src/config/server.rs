//! The HTTP server's settings, from the typed environment to [`crate::http::Settings`].

use std::time::Duration;

use super::ConfigError;
use super::env::RawEnv;
use super::problems::Problems;
use crate::http::{
    ApiTokens, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PORT,
    DEFAULT_SHUTDOWN_TIMEOUT, REQUEST_TIMEOUT_MARGIN, RESERVED_PATHS, Settings,
};

/// The server's settings, read in the order the problems are listed; `api_tokens` were read
/// before (right after the WTL settings), `total_timeout` (`WTL_TOTAL_TIMEOUT`) sets
/// `REQUEST_TIMEOUT`'s default.
pub(super) fn server(p: &mut Problems, raw: &mut RawEnv, api_tokens: ApiTokens, total_timeout: Duration) -> Settings {
    use std::mem::take;
    let port = p.whole::<u16>("PORT", take(&mut raw.port), DEFAULT_PORT, 0, u16::MAX);
    let bind_address = raw.bind_address.take().and_then(|a| p.ok(parse_bind_address(&a)));
    let events_path = raw.events_path.take().and_then(|e| p.ok(parse_events_path(&e)));
    let max_body_bytes = p.whole::<u64>(
        "MAX_BODY_BYTES",
        take(&mut raw.max_body_bytes),
        DEFAULT_MAX_BODY_BYTES,
        1024,
        1 << 30,
    );
    let shutdown_timeout = p.seconds(
        "SHUTDOWN_TIMEOUT",
        take(&mut raw.shutdown_timeout),
        DEFAULT_SHUTDOWN_TIMEOUT,
        true,
    );
    let header_read_timeout = p.seconds(
        "HEADER_READ_TIMEOUT",
        take(&mut raw.header_read_timeout),
        DEFAULT_HEADER_READ_TIMEOUT,
        false,
    );
    let request_timeout = request_timeout(p, raw, total_timeout);
    let max_in_flight = p.whole::<u32>(
        "MAX_IN_FLIGHT",
        take(&mut raw.max_in_flight),
        DEFAULT_MAX_IN_FLIGHT,
        1,
        1_000_000,
    );
    let trusted_proxies = p.whole::<u8>("TRUSTED_PROXIES", take(&mut raw.trusted_proxies), 0, 0, 20);
    let allowed_sources = p
        .field("ALLOWED_SOURCE_RANGES", take(&mut raw.allowed_source_ranges))
        .and_then(|items| p.ok(parse_source_ranges(&items)));
    Settings {
        api_tokens,
        trusted_proxies: usize::from(trusted_proxies),
        allowed_sources,
        port,
        bind_address,
        events_path,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        shutdown_timeout,
        header_read_timeout,
        request_timeout,
        max_in_flight: usize::try_from(max_in_flight).unwrap_or(usize::MAX),
        metrics_public: p.flag("METRICS_PUBLIC", take(&mut raw.metrics_public), false),
    }
}

fn request_timeout(p: &mut Problems, raw: &mut RawEnv, total_timeout: Duration) -> Duration {
    let default = total_timeout.as_secs_f64() + REQUEST_TIMEOUT_MARGIN;
    let request_timeout = p.seconds(
        "REQUEST_TIMEOUT",
        std::mem::take(&mut raw.request_timeout),
        default,
        false,
    );
    if request_timeout < total_timeout {
        p.warn(format!(
            "REQUEST_TIMEOUT ({}s) is shorter than WTL_TOTAL_TIMEOUT ({}s): an event may be cut off while WTL calls are still being retried",
            request_timeout.as_secs_f64(),
            total_timeout.as_secs_f64()
        ));
    }
    request_timeout
}

/// `API_TOKEN`: the tokens NSPS may send.
pub(super) fn api_tokens(p: &mut Problems, raw: &mut RawEnv) -> ApiTokens {
    ApiTokens::new(tokens(p, std::mem::take(&mut raw.api_token)))
}

fn tokens(p: &mut Problems, field: super::env::Field<Vec<String>>) -> Vec<secrecy::SecretString> {
    let Some(tokens) = p.field("API_TOKEN", field) else {
        p.add("API_TOKEN", "required (the Bearer token NSPS sends)");
        return Vec::new();
    };
    match token_list(tokens) {
        Ok(tokens) => tokens,
        Err(problem) => {
            p.add("API_TOKEN", problem);
            Vec::new()
        }
    }
}

/// `API_TOKEN`'s tokens, checked (also for a new value of `API_TOKEN_FILE`).
pub(crate) fn token_list(tokens: Vec<String>) -> Result<Vec<secrecy::SecretString>, &'static str> {
    if tokens.is_empty() {
        return Err("holds no token");
    }
    if tokens
        .iter()
        .any(|t| t.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err("a token contains white space or control characters");
    }
    Ok(tokens.into_iter().map(secrecy::SecretString::from).collect())
}

/// `ALLOWED_SOURCE_RANGES`: addresses (a host each) and CIDR ranges, IPv4 and IPv6.
fn parse_source_ranges(items: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    if items.is_empty() {
        return Err(ConfigError::new("ALLOWED_SOURCE_RANGES", "holds no address or range"));
    }
    items
        .iter()
        .map(|item| {
            let bare = item.trim_start_matches('[').trim_end_matches(']');
            item.parse::<ipnet::IpNet>()
                .or_else(|_| bare.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    ConfigError::new(
                        "ALLOWED_SOURCE_RANGES",
                        format!("{item:?} is not an IP address or CIDR range (such as 203.0.113.7, 198.51.100.0/24 or 2001:db8::/32)"),
                    )
                })
        })
        .collect()
}

fn parse_events_path(text: &str) -> Result<String, ConfigError> {
    let path = text.trim().trim_end_matches('/').to_string();
    if !path.starts_with('/')
        || path.starts_with("//")
        || path.contains(char::is_whitespace)
        || path.contains('{')
        || path.contains('*')
    {
        return Err(ConfigError::new(
            "EVENTS_PATH",
            "must be a plain path starting with '/', such as /nsps/events",
        ));
    }
    if RESERVED_PATHS.contains(&path.as_str()) {
        return Err(ConfigError::new(
            "EVENTS_PATH",
            format!("{path} is already a path of the connector"),
        ));
    }
    Ok(path)
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

//! The validation pass: from the typed environment to [`Settings`], naming every problem.
//!
//! Each group of settings is read by a function of its own; a problem is recorded (with the
//! variable's name) and reading goes on with the default, so one start-up or `check` lists all
//! of them. Contradictions that are allowed but probably unintended become warnings.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use secrecy::SecretString;

use super::env::{Field, RawEnv};
use super::problems::Problems;
use super::{ConfigError, LogFormat, Settings, hide_userinfo};
use crate::memory::shared::RedisSettings;
use crate::plan::{PlanRules, Profile};

/// `WTL_RATE_LIMIT` bounds: one call in 1000 s at the slowest, a million a second at most.
pub(super) const MIN_RATE_LIMIT: f64 = 0.001;
pub(super) const MAX_RATE_LIMIT: f64 = 1_000_000.0;

/// Default event type → WTL action table.
pub const DEFAULT_EVENT_ACTIONS: &str = "SIM/Updated=update,SIM/Created=insert,SIM/Deleted=delete,SIM/Replaced=update";

const LOG_LEVELS: &[&str] = &["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"];
const RESERVED_PATHS: &[&str] = &["", "/health", "/ready", "/process-event", "/metrics", "/openapi.json"];
/// The validation pass.
pub(crate) fn settings(mut raw: RawEnv, proxy_vars: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    let mut p = Problems::default();
    let secret_files = super::secret_files::resolve(&mut p, &mut raw);
    let wtl = super::wtl::settings(&mut p, &raw.wtl_api_url, super::wtl::WtlRaw::from(&raw), proxy_vars);
    let api_tokens = tokens(&mut p, std::mem::take(&mut raw.api_token));
    let rules = plan_rules(
        &mut p,
        raw.wtl_default_cs_profile.take(),
        raw.wtl_default_eps_profile.take(),
        raw.wtl_imsi_regexp.take(),
        std::mem::take(&mut raw.wtl_event_actions),
    );
    let server = server(&mut p, &raw, wtl.total_timeout);
    let memory = memory(&mut p, &raw);
    let logs = logs(&mut p, &raw);
    let otel = super::otel::settings(&mut p, &raw);
    let p_dry_run = p.flag("WTL_DRY_RUN", std::mem::take(&mut raw.wtl_dry_run), false);
    let warnings = p.finish()?;
    Ok(Settings {
        api_tokens: super::ApiTokens::new(api_tokens),
        trusted_proxies: server.trusted_proxies,
        allowed_sources: server.allowed_sources,
        secret_files,
        port: server.port,
        bind_address: server.bind_address,
        events_path: server.events_path,
        max_body_bytes: server.max_body_bytes,
        shutdown_timeout: server.shutdown_timeout,
        header_read_timeout: server.header_read_timeout,
        request_timeout: server.request_timeout,
        max_in_flight: server.max_in_flight,
        dedup_ttl: memory.dedup_ttl,
        dedup_max: memory.dedup_max,
        metrics_public: server.metrics_public,
        stale_event_check: memory.stale_event_check,
        stale_event_ttl: memory.stale_event_ttl,
        redis: memory.redis,
        cloud: crate::telemetry::CloudSettings {
            project: raw.google_cloud_project.map(|v| v.trim().to_string()),
            on_cloud_run: raw.k_service.is_some(),
            metadata_host: raw
                .gce_metadata_host
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|| crate::telemetry::METADATA_HOST.to_string()),
        },
        otel,
        wtl_dry_run: p_dry_run,
        log_level: logs.level,
        log_format: logs.format,
        rust_log: logs.rust_log,
        app_name: raw.app_name,
        rules,
        wtl,
        warnings,
    })
}

fn tokens(p: &mut Problems, field: Field<Vec<String>>) -> Vec<SecretString> {
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
pub(crate) fn token_list(tokens: Vec<String>) -> Result<Vec<SecretString>, &'static str> {
    if tokens.is_empty() {
        return Err("holds no token");
    }
    if tokens
        .iter()
        .any(|t| t.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err("a token contains white space or control characters");
    }
    Ok(tokens.into_iter().map(SecretString::from).collect())
}

fn plan_rules(
    p: &mut Problems,
    cs: Option<String>,
    eps: Option<String>,
    imsi_regexp: Option<String>,
    actions: Field<BTreeMap<String, crate::plan::Action>>,
) -> PlanRules {
    let default_cs_profile = p.ok(parse_profile("WTL_DEFAULT_CS_PROFILE", cs)).unwrap_or_default();
    let default_eps_profile = p.ok(parse_profile("WTL_DEFAULT_EPS_PROFILE", eps)).unwrap_or_default();
    let imsi_filter = imsi_regexp.and_then(|pattern| match Regex::new(pattern.trim()) {
        Ok(r) => Some(r),
        Err(e) => {
            p.add("WTL_IMSI_REGEXP", format!("not a valid regular expression: {e}"));
            None
        }
    });
    let event_actions = match p.field("WTL_EVENT_ACTIONS", actions) {
        Some(map) => map,
        None => super::env::parse_event_actions(DEFAULT_EVENT_ACTIONS).unwrap_or_default(),
    };
    PlanRules {
        default_cs_profile,
        default_eps_profile,
        imsi_filter,
        event_actions,
    }
}

struct Server {
    trusted_proxies: usize,
    allowed_sources: Option<Vec<ipnet::IpNet>>,
    port: u16,
    bind_address: Option<std::net::IpAddr>,
    events_path: Option<String>,
    max_body_bytes: usize,
    shutdown_timeout: Duration,
    header_read_timeout: Duration,
    request_timeout: Duration,
    max_in_flight: usize,
    metrics_public: bool,
}

fn server(p: &mut Problems, raw: &RawEnv, total_timeout: Duration) -> Server {
    let port = p.whole::<u16>("PORT", raw.port.clone(), 8000, 0, u16::MAX);
    let bind_address = raw.bind_address.as_deref().and_then(|a| p.ok(parse_bind_address(a)));
    let events_path = raw.events_path.as_deref().and_then(|e| p.ok(parse_events_path(e)));
    let max_body_bytes = p.whole::<u64>(
        "MAX_BODY_BYTES",
        raw.max_body_bytes.clone(),
        2 * 1024 * 1024,
        1024,
        1 << 30,
    );
    let shutdown_timeout = p.seconds("SHUTDOWN_TIMEOUT", raw.shutdown_timeout.clone(), 8.0, true);
    let header_read_timeout = p.seconds("HEADER_READ_TIMEOUT", raw.header_read_timeout.clone(), 10.0, false);
    let default_request_timeout = total_timeout.as_secs_f64() + 5.0;
    let request_timeout = p.seconds(
        "REQUEST_TIMEOUT",
        raw.request_timeout.clone(),
        default_request_timeout,
        false,
    );
    if request_timeout < total_timeout {
        p.warn(format!(
            "REQUEST_TIMEOUT ({}s) is shorter than WTL_TOTAL_TIMEOUT ({}s): an event may be cut off while WTL calls are still being retried",
            request_timeout.as_secs_f64(),
            total_timeout.as_secs_f64()
        ));
    }
    let max_in_flight = p.whole::<u32>("MAX_IN_FLIGHT", raw.max_in_flight.clone(), 1024, 1, 1_000_000);
    let trusted_proxies = p.whole::<u8>("TRUSTED_PROXIES", raw.trusted_proxies.clone(), 0, 0, 20);
    let allowed_sources = p
        .field("ALLOWED_SOURCE_RANGES", raw.allowed_source_ranges.clone())
        .and_then(|items| p.ok(parse_source_ranges(&items)));
    Server {
        trusted_proxies: usize::from(trusted_proxies),
        allowed_sources,
        port,
        bind_address,
        events_path,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        shutdown_timeout,
        header_read_timeout,
        request_timeout,
        max_in_flight: usize::try_from(max_in_flight).unwrap_or(1024),
        metrics_public: p.flag("METRICS_PUBLIC", raw.metrics_public.clone(), false),
    }
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

struct Memory {
    dedup_ttl: Duration,
    dedup_max: usize,
    stale_event_check: bool,
    stale_event_ttl: Duration,
    redis: Option<RedisSettings>,
}

fn memory(p: &mut Problems, raw: &RawEnv) -> Memory {
    let dedup_ttl = p.seconds("EVENT_DEDUP_TTL", raw.event_dedup_ttl.clone(), 600.0, true);
    let dedup_max = p.whole::<u32>("EVENT_DEDUP_MAX", raw.event_dedup_max.clone(), 100_000, 1, 100_000_000);
    let stale_event_check = p.flag("STALE_EVENT_CHECK", raw.stale_event_check.clone(), true);
    let stale_event_ttl = match p.field("STALE_EVENT_TTL", raw.stale_event_ttl.clone()) {
        Some(secs) if (1.0..=400.0 * 86_400.0).contains(&secs) => Duration::from_secs_f64(secs),
        Some(_) => {
            p.add("STALE_EVENT_TTL", "must be between 1 second and 400 days (34560000)");
            Duration::from_secs(35 * 86_400)
        }
        None => Duration::from_secs(35 * 86_400),
    };
    let redis = raw.redis_url.as_deref().and_then(|url| redis(p, url, raw));
    if redis.is_some() && dedup_ttl.is_zero() && !stale_event_check {
        p.warn("REDIS_URL is set but EVENT_DEDUP_TTL=0 and STALE_EVENT_CHECK=false: the shared memory has nothing to keep (no duplicate detection, no stale check, no one-event-at-a-time per IMSI)");
    }
    Memory {
        dedup_ttl,
        dedup_max: usize::try_from(dedup_max).unwrap_or(100_000),
        stale_event_check,
        stale_event_ttl,
        redis,
    }
}

/// `REDIS_URL` and its companions.
fn redis(p: &mut Problems, url: &str, raw: &RawEnv) -> Option<RedisSettings> {
    let url = url.trim().to_string();
    let timeout = p.seconds("REDIS_TIMEOUT", raw.redis_timeout.clone(), 2.0, false);
    let fail_open = p.flag("REDIS_FAIL_OPEN", raw.redis_fail_open.clone(), false);
    // The text is never echoed back: it may hold a password.
    let parsed = match url::Url::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            p.add("REDIS_URL", format!("not a valid URL ({e})"));
            return None;
        }
    };
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        p.add("REDIS_URL", "must start with redis:// or rediss:// (TLS)");
        return None;
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        p.add("REDIS_URL", "has no host");
        return None;
    }
    let ca_file = raw.redis_ca_file.as_ref().map(|c| c.trim().to_string());
    if ca_file.is_some() && parsed.scheme() != "rediss" {
        p.add("REDIS_CA_FILE", "applies only to a rediss:// REDIS_URL (TLS)");
    }
    let key_prefix = raw.redis_key_prefix.clone().unwrap_or_else(|| "nsps-wtl:".to_string());
    if key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.add("REDIS_KEY_PREFIX", "must not contain white space");
    }
    Some(RedisSettings {
        shown: hide_userinfo(&url),
        url: SecretString::from(url),
        key_prefix,
        timeout,
        ca_file,
        fail_open,
    })
}

struct Logs {
    level: String,
    format: LogFormat,
    rust_log: Option<String>,
}

fn logs(p: &mut Problems, raw: &RawEnv) -> Logs {
    let level = match raw.log_level.as_deref().map(|s| s.trim().to_ascii_uppercase()) {
        None => "INFO".to_string(),
        Some(level) if LOG_LEVELS.contains(&level.as_str()) => level,
        Some(level) => {
            p.add(
                "LOG_LEVEL",
                format!("expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level:?}"),
            );
            "INFO".to_string()
        }
    };
    let format = match raw.log_format.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => LogFormat::Json,
        Some(f) if f == "json" => LogFormat::Json,
        Some(f) if f == "text" => LogFormat::Text,
        Some(f) => {
            p.add("LOG_FORMAT", format!("expected json or text, got {f:?}"));
            LogFormat::Json
        }
    };
    let rust_log = raw.rust_log.clone();
    if rust_log
        .as_deref()
        .is_some_and(|f| f.parse::<tracing_subscriber::filter::Targets>().is_err())
    {
        p.add(
            "RUST_LOG",
            "not a valid filter: a comma-separated list of `level` and `target=level`",
        );
    }
    Logs {
        level,
        format,
        rust_log,
    }
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

//! The redelivery memory's settings, from the typed environment to [`crate::memory::Settings`].

use std::time::Duration;

use secrecy::SecretString;

use super::env::RawEnv;
use super::problems::Problems;
use crate::memory::shared::{DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT, RedisSettings};
use crate::memory::{DEFAULT_DEDUP_MAX, DEFAULT_DEDUP_TTL, DEFAULT_STALE_EVENT_TTL, Settings};
use crate::telemetry::hide_userinfo;

/// `STALE_EVENT_TTL`'s longest value: 400 days.
const MAX_STALE_EVENT_TTL: f64 = 400.0 * 86_400.0;

pub(super) fn memory(p: &mut Problems, raw: &mut RawEnv) -> Settings {
    let dedup_ttl = p.seconds(
        "EVENT_DEDUP_TTL",
        std::mem::take(&mut raw.event_dedup_ttl),
        DEFAULT_DEDUP_TTL,
        true,
    );
    let dedup_max = p.whole::<u32>(
        "EVENT_DEDUP_MAX",
        std::mem::take(&mut raw.event_dedup_max),
        DEFAULT_DEDUP_MAX,
        1,
        100_000_000,
    );
    let stale_event_check = p.flag("STALE_EVENT_CHECK", std::mem::take(&mut raw.stale_event_check), true);
    let stale_event_ttl = match p.field("STALE_EVENT_TTL", std::mem::take(&mut raw.stale_event_ttl)) {
        Some(secs) if (1.0..=MAX_STALE_EVENT_TTL).contains(&secs) => Duration::from_secs_f64(secs),
        Some(_) => {
            p.add("STALE_EVENT_TTL", "must be between 1 second and 400 days (34560000)");
            DEFAULT_STALE_EVENT_TTL
        }
        None => DEFAULT_STALE_EVENT_TTL,
    };
    let redis = raw.redis_url.take().and_then(|url| redis(p, &url, raw));
    if redis.is_some() && dedup_ttl.is_zero() && !stale_event_check {
        p.warn("REDIS_URL is set but EVENT_DEDUP_TTL=0 and STALE_EVENT_CHECK=false: the shared memory has nothing to keep (no duplicate detection, no stale check, no one-event-at-a-time per IMSI)");
    }
    Settings {
        dedup_ttl,
        dedup_max: usize::try_from(dedup_max).unwrap_or(usize::MAX),
        stale_event_check,
        stale_event_ttl,
        redis,
    }
}

/// `REDIS_URL` and its companions.
fn redis(p: &mut Problems, url: &str, raw: &mut RawEnv) -> Option<RedisSettings> {
    let url = url.trim().to_string();
    let timeout = p.seconds(
        "REDIS_TIMEOUT",
        std::mem::take(&mut raw.redis_timeout),
        DEFAULT_TIMEOUT,
        false,
    );
    let fail_open = p.flag("REDIS_FAIL_OPEN", std::mem::take(&mut raw.redis_fail_open), false);
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
    let ca_file = raw.redis_ca_file.take().map(|c| c.trim().to_string());
    if ca_file.is_some() && parsed.scheme() != "rediss" {
        p.add("REDIS_CA_FILE", "applies only to a rediss:// REDIS_URL (TLS)");
    }
    let key_prefix = raw
        .redis_key_prefix
        .take()
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
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

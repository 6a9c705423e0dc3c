//! The environment as one typed struct, read by envy.
//!
//! Each field is a setting (envy maps `WTL_HTTP_REQUESTS_TIMEOUT` to `wtl_http_requests_timeout`).
//! Numbers, flags, lists and the event-action map are read by the serde helpers below into a
//! [`Field`], which keeps a value that does not read as the reason it does not: envy never stops
//! at the first bad value, so the validation pass (`build.rs`) can name every problem at once.
//!
//! Adding a setting: a field here with its doc comment (its upper-case name is the variable),
//! its field in the using module's settings type, its validation in that module's function here
//! in `config`, its use; then `Settings::redacted`, `.env.example` and the README (see
//! docs/development.md, "Adding a setting").

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::plan::{Action, parse_event_actions};

/// A setting as read from the environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Field<T> {
    #[default]
    Unset,
    Set(T),
    /// The text given, and why it does not read as a `T`.
    Invalid(String),
}

/// Reads the text of a setting with `parse`, keeping a failure as [`Field::Invalid`].
fn field<'de, D, T>(d: D, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<Field<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    Ok(match parse(text.trim()) {
        Ok(v) => Field::Set(v),
        Err(why) => Field::Invalid(why),
    })
}

/// A number (seconds, calls per second): any decimal, checked against its range later.
pub(crate) fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Field<f64>, D::Error> {
    field(d, |t| {
        t.parse::<f64>().map_err(|_| format!("expected a number, got {t:?}"))
    })
}

/// A whole number, checked against its range later.
pub(crate) fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<Field<i128>, D::Error> {
    field(d, |t| {
        t.parse::<i128>()
            .map_err(|_| format!("expected a whole number, got {t:?}"))
    })
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Field<bool>, D::Error> {
    field(d, |t| match t.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    })
}

/// A comma-separated list; empty items are dropped.
pub(crate) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Field<Vec<String>>, D::Error> {
    field(d, |t| Ok(split_list(t)))
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `SIM/Updated=update,SIM/Created=insert,...`.
pub(crate) fn event_actions<'de, D: Deserializer<'de>>(d: D) -> Result<Field<BTreeMap<String, Action>>, D::Error> {
    field(d, parse_event_actions)
}

/// Every variable the connector reads, typed. Text settings are plain strings, checked by the
/// validation pass.
#[derive(Deserialize, Default)]
pub(crate) struct RawEnv {
    /// Token(s) NSPS must send; a comma-separated list.
    #[serde(default, deserialize_with = "list")]
    pub(crate) api_token: Field<Vec<String>>,
    /// A file holding `API_TOKEN` (a secret volume); watched, so the token rotates without a restart.
    pub(crate) api_token_file: Option<String>,
    /// WTL base URL (may carry a base path, and `user:password@` for Basic).
    pub(crate) wtl_api_url: Option<String>,
    /// Static Bearer token for WTL.
    pub(crate) wtl_api_token: Option<String>,
    pub(crate) wtl_api_token_file: Option<String>,
    /// `none` / `bearer` / `basic` / `oauth2`.
    pub(crate) wtl_auth: Option<String>,
    pub(crate) wtl_api_username: Option<String>,
    pub(crate) wtl_api_password: Option<String>,
    pub(crate) wtl_api_password_file: Option<String>,
    pub(crate) wtl_oauth_token_url: Option<String>,
    pub(crate) wtl_oauth_client_id: Option<String>,
    pub(crate) wtl_oauth_client_secret: Option<String>,
    pub(crate) wtl_oauth_client_secret_file: Option<String>,
    pub(crate) wtl_oauth_scope: Option<String>,
    pub(crate) wtl_default_cs_profile: Option<String>,
    pub(crate) wtl_default_eps_profile: Option<String>,
    /// Seconds per WTL attempt.
    #[serde(default, deserialize_with = "number")]
    pub(crate) wtl_http_requests_timeout: Field<f64>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) wtl_connect_timeout: Field<f64>,
    /// Seconds for all WTL work of one event.
    #[serde(default, deserialize_with = "number")]
    pub(crate) wtl_total_timeout: Field<f64>,
    #[serde(default, deserialize_with = "whole")]
    pub(crate) wtl_max_retries: Field<i128>,
    #[serde(default, deserialize_with = "whole")]
    pub(crate) wtl_retry_base_ms: Field<i128>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) wtl_retry_after_max: Field<f64>,
    /// WTL calls per second across the process.
    #[serde(default, deserialize_with = "number")]
    pub(crate) wtl_rate_limit: Field<f64>,
    pub(crate) wtl_imsi_regexp: Option<String>,
    /// Event type → WTL action.
    #[serde(default, deserialize_with = "event_actions")]
    pub(crate) wtl_event_actions: Field<BTreeMap<String, Action>>,
    pub(crate) wtl_ca_file: Option<String>,
    pub(crate) wtl_client_cert_file: Option<String>,
    pub(crate) wtl_client_key_file: Option<String>,
    pub(crate) wtl_proxy: Option<String>,
    pub(crate) bind_address: Option<String>,
    /// How many proxies in front of the connector append to `X-Forwarded-For`.
    #[serde(default, deserialize_with = "whole")]
    pub(crate) trusted_proxies: Field<i128>,
    /// Addresses and CIDR ranges allowed to call the event routes and `/metrics`.
    #[serde(default, deserialize_with = "list")]
    pub(crate) allowed_source_ranges: Field<Vec<String>>,
    /// `redis://` or `rediss://`: the redelivery memory shared by every instance.
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_url_file: Option<String>,
    pub(crate) redis_key_prefix: Option<String>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) redis_timeout: Field<f64>,
    pub(crate) redis_ca_file: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub(crate) redis_fail_open: Field<bool>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) stale_event_ttl: Field<f64>,
    pub(crate) google_cloud_project: Option<String>,
    /// Set by Cloud Run: the project id is then asked from the metadata server.
    pub(crate) k_service: Option<String>,
    /// The metadata server's address (`host[:port]`), as Google's client libraries read it.
    pub(crate) gce_metadata_host: Option<String>,
    /// OpenTelemetry: where spans go (`/v1/traces` is added for http/protobuf).
    pub(crate) otel_exporter_otlp_endpoint: Option<String>,
    /// OpenTelemetry: where spans go, as given.
    pub(crate) otel_exporter_otlp_traces_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`.
    pub(crate) otel_exporter_otlp_protocol: Option<String>,
    /// `key=value,...` sent with every export (may carry an API key).
    pub(crate) otel_exporter_otlp_headers: Option<String>,
    pub(crate) otel_service_name: Option<String>,
    /// `key=value,...` on every span's resource.
    pub(crate) otel_resource_attributes: Option<String>,
    pub(crate) otel_traces_sampler: Option<String>,
    pub(crate) otel_traces_sampler_arg: Option<String>,
    /// Plan and answer events without calling WTL (validating an NSPS handler before go-live).
    #[serde(default, deserialize_with = "flag")]
    pub(crate) wtl_dry_run: Field<bool>,
    pub(crate) events_path: Option<String>,
    #[serde(default, deserialize_with = "whole")]
    pub(crate) max_body_bytes: Field<i128>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) shutdown_timeout: Field<f64>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) header_read_timeout: Field<f64>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) request_timeout: Field<f64>,
    #[serde(default, deserialize_with = "whole")]
    pub(crate) max_in_flight: Field<i128>,
    #[serde(default, deserialize_with = "number")]
    pub(crate) event_dedup_ttl: Field<f64>,
    #[serde(default, deserialize_with = "whole")]
    pub(crate) event_dedup_max: Field<i128>,
    #[serde(default, deserialize_with = "flag")]
    pub(crate) metrics_public: Field<bool>,
    #[serde(default, deserialize_with = "flag")]
    pub(crate) stale_event_check: Field<bool>,
    pub(crate) log_level: Option<String>,
    pub(crate) log_format: Option<String>,
    pub(crate) rust_log: Option<String>,
    #[serde(default, deserialize_with = "whole")]
    pub(crate) port: Field<i128>,
    pub(crate) app_name: Option<String>,
    /// Accepted so that a deploy configuration written for the reference keeps working.
    #[allow(dead_code)]
    pub(crate) debug: Option<String>,
}

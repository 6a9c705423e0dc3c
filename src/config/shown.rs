//! The effective configuration as the start-up line (and `check`) shows it: every variable the
//! connector reads, with its value in force; secrets as `***`, never their value.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;

use super::Settings;
use crate::memory::shared::RedisSettings;
use crate::telemetry::{LogFormat, Protocol};

impl Settings {
    /// The effective configuration as name → printable value, secrets replaced by `***`.
    /// Logged once at start-up.
    pub fn redacted(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        self.show_server(&mut m);
        self.show_memory(&mut m);
        self.show_wtl_connection(&mut m);
        self.show_wtl_credentials(&mut m);
        self.show_rules(&mut m);
        m
    }

    fn show_server(&self, m: &mut Shown) {
        m.insert("API_TOKEN", format!("*** ({} token(s))", self.server.api_tokens.len()));
        let files = &self.secret_files;
        for (var, path) in [
            ("API_TOKEN_FILE", &files.api_token),
            ("WTL_API_TOKEN_FILE", &files.wtl_api_token),
            ("WTL_API_PASSWORD_FILE", &files.wtl_api_password),
            ("WTL_OAUTH_CLIENT_SECRET_FILE", &files.wtl_oauth_client_secret),
            ("REDIS_URL_FILE", &files.redis_url),
        ] {
            m.insert(
                var,
                path.as_ref()
                    .map_or_else(|| "unset".into(), |p| p.display().to_string()),
            );
        }
        m.insert("TRUSTED_PROXIES", self.server.trusted_proxies.to_string());
        m.insert(
            "ALLOWED_SOURCE_RANGES",
            self.server.allowed_sources.as_ref().map_or_else(
                || "unset (any source)".into(),
                |ranges| ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            ),
        );
        m.insert("PORT", self.server.port.to_string());
        m.insert(
            "BIND_ADDRESS",
            self.server
                .bind_address
                .map_or_else(|| "unset (:: dual-stack, else 0.0.0.0)".into(), |a| a.to_string()),
        );
        m.insert("EVENTS_PATH", opt(&self.server.events_path));
        m.insert("MAX_BODY_BYTES", self.server.max_body_bytes.to_string());
        m.insert("SHUTDOWN_TIMEOUT", secs(self.server.shutdown_timeout));
        m.insert("HEADER_READ_TIMEOUT", secs(self.server.header_read_timeout));
        m.insert("REQUEST_TIMEOUT", secs(self.server.request_timeout));
        m.insert("MAX_IN_FLIGHT", self.server.max_in_flight.to_string());
        m.insert("METRICS_PUBLIC", self.server.metrics_public.to_string());
        m.insert("LOG_LEVEL", self.telemetry.log_level.clone());
        let format = match self.telemetry.log_format {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        };
        m.insert("LOG_FORMAT", format.into());
        m.insert("RUST_LOG", opt(&self.telemetry.rust_log));
        m.insert("APP_NAME", opt(&self.telemetry.app_name));
        self.show_telemetry(m);
        m.insert("WTL_DRY_RUN", self.wtl.dry_run.to_string());
    }

    fn show_telemetry(&self, m: &mut Shown) {
        m.insert("GOOGLE_CLOUD_PROJECT", opt(&self.telemetry.cloud.project));
        m.insert(
            "K_SERVICE",
            (if self.telemetry.cloud.on_cloud_run {
                "set"
            } else {
                "unset"
            })
            .into(),
        );
        m.insert("GCE_METADATA_HOST", self.telemetry.cloud.metadata_host.clone());
        let otel = self.telemetry.otel.as_ref();
        let endpoint = otel.map_or_else(|| "unset (no span export)".into(), |o| o.shown_endpoint());
        m.insert(
            "OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            endpoint,
        );
        m.insert(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            otel.map_or_else(
                || "unset".into(),
                |o| match o.protocol {
                    Protocol::HttpProtobuf => "http/protobuf".into(),
                    Protocol::Grpc => "grpc".into(),
                },
            ),
        );
        m.insert(
            "OTEL_EXPORTER_OTLP_HEADERS",
            otel.filter(|o| !o.headers.is_empty())
                .map_or_else(|| "unset".into(), |o| format!("*** ({} header(s))", o.headers.len())),
        );
        m.insert(
            "OTEL_SERVICE_NAME",
            otel.map_or_else(|| "unset".into(), |o| o.service_name.clone()),
        );
        m.insert(
            "OTEL_RESOURCE_ATTRIBUTES",
            otel.map_or_else(
                || "unset".into(),
                |o| {
                    o.resource_attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
        );
        m.insert(
            "OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG",
            otel.map_or_else(|| "unset".into(), |o| format!("{:?}", o.sampler)),
        );
    }

    fn show_memory(&self, m: &mut Shown) {
        m.insert("EVENT_DEDUP_TTL", secs(self.memory.dedup_ttl));
        m.insert("EVENT_DEDUP_MAX", self.memory.dedup_max.to_string());
        m.insert("STALE_EVENT_CHECK", self.memory.stale_event_check.to_string());
        m.insert("STALE_EVENT_TTL", secs(self.memory.stale_event_ttl));
        let redis = self.memory.redis.as_ref();
        let or_unset = |f: &dyn Fn(&RedisSettings) -> String| redis.map_or_else(|| "unset".into(), f);
        m.insert(
            "REDIS_URL",
            redis.map_or_else(|| "unset (in-process memory)".into(), |r| r.shown.clone()),
        );
        m.insert("REDIS_KEY_PREFIX", or_unset(&|r| r.key_prefix.clone()));
        m.insert("REDIS_TIMEOUT", or_unset(&|r| secs(r.timeout)));
        m.insert("REDIS_CA_FILE", pem(&redis.and_then(|r| r.ca_file.clone())));
        m.insert("REDIS_FAIL_OPEN", or_unset(&|r| r.fail_open.to_string()));
    }

    fn show_wtl_connection(&self, m: &mut Shown) {
        let wtl = &self.wtl;
        m.insert("WTL_API_URL", wtl.base_url.clone());
        m.insert("WTL_CA_FILE", pem(&wtl.tls.ca_file));
        m.insert("WTL_CLIENT_CERT_FILE", pem(&wtl.tls.client_cert_file));
        m.insert("WTL_CLIENT_KEY_FILE", pem(&wtl.tls.client_key_file));
        m.insert("WTL_PROXY / HTTPS_PROXY / HTTP_PROXY / ALL_PROXY", wtl.proxy.shown());
        m.insert("WTL_HTTP_REQUESTS_TIMEOUT", secs(wtl.attempt_timeout));
        m.insert("WTL_CONNECT_TIMEOUT", secs(wtl.connect_timeout));
        m.insert("WTL_TOTAL_TIMEOUT", secs(wtl.total_timeout));
        m.insert("WTL_MAX_RETRIES", wtl.max_retries.to_string());
        m.insert("WTL_RETRY_BASE_MS", wtl.retry_base.as_millis().to_string());
        m.insert("WTL_RETRY_AFTER_MAX", secs(wtl.retry_after_max));
        m.insert(
            "WTL_RATE_LIMIT",
            wtl.rate_limit.map_or_else(|| "unlimited".into(), |r| r.to_string()),
        );
    }

    fn show_wtl_credentials(&self, m: &mut Shown) {
        let wtl = &self.wtl;
        m.insert("WTL_AUTH", wtl.auth.as_str().to_string());
        m.insert("WTL_API_TOKEN", secret(&wtl.api_token));
        m.insert("WTL_API_USERNAME", opt(&wtl.username));
        m.insert("WTL_API_PASSWORD", secret(&wtl.password));
        let oauth = wtl.oauth.as_ref();
        m.insert("WTL_OAUTH_TOKEN_URL", opt(&oauth.map(|o| o.token_url.clone())));
        m.insert("WTL_OAUTH_CLIENT_ID", opt(&oauth.and_then(|o| o.client_id.clone())));
        m.insert(
            "WTL_OAUTH_CLIENT_SECRET",
            secret(&oauth.and_then(|o| o.client_secret.clone())),
        );
        m.insert("WTL_OAUTH_SCOPE", opt(&oauth.and_then(|o| o.scope.clone())));
    }

    fn show_rules(&self, m: &mut Shown) {
        let rules = &self.rules;
        m.insert("WTL_DEFAULT_CS_PROFILE", rules.default_cs_profile.as_str().to_string());
        m.insert(
            "WTL_DEFAULT_EPS_PROFILE",
            rules.default_eps_profile.as_str().to_string(),
        );
        m.insert(
            "WTL_IMSI_REGEXP",
            rules
                .imsi_filter
                .as_ref()
                .map_or_else(|| "unset".into(), |r| r.as_str().to_string()),
        );
        m.insert("WTL_EVENT_ACTIONS", rules.event_actions_text());
    }
}

/// Setting name → value as the start-up line shows it.
type Shown = BTreeMap<&'static str, String>;

fn secret(s: &Option<SecretString>) -> String {
    if s.is_some() { "***" } else { "unset" }.to_string()
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "unset".to_string())
}

fn secs(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// A TLS file setting: its path, or a mention of inline PEM (never the PEM).
fn pem(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "unset".to_string(), crate::wtl::tls::shown)
}

//! The logging and tracing settings, from the typed environment to [`crate::telemetry::Settings`].

use super::env::RawEnv;
use super::problems::Problems;
use crate::telemetry::{CloudSettings, LogFormat, METADATA_HOST, Settings};

const LOG_LEVELS: &[&str] = &["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"];

pub(super) fn telemetry(p: &mut Problems, raw: &mut RawEnv) -> Settings {
    let level = match raw.log_level.take().as_deref().map(|s| s.trim().to_ascii_uppercase()) {
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
    let format = match raw.log_format.take().as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => LogFormat::Json,
        Some(f) if f == "json" => LogFormat::Json,
        Some(f) if f == "text" => LogFormat::Text,
        Some(f) => {
            p.add("LOG_FORMAT", format!("expected json or text, got {f:?}"));
            LogFormat::Json
        }
    };
    let rust_log = raw.rust_log.take();
    if rust_log
        .as_deref()
        .is_some_and(|f| f.parse::<tracing_subscriber::filter::Targets>().is_err())
    {
        p.add(
            "RUST_LOG",
            "not a valid filter: a comma-separated list of `level` and `target=level`",
        );
    }
    Settings {
        log_level: level,
        log_format: format,
        rust_log,
        app_name: raw.app_name.take(),
        cloud: CloudSettings {
            project: raw.google_cloud_project.take().map(|v| v.trim().to_string()),
            on_cloud_run: raw.k_service.is_some(),
            metadata_host: raw
                .gce_metadata_host
                .take()
                .map_or_else(|| METADATA_HOST.to_string(), |h| h.trim().to_string()),
        },
        otel: super::otel::settings(p, raw),
    }
}

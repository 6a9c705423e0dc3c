//! The logging and tracing settings. The `config` module fills them from the environment.

use super::{CloudSettings, LogFormat, OtelSettings};

/// How lines are written and where spans go.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `LOG_LEVEL`: DEBUG, INFO, WARNING, ERROR or CRITICAL (upper case).
    pub(crate) log_level: String,
    /// `LOG_FORMAT`: JSON lines (the default) or text.
    pub(crate) log_format: LogFormat,
    /// `RUST_LOG`: a filter that replaces `LOG_LEVEL`'s.
    pub(crate) rust_log: Option<String>,
    /// `APP_NAME`: accepted for the reference's sake; shown in the start-up line only.
    pub(crate) app_name: Option<String>,
    /// Where the Cloud Logging project comes from (`GOOGLE_CLOUD_PROJECT`, or the metadata
    /// server on Cloud Run): log lines of a request carry its trace name.
    pub(crate) cloud: CloudSettings,
    /// `OTEL_*`: spans exported over OTLP; `None` = no export at all.
    pub(crate) otel: Option<OtelSettings>,
}

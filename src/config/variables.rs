//! The variables the connector reads, as the deploy scripts see them: which hold secrets, which
//! name PEM files, which the platform sets (`nsps-wtl-connector variables`).

use super::known_vars;

/// The settings that hold a secret: kept in the platform's secret store by the deploy scripts,
/// never shown (the start-up line prints `***`).
pub(crate) const SECRET_VARS: &[&str] = &[
    "API_TOKEN",
    "WTL_API_TOKEN",
    "WTL_API_PASSWORD",
    "WTL_OAUTH_CLIENT_SECRET",
    "REDIS_URL",
    "OTEL_EXPORTER_OTLP_HEADERS",
];

/// The variables the platform sets itself: never passed by the deploy scripts.
pub(crate) const PLATFORM_VARS: &[&str] = &["PORT", "K_SERVICE"];

/// The settings that name a PEM file (or hold the PEM itself): the deploy scripts mount them
/// from the secret store as files where the platform can.
pub(crate) const PEM_FILE_VARS: &[&str] = &[
    "WTL_CA_FILE",
    "WTL_CLIENT_CERT_FILE",
    "WTL_CLIENT_KEY_FILE",
    "REDIS_CA_FILE",
];

/// `nsps-wtl-connector variables`: every variable the connector reads, one a line, with how it
/// is handled (`secret`, `secret-file` (the `_FILE` form of a secret), `pem-file`, `platform`
/// (set by the platform, never passed) or `setting`). The deploy scripts pass exactly these to the
/// service (`_deploy-common/variables.txt` is this output; a test keeps the two equal).
pub(crate) fn variables_listing() -> String {
    known_vars()
        .map(|name| {
            let kind = if PLATFORM_VARS.contains(&name.as_str()) {
                "platform"
            } else if SECRET_VARS.contains(&name.as_str()) {
                "secret"
            } else if name
                .strip_suffix("_FILE")
                .is_some_and(|secret| SECRET_VARS.contains(&secret))
            {
                "secret-file"
            } else if PEM_FILE_VARS.contains(&name.as_str()) {
                "pem-file"
            } else {
                "setting"
            };
            format!("{name} {kind}\n")
        })
        .collect()
}

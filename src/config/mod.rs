//! Settings, read once at start-up from the environment (and `.env`).
//!
//! Every variable is first collected as text with `envy`, then parsed here so that a bad value
//! produces one sentence naming the variable and what is wrong with it. Secret values are held in
//! [`secrecy::SecretString`] and never printed: not in errors, not in `Debug`, not in the start-up log.

use std::collections::BTreeMap;
use std::fmt;

use crate::plan::PlanRules;

mod build;
mod env;
mod memory;
mod otel;
mod problems;
mod proxy;
mod secret_files;
mod server;
mod shown;
mod telemetry;
mod variables;
mod wtl;

pub(crate) use variables::variables_listing;

pub(crate) use env::split_list;
pub(crate) use secret_files::{SecretFiles, read_secret_file};
pub(crate) use server::token_list;

/// Why the configuration was refused: every problem found, each naming its variable.
#[derive(Debug)]
pub struct ConfigError {
    /// `(variable, what is wrong)`, in the order the settings were read; never empty.
    pub problems: Vec<(&'static str, String)>,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            problems: vec![(var, problem.into())],
        }
    }

    /// The variable of the first problem.
    pub fn var(&self) -> &'static str {
        self.problems.first().map_or("environment", |(v, _)| v)
    }
}

impl fmt::Display for ConfigError {
    /// One line: `invalid configuration: VAR: problem; VAR2: problem`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        for (i, (var, problem)) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{var}: {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Everything the connector needs, parsed and checked: each module's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The HTTP server's (who may call, where, limits).
    pub(crate) server: crate::http::Settings,
    /// The WTL client's (URL, credentials, limits, TLS files, proxies, dry run).
    pub(crate) wtl: crate::wtl::Settings,
    /// The redelivery memory's (duplicate detection, stale check, Redis).
    pub(crate) memory: crate::memory::Settings,
    /// Logs and traces.
    pub(crate) telemetry: crate::telemetry::Settings,
    /// What each event type does to the HLR/HSS.
    pub rules: PlanRules,
    /// The secrets read from `_FILE` settings, watched for rotation.
    pub(crate) secret_files: SecretFiles,
    /// Settings that are allowed but probably not what the operator meant.
    pub(crate) warnings: Vec<String>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from name/value pairs (tests pass their own instead of the environment).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        // Only the connector's own variables are handed to envy, so an unrelated variable in the
        // environment holding non-UTF-8 or odd content can never stop start-up. An empty value
        // means "unset", as it does for the reference.
        // A later value for the same name wins, as in a shell.
        let pairs: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| is_known_var(k) || PROXY_VARS.contains(&k.as_str()))
            .collect();
        let proxy_vars: BTreeMap<String, String> = pairs
            .iter()
            .filter(|(k, _)| PROXY_VARS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pairs = pairs
            .into_iter()
            .filter(|(k, v)| !v.trim().is_empty() && is_known_var(k));
        let raw: env::RawEnv = envy::from_iter(pairs).map_err(|e| ConfigError::new("environment", e.to_string()))?;
        build::settings(raw, &proxy_vars)
    }
}

/// Whether `name` is a variable the connector reads: the upper-case name of a field of the
/// typed environment (`env::RawEnv`, which envy fills by the lower-case names).
pub(crate) fn is_known_var(name: &str) -> bool {
    !name.bytes().any(|b| b.is_ascii_lowercase()) && env_fields().contains(&name.to_ascii_lowercase().as_str())
}

/// Every variable the connector reads, in upper case (see README, configuration).
pub(crate) fn known_vars() -> impl Iterator<Item = String> {
    env_fields().iter().map(|field| field.to_ascii_uppercase())
}

fn env_fields() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<env::RawEnv>()
}

/// The standard proxy variables, read in either case (see [`ProxySettings`]).
pub(crate) const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;
    use crate::plan::parse_event_actions;
    use secrecy::ExposeSecret;
    use std::time::Duration;
    use variables::{PEM_FILE_VARS, SECRET_VARS};

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("API_TOKEN", "t1"), ("WTL_API_URL", "http://127.0.0.1:9/wtl/")]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Settings, ConfigError> {
        let mut vars = base();
        vars.extend_from_slice(extra);
        Settings::from_vars(vars)
    }

    #[test]
    fn problems_are_listed_in_the_order_the_settings_are_read() {
        let err = Settings::from_vars([
            ("WTL_API_URL", "http://127.0.0.1:9"),
            ("WTL_IMSI_REGEXP", "("),
            ("PORT", "x"),
            ("SHUTDOWN_TIMEOUT", "x"),
            ("REQUEST_TIMEOUT", "x"),
            ("TRUSTED_PROXIES", "x"),
            ("WTL_DRY_RUN", "x"),
            ("MAX_BODY_BYTES", "x"),
        ])
        .expect_err("invalid");
        let vars: Vec<&str> = err.problems.iter().map(|(var, _)| *var).collect();
        assert_eq!(
            vars,
            [
                "API_TOKEN",
                "WTL_IMSI_REGEXP",
                "PORT",
                "MAX_BODY_BYTES",
                "SHUTDOWN_TIMEOUT",
                "REQUEST_TIMEOUT",
                "TRUSTED_PROXIES",
                "WTL_DRY_RUN"
            ]
        );
    }

    #[test]
    fn defaults_match_the_reference() {
        let s = with(&[]).expect("valid");
        assert_eq!(s.server.port, 8000);
        assert_eq!(s.wtl.base_url, "http://127.0.0.1:9/wtl");
        assert_eq!(s.wtl.attempt_timeout, Duration::from_secs(30));
        assert_eq!(s.wtl.auth, crate::wtl::AuthMode::None);
        assert_eq!(s.rules.default_cs_profile.as_str(), "default");
        assert_eq!(s.server.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(8));
        assert_eq!(s.telemetry.log_level, "INFO");
        assert_eq!(s.rules.event_actions.len(), 4);
        assert_eq!(s.rules.event_actions.get("SIM/Created"), Some(&Action::Insert));
    }

    #[test]
    fn rust_log_takes_levels_per_target() {
        let s = with(&[("RUST_LOG", "warn,nsps_wtl_connector=debug,hyper=error")]).expect("valid");
        assert_eq!(
            s.telemetry.rust_log.as_deref(),
            Some("warn,nsps_wtl_connector=debug,hyper=error")
        );
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = Settings::from_vars(vec![("WTL_API_URL", "http://x")]).expect_err("must fail");
        assert_eq!(err.var(), "API_TOKEN");
        let err = Settings::from_vars(vec![("API_TOKEN", "x")]).expect_err("must fail");
        assert_eq!(err.var(), "WTL_API_URL");
    }

    #[test]
    fn invalid_values_are_named_without_echoing_secrets() {
        for (var, value) in [
            ("WTL_HTTP_REQUESTS_TIMEOUT", "soon"),
            ("PORT", "99999"),
            ("WTL_IMSI_REGEXP", "(unclosed"),
            ("WTL_EVENT_ACTIONS", "SIM/Updated=upsert"),
            ("WTL_AUTH", "kerberos"),
            ("LOG_LEVEL", "LOUD"),
            ("WTL_DEFAULT_CS_PROFILE", "9bad"),
            ("MAX_BODY_BYTES", "-1"),
            ("EVENTS_PATH", "events"),
            ("RUST_LOG", "hyper=loud"),
            ("WTL_RATE_LIMIT", "1e-300"),
            ("WTL_RATE_LIMIT", "0"),
            ("WTL_RATE_LIMIT", "-3"),
            ("WTL_RATE_LIMIT", "NaN"),
            ("WTL_RATE_LIMIT", "inf"),
            ("WTL_RATE_LIMIT", "1e300"),
            ("WTL_HTTP_REQUESTS_TIMEOUT", "1e300"),
            ("WTL_HTTP_REQUESTS_TIMEOUT", "NaN"),
            ("SHUTDOWN_TIMEOUT", "-1"),
            ("EVENT_DEDUP_TTL", "inf"),
        ] {
            let err = with(&[(var, value)]).expect_err(var);
            assert_eq!(err.var(), var, "{err}");
        }
        let err = with(&[("WTL_AUTH", "bearer")]).expect_err("bearer needs a token");
        assert_eq!(err.var(), "WTL_API_TOKEN");
        let err = with(&[("WTL_AUTH", "basic"), ("WTL_API_USERNAME", "u")]).expect_err("basic needs a password");
        assert_eq!(err.var(), "WTL_API_PASSWORD");
        let err = with(&[("WTL_AUTH", "oauth2")]).expect_err("oauth2 needs a token URL");
        assert_eq!(err.var(), "WTL_OAUTH_TOKEN_URL");
    }

    #[test]
    fn every_problem_is_named_at_once_on_one_line() {
        let err = Settings::from_vars([
            ("WTL_HTTP_REQUESTS_TIMEOUT", "soon"),
            ("PORT", "99999"),
            ("WTL_EVENT_ACTIONS", "SIM/Updated=upsert"),
            ("LOG_FORMAT", "xml"),
            ("WTL_RATE_LIMIT", "0"),
        ])
        .expect_err("many problems");
        let vars: Vec<&str> = err.problems.iter().map(|(v, _)| *v).collect();
        for var in [
            "API_TOKEN",
            "WTL_API_URL",
            "WTL_HTTP_REQUESTS_TIMEOUT",
            "PORT",
            "WTL_EVENT_ACTIONS",
            "LOG_FORMAT",
            "WTL_RATE_LIMIT",
        ] {
            assert!(vars.contains(&var), "{var} missing from {vars:?}");
        }
        let line = err.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("invalid configuration: "), "{line}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = with(&[("WTL_IMSI_REGEXP", ""), ("WTL_API_TOKEN", "  ")]).expect("valid");
        assert!(s.rules.imsi_filter.is_none());
        assert_eq!(s.wtl.auth, crate::wtl::AuthMode::None);
    }

    #[test]
    fn bearer_is_the_default_when_a_wtl_token_is_set() {
        let s = with(&[("WTL_API_TOKEN", "wtl-secret")]).expect("valid");
        assert_eq!(s.wtl.auth, crate::wtl::AuthMode::Bearer);
    }

    #[test]
    fn token_list_is_split_and_compared() {
        let s = with(&[("API_TOKEN", " old-token , new-token ,")]).expect("valid");
        assert!(s.server.api_tokens.matches(b"old-token"));
        assert!(s.server.api_tokens.matches(b"new-token"));
        assert!(!s.server.api_tokens.matches(b"new-toke"));
        assert!(!s.server.api_tokens.matches(b""));
    }

    #[test]
    fn secrets_never_reach_debug_or_the_redacted_view() {
        let s = with(&[
            ("API_TOKEN", "nsps-secret-1"),
            ("WTL_AUTH", "oauth2"),
            ("WTL_OAUTH_TOKEN_URL", "https://idp.example/token"),
            ("WTL_OAUTH_CLIENT_ID", "cid"),
            ("WTL_OAUTH_CLIENT_SECRET", "client-secret-2"),
            ("WTL_API_TOKEN", "wtl-secret-3"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://otel-user:otel-secret-4@otlp.example",
            ),
        ])
        .expect("valid");
        let debug = format!("{s:?}");
        let redacted = format!("{:?}", s.redacted());
        for secret in ["nsps-secret-1", "client-secret-2", "wtl-secret-3", "otel-secret-4"] {
            assert!(!redacted.contains(secret), "{secret} leaked into the redacted view");
            assert!(!debug.contains(secret), "{secret} leaked into Debug");
        }
        assert!(redacted.contains("cid"));
        assert!(redacted.contains("https://***@otlp.example/v1/traces"), "{redacted}");
    }

    #[test]
    fn credentials_in_the_wtl_url_become_its_basic_credentials() {
        let s = Settings::from_vars([
            ("API_TOKEN", "t"),
            ("WTL_API_URL", "https://hlr%20user:p%40ss-secret@hlr.example/wtl/"),
        ])
        .expect("valid");
        assert_eq!(s.wtl.auth, crate::wtl::AuthMode::Basic);
        assert_eq!(s.wtl.base_url, "https://hlr.example/wtl");
        assert_eq!(s.wtl.username.as_deref(), Some("hlr user"));
        assert_eq!(s.wtl.password.as_ref().map(|p| p.expose_secret()), Some("p@ss-secret"));
        for shown in [format!("{s:?}"), format!("{:?}", s.redacted())] {
            assert!(!shown.contains("ss-secret"), "{shown}");
        }
    }

    #[test]
    fn credentials_in_the_wtl_url_beside_other_credentials_are_refused() {
        for extra in [
            ("WTL_AUTH", "bearer"),
            ("WTL_API_TOKEN", "x"),
            ("WTL_API_USERNAME", "u"),
        ] {
            let err = Settings::from_vars([
                ("API_TOKEN", "t"),
                ("WTL_API_URL", "https://u:pw-secret@hlr.example"),
                extra,
            ])
            .expect_err("ambiguous credentials");
            assert_eq!(err.var(), "WTL_API_URL");
            assert!(!err.to_string().contains("pw-secret"), "{err}");
        }
    }

    #[test]
    fn credentials_in_the_token_url_are_the_client_credentials() {
        let s = with(&[
            ("WTL_AUTH", "oauth2"),
            ("WTL_OAUTH_TOKEN_URL", "https://cid:pw-secret@idp.example/token"),
        ])
        .expect("valid");
        let oauth = s.wtl.oauth.as_ref().expect("oauth");
        assert_eq!(oauth.token_url, "https://idp.example/token");
        assert_eq!(oauth.client_id.as_deref(), Some("cid"));
        assert_eq!(
            oauth.client_secret.as_ref().map(|p| p.expose_secret()),
            Some("pw-secret")
        );
        let err = with(&[
            ("WTL_AUTH", "oauth2"),
            ("WTL_OAUTH_TOKEN_URL", "https://cid:pw-secret@idp.example/token"),
            ("WTL_OAUTH_CLIENT_ID", "other"),
        ])
        .expect_err("two client ids");
        assert_eq!(err.var(), "WTL_OAUTH_TOKEN_URL");
    }

    #[test]
    fn a_malformed_url_is_refused_without_echoing_it() {
        let err = Settings::from_vars([("API_TOKEN", "t"), ("WTL_API_URL", "https://u:pw-secret@[bad")])
            .expect_err("not a URL");
        assert_eq!(err.var(), "WTL_API_URL");
        assert!(!err.to_string().contains("pw-secret"), "{err}");
    }

    #[test]
    fn contradictions_are_warned_about() {
        let s = with(&[("WTL_HTTP_REQUESTS_TIMEOUT", "60"), ("WTL_TOTAL_TIMEOUT", "10")]).expect("valid");
        assert!(s.warnings.iter().any(|w| w.contains("WTL_HTTP_REQUESTS_TIMEOUT")));
    }

    #[test]
    fn event_actions_parse_and_reject_duplicates() {
        let m = parse_event_actions("Account/Blocked=update, SIM/Deleted=delete").expect("valid");
        assert_eq!(m.get("Account/Blocked"), Some(&Action::Update));
        assert!(parse_event_actions("A=update,A=insert").is_err());
        assert!(parse_event_actions("justtext").is_err());
    }

    #[test]
    fn the_variables_read_are_the_fields_of_the_typed_environment() {
        let names: Vec<String> = known_vars().collect();
        for name in ["API_TOKEN", "WTL_API_URL", "REDIS_URL", "STALE_EVENT_TTL", "DEBUG"] {
            assert!(names.iter().any(|n| n == name), "{name}");
            assert!(is_known_var(name));
        }
        assert!(!is_known_var("api_token"), "only the upper-case names");
        assert!(!is_known_var("HOME"));
    }

    #[test]
    fn the_effective_configuration_shows_every_variable() {
        let s = with(&[]).expect("valid");
        // A key may name several variables shown as one ("WTL_PROXY / HTTPS_PROXY / ...").
        let shown: Vec<String> = s
            .redacted()
            .into_keys()
            .flat_map(|key| key.split(" / ").map(str::to_string).collect::<Vec<_>>())
            .collect();
        // DEBUG is accepted for compatibility and has no effect (README), so nothing to show.
        for name in known_vars().filter(|name| name != "DEBUG") {
            assert!(
                shown.contains(&name),
                "{name} is missing from the effective configuration"
            );
        }
    }

    #[test]
    fn a_secret_may_come_from_a_file_but_not_from_both_forms() {
        let dir = std::env::temp_dir().join(format!("nsps-wtl-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let token = dir.join("token");
        std::fs::write(&token, "from-file-1 , from-file-2\n").expect("write");
        let path = token.to_str().expect("path");
        let with = |extra: &[(&str, &str)]| {
            let mut vars: Vec<(String, String)> = base().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Settings::from_vars(vars)
        };
        let s = Settings::from_vars([("API_TOKEN_FILE", path), ("WTL_API_URL", "http://127.0.0.1:9")]).expect("valid");
        assert!(s.server.api_tokens.matches(b"from-file-2"));
        assert_eq!(s.secret_files.api_token.as_deref(), Some(token.as_path()));
        let err = with(&[("API_TOKEN_FILE", path)]).expect_err("both forms");
        assert_eq!(err.var(), "API_TOKEN_FILE");
        assert!(err.to_string().contains("not both"), "{err}");
        std::fs::write(&token, " \n").expect("write");
        let err = Settings::from_vars([("API_TOKEN_FILE", path), ("WTL_API_URL", "http://x")]).expect_err("empty");
        assert_eq!(err.var(), "API_TOKEN_FILE");
        let missing = dir.join("absent");
        let err = with(&[("WTL_API_PASSWORD_FILE", missing.to_str().expect("path"))]).expect_err("unreadable");
        assert_eq!(err.var(), "WTL_API_PASSWORD_FILE");
        std::fs::write(&token, "wtl-password-from-file").expect("write");
        let s = with(&[
            ("WTL_AUTH", "basic"),
            ("WTL_API_USERNAME", "u"),
            ("WTL_API_PASSWORD_FILE", path),
        ])
        .expect("valid");
        assert_eq!(
            s.wtl.password.as_ref().map(|p| p.expose_secret()),
            Some("wtl-password-from-file")
        );
        assert!(!format!("{s:?} {:?}", s.redacted()).contains("wtl-password-from-file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn source_ranges_and_trusted_proxies_are_checked() {
        let s = with(&[
            (
                "ALLOWED_SOURCE_RANGES",
                "203.0.113.7, 198.51.100.0/24,2001:db8::/32, ::1, [2001:db8::9]",
            ),
            ("TRUSTED_PROXIES", "2"),
        ])
        .expect("valid");
        let ranges: Vec<String> = s
            .server
            .allowed_sources
            .expect("set")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            ranges,
            [
                "203.0.113.7/32",
                "198.51.100.0/24",
                "2001:db8::/32",
                "::1/128",
                "2001:db8::9/128"
            ]
        );
        assert_eq!(s.server.trusted_proxies, 2);
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.1-10.0.0.9", ","] {
            let err = with(&[("ALLOWED_SOURCE_RANGES", bad)]).expect_err(bad);
            assert_eq!(err.var(), "ALLOWED_SOURCE_RANGES", "{bad}");
        }
        assert_eq!(
            with(&[("TRUSTED_PROXIES", "21")]).expect_err("range").var(),
            "TRUSTED_PROXIES"
        );
        assert!(with(&[]).expect("valid").server.allowed_sources.is_none());
    }

    #[test]
    fn secret_and_pem_variables_are_variables_the_connector_reads() {
        for name in SECRET_VARS.iter().chain(PEM_FILE_VARS) {
            assert!(is_known_var(name), "{name}");
        }
    }

    #[test]
    fn the_deploy_scripts_list_of_variables_is_the_connectors_own() {
        // The deploy scripts read this file (they must work without a Rust toolchain); it is the
        // output of `nsps-wtl-connector variables`, regenerated with
        // `cargo run -q -- variables > _deploy-common/variables.txt`.
        let file = include_str!("../../_deploy-common/variables.txt");
        assert_eq!(
            file,
            variables_listing(),
            "_deploy-common/variables.txt is out of date: cargo run -q -- variables > _deploy-common/variables.txt"
        );
        assert!(file.contains("API_TOKEN secret\n") && file.contains("WTL_DRY_RUN setting\n"));
    }

    #[test]
    fn the_readme_describes_every_variable() {
        let readme = include_str!("../../README.md");
        for name in known_vars() {
            assert!(readme.contains(&format!("`{name}`")), "{name} is not in the README");
        }
    }

    #[test]
    fn env_example_lists_every_variable_and_is_valid() {
        let text = include_str!("../../.env.example");
        let vars: Vec<(String, String)> = dotenvy::from_read_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .expect(".env.example parses");
        for name in known_vars() {
            assert!(
                vars.iter().any(|(k, _)| *k == name),
                "{name} is missing from .env.example"
            );
        }
        Settings::from_vars(vars).expect(".env.example holds a valid configuration");
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        let mut vars: Vec<(String, String)> = base().into_iter().map(|(a, b)| (a.into(), b.into())).collect();
        vars.push(("HOME".into(), "/root".into()));
        vars.push(("SOMETHING_ELSE".into(), "{{weird".into()));
        assert!(Settings::from_vars(vars).is_ok());
    }
}

//! Go-live tools: `plan` (what an event would do, offline) and `check` (can the connector reach
//! everything it needs, without provisioning anything).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::nsps;
use crate::plan::{self, Plan, PlanRules};
use crate::wtl;

/// What `plan` prints for one event body, and its exit code: 0 for `calls` and `ignored`, 2 for
/// `invalid` (a body that is not JSON at all included).
pub(crate) fn plan_event(body: &[u8], rules: &PlanRules) -> (Value, u8) {
    let event = match nsps::parse_event(body) {
        Ok(e) => e,
        Err(problem) => return (invalid(&problem), 2),
    };
    match plan::plan(&event, rules) {
        Err(problem) => (invalid(&problem), 2),
        Ok(Plan::Skip(reason)) => (
            json!({"outcome": "ignored", "event_id": event.event_id, "reason": reason.to_string()}),
            0,
        ),
        Ok(Plan::Calls(calls)) => {
            let calls: Vec<Value> = calls
                .iter()
                .map(|call| {
                    let body: Value = serde_json::from_slice(&wtl::prov_body(call)).unwrap_or(Value::Null);
                    json!({"action": call.action.as_str(), "body": body})
                })
                .collect();
            (
                json!({"outcome": "calls", "event_id": event.event_id, "calls": calls}),
                0,
            )
        }
    }
}

fn invalid(problem: &nsps::FieldProblem) -> Value {
    json!({"outcome": "invalid", "details": [problem]})
}

/// The settings `plan` runs with: the environment's (and `.env`'s), with stand-ins for the two
/// settings a plan does not need (`API_TOKEN`, `WTL_API_URL`), so it runs anywhere.
pub(crate) fn settings_for_plan(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, crate::config::ConfigError> {
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    let missing = |vars: &[(String, String)], name: &str| !vars.iter().any(|(k, v)| k == name && !v.trim().is_empty());
    if missing(&vars, "API_TOKEN") {
        vars.push(("API_TOKEN".into(), "not-needed-by-plan".into()));
    }
    if missing(&vars, "WTL_API_URL") {
        vars.push(("WTL_API_URL".into(), "http://wtl.not-needed-by-plan.invalid".into()));
    }
    Settings::from_vars(vars)
}

/// One line of `check`.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            ok: true,
            detail: detail.into(),
        }
    }

    fn fail(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Every check, in order: the configuration, then (when it is valid) WTL's host, a connection
/// and its TLS, the token endpoint, and Redis. No `/prov` call is made: every provisioning call
/// changes a subscriber.
pub async fn check(settings: Result<Settings, crate::config::ConfigError>) -> Vec<Check> {
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            return e
                .problems
                .iter()
                .map(|(var, problem)| Check::fail("configuration", format!("{var}: {problem}")))
                .collect();
        }
    };
    let mut checks = vec![Check::ok(
        "configuration",
        match settings.warnings.len() {
            0 => "valid".to_string(),
            n => format!("valid, {n} warning(s): {}", settings.warnings.join("; ")),
        },
    )];
    if settings.wtl.dry_run {
        checks.push(Check::ok(
            "dry run",
            "WTL_DRY_RUN=true: events are planned and answered, no WTL call is made",
        ));
    }
    checks.push(dns(&settings).await);
    checks.extend(connection(&settings).await);
    if let Some(token) = token(&settings).await {
        checks.push(token);
    }
    if let Some(redis) = redis(&settings).await {
        checks.push(redis);
    }
    checks
}

/// The WTL host resolves (or, through a proxy, the proxy's host does: the proxy resolves WTL's).
async fn dns(settings: &Settings) -> Check {
    let Ok(url) = reqwest::Url::parse(&settings.wtl.base_url) else {
        return Check::fail("dns", "WTL_API_URL has no host");
    };
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let proxy = settings.wtl.proxy.for_url(&url);
    let (name, target) = match &proxy {
        Some(p) => ("the proxy", p.clone()),
        None => ("WTL", format!("{host}:{port}")),
    };
    match tokio::time::timeout(settings.wtl.connect_timeout, tokio::net::lookup_host(target.clone())).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            let via = proxy
                .as_ref()
                .map_or(String::new(), |_| format!(" (WTL {host} is resolved by the proxy)"));
            Check::ok("dns", format!("{name} {} → {}{via}", target, addrs.join(", ")))
        }
        Ok(Err(e)) => Check::fail("dns", format!("{name} {} does not resolve: {e}", target)),
        Err(_) => Check::fail(
            "dns",
            format!("{name} {} did not resolve within WTL_CONNECT_TIMEOUT", target),
        ),
    }
}

/// A connection to WTL (through the proxy when one applies) and, for https, its TLS: one `HEAD`
/// of the base URL through the connector's own client. Any HTTP answer proves the path; its
/// status does not matter.
async fn connection(settings: &Settings) -> Vec<Check> {
    let client = match wtl::http_client_with_tls_info(&settings.wtl) {
        Ok(c) => c,
        Err(e) => return vec![Check::fail("connection", e.to_string())],
    };
    let via = reqwest::Url::parse(&settings.wtl.base_url)
        .ok()
        .and_then(|u| settings.wtl.proxy.for_url(&u))
        .map_or(String::new(), |p| format!(" through the proxy {p}"));
    let https = settings.wtl.base_url.starts_with("https://");
    let sent = tokio::time::timeout(settings.wtl.attempt_timeout, client.head(&settings.wtl.base_url).send()).await;
    let response = match sent {
        Err(_) => {
            return vec![Check::fail(
                "connection",
                format!("no answer within WTL_HTTP_REQUESTS_TIMEOUT{via}"),
            )];
        }
        Ok(Err(e)) => {
            let (kind, detail) = wtl::classify_failure(&e);
            let name = if kind == wtl::NetFailure::Tls {
                "tls"
            } else {
                "connection"
            };
            let mut checks = Vec::new();
            if name == "tls" {
                checks.push(Check::ok("connection", format!("opened{via}")));
            }
            checks.push(Check::fail(name, format!("{}: {detail}", kind.as_str())));
            return checks;
        }
        Ok(Ok(r)) => r,
    };
    let mut checks = vec![Check::ok(
        "connection",
        format!(
            "opened{via}; HEAD {} answered HTTP {} over {:?}",
            settings.wtl.base_url,
            response.status().as_u16(),
            response.version()
        ),
    )];
    if https {
        checks.push(tls_details(&response, settings.wtl.tls.client_cert_file.is_some()));
    }
    checks
}

/// The server certificate's subject, issuer and days to expiry, and whether the client
/// certificate was accepted (the handshake succeeded with it).
fn tls_details(response: &reqwest::Response, client_cert: bool) -> Check {
    let Some(der) = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
    else {
        return Check::ok("tls", "handshake completed (no certificate details available)");
    };
    let client = if client_cert {
        "; client certificate configured and not refused (a server that asks for none is not told it)"
    } else {
        ""
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let expires = cert.validity().not_after.timestamp();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let days = (expires - now) / 86_400;
            let detail = format!(
                "handshake completed; server certificate subject \"{}\", issuer \"{}\", expires in {days} days{client}",
                cert.subject(),
                cert.issuer()
            );
            if days < 14 {
                Check::fail("tls", format!("{detail} (renew it soon)"))
            } else {
                Check::ok("tls", detail)
            }
        }
        Err(_) => Check::ok(
            "tls",
            format!("handshake completed (the certificate could not be read){client}"),
        ),
    }
}

/// For `WTL_AUTH=oauth2`: a token is obtained (its lifetime shown, never its value).
async fn token(settings: &Settings) -> Option<Check> {
    let client = match wtl::WtlClient::new(&settings.wtl, std::sync::Arc::new(crate::metrics::Metrics::default())) {
        Ok(c) => c,
        Err(e) => return Some(Check::fail("token", e.to_string())),
    };
    let deadline = tokio::time::Instant::now() + settings.wtl.total_timeout;
    Some(match client.token_lifetime(deadline).await? {
        Ok(lifetime) => Check::ok(
            "token",
            match lifetime {
                Some(l) => format!("obtained from the token endpoint; valid for {} s", l.as_secs()),
                None => "obtained from the token endpoint; no lifetime given (kept until WTL refuses it)".into(),
            },
        ),
        Err(e) => Check::fail("token", e.to_string()),
    })
}

/// With `REDIS_URL`: Redis answers a `PING`.
async fn redis(settings: &Settings) -> Option<Check> {
    let redis = settings.memory.redis.as_ref()?;
    let memory = match crate::memory::shared::SharedMemory::new(
        redis,
        &settings.memory,
        Duration::from_secs(1),
        std::sync::Arc::new(crate::metrics::Metrics::default()),
    ) {
        Ok(m) => m,
        Err(e) => return Some(Check::fail("redis", e.to_string())),
    };
    Some(match memory.ping().await {
        Ok(()) => Check::ok("redis", format!("{} answers", redis.shown)),
        Err(e) => Check::fail("redis", format!("{}: {e}", redis.shown)),
    })
}

/// The checks as text, one line each.
pub(crate) fn render_checks(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let status = if c.ok { "ok" } else { "FAIL" };
        out.push_str(&format!("{status:<4}  {:<13} {}\n", c.check, c.detail));
    }
    out
}

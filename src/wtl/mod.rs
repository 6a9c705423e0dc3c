//! The WTL HLR/HSS provisioning client.
//!
//! One call shape: `POST {WTL_API_URL}/prov` with a JSON body. The client executes one planned
//! call (credentials, rate limit, per-attempt timeout, retries with backoff inside the event's
//! time budget) and returns a typed outcome. It knows nothing about NSPS.
//!
//! The `/prov` calls go through the connector's own keep-alive HTTP/1.1 pool ([`http1`]: rustls
//! with the platform's trusted roots for `https`), run inside the event's task: it is the
//! per-event hot path, and a general-purpose pooled client's connection tasks, channels and
//! per-request URL handling measurably cost throughput there. The OAuth2 token endpoint, called
//! once per token lifetime, uses reqwest (see [`oauth`]).

pub mod http1;
pub mod limiter;
pub mod oauth;
pub mod outcome;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::config::{WtlAuthMode, WtlSettings};
use crate::metrics::Metrics;
use crate::plan::WtlCall;
use crate::telemetry::{TraceIds, X_B3_TRACEID, X_REQUEST_ID};
use crate::words::push_json_string;
use http1::{Endpoint, Http1Client};
use limiter::RateLimiter;
use oauth::TokenSource;
pub use outcome::{Done, NetFailure, WtlError};

/// Longest WTL answer body read; anything beyond is not needed to classify it.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Upper bound of one exponential back-off step.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

enum Credentials {
    None,
    Static(HeaderValue),
    OAuth(Box<TokenSource>),
}

/// The `User-Agent` of every call to WTL and its token endpoint.
const AGENT: &str = concat!("nsps-wtl-connector/", env!("CARGO_PKG_VERSION"));

/// Why the WTL client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("the system's trusted certificates could not be loaded for TLS: {0}")]
    Tls(String),
    #[error("WTL_API_URL does not make a valid /prov address: {0}")]
    Url(String),
    #[error("the OAuth2 token client could not be built: {0}")]
    TokenClient(String),
}

/// The shared WTL client: one connection pool for the whole process.
pub struct WtlClient {
    prov: Http1Client,
    credentials: Credentials,
    limiter: Option<RateLimiter>,
    settings: WtlSettings,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for WtlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtlClient")
            .field("prov", &self.prov)
            .finish_non_exhaustive()
    }
}

/// The JSON body of `POST /prov` for one planned call: `imsi`, then for `insert` and `update`
/// the full state (`subscriber_status`, `cs_profile`, `eps_profile`, `msisdn`), then `action`.
/// `delete` carries only the IMSI and the action. Written directly: every value is a string.
pub fn prov_body(call: &WtlCall) -> Vec<u8> {
    let mut json = String::with_capacity(192);
    json.push_str("{\"imsi\":");
    push_json_string(&mut json, call.imsi.as_str());
    if let Some(state) = &call.state {
        json.push_str(",\"subscriber_status\":");
        push_json_string(&mut json, state.status.as_str());
        json.push_str(",\"cs_profile\":");
        push_json_string(&mut json, state.cs_profile.as_str());
        json.push_str(",\"eps_profile\":");
        push_json_string(&mut json, state.eps_profile.as_str());
        json.push_str(",\"msisdn\":[");
        for (i, number) in state.msisdn.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            push_json_string(&mut json, number);
        }
        json.push(']');
    }
    json.push_str(",\"action\":");
    push_json_string(&mut json, call.action.as_str());
    json.push('}');
    json.into_bytes()
}

/// Why an attempt failed, and with which OAuth token (to discard exactly that one on a 401).
struct AttemptFailure {
    error: WtlError,
    token_generation: Option<u64>,
}

impl From<WtlError> for AttemptFailure {
    fn from(error: WtlError) -> Self {
        Self {
            error,
            token_generation: None,
        }
    }
}

impl WtlClient {
    pub fn new(settings: &WtlSettings, metrics: Arc<Metrics>) -> Result<Self, ClientBuildError> {
        install_crypto_provider();
        let endpoint = Endpoint::parse(&format!("{}/prov", settings.base_url)).map_err(ClientBuildError::Url)?;
        // No redirects are followed (the client has no such notion): credentials must never
        // follow a redirect to another host, and WTL has no reason to redirect.
        let json = HeaderValue::from_static("application/json");
        let agent = HeaderValue::from_static(AGENT);
        let prov = Http1Client::new(
            endpoint,
            settings.connect_timeout,
            MAX_ANSWER_BYTES,
            &[("content-type", &json), ("accept", &json), ("user-agent", &agent)],
        )?;
        let credentials = match settings.auth {
            WtlAuthMode::None => Credentials::None,
            WtlAuthMode::Bearer => match &settings.api_token {
                Some(token) => Credentials::Static(sensitive(&format!("Bearer {}", token.expose_secret()))),
                None => Credentials::None,
            },
            WtlAuthMode::Basic => {
                use base64::Engine;
                let user = settings.username.clone().unwrap_or_default();
                let pass = settings
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_string())
                    .unwrap_or_default();
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                Credentials::Static(sensitive(&format!("Basic {encoded}")))
            }
            WtlAuthMode::OAuth2 => match &settings.oauth {
                Some(oauth) => Credentials::OAuth(Box::new(TokenSource::new(
                    token_client(settings).map_err(|e| ClientBuildError::TokenClient(describe_reqwest(&e)))?,
                    oauth.clone(),
                    settings.username.clone(),
                    settings.password.clone(),
                    settings.attempt_timeout,
                ))),
                None => Credentials::None,
            },
        };
        Ok(Self {
            prov,
            credentials,
            limiter: settings.rate_limit.map(RateLimiter::per_second),
            settings: settings.clone(),
            metrics,
        })
    }

    /// The OAuth token source, when `WTL_AUTH=oauth2`.
    pub fn token_source(&self) -> Option<&TokenSource> {
        match &self.credentials {
            Credentials::OAuth(t) => Some(t),
            _ => None,
        }
    }

    /// Executes one planned call, retrying transient failures within `deadline`.
    pub async fn execute(&self, call: &WtlCall, ids: &TraceIds, deadline: Instant) -> Result<Done, WtlError> {
        let body = prov_body(call);
        let action = call.action.as_str();
        let imsi = call.imsi.as_str();
        let mut attempt: u32 = 0;
        let mut retries: u32 = 0;
        let mut renewed_after_401 = false;
        loop {
            attempt += 1;
            if let Some(limiter) = &self.limiter {
                match limiter.acquire(deadline).await {
                    Ok(waited) if !waited.is_zero() => {
                        tracing::debug!(
                            imsi,
                            action,
                            waited_ms = waited.as_millis() as u64,
                            "waited for the WTL rate limit"
                        );
                    }
                    Ok(_) => {}
                    Err(limiter::TooLate) => {
                        tracing::warn!(
                            imsi,
                            action,
                            attempt,
                            "WTL_RATE_LIMIT leaves no slot within WTL_TOTAL_TIMEOUT"
                        );
                        return Err(WtlError::DeadlineExceeded {
                            budget: self.settings.total_timeout,
                        });
                    }
                }
            }
            let started = Instant::now();
            let result = self.attempt(call.action, &body, ids, deadline).await;
            let latency = started.elapsed();
            let latency_ms = latency.as_secs_f64() * 1000.0;
            let failure = match result {
                Ok((done, status)) => {
                    self.metrics.wtl_call(action, "success", latency);
                    tracing::info!(
                        imsi,
                        action,
                        attempt,
                        wtl_status = status,
                        latency_ms,
                        outcome = match done {
                            Done::Applied => "applied",
                            Done::AlreadyApplied => "already_applied",
                        },
                        "WTL call succeeded"
                    );
                    return Ok(done);
                }
                Err(f) => f,
            };
            let error = failure.error;
            self.metrics.wtl_call(action, error.kind(), latency);

            // An OAuth token WTL refuses is renewed once and the call repeated once.
            if let (WtlError::AuthFailed { status: 401 }, Some(generation), Credentials::OAuth(tokens)) =
                (&error, failure.token_generation, &self.credentials)
            {
                if !renewed_after_401 {
                    renewed_after_401 = true;
                    tracing::warn!(
                        imsi,
                        action,
                        attempt,
                        wtl_status = 401,
                        latency_ms,
                        "WTL refused the access token; renewing it and repeating the call"
                    );
                    tokens.reject(generation).await;
                    continue;
                }
            }

            let give_up = |reason: &str| {
                tracing::warn!(
                    imsi,
                    action,
                    attempt,
                    wtl_status = error.wtl_status(),
                    latency_ms,
                    outcome = error.kind(),
                    error = %error,
                    reason,
                    "WTL call failed"
                );
            };
            if !error.is_transient() {
                give_up("not retryable");
                return Err(error);
            }
            if retries >= self.settings.max_retries {
                give_up("retries exhausted (WTL_MAX_RETRIES)");
                return Err(error);
            }
            let delay = match error.retry_after() {
                Some(asked) if asked > self.settings.retry_after_max => {
                    give_up("Retry-After is longer than WTL_RETRY_AFTER_MAX; passing it on");
                    return Err(error);
                }
                Some(asked) => asked,
                None => backoff(self.settings.retry_base, retries),
            };
            if Instant::now() + delay >= deadline {
                give_up("no time left for another attempt within WTL_TOTAL_TIMEOUT");
                return Err(error);
            }
            retries += 1;
            self.metrics.wtl_retry(action);
            tracing::warn!(
                imsi,
                action,
                attempt,
                wtl_status = error.wtl_status(),
                latency_ms,
                outcome = error.kind(),
                error = %error,
                delay_ms = delay.as_millis() as u64,
                "WTL call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: credentials, send, read, classify. Bounded by the per-attempt timeout and
    /// by what is left of the event's budget.
    async fn attempt(
        &self,
        action: crate::plan::Action,
        body: &[u8],
        ids: &TraceIds,
        deadline: Instant,
    ) -> Result<(Done, u16), AttemptFailure> {
        let (auth, token_generation) = match &self.credentials {
            Credentials::None => (None, None),
            Credentials::Static(h) => (Some(h.clone()), None),
            Credentials::OAuth(tokens) => {
                let t = tokens.token(deadline).await?;
                (Some(t.header), Some(t.generation))
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(WtlError::DeadlineExceeded {
                budget: self.settings.total_timeout,
            }
            .into());
        }
        let limit = self.settings.attempt_timeout.min(remaining);
        let mut headers: [(&str, &[u8]); 3] = [
            (X_B3_TRACEID.as_str(), ids.request_id.as_bytes()),
            (X_REQUEST_ID.as_str(), ids.unique_id.as_bytes()),
            ("authorization", b""),
        ];
        let extra = match &auth {
            Some(value) => {
                headers[2].1 = value.as_bytes();
                &headers[..]
            }
            None => &headers[..2],
        };
        let exchange = async {
            let answer = self.prov.post(extra, body).await.map_err(|f| WtlError::Unreachable {
                kind: f.kind,
                detail: f.detail,
            })?;
            let retry_after = answer
                .retry_after
                .as_deref()
                .and_then(|v| outcome::parse_retry_after(v, SystemTime::now()));
            Ok::<_, WtlError>((answer.status, retry_after, answer.body))
        };
        match tokio::time::timeout(limit, exchange).await {
            Err(_) => Err(AttemptFailure {
                error: WtlError::Unreachable {
                    kind: NetFailure::Timeout,
                    detail: format!("no answer within {}s", limit.as_secs_f64()),
                },
                token_generation,
            }),
            Ok(Err(error)) => Err(AttemptFailure {
                error,
                token_generation,
            }),
            Ok(Ok((status, retry_after, answer))) => outcome::classify(action, status, retry_after, &answer)
                .map(|done| (done, status))
                .map_err(|error| AttemptFailure {
                    error,
                    token_generation,
                }),
        }
    }
}

/// Makes aws-lc-rs the process's TLS crypto provider, once. Chosen explicitly so that a
/// dependency enabling a second provider can never leave rustls unable to pick one (which
/// would panic when the first TLS configuration is built). Later calls change nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // `Err` only means a provider was installed already (by an embedding program).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// The client for the OAuth2 token endpoint, with the same connection settings as `/prov`.
fn token_client(settings: &WtlSettings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(AGENT)
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        // Credentials must never follow a redirect to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

fn sensitive(value: &str) -> HeaderValue {
    // Settings are checked at start-up to hold no control characters; an impossible failure
    // degrades to an empty header rather than a panic.
    let mut h = HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    h.set_sensitive(true);
    h
}

/// Exponential back-off with full jitter: a random wait in `[0, min(cap, base * 2^retry)]`.
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << retry.min(20)).min(BACKOFF_CAP.max(base));
    ceiling.mul_f64(fastrand::f64())
}

/// An error and its causes on one line, outermost first, without repeating a cause whose text
/// the outer one already holds.
fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A reqwest error with its causes, without the URL (which may carry credentials): reqwest's
/// own text names the URL, so the description starts at its first cause.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(cause) => describe_error(cause),
        None => e.without_url_ref(),
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(url) => text.replace(url.as_str(), "WTL"),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Imsi, Profile, SubscriberState, SubscriberStatus};

    #[test]
    fn update_body_has_the_full_state() {
        let call = WtlCall {
            action: Action::Update,
            imsi: Imsi::parse("001010000020349").expect("valid"),
            state: Some(SubscriberState {
                status: SubscriberStatus::ServiceGranted,
                cs_profile: Profile::parse("cs").expect("valid"),
                eps_profile: Profile::parse("eps").expect("valid"),
                msisdn: vec!["79123456789".into()],
            }),
        };
        let v: serde_json::Value = serde_json::from_slice(&prov_body(&call)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"imsi":"001010000020349","subscriber_status":"serviceGranted",
                "cs_profile":"cs","eps_profile":"eps","msisdn":["79123456789"],"action":"update"})
        );
        // Member order as the reference sends it; numbers listed in order; none is `[]`.
        assert_eq!(
            String::from_utf8(prov_body(&call)).expect("text"),
            r#"{"imsi":"001010000020349","subscriber_status":"serviceGranted","cs_profile":"cs","eps_profile":"eps","msisdn":["79123456789"],"action":"update"}"#
        );
        let mut two = call.clone();
        if let Some(state) = two.state.as_mut() {
            state.msisdn = vec!["1".into(), "2".into()];
        }
        let v: serde_json::Value = serde_json::from_slice(&prov_body(&two)).expect("json");
        assert_eq!(v["msisdn"], serde_json::json!(["1", "2"]));
        if let Some(state) = two.state.as_mut() {
            state.msisdn.clear();
        }
        let v: serde_json::Value = serde_json::from_slice(&prov_body(&two)).expect("json");
        assert_eq!(v["msisdn"], serde_json::json!([]));
    }

    #[test]
    fn delete_body_has_only_imsi_and_action() {
        let call = WtlCall {
            action: Action::Delete,
            imsi: Imsi::parse("001010000020350").expect("valid"),
            state: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&prov_body(&call)).expect("json");
        assert_eq!(v, serde_json::json!({"imsi":"001010000020350","action":"delete"}));
    }

    fn client_for(url: &str) -> WtlClient {
        let settings = crate::config::Settings::from_vars([
            ("API_TOKEN", "t"),
            ("WTL_API_URL", url),
            ("WTL_MAX_RETRIES", "0"),
            ("WTL_HTTP_REQUESTS_TIMEOUT", "5"),
        ])
        .expect("valid settings");
        WtlClient::new(&settings.wtl, Arc::new(Metrics::default())).expect("client")
    }

    fn delete_call() -> WtlCall {
        WtlCall {
            action: Action::Delete,
            imsi: Imsi::parse("001010000020349").expect("valid"),
            state: None,
        }
    }

    async fn failure_of(url: &str) -> (NetFailure, String) {
        let ids = TraceIds::generated();
        let deadline = Instant::now() + Duration::from_secs(10);
        match client_for(url).execute(&delete_call(), &ids, deadline).await {
            Err(WtlError::Unreachable { kind, detail }) => (kind, detail),
            other => panic!("expected an unreachable WTL, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_failure() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let (kind, detail) = failure_of(&url).await;
        assert_eq!(kind, NetFailure::Connect, "{detail}");
        assert!(detail.to_lowercase().contains("refused"), "{detail}");
    }

    #[tokio::test]
    async fn an_unknown_host_is_a_dns_failure() {
        let (kind, detail) = failure_of("http://wtl.does-not-exist.invalid").await;
        assert_eq!(kind, NetFailure::Dns, "{detail}");
    }

    #[tokio::test]
    async fn https_to_a_server_that_speaks_no_tls_fails_cleanly() {
        // A server that answers anything with plain HTTP: the TLS handshake cannot succeed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let (kind, detail) = failure_of(&format!("https://127.0.0.1:{}", addr.port())).await;
        assert_eq!(kind, NetFailure::Connect, "{detail}");
        assert!(!detail.is_empty());
    }

    #[test]
    fn the_crypto_provider_is_chosen_once_and_explicitly() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        assert!(
            provider
                .cipher_suites
                .iter()
                .any(|s| s.version() == &rustls::version::TLS13),
            "the installed provider is a full one"
        );
    }

    #[test]
    fn backoff_stays_within_its_exponential_ceiling() {
        let base = Duration::from_millis(200);
        for retry in 0..6 {
            let ceiling = (base * (1 << retry)).min(BACKOFF_CAP);
            for _ in 0..200 {
                assert!(backoff(base, retry) <= ceiling);
            }
        }
    }
}

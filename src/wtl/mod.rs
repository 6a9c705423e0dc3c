//! The WTL HLR/HSS provisioning client.
//!
//! One call shape: `POST {WTL_API_URL}/prov` with a JSON body. The client executes one planned
//! call (credentials, rate limit, per-attempt timeout, retries with backoff inside the event's
//! time budget) and returns a typed outcome. It knows nothing about NSPS.
//!
//! Every WTL call, `/prov` and the OAuth2 token endpoint alike, goes through one shared
//! `reqwest::Client` built once at start-up ([`http_client`]): pooled keep-alive connections,
//! HTTP/2 by ALPN when WTL offers it, the system's trusted roots plus `WTL_CA_FILE`, the client
//! identity for mutual TLS, and the proxy settings.

mod body;
mod client;
mod credentials;
mod exchange;
pub(crate) mod limiter;
mod live;
pub(crate) mod net;
pub(crate) mod oauth;
pub(crate) mod outcome;
mod proxy;
pub(crate) mod settings;
pub(crate) mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use bytes::Bytes;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::plan::WtlCall;
use crate::telemetry::{CallTarget, StepSpan, TraceIds};
pub(crate) use body::prov_body;
pub(crate) use client::{
    ClientBuildError, classify_failure, http_client, http_client_with_tls_info, install_crypto_provider,
};
use credentials::Credentials;
pub(crate) use exchange::read_capped;
use limiter::RateLimiter;
use live::Live;
pub(crate) use live::Rotated;
pub(crate) use outcome::{Done, NetFailure, WtlError};
pub(crate) use proxy::ProxySettings;
pub(crate) use settings::{AuthMode, OAuthSettings, Settings};

/// Upper bound of one exponential back-off step.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// The `User-Agent` of every call to WTL and its token endpoint.
const AGENT: &str = concat!("nsps-wtl-connector/", env!("CARGO_PKG_VERSION"));

/// The shared WTL client: one connection pool for the whole process.
pub(crate) struct WtlClient {
    /// What a rotated secret or TLS file replaces; each attempt takes it once, so an attempt in
    /// flight finishes on the client and credentials it started with.
    live: ArcSwap<Live>,
    prov_url: reqwest::Url,
    /// `prov_url` as the WTL attempts' spans name it.
    prov_target: CallTarget,
    limiter: Option<RateLimiter>,
    settings: Settings,
    /// The settings the live part was last built from (secret values and TLS files included).
    current: std::sync::Mutex<Settings>,
    metrics: Arc<Metrics>,
    /// Token requests made (grants and refreshes), across rotations.
    token_requests: Arc<AtomicU64>,
}

/// Where one call's attempts stand.
#[derive(Default)]
struct Tries {
    attempt: u32,
    retries: u32,
    renewed_after_401: bool,
}

/// One failed attempt's line: `WTL call failed; retrying` with the delay, or `WTL call failed`
/// with the reason it ends there (`reason` is `retrying` when it does not).
fn log_failure(
    call: &WtlCall,
    attempt: u32,
    latency: Duration,
    error: &WtlError,
    reason: &str,
    delay: Option<Duration>,
) {
    let message = if delay.is_some() {
        "WTL call failed; retrying"
    } else {
        "WTL call failed"
    };
    tracing::warn!(
        imsi = call.imsi.as_str(),
        action = call.action.as_str(),
        attempt,
        wtl_status = error.wtl_status(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        outcome = error.kind(),
        error = %error,
        reason,
        delay_ms = delay.map(|d| d.as_millis() as u64),
        "{message}"
    );
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
    /// `WTL_DRY_RUN`: events are planned and answered, no call is made.
    pub(crate) fn dry_run(&self) -> bool {
        self.settings.dry_run
    }

    /// `WTL_TOTAL_TIMEOUT`: the time budget of one event's calls.
    pub(crate) fn total_timeout(&self) -> Duration {
        self.settings.total_timeout
    }

    pub(crate) fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, ClientBuildError> {
        install_crypto_provider();
        let token_requests = Arc::new(AtomicU64::new(0));
        let live = Live::build(settings, &token_requests)?;
        // The configured URL holds no credentials (they were taken out when it was read).
        let prov_url =
            reqwest::Url::parse(&format!("{}/prov", settings.base_url)).map_err(|e| ClientBuildError::Setting {
                var: "WTL_API_URL",
                problem: format!("does not make a valid /prov address: {e}"),
            })?;
        Ok(Self {
            live: ArcSwap::from_pointee(live),
            prov_target: CallTarget::new(&prov_url),
            prov_url,
            limiter: settings.rate_limit.map(RateLimiter::per_second),
            settings: settings.clone(),
            current: std::sync::Mutex::new(settings.clone()),
            metrics,
            token_requests,
        })
    }

    /// With `WTL_AUTH=oauth2`: obtains a token (from the cache or the token endpoint) and
    /// tells the lifetime the token endpoint gave, for `check`.
    pub(crate) async fn token_lifetime(&self, deadline: Instant) -> Option<Result<Option<Duration>, WtlError>> {
        let live = self.live.load_full();
        let Credentials::OAuth(tokens) = &live.credentials else {
            return None;
        };
        Some(tokens.token(deadline).await.map(|_| tokens.lifetime()))
    }

    /// Token requests made so far (grants and refreshes).
    pub(crate) fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// Executes one planned call, retrying transient failures within `deadline`.
    pub(crate) async fn execute(&self, call: &WtlCall, ids: &TraceIds, deadline: Instant) -> Result<Done, WtlError> {
        let body = Bytes::from(prov_body(call));
        let mut tries = Tries::default();
        loop {
            tries.attempt += 1;
            self.wait_for_rate_limit(call, tries.attempt, deadline).await?;
            let started = Instant::now();
            let live = self.live.load_full();
            let span = StepSpan::client("POST /prov", &self.prov_target, tries.attempt);
            let attempt = self.attempt(&live, call.action, &body, ids, deadline, &span);
            let failure = match span.around(attempt).await {
                Ok((done, status)) => {
                    span.answered(Some(status), None);
                    self.log_success(call, tries.attempt, status, started.elapsed(), done);
                    return Ok(done);
                }
                Err(f) => {
                    span.answered(f.error.wtl_status(), Some(f.error.kind()));
                    f
                }
            };
            let latency = started.elapsed();
            self.metrics
                .wtl_call(call.action.as_str(), failure.error.kind(), latency);
            if self
                .renew_refused_token(&live, call, &failure, &mut tries, latency)
                .await
            {
                continue;
            }
            let delay = match self.next_delay(&failure.error, tries.retries, deadline) {
                Ok(delay) => delay,
                Err(reason) => {
                    log_failure(call, tries.attempt, latency, &failure.error, reason, None);
                    return Err(failure.error);
                }
            };
            tries.retries += 1;
            self.metrics.wtl_retry(call.action.as_str());
            log_failure(call, tries.attempt, latency, &failure.error, "retrying", Some(delay));
            // Nothing shared is held across this wait (see `http::events`).
            tokio::time::sleep(delay).await;
        }
    }

    /// Waits for this call's slot under `WTL_RATE_LIMIT`; a slot past the deadline ends the call.
    async fn wait_for_rate_limit(&self, call: &WtlCall, attempt: u32, deadline: Instant) -> Result<(), WtlError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let (imsi, action) = (call.imsi.as_str(), call.action.as_str());
        match limiter.acquire(deadline).await {
            Ok(waited) => {
                if !waited.is_zero() {
                    tracing::debug!(
                        imsi,
                        action,
                        waited_ms = waited.as_millis() as u64,
                        "waited for the WTL rate limit"
                    );
                }
                Ok(())
            }
            Err(limiter::TooLate) => {
                tracing::warn!(
                    imsi,
                    action,
                    attempt,
                    "WTL_RATE_LIMIT leaves no slot within WTL_TOTAL_TIMEOUT"
                );
                Err(WtlError::DeadlineExceeded {
                    budget: self.settings.total_timeout,
                })
            }
        }
    }

    fn log_success(&self, call: &WtlCall, attempt: u32, status: u16, latency: Duration, done: Done) {
        let action = call.action.as_str();
        self.metrics.wtl_call(action, "success", latency);
        tracing::info!(
            imsi = call.imsi.as_str(),
            action,
            attempt,
            wtl_status = status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            outcome = match done {
                Done::Applied => "applied",
                Done::AlreadyApplied => "already_applied",
            },
            "WTL call succeeded"
        );
    }

    /// An OAuth token WTL refuses (401) is renewed once and the call repeated once: `true` when
    /// that is what happens now.
    async fn renew_refused_token(
        &self,
        live: &Live,
        call: &WtlCall,
        failure: &AttemptFailure,
        tries: &mut Tries,
        latency: Duration,
    ) -> bool {
        let (WtlError::AuthFailed { status: 401 }, Some(generation), Credentials::OAuth(tokens)) =
            (&failure.error, failure.token_generation, &live.credentials)
        else {
            return false;
        };
        if tries.renewed_after_401 {
            return false;
        }
        tries.renewed_after_401 = true;
        tracing::warn!(
            imsi = call.imsi.as_str(),
            action = call.action.as_str(),
            attempt = tries.attempt,
            wtl_status = 401,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "WTL refused the access token; renewing it and repeating the call"
        );
        tokens.reject(generation).await;
        true
    }

    /// How long to wait before the next attempt, or why there is none: not retryable, retries
    /// exhausted, a `Retry-After` longer than allowed, or no time left in the budget.
    fn next_delay(&self, error: &WtlError, retries: u32, deadline: Instant) -> Result<Duration, &'static str> {
        if !error.is_transient() {
            return Err("not retryable");
        }
        if retries >= self.settings.max_retries {
            return Err("retries exhausted (WTL_MAX_RETRIES)");
        }
        let delay = match error.retry_after() {
            Some(asked) if asked > self.settings.retry_after_max => {
                return Err("Retry-After is longer than WTL_RETRY_AFTER_MAX; passing it on");
            }
            Some(asked) => asked,
            None => backoff(self.settings.retry_base, retries),
        };
        if Instant::now() + delay >= deadline {
            return Err("no time left for another attempt within WTL_TOTAL_TIMEOUT");
        }
        Ok(delay)
    }

    /// One attempt: credentials, send, read, classify. Bounded by the per-attempt timeout and
    /// by what is left of the event's budget.
    async fn attempt(
        &self,
        live: &Live,
        action: crate::plan::Action,
        body: &Bytes,
        ids: &TraceIds,
        deadline: Instant,
        span: &StepSpan,
    ) -> Result<(Done, u16), AttemptFailure> {
        let (auth, token_generation) = live.credentials.header(deadline).await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(WtlError::DeadlineExceeded {
                budget: self.settings.total_timeout,
            }
            .into());
        }
        let limit = self.settings.attempt_timeout.min(remaining);
        let fail = |error| AttemptFailure {
            error,
            token_generation,
        };
        let traceparent = ids.traceparent_for(span);
        let answer = exchange::post(&live.http, &self.prov_url, auth, body.clone(), ids, &traceparent, limit)
            .await
            .map_err(fail)?;
        outcome::classify(action, answer.status, answer.retry_after, &answer.body)
            .map(|done| (done, answer.status))
            .map_err(fail)
    }
}

/// `WTL_DRY_RUN`: logs a call that is planned and not made, with the exact body it would send.
pub(crate) fn log_planned(call: &WtlCall) {
    let body = String::from_utf8_lossy(&prov_body(call)).into_owned();
    tracing::info!(
        imsi = call.imsi.as_str(),
        action = call.action.as_str(),
        body_json = %body,
        "dry run: WTL call planned, not made"
    );
}

/// Exponential back-off with full jitter: a random wait in `[0, min(cap, base * 2^retry)]`.
pub(crate) fn backoff(base: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << retry.min(20)).min(BACKOFF_CAP.max(base));
    ceiling.mul_f64(fastrand::f64())
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
        assert_eq!(
            String::from_utf8(prov_body(&call)).expect("text"),
            r#"{"imsi":"001010000020350","action":"delete"}"#
        );
    }

    fn client_for(url: &str) -> WtlClient {
        let settings = Settings {
            max_retries: 0,
            attempt_timeout: Duration::from_secs(5),
            ..Settings::new(url.to_string())
        };
        WtlClient::new(&settings, Arc::new(Metrics::default())).expect("client")
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
        assert_eq!(kind, NetFailure::Tls, "{detail}");
        assert!(detail.starts_with("TLS handshake failed"), "{detail}");
    }

    /// Answers every connection with `head` (and whatever body it starts) and then stalls.
    async fn stalling_wtl(head: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(head).await;
                held.push(socket);
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn an_answer_that_stops_halfway_is_cut_at_the_attempt_limit() {
        for head in [
            &b""[..],
            &b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"res"[..],
        ] {
            let url = stalling_wtl(head).await;
            let settings = Settings {
                max_retries: 0,
                attempt_timeout: Duration::from_millis(300),
                ..Settings::new(url)
            };
            let client = WtlClient::new(&settings, Arc::new(Metrics::default())).expect("client");
            let started = Instant::now();
            let deadline = started + Duration::from_secs(10);
            match client.execute(&delete_call(), &TraceIds::generated(), deadline).await {
                Err(WtlError::Unreachable { kind, detail }) => {
                    assert_eq!(kind, NetFailure::Timeout, "{detail}");
                    assert_eq!(detail, "no answer within 0.3s");
                }
                other => panic!("expected a timeout, got {other:?}"),
            }
            assert!(started.elapsed() < Duration::from_secs(5), "cut at the attempt limit");
        }
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

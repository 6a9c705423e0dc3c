//! OAuth2 / JWT access tokens for `WTL_AUTH=oauth2`.
//!
//! The token is fetched from `WTL_OAUTH_TOKEN_URL` (RFC 6749, form-encoded), kept until shortly
//! before it expires (`expires_in`, else the JWT `exp` claim), renewed with the refresh token
//! when one was given and with a fresh grant otherwise (or when the refresh fails).
//!
//! Single flight: the cache sits behind an async mutex that is held while a token is fetched,
//! so however many events find the token expired at once, one request goes to the token
//! endpoint and the others wait for its result.
//!
//! Cancellation: the event that fetches may be dropped at any await of the fetch (its client
//! hung up, `REQUEST_TIMEOUT`, shutdown). The mutex guard is then dropped with it, so the next
//! waiter takes the lock and fetches itself; nothing in the cache was changed before the
//! answer arrived (the refresh token in particular is kept until an answer replaces or
//! refuses it), so a cut-off fetch leaves the cache as it found it.
//!
//! Lifetimes: `expires_in` (or the JWT `exp`) is honoured up to [`MAX_LIFETIME`]; a value that
//! is not a positive number of seconds means "renew at the next use", never a failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::outcome::{WtlError, error_text};
use super::settings::OAuthSettings;
use crate::telemetry::{CallTarget, StepSpan};

/// A token in use, and which renewal produced it (so a 401 only discards the token it was
/// answered to, not a newer one another event already fetched).
#[derive(Clone)]
pub(crate) struct IssuedToken {
    pub header: HeaderValue,
    pub generation: u64,
}

struct Cached {
    header: HeaderValue,
    generation: u64,
    /// The lifetime the token endpoint (or the JWT) gave.
    lifetime: Option<Duration>,
    /// `None`: lifetime unknown; kept until WTL refuses it.
    renew_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    access: Option<Cached>,
    refresh: Option<SecretString>,
}

pub(crate) struct TokenSource {
    http: reqwest::Client,
    settings: OAuthSettings,
    username: Option<String>,
    password: Option<SecretString>,
    attempt_timeout: Duration,
    /// The token URL as the fetches' spans name it (checked at start-up: none only if it does
    /// not parse, and then no span).
    span_target: Option<CallTarget>,
    state: Mutex<State>,
    generation: AtomicU64,
    /// Token requests made (grants and refreshes), for metrics; shared across rotations.
    requests: std::sync::Arc<AtomicU64>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.settings.token_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Longest lifetime believed, whatever the token endpoint or the JWT claims.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Renew this long before expiry: a tenth of the lifetime, at most a minute.
fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

impl TokenSource {
    pub(crate) fn new(
        http: reqwest::Client,
        settings: OAuthSettings,
        username: Option<String>,
        password: Option<SecretString>,
        attempt_timeout: Duration,
        requests: std::sync::Arc<AtomicU64>,
    ) -> Self {
        let span_target = url::Url::parse(&settings.token_url)
            .ok()
            .map(|url| CallTarget::new(&url));
        Self {
            http,
            span_target,
            settings,
            username,
            password,
            attempt_timeout,
            state: Mutex::new(State::default()),
            generation: AtomicU64::new(0),
            requests,
        }
    }

    /// A valid `Authorization` value, fetching or renewing the token when needed.
    pub(crate) async fn token(&self, deadline: Instant) -> Result<IssuedToken, WtlError> {
        let mut state = tokio::time::timeout_at(deadline, self.state.lock())
            .await
            .map_err(|_| WtlError::TokenEndpointUnreachable {
                detail: "no token was obtained within the event's time budget".into(),
            })?;
        if let Some(t) = &state.access
            && t.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(IssuedToken {
                header: t.header.clone(),
                generation: t.generation,
            });
        }
        self.renew(&mut state, deadline).await
    }

    /// The lifetime of the token in the cache, as the token endpoint gave it (for `check`).
    pub(crate) fn lifetime(&self) -> Option<Duration> {
        self.state.try_lock().ok()?.access.as_ref()?.lifetime
    }

    /// WTL refused the token of `generation`: forget it so the next [`Self::token`] renews it.
    pub(crate) async fn reject(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.access.as_ref().is_some_and(|t| t.generation == generation) {
            state.access = None;
        }
    }

    async fn renew(&self, state: &mut State, deadline: Instant) -> Result<IssuedToken, WtlError> {
        // The refresh token stays in the cache until an answer replaces or refuses it: a fetch
        // cut off here must not lose it.
        if let Some(refresh) = state.refresh.clone() {
            let form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh.expose_secret().to_string()),
            ];
            match self.request(form, deadline).await {
                Ok(answer) => return self.store(state, answer, "refresh_token"),
                Err(e) => {
                    // Refused: forgotten. Unreachable: kept for the next renewal.
                    if matches!(e, WtlError::TokenEndpointFailed { .. }) {
                        state.refresh = None;
                    }
                    tracing::warn!(error = %e, "token refresh failed; requesting a new token");
                }
            }
        }
        let (grant, mut form) = match (&self.username, &self.password) {
            (Some(user), Some(pass)) => (
                "password",
                vec![
                    ("username", user.clone()),
                    ("password", pass.expose_secret().to_string()),
                ],
            ),
            _ => ("client_credentials", Vec::new()),
        };
        form.insert(0, ("grant_type", grant.to_string()));
        let answer = self.request(form, deadline).await?;
        self.store(state, answer, grant)
    }

    fn store(&self, state: &mut State, answer: TokenAnswer, grant: &str) -> Result<IssuedToken, WtlError> {
        let access =
            answer
                .access_token
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| WtlError::TokenEndpointFailed {
                    detail: "the answer has no access_token".into(),
                })?;
        let mut header =
            HeaderValue::try_from(format!("Bearer {access}")).map_err(|_| WtlError::TokenEndpointFailed {
                detail: "the access_token holds characters not allowed in a header".into(),
            })?;
        header.set_sensitive(true);
        let lifetime = match &answer.expires_in {
            Some(value) => Some(lifetime_from(value)),
            None => jwt_lifetime(&access, SystemTime::now()),
        };
        let now = Instant::now();
        let renew_at = lifetime.map(|l| now + l.saturating_sub(renew_margin(l)));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        state.access = Some(Cached {
            header: header.clone(),
            generation,
            lifetime,
            renew_at,
        });
        if let Some(r) = answer.refresh_token.filter(|r| !r.is_empty()) {
            state.refresh = Some(SecretString::from(r));
        }
        tracing::info!(
            grant,
            expires_in_s = lifetime.map(|l| l.as_secs()),
            "obtained a WTL access token"
        );
        Ok(IssuedToken { header, generation })
    }

    async fn request(&self, form: Vec<(&'static str, String)>, deadline: Instant) -> Result<TokenAnswer, WtlError> {
        let req = self.token_request(form);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(WtlError::TokenEndpointUnreachable {
                detail: "no time left in the event's budget".into(),
            });
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = self.attempt_timeout.min(remaining);
        // The request's own timeout covers reading the answer's body too.
        let (status, body, latency_ms) = self.send(req.timeout(timeout), timeout).await?;
        tracing::debug!(status = status.as_u16(), latency_ms, "token endpoint answered");
        if !status.is_success() {
            return Err(WtlError::TokenEndpointFailed {
                detail: format!(
                    "{} answered HTTP {}: {}",
                    self.settings.token_url,
                    status.as_u16(),
                    error_text(&body, status.as_u16())
                ),
            });
        }
        serde_json::from_slice(&body).map_err(|_| WtlError::TokenEndpointFailed {
            detail: format!(
                "{} answered with a body that is not a token response",
                self.settings.token_url
            ),
        })
    }

    /// The token request for `form`: the scope, and the client's authentication (HTTP Basic,
    /// RFC 6749 §2.3.1; a public client sends only its id).
    fn token_request(&self, mut form: Vec<(&'static str, String)>) -> reqwest::RequestBuilder {
        if let Some(scope) = &self.settings.scope {
            form.push(("scope", scope.clone()));
        }
        let mut req = self
            .http
            .post(&self.settings.token_url)
            .header(http::header::ACCEPT, "application/json");
        match (&self.settings.client_id, &self.settings.client_secret) {
            (Some(id), Some(secret)) => {
                req = req.basic_auth(form_encode(id), Some(form_encode(secret.expose_secret())))
            }
            (Some(id), None) => form.push(("client_id", id.clone())),
            _ => {}
        }
        req.form(&form)
    }

    /// Sends a token request in a client span; the answer's status and body, and the time taken.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(reqwest::StatusCode, Vec<u8>, u64), WtlError> {
        let started = Instant::now();
        let span = self
            .span_target
            .as_ref()
            .map_or_else(StepSpan::none, |target| StepSpan::client("POST token", target, 1));
        let result = async {
            let mut resp = req.send().await?;
            let status = resp.status();
            let body = super::read_capped(&mut resp).await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (status, body) = match result {
            Ok((status, body)) => {
                span.answered(Some(status.as_u16()), None);
                (status, body)
            }
            Err(e) if super::net::limit_ran_out(&e, started, timeout) => {
                span.answered(None, Some("timeout"));
                tracing::warn!(latency_ms, "the WTL token endpoint did not answer in time");
                return Err(WtlError::TokenEndpointUnreachable {
                    detail: format!(
                        "{} did not answer within {}s",
                        self.settings.token_url,
                        timeout.as_secs_f64()
                    ),
                });
            }
            Err(e) => {
                span.answered(None, Some("unreachable"));
                let (kind, detail) = super::net::classify(&e);
                tracing::warn!(latency_ms, failure = kind.as_str(), error = %detail, "the WTL token endpoint could not be reached");
                return Err(WtlError::TokenEndpointUnreachable {
                    detail: format!("{}: {detail}", self.settings.token_url),
                });
            }
        };
        Ok((status, body, latency_ms))
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before HTTP Basic.
fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The remaining lifetime from a JWT's `exp` claim (the signature is not checked: the token is
/// only passed on, and WTL is the one that verifies it).
pub(crate) fn jwt_lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    let Some(exp) = exp.as_f64() else {
        return Some(Duration::ZERO);
    };
    let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs_f64();
    Some(seconds_to_lifetime(exp - now))
}

/// The lifetime an `expires_in` value gives: a number or a numeric string of seconds, at most
/// [`MAX_LIFETIME`]. Anything else (negative, zero, not a number) is `ZERO`: renew at the next
/// use.
pub(crate) fn lifetime_from(expires_in: &serde_json::Value) -> Duration {
    let seconds = match expires_in {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    seconds.map_or(Duration::ZERO, seconds_to_lifetime)
}

/// Seconds as a lifetime within `[0, MAX_LIFETIME]`; NaN and negatives are zero.
fn seconds_to_lifetime(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).map_or(MAX_LIFETIME, |d| d.min(MAX_LIFETIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", enc.encode(r#"{"alg":"none"}"#), enc.encode(claims))
    }

    #[test]
    fn jwt_exp_gives_the_lifetime() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            jwt_lifetime(&jwt(r#"{"exp":1300}"#), now),
            Some(Duration::from_secs(300))
        );
        assert_eq!(jwt_lifetime(&jwt(r#"{"exp":10}"#), now), Some(Duration::ZERO));
        assert_eq!(jwt_lifetime(&jwt(r#"{"sub":"x"}"#), now), None);
        assert_eq!(jwt_lifetime("opaque-token", now), None);
    }

    #[test]
    fn odd_lifetimes_are_clamped_or_mean_renew_at_next_use() {
        use serde_json::json;
        assert_eq!(lifetime_from(&json!(3600)), Duration::from_secs(3600));
        assert_eq!(lifetime_from(&json!("120")), Duration::from_secs(120));
        assert_eq!(lifetime_from(&json!(1e300)), MAX_LIFETIME);
        assert_eq!(lifetime_from(&json!("1e300")), MAX_LIFETIME);
        assert_eq!(lifetime_from(&json!(u64::MAX)), MAX_LIFETIME);
        for odd in [
            json!(-5),
            json!(0),
            json!("soon"),
            json!("NaN"),
            json!("-inf"),
            json!(null),
            json!({"s": 1}),
        ] {
            assert_eq!(lifetime_from(&odd), Duration::ZERO, "{odd}");
        }
        assert_eq!(lifetime_from(&json!("inf")), MAX_LIFETIME);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(jwt_lifetime(&jwt(r#"{"exp":1e300}"#), now), Some(MAX_LIFETIME));
        assert_eq!(jwt_lifetime(&jwt(r#"{"exp":-1e300}"#), now), Some(Duration::ZERO));
        assert_eq!(jwt_lifetime(&jwt(r#"{"exp":"tomorrow"}"#), now), Some(Duration::ZERO));
    }

    #[test]
    fn renewal_happens_shortly_before_expiry() {
        assert_eq!(renew_margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(renew_margin(Duration::from_secs(60)), Duration::from_secs(6));
    }

    #[test]
    fn client_credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}

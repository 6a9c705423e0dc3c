//! How the connector identifies itself to WTL (`WTL_AUTH`): nothing, a fixed `Authorization`
//! header built once (Bearer or Basic), or an OAuth2 access token from the token endpoint.

use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::WtlError;
use super::oauth::TokenSource;
use super::settings::{AuthMode, Settings};
use http::HeaderValue;

pub(super) enum Credentials {
    None,
    Static(HeaderValue),
    OAuth(Box<TokenSource>),
}

impl Credentials {
    pub(super) fn from_settings(
        settings: &Settings,
        http: &reqwest::Client,
        token_requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        match settings.auth {
            AuthMode::None => Self::None,
            AuthMode::Bearer => match &settings.api_token {
                Some(token) => Self::Static(sensitive(&format!("Bearer {}", token.expose_secret()))),
                None => Self::None,
            },
            AuthMode::Basic => {
                use base64::Engine;
                let user = settings.username.clone().unwrap_or_default();
                let pass = settings
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_string())
                    .unwrap_or_default();
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                Self::Static(sensitive(&format!("Basic {encoded}")))
            }
            AuthMode::OAuth2 => match &settings.oauth {
                Some(oauth) => Self::OAuth(Box::new(TokenSource::new(
                    http.clone(),
                    oauth.clone(),
                    settings.username.clone(),
                    settings.password.clone(),
                    settings.attempt_timeout,
                    token_requests,
                ))),
                None => Self::None,
            },
        }
    }

    /// The `Authorization` header for one attempt, and the OAuth token's generation (to
    /// discard exactly that token when WTL refuses it).
    pub(super) async fn header(&self, deadline: Instant) -> Result<(Option<HeaderValue>, Option<u64>), WtlError> {
        match self {
            Self::None => Ok((None, None)),
            Self::Static(h) => Ok((Some(h.clone()), None)),
            Self::OAuth(tokens) => {
                let t = tokens.token(deadline).await?;
                Ok((Some(t.header), Some(t.generation)))
            }
        }
    }
}

/// A header value never shown in `Debug` output of requests.
fn sensitive(value: &str) -> HeaderValue {
    // Settings are checked at start-up to hold no control characters; an impossible failure
    // degrades to an empty header rather than a panic.
    let mut h = HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    h.set_sensitive(true);
    h
}

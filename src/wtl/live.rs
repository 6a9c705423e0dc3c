//! What a rotated secret or TLS file replaces in the WTL client (`crate::rotation`): the HTTP
//! client and the credentials built on it, swapped as a whole.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::Settings;
use super::credentials::Credentials;
use super::{ClientBuildError, WtlClient, http_client};

/// The HTTP client (TLS material, proxies, pool) and the credentials built on it.
pub(super) struct Live {
    pub(super) http: reqwest::Client,
    pub(super) credentials: Credentials,
}

impl Live {
    pub(super) fn build(settings: &Settings, token_requests: &Arc<AtomicU64>) -> Result<Self, ClientBuildError> {
        let http = http_client(settings)?;
        let credentials = Credentials::from_settings(settings, &http, token_requests.clone());
        Ok(Self { http, credentials })
    }
}

/// A new value for something the WTL client is built from (`crate::rotation`).
pub(crate) enum Rotated {
    ApiToken(secrecy::SecretString),
    Password(secrecy::SecretString),
    ClientSecret(secrecy::SecretString),
    /// `WTL_CA_FILE`, `WTL_CLIENT_CERT_FILE` or `WTL_CLIENT_KEY_FILE` changed on disk.
    TlsFiles,
}

impl std::fmt::Debug for WtlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtlClient")
            .field("prov_url", &self.prov_url.as_str())
            .finish_non_exhaustive()
    }
}

impl WtlClient {
    /// Rebuilds the HTTP client and the credentials with a new secret or the TLS files as they
    /// are now on disk; calls made from now on use them, calls in flight finish on the old ones.
    /// A new credential also drops the cached OAuth token. On an error nothing changes.
    pub(crate) fn rotate(&self, rotated: Rotated) -> Result<(), ClientBuildError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = current.clone();
        match rotated {
            Rotated::ApiToken(token) => next.api_token = Some(token),
            Rotated::Password(password) => next.password = Some(password),
            Rotated::ClientSecret(secret) => {
                if let Some(oauth) = next.oauth.as_mut() {
                    oauth.client_secret = Some(secret);
                }
            }
            Rotated::TlsFiles => {}
        }
        self.live.store(Arc::new(Live::build(&next, &self.token_requests)?));
        *current = next;
        Ok(())
    }
}

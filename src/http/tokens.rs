//! The tokens NSPS may send (`API_TOKEN`, or `API_TOKEN_FILE`, which `crate::rotation` watches).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// The tokens NSPS may send (`API_TOKEN`), shared by every request; replaced as a whole when
/// `API_TOKEN_FILE` changes, so a request sees the old list or the new one, never a mix.
#[derive(Clone)]
pub(crate) struct ApiTokens(std::sync::Arc<arc_swap::ArcSwap<Vec<SecretString>>>);

impl ApiTokens {
    pub(crate) fn new(tokens: Vec<SecretString>) -> Self {
        Self(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(tokens)))
    }

    pub(crate) fn replace(&self, tokens: Vec<SecretString>) {
        self.0.store(std::sync::Arc::new(tokens));
    }

    pub(crate) fn len(&self) -> usize {
        self.0.load().len()
    }

    /// Does any token equal `candidate`? Compares in constant time against every token (no
    /// early exit), so the answer time does not reveal which token or prefix matched.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let mut found = subtle::Choice::from(0u8);
        for token in self.0.load().iter() {
            found |= token.expose_secret().as_bytes().ct_eq(candidate);
        }
        found.into()
    }
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} token(s))", self.len())
    }
}

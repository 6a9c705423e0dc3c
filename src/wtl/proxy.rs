//! Egress proxies of every WTL call: `WTL_PROXY`, and the standard `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY` in either case.

use std::fmt;

use crate::telemetry::hide_userinfo;

/// Egress proxies for every WTL call. `explicit` (`WTL_PROXY`) wins over the environment's.
/// The URLs may carry proxy credentials: they are used, and shown only through
/// [`ProxySettings::shown`].
#[derive(Clone, Default)]
pub(crate) struct ProxySettings {
    pub(crate) explicit: Option<String>,
    pub(crate) https: Option<String>,
    pub(crate) http: Option<String>,
    pub(crate) all: Option<String>,
    pub(crate) no_proxy: Option<String>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl ProxySettings {
    /// The proxy (as `host:port`, never its credentials) a call to `url` goes through, if any:
    /// `WTL_PROXY`, else the scheme's own, else `ALL_PROXY`, unless `NO_PROXY` names the host
    /// (`*`, the host, or a domain it is in). For `check`'s DNS line; the calls themselves go
    /// through reqwest's own proxy matching.
    pub(crate) fn for_url(&self, url: &url::Url) -> Option<String> {
        let chosen = match &self.explicit {
            Some(p) => p,
            None if self.bypassed(url.host_str()?) => return None,
            None => {
                let by_scheme = if url.scheme() == "https" {
                    &self.https
                } else {
                    &self.http
                };
                by_scheme.as_ref().or(self.all.as_ref())?
            }
        };
        let proxy = url::Url::parse(chosen).ok()?;
        Some(format!(
            "{}:{}",
            proxy.host_str()?,
            proxy.port_or_known_default().unwrap_or(80)
        ))
    }

    /// Does `NO_PROXY` name `host`?
    fn bypassed(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.no_proxy.as_deref().is_some_and(|list| {
            list.split(',').map(|e| e.trim().to_ascii_lowercase()).any(|e| {
                let domain = e.trim_start_matches('.');
                e == "*" || (!domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}"))))
            })
        })
    }

    /// What is in force, for the start-up line: proxy credentials as `***`.
    pub(crate) fn shown(&self) -> String {
        if let Some(p) = &self.explicit {
            return format!("{} (WTL_PROXY, for every WTL call)", hide_userinfo(p));
        }
        let mut parts = Vec::new();
        for (name, value) in [("https", &self.https), ("http", &self.http), ("all", &self.all)] {
            if let Some(v) = value {
                parts.push(format!("{name}={}", hide_userinfo(v)));
            }
        }
        if parts.is_empty() {
            return "none".into();
        }
        if let Some(n) = &self.no_proxy {
            parts.push(format!("no_proxy={n}"));
        }
        parts.join(" ")
    }
}

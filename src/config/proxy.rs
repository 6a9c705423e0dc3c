//! Egress proxies: `WTL_PROXY`, and the standard `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY` in either case.

use std::collections::BTreeMap;
use std::fmt;

use super::ConfigError;

/// Egress proxies for every WTL call. `explicit` (`WTL_PROXY`) wins over the environment's.
/// The URLs may carry proxy credentials: they are used, and shown only through
/// [`ProxySettings::shown`].
#[derive(Clone, Default)]
pub struct ProxySettings {
    pub explicit: Option<String>,
    pub https: Option<String>,
    pub http: Option<String>,
    pub all: Option<String>,
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl ProxySettings {
    /// Reads `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (the lower-case spelling
    /// first, as curl does) and `WTL_PROXY`, each checked to be a URL.
    pub(crate) fn from_vars(vars: &BTreeMap<String, String>, explicit: Option<String>) -> Result<Self, ConfigError> {
        let read = |upper: &'static str| -> Result<Option<String>, ConfigError> {
            let lower = upper.to_ascii_lowercase();
            let value = [lower.as_str(), upper]
                .iter()
                .find_map(|k| vars.get(*k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()));
            value.map(|v| check_proxy_url(upper, &v)).transpose()
        };
        let no_proxy = ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|k| vars.get(*k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()));
        Ok(Self {
            explicit: explicit.map(|v| check_proxy_url("WTL_PROXY", v.trim())).transpose()?,
            https: read("HTTPS_PROXY")?,
            http: read("HTTP_PROXY")?,
            all: read("ALL_PROXY")?,
            no_proxy,
        })
    }

    /// The proxy (as `host:port`, never its credentials) a call to `url` goes through, if any:
    /// `WTL_PROXY`, else the scheme's own, else `ALL_PROXY`, unless `NO_PROXY` names the host
    /// (`*`, the host, or a domain it is in). For `check`'s DNS line; the calls themselves go
    /// through reqwest's own proxy matching.
    pub fn for_url(&self, url: &url::Url) -> Option<String> {
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
    pub fn shown(&self) -> String {
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

/// A proxy URL as reqwest takes it: a scheme it knows and a host. A bare `host:port` is read as
/// `http://host:port`, as curl does.
fn check_proxy_url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let text = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let url = url::Url::parse(&text).map_err(|e| ConfigError::new(var, format!("not a valid proxy URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(var, "must be an http:// or https:// proxy URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(var, "has no host"));
    }
    Ok(text)
}

/// A URL with its `user:password@` replaced by `***@`, for showing.
pub(crate) fn hide_userinfo(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        Ok(_) => text.to_string(),
        Err(_) => "(not shown)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(vars: &[(&str, &str)], explicit: Option<&str>) -> ProxySettings {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ProxySettings::from_vars(&vars, explicit.map(str::to_string)).expect("valid")
    }

    fn target(p: &ProxySettings, url: &str) -> Option<String> {
        p.for_url(&url::Url::parse(url).expect("url"))
    }

    #[test]
    fn the_proxy_for_a_url_follows_scheme_no_proxy_and_wtl_proxy() {
        let p = proxies(
            &[
                ("HTTPS_PROXY", "http://user:pw@secure.proxy:3128"),
                ("http_proxy", "plain.proxy:8080"),
                ("NO_PROXY", "internal.example,.corp"),
            ],
            None,
        );
        assert_eq!(
            target(&p, "https://hlr.example/wtl").as_deref(),
            Some("secure.proxy:3128")
        );
        assert_eq!(
            target(&p, "http://hlr.example/wtl").as_deref(),
            Some("plain.proxy:8080")
        );
        assert_eq!(target(&p, "https://internal.example/wtl"), None);
        assert_eq!(target(&p, "https://hlr.eu.corp/wtl"), None);
        let shown = p.shown();
        assert!(!shown.contains("pw"), "{shown}");
        let explicit = proxies(&[("NO_PROXY", "*")], Some("http://egress:3128"));
        assert_eq!(target(&explicit, "https://hlr.example").as_deref(), Some("egress:3128"));
        assert_eq!(target(&proxies(&[], None), "https://hlr.example"), None);
    }
}

//! Reading the proxy variables: `WTL_PROXY`, and the standard `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, `NO_PROXY` in either case, into the WTL client's [`ProxySettings`].

use std::collections::BTreeMap;

use super::ConfigError;
use crate::wtl::ProxySettings;

/// Reads `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (the lower-case spelling
/// first, as curl does) and `WTL_PROXY`, each checked to be a URL.
pub(super) fn proxy_settings(
    vars: &BTreeMap<String, String>,
    explicit: Option<String>,
) -> Result<ProxySettings, ConfigError> {
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
    Ok(ProxySettings {
        explicit: explicit.map(|v| check_proxy_url("WTL_PROXY", v.trim())).transpose()?,
        https: read("HTTPS_PROXY")?,
        http: read("HTTP_PROXY")?,
        all: read("ALL_PROXY")?,
        no_proxy,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(vars: &[(&str, &str)], explicit: Option<&str>) -> ProxySettings {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        proxy_settings(&vars, explicit.map(str::to_string)).expect("valid")
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

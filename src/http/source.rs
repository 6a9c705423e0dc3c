//! Who is calling: the client address and the source allowlist.
//!
//! Behind a proxy the socket's peer is the proxy; the caller is in `X-Forwarded-For`, where each
//! proxy appends the address it received the request from. With `TRUSTED_PROXIES=n` the client
//! address is the entry `n` places from the right (`1` = the last entry, written by the proxy
//! next to the connector); `0` means no proxy, the socket's peer. Entries further left were
//! written by the caller and can be forged, so they are never used. Fewer entries than `n`: the
//! address is unknown.
//!
//! [`note_client`] works the address out once per request (every route, so the access line's
//! `httpRequest.remoteIp` has it) and logs the raw header at DEBUG so an operator can confirm
//! `TRUSTED_PROXIES`; [`refusal`] refuses, on the event routes and `/metrics`, any address
//! outside `ALLOWED_SOURCE_RANGES` (an unknown one included), before the token is checked and
//! before the body is read.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::AppState;
use super::error::ApiError;

/// The caller's address as worked out by [`note_client`]; `None` when it cannot be known.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The client address: the socket's peer with no trusted proxy, else the entry `trusted`
/// places from the right of `X-Forwarded-For` (every header line of it, in order).
pub(crate) fn client_address(peer: Option<IpAddr>, headers: &HeaderMap, trusted: usize) -> Option<IpAddr> {
    if trusted == 0 {
        return peer.map(|ip| ip.to_canonical());
    }
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let entry = entries.len().checked_sub(trusted).and_then(|i| entries.get(i))?;
    parse_entry(entry).map(|ip| ip.to_canonical())
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`198.51.100.7:5123`,
/// `[2001:db8::7]:443`) or in brackets.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// Works out the client address of a request and keeps it in the request's extensions (called
/// by the access-line middleware, so every route has it).
pub(crate) fn note_client(state: &AppState, req: &mut Request) {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let trusted = state.server.trusted_proxies;
    let client = client_address(peer, req.headers(), trusted);
    if tracing::enabled!(tracing::Level::DEBUG) {
        let raw: Vec<&str> = req
            .headers()
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        tracing::debug!(
            x_forwarded_for = super::prefix(&raw.join(", "), 500),
            peer = peer.map(|p| p.to_canonical().to_string()),
            trusted_proxies = trusted,
            client_address = client.map(|c| c.to_string()),
            "client address"
        );
    }
    req.extensions_mut().insert(ClientAddr(client));
}

/// `ALLOWED_SOURCE_RANGES` as a middleware (`/metrics`): see [`refusal`].
pub(crate) async fn allow_source(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match refusal(&state, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// `ALLOWED_SOURCE_RANGES`: a request from any other address, or from an unknown one, is
/// answered 403 at once (its token is not checked, its body never read). `None`: allowed.
pub(crate) fn refusal(state: &AppState, req: &Request) -> Option<Response> {
    let ranges = state.server.allowed_sources.as_ref()?;
    let client = req.extensions().get::<ClientAddr>().and_then(|c| c.0);
    if client.is_some_and(|ip| ranges.iter().any(|range| range.contains(&ip))) {
        return None;
    }
    tracing::warn!(
        client_address = client.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
        "request refused: source address not allowed (ALLOWED_SOURCE_RANGES)"
    );
    Some(ApiError::source_not_allowed().into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(&X_FORWARDED_FOR, line.parse().expect("header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let h = headers(&["203.0.113.9"]);
        assert_eq!(client_address(Some(ip("10.1.2.3")), &h, 0), Some(ip("10.1.2.3")));
        assert_eq!(
            client_address(Some(ip("::ffff:10.1.2.3")), &h, 0),
            Some(ip("10.1.2.3")),
            "IPv4-mapped peers of a dual-stack socket are plain IPv4"
        );
    }

    #[test]
    fn the_entry_that_many_places_from_the_right_is_the_client() {
        let h = headers(&["198.51.100.1, 203.0.113.5", "192.0.2.44"]);
        assert_eq!(client_address(None, &h, 1), Some(ip("192.0.2.44")));
        assert_eq!(client_address(None, &h, 2), Some(ip("203.0.113.5")));
        assert_eq!(client_address(None, &h, 3), Some(ip("198.51.100.1")));
        assert_eq!(client_address(None, &h, 4), None, "fewer entries: unknown");
        assert_eq!(client_address(Some(ip("10.0.0.1")), &HeaderMap::new(), 1), None);
    }

    #[test]
    fn entries_with_ports_brackets_and_ipv6_are_read() {
        for (entry, want) in [
            ("198.51.100.7:5123", "198.51.100.7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::8]", "2001:db8::8"),
            ("2001:db8::9", "2001:db8::9"),
        ] {
            assert_eq!(client_address(None, &headers(&[entry]), 1), Some(ip(want)), "{entry}");
        }
        assert_eq!(client_address(None, &headers(&["unknown"]), 1), None);
        assert_eq!(
            client_address(None, &headers(&["1.2.3.4, "]), 1),
            None,
            "an empty last entry"
        );
    }
}

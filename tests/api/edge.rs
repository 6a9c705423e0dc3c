//! Who may call: the client address (`TRUSTED_PROXIES`, `X-Forwarded-For`) and the source
//! allowlist (`ALLOWED_SOURCE_RANGES`), with clients on other loopback addresses.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TOKEN, fixture, spawn_app, wtl_answering, wtl_bodies};

/// An HTTP client whose connections leave from `local` (127.0.0.2, ::1, ...).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().expect("address"))
        .no_proxy()
        .build()
        .expect("client")
}

async fn post_event(client: &reqwest::Client, url: &str, forwarded: &[&str]) -> reqwest::Response {
    let mut request = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(fixture("sim-deleted.json"));
    for value in forwarded {
        request = request.header("x-forwarded-for", *value);
    }
    request.send().await.expect("the connector answers")
}

async fn assert_refused(resp: reqwest::Response) {
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({"message": "Source address not allowed", "error": "Forbidden", "type": "AUTHENTICATION_ERROR"})
    );
}

#[tokio::test]
async fn only_the_allowed_address_reaches_the_event_route_and_metrics() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[("ALLOWED_SOURCE_RANGES", "127.0.0.1")]).await;
    let url = app.url("/process-event");

    let allowed = post_event(&client_from("127.0.0.1"), &url, &[]).await;
    assert_eq!(allowed.status(), 202);
    let other = client_from("127.0.0.2");
    assert_refused(post_event(&other, &url, &[]).await).await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 1, "the refused event reached no WTL call");

    let metrics = other
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_refused(metrics).await;
    for open in ["/health", "/ready"] {
        let resp = other.get(app.url(open)).send().await.expect("answer");
        assert_eq!(resp.status(), 200, "{open} stays open to probes from anywhere");
    }
}

#[tokio::test]
async fn a_refused_source_is_refused_before_its_token_is_checked() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[("ALLOWED_SOURCE_RANGES", "127.0.0.1")]).await;
    let resp = client_from("127.0.0.2")
        .post(app.url("/process-event"))
        .bearer_auth("a-wrong-token")
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 403, "403 for the source, not 401 for the token");
    assert!(resp.headers().get("www-authenticate").is_none());
}

#[tokio::test]
async fn cidr_ranges_admit_their_addresses_only() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[("ALLOWED_SOURCE_RANGES", "10.0.0.0/8, 127.0.0.0/30")]).await;
    let url = app.url("/process-event");
    for inside in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        assert_eq!(
            post_event(&client_from(inside), &url, &[]).await.status(),
            202,
            "{inside}"
        );
    }
    assert_refused(post_event(&client_from("127.0.0.4"), &url, &[]).await).await;
}

#[tokio::test]
async fn ipv6_clients_are_matched_against_ipv6_ranges() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    drop(probe);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    for (ranges, expected) in [("127.0.0.1", 403), ("::1", 202), ("::/0", 202)] {
        let settings = crate::helpers::settings(&wtl.uri(), &[("ALLOWED_SOURCE_RANGES", ranges)]);
        let app = nsps_wtl_connector::Application::bind(settings, "[::1]:0".parse().expect("addr"))
            .await
            .expect("binds on ::1");
        let url = format!("http://{}/process-event", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let status = post_event(&client_from("::1"), &url, &[]).await.status();
        assert_eq!(status, expected, "client ::1 with ALLOWED_SOURCE_RANGES={ranges}");
        let _ = tx.send(());
        let _ = task.await;
    }
}

#[tokio::test]
async fn behind_one_proxy_the_last_forwarded_entry_is_the_client_and_forged_ones_are_ignored() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(
        &wtl.uri(),
        &[("TRUSTED_PROXIES", "1"), ("ALLOWED_SOURCE_RANGES", "203.0.113.7")],
    )
    .await;
    let url = app.url("/process-event");
    let proxy = client_from("127.0.0.1");
    // What the proxy wrote (the last entry) decides; what the caller wrote before it does not.
    assert_eq!(
        post_event(&proxy, &url, &["198.51.100.1, 203.0.113.7"]).await.status(),
        202
    );
    assert_eq!(
        post_event(&proxy, &url, &["198.51.100.1", "203.0.113.7"])
            .await
            .status(),
        202,
        "several header lines"
    );
    assert_refused(post_event(&proxy, &url, &["203.0.113.7, 198.51.100.1"]).await).await;
    assert_refused(post_event(&proxy, &url, &[]).await).await;
    assert_refused(post_event(&proxy, &url, &["not-an-address"]).await).await;
}

#[tokio::test]
async fn with_two_proxies_one_entry_is_too_few_and_the_address_is_unknown() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(
        &wtl.uri(),
        &[("TRUSTED_PROXIES", "2"), ("ALLOWED_SOURCE_RANGES", "203.0.113.7")],
    )
    .await;
    let url = app.url("/process-event");
    let proxy = client_from("127.0.0.1");
    assert_eq!(
        post_event(&proxy, &url, &["203.0.113.7, 35.191.0.9"]).await.status(),
        202
    );
    assert_refused(post_event(&proxy, &url, &["203.0.113.7"]).await).await;
}

#[tokio::test]
async fn a_refused_request_is_answered_at_once_without_its_body_being_read() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[("ALLOWED_SOURCE_RANGES", "127.0.0.1")]).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut stream = socket.connect(app.addr).await.expect("connect");
    // A 1 MB body is announced and never sent: the answer must not wait for it.
    let head = format!(
        "POST /process-event HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("Source address not allowed"), "{text}");
}

#[tokio::test]
async fn without_an_allowlist_every_source_is_served() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = post_event(&client_from("127.0.0.3"), &app.url("/process-event"), &["198.51.100.1"]).await;
    assert_eq!(resp.status(), 202);
}

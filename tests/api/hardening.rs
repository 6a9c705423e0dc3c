//! Hostile clients: oversized heads, slow senders, odd trace ids.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let app = spawn_app("http://127.0.0.1:9", &[]).await;
    let big = "a".repeat(100 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = raw_exchange(app.addr, request.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "a 100 KiB head is not served: {}",
        answer.lines().next().unwrap_or("")
    );
    // The server is unharmed.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn a_client_that_sends_its_head_too_slowly_is_disconnected() {
    let app = spawn_app("http://127.0.0.1:9", &[("HEADER_READ_TIMEOUT", "0.5")]).await;
    let mut s = TcpStream::connect(app.addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // ...and never finishes the head.
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "the server closed the connection instead of waiting forever"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("200 OK"), "the half-sent request was not served: {text}");
}

#[tokio::test]
async fn unusable_trace_ids_are_replaced_and_hostile_ones_are_only_echoed_verbatim() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let long = "x".repeat(300);
    let resp = app
        .client
        .post(app.url("/process-event"))
        .bearer_auth(TOKEN)
        .header("x-request-id", long.as_str())
        .header("x-b3-traceid", r#"abc"}{"level":"ERROR""#)
        .body(fixture("sim-created.json"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 202);
    let rid = resp.headers()["x-request-id"].to_str().expect("text").to_string();
    assert!(
        uuid::Uuid::parse_str(&rid).is_ok(),
        "an over-long id is replaced by a UUID: {rid}"
    );
    assert_eq!(resp.headers()["x-b3-traceid"], r#"abc"}{"level":"ERROR""#);
    let received = wtl.received_requests().await.expect("recorded");
    assert_eq!(received[0].headers["x-request-id"], rid.as_str());
}

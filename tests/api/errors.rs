//! SPEC §5: every error row, produced by a real failure of a real server on loopback.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const NO_RETRY: &[(&str, &str)] = &[("WTL_MAX_RETRIES", "0")];

#[tokio::test]
async fn wtl_400_is_422_with_wtl_error_text() {
    let wtl = wtl_answering(400, r#"{"result":false,"error":"Unknown cs_profile cs-pp-20250319"}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let body = error_body(app.send_fixture("sim-updated-open.json").await, 422, "VALIDATION_ERROR").await;
    assert_eq!(body["error"], "Unknown cs_profile cs-pp-20250319");
    assert_eq!(body["details"]["wtl_status"], 400);
    assert_eq!(
        body["details"]["failed_call"],
        json!({"action":"update","imsi":"001010000020349"})
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 1, "a rejection is not retried");
}

#[tokio::test]
async fn wtl_422_is_422() {
    let wtl = wtl_answering(422, r#"{"detail":"msisdn already assigned"}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let body = error_body(app.send_fixture("sim-updated-open.json").await, 422, "VALIDATION_ERROR").await;
    assert_eq!(body["error"], "msisdn already assigned");
}

#[tokio::test]
async fn wtl_404_to_an_update_is_404() {
    let wtl = wtl_answering(404, r#"{"error":"subscriber not found"}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let body = error_body(app.send_fixture("sim-updated-open.json").await, 404, "VALIDATION_ERROR").await;
    assert_eq!(body["error"], "subscriber not found");
}

#[tokio::test]
async fn wtl_404_to_a_delete_and_409_to_an_insert_count_as_done() {
    let wtl = wtl_answering(404, r#"{"error":"not found"}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app.send_fixture("sim-deleted.json").await;
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(json(resp).await["actions"][0]["result"], "already_applied");

    let wtl = wtl_answering(409, r#"{"error":"exists"}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app.send_fixture("sim-created.json").await;
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(json(resp).await["actions"][0]["result"], "already_applied");
}

#[tokio::test]
async fn wtl_429_is_429_with_retry_after_passed_on() {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&wtl)
        .await;
    let app = spawn_app(&wtl.uri(), NO_RETRY).await;
    let resp = app.send_fixture("sim-updated-open.json").await;
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    error_body(resp, 429, "RATE_LIMIT_ERROR").await;
}

#[tokio::test]
async fn wtl_401_and_403_are_500_naming_wtl_authentication() {
    for status in [401, 403] {
        let wtl = wtl_answering(status, r#"{"error":"bad token"}"#).await;
        let app = spawn_app(&wtl.uri(), &[("WTL_API_TOKEN", "wtl-secret-value")]).await;
        let resp = app.send_fixture("sim-updated-open.json").await;
        let text = resp.text().await.expect("text");
        assert!(!text.contains("wtl-secret-value"), "the secret never reaches an answer");
        let body: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["type"], "SERVICE_ERROR");
        assert!(
            body["message"]
                .as_str()
                .expect("text")
                .contains("WTL authentication failed"),
            "{body}"
        );
        let received = wtl.received_requests().await.expect("recorded");
        assert_eq!(received.len(), 1, "credentials errors are not retried");
        assert_eq!(received[0].headers["authorization"], "Bearer wtl-secret-value");
    }
    let wtl = wtl_answering(401, "").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    error_body(app.send_fixture("sim-updated-open.json").await, 500, "SERVICE_ERROR").await;
}

#[tokio::test]
async fn wtl_5xx_failure_body_and_unreadable_body_are_500() {
    for (status, body, expect) in [
        (500, r#"{"error":"database down"}"#, "database down"),
        (200, r#"{"result":false,"error":"profile missing"}"#, "profile missing"),
        (200, r#"{"error":"half done"}"#, "half done"),
        (200, "<html>gateway</html>", "not JSON"),
    ] {
        let wtl = wtl_answering(status, body).await;
        let app = spawn_app(&wtl.uri(), NO_RETRY).await;
        let err = error_body(app.send_fixture("sim-updated-open.json").await, 500, "SERVICE_ERROR").await;
        assert!(
            err["error"].as_str().expect("text").contains(expect),
            "{status} {body}: {err}"
        );
    }
}

#[tokio::test]
async fn wtl_timeout_is_503_connection_error() {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&wtl)
        .await;
    let app = spawn_app(
        &wtl.uri(),
        &[("WTL_MAX_RETRIES", "0"), ("WTL_HTTP_REQUESTS_TIMEOUT", "0.3")],
    )
    .await;
    let body = error_body(app.send_fixture("sim-updated-open.json").await, 503, "CONNECTION_ERROR").await;
    assert!(body["error"].as_str().expect("text").contains("timeout"), "{body}");
}

#[tokio::test]
async fn wtl_connection_refused_is_503_connection_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let app = spawn_app(&url, NO_RETRY).await;
    let body = error_body(app.send_fixture("sim-updated-open.json").await, 503, "CONNECTION_ERROR").await;
    assert!(
        body["error"].as_str().expect("text").contains("could not be reached"),
        "{body}"
    );
}

#[tokio::test]
async fn wtl_dns_failure_is_503_connection_error() {
    let app = spawn_app(
        "http://wtl.does-not-exist.invalid",
        &[("WTL_MAX_RETRIES", "0"), ("WTL_HTTP_REQUESTS_TIMEOUT", "3")],
    )
    .await;
    error_body(app.send_fixture("sim-updated-open.json").await, 503, "CONNECTION_ERROR").await;
}

#[tokio::test]
async fn a_panic_in_the_connector_is_500_internal_error() {
    let routes = axum::Router::new().route(
        "/explode",
        axum::routing::get(|| async {
            let v: Vec<u8> = Vec::new();
            // An out-of-bounds index: a genuine bug, caught at the edge.
            #[allow(clippy::indexing_slicing)]
            let _ = v[usize::from(v.is_empty())];
            "unreachable"
        }),
    );
    let app = spawn_with(settings("http://127.0.0.1:9", &[]), routes).await;
    let resp = app.client.get(app.url("/explode")).send().await.expect("answer");
    assert!(
        resp.headers().contains_key("x-request-id"),
        "the panic answer still carries the ids"
    );
    let body = error_body(resp, 500, "INTERNAL_ERROR").await;
    assert!(
        !body.to_string().contains("index out of bounds"),
        "no panic text leaks: {body}"
    );
    // The server is still serving.
    let resp = app.client.get(app.url("/health")).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn sim_replaced_step_two_failure_is_answered_and_names_what_was_done() {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .and(body_partial_json(json!({"imsi": "001010000020349"})))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"result":true}"#))
        .mount(&wtl)
        .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .and(body_partial_json(json!({"imsi": "001010000020351"})))
        .respond_with(ResponseTemplate::new(400).set_body_string(r#"{"error":"unknown imsi range"}"#))
        .mount(&wtl)
        .await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let body = error_body(app.send_fixture("sim-replaced.json").await, 422, "VALIDATION_ERROR").await;
    assert_eq!(
        body["details"]["completed_calls"],
        json!([{"action":"update","imsi":"001010000020349","result":"applied"}])
    );
    assert_eq!(body["details"]["failed_call"]["imsi"], "001010000020351");
    let bodies = wtl_bodies(&wtl).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["imsi"], "001010000020349", "the old SIM is released first");

    // NSPS redelivers: the failed event is not remembered as done, so both steps run again.
    let _ = app.send_fixture("sim-replaced.json").await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 4);
}

#[tokio::test]
async fn secrets_never_appear_in_error_answers() {
    let wtl = wtl_answering(500, r#"{"error":"boom"}"#).await;
    let app = spawn_app(
        &wtl.uri(),
        &[
            ("WTL_AUTH", "basic"),
            ("WTL_API_USERNAME", "hlr-user"),
            ("WTL_API_PASSWORD", "hlr-password-secret"),
            ("WTL_MAX_RETRIES", "0"),
        ],
    )
    .await;
    let text = app
        .send_fixture("sim-updated-open.json")
        .await
        .text()
        .await
        .expect("text");
    assert!(!text.contains("hlr-password-secret"));
    let received = wtl.received_requests().await.expect("recorded");
    // base64("hlr-user:hlr-password-secret")
    assert_eq!(
        received[0].headers["authorization"],
        "Basic aGxyLXVzZXI6aGxyLXBhc3N3b3JkLXNlY3JldA=="
    );
}

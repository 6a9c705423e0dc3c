//! A delivery cut off at any await (the client hangs up, `REQUEST_TIMEOUT` fires) leaves
//! nothing behind that blocks or misleads a later delivery of the same event: each test cuts
//! one off where it holds shared state, then shows that a redelivery completes normally and
//! makes its WTL call, and that no delivery is left registered.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const IMSI: &str = "001010000077001";

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(r#"{"result":true}"#)
}

/// A WTL whose `/prov` answers `first` once, then 200 at once.
async fn wtl_first(first: ResponseTemplate) -> MockServer {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(InTurn::new(vec![first, ok()]))
        .mount(&wtl)
        .await;
    wtl
}

fn update(id: &str) -> String {
    event(id, "SIM/Updated", open_sim(IMSI))
}

/// Sends `body`, failing the test (instead of stalling it) if no answer comes in 10 s.
async fn send_in_time(app: &TestApp, body: &str) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(10), app.send(body))
        .await
        .expect("the connector answered in time")
}

/// Waits until no delivery is registered as running and no IMSI lock is held or awaited.
async fn settles(app: &TestApp) {
    for _ in 0..100 {
        if app.state.memory.in_flight() == (0, 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("deliveries left behind: {:?}", app.state.memory.in_flight());
}

async fn processed(resp: reqwest::Response) {
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(json(resp).await["message"], "Event processed successfully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_client_hung_up_while_its_imsi_was_busy_goes_through_on_redelivery() {
    let wtl = wtl_first(ok().set_delay(Duration::from_millis(1200))).await;
    let app = std::sync::Arc::new(spawn_app(&wtl.uri(), &[]).await);
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.send(&update("first")).await.status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second event waits for the IMSI the first holds; its client gives up meanwhile.
    app.send_and_hang_up(&update("second"), Duration::from_millis(300))
        .await;
    assert_eq!(first.await.expect("task"), 202);
    settles(&app).await;

    processed(send_in_time(&app, &update("second")).await).await;
    let calls = received_on(&wtl, "/prov").await;
    assert_eq!(calls.len(), 2, "one call for the first event, one for the redelivery");
    settles(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_off_at_wtl_lets_its_waiting_twin_run_and_later_ones_see_the_result() {
    let wtl = wtl_first(ok().set_delay(Duration::from_secs(4))).await;
    let app = std::sync::Arc::new(spawn_app(&wtl.uri(), &[("REQUEST_TIMEOUT", "1")]).await);
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.send(&update("twice")).await.status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The twin waits for the first delivery, which REQUEST_TIMEOUT cuts off at WTL.
    let twin = send_in_time(&app, &update("twice")).await;
    assert_eq!(first.await.expect("task"), 503, "the first delivery was cut off");
    processed(twin).await;
    let again = send_in_time(&app, &update("twice")).await;
    assert_eq!(json(again).await["message"], "Event already processed");
    assert_eq!(received_on(&wtl, "/prov").await.len(), 2);
    settles(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_off_in_a_retry_wait_leaves_the_event_free_for_redelivery() {
    let busy = ResponseTemplate::new(503).insert_header("retry-after", "3");
    let wtl = wtl_first(busy).await;
    let app = spawn_app(&wtl.uri(), &[("REQUEST_TIMEOUT", "1"), ("WTL_RETRY_AFTER_MAX", "10")]).await;
    let cut = send_in_time(&app, &update("waits")).await;
    assert_eq!(cut.status().as_u16(), 503);
    settles(&app).await;
    processed(send_in_time(&app, &update("waits")).await).await;
    assert_eq!(received_on(&wtl, "/prov").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_off_while_waiting_for_the_rate_limit_leaves_nothing_behind() {
    let wtl = wtl_first(ok()).await;
    let app = spawn_app(&wtl.uri(), &[("REQUEST_TIMEOUT", "1"), ("WTL_RATE_LIMIT", "0.5")]).await;
    processed(send_in_time(&app, &update("one")).await).await;
    // The next slot is 2 s away: this delivery is cut off while it waits for it.
    assert_eq!(send_in_time(&app, &update("two")).await.status().as_u16(), 503);
    settles(&app).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    processed(send_in_time(&app, &update("two")).await).await;
    assert_eq!(received_on(&wtl, "/prov").await.len(), 2);
}

/// A token endpoint and WTL on one server: the token answers come in turn.
async fn oauth_server(tokens: Vec<ResponseTemplate>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(InTurn::new(tokens))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ok())
        .mount(&server)
        .await;
    server
}

async fn spawn_oauth_app(server: &MockServer, extra: &[(&str, &str)]) -> TestApp {
    let token_url = format!("{}/oauth/token", server.uri());
    let mut vars = vec![
        ("WTL_AUTH", "oauth2"),
        ("WTL_OAUTH_TOKEN_URL", token_url.as_str()),
        ("WTL_OAUTH_CLIENT_ID", "connector"),
        ("WTL_OAUTH_CLIENT_SECRET", "client-secret"),
    ];
    vars.extend_from_slice(extra);
    spawn_app(&server.uri(), &vars).await
}

fn token(body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refresh_cut_off_keeps_the_refresh_token_and_frees_the_lock() {
    let server = oauth_server(vec![
        token(json!({"access_token": "tok-1", "expires_in": 1, "refresh_token": "refresh-1"})),
        // The refresh is answered too late: REQUEST_TIMEOUT cuts the event off meanwhile.
        token(json!({"access_token": "late", "expires_in": 3600})).set_delay(Duration::from_secs(4)),
        token(json!({"access_token": "tok-2", "expires_in": 3600})),
    ])
    .await;
    let app = spawn_oauth_app(&server, &[("REQUEST_TIMEOUT", "1")]).await;
    processed(send_in_time(&app, &update("before")).await).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send_in_time(&app, &update("during")).await.status().as_u16(), 503);
    processed(send_in_time(&app, &update("during")).await).await;

    let forms: Vec<String> = received_on(&server, "/oauth/token")
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(forms.len(), 3, "{forms:?}");
    for form in &forms[1..] {
        assert!(form.contains("grant_type=refresh_token"), "{form}");
        assert!(form.contains("refresh_token=refresh-1"), "{form}");
    }
    let auths: Vec<String> = received_on(&server, "/prov")
        .await
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(auths, vec!["Bearer tok-1", "Bearer tok-2"]);
    settles(&app).await;
}

#[tokio::test]
async fn odd_token_lifetimes_never_fail_an_event() {
    let enc = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let huge_jwt = format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(r#"{"exp":1e300}"#));
    for (i, answer) in [
        json!({"access_token": "a", "expires_in": 1e300}),
        json!({"access_token": "b", "expires_in": -5}),
        json!({"access_token": "c", "expires_in": "soon"}),
        json!({"access_token": "d", "expires_in": "1e300"}),
        json!({"access_token": huge_jwt}),
    ]
    .into_iter()
    .enumerate()
    {
        let server = oauth_server(vec![token(answer.clone())]).await;
        let app = spawn_oauth_app(&server, &[]).await;
        processed(send_in_time(&app, &update(&format!("odd-{i}"))).await).await;
        let prov = received_on(&server, "/prov").await;
        assert_eq!(prov.len(), 1, "{answer}");
        let expected = format!("Bearer {}", answer["access_token"].as_str().expect("text"));
        assert_eq!(prov[0].headers["authorization"], expected.as_str());
    }
}

#[tokio::test]
async fn a_malformed_token_lifetime_means_renew_at_the_next_use() {
    let server = oauth_server(vec![
        token(json!({"access_token": "tok-1", "expires_in": -5})),
        token(json!({"access_token": "tok-2", "expires_in": 3600})),
    ])
    .await;
    let app = spawn_oauth_app(&server, &[]).await;
    processed(send_in_time(&app, &update("one")).await).await;
    processed(send_in_time(&app, &update("two")).await).await;
    processed(send_in_time(&app, &update("three")).await).await;
    assert_eq!(received_on(&server, "/oauth/token").await.len(), 2);
    let auths: Vec<String> = received_on(&server, "/prov")
        .await
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(auths, vec!["Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]);
}

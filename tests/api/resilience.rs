//! Retries, Retry-After, timeouts, OAuth2 tokens and the outbound rate limit, against wiremock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;

/// Answers with `template` and records when each request arrived.
struct Timed {
    template: ResponseTemplate,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for Timed {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrivals.lock().expect("lock").push(Instant::now());
        self.template.clone()
    }
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(r#"{"result":true}"#)
}

async fn prov_count(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/prov")
        .count()
}

#[tokio::test]
async fn two_503s_then_200_succeeds_after_exactly_three_attempts() {
    let wtl = wtl_failing_first(503, 2).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app.send_fixture("sim-updated-open.json").await;
    assert_eq!(resp.status().as_u16(), 202);
    let bodies = wtl_bodies(&wtl).await;
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every attempt sends the same body"
    );
    let metrics = app.state.metrics.render();
    assert!(metrics.contains("wtl_retries_total{action=\"update\"} 2"), "{metrics}");
}

#[tokio::test]
async fn retries_stop_at_wtl_max_retries() {
    for (status, kind) in [(502, "SERVICE_ERROR"), (504, "SERVICE_ERROR"), (503, "SERVICE_ERROR")] {
        let wtl = wtl_answering(status, "").await;
        let app = spawn_app(&wtl.uri(), &[("WTL_MAX_RETRIES", "3")]).await;
        error_body(app.send_fixture("sim-updated-open.json").await, 500, kind).await;
        assert_eq!(prov_count(&wtl).await, 4, "{status}: one attempt and three retries");
    }
}

#[tokio::test]
async fn answers_that_retrying_cannot_fix_are_tried_once() {
    for status in [400, 401, 403, 404, 409, 422, 500] {
        let wtl = wtl_answering(status, r#"{"error":"no"}"#).await;
        let app = spawn_app(&wtl.uri(), &[]).await;
        let resp = app.send_fixture("sim-updated-open.json").await;
        assert!(resp.status().as_u16() >= 400, "{status}");
        assert_eq!(prov_count(&wtl).await, 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn retry_after_one_second_is_honoured() {
    let wtl = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Timed {
            template: ResponseTemplate::new(429).insert_header("retry-after", "1"),
            arrivals: arrivals.clone(),
        })
        .up_to_n_times(1)
        .mount(&wtl)
        .await;
    Mock::given(method("POST"))
        .respond_with(Timed {
            template: ok(),
            arrivals: arrivals.clone(),
        })
        .mount(&wtl)
        .await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    assert_eq!(app.send_fixture("sim-updated-open.json").await.status().as_u16(), 202);
    let t = arrivals.lock().expect("lock").clone();
    assert_eq!(t.len(), 2);
    let gap = t[1] - t[0];
    assert!(
        gap >= Duration::from_secs(1),
        "waited {gap:?}, not the second WTL asked for"
    );
    assert!(
        gap < Duration::from_secs(5),
        "waited {gap:?}: far more than the second WTL asked for"
    );
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_passed_on_not_waited_for() {
    for (status, expected, kind) in [(429, 429, "RATE_LIMIT_ERROR"), (503, 503, "SERVICE_ERROR")] {
        let wtl = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).insert_header("retry-after", "3600"))
            .mount(&wtl)
            .await;
        let app = spawn_app(&wtl.uri(), &[]).await;
        let resp = app.send_fixture("sim-updated-open.json").await;
        assert_eq!(
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("3600")
        );
        error_body(resp, expected, kind).await;
        assert_eq!(prov_count(&wtl).await, 1, "{status}: an hour is not waited for");
    }
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_read() {
    let wtl = MockServer::start().await;
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(7200));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", when.as_str()))
        .mount(&wtl)
        .await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app.send_fixture("sim-updated-open.json").await;
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((7100..=7200).contains(&after), "{after}");
    assert_eq!(prov_count(&wtl).await, 1);
}

#[tokio::test]
async fn a_timeout_then_success_is_retried() {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok().set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .mount(&wtl)
        .await;
    Mock::given(method("POST")).respond_with(ok()).mount(&wtl).await;
    let app = spawn_app(&wtl.uri(), &[("WTL_HTTP_REQUESTS_TIMEOUT", "0.3")]).await;
    assert_eq!(app.send_fixture("sim-updated-open.json").await.status().as_u16(), 202);
    assert_eq!(prov_count(&wtl).await, 2);
}

#[tokio::test]
async fn the_whole_event_stays_within_wtl_total_timeout() {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok().set_delay(Duration::from_secs(10)))
        .mount(&wtl)
        .await;
    let app = spawn_app(
        &wtl.uri(),
        &[
            ("WTL_HTTP_REQUESTS_TIMEOUT", "30"),
            ("WTL_TOTAL_TIMEOUT", "1"),
            ("WTL_MAX_RETRIES", "5"),
        ],
    )
    .await;
    let started = Instant::now();
    error_body(app.send_fixture("sim-updated-open.json").await, 503, "CONNECTION_ERROR").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut at the 1 s budget, not at the 10 s answer"
    );
}

/// A token endpoint on `server` that hands out `tokens` in turn (the last one repeatedly).
async fn token_endpoint(server: &MockServer, tokens: &[serde_json::Value], delay: Duration) {
    for (i, t) in tokens.iter().enumerate() {
        let mock = Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(t).set_delay(delay));
        if i + 1 < tokens.len() {
            mock.up_to_n_times(1).mount(server).await;
        } else {
            mock.mount(server).await;
        }
    }
}

fn oauth_vars(server: &MockServer) -> Vec<(String, String)> {
    vec![
        ("WTL_AUTH".into(), "oauth2".into()),
        ("WTL_OAUTH_TOKEN_URL".into(), format!("{}/oauth/token", server.uri())),
        ("WTL_OAUTH_CLIENT_ID".into(), "connector".into()),
        ("WTL_OAUTH_CLIENT_SECRET".into(), "client-secret".into()),
        ("WTL_OAUTH_SCOPE".into(), "hlr.provision".into()),
    ]
}

async fn spawn_oauth(server: &MockServer, extra: &[(&str, &str)]) -> TestApp {
    let owned = oauth_vars(server);
    let mut vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.extend_from_slice(extra);
    spawn_app(&server.uri(), &vars).await
}

async fn token_requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/oauth/token")
        .collect()
}

#[tokio::test]
async fn fifty_concurrent_events_fetch_the_token_once() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        &[json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600})],
        Duration::from_millis(300),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let app = Arc::new(spawn_oauth(&server, &[]).await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let body = event(
                &format!("ev-{i}"),
                "SIM/Deleted",
                json!({"sim_info": {"imsi": format!("0010100000{i:05}")}}),
            );
            app.send(&body).await.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 202);
    }
    let tokens = token_requests(&server).await;
    assert_eq!(tokens.len(), 1, "one token request for 50 events");
    let form = String::from_utf8_lossy(&tokens[0].body).to_string();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=hlr.provision"), "{form}");
    // base64("connector:client-secret")
    assert_eq!(
        tokens[0].headers["authorization"],
        "Basic Y29ubmVjdG9yOmNsaWVudC1zZWNyZXQ="
    );
    assert_eq!(tokens[0].headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(prov_count(&server).await, 50);
}

#[tokio::test]
async fn an_expired_token_is_renewed_with_the_refresh_token() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        &[
            json!({"access_token": "tok-1", "expires_in": 1, "refresh_token": "refresh-1"}),
            json!({"access_token": "tok-2", "expires_in": 3600}),
        ],
        Duration::ZERO,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let app = spawn_oauth(&server, &[]).await;
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 202);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.send_fixture("sim-deleted.json").await.status().as_u16(), 202);
    let tokens = token_requests(&server).await;
    assert_eq!(tokens.len(), 2);
    let refresh = String::from_utf8_lossy(&tokens[1].body).to_string();
    assert!(refresh.contains("grant_type=refresh_token"), "{refresh}");
    assert!(refresh.contains("refresh_token=refresh-1"), "{refresh}");
    let calls = server.received_requests().await.unwrap_or_default();
    let auths: Vec<String> = calls
        .iter()
        .filter(|r| r.url.path() == "/prov")
        .map(|r| r.headers["authorization"].to_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(auths, vec!["Bearer tok-1", "Bearer tok-2"]);
}

#[tokio::test]
async fn a_failed_refresh_falls_back_to_a_fresh_grant() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;
    token_endpoint(
        &server,
        &[
            json!({"access_token": "tok-1", "expires_in": 1, "refresh_token": "refresh-1"}),
            json!({"access_token": "tok-2", "expires_in": 3600}),
        ],
        Duration::ZERO,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let app = spawn_oauth(&server, &[]).await;
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 202);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.send_fixture("sim-deleted.json").await.status().as_u16(), 202);
    let grants: Vec<String> = token_requests(&server)
        .await
        .iter()
        .map(|r| {
            String::from_utf8_lossy(&r.body)
                .split('&')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        grants,
        vec![
            "grant_type=client_credentials",
            "grant_type=refresh_token",
            "grant_type=client_credentials"
        ]
    );
}

#[tokio::test]
async fn jwt_exp_is_used_when_expires_in_is_absent() {
    use base64::Engine;
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let jwt = format!(
        "{}.{}.sig",
        enc.encode(r#"{"alg":"HS256"}"#),
        enc.encode(format!(r#"{{"exp":{exp}}}"#))
    );
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        &[json!({"access_token": jwt}), json!({"access_token": "tok-2"})],
        Duration::ZERO,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let app = spawn_oauth(&server, &[]).await;
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.send_fixture("sim-deleted.json").await.status().as_u16(), 202);
    assert_eq!(
        token_requests(&server).await.len(),
        2,
        "the JWT expired, so a new token was fetched"
    );
}

#[tokio::test]
async fn a_401_renews_the_token_once_and_repeats_the_call_once() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        &[
            json!({"access_token": "tok-1", "expires_in": 3600}),
            json!({"access_token": "tok-2", "expires_in": 3600}),
        ],
        Duration::ZERO,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .and(header("authorization", "Bearer tok-2"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let app = spawn_oauth(&server, &[]).await;
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 202);
    assert_eq!(token_requests(&server).await.len(), 2);
    assert_eq!(prov_count(&server).await, 2);
}

#[tokio::test]
async fn a_401_that_persists_after_renewal_is_a_service_error() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        &[json!({"access_token": "tok", "expires_in": 3600})],
        Duration::ZERO,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let app = spawn_oauth(&server, &[]).await;
    let body = error_body(app.send_fixture("sim-created.json").await, 500, "SERVICE_ERROR").await;
    assert!(
        body["message"]
            .as_str()
            .expect("text")
            .contains("WTL authentication failed")
    );
    assert_eq!(prov_count(&server).await, 2, "one call, one repeat after renewal");
    assert_eq!(token_requests(&server).await.len(), 2);
}

#[tokio::test]
async fn the_password_grant_is_used_when_a_username_is_set() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        &[json!({"access_token": "tok", "expires_in": 3600})],
        Duration::ZERO,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let app = spawn_oauth(
        &server,
        &[("WTL_API_USERNAME", "hlr-admin"), ("WTL_API_PASSWORD", "p@ss word")],
    )
    .await;
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 202);
    let form = String::from_utf8_lossy(&token_requests(&server).await[0].body).to_string();
    assert!(form.contains("grant_type=password"), "{form}");
    assert!(form.contains("username=hlr-admin"), "{form}");
    assert!(form.contains("password=p%40ss+word"), "{form}");
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_gives_a_clear_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let token_url = format!("http://{}/oauth/token", closed.local_addr().expect("addr"));
    drop(closed);
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(
        &wtl.uri(),
        &[
            ("WTL_AUTH", "oauth2"),
            ("WTL_OAUTH_TOKEN_URL", &token_url),
            ("WTL_OAUTH_CLIENT_ID", "c"),
            ("WTL_OAUTH_CLIENT_SECRET", "s"),
            ("WTL_MAX_RETRIES", "1"),
        ],
    )
    .await;
    let body = error_body(app.send_fixture("sim-created.json").await, 503, "CONNECTION_ERROR").await;
    assert!(
        body["message"].as_str().expect("text").contains("token endpoint"),
        "{body}"
    );
    assert!(body["error"].as_str().expect("text").contains(&token_url), "{body}");
    assert!(wtl_bodies(&wtl).await.is_empty(), "no WTL call without a token");
}

#[tokio::test]
async fn a_token_endpoint_that_refuses_gives_a_500_naming_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        .mount(&server)
        .await;
    let app = spawn_oauth(&server, &[]).await;
    let body = error_body(app.send_fixture("sim-created.json").await, 500, "SERVICE_ERROR").await;
    assert!(
        body["error"].as_str().expect("text").contains("invalid_client"),
        "{body}"
    );
    assert!(
        body["message"].as_str().expect("text").contains("token endpoint"),
        "{body}"
    );
    assert_eq!(token_requests(&server).await.len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn a_hanging_token_endpoint_is_cut_at_wtl_total_timeout() {
    let server = MockServer::start().await;
    token_endpoint(
        &server,
        &[json!({"access_token": "tok", "expires_in": 3600})],
        Duration::from_secs(20),
    )
    .await;
    let app = spawn_oauth(
        &server,
        &[("WTL_TOTAL_TIMEOUT", "1"), ("WTL_HTTP_REQUESTS_TIMEOUT", "30")],
    )
    .await;
    let started = Instant::now();
    error_body(app.send_fixture("sim-created.json").await, 503, "CONNECTION_ERROR").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut at the budget, not at the 20 s answer"
    );
}

#[tokio::test]
async fn the_rate_limit_spreads_a_burst() {
    let wtl = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Timed {
            template: ok(),
            arrivals: arrivals.clone(),
        })
        .mount(&wtl)
        .await;
    let app = Arc::new(spawn_app(&wtl.uri(), &[("WTL_RATE_LIMIT", "10")]).await);
    let mut tasks = Vec::new();
    for i in 0..11 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let body = event(
                &format!("burst-{i}"),
                "SIM/Deleted",
                json!({"sim_info": {"imsi": format!("0010100000{i:05}")}}),
            );
            app.send(&body).await.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 202);
    }
    let mut t = arrivals.lock().expect("lock").clone();
    t.sort();
    assert_eq!(t.len(), 11);
    // 11 calls at 10 per second: the last cannot reach WTL sooner than 1 s after the first.
    assert!(t[10] - t[0] >= Duration::from_millis(990), "{:?}", t[10] - t[0]);
}

#[tokio::test]
async fn every_event_answer_is_counted_once_by_outcome_including_those_cut_off_at_shutdown() {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok().set_delay(Duration::from_secs(10)))
        .mount(&wtl)
        .await;
    let app = spawn_app(&wtl.uri(), &[("SHUTDOWN_TIMEOUT", "0.3")]).await;
    assert_eq!(app.send("{not json").await.status().as_u16(), 422);
    let client = app.client.clone();
    let url = app.url("/process-event");
    let running = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(fixture("sim-updated-open.json"))
            .send()
            .await
            .expect("answered")
            .status()
            .as_u16()
    });
    while prov_count(&wtl).await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = app.state.clone();
    app.stop().await;
    assert_eq!(running.await.expect("task"), 503, "cut off at SHUTDOWN_TIMEOUT");
    let text = state.metrics.render();
    let counted: Vec<&str> = text.lines().filter(|l| l.starts_with("nsps_events_total{")).collect();
    assert_eq!(
        counted,
        [
            "nsps_events_total{event_type=\"other\",outcome=\"cut_off\"} 1",
            "nsps_events_total{event_type=\"other\",outcome=\"invalid\"} 1",
        ],
        "{text}"
    );
}

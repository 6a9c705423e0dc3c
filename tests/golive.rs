//! Go-live tools: `plan` (the built binary, offline), `check` (against reachable and unreachable
//! WTLs, token endpoints, TLS with a private CA and Redis), and `WTL_DRY_RUN`.

// Test helpers are shared between the test modules as `pub`; the visibility lint is for the
// library's API.
#![allow(unreachable_pub)]

#[path = "api/stands.rs"]
mod stands;

use std::io::Write;
use std::process::{Command, Stdio};

use nsps_wtl_connector::Settings;
use nsps_wtl_connector::{Check, check};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_nsps-wtl-connector");

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `plan` with only `vars` in the environment (in an empty directory: no `.env`).
fn plan(args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("nsps-wtl-plan-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut cmd = Command::new(BIN);
    cmd.arg("plan")
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn plan_fixture(name: &str, vars: &[(&str, &str)]) -> (i32, Value) {
    let (code, out) = plan(&[&fixture_path(name)], vars, None);
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {out}")),
    )
}

fn update(imsi: &str, status: &str, cs: &str, eps: &str, msisdn: &[&str]) -> Value {
    json!({"action": "update", "body": {"imsi": imsi, "subscriber_status": status, "cs_profile": cs,
        "eps_profile": eps, "msisdn": msisdn, "action": "update"}})
}

#[test]
fn plan_gives_exactly_the_calls_of_every_fixture() {
    let open = update(
        "001010000020349",
        "serviceGranted",
        "cs-pp-20250319",
        "eps-pp-20250319",
        &["79123456789"],
    );
    let cases: Vec<(&str, Vec<Value>)> = vec![
        ("sim-updated-open.json", vec![open.clone()]),
        (
            "sim-updated-blocked.json",
            vec![update(
                "001010000020349",
                "operatorDeterminedBarring",
                "cs-pp-20250319",
                "eps-pp-20250319",
                &["79123456789"],
            )],
        ),
        (
            "sim-updated-suspended.json",
            vec![update(
                "001010000020349",
                "operatorDeterminedBarring",
                "cs-pp-20250319",
                "eps-pp-20250319",
                &[],
            )],
        ),
        ("sim-updated-raw-codes-policy-list.json", vec![open.clone()]),
        (
            "sim-updated-default-profiles.json",
            vec![update(
                "001010000020349",
                "serviceGranted",
                "default",
                "default",
                &["79123456789"],
            )],
        ),
        (
            "sim-created.json",
            vec![
                json!({"action": "insert", "body": {"imsi": "001010000020350", "subscriber_status": "operatorDeterminedBarring",
                "cs_profile": "default", "eps_profile": "default", "msisdn": [], "action": "insert"}}),
            ],
        ),
        (
            "sim-deleted.json",
            vec![json!({"action": "delete", "body": {"imsi": "001010000020350", "action": "delete"}})],
        ),
        (
            "sim-replaced.json",
            vec![
                update(
                    "001010000020349",
                    "operatorDeterminedBarring",
                    "default",
                    "default",
                    &[],
                ),
                update(
                    "001010000020351",
                    "serviceGranted",
                    "cs-pp-20250319",
                    "eps-pp-20250319",
                    &["79123456789"],
                ),
            ],
        ),
    ];
    for (name, calls) in cases {
        let (code, report) = plan_fixture(name, &[]);
        assert_eq!(code, 0, "{name}: {report}");
        assert_eq!(report["outcome"], "calls", "{name}: {report}");
        assert_eq!(report["calls"], Value::Array(calls), "{name}");
        assert!(report["event_id"].is_string(), "{name}");
    }
    for (name, reason) in [
        (
            "unsupported-event-type.json",
            "No defined action for event type: Account/Unblocked",
        ),
        ("no-pb-data.json", "IMSI is empty or not provided"),
    ] {
        let (code, report) = plan_fixture(name, &[]);
        assert_eq!(code, 0, "{name}");
        assert_eq!(report["outcome"], "ignored", "{name}");
        assert_eq!(report["reason"], reason, "{name}");
    }
}

#[test]
fn plan_honours_the_settings() {
    let (_, report) = plan_fixture(
        "sim-updated-default-profiles.json",
        &[
            ("WTL_DEFAULT_CS_PROFILE", "cs-fallback"),
            ("WTL_DEFAULT_EPS_PROFILE", "eps-fallback"),
        ],
    );
    assert_eq!(report["calls"][0]["body"]["cs_profile"], "cs-fallback");
    assert_eq!(report["calls"][0]["body"]["eps_profile"], "eps-fallback");
    let (_, report) = plan_fixture("sim-updated-open.json", &[("WTL_EVENT_ACTIONS", "SIM/Updated=modify")]);
    assert_eq!(report["calls"][0]["action"], "modify");
    assert_eq!(report["calls"][0]["body"]["action"], "modify");
    let (code, report) = plan_fixture("sim-updated-open.json", &[("WTL_IMSI_REGEXP", "^99999")]);
    assert_eq!(code, 0);
    assert_eq!(report["outcome"], "ignored");
    assert_eq!(
        report["reason"],
        "IMSI 001010000020349 doesn't follow the regexp provided"
    );
}

#[test]
fn plan_reads_standard_input_reports_invalid_events_and_indents_on_request() {
    let body = std::fs::read_to_string(fixture_path("sim-deleted.json")).expect("fixture");
    for args in [&["-"][..], &[][..]] {
        let (code, out) = plan(args, &[], Some(&body));
        assert_eq!(code, 0, "{out}");
        assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["outcome"], "calls");
    }
    let bad_imsi = r#"{"event_id":"x","data":{"event_type":"SIM/Updated"},"pb_data":{"sim_info":{"imsi":"12"}}}"#;
    let (code, out) = plan(&["-"], &[], Some(bad_imsi));
    assert_eq!(code, 2);
    let report: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["outcome"], "invalid");
    assert_eq!(report["details"][0]["field"], "pb_data.sim_info.imsi");
    assert!(report["details"][0]["message"].is_string());
    let (code, out) = plan(&["-"], &[], Some("this is not JSON"));
    assert_eq!(code, 2);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["outcome"], "invalid");
    let (_, pretty) = plan(&["--pretty", "-"], &[], Some(&body));
    assert!(pretty.lines().count() > 3 && pretty.contains("\n  "), "{pretty}");
}

fn settings(vars: &[(&str, String)]) -> Settings {
    let mut all: Vec<(String, String)> = vec![("API_TOKEN".into(), "t".into())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Settings::from_vars(all).expect("valid settings")
}

fn line<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no {name} line: {checks:?}"))
}

#[tokio::test]
async fn check_passes_against_a_reachable_wtl_and_makes_no_prov_call() {
    let wtl = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&wtl)
        .await;
    let checks = check(Ok(settings(&[("WTL_API_URL", wtl.uri())]))).await;
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    assert!(line(&checks, "dns").detail.contains("127.0.0.1"));
    assert!(line(&checks, "connection").detail.contains("HTTP 404"));
    let received = wtl.received_requests().await.expect("recorded");
    assert!(received.iter().all(|r| r.url.path() != "/prov"), "no provisioning call");
}

#[tokio::test]
async fn check_fails_for_an_unreachable_wtl_and_an_unknown_host() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let checks = check(Ok(settings(&[("WTL_API_URL", format!("http://127.0.0.1:{closed}"))]))).await;
    let c = line(&checks, "connection");
    assert!(!c.ok && c.detail.contains("refused"), "{c:?}");
    let checks = check(Ok(settings(&[(
        "WTL_API_URL",
        "http://hlr.does-not-exist.invalid".into(),
    )])))
    .await;
    assert!(!line(&checks, "dns").ok, "{checks:?}");
}

#[tokio::test]
async fn check_lists_every_configuration_problem() {
    let checks = check(Settings::from_vars([
        ("WTL_HTTP_REQUESTS_TIMEOUT", "soon"),
        ("PORT", "x"),
    ]))
    .await;
    assert!(checks.iter().all(|c| c.check == "configuration" && !c.ok));
    let all: String = checks.iter().map(|c| c.detail.clone()).collect();
    for var in ["API_TOKEN", "WTL_API_URL", "WTL_HTTP_REQUESTS_TIMEOUT", "PORT"] {
        assert!(all.contains(var), "{var}: {all}");
    }
}

#[tokio::test]
async fn check_obtains_a_token_and_reports_a_refusing_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/good/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "secret-token-value", "expires_in": 3600})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/bad/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        .mount(&server)
        .await;
    let vars = |token_path: &str| {
        vec![
            ("WTL_API_URL", server.uri()),
            ("WTL_AUTH", "oauth2".to_string()),
            ("WTL_OAUTH_TOKEN_URL", format!("{}{token_path}", server.uri())),
            ("WTL_OAUTH_CLIENT_ID", "c".to_string()),
            ("WTL_OAUTH_CLIENT_SECRET", "s".to_string()),
        ]
    };
    let checks = check(Ok(settings(&vars("/good/token")))).await;
    let token = line(&checks, "token");
    assert!(token.ok && token.detail.contains("3600"), "{token:?}");
    assert!(
        !format!("{checks:?}").contains("secret-token-value"),
        "the token's value is never shown"
    );
    let checks = check(Ok(settings(&vars("/bad/token")))).await;
    let token = line(&checks, "token");
    assert!(!token.ok && token.detail.contains("401"), "{token:?}");
}

#[tokio::test]
async fn check_reports_tls_with_a_private_ca() {
    use stands::{Ca, Files, LOCAL_NAMES, TlsWtl};
    let (files, ca) = (Files::new(), Ca::new("Operator Root CA"));
    let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), None, &[b"h2", b"http/1.1"]).await;
    let checks = check(Ok(settings(&[
        ("WTL_API_URL", wtl.url()),
        ("WTL_CA_FILE", files.write("ca.pem", &ca.pem)),
    ])))
    .await;
    let tls = line(&checks, "tls");
    assert!(tls.ok, "{checks:?}");
    assert!(
        tls.detail.contains("localhost") && tls.detail.contains("Operator Root CA") && tls.detail.contains("days"),
        "{tls:?}"
    );
    assert!(line(&checks, "connection").detail.contains("HTTP/2"), "{checks:?}");
    let checks = check(Ok(settings(&[("WTL_API_URL", wtl.url())]))).await;
    let tls = line(&checks, "tls");
    assert!(!tls.ok && tls.detail.contains("unknown issuer"), "{tls:?}");
    assert!(wtl.paths().iter().all(|p| p != "/prov"));
}

#[tokio::test]
async fn check_reports_redis_up_and_down() {
    let mut redis = stands::RedisServer::start(None);
    let wtl = MockServer::start().await;
    let vars = vec![
        ("WTL_API_URL", wtl.uri()),
        ("REDIS_URL", redis.url()),
        ("REDIS_TIMEOUT", "0.5".into()),
    ];
    let checks = check(Ok(settings(&vars))).await;
    assert!(line(&checks, "redis").ok, "{checks:?}");
    redis.stop();
    let checks = check(Ok(settings(&vars))).await;
    assert!(!line(&checks, "redis").ok, "{checks:?}");
}

#[test]
fn check_exits_1_on_a_failure_and_speaks_json_on_request() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = std::env::temp_dir().join(format!("nsps-wtl-check-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = Command::new(BIN)
        .args(["check", "--json"])
        .env_clear()
        .env("API_TOKEN", "t")
        .env("WTL_API_URL", format!("http://127.0.0.1:{closed}"))
        .current_dir(&dir)
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    assert!(
        report["checks"]
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["check"] == "connection" && c["ok"] == false)
    );
}

#[tokio::test]
async fn check_goes_through_the_proxy_and_never_shows_its_credentials() {
    let wtl = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&wtl)
        .await;
    let proxy = stands::Proxy::start().await;
    let checks = check(Ok(settings(&[
        ("WTL_API_URL", wtl.uri()),
        ("HTTP_PROXY", format!("http://gw:proxy-pw-99@127.0.0.1:{}", proxy.port)),
    ])))
    .await;
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    let via = format!("127.0.0.1:{}", proxy.port);
    assert!(
        line(&checks, "dns").detail.contains(&via),
        "the proxy's host is resolved: {checks:?}"
    );
    assert!(
        line(&checks, "connection")
            .detail
            .contains(&format!("through the proxy {via}"))
    );
    assert!(!format!("{checks:?}").contains("proxy-pw-99"));
    assert_eq!(proxy.carried().len(), 1, "the HEAD went through the proxy");
}

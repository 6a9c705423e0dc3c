//! Reaching WTL the way operator networks need: a private CA, mutual TLS, proxies, HTTP/2,
//! and the listener on IPv6 and IPv4. Real TLS on loopback with certificates made in the test.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::stands::{Ca, Files, LOCAL_NAMES, Proxy, TlsWtl};

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

fn delete_event(id: &str) -> String {
    event(id, "SIM/Deleted", json!({"sim_info": {"imsi": "001010000066001"}}))
}

/// Sends one delete event and returns the answer's status and body.
async fn deliver(app: &TestApp, id: &str) -> (u16, serde_json::Value) {
    let resp = app.send(&delete_event(id)).await;
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

fn oauth_vars(token_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("WTL_AUTH", "oauth2".into()),
        ("WTL_OAUTH_TOKEN_URL", format!("{token_url}/oauth/token")),
        ("WTL_OAUTH_CLIENT_ID", "connector".into()),
        ("WTL_OAUTH_CLIENT_SECRET", "client-secret".into()),
    ]
}

async fn spawn(wtl_url: &str, vars: &[(&'static str, String)]) -> TestApp {
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app(wtl_url, &borrowed).await
}

#[tokio::test]
async fn a_private_ca_in_wtl_ca_file_is_trusted_for_prov_and_the_token_endpoint() {
    let (files, ca) = (Files::new(), Ca::new("Operator Root CA"));
    let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), None, H2_AND_H1).await;
    let mut vars = oauth_vars(&wtl.url());
    vars.push(("WTL_CA_FILE", files.write("ca.pem", &ca.pem)));
    let app = spawn(&wtl.url(), &vars).await;
    let (status, body) = deliver(&app, "private-ca").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(wtl.paths(), vec!["/oauth/token", "/prov"]);
    assert_eq!(wtl.seen()[1].authorization.as_deref(), Some("Bearer tls-token"));
}

#[tokio::test]
async fn without_wtl_ca_file_a_private_ca_is_a_503_naming_tls_and_is_not_retried() {
    let ca = Ca::new("Operator Root CA");
    let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), None, H2_AND_H1).await;
    let app = spawn(&wtl.url(), &[("WTL_MAX_RETRIES", "3".into())]).await;
    let resp = app.send(&delete_event("no-ca")).await;
    let body = error_body(resp, 503, "CONNECTION_ERROR").await;
    let message = body["message"].as_str().expect("text");
    let error = body["error"].as_str().expect("text");
    assert!(message.contains("TLS"), "{body}");
    assert!(
        error.contains("unknown issuer") && error.contains("WTL_CA_FILE"),
        "{body}"
    );
    assert!(
        !error.contains("refused"),
        "never reported as a refused connection: {body}"
    );
    assert!(wtl.seen().is_empty());
    assert_eq!(
        wtl.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a certificate problem is not retried"
    );
}

#[tokio::test]
async fn the_tls_failure_says_why_wrong_name_or_expired() {
    let (files, ca) = (Files::new(), Ca::new("Operator Root CA"));
    let ca_file = files.write("ca.pem", &ca.pem);
    for (server, why) in [
        (ca.server(&["hlr.other.example"]), "not valid for the host name"),
        (ca.expired_server(LOCAL_NAMES), "expired"),
    ] {
        let wtl = TlsWtl::start(&server, None, H2_AND_H1).await;
        let app = spawn(&wtl.url(), &[("WTL_CA_FILE", ca_file.clone())]).await;
        let body = error_body(app.send(&delete_event("why")).await, 503, "CONNECTION_ERROR").await;
        assert!(body["error"].as_str().expect("text").contains(why), "{why}: {body}");
        assert!(wtl.seen().is_empty());
    }
}

#[tokio::test]
async fn mutual_tls_reaches_a_wtl_that_demands_a_client_certificate() {
    let (files, ca, clients) = (Files::new(), Ca::new("Operator Root CA"), Ca::new("Client CA"));
    let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), Some(&clients), H2_AND_H1).await;
    let client = clients.client("nsps-connector");
    let vars = vec![
        ("WTL_CA_FILE", files.write("ca.pem", &ca.pem)),
        ("WTL_CLIENT_CERT_FILE", files.write("client.pem", &client.cert_pem)),
        ("WTL_CLIENT_KEY_FILE", files.write("client.key", &client.key_pem)),
    ];
    let app = spawn(&wtl.url(), &vars).await;
    let (status, body) = deliver(&app, "mtls").await;
    assert_eq!(status, 202, "{body}");
    let seen = wtl.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].client_cert, "the client certificate was presented");
}

#[tokio::test]
async fn without_a_client_certificate_mutual_tls_is_a_503_naming_it() {
    let (files, ca, clients) = (Files::new(), Ca::new("Operator Root CA"), Ca::new("Client CA"));
    for alpn in [H2_AND_H1, H1_ONLY] {
        let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), Some(&clients), alpn).await;
        let app = spawn(&wtl.url(), &[("WTL_CA_FILE", files.write("ca.pem", &ca.pem))]).await;
        let body = error_body(app.send(&delete_event("no-client-cert")).await, 503, "CONNECTION_ERROR").await;
        let error = body["error"].as_str().expect("text");
        assert!(
            error.contains("TLS") && error.contains("requires a client certificate"),
            "{body}"
        );
        assert!(wtl.seen().is_empty());
        assert_eq!(
            wtl.connections.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "not retried"
        );
    }
}

/// Converts a PKCS#8 key to the traditional form (PKCS#1 for RSA, SEC1 for EC) with openssl.
fn traditional(files: &Files, pkcs8_pem: &str, name: &str) -> String {
    let input = files.write(&format!("{name}.pk8"), pkcs8_pem);
    let output = files.dir().join(name);
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-traditional", "-in", &input, "-out"])
        .arg(&output)
        .status()
        .expect("openssl runs");
    assert!(status.success());
    output.to_string_lossy().into_owned()
}

#[tokio::test]
async fn client_keys_in_pkcs8_pkcs1_and_sec1_are_all_accepted() {
    let (files, ca, clients) = (Files::new(), Ca::new("Operator Root CA"), Ca::new("Client CA"));
    let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), Some(&clients), H2_AND_H1).await;
    let ec = clients.client("ec-client");
    let rsa = clients.rsa_client("rsa-client");
    let cases = [
        (
            "PKCS#8",
            ec.cert_pem.clone(),
            files.write("ec.pk8.pem", &ec.key_pem),
            "BEGIN PRIVATE KEY",
        ),
        (
            "SEC1",
            ec.cert_pem.clone(),
            traditional(&files, &ec.key_pem, "ec.sec1.pem"),
            "BEGIN EC PRIVATE KEY",
        ),
        (
            "PKCS#1",
            rsa.cert_pem.clone(),
            traditional(&files, &rsa.key_pem, "rsa.pk1.pem"),
            "BEGIN RSA PRIVATE KEY",
        ),
    ];
    for (i, (form, cert, key_file, marker)) in cases.into_iter().enumerate() {
        let key_text = std::fs::read_to_string(&key_file).expect("key");
        assert!(key_text.contains(marker), "{form}: {key_text}");
        let vars = vec![
            ("WTL_CA_FILE", files.write("ca.pem", &ca.pem)),
            ("WTL_CLIENT_CERT_FILE", files.write(&format!("cert-{i}.pem"), &cert)),
            ("WTL_CLIENT_KEY_FILE", key_file),
        ];
        let app = spawn(&wtl.url(), &vars).await;
        let (status, body) = deliver(&app, &format!("key-{i}")).await;
        assert_eq!(status, 202, "{form}: {body}");
    }
    assert_eq!(wtl.seen().iter().filter(|s| s.client_cert).count(), 3);
}

/// Settings given to one start-up.
type Settings = Vec<(&'static str, String)>;

/// The start-up error for `vars`, as the one line the binary would print.
async fn start_up_error(vars: &[(&'static str, String)]) -> String {
    let mut all: Vec<(String, String)> = vec![
        ("API_TOKEN".into(), TOKEN.into()),
        ("WTL_API_URL".into(), "https://localhost:9".into()),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let settings = match nsps_wtl_connector::Settings::from_vars(all) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    match nsps_wtl_connector::Application::bind(settings, "127.0.0.1:0".parse().expect("addr")).await {
        Ok(_) => panic!("start-up should have been refused for {vars:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn unusable_tls_files_stop_start_up_naming_the_setting_and_the_file() {
    let (files, ca) = (Files::new(), Ca::new("Operator Root CA"));
    let client = ca.client("c");
    let cert = files.write("client.pem", &client.cert_pem);
    let key = files.write("client.key", &client.key_pem);
    let garbage = files.write("garbage.pem", "this is not PEM\n");
    let missing = files.dir().join("missing.pem").to_string_lossy().into_owned();
    let cases: Vec<(Settings, &str, String)> = vec![
        (vec![("WTL_CA_FILE", missing.clone())], "WTL_CA_FILE", missing.clone()),
        (vec![("WTL_CA_FILE", garbage.clone())], "WTL_CA_FILE", garbage.clone()),
        (
            vec![("WTL_CLIENT_CERT_FILE", cert.clone())],
            "WTL_CLIENT_KEY_FILE",
            String::new(),
        ),
        (
            vec![("WTL_CLIENT_KEY_FILE", key.clone())],
            "WTL_CLIENT_CERT_FILE",
            String::new(),
        ),
        (
            vec![
                ("WTL_CLIENT_CERT_FILE", garbage.clone()),
                ("WTL_CLIENT_KEY_FILE", key.clone()),
            ],
            "WTL_CLIENT_CERT_FILE",
            garbage.clone(),
        ),
        (
            vec![
                ("WTL_CLIENT_CERT_FILE", cert.clone()),
                ("WTL_CLIENT_KEY_FILE", cert.clone()),
            ],
            "WTL_CLIENT_KEY_FILE",
            cert.clone(),
        ),
    ];
    for (vars, setting, file) in cases {
        let line = start_up_error(&vars).await;
        assert!(line.contains(setting), "{vars:?}: {line}");
        assert!(line.contains(&file), "{vars:?}: {line}");
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(!line.contains(&client.key_pem[40..80]), "no key material: {line}");
    }
}

#[tokio::test]
async fn an_https_proxy_carries_prov_and_the_token_call_and_no_proxy_bypasses_it() {
    let (files, ca) = (Files::new(), Ca::new("Operator Root CA"));
    let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), None, H2_AND_H1).await;
    let idp = TlsWtl::start(&ca.server(LOCAL_NAMES), None, H2_AND_H1).await;
    let proxy = Proxy::start().await;
    let mut vars = oauth_vars(&idp.url());
    vars.push(("WTL_CA_FILE", files.write("ca.pem", &ca.pem)));
    vars.push(("HTTPS_PROXY", proxy.url()));
    let app = spawn(&wtl.url(), &vars).await;
    let (status, body) = deliver(&app, "via-proxy").await;
    assert_eq!(status, 202, "{body}");
    let mut targets: Vec<String> = proxy
        .carried()
        .iter()
        .map(|c| format!("{} {}", c.method, c.target))
        .collect();
    targets.sort();
    let mut expected = vec![
        format!("CONNECT localhost:{}", wtl.port),
        format!("CONNECT localhost:{}", idp.port),
    ];
    expected.sort();
    assert_eq!(targets, expected, "both calls went through the proxy");
    assert_eq!(wtl.paths(), vec!["/prov"]);
    assert_eq!(idp.paths(), vec!["/oauth/token"]);

    // The same settings with NO_PROXY naming the host: straight there.
    let bypass = Proxy::start().await;
    let mut vars = oauth_vars(&idp.url());
    vars.push(("WTL_CA_FILE", files.write("ca.pem", &ca.pem)));
    vars.push(("https_proxy", bypass.url()));
    vars.push(("no_proxy", "example.org,localhost".into()));
    let app = spawn(&wtl.url(), &vars).await;
    let (status, body) = deliver(&app, "no-proxy").await;
    assert_eq!(status, 202, "{body}");
    assert!(bypass.carried().is_empty(), "{:?}", bypass.carried());
    assert_eq!(wtl.paths(), vec!["/prov", "/prov"]);
}

#[tokio::test]
async fn an_http_proxy_carries_plain_http_calls_and_wtl_proxy_wins_over_the_environment() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let proxy = Proxy::start().await;
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    );
    let app = spawn(
        &wtl.uri(),
        &[
            ("HTTP_PROXY", closed),
            ("WTL_PROXY", format!("http://127.0.0.1:{}", proxy.port)),
        ],
    )
    .await;
    let (status, body) = deliver(&app, "plain-proxy").await;
    assert_eq!(status, 202, "{body}");
    let carried = proxy.carried();
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert_eq!(carried[0].method, "POST");
    assert_eq!(carried[0].target, format!("{}/prov", wtl.uri()));
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

#[tokio::test]
async fn proxy_credentials_are_used_and_never_shown() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let proxy = Proxy::start().await;
    let with_credentials = format!("http://gateway:proxy-pw-321@127.0.0.1:{}", proxy.port);
    let app = spawn(&wtl.uri(), &[("HTTP_PROXY", with_credentials)]).await;
    assert_eq!(deliver(&app, "proxy-auth").await.0, 202);
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("gateway:proxy-pw-321")
    );
    assert_eq!(
        proxy.carried()[0].proxy_authorization.as_deref(),
        Some(expected.as_str())
    );
    let shown = format!("{:?} {:?}", app.settings.redacted(), app.settings);
    assert!(!shown.contains("proxy-pw-321"), "{shown}");
    assert!(shown.contains("***@127.0.0.1"), "{shown}");

    // A proxy that cannot be reached: the answer names no credential.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let app = spawn(
        &wtl.uri(),
        &[("HTTP_PROXY", format!("http://gateway:proxy-pw-321@127.0.0.1:{closed}"))],
    )
    .await;
    let resp = app.send(&delete_event("proxy-down")).await;
    let body = error_body(resp, 503, "CONNECTION_ERROR").await;
    assert!(!body.to_string().contains("proxy-pw-321"), "{body}");
}

#[tokio::test]
async fn http2_is_used_when_wtl_offers_it_and_http1_otherwise() {
    let (files, ca) = (Files::new(), Ca::new("Operator Root CA"));
    let ca_file = files.write("ca.pem", &ca.pem);
    for (alpn, version) in [(H2_AND_H1, http::Version::HTTP_2), (H1_ONLY, http::Version::HTTP_11)] {
        let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), None, alpn).await;
        let app = spawn(&wtl.url(), &[("WTL_CA_FILE", ca_file.clone())]).await;
        assert_eq!(deliver(&app, "one").await.0, 202);
        assert_eq!(deliver(&app, "two").await.0, 202);
        let seen = wtl.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|s| s.version == version), "{seen:?}");
        assert_eq!(
            wtl.connections.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one pooled connection for both calls"
        );
    }
}

#[tokio::test]
async fn the_default_listener_answers_on_ipv6_and_ipv4_loopback() {
    let settings = settings("http://127.0.0.1:9", &[("PORT", "0")]);
    let app = nsps_wtl_connector::Application::bind_port(settings)
        .await
        .expect("binds");
    let port = app.local_addr().port();
    assert!(
        app.local_addr().is_ipv6(),
        "dual-stack [::] by default: {}",
        app.local_addr()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    for host in ["127.0.0.1", "[::1]"] {
        let resp = client
            .get(format!("http://{host}:{port}/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "{host}");
    }
    let _ = stop.send(());
    let _ = task.await;
}

#[tokio::test]
async fn bind_address_limits_the_listener() {
    let settings = settings("http://127.0.0.1:9", &[("PORT", "0"), ("BIND_ADDRESS", "127.0.0.1")]);
    let app = nsps_wtl_connector::Application::bind_port(settings)
        .await
        .expect("binds");
    assert_eq!(app.local_addr().ip().to_string(), "127.0.0.1");
}

#[tokio::test]
async fn tls_material_can_be_given_inline_as_pem_and_is_never_shown() {
    let (ca, clients) = (Ca::new("Operator Root CA"), Ca::new("Client CA"));
    let wtl = TlsWtl::start(&ca.server(LOCAL_NAMES), Some(&clients), H2_AND_H1).await;
    let client = clients.client("inline");
    // As an environment variable often carries it: on one line, `\n` for each line break.
    let one_line = client.key_pem.replace('\n', "\\n");
    let vars = vec![
        ("WTL_CA_FILE", ca.pem.clone()),
        ("WTL_CLIENT_CERT_FILE", client.cert_pem.clone()),
        ("WTL_CLIENT_KEY_FILE", one_line),
    ];
    let app = spawn(&wtl.url(), &vars).await;
    let (status, body) = deliver(&app, "inline-pem").await;
    assert_eq!(status, 202, "{body}");
    assert!(wtl.seen()[0].client_cert);
    let shown = format!("{:?} {:?}", app.settings.redacted(), app.settings);
    let key_body = &client.key_pem[40..80];
    assert!(!shown.contains(key_body), "{shown}");
    assert!(shown.contains("PEM given inline"), "{shown}");
}

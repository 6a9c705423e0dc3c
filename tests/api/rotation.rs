//! Secrets and TLS files that rotate without a restart: rewritten in place, replaced by a
//! rename, swapped through a `..data` symlink; a broken file keeps the last good value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{fixture, spawn_with, wtl_answering};
use crate::stands::{Ca, Files, LOCAL_NAMES, TlsWtl};

/// A change must take effect within this long (the promise is 10 s).
const WITHIN: Duration = Duration::from_secs(10);

fn settings(wtl_url: &str, vars: &[(&str, &str)]) -> nsps_wtl_connector::Settings {
    let mut all: Vec<(String, String)> = vec![
        ("WTL_API_URL".into(), wtl_url.into()),
        ("WTL_RETRY_BASE_MS".into(), "20".into()),
        ("WTL_TOTAL_TIMEOUT".into(), "20".into()),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    nsps_wtl_connector::Settings::from_vars(all).expect("valid settings")
}

/// `sim-deleted.json` with an event id of its own, so no delivery is a duplicate of another.
fn fresh_event() -> String {
    let mut event: serde_json::Value = serde_json::from_str(&fixture("sim-deleted.json")).expect("fixture");
    event["event_id"] = uuid::Uuid::new_v4().to_string().into();
    event.to_string()
}

/// Sends a fresh event with `token` on a connection of its own (a pooled one may have been
/// closed by the server while the test waited) and returns the status.
async fn status_with_token(app: &crate::helpers::TestApp, token: &str) -> u16 {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
        .post(app.url("/process-event"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(fresh_event())
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

/// Polls until `check` holds (true) or `WITHIN` has passed (false).
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// Replaces `path` by a rename of a new file (the inode changes, as `mv` and editors do).
fn replace_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    write(&tmp, text);
    std::fs::rename(&tmp, path).expect("rename");
}

/// A Kubernetes-style secret volume: `<dir>/<name>` → `..data/<name>`, `..data` → a versioned
/// folder; a new version is a new folder and an atomic swap of the `..data` symlink.
struct SecretVolume {
    dir: PathBuf,
    name: String,
    version: u32,
}

impl SecretVolume {
    fn new(dir: &Path, name: &str, text: &str) -> Self {
        let mut volume = Self {
            dir: dir.to_path_buf(),
            name: name.into(),
            version: 0,
        };
        volume.publish(text);
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).expect("link the file");
        volume
    }

    fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn publish(&mut self, text: &str) {
        self.version += 1;
        let folder = format!("..2026_12_04_v{}", self.version);
        std::fs::create_dir_all(self.dir.join(&folder)).expect("version folder");
        write(&self.dir.join(&folder).join(&self.name), text);
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&folder, &tmp).expect("new link");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
    }
}

#[tokio::test]
async fn api_token_file_rotates_in_place_by_rename_and_by_symlink_swap() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let files = Files::new();
    let token_file = PathBuf::from(files.write("token", "token-one\n"));
    let app = spawn_with(
        settings(&wtl.uri(), &[("API_TOKEN_FILE", token_file.to_str().expect("path"))]),
        axum::Router::new(),
    )
    .await;
    assert_eq!(status_with_token(&app, "token-one").await, 202);

    write(&token_file, "token-two");
    assert!(
        eventually(|| async { status_with_token(&app, "token-two").await == 202 }).await,
        "rewritten in place"
    );
    assert_eq!(
        status_with_token(&app, "token-one").await,
        401,
        "the old token no longer opens"
    );

    replace_by_rename(&token_file, "token-two,token-three");
    assert!(
        eventually(|| async { status_with_token(&app, "token-three").await == 202 }).await,
        "replaced by a rename"
    );
    assert_eq!(
        status_with_token(&app, "token-two").await,
        202,
        "the overlap keeps both"
    );
}

#[tokio::test]
async fn a_secret_volume_symlink_swap_is_taken() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let files = Files::new();
    let mut volume = SecretVolume::new(files.dir(), "api-token", "volume-token-1");
    let app = spawn_with(
        settings(&wtl.uri(), &[("API_TOKEN_FILE", volume.path().to_str().expect("path"))]),
        axum::Router::new(),
    )
    .await;
    assert_eq!(status_with_token(&app, "volume-token-1").await, 202);
    volume.publish("volume-token-2");
    assert!(eventually(|| async { status_with_token(&app, "volume-token-2").await == 202 }).await);
    assert_eq!(status_with_token(&app, "volume-token-1").await, 401);
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_value_until_it_is_good_again() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let files = Files::new();
    let token_file = PathBuf::from(files.write("token", "good-token"));
    let app = spawn_with(
        settings(&wtl.uri(), &[("API_TOKEN_FILE", token_file.to_str().expect("path"))]),
        axum::Router::new(),
    )
    .await;
    for broken in ["", "   \n", "two tokens with spaces"] {
        write(&token_file, broken);
        // Two content reads later the broken value has been seen and refused.
        tokio::time::sleep(nsps_wtl_connector::ROTATION_POLL * 5).await;
        assert_eq!(
            status_with_token(&app, "good-token").await,
            202,
            "{broken:?} kept the last good token"
        );
    }
    std::fs::remove_file(&token_file).expect("remove");
    tokio::time::sleep(nsps_wtl_connector::ROTATION_POLL * 2).await;
    assert_eq!(
        status_with_token(&app, "good-token").await,
        202,
        "a vanished file keeps it too"
    );
    write(&token_file, "fixed-token");
    assert!(eventually(|| async { status_with_token(&app, "fixed-token").await == 202 }).await);
}

#[tokio::test]
async fn a_new_wtl_token_is_sent_on_the_next_call() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let files = Files::new();
    let wtl_token = PathBuf::from(files.write("wtl-token", "wtl-token-old"));
    let app = spawn_with(
        settings(
            &wtl.uri(),
            &[
                ("API_TOKEN", crate::helpers::TOKEN),
                ("WTL_API_TOKEN_FILE", wtl_token.to_str().expect("path")),
            ],
        ),
        axum::Router::new(),
    )
    .await;
    assert_eq!(status_with_token(&app, crate::helpers::TOKEN).await, 202);
    replace_by_rename(&wtl_token, "wtl-token-new\n");
    let sent_new = eventually(|| async {
        let _ = status_with_token(&app, crate::helpers::TOKEN).await;
        let last = wtl.received_requests().await.unwrap_or_default();
        last.last()
            .and_then(|r| r.headers.get("authorization"))
            .is_some_and(|v| v == "Bearer wtl-token-new")
    })
    .await;
    assert!(sent_new, "WTL received the new token");
    let first = wtl.received_requests().await.unwrap_or_default();
    assert_eq!(
        first[0].headers.get("authorization").map(|v| v.to_str().unwrap_or("")),
        Some("Bearer wtl-token-old")
    );
}

#[tokio::test]
async fn a_new_oauth_client_secret_drops_the_cached_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(r#"{"result":true}"#, "application/json"))
        .mount(&server)
        .await;
    let files = Files::new();
    let secret = PathBuf::from(files.write("client-secret", "secret-old"));
    let token_url = format!("{}/oauth/token", server.uri());
    let app = spawn_with(
        settings(
            &server.uri(),
            &[
                ("API_TOKEN", crate::helpers::TOKEN),
                ("WTL_AUTH", "oauth2"),
                ("WTL_OAUTH_TOKEN_URL", &token_url),
                ("WTL_OAUTH_CLIENT_ID", "connector"),
                ("WTL_OAUTH_CLIENT_SECRET_FILE", secret.to_str().expect("path")),
            ],
        ),
        axum::Router::new(),
    )
    .await;
    let token_requests = || async {
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/oauth/token")
            .collect::<Vec<_>>()
    };
    assert_eq!(status_with_token(&app, crate::helpers::TOKEN).await, 202);
    assert_eq!(status_with_token(&app, crate::helpers::TOKEN).await, 202);
    assert_eq!(token_requests().await.len(), 1, "the token is cached");
    write(&secret, "secret-new");
    let renewed = eventually(|| async {
        let _ = status_with_token(&app, crate::helpers::TOKEN).await;
        token_requests().await.len() == 2
    })
    .await;
    assert!(renewed, "a new token was fetched after the secret changed");
    let grant = token_requests().await.pop().expect("second grant");
    let basic = grant
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let form = String::from_utf8_lossy(&grant.body).to_string();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode("connector:secret-new");
    assert!(
        basic == format!("Basic {expected}") || form.contains("client_secret=secret-new"),
        "the new secret was used: {basic} / {form}"
    );
}

#[tokio::test]
async fn a_rotated_client_certificate_is_presented_on_new_calls() {
    let server_ca = Ca::new("Rotation Server CA");
    let client_ca = Ca::new("Rotation Client CA");
    let wtl = TlsWtl::start(&server_ca.server(LOCAL_NAMES), Some(&client_ca), &[b"http/1.1"]).await;
    let files = Files::new();
    let first = client_ca.client("connector-2026");
    let second = client_ca.client("connector-2027");
    let ca_path = files.write("ca.pem", &server_ca.pem);
    let cert_path = PathBuf::from(files.write("client.pem", &first.cert_pem));
    let key_path = PathBuf::from(files.write("client.key", &first.key_pem));
    let app = spawn_with(
        settings(
            &wtl.url(),
            &[
                ("API_TOKEN", crate::helpers::TOKEN),
                ("WTL_CA_FILE", &ca_path),
                ("WTL_CLIENT_CERT_FILE", cert_path.to_str().expect("path")),
                ("WTL_CLIENT_KEY_FILE", key_path.to_str().expect("path")),
            ],
        ),
        axum::Router::new(),
    )
    .await;
    let der = |pem: &str| {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("cert")
            .as_ref()
            .to_vec()
    };
    assert_eq!(status_with_token(&app, crate::helpers::TOKEN).await, 202);
    assert_eq!(
        wtl.seen()[0].client_cert_der.as_deref(),
        Some(der(&first.cert_pem).as_slice())
    );

    // The certificate first, the key a moment later: between the two the pair does not match,
    // the connector keeps the old pair (and says so once), then takes the new one.
    replace_by_rename(&cert_path, &second.cert_pem);
    tokio::time::sleep(nsps_wtl_connector::ROTATION_POLL * 2).await;
    assert_eq!(
        status_with_token(&app, crate::helpers::TOKEN).await,
        202,
        "the old pair still works"
    );
    replace_by_rename(&key_path, &second.key_pem);
    let new_der = der(&second.cert_pem);
    let presented_new = eventually(|| async {
        let _ = status_with_token(&app, crate::helpers::TOKEN).await;
        wtl.seen()
            .last()
            .is_some_and(|s| s.client_cert_der.as_deref() == Some(new_der.as_slice()))
    })
    .await;
    assert!(presented_new, "WTL saw the new client certificate");
}

#[tokio::test]
async fn a_new_redis_url_is_used_for_the_next_operations() {
    let first = crate::stands::RedisServer::start(None);
    let second = crate::stands::RedisServer::start(Some("second-redis-pw"));
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let files = Files::new();
    let url_file = PathBuf::from(files.write("redis-url", &first.url()));
    let app = spawn_with(
        settings(
            &wtl.uri(),
            &[
                ("API_TOKEN", crate::helpers::TOKEN),
                ("REDIS_URL_FILE", url_file.to_str().expect("path")),
            ],
        ),
        axum::Router::new(),
    )
    .await;
    let done_keys = |server: &crate::stands::RedisServer| {
        let server_url = server.url();
        async move {
            let mut conn = redis::Client::open(server_url)
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("nsps-wtl:done:*")
                .query_async(&mut conn)
                .await
                .expect("keys");
            keys.len()
        }
    };
    assert_eq!(status_with_token(&app, crate::helpers::TOKEN).await, 202);
    assert_eq!(done_keys(&first).await, 1);
    replace_by_rename(&url_file, &second.url());
    let moved = eventually(|| async {
        status_with_token(&app, crate::helpers::TOKEN).await == 202 && done_keys(&second).await > 0
    })
    .await;
    assert!(
        moved,
        "events are remembered in the Redis of the new URL (with its password)"
    );
}

//! Starts the connector on 127.0.0.1:0 against a WTL stand-in (wiremock or the simulator).

use std::net::SocketAddr;
use std::path::PathBuf;

use nsps_wtl_connector::AppState;
use nsps_wtl_connector::Application;
use nsps_wtl_connector::Settings;
use nsps_wtl_connector::{Simulator, SimulatorHandle};
use tokio::sync::oneshot;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TOKEN: &str = "test-token-1";

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    /// What the connector was built from.
    pub settings: std::sync::Arc<Settings>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs an event body to `/process-event` with the test token.
    pub async fn send(&self, body: &str) -> reqwest::Response {
        self.client
            .post(self.url("/process-event"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the connector answers")
    }

    /// Sends an event and hangs up after `after`, before any answer (asserted).
    pub async fn send_and_hang_up(&self, body: &str, after: std::time::Duration) {
        let cut = self
            .client
            .post(self.url("/process-event"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(after)
            .send()
            .await;
        assert!(cut.is_err(), "the client hung up before an answer");
    }

    pub async fn send_fixture(&self, name: &str) -> reqwest::Response {
        self.send(&fixture(name)).await
    }

    /// Stops accepting, drains and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Settings for a test: the token, WTL at `wtl_url`, fast retries, plus `extra` overrides.
pub fn settings(wtl_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars: Vec<(String, String)> = vec![
        ("API_TOKEN".into(), format!("{TOKEN},second-token")),
        ("WTL_API_URL".into(), wtl_url.into()),
        ("WTL_RETRY_BASE_MS".into(), "20".into()),
        ("WTL_HTTP_REQUESTS_TIMEOUT".into(), "5".into()),
        ("WTL_TOTAL_TIMEOUT".into(), "20".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_vars(vars).expect("valid test settings")
}

pub async fn spawn_app(wtl_url: &str, extra: &[(&str, &str)]) -> TestApp {
    spawn_with(settings(wtl_url, extra), axum::Router::new()).await
}

pub async fn spawn_with(settings: Settings, routes: axum::Router<AppState>) -> TestApp {
    let app = Application::bind(settings, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("binds")
        .with_routes(routes);
    let addr = app.local_addr();
    let state = app.state().clone();
    let settings = app.settings().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        state,
        settings,
        stop: Some(tx),
        task: Some(task),
    }
}

/// A wiremock WTL that answers every `/prov` with `status` and `body`.
/// WTL answering `status` to its first `times` calls, then applying every call (`{"result":true}`).
pub async fn wtl_failing_first(status: u16, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .up_to_n_times(times)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"result":true}"#))
        .mount(&server)
        .await;
    server
}

pub async fn wtl_answering(status: u16, body: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json"))
        .mount(&server)
        .await;
    server
}

/// The JSON bodies WTL received, in order.
pub async fn wtl_bodies(server: &MockServer) -> Vec<serde_json::Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("WTL received JSON"))
        .collect()
}

pub async fn spawn_simulator(token: Option<&str>) -> (String, SimulatorHandle, oneshot::Sender<()>) {
    let sim = Simulator::bind("127.0.0.1:0".parse().expect("addr"), token.map(str::to_string))
        .await
        .expect("simulator binds");
    let url = format!("http://{}", sim.local_addr().expect("addr"));
    let handle = sim.handle();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(sim.run_until(async move {
        let _ = rx.await;
    }));
    (url, handle, tx)
}

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let bytes = resp.bytes().await.expect("a body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}

/// An event body of `event_type` with `pb_data`.
pub fn event(event_id: &str, event_type: &str, pb_data: serde_json::Value) -> String {
    serde_json::json!({"event_id": event_id, "data": {"event_type": event_type}, "pb_data": pb_data}).to_string()
}

/// An open account with MSISDN 79123456789 on SIM `imsi`.
pub fn open_sim(imsi: &str) -> serde_json::Value {
    serde_json::json!({
        "account_info": {"bill_status": "open", "blocked": false, "id": "79123456789@msisdn"},
        "sim_info": {"imsi": imsi}
    })
}

/// Asserts the error body shape of SPEC §5 and returns it.
pub async fn error_body(resp: reqwest::Response, status: u16, kind: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body = json(resp).await;
    assert_eq!(body["type"], kind, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body["error"].is_string(), "{body}");
    body
}

/// Answers with `templates` in turn (the last one repeatedly), whatever the request.
pub struct InTurn {
    templates: Vec<ResponseTemplate>,
    next: std::sync::atomic::AtomicUsize,
}

impl InTurn {
    pub fn new(templates: Vec<ResponseTemplate>) -> Self {
        Self {
            templates,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl wiremock::Respond for InTurn {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.templates[i.min(self.templates.len() - 1)].clone()
    }
}

/// The requests `server` received on `at`, in order.
pub async fn received_on(server: &MockServer, at: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

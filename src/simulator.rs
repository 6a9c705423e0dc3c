//! An in-memory WTL HLR/HSS with the same `POST /prov` contract, for the demo, tests and the
//! benchmark.
//!
//! - `insert` of an IMSI it holds → 409; `update` / `delete` / `set` / `unset` / `modify` of one
//!   it does not hold → 404; a malformed body → 400; success → 200 `{"result": true}`.
//! - `GET /subscribers` lists what it holds; `GET /subscribers/{imsi}` reads one back.
//! - `DELETE /subscribers` empties it.
//! - With a token set, every `/prov` call must carry `Authorization: Bearer <token>` (else 401).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    pub imsi: String,
    pub subscriber_status: String,
    pub cs_profile: String,
    pub eps_profile: String,
    pub msisdn: Vec<String>,
}

#[derive(Default)]
struct Hlr {
    subscribers: BTreeMap<String, Subscriber>,
    calls: u64,
}

#[derive(Clone)]
struct SimState {
    hlr: Arc<Mutex<Hlr>>,
    token: Option<Arc<str>>,
}

/// A running simulator.
pub struct Simulator {
    listener: TcpListener,
    state: SimState,
}

#[derive(Deserialize)]
struct ProvRequest {
    imsi: Option<serde_json::Value>,
    action: Option<String>,
    subscriber_status: Option<serde_json::Value>,
    cs_profile: Option<serde_json::Value>,
    eps_profile: Option<serde_json::Value>,
    msisdn: Option<serde_json::Value>,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn fail(status: StatusCode, error: impl Into<String>) -> Response {
    answer(status, serde_json::json!({"result": false, "error": error.into()}))
}

impl Simulator {
    /// Binds `addr`; `token`, when given, is required on `/prov`.
    pub async fn bind(addr: SocketAddr, token: Option<String>) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            state: SimState {
                hlr: Arc::new(Mutex::new(Hlr::default())),
                token: token.map(Arc::from),
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the simulator holds for `imsi`.
    pub fn handle(&self) -> SimulatorHandle {
        SimulatorHandle(self.state.hlr.clone())
    }

    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/prov", post(prov))
            .route("/subscribers", get(list).delete(reset))
            .route("/subscribers/{imsi}", get(one))
            .route(
                "/health",
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .with_state(self.state);
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await
    }
}

/// Read access to a running simulator's table (tests).
#[derive(Clone)]
pub struct SimulatorHandle(Arc<Mutex<Hlr>>);

impl SimulatorHandle {
    pub fn get(&self, imsi: &str) -> Option<Subscriber> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .subscribers
            .get(imsi)
            .cloned()
    }

    pub fn calls(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).calls
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).subscribers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn text(v: &Option<serde_json::Value>, field: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

fn msisdn_list(v: &Option<serde_json::Value>) -> Result<Option<Vec<String>>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Ok(s.clone()),
                _ => Err("msisdn must be a list of digit strings".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err("msisdn must be a list".to_string()),
    }
}

fn status_value(v: Option<String>) -> Result<Option<String>, String> {
    match v.as_deref() {
        None | Some("serviceGranted") | Some("operatorDeterminedBarring") => Ok(v),
        Some(other) => Err(format!("unknown subscriber_status {other:?}")),
    }
}

async fn prov(State(state): State<SimState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !token_accepted(&state, &headers) {
        return fail(StatusCode::UNAUTHORIZED, "invalid credentials");
    }
    let (action, imsi, change) = match read_prov(&body) {
        Ok(parts) => parts,
        Err(problem) => return fail(StatusCode::BAD_REQUEST, problem),
    };
    let mut hlr = state.hlr.lock().unwrap_or_else(|e| e.into_inner());
    hlr.calls += 1;
    match apply(&mut hlr, &action, &imsi, change) {
        Ok(()) => answer(
            StatusCode::OK,
            serde_json::json!({"result": true, "imsi": imsi, "action": action}),
        ),
        Err((status, problem)) => fail(status, problem),
    }
}

fn token_accepted(state: &SimState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let expected = format!("Bearer {token}");
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

/// The members of a `/prov` call, each checked as WTL checks it. An `unset` names the members
/// to clear by sending them, whatever their value.
struct Change {
    status: Option<String>,
    cs: Option<String>,
    eps: Option<String>,
    msisdn: Option<Vec<String>>,
    clears_msisdn: bool,
    clears_status: bool,
}

/// The action, the IMSI and the change a `/prov` body asks for.
fn read_prov(body: &[u8]) -> Result<(String, String, Change), String> {
    let req: ProvRequest = serde_json::from_slice(body).map_err(|e| format!("body is not a JSON object: {e}"))?;
    let imsi = match &req.imsi {
        Some(serde_json::Value::String(s)) if s.len() == 15 && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => return Err("imsi must be a string of 15 digits".into()),
    };
    let change = Change {
        status: status_value(text(&req.subscriber_status, "subscriber_status")?)?,
        cs: text(&req.cs_profile, "cs_profile")?,
        eps: text(&req.eps_profile, "eps_profile")?,
        msisdn: msisdn_list(&req.msisdn)?,
        clears_msisdn: req.msisdn.is_some(),
        clears_status: req.subscriber_status.is_some(),
    };
    Ok((req.action.unwrap_or_default(), imsi, change))
}

/// Applies one call to the table as WTL does: `insert` of a known IMSI is 409, any other action
/// on an unknown IMSI is 404.
fn apply(hlr: &mut Hlr, action: &str, imsi: &str, change: Change) -> Result<(), (StatusCode, String)> {
    let exists = hlr.subscribers.contains_key(imsi);
    match action {
        "insert" if exists => Err((StatusCode::CONFLICT, format!("subscriber {imsi} already exists"))),
        "insert" | "update" if action == "insert" || exists => {
            let sub = complete(imsi, change).map_err(|problem| (StatusCode::BAD_REQUEST, problem.to_string()))?;
            hlr.subscribers.insert(imsi.to_string(), sub);
            Ok(())
        }
        "delete" if exists => {
            hlr.subscribers.remove(imsi);
            Ok(())
        }
        "set" | "modify" | "unset" if exists => {
            if let Some(sub) = hlr.subscribers.get_mut(imsi) {
                if action == "unset" {
                    clear(sub, &change);
                } else {
                    merge(sub, change);
                }
            }
            Ok(())
        }
        "update" | "delete" | "set" | "unset" | "modify" => {
            Err((StatusCode::NOT_FOUND, format!("subscriber {imsi} not found")))
        }
        other => Err((StatusCode::BAD_REQUEST, format!("unknown action {other:?}"))),
    }
}

/// The whole subscriber an `insert` or `update` must carry.
fn complete(imsi: &str, change: Change) -> Result<Subscriber, &'static str> {
    match change {
        Change {
            status: Some(subscriber_status),
            cs: Some(cs_profile),
            eps: Some(eps_profile),
            msisdn: Some(msisdn),
            ..
        } => Ok(Subscriber {
            imsi: imsi.to_string(),
            subscriber_status,
            cs_profile,
            eps_profile,
            msisdn,
        }),
        _ => Err("subscriber_status, cs_profile, eps_profile and msisdn are required"),
    }
}

/// `set` / `modify`: the members sent replace the stored ones.
fn merge(sub: &mut Subscriber, change: Change) {
    if let Some(s) = change.status {
        sub.subscriber_status = s;
    }
    if let Some(c) = change.cs {
        sub.cs_profile = c;
    }
    if let Some(e) = change.eps {
        sub.eps_profile = e;
    }
    if let Some(m) = change.msisdn {
        sub.msisdn = m;
    }
}

/// `unset`: the members sent are cleared (the status falls back to barring).
fn clear(sub: &mut Subscriber, change: &Change) {
    if change.clears_msisdn {
        sub.msisdn.clear();
    }
    if change.clears_status {
        sub.subscriber_status = "operatorDeterminedBarring".into();
    }
}

async fn list(State(state): State<SimState>) -> Response {
    let hlr = state.hlr.lock().unwrap_or_else(|e| e.into_inner());
    let subs: Vec<&Subscriber> = hlr.subscribers.values().collect();
    answer(
        StatusCode::OK,
        serde_json::json!({"count": subs.len(), "calls": hlr.calls, "subscribers": subs}),
    )
}

async fn one(State(state): State<SimState>, Path(imsi): Path<String>) -> Response {
    let hlr = state.hlr.lock().unwrap_or_else(|e| e.into_inner());
    match hlr.subscribers.get(&imsi) {
        Some(s) => answer(StatusCode::OK, serde_json::json!(s)),
        None => fail(StatusCode::NOT_FOUND, format!("subscriber {imsi} not found")),
    }
}

async fn reset(State(state): State<SimState>) -> Response {
    let mut hlr = state.hlr.lock().unwrap_or_else(|e| e.into_inner());
    hlr.subscribers.clear();
    answer(StatusCode::OK, serde_json::json!({"result": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMSI: &str = "001010000020349";

    fn call(hlr: &mut Hlr, body: serde_json::Value) -> Result<(), (StatusCode, String)> {
        let (action, imsi, change) =
            read_prov(body.to_string().as_bytes()).map_err(|p| (StatusCode::BAD_REQUEST, p))?;
        apply(hlr, &action, &imsi, change)
    }

    fn full(action: &str) -> serde_json::Value {
        serde_json::json!({"imsi": IMSI, "subscriber_status": "serviceGranted", "cs_profile": "cs",
                           "eps_profile": "eps", "msisdn": ["79123456789"], "action": action})
    }

    #[test]
    fn insert_then_insert_again_is_a_conflict() {
        let mut hlr = Hlr::default();
        assert_eq!(call(&mut hlr, full("insert")), Ok(()));
        assert_eq!(hlr.subscribers[IMSI].cs_profile, "cs");
        assert_eq!(
            call(&mut hlr, full("insert")).map_err(|e| e.0),
            Err(StatusCode::CONFLICT)
        );
    }

    #[test]
    fn actions_on_an_unknown_subscriber_are_not_found() {
        let mut hlr = Hlr::default();
        for action in ["update", "delete", "set", "unset", "modify"] {
            assert_eq!(
                call(&mut hlr, full(action)).map_err(|e| e.0),
                Err(StatusCode::NOT_FOUND),
                "{action}"
            );
        }
        assert!(hlr.subscribers.is_empty());
    }

    #[test]
    fn set_replaces_the_members_sent_and_unset_clears_them() {
        let mut hlr = Hlr::default();
        call(&mut hlr, full("insert")).expect("insert");
        call(
            &mut hlr,
            serde_json::json!({"imsi": IMSI, "action": "set", "eps_profile": "eps2"}),
        )
        .expect("set");
        let sub = &hlr.subscribers[IMSI];
        assert_eq!((sub.cs_profile.as_str(), sub.eps_profile.as_str()), ("cs", "eps2"));
        call(
            &mut hlr,
            serde_json::json!({"imsi": IMSI, "action": "unset", "msisdn": [], "subscriber_status": "serviceGranted"}),
        )
        .expect("unset");
        let sub = &hlr.subscribers[IMSI];
        assert!(sub.msisdn.is_empty());
        assert_eq!(sub.subscriber_status, "operatorDeterminedBarring");
        call(&mut hlr, full("delete")).expect("delete");
        assert!(hlr.subscribers.is_empty());
    }

    #[test]
    fn malformed_calls_are_refused_without_change() {
        let mut hlr = Hlr::default();
        let refused = |hlr: &mut Hlr, body: serde_json::Value| call(hlr, body).map_err(|e| e.0);
        assert_eq!(
            refused(&mut hlr, serde_json::json!({"imsi": IMSI, "action": "insert"})),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            refused(&mut hlr, serde_json::json!({"imsi": "123", "action": "insert"})),
            Err(StatusCode::BAD_REQUEST)
        );
        let mut bad_status = full("insert");
        bad_status["subscriber_status"] = "granted".into();
        assert_eq!(refused(&mut hlr, bad_status), Err(StatusCode::BAD_REQUEST));
        assert_eq!(refused(&mut hlr, full("replace")), Err(StatusCode::BAD_REQUEST));
        assert!(hlr.subscribers.is_empty());
    }
}

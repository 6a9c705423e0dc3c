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
    if let Some(token) = &state.token {
        let expected = format!("Bearer {token}");
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return fail(StatusCode::UNAUTHORIZED, "invalid credentials");
        }
    }
    let req: ProvRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("body is not a JSON object: {e}")),
    };
    let imsi = match &req.imsi {
        Some(serde_json::Value::String(s)) if s.len() == 15 && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => return fail(StatusCode::BAD_REQUEST, "imsi must be a string of 15 digits"),
    };
    let parsed = (|| {
        Ok::<_, String>((
            status_value(text(&req.subscriber_status, "subscriber_status")?)?,
            text(&req.cs_profile, "cs_profile")?,
            text(&req.eps_profile, "eps_profile")?,
            msisdn_list(&req.msisdn)?,
        ))
    })();
    let (status, cs, eps, msisdn) = match parsed {
        Ok(p) => p,
        Err(problem) => return fail(StatusCode::BAD_REQUEST, problem),
    };
    let action = req.action.unwrap_or_default();
    let mut hlr = state.hlr.lock().unwrap_or_else(|e| e.into_inner());
    hlr.calls += 1;
    let exists = hlr.subscribers.contains_key(&imsi);
    let full = || match (&status, &cs, &eps, &msisdn) {
        (Some(s), Some(c), Some(e), Some(m)) => Ok(Subscriber {
            imsi: imsi.clone(),
            subscriber_status: s.clone(),
            cs_profile: c.clone(),
            eps_profile: e.clone(),
            msisdn: m.clone(),
        }),
        _ => Err("subscriber_status, cs_profile, eps_profile and msisdn are required"),
    };
    match action.as_str() {
        "insert" if exists => return fail(StatusCode::CONFLICT, format!("subscriber {imsi} already exists")),
        "insert" | "update" if action == "insert" || exists => match full() {
            Ok(sub) => {
                hlr.subscribers.insert(imsi.clone(), sub);
            }
            Err(problem) => return fail(StatusCode::BAD_REQUEST, problem),
        },
        "delete" if exists => {
            hlr.subscribers.remove(&imsi);
        }
        "set" | "modify" if exists => {
            if let Some(sub) = hlr.subscribers.get_mut(&imsi) {
                if let Some(s) = status {
                    sub.subscriber_status = s;
                }
                if let Some(c) = cs {
                    sub.cs_profile = c;
                }
                if let Some(e) = eps {
                    sub.eps_profile = e;
                }
                if let Some(m) = msisdn {
                    sub.msisdn = m;
                }
            }
        }
        "unset" if exists => {
            if let Some(sub) = hlr.subscribers.get_mut(&imsi) {
                if req.msisdn.is_some() {
                    sub.msisdn.clear();
                }
                if req.subscriber_status.is_some() {
                    sub.subscriber_status = "operatorDeterminedBarring".into();
                }
            }
        }
        "update" | "delete" | "set" | "unset" | "modify" => {
            return fail(StatusCode::NOT_FOUND, format!("subscriber {imsi} not found"));
        }
        other => return fail(StatusCode::BAD_REQUEST, format!("unknown action {other:?}")),
    }
    answer(
        StatusCode::OK,
        serde_json::json!({"result": true, "imsi": imsi, "action": action}),
    )
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

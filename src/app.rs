//! The running service: bind, serve, drain on shutdown.
//!
//! [`Application::bind`] binds first, so callers (tests, the demo) can ask for port 0 and read
//! the port back; [`Application::run_until`] serves until the given future completes, then
//! stops accepting, lets in-flight requests finish within `SHUTDOWN_TIMEOUT` and returns.
//! Idle keep-alive connections are closed at once, so they never hold the drain open.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::normalize_path::NormalizePath;

use crate::config::Settings;
use crate::http::{self, AppState};
use crate::memory::Store;
use crate::metrics::Metrics;
use crate::rotation::Rotation;
use crate::wtl::WtlClient;

/// Stops a background task when the service stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// After `SHUTDOWN_TIMEOUT`, how long the 503 answers of cut-off events have to go out.
const ANSWER_FLUSH: Duration = Duration::from_secs(1);

/// Largest request head (request line and headers) accepted, in bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot build the WTL HTTP client: {0}")]
    Client(String),
    #[error("cannot set up the shared redelivery memory: {0}")]
    Store(String),
}

pub struct Application {
    listener: TcpListener,
    /// What the service was built from (the start-up line, rotation).
    settings: Arc<Settings>,
    state: AppState,
    cut_off: tokio::sync::watch::Sender<bool>,
    extra_routes: axum::Router<AppState>,
}

impl Application {
    /// Builds the service and binds `addr` (port 0 picks a free port).
    pub async fn bind(settings: Settings, addr: SocketAddr) -> Result<Self, StartError> {
        let listener = listen(addr).map_err(|source| StartError::Bind { addr, source })?;
        Self::on_listener(settings, listener)
    }

    /// Binds `BIND_ADDRESS:$PORT`; unset, the dual-stack `[::]:$PORT` (IPv6 and IPv4), or
    /// `0.0.0.0:$PORT` where the host has no IPv6.
    pub async fn bind_port(settings: Settings) -> Result<Self, StartError> {
        let port = settings.server.port;
        if let Some(ip) = settings.server.bind_address {
            return Self::bind(settings, SocketAddr::new(ip, port)).await;
        }
        let dual = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        let listener = match listen(dual) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::info!(error = %e, "no IPv6 on this host; listening on IPv4 only");
                let v4 = SocketAddr::from(([0, 0, 0, 0], port));
                listen(v4).map_err(|source| StartError::Bind { addr: v4, source })?
            }
        };
        Self::on_listener(settings, listener)
    }

    /// Builds the service around a bound listener.
    fn on_listener(settings: Settings, listener: TcpListener) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new(settings.rules.event_actions.keys()));
        let wtl = WtlClient::new(&settings.wtl, metrics.clone()).map_err(|e| StartError::Client(e.to_string()))?;
        let (cut_off, cut_off_rx) = tokio::sync::watch::channel(false);
        let memory = Store::open(&settings.memory, settings.server.request_timeout, metrics.clone())
            .map_err(|e| StartError::Store(e.to_string()))?;
        let state = AppState::new(http::Shared {
            memory: Arc::new(memory),
            event_slots: Arc::new(Semaphore::new(settings.server.max_in_flight)),
            ready: Arc::new(AtomicBool::new(true)),
            project: crate::telemetry::Project::discover(&settings.telemetry.cloud),
            cut_off: cut_off_rx,
            wtl: Arc::new(wtl),
            metrics,
            server: Arc::new(settings.server.clone()),
            rules: Arc::new(settings.rules.clone()),
        });
        let settings = Arc::new(settings);
        Ok(Self {
            listener,
            settings,
            state,
            cut_off,
            extra_routes: axum::Router::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address; fall back to the unspecified one.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The settings the service was built from.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves `routes` beside the connector's own, inside the same middleware.
    pub fn with_routes(mut self, routes: axum::Router<AppState>) -> Self {
        self.extra_routes = routes;
        self
    }

    /// Logs the effective configuration (secrets redacted) and any contradictions.
    pub fn log_start(&self) {
        let s = &self.settings;
        let config: serde_json::Map<String, serde_json::Value> = s
            .redacted()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config_json = %serde_json::Value::Object(config),
            "effective configuration"
        );
        if s.wtl.dry_run {
            tracing::warn!(
                "DRY RUN MODE (WTL_DRY_RUN=true): events are authenticated, parsed, planned and answered 202, but NO WTL call is made and nothing reaches the HLR"
            );
        }
        for warning in &s.warnings {
            tracing::warn!(warning = %warning, "configuration warning");
        }
        tracing::info!(address = %self.local_addr(), "connector listening");
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            settings,
            state,
            cut_off,
            extra_routes,
        } = self;
        // Secret and TLS files are watched while the service runs (`rotation`).
        let rotation = Rotation::new(settings, state.wtl.clone(), state.memory.clone());
        let _watcher = (!rotation.is_empty()).then(|| AbortOnDrop(tokio::spawn(rotation.run())));
        let _standing_timer = AbortOnDrop(tokio::spawn(keep_a_timer_pending()));
        let service = http::router_with(state.clone(), extra_routes);
        let builder = connection_builder(&state.server);
        let graceful = GracefulShutdown::new();
        accept_until(&listener, &service, &builder, &graceful, shutdown).await;
        http::set_not_ready(&state.ready);
        drop(listener);
        drain(&state, graceful, cut_off).await;
    }
}

/// How often the standing timer of [`keep_a_timer_pending`] fires.
const STANDING_TIMER: Duration = Duration::from_secs(1);

/// Keeps one timer pending at all times, due within [`STANDING_TIMER`].
///
/// Each request arms timers (the head-read limit, `REQUEST_TIMEOUT`, the WTL call's limit). The
/// runtime's timer driver wakes its parked thread with a write to an eventfd whenever a new timer
/// is due before every pending one, or when none is pending at all: with one connection that was
/// about one extra write system call per event. With this timer pending, a new timer due later
/// than a second from now never needs that wake-up; the cost is one wake-up a second.
async fn keep_a_timer_pending() {
    let mut ticks = tokio::time::interval(STANDING_TIMER);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
    }
}

/// How each connection is served: HTTP/1.1 or HTTP/2 (by ALPN or preface), with the limits on
/// request heads and, for HTTP/1.1, the time a client has to send its head.
fn connection_builder(server: &http::Settings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Accepts connections and serves each in a task of its own, watched by `graceful`, until
/// `shutdown` completes.
async fn accept_until(
    listener: &TcpListener,
    service: &NormalizePath<axum::Router>,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // The peer's address reaches the access line as the request's remote IP.
                    let per_connection = service.clone().map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        req
                    });
                    let hyper_service = hyper_util::service::TowerToHyperService::new(per_connection);
                    let conn = builder.serve_connection(TokioIo::new(stream), hyper_service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

/// Lets in-flight requests finish within `SHUTDOWN_TIMEOUT`; then events still running are
/// stopped and answered 503 (never 2xx: their WTL calls may be incomplete), and those answers
/// get a moment to reach NSPS before the process ends.
async fn drain(state: &AppState, graceful: GracefulShutdown, cut_off: tokio::sync::watch::Sender<bool>) {
    let limit = state.server.shutdown_timeout;
    let in_flight = state.server.max_in_flight - state.event_slots.available_permits();
    tracing::info!(
        in_flight_events = in_flight,
        timeout_s = limit.as_secs_f64(),
        "shutdown begun: no new connections; draining"
    );
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    if tokio::time::timeout(limit, &mut drained).await.is_ok() {
        tracing::info!("drained: every in-flight request finished");
        return;
    }
    let _ = cut_off.send(true);
    match tokio::time::timeout(ANSWER_FLUSH, &mut drained).await {
        Ok(()) => tracing::warn!(
            timeout_s = limit.as_secs_f64(),
            "drained at SHUTDOWN_TIMEOUT: the events still running were answered 503 (NSPS will redeliver them)"
        ),
        Err(_) => tracing::warn!(
            timeout_s = limit.as_secs_f64(),
            "SHUTDOWN_TIMEOUT reached: the requests still running were cut off (NSPS will redeliver them)"
        ),
    }
}

/// A listening socket on `addr`. An IPv6 wildcard accepts IPv4 too (dual-stack), whatever the
/// host's default for new sockets is.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Completes on SIGTERM or SIGINT.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    // The handlers are registered now, not when the future is first polled: a SIGTERM that
    // arrives as soon as the listener answers is then a graceful shutdown, not the default
    // action (termination without a drain).
    #[cfg(unix)]
    let streams = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
    };
    async move {
        #[cfg(unix)]
        match streams {
            Ok((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown signal received"),
                    _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown signal received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

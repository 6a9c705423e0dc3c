//! Command line (clap): `serve` (the default), `demo`, `simulator`, `healthcheck`, `openapi`,
//! `plan`, `check`, `variables`, `version`; `--help` and `--version`.

use clap::{Parser, Subcommand};
use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::app::{self, Application};
use crate::config::Settings;
use crate::simulator::Simulator;
use crate::telemetry;
use crate::telemetry::LogFormat;

/// Connects PortaOne NSPS provisioning events to a WTL HLR/HSS.
///
/// Settings come from the environment and a `.env` file in the working directory (see
/// `.env.example` and the README).
#[derive(Parser)]
#[command(name = "nsps-wtl-connector", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the connector (the default).
    Serve,
    /// Run the connector with an embedded in-memory WTL simulator, and print how to try it.
    Demo,
    /// Run only the WTL simulator on 127.0.0.1:$SIMULATOR_PORT (default 9000).
    Simulator,
    /// GET /health on 127.0.0.1:$PORT; exit 0 when healthy (for container health checks).
    Healthcheck,
    /// Print the OpenAPI document.
    Openapi,
    /// Print, as JSON, the WTL calls one NSPS event would make under the current settings
    /// (environment and .env), offline: no network, no API_TOKEN or WTL_API_URL needed.
    /// Exit 0 for `calls` and `ignored`, 2 for `invalid`.
    Plan {
        /// The event: a file, or `-` (or nothing) for standard input.
        file: Option<std::path::PathBuf>,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Check the configuration, then that WTL's host resolves, a connection (and TLS) opens,
    /// a token is obtained and Redis answers; one line each. Makes no /prov call. Exit 0 when
    /// everything passes, 1 otherwise.
    Check {
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every variable the connector reads, one a line, with its kind (`secret`,
    /// `secret-file`, `pem-file` or `setting`); the deploy scripts pass exactly these to the
    /// service.
    Variables,
    /// Print the version.
    Version,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every command reads the same settings: the environment, then a `.env` file beside it.
    load_dotenv();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => run_async(serve()),
        Command::Demo => {
            let _logs = init_logs_from_env(None);
            run_async(crate::demo::run())
        }
        Command::Simulator => run_async(simulator()),
        Command::Healthcheck => run_async(healthcheck()),
        Command::Plan { file, pretty } => plan(file.as_deref(), pretty),
        Command::Check { json } => run_async(check(json)),
        Command::Openapi => {
            print!("{}", crate::http::openapi_document());
            ExitCode::SUCCESS
        }
        Command::Variables => {
            print!("{}", crate::config::variables_listing());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("nsps-wtl-connector {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// `plan`: one event in, its WTL calls out.
fn plan(file: Option<&std::path::Path>, pretty: bool) -> ExitCode {
    let body = match file {
        None => read_stdin(),
        Some(path) if path.as_os_str() == "-" => read_stdin(),
        Some(path) => std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display())),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = match crate::golive::settings_for_plan(std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (report, code) = crate::golive::plan_event(&body, &settings.rules);
    let text = if pretty {
        serde_json::to_string_pretty(&report)
    } else {
        serde_json::to_string(&report)
    };
    println!("{}", text.unwrap_or_default());
    ExitCode::from(code)
}

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(body)
}

/// `check`: every check, one line each (or JSON); 0 when all pass.
async fn check(json: bool) -> u8 {
    let checks = crate::golive::check(Settings::from_env()).await;
    let passed = checks.iter().all(|c| c.ok);
    if json {
        let report = serde_json::json!({"ok": passed, "checks": checks});
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", crate::golive::render_checks(&checks));
    }
    u8::from(!passed)
}

fn run_async(fut: impl std::future::Future<Output = u8>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(fut))
}

fn load_dotenv() {
    // A missing .env is normal; a malformed one is reported once the logs are up.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: .env could not be read: {e}");
    }
}

/// Logging before the settings are parsed: the log settings are read on their own so that a
/// bad setting elsewhere can still be reported as a proper log line.
fn init_logs_from_env(otel: Option<&crate::telemetry::OtelSettings>) -> telemetry::Guard {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "INFO".into());
    let rust_log = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty());
    let format = match std::env::var("LOG_FORMAT").map(|f| f.trim().to_ascii_lowercase()) {
        Ok(f) if f == "text" => LogFormat::Text,
        _ => LogFormat::Json,
    };
    telemetry::init(&level, rust_log.as_deref(), format, otel)
}

async fn serve() -> u8 {
    let settings = Settings::from_env();
    // Spans are exported when the settings ask for it; a bad setting is still logged as a line.
    let _logs = init_logs_from_env(settings.as_ref().ok().and_then(|s| s.telemetry.otel.as_ref()));
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(variable = e.var(), "{e}");
            return 1;
        }
    };
    let shutdown = app::shutdown_signal();
    let app = match Application::bind_port(settings).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    app.log_start();
    app.run_until(shutdown).await;
    0
}

async fn simulator() -> u8 {
    let _logs = init_logs_from_env(None);
    let shutdown = app::shutdown_signal();
    let port: u16 = std::env::var("SIMULATOR_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9000);
    let token = std::env::var("SIMULATOR_TOKEN").ok().filter(|t| !t.is_empty());
    let sim = match Simulator::bind(SocketAddr::from(([127, 0, 0, 1], port)), token).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(port, error = %e, "cannot start the WTL simulator");
            return 1;
        }
    };
    if let Ok(addr) = sim.local_addr() {
        tracing::info!(address = %addr, "WTL simulator listening");
    }
    match sim.run_until(shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "WTL simulator failed");
            1
        }
    }
}

/// `GET /health` on this machine's `PORT` (the container's health check): exit 0 on 200.
async fn healthcheck() -> u8 {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(8000);
    crate::wtl::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unhealthy: the HTTP client could not be built: {e}");
            return 1;
        }
    };
    match client.get(format!("http://127.0.0.1:{port}/health")).send().await {
        Ok(answer) if answer.status() == reqwest::StatusCode::OK => 0,
        Ok(answer) => {
            eprintln!("unhealthy: /health on port {port} answered {}", answer.status());
            1
        }
        Err(e) => {
            eprintln!("unhealthy: cannot reach port {port}: {e}");
            1
        }
    }
}

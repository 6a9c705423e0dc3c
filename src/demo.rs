//! `demo`: the connector and an in-memory WTL simulator in one process, so a newcomer can send
//! an event and see the HLR change with nothing else running.

use std::net::SocketAddr;

use crate::app::{self, Application};
use crate::config::{Settings, is_known_var};
use crate::nsps::{SAMPLE_CREATED, SAMPLE_UPDATED};
use crate::simulator::Simulator;

/// The settings the demo runs with: the environment, with WTL pointed at the simulator.
pub(crate) fn demo_settings(simulator: SocketAddr, token: &str) -> Result<Settings, crate::config::ConfigError> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| is_known_var(k))
        .filter(|(k, _)| {
            !k.starts_with("WTL_")
                || k == "WTL_DEFAULT_CS_PROFILE"
                || k == "WTL_DEFAULT_EPS_PROFILE"
                || k == "WTL_EVENT_ACTIONS"
                || k == "WTL_IMSI_REGEXP"
        })
        .filter(|(k, _)| k != "API_TOKEN")
        .collect();
    vars.push(("API_TOKEN".into(), token.into()));
    vars.push(("WTL_API_URL".into(), format!("http://{simulator}")));
    vars.push(("WTL_AUTH".into(), "none".into()));
    Settings::from_vars(vars)
}

/// Runs the demo until SIGTERM/SIGINT. Returns a process exit code.
pub(crate) async fn run() -> u8 {
    let sim_port: u16 = std::env::var("SIMULATOR_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let simulator = match Simulator::bind(SocketAddr::from(([127, 0, 0, 1], sim_port)), None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the WTL simulator");
            return 1;
        }
    };
    let sim_addr = match simulator.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the simulator's address");
            return 1;
        }
    };
    let token = std::env::var("API_TOKEN")
        .ok()
        .and_then(|t| t.split(',').next().map(|s| s.trim().to_string()))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("demo-{}", uuid::Uuid::new_v4().simple()));
    let settings = match demo_settings(sim_addr, &token) {
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
    let port = app.local_addr().port();
    print_banner(port, sim_addr, &token);

    let (stop_sim, sim_stopped) = tokio::sync::oneshot::channel::<()>();
    let sim_task = tokio::spawn(simulator.run_until(async move {
        let _ = sim_stopped.await;
    }));
    tracing::info!(address = %sim_addr, "WTL simulator listening");
    app.run_until(shutdown).await;
    let _ = stop_sim.send(());
    let _ = sim_task.await;
    0
}

/// Human instructions go to stderr; stdout stays JSON log lines only.
fn print_banner(port: u16, sim: SocketAddr, token: &str) {
    let url = format!("http://127.0.0.1:{port}");
    eprintln!(
        "\n\
         NSPS -> WTL HLR/HSS connector demo\n\
         connector      {url}   (Bearer token: {token})\n\
         WTL simulator  http://{sim}   (in-memory HLR/HSS)\n\
         \n\
         1) A new SIM arrives in inventory (SIM/Created -> insert, barred, no number):\n\
         curl -sS -X POST {url}/process-event -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{SAMPLE_CREATED}'\n\
         \n\
         2) The SIM is given to an open account (SIM/Updated -> update, service granted, MSISDN, profiles):\n\
         curl -sS -X POST {url}/process-event -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{SAMPLE_UPDATED}'\n\
         \n\
         3) Read back what the HLR holds:\n\
         curl -sS http://{sim}/subscribers/001010000020349\n\
         \n\
         Stop with Ctrl-C.\n"
    );
}

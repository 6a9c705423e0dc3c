//! The Google Cloud project the log lines name their traces in (`projects/<id>/traces/<trace>`).
//!
//! `GOOGLE_CLOUD_PROJECT` when set. Else, on Cloud Run (`K_SERVICE` set), the project id is asked
//! once from the metadata server (`GCE_METADATA_HOST` overrides its address, as Google's client
//! libraries do) in a task of its own: start-up and events never wait for it; lines written
//! before the answer arrives carry no trace name.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Where the project id comes from, read by `config`.
#[derive(Clone, Debug, Default)]
pub(crate) struct CloudSettings {
    /// `GOOGLE_CLOUD_PROJECT`.
    pub project: Option<String>,
    /// `K_SERVICE`: set by Cloud Run.
    pub on_cloud_run: bool,
    /// `GCE_METADATA_HOST`, else `metadata.google.internal`.
    pub metadata_host: String,
}

/// The default address of the metadata server.
pub(crate) const METADATA_HOST: &str = "metadata.google.internal";

/// The project id of one running service, once known (shared by its requests).
#[derive(Clone, Debug, Default)]
pub(crate) struct Project(Arc<OnceLock<String>>);

impl Project {
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    /// Makes the project id known: at once from `GOOGLE_CLOUD_PROJECT`, or in the background
    /// from the metadata server on Cloud Run. Call from inside the async runtime.
    pub(crate) fn discover(settings: &CloudSettings) -> Self {
        let project = Self::default();
        if let Some(id) = settings.project.clone().filter(|p| !p.is_empty()) {
            let _ = project.0.set(id);
            return project;
        }
        if settings.on_cloud_run {
            let (slot, host) = (project.0.clone(), settings.metadata_host.clone());
            tokio::spawn(async move {
                match ask_metadata_server(&host).await {
                    Ok(id) => {
                        tracing::info!(project = %id, "Cloud Logging project read from the metadata server");
                        let _ = slot.set(id);
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "the project id could not be read from the metadata server; log lines carry no trace name (set GOOGLE_CLOUD_PROJECT)"
                    ),
                }
            });
        }
        project
    }
}

/// `GET http://<host>/computeMetadata/v1/project/project-id` with `Metadata-Flavor: Google`,
/// a few tries over a few seconds.
async fn ask_metadata_server(host: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://{host}/computeMetadata/v1/project/project-id");
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        match client.get(&url).header("Metadata-Flavor", "Google").send().await {
            Ok(answer) if answer.status().is_success() => {
                let text = answer.text().await.map_err(|e| e.to_string())?;
                let project = text.trim();
                if !project.is_empty() && project.len() <= 100 && project.bytes().all(|b| b.is_ascii_graphic()) {
                    return Ok(project.to_string());
                }
                last = "the metadata server answered no usable project id".into();
            }
            Ok(answer) => last = format!("the metadata server answered {}", answer.status()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

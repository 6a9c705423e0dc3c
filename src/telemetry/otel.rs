//! OpenTelemetry: the connector's spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; nothing at all otherwise.
//!
//! The spans are made through the SDK by [`super::spans`]: a server span per request (its parent
//! the incoming trace context), a span for the redelivery store, a client span per WTL attempt
//! and per token fetch. They are exported by a batch processor whose queue is bounded: when the
//! collector is down or slow, spans beyond the queue are dropped and a WARNING says so, and no
//! answer ever waits for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};

/// The service name when `OTEL_SERVICE_NAME` is unset.
pub(crate) const DEFAULT_SERVICE_NAME: &str = "nsps-wtl-connector";
/// Spans waiting for export, at most; beyond that they are dropped.
const QUEUE: usize = 2_048;
/// How long one export may take before it counts as failed (a hanging collector is reported
/// after this long).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How spans are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    HttpProtobuf,
    Grpc,
}

/// The `OTEL_*` settings, read and checked by `config`.
#[derive(Clone)]
pub(crate) struct OtelSettings {
    /// Where spans go: the traces endpoint as given, or the general endpoint plus `/v1/traces`
    /// for http/protobuf.
    pub endpoint: String,
    pub protocol: Protocol,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (may carry an API key: never shown).
    pub headers: Vec<(String, secrecy::SecretString)>,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: SamplerSetting,
}

impl std::fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelSettings")
            .field("endpoint", &self.shown_endpoint())
            .field("protocol", &self.protocol)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("service_name", &self.service_name)
            .field("sampler", &self.sampler)
            .finish_non_exhaustive()
    }
}

impl OtelSettings {
    /// The endpoint as it may be shown: credentials in it (`user:password@`) hidden.
    pub(crate) fn shown_endpoint(&self) -> String {
        super::redact::hide_userinfo(&self.endpoint)
    }
}

/// `OTEL_TRACES_SAMPLER` (with `OTEL_TRACES_SAMPLER_ARG` for the ratios).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum SamplerSetting {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerSetting {
    /// Reads `OTEL_TRACES_SAMPLER` and its argument; the default is `parentbased_always_on`.
    pub(crate) fn parse(name: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim) {
                None => Ok(1.0),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, got {a:?}")),
            }
        };
        Ok(match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
            None | Some("parentbased_always_on") => Self::ParentBasedAlwaysOn,
            Some("always_on") => Self::AlwaysOn,
            Some("always_off") => Self::AlwaysOff,
            Some("traceidratio") => Self::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => Self::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => Self::ParentBasedTraceIdRatio(ratio()?),
            Some(other) => {
                return Err(format!(
                    "{other:?} is not a sampler (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
                ));
            }
        })
    }

    fn sampler(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))),
        }
    }
}

/// The tracer spans are exported through, once there is one (the first stays: a second
/// initialisation in one process keeps the first, as the log layers do).
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The tracer spans are made by ([`super::spans`]), when spans are exported (spans are only
/// made then).
pub(super) fn tracer_in_use() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// The tracer provider; must be built inside the async runtime (exports run there).
///
/// Spans are queued by the SDK's batch processor, whose thread is told to export only when a
/// batch is full or its interval has passed: ending a span wakes no thread and no task. The
/// export itself runs on the async runtime ([`Reporting`]), which the HTTP and gRPC clients need.
pub(super) fn provider(settings: &OtelSettings) -> Result<SdkTracerProvider, String> {
    let exporter = Reporting::new(exporter(settings)?, tokio::runtime::Handle::current());
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().with_max_queue_size(QUEUE).build())
        .build();
    let mut resource = Resource::builder_empty().with_service_name(settings.service_name.clone());
    for (key, value) in &settings.resource_attributes {
        resource = resource.with_attribute(KeyValue::new(key.clone(), value.clone()));
    }
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_sampler(settings.sampler.sampler())
        .with_id_generator(super::spans::CallerTraceIds::default())
        .with_resource(resource.build())
        .build();
    Ok(provider)
}

/// Makes the provider's tracer the one spans are made by ([`super::spans`]).
pub(super) fn tracer(provider: &SdkTracerProvider) {
    let _ = TRACER.set(provider.tracer("nsps-wtl-connector"));
}

fn exporter(settings: &OtelSettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match settings.protocol {
        Protocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("the OTLP HTTP client could not be built: {e}"))?;
            let headers = settings
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), secrecy::ExposeSecret::expose_secret(v).to_string()))
                .collect();
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .with_headers(headers)
                .build()
        }
        // gRPC reads OTEL_EXPORTER_OTLP_HEADERS from the environment itself.
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    };
    built.map_err(|e| format!("the OTLP exporter could not be built: {e}"))
}

/// The exporter, run on the async runtime and bounded in time, saying at WARNING when exports
/// start failing (once until one succeeds again) and at INFO when they recover. These lines are
/// written outside any request span.
#[derive(Debug)]
struct Reporting<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
    failing: AtomicBool,
}

impl<E> Reporting<E> {
    fn new(inner: E, runtime: tokio::runtime::Handle) -> Self {
        Self {
            inner: Arc::new(inner),
            runtime,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter + 'static> Reporting<E> {
    /// One export on the async runtime, waited for from the batch processor's thread. A collector
    /// that accepts and never answers fails like one that is down.
    async fn export_on_runtime(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = Arc::clone(&self.inner);
        let export = self.runtime.spawn(async move {
            tokio::time::timeout(EXPORT_TIMEOUT, inner.export(batch))
                .await
                .unwrap_or(Err(OTelSdkError::Timeout(EXPORT_TIMEOUT)))
        });
        export
            .await
            .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(format!("the export was stopped: {e}"))))
    }
}

impl<E: SpanExporter + 'static> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.export_on_runtime(batch).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                target: "nsps_wtl_connector::otel_export",
                error = %e,
                spans,
                "spans could not be exported to the OpenTelemetry collector; dropping them (events are not affected)"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(target: "nsps_wtl_connector::otel_export", "span export to the OpenTelemetry collector works again")
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export holds a copy.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_read_as_the_specification_names_them() {
        assert_eq!(
            SamplerSetting::parse(None, None),
            Ok(SamplerSetting::ParentBasedAlwaysOn)
        );
        assert_eq!(
            SamplerSetting::parse(Some("TraceIdRatio"), Some("0.25")),
            Ok(SamplerSetting::TraceIdRatio(0.25))
        );
        assert_eq!(
            SamplerSetting::parse(Some("parentbased_traceidratio"), None),
            Ok(SamplerSetting::ParentBasedTraceIdRatio(1.0))
        );
        assert!(SamplerSetting::parse(Some("traceidratio"), Some("2")).is_err());
        assert!(SamplerSetting::parse(Some("jaeger_remote"), None).is_err());
    }
}

//! The OpenTelemetry settings of the validation pass: the standard `OTEL_*` variables.

use secrecy::SecretString;

use super::env::RawEnv;
use super::problems::Problems;
use crate::telemetry::{OtelSettings, Protocol, SamplerSetting, otel::DEFAULT_SERVICE_NAME};

/// `None` when neither endpoint is set: no export at all.
pub(super) fn settings(p: &mut Problems, raw: &mut RawEnv) -> Option<OtelSettings> {
    let protocol = protocol(p, raw.otel_exporter_otlp_protocol.take());
    let endpoint = traces_endpoint(p, raw, protocol)?;
    let sampler = SamplerSetting::parse(
        raw.otel_traces_sampler.as_deref(),
        raw.otel_traces_sampler_arg.as_deref(),
    )
    .unwrap_or_else(|problem| {
        p.add("OTEL_TRACES_SAMPLER", problem);
        SamplerSetting::ParentBasedAlwaysOn
    });
    let headers = pairs(
        p,
        "OTEL_EXPORTER_OTLP_HEADERS",
        raw.otel_exporter_otlp_headers.as_deref(),
    )
    .into_iter()
    .map(|(k, v)| (k, SecretString::from(v)))
    .collect();
    let resource_attributes = pairs(p, "OTEL_RESOURCE_ATTRIBUTES", raw.otel_resource_attributes.as_deref());
    let service_name = service_name(raw.otel_service_name.take(), &resource_attributes);
    Some(OtelSettings {
        endpoint,
        protocol,
        headers,
        service_name,
        resource_attributes,
        sampler,
    })
}

fn protocol(p: &mut Problems, text: Option<String>) -> Protocol {
    match text.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            p.add(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                format!("expected http/protobuf or grpc, got {other:?}"),
            );
            Protocol::HttpProtobuf
        }
    }
}

/// Where spans go: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (with `/v1/traces` for http/protobuf); `None` when neither is
/// set or the one given is not usable (a problem then).
fn traces_endpoint(p: &mut Problems, raw: &mut RawEnv, protocol: Protocol) -> Option<String> {
    match (
        raw.otel_exporter_otlp_traces_endpoint.take(),
        raw.otel_exporter_otlp_endpoint.take(),
    ) {
        (Some(traces), _) => endpoint(p, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces),
        (None, Some(base)) => {
            let base = endpoint(p, "OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
            Some(match protocol {
                Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                Protocol::Grpc => base,
            })
        }
        (None, None) => None,
    }
}

/// `OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else the default.
fn service_name(name: Option<String>, resource_attributes: &[(String, String)]) -> String {
    name.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            resource_attributes
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.as_str())
        })
        .unwrap_or(DEFAULT_SERVICE_NAME)
        .to_string()
}

/// An http(s) URL; the text is never echoed (it may carry credentials).
fn endpoint(p: &mut Problems, var: &'static str, text: &str) -> Option<String> {
    match url::Url::parse(text.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(text.trim().to_string()),
        _ => {
            p.add(var, "must be an http:// or https:// URL");
            None
        }
    }
}

/// `key=value,key2=value2` with percent-encoded values (W3C Baggage form, as the
/// specification has it for both variables).
fn pairs(p: &mut Problems, var: &'static str, text: Option<&str>) -> Vec<(String, String)> {
    let Some(text) = text else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            // The item is not echoed: for the headers it may be a secret.
            p.add(var, "expected key=value items separated by commas");
            return Vec::new();
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s.trim())
                .decode_utf8_lossy()
                .into_owned()
        };
        out.push((decode(key), decode(value)));
    }
    out
}

//! The OpenAPI document of the connector's HTTP surface, generated with utoipa from the types
//! the connector reads events into and writes its answers from, and from the handlers'
//! `#[utoipa::path]` attributes.
//!
//! The committed `openapi.json` is this document (`nsps-wtl-connector openapi > openapi.json`);
//! a test fails when they drift apart, and CI runs schemathesis against the running demo with it.
//! Fields the connector reads are typed as the connector checks them; members it accepts
//! without reading are described and left open (any value).

use std::sync::OnceLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::info::InfoBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema};

use crate::http::{self, SERVICE_NAME, events};

#[derive(OpenApi)]
#[openapi(
    paths(http::health, events::handle_event, http::ready, http::metrics, http::openapi),
    // Reached from the event only through `access_policy_info`'s one-or-many schema.
    components(schemas(crate::nsps::AccessPolicy)),
    modifiers(&Surface)
)]
struct Api;

/// What the handler attributes cannot say on their own: the document's header, the Bearer
/// scheme, the root path (health on GET, events on POST), the trace id headers every answer
/// carries, and the event members the connector does not read.
struct Surface;

impl Modify for Surface {
    fn modify(&self, doc: &mut Document) {
        doc.info = InfoBuilder::new()
            .title(SERVICE_NAME)
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Takes PortaOne NSPS provisioning events and applies them to a WTL HLR/HSS.",
            ))
            .build();
        serve_root(doc);
        add_trace_headers(doc);
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of the tokens in API_TOKEN."))
                    .build(),
            ),
        );
        crate::nsps::schema::describe_unread(components);
    }
}

/// `/` answers GET like `/health` and POST like `/process-event`.
fn serve_root(doc: &mut Document) {
    let paths = &mut doc.paths.paths;
    // Operation ids are unique in a document: the root's copies get their own.
    let copy = |operation: Option<&Operation>, id: &str| {
        operation.cloned().map(|mut op| {
            op.operation_id = Some(id.to_string());
            op
        })
    };
    let mut root = utoipa::openapi::PathItem::default();
    root.get = copy(paths.get("/health").and_then(|item| item.get.as_ref()), "root_health");
    root.post = copy(
        paths.get("/process-event").and_then(|item| item.post.as_ref()),
        "root_process_event",
    );
    paths.insert("/".to_string(), root);
    // The root first, as a reader looks for it.
    paths.move_index(paths.len() - 1, 0);
}

/// Every answer carries `x-b3-traceid` and `x-request-id` (set by the edge's layers).
fn add_trace_headers(doc: &mut Document) {
    let trace = HeaderBuilder::new()
        .schema(String::schema())
        .description(Some("The request's trace id (the caller's, or a generated UUID v4)."))
        .build();
    let request = HeaderBuilder::new()
        .schema(String::schema())
        .description(Some("The request's unique id (the caller's, or a generated UUID v4)."))
        .build();
    for item in doc.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert("x-b3-traceid".into(), trace.clone());
                    response.headers.insert("x-request-id".into(), request.clone());
                }
            }
        }
    }
}

/// The document as pretty JSON with a final newline, built once.
pub(crate) fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| Api::openapi().to_pretty_json().unwrap_or_default() + "\n")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document_value() -> Value {
        serde_json::from_str(document()).expect("the document is JSON")
    }

    #[test]
    fn committed_openapi_json_is_the_generated_one() {
        let committed = include_str!("../../openapi.json");
        assert!(
            committed == document(),
            "openapi.json is out of date: run `cargo run -- openapi > openapi.json`"
        );
    }

    #[test]
    fn every_spec_status_is_documented_for_events() {
        let doc = document_value();
        for path in ["/", "/process-event"] {
            let responses = &doc["paths"][path]["post"]["responses"];
            for status in ["202", "401", "404", "413", "415", "422", "429", "500", "503"] {
                assert!(responses.get(status).is_some(), "{path}: {status} missing");
                assert!(
                    responses[status]["headers"].get("x-b3-traceid").is_some(),
                    "{path}: {status} without the trace id header"
                );
            }
        }
        assert!(doc["paths"]["/"]["get"]["responses"].get("200").is_some());
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document_value();
        let mut ids = Vec::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("path item").values() {
                ids.push(operation["operationId"].as_str().expect("an operation id").to_string());
            }
        }
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }

    #[test]
    fn every_event_field_of_the_contract_is_described() {
        let doc = document_value();
        let schemas = &doc["components"]["schemas"];
        let has = |schema: &str, fields: &[&str]| {
            for field in fields {
                assert!(
                    schemas[schema]["properties"].get(*field).is_some(),
                    "{schema}.{field} is not described"
                );
            }
        };
        has(
            "Event",
            &[
                "event_id",
                "data",
                "pb_data",
                "handler_id",
                "status",
                "created_at",
                "updated_at",
            ],
        );
        has("EventData", &["event_type", "variables"]);
        has(
            "PbData",
            &[
                "account_info",
                "sim_info",
                "prev_sim_info",
                "access_policy_info",
                "product_info",
                "full_vd_counter_info",
            ],
        );
        has(
            "AccountInfo",
            &["bill_status", "blocked", "id", "billing_model", "status"],
        );
        has("SimInfo", &["imsi", "msisdn", "iccid"]);
        has("AccessPolicy", &["attributes", "i_access_policy"]);
        has("PolicyAttribute", &["group_name", "name", "value"]);
    }

    #[test]
    fn every_unread_member_list_names_a_schema_of_the_document() {
        let doc = document_value();
        for (schema, _) in crate::nsps::schema::UNREAD {
            assert!(
                doc["components"]["schemas"].get(*schema).is_some(),
                "{schema} is not a schema of the document"
            );
        }
    }

    #[test]
    fn answers_are_described_by_the_types_that_write_them() {
        let doc = document_value();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ErrorType"]["enum"],
            serde_json::json!([
                "VALIDATION_ERROR",
                "AUTHENTICATION_ERROR",
                "SERVICE_ERROR",
                "CONNECTION_ERROR",
                "RATE_LIMIT_ERROR",
                "INTERNAL_ERROR"
            ])
        );
        assert_eq!(
            schemas["CallResult"]["enum"],
            serde_json::json!(["applied", "already_applied", "planned", "stale"])
        );
        assert_eq!(
            schemas["Action"]["enum"],
            serde_json::json!(["insert", "update", "delete", "set", "unset", "modify"])
        );
    }
}

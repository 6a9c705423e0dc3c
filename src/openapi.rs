//! The OpenAPI document of the connector's HTTP surface, built from code.
//!
//! The committed `openapi.json` is this document (`nsps-wtl-connector openapi > openapi.json`);
//! a test fails when they drift apart, and CI runs schemathesis against the running demo with it.
//! Fields the connector reads are typed as the connector checks them; fields it does not read
//! are described but left open (`{}`), because any value there is accepted.

use serde_json::{Value, json};

use crate::http::SERVICE_NAME;

fn any(description: &str) -> Value {
    json!({"description": description})
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "headers": trace_headers(),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn trace_headers() -> Value {
    json!({
        "x-b3-traceid": {"description": "The request's trace id (the caller's, or a generated UUID v4).", "schema": {"type": "string"}},
        "x-request-id": {"description": "The request's unique id (the caller's, or a generated UUID v4).", "schema": {"type": "string"}}
    })
}

fn with_header(mut response: Value, name: &str, description: &str) -> Value {
    response["headers"][name] = json!({"description": description, "schema": {"type": "string"}});
    response
}

fn event_responses() -> Value {
    let retry_after = "Seconds to wait before redelivering.";
    json!({
        "202": {
            "description": "Processed (`actions` lists the WTL calls made), ignored (`message` starts with `Event ignored:`), or already processed.",
            "headers": trace_headers(),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}
        },
        "400": error_response("The body could not be read (the connection failed while sending it)."),
        "401": with_header(error_response("Missing or wrong Bearer token."), "www-authenticate", "Always `Bearer`."),
        "404": error_response("WTL does not know the subscriber (WTL answered 404 to a call other than delete)."),
        "413": error_response("The body is larger than MAX_BODY_BYTES."),
        "415": error_response("The Content-Type is not JSON."),
        "422": error_response("Malformed JSON, a missing or mistyped field, a field rule broken (`details` names the field), or WTL rejected the data (WTL's text in `error`)."),
        "429": with_header(error_response("WTL is rate limiting the connector."), "retry-after", retry_after),
        "500": error_response("WTL failed or rejected the connector's credentials (SERVICE_ERROR), or an internal error (INTERNAL_ERROR)."),
        "503": with_header(error_response("WTL or its token endpoint unreachable or timed out, or the shared redelivery store (Redis) unavailable (CONNECTION_ERROR); the connector busy or shutting down (SERVICE_ERROR)."), "retry-after", retry_after)
    })
}

fn event_schema() -> Value {
    let sim_info = json!({
        "type": "object",
        "nullable": true,
        "description": "A SIM card.",
        "properties": {
            "imsi": {"type": "string", "nullable": true, "pattern": "^\\s*([0-9]{15})?\\s*$",
                     "description": "15 digits (checked when the event type is mapped in WTL_EVENT_ACTIONS). Absent or empty: the event is ignored."},
            "msisdn": {"type": "string", "nullable": true, "description": "Fallback number when the account id holds none."},
            "i_account": any("integer"), "i_sim_card": any("integer"),
            "iccid": any("string"), "status": any("string")
        }
    });
    json!({
        "type": "object",
        "required": ["event_id", "data"],
        "description": "An NSPS event. Members not listed are accepted and ignored.",
        "properties": {
            "event_id": {"type": "string", "pattern": "\\S", "description": "Unique id of the event; redeliveries carry the same id."},
            "data": {
                "type": "object",
                "required": ["event_type"],
                "properties": {
                    "event_type": {"type": "string", "pattern": "\\S", "description": "ESPF event type, e.g. SIM/Updated."},
                    "variables": any("Event variables (object); passed through, not used.")
                }
            },
            "pb_data": {
                "type": "object",
                "nullable": true,
                "description": "PortaBilling data. Every member is optional.",
                "properties": {
                    "account_info": {
                        "type": "object",
                        "nullable": true,
                        "properties": {
                            "bill_status": {"type": "string", "nullable": true,
                                            "description": "open, suspended, inactive, terminated, or PortaBilling's O, S, I, C. Any other value counts as not open."},
                            "blocked": {"nullable": true, "description": "true/false, or \"Y\"/\"N\".",
                                        "oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["Y", "N", "y", "n"]}]},
                            "id": {"type": "string", "nullable": true, "description": "Account id; for mobile accounts \"<msisdn>@msisdn\"."},
                            "billing_model": any("debit_account, recharge_voucher, credit_account, alias, beneficiary"),
                            "status": any("Account status, e.g. active, blocked, suspended, closed."),
                            "email": any("string"), "firstname": any("string"), "lastname": any("string"),
                            "phone1": any("string"), "product_name": any("string"), "time_zone_name": any("string"),
                            "zip": any("string"), "i_account": any("integer"), "i_customer": any("integer"),
                            "i_master_account": any("integer"), "i_product": any("integer"), "i_vd_plan": any("integer"),
                            "assigned_addons": any("List of add-ons: addon_effective_from, addon_effective_to, addon_priority, description, i_product, i_product_group, i_vd_plan, name."),
                            "service_features": any("List of service features: name, effective_flag_value, attributes[{name, effective_value}].")
                        }
                    },
                    "sim_info": sim_info.clone(),
                    "prev_sim_info": sim_info,
                    "access_policy_info": {
                        "nullable": true,
                        "description": "One access policy, or a list of them. The first attribute named cs_profile / eps_profile gives the profile (first item of a comma-separated value); it must match ^[a-zA-Z][-_.a-zA-Z0-9]*$.",
                        "oneOf": [
                            {"$ref": "#/components/schemas/AccessPolicy"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/AccessPolicy"}}
                        ]
                    },
                    "product_info": any("name, description, i_product, i_vd_plan, addon_priority"),
                    "full_vd_counter_info": any("List of volume discount counters.")
                }
            },
            "handler_id": any("string"),
            "status": any("string"),
            "created_at": any("ISO-8601 date-time; used for ordering when updated_at is absent."),
            "updated_at": any("ISO-8601 date-time; an event older than the last one applied to its IMSI is ignored.")
        }
    })
}

fn document_value() -> Value {
    let health = json!({
        "description": "Healthy.",
        "headers": trace_headers(),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}
    });
    let get_only =
        |summary: &str, responses: Value| json!({"summary": summary, "security": [], "responses": responses});
    let post_event = json!({
        "summary": "Process an NSPS event",
        "description": "Authenticates, parses, decides the WTL calls, makes them and answers. Safe to redeliver.",
        "security": [{"bearerAuth": []}],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}}
        },
        "responses": event_responses()
    });
    let not_allowed = error_response("Method not allowed (with `Allow`).");
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": SERVICE_NAME,
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Takes PortaOne NSPS provisioning events and applies them to a WTL HLR/HSS."
        },
        "paths": {
            "/": {
                "get": get_only("Health", json!({"200": health.clone()})),
                "post": post_event.clone()
            },
            "/health": {
                "get": get_only("Health", json!({"200": health}))
            },
            "/ready": {
                "get": get_only("Readiness", json!({
                    "200": {"description": "Serving.", "headers": trace_headers(),
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}},
                    "503": error_response("Shutting down, or the shared redelivery store (Redis) does not answer.")
                }))
            },
            "/process-event": {"post": post_event},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [{"bearerAuth": []}],
                    "responses": {
                        "200": {"description": "Prometheus text format.", "headers": trace_headers(),
                                "content": {"text/plain": {"schema": {"type": "string"}}}},
                        "401": with_header(error_response("Missing or wrong Bearer token (unless METRICS_PUBLIC=true)."), "www-authenticate", "Always `Bearer`.")
                    }
                }
            },
            "/openapi.json": {
                "get": get_only("This document", json!({
                    "200": {"description": "The OpenAPI document.", "headers": trace_headers(),
                            "content": {"application/json": {"schema": {"type": "object"}}}}
                }))
            }
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "One of the tokens in API_TOKEN."}
            },
            "responses": {"MethodNotAllowed": not_allowed},
            "schemas": {
                "Event": event_schema(),
                "AccessPolicy": {
                    "type": "object",
                    "properties": {
                        "i_access_policy": any("integer"),
                        "name": any("string"),
                        "attributes": {
                            "type": "array",
                            "nullable": true,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "group_name": any("e.g. lte.wtl"),
                                    "name": any("cs_profile, eps_profile, or another attribute"),
                                    "value": any("The profile for cs_profile / eps_profile: a string.")
                                }
                            }
                        }
                    }
                },
                "Accepted": {
                    "type": "object",
                    "required": ["message", "event_id"],
                    "properties": {
                        "message": {"type": "string"},
                        "event_id": {"type": "string"},
                        "actions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["action", "imsi", "result"],
                                "properties": {
                                    "action": {"type": "string", "enum": ["insert", "update", "delete", "set", "unset", "modify"]},
                                    "imsi": {"type": "string"},
                                    "result": {"type": "string", "enum": ["applied", "already_applied", "planned"],
                                               "description": "planned: WTL_DRY_RUN, the call was not made."}
                                }
                            }
                        },
                        "dry_run": {"type": "boolean", "description": "Present and true only with WTL_DRY_RUN=true: no WTL call was made."}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["message", "error", "type"],
                    "properties": {
                        "message": {"type": "string"},
                        "error": {"type": "string"},
                        "type": {"type": "string", "enum": ["VALIDATION_ERROR", "AUTHENTICATION_ERROR", "SERVICE_ERROR", "CONNECTION_ERROR", "RATE_LIMIT_ERROR", "INTERNAL_ERROR"]},
                        "details": {"description": "Field problems (a list of {field, message}) or the failed WTL call."}
                    }
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "service", "version"],
                    "properties": {
                        "status": {"type": "string", "enum": ["Healthy"]},
                        "service": {"type": "string"},
                        "version": {"type": "string"}
                    }
                },
                "Ready": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["Ready"]}}
                }
            }
        }
    })
}

/// The document as pretty JSON with a final newline.
pub fn document() -> String {
    serde_json::to_string_pretty(&document_value()).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_openapi_json_is_the_generated_one() {
        let committed = include_str!("../openapi.json");
        assert!(
            committed == document(),
            "openapi.json is out of date: run `cargo run -- openapi > openapi.json`"
        );
    }

    #[test]
    fn every_spec_status_is_documented_for_events() {
        let doc = document_value();
        let responses = &doc["paths"]["/process-event"]["post"]["responses"];
        for status in ["202", "401", "404", "413", "415", "422", "429", "500", "503"] {
            assert!(responses.get(status).is_some(), "{status} missing");
        }
    }

    #[test]
    fn every_event_field_of_the_contract_is_described() {
        let doc = document_value();
        let event = &doc["components"]["schemas"]["Event"]["properties"];
        for field in [
            "event_id",
            "data",
            "pb_data",
            "handler_id",
            "status",
            "created_at",
            "updated_at",
        ] {
            assert!(event.get(field).is_some(), "{field}");
        }
        let pb = &event["pb_data"]["properties"];
        for field in [
            "account_info",
            "sim_info",
            "prev_sim_info",
            "access_policy_info",
            "product_info",
            "full_vd_counter_info",
        ] {
            assert!(pb.get(field).is_some(), "{field}");
        }
    }
}

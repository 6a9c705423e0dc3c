//! The OpenAPI document of the connector's HTTP surface, built from code.

/// The document as pretty JSON (also the committed `openapi.json`).
pub fn document() -> String {
    let doc = serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "NSPS WTL HLR/HSS connector", "version": env!("CARGO_PKG_VERSION")},
        "paths": {}
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

//! What every input to the parse-and-plan path must come to: a plan, a skip, or a problem that
//! names a field; anything else (a panic included) is a finding. Shared by the fuzz target and
//! by `cargo test` (tests/properties.rs), which also runs the fuzz corpus through it.

use nsps_wtl_connector::{Plan, PlanRules, Settings, parse_event, plan};

/// The settings the fuzz target plans under: an IMSI rule and every event type mapped.
pub fn fuzz_rules() -> PlanRules {
    Settings::from_vars([
        ("API_TOKEN", "t"),
        ("WTL_API_URL", "http://127.0.0.1:9"),
        ("WTL_IMSI_REGEXP", "^0010[0-9]"),
        (
            "WTL_EVENT_ACTIONS",
            "SIM/Updated=update,SIM/Created=insert,SIM/Deleted=delete,SIM/Replaced=update,Account/Blocked=modify",
        ),
    ])
    .map(|s| s.rules)
    .unwrap_or_else(|e| panic!("fuzz settings: {e}"))
}

/// Parses `body` and plans it under `rules`, asserting the outcome is one of the three.
pub fn check(body: &[u8], rules: &PlanRules) {
    match parse_event(body) {
        Err(problem) => assert!(!problem.field.is_empty() && !problem.message.is_empty(), "{problem:?}"),
        Ok(event) => match plan(&event, rules) {
            Ok(Plan::Calls(calls)) => assert!(!calls.is_empty() && calls.len() <= 2),
            Ok(Plan::Skip(reason)) => assert!(!reason.to_string().is_empty()),
            Err(problem) => assert!(problem.field.starts_with("pb_data."), "{problem:?}"),
        },
    }
}

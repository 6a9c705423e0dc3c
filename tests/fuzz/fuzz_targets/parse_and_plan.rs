//! Fuzz target: any bytes as an event body through the parser and the plan.
//! Every outcome must be a plan, a skip or a problem naming a field; a panic is a finding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nsps_wtl_connector::Settings;
use nsps_wtl_connector::parse_event;
use nsps_wtl_connector::{Plan, PlanRules, plan};

fn rules() -> &'static PlanRules {
    static RULES: OnceLock<PlanRules> = OnceLock::new();
    RULES.get_or_init(|| {
        Settings::from_vars([
            ("API_TOKEN", "t"),
            ("WTL_API_URL", "http://127.0.0.1:9"),
            ("WTL_IMSI_REGEXP", "^0010[0-9]"),
            ("WTL_EVENT_ACTIONS", "SIM/Updated=update,SIM/Created=insert,SIM/Deleted=delete,SIM/Replaced=update,Account/Blocked=modify"),
        ])
        .map(|s| s.rules)
        .unwrap_or_else(|e| panic!("fuzz settings: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    match parse_event(data) {
        Err(problem) => assert!(!problem.field.is_empty()),
        Ok(event) => match plan(&event, rules()) {
            Ok(Plan::Calls(calls)) => assert!(!calls.is_empty() && calls.len() <= 2),
            Ok(Plan::Skip(_)) => {}
            Err(problem) => assert!(problem.field.starts_with("pb_data.")),
        },
    }
});

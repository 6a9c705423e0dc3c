//! Fuzz target: any bytes as an event body through the parser and the plan ([`check`]).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nsps_wtl_connector::PlanRules;

mod check;

fn rules() -> &'static PlanRules {
    static RULES: OnceLock<PlanRules> = OnceLock::new();
    RULES.get_or_init(check::fuzz_rules)
}

fuzz_target!(|data: &[u8]| check::check(data, rules()));

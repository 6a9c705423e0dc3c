//! The validation pass: from the typed environment to [`Settings`], naming every problem.
//!
//! Each module's settings are read by a function of their own (`server.rs`, `wtl.rs`,
//! `memory.rs`, `telemetry.rs`), straight into the module's own type; a problem is recorded
//! (with the variable's name) and reading goes on with the default, so one start-up or `check`
//! lists all of them. Contradictions that are allowed but probably unintended become warnings.

use std::collections::BTreeMap;

use regex::Regex;

use super::env::{Field, RawEnv};
use super::problems::Problems;
use super::{ConfigError, Settings};
use crate::plan::{Action, DEFAULT_EVENT_ACTIONS, PlanRules, Profile, parse_event_actions};

/// The validation pass.
pub(crate) fn settings(mut raw: RawEnv, proxy_vars: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    let mut p = Problems::default();
    let secret_files = super::secret_files::resolve(&mut p, &mut raw);
    let mut wtl = super::wtl::settings(&mut p, &mut raw, proxy_vars);
    let api_tokens = super::server::api_tokens(&mut p, &mut raw);
    let rules = plan_rules(&mut p, &mut raw);
    let server = super::server::server(&mut p, &mut raw, api_tokens, wtl.total_timeout);
    let memory = super::memory::memory(&mut p, &mut raw);
    let telemetry = super::telemetry::telemetry(&mut p, &mut raw);
    wtl.dry_run = p.flag("WTL_DRY_RUN", std::mem::take(&mut raw.wtl_dry_run), false);
    let warnings = p.finish()?;
    Ok(Settings {
        server,
        wtl,
        memory,
        telemetry,
        rules,
        secret_files,
        warnings,
    })
}

fn plan_rules(p: &mut Problems, raw: &mut RawEnv) -> PlanRules {
    let cs = raw.wtl_default_cs_profile.take();
    let eps = raw.wtl_default_eps_profile.take();
    let imsi_regexp = raw.wtl_imsi_regexp.take();
    let actions: Field<BTreeMap<String, Action>> = std::mem::take(&mut raw.wtl_event_actions);
    let default_cs_profile = p.ok(parse_profile("WTL_DEFAULT_CS_PROFILE", cs)).unwrap_or_default();
    let default_eps_profile = p.ok(parse_profile("WTL_DEFAULT_EPS_PROFILE", eps)).unwrap_or_default();
    let imsi_filter = imsi_regexp.and_then(|pattern| match Regex::new(pattern.trim()) {
        Ok(r) => Some(r),
        Err(e) => {
            p.add("WTL_IMSI_REGEXP", format!("not a valid regular expression: {e}"));
            None
        }
    });
    let event_actions = match p.field("WTL_EVENT_ACTIONS", actions) {
        Some(map) => map,
        None => parse_event_actions(DEFAULT_EVENT_ACTIONS).unwrap_or_default(),
    };
    PlanRules {
        default_cs_profile,
        default_eps_profile,
        imsi_filter,
        event_actions,
    }
}

fn parse_profile(var: &'static str, value: Option<String>) -> Result<Profile, ConfigError> {
    let value = value.unwrap_or_else(|| "default".to_string());
    Profile::parse(value.trim()).ok_or_else(|| {
        ConfigError::new(
            var,
            format!("{value:?} is not a valid profile name (a letter, then letters, digits, '-', '_' or '.')"),
        )
    })
}

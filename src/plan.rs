//! The provisioning plan: which WTL calls an event needs.
//!
//! A pure function of the parsed event and the settings: no I/O, no clock, no logging. Every
//! business rule of the connector lives here and is tested without a server.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use crate::nsps::{AccountInfo, BillStatus, Event, FieldProblem, Loose, PbData};

/// The WTL action word sent in the `action` member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Insert,
    Update,
    Delete,
    Set,
    Unset,
    Modify,
}

impl Action {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "insert" => Self::Insert,
            "update" => Self::Update,
            "delete" => Self::Delete,
            "set" => Self::Set,
            "unset" => Self::Unset,
            "modify" => Self::Modify,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Set => "set",
            Self::Unset => "unset",
            Self::Modify => "modify",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IMSI: exactly 15 ASCII digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Imsi(String);

impl Imsi {
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        (t.len() == 15 && t.bytes().all(|b| b.is_ascii_digit())).then(|| Self(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CS or EPS profile name: a letter, then letters, digits, `-`, `_` or `.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile(String);

impl Profile {
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = text.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        (first_ok && rest_ok).then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Profile {
    /// `default`, the profile `WTL_DEFAULT_CS_PROFILE` and `WTL_DEFAULT_EPS_PROFILE` default to.
    fn default() -> Self {
        Self("default".to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriberStatus {
    ServiceGranted,
    OperatorDeterminedBarring,
}

impl SubscriberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceGranted => "serviceGranted",
            Self::OperatorDeterminedBarring => "operatorDeterminedBarring",
        }
    }
}

/// The full desired state of one subscriber in the HLR/HSS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberState {
    pub status: SubscriberStatus,
    pub cs_profile: Profile,
    pub eps_profile: Profile,
    pub msisdn: Vec<String>,
}

/// One call to make. `state` is `None` for `delete`, which carries only the IMSI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WtlCall {
    pub action: Action,
    pub imsi: Imsi,
    pub state: Option<SubscriberState>,
}

/// Why an event needs no WTL call. It is answered 202 so NSPS does not redeliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NoActionForEventType(String),
    NoImsi,
    ImsiFiltered(Vec<Imsi>),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoActionForEventType(t) => write!(f, "No defined action for event type: {t}"),
            Self::NoImsi => f.write_str("IMSI is empty or not provided"),
            Self::ImsiFiltered(imsis) => {
                let list: Vec<&str> = imsis.iter().map(Imsi::as_str).collect();
                match list.as_slice() {
                    [one] => write!(f, "IMSI {one} doesn't follow the regexp provided"),
                    _ => write!(f, "IMSIs {} don't follow the regexp provided", list.join(", ")),
                }
            }
        }
    }
}

/// What the event needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Skip(SkipReason),
    /// In order; at least one call.
    Calls(Vec<WtlCall>),
}

/// The settings the plan depends on.
#[derive(Clone, Debug)]
pub struct PlanRules {
    pub default_cs_profile: Profile,
    pub default_eps_profile: Profile,
    /// `WTL_IMSI_REGEXP`, with search semantics (unanchored unless the pattern anchors itself).
    pub imsi_filter: Option<Regex>,
    /// `WTL_EVENT_ACTIONS`: event type → action; a type not listed is skipped.
    pub event_actions: BTreeMap<String, Action>,
}

impl PlanRules {
    pub fn event_actions_text(&self) -> String {
        self.event_actions
            .iter()
            .map(|(t, a)| format!("{t}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn admits(&self, imsi: &Imsi) -> bool {
        self.imsi_filter.as_ref().is_none_or(|re| re.is_match(imsi.as_str()))
    }
}

/// Default event type → WTL action table (`WTL_EVENT_ACTIONS` unset).
pub(crate) const DEFAULT_EVENT_ACTIONS: &str =
    "SIM/Updated=update,SIM/Created=insert,SIM/Deleted=delete,SIM/Replaced=update";

/// Parses `SIM/Updated=update,SIM/Created=insert,...`.
pub(crate) fn parse_event_actions(text: &str) -> Result<BTreeMap<String, Action>, String> {
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (event_type, action) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not of the form EventType=action (e.g. SIM/Updated=update)"))?;
        let event_type = event_type.trim();
        if event_type.is_empty() {
            return Err(format!("{item:?} names no event type"));
        }
        let action = Action::parse(action.trim()).ok_or_else(|| {
            format!(
                "{:?} for {event_type} is not a WTL action (insert, update, delete, set, unset, modify)",
                action.trim()
            )
        })?;
        if map.insert(event_type.to_string(), action).is_some() {
            return Err(format!("{event_type} is listed twice"));
        }
    }
    Ok(map)
}

/// The event type whose plan releases the previous SIM before provisioning the new one.
pub(crate) const SIM_REPLACED: &str = "SIM/Replaced";

/// Decides what an event does to the HLR/HSS.
pub fn plan(event: &Event, rules: &PlanRules) -> Result<Plan, FieldProblem> {
    let event_type = event.data.event_type.as_str();
    let Some(&action) = rules.event_actions.get(event_type) else {
        return Ok(Plan::Skip(SkipReason::NoActionForEventType(event_type.to_string())));
    };
    let empty = PbData::default();
    let pb: &PbData = event.pb_data.as_deref().unwrap_or(&empty);

    let new_imsi = parse_imsi(
        pb.sim_info.as_ref().and_then(|s| s.imsi.as_deref()),
        "pb_data.sim_info.imsi",
    )?;
    let mut calls = Vec::with_capacity(2);
    let mut filtered = Vec::new();

    if event_type == SIM_REPLACED {
        let old_imsi = parse_imsi(
            pb.prev_sim_info.as_ref().and_then(|s| s.imsi.as_deref()),
            "pb_data.prev_sim_info.imsi",
        )?;
        if let Some(old) = old_imsi.filter(|old| new_imsi.as_ref() != Some(old)) {
            if rules.admits(&old) {
                let release = (action != Action::Delete).then(|| SubscriberState {
                    status: SubscriberStatus::OperatorDeterminedBarring,
                    cs_profile: rules.default_cs_profile.clone(),
                    eps_profile: rules.default_eps_profile.clone(),
                    msisdn: Vec::new(),
                });
                calls.push(WtlCall {
                    action,
                    imsi: old,
                    state: release,
                });
            } else {
                filtered.push(old);
            }
        }
    }

    match new_imsi {
        Some(imsi) if rules.admits(&imsi) => {
            let state = match action {
                Action::Delete => None,
                _ => Some(derive_state(pb, rules)?),
            };
            calls.push(WtlCall { action, imsi, state });
        }
        Some(imsi) => filtered.push(imsi),
        None => {}
    }

    if !calls.is_empty() {
        return Ok(Plan::Calls(calls));
    }
    if !filtered.is_empty() {
        return Ok(Plan::Skip(SkipReason::ImsiFiltered(filtered)));
    }
    Ok(Plan::Skip(SkipReason::NoImsi))
}

/// `None` when absent or empty; a 422 problem when present but not an IMSI.
fn parse_imsi(value: Option<&str>, field: &str) -> Result<Option<Imsi>, FieldProblem> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Imsi::parse(text)
            .map(Some)
            .ok_or_else(|| FieldProblem::new(field, format!("{text:?} is not an IMSI (exactly 15 digits)"))),
    }
}

/// The subscriber state the PortaBilling data describes.
pub(crate) fn derive_state(pb: &PbData, rules: &PlanRules) -> Result<SubscriberState, FieldProblem> {
    let account = pb.account_info.as_ref();
    let open = account.is_some_and(|a| a.bill_status == Some(BillStatus::Open));
    let blocked = account.and_then(|a| a.blocked).is_some_and(|b| b.0);
    let status = if open && !blocked {
        SubscriberStatus::ServiceGranted
    } else {
        SubscriberStatus::OperatorDeterminedBarring
    };
    let msisdn = match account {
        Some(a) if open => vec![msisdn_for(a, pb)?],
        _ => Vec::new(),
    };
    Ok(SubscriberState {
        status,
        cs_profile: profile(pb, "cs_profile", &rules.default_cs_profile)?,
        eps_profile: profile(pb, "eps_profile", &rules.default_eps_profile)?,
        msisdn,
    })
}

/// The number to provision: the account id (`<msisdn>@msisdn`), else the SIM's MSISDN.
fn msisdn_for(account: &AccountInfo, pb: &PbData) -> Result<String, FieldProblem> {
    let from_account = account
        .id
        .as_deref()
        .map(|id| id.trim().strip_suffix("@msisdn").unwrap_or(id.trim()))
        .and_then(valid_msisdn);
    let from_sim = || {
        pb.sim_info
            .as_ref()
            .and_then(|s| s.msisdn.as_deref())
            .and_then(valid_msisdn)
    };
    from_account.or_else(from_sim).ok_or_else(|| {
        FieldProblem::new(
            "pb_data.account_info.id",
            "the account is open but has no valid MSISDN: neither account_info.id (\"<msisdn>@msisdn\") nor sim_info.msisdn holds 1-15 digits",
        )
    })
}

fn valid_msisdn(text: &str) -> Option<String> {
    let digits = text.trim();
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_string())
}

/// The first attribute called `name` across the access policies, else the default.
fn profile(pb: &PbData, name: &str, default: &Profile) -> Result<Profile, FieldProblem> {
    let Some(policies) = &pb.access_policy_info else {
        return Ok(default.clone());
    };
    for (policy_index, policy) in policies.items() {
        for (i, attr) in policy.attributes.iter().flatten().enumerate() {
            if attr.name.as_str() != Some(name) {
                continue;
            }
            let field = || {
                let policy = policy_index.map(|p| format!("[{p}]")).unwrap_or_default();
                format!("pb_data.access_policy_info{policy}.attributes[{i}].value")
            };
            let text = match &attr.value {
                Loose::Null => return Ok(default.clone()),
                Loose::Text(s) => s,
                Loose::Other => return Err(FieldProblem::new(field(), format!("the {name} value must be a string"))),
            };
            let first = text.split(',').next().unwrap_or("").trim();
            if first.is_empty() {
                return Ok(default.clone());
            }
            return Profile::parse(first).ok_or_else(|| {
                FieldProblem::new(
                    field(),
                    format!("{first:?} is not a valid {name} (a letter, then letters, digits, '-', '_' or '.')"),
                )
            });
        }
    }
    Ok(default.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialise_as_their_wtl_words() {
        for action in [
            Action::Insert,
            Action::Update,
            Action::Delete,
            Action::Set,
            Action::Unset,
            Action::Modify,
        ] {
            assert_eq!(serde_json::to_value(action).ok(), Some(action.as_str().into()));
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
    }
    use crate::nsps::parse_event;

    fn rules() -> PlanRules {
        PlanRules {
            default_cs_profile: Profile::parse("default").expect("valid"),
            default_eps_profile: Profile::parse("default").expect("valid"),
            imsi_filter: None,
            event_actions: parse_event_actions(DEFAULT_EVENT_ACTIONS).expect("valid"),
        }
    }

    fn event(event_type: &str, pb_data: serde_json::Value) -> Event {
        let body = serde_json::json!({"event_id": "e1", "data": {"event_type": event_type}, "pb_data": pb_data});
        parse_event(body.to_string().as_bytes()).expect("valid event")
    }

    fn open_account() -> serde_json::Value {
        serde_json::json!({"bill_status": "open", "blocked": false, "id": "79123456789@msisdn"})
    }

    fn sim(imsi: &str) -> serde_json::Value {
        serde_json::json!({"imsi": imsi, "msisdn": "79000000001"})
    }

    fn calls(p: Plan) -> Vec<WtlCall> {
        match p {
            Plan::Calls(c) => c,
            Plan::Skip(r) => panic!("expected calls, got skip: {r}"),
        }
    }

    fn only_state(p: Plan) -> SubscriberState {
        let mut c = calls(p);
        assert_eq!(c.len(), 1);
        c.remove(0).state.expect("a state")
    }

    fn skip(p: Plan) -> String {
        match p {
            Plan::Skip(r) => r.to_string(),
            Plan::Calls(c) => panic!("expected a skip, got {c:?}"),
        }
    }

    const IMSI: &str = "001010000020349";

    #[test]
    fn open_unblocked_account_is_granted_with_its_number() {
        let e = event(
            "SIM/Updated",
            serde_json::json!({"account_info": open_account(), "sim_info": sim(IMSI)}),
        );
        let c = calls(plan(&e, &rules()).expect("plan"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].action, Action::Update);
        assert_eq!(c[0].imsi.as_str(), IMSI);
        let s = c[0].state.clone().expect("state");
        assert_eq!(s.status, SubscriberStatus::ServiceGranted);
        assert_eq!(s.msisdn, vec!["79123456789"]);
    }

    #[test]
    fn blocked_open_account_is_barred_but_keeps_its_number() {
        let mut acc = open_account();
        acc["blocked"] = serde_json::json!(true);
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"account_info": acc, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.status, SubscriberStatus::OperatorDeterminedBarring);
        assert_eq!(s.msisdn, vec!["79123456789"]);
    }

    #[test]
    fn account_that_is_not_open_is_barred_and_loses_its_number() {
        for status in ["suspended", "inactive", "terminated", "S", "I", "C", "something-new"] {
            let mut acc = open_account();
            acc["bill_status"] = serde_json::json!(status);
            let s = only_state(
                plan(
                    &event(
                        "SIM/Updated",
                        serde_json::json!({"account_info": acc, "sim_info": sim(IMSI)}),
                    ),
                    &rules(),
                )
                .expect("plan"),
            );
            assert_eq!(s.status, SubscriberStatus::OperatorDeterminedBarring, "{status}");
            assert!(s.msisdn.is_empty(), "{status}");
        }
    }

    #[test]
    fn no_account_means_barred_without_number() {
        let s = only_state(
            plan(
                &event("SIM/Updated", serde_json::json!({"sim_info": sim(IMSI)})),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.status, SubscriberStatus::OperatorDeterminedBarring);
        assert!(s.msisdn.is_empty());
    }

    #[test]
    fn account_without_bill_status_is_barred() {
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"account_info": {"blocked": false}, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.status, SubscriberStatus::OperatorDeterminedBarring);
    }

    #[test]
    fn raw_open_code_and_n_flag_grant_service() {
        let acc = serde_json::json!({"bill_status": "O", "blocked": "N", "id": "79123456789@msisdn"});
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"account_info": acc, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.status, SubscriberStatus::ServiceGranted);
    }

    #[test]
    fn msisdn_drops_plus_and_falls_back_to_the_sim() {
        let mut acc = open_account();
        acc["id"] = serde_json::json!("+79123456789@msisdn");
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"account_info": acc, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.msisdn, vec!["79123456789"]);

        acc["id"] = serde_json::json!("john.doe@example");
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"account_info": acc, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.msisdn, vec!["79000000001"], "falls back to sim_info.msisdn");

        acc["id"] = serde_json::json!("1234567890123456@msisdn");
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"account_info": acc, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.msisdn, vec!["79000000001"], "16 digits is too long");
    }

    #[test]
    fn open_account_without_any_valid_msisdn_is_a_field_error() {
        let acc = serde_json::json!({"bill_status": "open", "id": "not-a-number"});
        let p = plan(
            &event(
                "SIM/Updated",
                serde_json::json!({"account_info": acc, "sim_info": {"imsi": IMSI}}),
            ),
            &rules(),
        )
        .expect_err("422");
        assert_eq!(p.field, "pb_data.account_info.id");
    }

    #[test]
    fn profiles_come_from_the_policy_first_item_of_a_list() {
        let policy = serde_json::json!({"attributes": [
            {"name": "other", "value": 5},
            {"group_name": "lte.wtl", "name": "cs_profile", "value": "cs-a, cs-b"},
            {"name": "cs_profile", "value": "ignored-second"},
            {"name": "eps_profile", "value": "eps.1"}]});
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"access_policy_info": policy, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.cs_profile.as_str(), "cs-a");
        assert_eq!(s.eps_profile.as_str(), "eps.1");
    }

    #[test]
    fn profiles_are_searched_across_a_policy_list() {
        let policies = serde_json::json!([
            {"attributes": [{"name": "eps_profile", "value": "eps-first"}]},
            {"attributes": [{"name": "cs_profile", "value": "cs-second"}, {"name": "eps_profile", "value": "eps-second"}]}]);
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"access_policy_info": policies, "sim_info": sim(IMSI)}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(s.cs_profile.as_str(), "cs-second");
        assert_eq!(s.eps_profile.as_str(), "eps-first");
    }

    #[test]
    fn empty_or_missing_profiles_use_the_defaults() {
        let mut r = rules();
        r.default_cs_profile = Profile::parse("cs-def").expect("valid");
        let policy = serde_json::json!({"attributes": [{"name": "cs_profile", "value": ""}, {"name": "eps_profile", "value": null}]});
        let s = only_state(
            plan(
                &event(
                    "SIM/Updated",
                    serde_json::json!({"access_policy_info": policy, "sim_info": sim(IMSI)}),
                ),
                &r,
            )
            .expect("plan"),
        );
        assert_eq!(s.cs_profile.as_str(), "cs-def");
        assert_eq!(s.eps_profile.as_str(), "default");
    }

    #[test]
    fn invalid_profile_is_a_field_error_with_its_path() {
        let policy =
            serde_json::json!([{"attributes": [{"name": "x"}, {"name": "cs_profile", "value": "1bad profile"}]}]);
        let p = plan(
            &event(
                "SIM/Updated",
                serde_json::json!({"access_policy_info": policy, "sim_info": sim(IMSI)}),
            ),
            &rules(),
        )
        .expect_err("422");
        assert_eq!(p.field, "pb_data.access_policy_info[0].attributes[1].value");
        let policy = serde_json::json!({"attributes": [{"name": "eps_profile", "value": 7}]});
        let p = plan(
            &event(
                "SIM/Updated",
                serde_json::json!({"access_policy_info": policy, "sim_info": sim(IMSI)}),
            ),
            &rules(),
        )
        .expect_err("422");
        assert_eq!(p.field, "pb_data.access_policy_info.attributes[0].value");
    }

    #[test]
    fn missing_or_empty_imsi_is_skipped() {
        assert_eq!(
            skip(plan(&event("SIM/Updated", serde_json::json!({})), &rules()).expect("plan")),
            "IMSI is empty or not provided"
        );
        assert_eq!(
            skip(
                plan(
                    &event("SIM/Updated", serde_json::json!({"sim_info": {"imsi": ""}})),
                    &rules()
                )
                .expect("plan")
            ),
            "IMSI is empty or not provided"
        );
    }

    #[test]
    fn malformed_imsi_is_a_field_error() {
        for bad in ["00101000002034", "0010100000203490", "00101000002034x"] {
            let p = plan(
                &event("SIM/Updated", serde_json::json!({"sim_info": {"imsi": bad}})),
                &rules(),
            )
            .expect_err("422");
            assert_eq!(p.field, "pb_data.sim_info.imsi");
        }
    }

    #[test]
    fn imsi_filter_uses_search_semantics() {
        let mut r = rules();
        r.imsi_filter = Some(Regex::new("0000203").expect("valid"));
        assert!(matches!(
            plan(&event("SIM/Updated", serde_json::json!({"sim_info": sim(IMSI)})), &r).expect("plan"),
            Plan::Calls(_)
        ));
        r.imsi_filter = Some(Regex::new("^99").expect("valid"));
        assert_eq!(
            skip(plan(&event("SIM/Updated", serde_json::json!({"sim_info": sim(IMSI)})), &r).expect("plan")),
            "IMSI 001010000020349 doesn't follow the regexp provided"
        );
    }

    #[test]
    fn unknown_event_type_is_skipped() {
        assert_eq!(
            skip(
                plan(
                    &event("Account/Unblocked", serde_json::json!({"sim_info": sim(IMSI)})),
                    &rules()
                )
                .expect("plan")
            ),
            "No defined action for event type: Account/Unblocked"
        );
    }

    #[test]
    fn event_actions_override_the_defaults() {
        let mut r = rules();
        r.event_actions = parse_event_actions("Account/Blocked=update,SIM/Updated=modify").expect("valid");
        let c = calls(
            plan(
                &event("Account/Blocked", serde_json::json!({"sim_info": sim(IMSI)})),
                &r,
            )
            .expect("plan"),
        );
        assert_eq!(c[0].action, Action::Update);
        let c = calls(plan(&event("SIM/Updated", serde_json::json!({"sim_info": sim(IMSI)})), &r).expect("plan"));
        assert_eq!(c[0].action, Action::Modify);
        assert_eq!(
            skip(plan(&event("SIM/Created", serde_json::json!({"sim_info": sim(IMSI)})), &r).expect("plan")),
            "No defined action for event type: SIM/Created"
        );
    }

    #[test]
    fn sim_created_inserts_a_barred_subscriber_without_number() {
        let c = calls(
            plan(
                &event("SIM/Created", serde_json::json!({"sim_info": {"imsi": IMSI}})),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(c[0].action, Action::Insert);
        let s = c[0].state.clone().expect("state");
        assert_eq!(s.status, SubscriberStatus::OperatorDeterminedBarring);
        assert!(s.msisdn.is_empty());
    }

    #[test]
    fn sim_deleted_carries_only_the_imsi_and_ignores_account_rules() {
        // An open account without a valid number would be a 422 for an update; a delete does not care.
        let acc = serde_json::json!({"bill_status": "open", "id": "nope"});
        let c = calls(
            plan(
                &event(
                    "SIM/Deleted",
                    serde_json::json!({"account_info": acc, "sim_info": {"imsi": IMSI}}),
                ),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(
            c,
            vec![WtlCall {
                action: Action::Delete,
                imsi: Imsi::parse(IMSI).expect("valid"),
                state: None
            }]
        );
    }

    #[test]
    fn sim_replaced_releases_old_imsi_before_provisioning_new() {
        let pb = serde_json::json!({"account_info": open_account(), "sim_info": sim("001010000020351"),
            "prev_sim_info": {"imsi": IMSI},
            "access_policy_info": {"attributes": [{"name": "cs_profile", "value": "cs-x"}]}});
        let c = calls(plan(&event("SIM/Replaced", pb), &rules()).expect("plan"));
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].imsi.as_str(), IMSI);
        let release = c[0].state.clone().expect("state");
        assert_eq!(release.status, SubscriberStatus::OperatorDeterminedBarring);
        assert!(release.msisdn.is_empty());
        assert_eq!(
            release.cs_profile.as_str(),
            "default",
            "the old SIM goes back to the default profiles"
        );
        assert_eq!(c[1].imsi.as_str(), "001010000020351");
        let new = c[1].state.clone().expect("state");
        assert_eq!(new.status, SubscriberStatus::ServiceGranted);
        assert_eq!(new.cs_profile.as_str(), "cs-x");
    }

    #[test]
    fn sim_replaced_with_same_imsi_only_provisions_once() {
        let pb = serde_json::json!({"sim_info": sim(IMSI), "prev_sim_info": {"imsi": IMSI}});
        assert_eq!(
            calls(plan(&event("SIM/Replaced", pb), &rules()).expect("plan")).len(),
            1
        );
    }

    #[test]
    fn sim_replaced_with_only_one_side_makes_one_call() {
        let c = calls(
            plan(
                &event("SIM/Replaced", serde_json::json!({"prev_sim_info": {"imsi": IMSI}})),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].state.as_ref().map(|s| s.status),
            Some(SubscriberStatus::OperatorDeterminedBarring)
        );
        let c = calls(
            plan(
                &event("SIM/Replaced", serde_json::json!({"sim_info": sim(IMSI)})),
                &rules(),
            )
            .expect("plan"),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(
            skip(plan(&event("SIM/Replaced", serde_json::json!({})), &rules()).expect("plan")),
            "IMSI is empty or not provided"
        );
    }

    #[test]
    fn sim_replaced_filters_each_imsi_on_its_own() {
        let mut r = rules();
        r.imsi_filter = Some(Regex::new("^00101000002034").expect("valid"));
        let pb = serde_json::json!({"sim_info": sim("001010000020351"), "prev_sim_info": {"imsi": IMSI}});
        let c = calls(plan(&event("SIM/Replaced", pb.clone()), &r).expect("plan"));
        assert_eq!(c.len(), 1, "only the old IMSI is in range");
        assert_eq!(c[0].imsi.as_str(), IMSI);
        r.imsi_filter = Some(Regex::new("^99").expect("valid"));
        assert_eq!(
            skip(plan(&event("SIM/Replaced", pb), &r).expect("plan")),
            "IMSIs 001010000020349, 001010000020351 don't follow the regexp provided"
        );
    }

    #[test]
    fn sim_replaced_with_malformed_previous_imsi_is_a_field_error() {
        let pb = serde_json::json!({"sim_info": sim(IMSI), "prev_sim_info": {"imsi": "123"}});
        assert_eq!(
            plan(&event("SIM/Replaced", pb), &rules()).expect_err("422").field,
            "pb_data.prev_sim_info.imsi"
        );
    }

    #[test]
    fn profile_names_follow_the_pattern() {
        assert!(Profile::parse("cs-pp-20250319").is_some());
        assert!(Profile::parse("a.b_c-D9").is_some());
        assert!(Profile::parse("").is_none());
        assert!(Profile::parse("9abc").is_none());
        assert!(Profile::parse("a b").is_none());
        assert!(Profile::parse("a/b").is_none());
    }
}

//! The NSPS event as the connector reads it.
//!
//! Only the fields the connector uses are declared; serde skips every other member, whatever
//! its type, so NSPS can add or change fields the connector does not read without breaking it.
//! The fields that are declared are typed strictly: a wrong type there is a 422 that names the
//! field path, because guessing would provision the wrong thing.

use serde::Deserialize;
use utoipa::ToSchema;

pub(crate) mod schema;
mod values;

pub use schema::{SAMPLE_CREATED, SAMPLE_UPDATED};
use values::loose_string;
pub(crate) use values::{BillStatus, Blocked, Loose, Obj, OneOrMany};

/// An NSPS event. Members not listed are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(schema::sim_created, schema::sim_updated))]
pub struct Event {
    /// Unique id of the event; redeliveries carry the same id.
    #[schema(pattern = r"\S")]
    pub event_id: String,
    #[schema(value_type = EventData)]
    pub data: Obj<EventData>,
    #[serde(default)]
    #[schema(value_type = Option<PbData>)]
    pub pb_data: Option<Obj<PbData>>,
    /// ISO-8601 date-time; orders events when `updated_at` is absent. Any value that is not
    /// text only loses that ordering protection.
    #[serde(default, deserialize_with = "loose_string")]
    #[schema(value_type = Value)]
    pub created_at: Option<String>,
    /// ISO-8601 date-time; an event older than the last one applied to its IMSI is ignored.
    /// Any value that is not text only loses that ordering protection.
    #[serde(default, deserialize_with = "loose_string")]
    #[schema(value_type = Value)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EventData {
    /// ESPF event type, e.g. `SIM/Updated`.
    #[schema(pattern = r"\S")]
    pub event_type: String,
}

/// PortaBilling data NSPS attached to the event. Every member is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PbData {
    #[serde(default)]
    #[schema(value_type = Option<AccountInfo>)]
    pub account_info: Option<Obj<AccountInfo>>,
    /// The SIM card of the event.
    #[serde(default)]
    #[schema(value_type = Option<SimInfo>)]
    pub sim_info: Option<Obj<SimInfo>>,
    /// The SIM card a `SIM/Replaced` event replaces.
    #[serde(default)]
    #[schema(value_type = Option<SimInfo>)]
    pub prev_sim_info: Option<Obj<SimInfo>>,
    /// One access policy, or a list of them (described in `schema::access_policies`).
    #[serde(default)]
    #[schema(schema_with = schema::access_policies)]
    pub access_policy_info: Option<OneOrMany<Obj<AccessPolicy>>>,
}

/// The account the SIM card belongs to.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AccountInfo {
    #[serde(default)]
    pub bill_status: Option<BillStatus>,
    #[serde(default)]
    pub blocked: Option<Blocked>,
    /// Account id; for mobile accounts `"<msisdn>@msisdn"`.
    #[serde(default)]
    pub id: Option<String>,
}

/// A SIM card.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SimInfo {
    /// 15 digits (checked when the event type is mapped in `WTL_EVENT_ACTIONS`). Absent or
    /// empty: the event is ignored.
    #[serde(default)]
    #[schema(pattern = r"^\s*([0-9]{15})?\s*$")]
    pub imsi: Option<String>,
    /// Fallback number when the account id holds none.
    #[serde(default)]
    pub msisdn: Option<String>,
}

/// An access policy of the account's product.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AccessPolicy {
    #[serde(default)]
    #[schema(value_type = Option<Vec<PolicyAttribute>>)]
    pub attributes: Option<Vec<Obj<PolicyAttribute>>>,
}

/// An attribute of an access policy. Only the two profile attributes are read; any other
/// attribute may carry any JSON, so `name` and `value` are kept loose.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PolicyAttribute {
    /// `cs_profile`, `eps_profile`, or another attribute.
    #[serde(default)]
    pub name: Loose,
    /// The profile for `cs_profile` / `eps_profile`: a string.
    #[serde(default)]
    pub value: Loose,
}

/// One thing wrong with the payload: where (a JSON path such as `pb_data.sim_info.imsi`) and what.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses an event body with serde. On failure, says which field and why: the body is then
/// read again by the same serde types tracking the JSON path (`serde_path_to_error`), so a 422
/// tells NSPS's operators exactly what to fix, while a valid event is read without the
/// bookkeeping (an allocation per key).
pub fn parse_event(body: &[u8]) -> Result<Event, FieldProblem> {
    let text = as_text(body)?;
    match serde_json::from_str::<Obj<Event>>(text) {
        Ok(event) => check_event(event.0),
        Err(_) => Err(locate_problem(text)),
    }
}

/// Why `text` does not read as an event, with the JSON path of the field at fault.
fn locate_problem(text: &str) -> FieldProblem {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Obj<Event>>(&mut de) {
        Err(err) => describe(err),
        Ok(_) => match de.end() {
            Err(e) => FieldProblem::new("(body)", format!("malformed JSON: {e}")),
            // Both readings are the same serde types; a body one refuses the other refuses too.
            Ok(()) => FieldProblem::new("(body)", "malformed JSON"),
        },
    }
}

/// JSON is UTF-8 text (RFC 8259), the whole body, including members the connector skips.
/// Checking it once up front also spares the reader checking every string on its own.
fn as_text(body: &[u8]) -> Result<&str, FieldProblem> {
    std::str::from_utf8(body).map_err(|e| {
        FieldProblem::new(
            "(body)",
            format!(
                "malformed JSON: the body is not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

fn check_event(event: Event) -> Result<Event, FieldProblem> {
    if event.event_id.trim().is_empty() {
        return Err(FieldProblem::new("event_id", "must not be empty"));
    }
    if event.data.event_type.trim().is_empty() {
        return Err(FieldProblem::new("data.event_type", "must not be empty"));
    }
    Ok(event)
}

fn describe(err: serde_path_to_error::Error<serde_json::Error>) -> FieldProblem {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let text = inner.to_string();
    // serde_json appends " at line L column C"; keep the position only for syntax errors, where
    // it is the useful part.
    let message = match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => format!("malformed JSON: {text}"),
        _ => strip_position(&text).to_string(),
    };
    let path = if path == "." { String::new() } else { path };
    // A missing field is reported at its parent; name the field itself.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let field = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return FieldProblem::new(field, "required field is missing");
    }
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => FieldProblem::new("(body)", message),
        _ if path.is_empty() => FieldProblem::new("(body)", message),
        _ => FieldProblem::new(path, message),
    }
}

fn strip_position(text: &str) -> &str {
    match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(body: &str) -> FieldProblem {
        parse_event(body.as_bytes()).expect_err("should fail")
    }

    #[test]
    fn minimal_event_parses() {
        let e = parse_event(br#"{"event_id":"1","data":{"event_type":"SIM/Updated"}}"#).expect("valid");
        assert_eq!(e.data.event_type, "SIM/Updated");
        assert!(e.pb_data.is_none());
    }

    #[test]
    fn missing_fields_are_named_by_path() {
        assert_eq!(problem(r#"{"data":{"event_type":"x"}}"#).field, "event_id");
        assert_eq!(problem(r#"{"event_id":"1","data":{}}"#).field, "data.event_type");
        assert_eq!(problem(r#"{"event_id":"1"}"#).field, "data");
    }

    #[test]
    fn wrong_types_in_used_fields_are_named_by_path() {
        let p = problem(r#"{"event_id":"1","data":{"event_type":5}}"#);
        assert_eq!(p.field, "data.event_type");
        assert!(p.message.contains("invalid type"), "{}", p.message);
        let p = problem(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"sim_info":{"imsi":1234}}}"#);
        assert_eq!(p.field, "pb_data.sim_info.imsi");
        let p = problem(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"account_info":{"blocked":"maybe"}}}"#);
        assert_eq!(p.field, "pb_data.account_info.blocked");
        let p = problem(
            r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"access_policy_info":[{"attributes":[{"name":"a"},5]}]}}"#,
        );
        assert_eq!(p.field, "pb_data.access_policy_info[0].attributes[1]");
    }

    #[test]
    fn malformed_json_is_a_body_problem() {
        let p = problem(r#"{"event_id":"1","#);
        assert_eq!(p.field, "(body)");
        assert!(p.message.starts_with("malformed JSON"));
        assert_eq!(problem("[]").field, "(body)");
        assert_eq!(
            problem(r#"{"event_id":"1","data":{"event_type":"x"}} trailing"#).field,
            "(body)"
        );
    }

    #[test]
    fn unused_fields_may_hold_anything() {
        let body = r#"{"event_id":"1","data":{"event_type":"x","variables":[1,2]},"handler_id":7,"status":{},
            "created_at":12,"pb_data":{"product_info":"?","full_vd_counter_info":{"remaining":"N/A"},
            "account_info":{"i_account":"one","firstname":3,"assigned_addons":"none","service_features":null},
            "sim_info":{"i_sim_card":"x","status":5},
            "access_policy_info":{"i_access_policy":"179","name":[],"attributes":[{"group_name":1,"name":2,"value":{}}]}}}"#;
        let e = parse_event(body.as_bytes()).expect("unused fields must not fail the event");
        assert!(e.created_at.is_none());
    }

    #[test]
    fn raw_codes_and_words_are_both_accepted() {
        assert_eq!(BillStatus::parse("O"), BillStatus::Open);
        assert_eq!(BillStatus::parse("open"), BillStatus::Open);
        assert_eq!(BillStatus::parse("S"), BillStatus::Suspended);
        assert_eq!(BillStatus::parse("I"), BillStatus::Inactive);
        assert_eq!(BillStatus::parse("C"), BillStatus::Terminated);
        assert_eq!(BillStatus::parse("weird"), BillStatus::Other("weird".into()));
        let e = parse_event(
            br#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"account_info":{"blocked":"Y","bill_status":"S"}}}"#,
        )
        .expect("valid");
        let acc = e.pb_data.and_then(|p| p.0.account_info).expect("account");
        assert_eq!(acc.blocked, Some(Blocked(true)));
        assert_eq!(acc.bill_status, Some(BillStatus::Suspended));
    }

    #[test]
    fn a_list_where_an_object_belongs_is_refused() {
        assert_eq!(problem(r#"["1",{"event_type":"x"}]"#).field, "(body)");
        assert_eq!(problem(r#"{"event_id":"1","data":["x"]}"#).field, "data");
        assert_eq!(
            problem(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":[null,null]}"#).field,
            "pb_data"
        );
        let p = problem(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"sim_info":["001010000020349"]}}"#);
        assert_eq!(p.field, "pb_data.sim_info");
        let p = problem(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"access_policy_info":[[]]}}"#);
        assert_eq!(p.field, "pb_data.access_policy_info[0]");
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_even_in_unread_members() {
        let mut body = br#"{"event_id":"1","data":{"event_type":"x"},"note":"caf"#.to_vec();
        body.push(0xE9);
        body.extend_from_slice(br#""}"#);
        let p = parse_event(&body).expect_err("not UTF-8");
        assert_eq!(p.field, "(body)");
        assert!(p.message.contains("not UTF-8"), "{}", p.message);
    }

    #[test]
    fn loose_members_tell_text_from_other_values() {
        let e = parse_event(
            br#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"access_policy_info":{"attributes":[
                {"name":"cs_profile","value":"a"},{"name":null,"value":{"k":[1,{"n":2}]}},{"name":7,"value":[1,"b"]},{}]}}}"#,
        )
        .expect("valid");
        let policies = e.pb_data.and_then(|p| p.0.access_policy_info).expect("policies");
        let (_, policy) = policies.items()[0];
        let attrs: Vec<_> = policy.attributes.iter().flatten().collect();
        assert_eq!(attrs[0].name, Loose::Text("cs_profile".into()));
        assert_eq!(attrs[0].value.as_str(), Some("a"));
        assert_eq!((&attrs[1].name, &attrs[1].value), (&Loose::Null, &Loose::Other));
        assert_eq!((&attrs[2].name, &attrs[2].value), (&Loose::Other, &Loose::Other));
        assert_eq!((&attrs[3].name, &attrs[3].value), (&Loose::Null, &Loose::Null));
    }

    #[test]
    fn empty_event_id_is_refused() {
        assert_eq!(
            problem(r#"{"event_id":" ","data":{"event_type":"x"}}"#).field,
            "event_id"
        );
    }
}

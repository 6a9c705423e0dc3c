//! How the event types appear in the OpenAPI document.
//!
//! The derived schemas describe what the connector reads, typed as it checks them. The
//! wrappers that shape the reading (`Obj`, `OneOrMany`, `Loose`, `BillStatus`, `Blocked`) say
//! here what they accept. NSPS also sends members the connector skips whatever they hold; they
//! are listed in [`UNREAD`] so the document describes the whole event NSPS posts.

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Components, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::{BillStatus, Blocked, Loose};

/// A member the connector does not read: described, open to any value.
fn unread(what: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some(format!(
            "{what}. Not read by the connector: any value is accepted."
        )))
        .build()
        .into()
}

/// `pb_data.access_policy_info`.
pub(crate) fn access_policies() -> Schema {
    one_or_many::<super::AccessPolicy>(
        "One access policy, or a list of them. The first attribute named cs_profile / eps_profile \
         gives the profile (the first item of a comma-separated value); it must match \
         ^[a-zA-Z][-_.a-zA-Z0-9]*$.",
    )
}

/// One `T` (a JSON object), or a list of them; absent or `null` allowed. (`Obj<T>`, which
/// refuses a list where an object belongs, appears as `T` itself.)
fn one_or_many<T: ToSchema>(description: &str) -> Schema {
    let one = Ref::from_schema_name(T::name());
    Schema::OneOf(
        OneOfBuilder::new()
            .description(Some(description))
            .item(one.clone())
            .item(ArrayBuilder::new().items(one))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// Read only when it is text; any other value is accepted and counts as absent.
impl PartialSchema for Loose {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some("Any JSON value; read only when it is text."))
            .build()
            .into()
    }
}

impl ToSchema for Loose {}

impl PartialSchema for BillStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "open, suspended, inactive, terminated, or PortaBilling's O, S, I, C. \
                 Any other value counts as not open.",
            ))
            .build()
            .into()
    }
}

impl ToSchema for BillStatus {}

impl PartialSchema for Blocked {
    fn schema() -> RefOr<Schema> {
        let schema = OneOfBuilder::new()
            .description(Some(
                "true/false, or \"Y\"/\"N\" (also yes/no, true/false and 1/0 as text in any case, and the numbers 1/0).",
            ))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(BLOCKED_TEXT)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([0, 1])),
            )
            .build();
        RefOr::T(Schema::OneOf(schema))
    }
}

impl ToSchema for Blocked {}

/// The text forms `Blocked` reads (`Blocked::from_text`).
const BLOCKED_TEXT: &str = r"^\s*([yY]([eE][sS])?|[nN][oO]?|[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|[01])\s*$";

/// A SIM arriving in inventory: inserted barred, without a number.
pub const SAMPLE_CREATED: &str = r#"{"event_id":"demo-1","data":{"event_type":"SIM/Created"},"pb_data":{"sim_info":{"imsi":"001010000020349"}},"updated_at":"2025-03-12T17:00:00Z"}"#;
/// The SIM assigned to an open account: granted, with its MSISDN and profiles.
pub const SAMPLE_UPDATED: &str = r#"{"event_id":"demo-2","data":{"event_type":"SIM/Updated"},"pb_data":{"account_info":{"bill_status":"open","blocked":false,"id":"79123456789@msisdn"},"sim_info":{"imsi":"001010000020349","msisdn":"79123456789"},"access_policy_info":{"attributes":[{"name":"cs_profile","value":"cs-pp-20250319"},{"name":"eps_profile","value":"eps-pp-20250319"}]}},"updated_at":"2025-03-12T17:05:00Z"}"#;

/// An example event: a SIM card created (the demo's first event).
pub(crate) fn sim_created() -> serde_json::Value {
    serde_json::from_str(SAMPLE_CREATED).unwrap_or_default()
}

/// An example event: the SIM card updated with an open account and both profiles.
pub(crate) fn sim_updated() -> serde_json::Value {
    serde_json::from_str(SAMPLE_UPDATED).unwrap_or_default()
}

/// Members NSPS sends that the connector accepts whatever they hold and does not read, per
/// schema: `(schema, [(member, what it is)])`.
pub(crate) const UNREAD: &[(&str, &[(&str, &str)])] = &[
    (
        "Event",
        &[
            ("handler_id", "Id of the NSPS handler the event was sent to"),
            ("status", "NSPS's delivery status of the event"),
        ],
    ),
    ("EventData", &[("variables", "Event variables (an object)")]),
    (
        "PbData",
        &[
            (
                "product_info",
                "The product: name, description, i_product, i_vd_plan, addon_priority",
            ),
            ("full_vd_counter_info", "List of volume discount counters"),
        ],
    ),
    (
        "AccountInfo",
        &[
            (
                "billing_model",
                "debit_account, recharge_voucher, credit_account, alias, beneficiary",
            ),
            ("status", "Account status, e.g. active, blocked, suspended, closed"),
            ("email", "Email address"),
            ("firstname", "First name"),
            ("lastname", "Last name"),
            ("phone1", "Phone number"),
            ("product_name", "Product name"),
            ("time_zone_name", "Time zone"),
            ("zip", "Postal code"),
            ("i_account", "Account id (integer)"),
            ("i_customer", "Customer id (integer)"),
            ("i_master_account", "Master account id (integer)"),
            ("i_product", "Product id (integer)"),
            ("i_vd_plan", "Volume discount plan id (integer)"),
            (
                "assigned_addons",
                "List of add-ons: addon_effective_from, addon_effective_to, addon_priority, description, \
                 i_product, i_product_group, i_vd_plan, name",
            ),
            (
                "service_features",
                "List of service features: name, effective_flag_value, attributes[{name, effective_value}]",
            ),
        ],
    ),
    (
        "SimInfo",
        &[
            ("i_account", "Id of the account the SIM card is assigned to (integer)"),
            ("i_sim_card", "SIM card id (integer)"),
            ("iccid", "ICCID"),
            ("status", "SIM card status"),
        ],
    ),
    (
        "AccessPolicy",
        &[
            ("i_access_policy", "Access policy id (integer)"),
            ("name", "Access policy name"),
        ],
    ),
    ("PolicyAttribute", &[("group_name", "Attribute group, e.g. lte.wtl")]),
];

/// Adds the [`UNREAD`] members to their schemas, open to any value.
pub(crate) fn describe_unread(components: &mut Components) {
    for (name, members) in UNREAD {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(*name) else {
            continue;
        };
        for (member, what) in *members {
            object.properties.insert((*member).to_string(), unread(what));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_text_forms_of_blocked_are_the_ones_read() {
        let pattern = regex::Regex::new(BLOCKED_TEXT).expect("a valid pattern");
        for text in [
            "Y", "n", "yes", "No", "TRUE", "false", "1", "0", " y ", "maybe", "", "2", "yess", "t", "nope",
        ] {
            assert_eq!(pattern.is_match(text), Blocked::from_text(text).is_some(), "{text:?}");
        }
    }
}

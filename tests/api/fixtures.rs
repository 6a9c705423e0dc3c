//! Every sample NSPS event produces exactly the WTL calls of the fixtures README.

use serde_json::json;

use crate::helpers::*;

fn granted_349() -> serde_json::Value {
    json!({"imsi":"001010000020349","subscriber_status":"serviceGranted","cs_profile":"cs-pp-20250319",
        "eps_profile":"eps-pp-20250319","msisdn":["79123456789"],"action":"update"})
}

async fn check(name: &str, expected_calls: Vec<serde_json::Value>, expected_message: &str) {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app.send_fixture(name).await;
    assert_eq!(resp.status().as_u16(), 202, "{name}");
    let body = json(resp).await;
    assert_eq!(body["message"], expected_message, "{name}: {body}");
    let event: serde_json::Value = serde_json::from_str(&fixture(name)).expect("fixture JSON");
    assert_eq!(body["event_id"], event["event_id"], "{name}");
    assert_eq!(
        wtl_bodies(&wtl).await,
        expected_calls,
        "{name}: the WTL calls, in order"
    );
    if !expected_calls.is_empty() {
        let actions: Vec<serde_json::Value> = expected_calls
            .iter()
            .map(|c| json!({"action": c["action"], "imsi": c["imsi"], "result": "applied"}))
            .collect();
        assert_eq!(body["actions"], json!(actions), "{name}");
    }
}

#[tokio::test]
async fn sim_updated_open_grants_service_with_number_and_profiles() {
    check(
        "sim-updated-open.json",
        vec![granted_349()],
        "Event processed successfully",
    )
    .await;
}

#[tokio::test]
async fn sim_updated_blocked_bars_but_keeps_the_number() {
    let mut call = granted_349();
    call["subscriber_status"] = json!("operatorDeterminedBarring");
    check("sim-updated-blocked.json", vec![call], "Event processed successfully").await;
}

#[tokio::test]
async fn sim_updated_suspended_bars_and_releases_the_number() {
    let mut call = granted_349();
    call["subscriber_status"] = json!("operatorDeterminedBarring");
    call["msisdn"] = json!([]);
    check("sim-updated-suspended.json", vec![call], "Event processed successfully").await;
}

#[tokio::test]
async fn sim_updated_raw_codes_and_policy_list_read_like_words() {
    check(
        "sim-updated-raw-codes-policy-list.json",
        vec![granted_349()],
        "Event processed successfully",
    )
    .await;
}

#[tokio::test]
async fn sim_updated_without_policy_uses_default_profiles() {
    let mut call = granted_349();
    call["cs_profile"] = json!("default");
    call["eps_profile"] = json!("default");
    check(
        "sim-updated-default-profiles.json",
        vec![call],
        "Event processed successfully",
    )
    .await;
}

#[tokio::test]
async fn sim_created_inserts_a_barred_subscriber() {
    let call = json!({"imsi":"001010000020350","subscriber_status":"operatorDeterminedBarring","cs_profile":"default",
        "eps_profile":"default","msisdn":[],"action":"insert"});
    check("sim-created.json", vec![call], "Event processed successfully").await;
}

#[tokio::test]
async fn sim_deleted_deletes_by_imsi_only() {
    check(
        "sim-deleted.json",
        vec![json!({"imsi":"001010000020350","action":"delete"})],
        "Event processed successfully",
    )
    .await;
}

#[tokio::test]
async fn sim_replaced_releases_old_imsi_before_provisioning_new() {
    let release = json!({"imsi":"001010000020349","subscriber_status":"operatorDeterminedBarring","cs_profile":"default",
        "eps_profile":"default","msisdn":[],"action":"update"});
    let mut provision = granted_349();
    provision["imsi"] = json!("001010000020351");
    check(
        "sim-replaced.json",
        vec![release, provision],
        "Event processed successfully",
    )
    .await;
}

#[tokio::test]
async fn unsupported_event_type_is_ignored_without_calls() {
    check(
        "unsupported-event-type.json",
        vec![],
        "Event ignored: No defined action for event type: Account/Unblocked",
    )
    .await;
}

#[tokio::test]
async fn event_without_pb_data_is_ignored_without_calls() {
    check(
        "no-pb-data.json",
        vec![],
        "Event ignored: IMSI is empty or not provided",
    )
    .await;
}

#[tokio::test]
async fn imsi_outside_the_configured_range_is_ignored() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[("WTL_IMSI_REGEXP", "^99")]).await;
    let resp = app.send_fixture("sim-updated-open.json").await;
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(
        json(resp).await["message"],
        "Event ignored: IMSI 001010000020349 doesn't follow the regexp provided"
    );
    assert!(wtl_bodies(&wtl).await.is_empty());
}

#[tokio::test]
async fn configured_default_profiles_and_event_actions_apply() {
    let wtl = wtl_answering(200, "").await;
    let app = spawn_app(
        &wtl.uri(),
        &[
            ("WTL_DEFAULT_CS_PROFILE", "cs-basic"),
            ("WTL_DEFAULT_EPS_PROFILE", "eps-basic"),
            ("WTL_EVENT_ACTIONS", "Account/Unblocked=update"),
        ],
    )
    .await;
    assert_eq!(
        app.send_fixture("unsupported-event-type.json").await.status().as_u16(),
        202
    );
    assert_eq!(
        app.send_fixture("sim-updated-default-profiles.json")
            .await
            .status()
            .as_u16(),
        202
    );
    let bodies = wtl_bodies(&wtl).await;
    assert_eq!(bodies.len(), 1, "SIM/Updated is no longer mapped; Account/Unblocked is");
    assert_eq!(bodies[0]["cs_profile"], "cs-pp-20250319");
    let app2 = spawn_app(&wtl.uri(), &[("WTL_DEFAULT_CS_PROFILE", "cs-basic")]).await;
    assert_eq!(
        app2.send_fixture("sim-updated-default-profiles.json")
            .await
            .status()
            .as_u16(),
        202
    );
    let bodies = wtl_bodies(&wtl).await;
    assert_eq!(bodies[1]["cs_profile"], "cs-basic");
    assert_eq!(bodies[1]["eps_profile"], "default");
}

//! Multi-step stories against the embedded WTL simulator: the HLR's state after each event.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn create_assign_replace_delete_leaves_the_hlr_as_expected() {
    let (url, hlr, _stop) = spawn_simulator(Some("sim-token")).await;
    let app = spawn_app(&url, &[("WTL_API_TOKEN", "sim-token")]).await;

    // 1. A new SIM arrives in inventory.
    let resp = app
        .send(&event(
            "e1",
            "SIM/Created",
            json!({"sim_info": {"imsi": "001010000020349"}}),
        ))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let sub = hlr.get("001010000020349").expect("inserted");
    assert_eq!(sub.subscriber_status, "operatorDeterminedBarring");
    assert!(sub.msisdn.is_empty());

    // 2. It is assigned to an open account.
    let mut pb = open_sim("001010000020349");
    pb["access_policy_info"] = json!({"attributes": [{"name": "cs_profile", "value": "cs-gold"}]});
    assert_eq!(app.send(&event("e2", "SIM/Updated", pb)).await.status().as_u16(), 202);
    let sub = hlr.get("001010000020349").expect("present");
    assert_eq!(sub.subscriber_status, "serviceGranted");
    assert_eq!(sub.msisdn, vec!["79123456789"]);
    assert_eq!(sub.cs_profile, "cs-gold");

    // 3. The customer gets a replacement SIM (already in inventory).
    let resp = app
        .send(&event(
            "e3",
            "SIM/Created",
            json!({"sim_info": {"imsi": "001010000020351"}}),
        ))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let mut pb = open_sim("001010000020351");
    pb["prev_sim_info"] = json!({"imsi": "001010000020349"});
    assert_eq!(app.send(&event("e4", "SIM/Replaced", pb)).await.status().as_u16(), 202);
    let old = hlr.get("001010000020349").expect("old SIM still provisioned");
    assert_eq!(old.subscriber_status, "operatorDeterminedBarring");
    assert!(old.msisdn.is_empty(), "the number was released from the old SIM");
    let new = hlr.get("001010000020351").expect("new SIM");
    assert_eq!(new.subscriber_status, "serviceGranted");
    assert_eq!(new.msisdn, vec!["79123456789"]);

    // 4. The old SIM is disposed of.
    let resp = app
        .send(&event(
            "e5",
            "SIM/Deleted",
            json!({"sim_info": {"imsi": "001010000020349"}}),
        ))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    assert!(hlr.get("001010000020349").is_none());
    assert_eq!(hlr.len(), 1);
}

#[tokio::test]
async fn repeating_every_event_is_harmless() {
    let (url, hlr, _stop) = spawn_simulator(None).await;
    // Duplicate memory off: every repeat really reaches the simulator.
    let app = spawn_app(&url, &[("EVENT_DEDUP_TTL", "0")]).await;
    for name in [
        "sim-created.json",
        "sim-created.json",
        "sim-deleted.json",
        "sim-deleted.json",
    ] {
        let resp = app.send_fixture(name).await;
        assert_eq!(resp.status().as_u16(), 202, "{name}");
    }
    assert_eq!(hlr.calls(), 4, "every repeat reached the HLR");
    assert!(hlr.is_empty());
}

#[tokio::test]
async fn an_update_for_a_sim_the_hlr_does_not_know_is_404() {
    let (url, _hlr, _stop) = spawn_simulator(None).await;
    let app = spawn_app(&url, &[]).await;
    let body = error_body(app.send_fixture("sim-updated-open.json").await, 404, "VALIDATION_ERROR").await;
    assert!(body["error"].as_str().expect("text").contains("not found"), "{body}");
}

#[tokio::test]
async fn wrong_wtl_credentials_against_the_simulator_are_a_service_error() {
    let (url, hlr, _stop) = spawn_simulator(Some("right")).await;
    let app = spawn_app(&url, &[("WTL_API_TOKEN", "wrong")]).await;
    error_body(app.send_fixture("sim-created.json").await, 500, "SERVICE_ERROR").await;
    assert!(hlr.is_empty());
}

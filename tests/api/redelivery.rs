//! NSPS redelivery: duplicates, concurrent deliveries, stale events; load shedding, timeouts,
//! readiness during shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

async fn slow_wtl(delay: Duration) -> MockServer {
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"{"result":true}"#)
                .set_delay(delay),
        )
        .mount(&wtl)
        .await;
    wtl
}

fn timed_event(id: &str, updated_at: &str) -> String {
    let mut e: serde_json::Value = serde_json::from_str(&fixture("sim-updated-open.json")).expect("json");
    e["event_id"] = json!(id);
    e["updated_at"] = json!(updated_at);
    e.to_string()
}

#[tokio::test]
async fn a_redelivered_event_is_answered_without_calling_wtl_again() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 202);
    let resp = app.send_fixture("sim-created.json").await;
    assert_eq!(resp.status().as_u16(), 202);
    let body = json(resp).await;
    assert_eq!(body["message"], "Event already processed");
    assert_eq!(body["event_id"], "a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d");
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
    assert!(app.state.metrics.render().contains("nsps_dedup_hits_total 1"));
}

#[tokio::test]
async fn a_failed_event_is_tried_again_on_redelivery() {
    let wtl = wtl_failing_first(500, 1).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 500);
    assert_eq!(app.send_fixture("sim-created.json").await.status().as_u16(), 202);
    assert_eq!(wtl_bodies(&wtl).await.len(), 2);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_make_one_set_of_calls() {
    let wtl = slow_wtl(Duration::from_millis(400)).await;
    let app = Arc::new(spawn_app(&wtl.uri(), &[]).await);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let resp = app.send_fixture("sim-replaced.json").await;
            (
                resp.status().as_u16(),
                json(resp).await["message"].as_str().unwrap_or("").to_string(),
            )
        }));
    }
    let mut processed = 0;
    for t in tasks {
        let (status, message) = t.await.expect("task");
        assert_eq!(status, 202);
        if message == "Event processed successfully" {
            processed += 1;
        } else {
            assert_eq!(message, "Event already processed");
        }
    }
    assert_eq!(processed, 1);
    assert_eq!(wtl_bodies(&wtl).await.len(), 2, "one SIM/Replaced: two calls, once");
}

#[tokio::test]
async fn dedup_ttl_zero_disables_the_memory() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[("EVENT_DEDUP_TTL", "0")]).await;
    app.send_fixture("sim-created.json").await;
    app.send_fixture("sim-created.json").await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 2);
}

#[tokio::test]
async fn the_dedup_memory_is_capped_oldest_first() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[("EVENT_DEDUP_MAX", "2"), ("STALE_EVENT_CHECK", "false")]).await;
    for id in ["a", "b", "c"] {
        app.send(&event(
            id,
            "SIM/Deleted",
            json!({"sim_info": {"imsi": "001010000020350"}}),
        ))
        .await;
    }
    assert_eq!(app.state.memory.sizes().0, 2);
    app.send(&event(
        "c",
        "SIM/Deleted",
        json!({"sim_info": {"imsi": "001010000020350"}}),
    ))
    .await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 3, "c is remembered");
    app.send(&event(
        "a",
        "SIM/Deleted",
        json!({"sim_info": {"imsi": "001010000020350"}}),
    ))
    .await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 4, "a was dropped, so it runs again");
}

#[tokio::test]
async fn an_older_event_for_the_same_imsi_is_ignored_as_stale() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    assert_eq!(
        app.send(&timed_event("newer", "2025-03-12T17:00:00+00:00"))
            .await
            .status()
            .as_u16(),
        202
    );
    let resp = app.send(&timed_event("older", "2025-03-12T16:00:00+00:00")).await;
    assert_eq!(resp.status().as_u16(), 202);
    let message = json(resp).await["message"].as_str().unwrap_or("").to_string();
    assert!(message.starts_with("Event ignored: stale event"), "{message}");
    assert!(message.contains("001010000020349"), "{message}");
    assert_eq!(wtl_bodies(&wtl).await.len(), 1, "the stale event made no call");
    // An event without timestamps is applied.
    let mut e: serde_json::Value = serde_json::from_str(&timed_event("untimed", "x")).expect("json");
    e.as_object_mut().map(|o| {
        o.remove("updated_at");
        o.remove("created_at")
    });
    assert_eq!(app.send(&e.to_string()).await.status().as_u16(), 202);
    assert_eq!(wtl_bodies(&wtl).await.len(), 2);
    // With the check off, the old event applies.
    let app = spawn_app(&wtl.uri(), &[("STALE_EVENT_CHECK", "false")]).await;
    app.send(&timed_event("newer", "2025-03-12T17:00:00+00:00")).await;
    app.send(&timed_event("older", "2025-03-12T16:00:00+00:00")).await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 4);
}

/// The two SIMs of `sim-replaced.json`: the old one it releases, the new one it provisions.
const REPLACED_OLD: &str = "001010000020349";
const REPLACED_NEW: &str = "001010000020351";

/// A `SIM/Replaced` (16:47) fails at its first call; before NSPS redelivers it, a `SIM/Updated`
/// at 17:00 is applied to one of its SIMs (`later_on_new`: the new one, else the old one),
/// through `second`. The redelivery, through `first`, skips only the calls to that SIM: the old
/// SIM is still released (or the new one still provisioned), and its time recorded; the skipped
/// call is in `actions` as `stale`.
pub(crate) async fn a_replacement_after_a_later_event_on_one_sim(
    first: &TestApp,
    second: &TestApp,
    wtl: &MockServer,
    later_on_new: bool,
) {
    let replaced = fixture("sim-replaced.json");
    assert_eq!(
        first.send(&replaced).await.status().as_u16(),
        500,
        "the first delivery fails"
    );
    let (newer, other) = if later_on_new {
        (REPLACED_NEW, REPLACED_OLD)
    } else {
        (REPLACED_OLD, REPLACED_NEW)
    };
    let mut later: serde_json::Value =
        serde_json::from_str(&event("later", "SIM/Updated", open_sim(newer))).expect("json");
    later["updated_at"] = json!("2025-03-12T17:00:00Z");
    assert_eq!(second.send(&later.to_string()).await.status().as_u16(), 202);

    let resp = first.send(&replaced).await;
    assert_eq!(resp.status().as_u16(), 202, "the redelivery is processed");
    let body = json(resp).await;
    assert_eq!(
        body["message"], "Event processed successfully",
        "the contract's message"
    );
    let results: Vec<(&str, &str)> = body["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| (a["imsi"].as_str().unwrap_or(""), a["result"].as_str().unwrap_or("")))
        .collect();
    let expected = if later_on_new {
        vec![(REPLACED_OLD, "applied"), (REPLACED_NEW, "stale")]
    } else {
        vec![(REPLACED_OLD, "stale"), (REPLACED_NEW, "applied")]
    };
    assert_eq!(results, expected);

    // WTL got: the failed first call (to the old SIM), the later event, and the redelivery's
    // one call, to the other SIM.
    let bodies = wtl_bodies(wtl).await;
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(bodies[0]["imsi"], REPLACED_OLD);
    assert_eq!(bodies[1]["imsi"], newer);
    assert_eq!(bodies[2]["imsi"], other, "the redelivery called only the other SIM");
    if later_on_new {
        assert_eq!(
            bodies[2]["subscriber_status"], "operatorDeterminedBarring",
            "the old SIM is released"
        );
        assert_eq!(bodies[2]["msisdn"], json!([]));
    } else {
        assert_eq!(
            bodies[2]["subscriber_status"], "serviceGranted",
            "the new SIM is provisioned"
        );
    }

    // The call made recorded its SIM's time: an event older than the replacement is stale there.
    let mut older: serde_json::Value =
        serde_json::from_str(&event("older", "SIM/Updated", open_sim(other))).expect("json");
    older["updated_at"] = json!("2025-03-12T16:00:00Z");
    let resp = second.send(&older.to_string()).await;
    assert_eq!(resp.status().as_u16(), 202);
    let message = json(resp).await["message"].as_str().unwrap_or("").to_string();
    assert!(
        message.starts_with(&format!("Event ignored: stale event: IMSI {other}")),
        "{message}"
    );
    assert_eq!(wtl_bodies(wtl).await.len(), 3, "the stale event made no call");
}

#[tokio::test]
async fn a_replacement_redelivered_after_a_later_event_on_its_new_sim_still_releases_the_old_one() {
    let wtl = wtl_failing_first(503, 1).await;
    let app = spawn_app(&wtl.uri(), &[("WTL_MAX_RETRIES", "0")]).await;
    a_replacement_after_a_later_event_on_one_sim(&app, &app, &wtl, true).await;
}

#[tokio::test]
async fn a_replacement_redelivered_after_a_later_event_on_its_old_sim_still_provisions_the_new_one() {
    let wtl = wtl_failing_first(503, 1).await;
    let app = spawn_app(&wtl.uri(), &[("WTL_MAX_RETRIES", "0")]).await;
    a_replacement_after_a_later_event_on_one_sim(&app, &app, &wtl, false).await;
}

#[tokio::test]
async fn beyond_max_in_flight_events_are_refused_at_once_with_503() {
    let wtl = slow_wtl(Duration::from_millis(1500)).await;
    let app = Arc::new(spawn_app(&wtl.uri(), &[("MAX_IN_FLIGHT", "1")]).await);
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.send_fixture("sim-created.json").await.status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = app.send_fixture("sim-deleted.json").await;
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    error_body(resp, 503, "SERVICE_ERROR").await;
    assert_eq!(first.await.expect("task"), 202);
    assert_eq!(wtl_bodies(&wtl).await.len(), 1, "the refused event made no call");
    // Health is not an event and is always served.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn request_timeout_answers_503_json_instead_of_hanging() {
    let wtl = slow_wtl(Duration::from_secs(5)).await;
    let app = spawn_app(&wtl.uri(), &[("REQUEST_TIMEOUT", "0.5"), ("WTL_TOTAL_TIMEOUT", "30")]).await;
    let body = error_body(app.send_fixture("sim-created.json").await, 503, "CONNECTION_ERROR").await;
    assert!(body["message"].as_str().expect("text").contains("REQUEST_TIMEOUT"));
    // The cut-off event is not remembered as done: its redelivery runs again.
    let _ = app.send_fixture("sim-created.json").await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 2);
}

#[tokio::test]
async fn shutdown_turns_readiness_off_and_lets_the_in_flight_event_finish() {
    let wtl = slow_wtl(Duration::from_millis(800)).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let ready = app.state.ready.clone();
    let client = app.client.clone();
    let url = app.url("/process-event");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(TOKEN)
            .body(fixture("sim-created.json"))
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ready.load(Ordering::Relaxed));
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !ready.load(Ordering::Relaxed),
        "readiness is off once shutdown has begun"
    );
    assert_eq!(in_flight.await.expect("task"), 202, "the in-flight event finished");
    stopping.await.expect("drained");
}

#[tokio::test]
async fn a_connector_that_is_shutting_down_answers_ready_and_events_with_503() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    nsps_wtl_connector::set_not_ready(&app.state.ready);
    let resp = app.client.get(app.url("/ready")).send().await.expect("answer");
    error_body(resp, 503, "SERVICE_ERROR").await;
    let resp = app.send_fixture("sim-created.json").await;
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    error_body(resp, 503, "SERVICE_ERROR").await;
    assert!(wtl_bodies(&wtl).await.is_empty());
}

//! `WTL_DRY_RUN=true`: events are answered as usual, with `"dry_run": true`, and no WTL call is
//! made; the redelivery memory records nothing.

use crate::helpers::*;

#[tokio::test]
async fn dry_run_plans_and_answers_but_calls_nothing_and_remembers_nothing() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[("WTL_DRY_RUN", "true")]).await;
    for _ in 0..2 {
        let resp = app.send_fixture("sim-replaced.json").await;
        assert_eq!(resp.status().as_u16(), 202);
        let body = json(resp).await;
        assert_eq!(body["dry_run"], true, "{body}");
        assert_eq!(
            body["message"], "Dry run: event planned, no WTL call made",
            "not a duplicate: {body}"
        );
        assert_eq!(
            body["actions"],
            serde_json::json!([
                {"action": "update", "imsi": "001010000020349", "result": "planned"},
                {"action": "update", "imsi": "001010000020351", "result": "planned"}
            ])
        );
    }
    assert!(wtl_bodies(&wtl).await.is_empty(), "no WTL call in dry-run mode");
    assert_eq!(
        app.state.memory.sizes(),
        (0, 0),
        "the redelivery memory recorded nothing"
    );
    // An ignored or invalid event is answered as always.
    let ignored = json(app.send_fixture("unsupported-event-type.json").await).await;
    assert!(ignored.get("dry_run").is_none());
    assert!(ignored["message"].as_str().expect("text").starts_with("Event ignored"));
}

#[tokio::test]
async fn without_dry_run_the_answer_has_no_dry_run_member() {
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let body = json(app.send_fixture("sim-created.json").await).await;
    assert!(body.get("dry_run").is_none(), "{body}");
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

//! SPEC §2: endpoints, auth, body rules, trace ids.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn health_answers_on_get_head_and_root() {
    let app = spawn_app("http://127.0.0.1:9", &[]).await;
    for path in ["/health", "/", "/health/", "/health?probe=1"] {
        let resp = app.client.get(app.url(path)).send().await.expect("answer");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let body = json(resp).await;
        assert_eq!(body["status"], "Healthy");
        assert_eq!(body["service"], "WTL HLR/HSS Connector");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }
    let resp = app.client.head(app.url("/health")).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.bytes().await.expect("body").is_empty(), "HEAD has no body");
}

#[tokio::test]
async fn ready_is_200_while_serving() {
    let app = spawn_app("http://127.0.0.1:9", &[]).await;
    let resp = app.client.get(app.url("/ready")).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn unknown_path_is_a_json_404() {
    let app = spawn_app("http://127.0.0.1:9", &[]).await;
    let resp = app.client.get(app.url("/nope")).send().await.expect("answer");
    let body = error_body(resp, 404, "VALIDATION_ERROR").await;
    assert!(body["message"].as_str().expect("text").contains("/nope"));
}

#[tokio::test]
async fn wrong_method_is_a_json_405_with_allow() {
    let app = spawn_app("http://127.0.0.1:9", &[]).await;
    let resp = app.client.put(app.url("/process-event")).send().await.expect("answer");
    assert_eq!(resp.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    error_body(resp, 405, "VALIDATION_ERROR").await;
    let resp = app.client.delete(app.url("/health")).send().await.expect("answer");
    let allow = resp
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
    error_body(resp, 405, "VALIDATION_ERROR").await;
}

#[tokio::test]
async fn events_are_taken_on_every_event_path_with_or_without_trailing_slash() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[("EVENTS_PATH", "/nsps/events/")]).await;
    for path in [
        "/process-event",
        "/process-event/",
        "/",
        "/nsps/events",
        "/nsps/events/",
        "/process-event?x=1",
    ] {
        let resp = app
            .client
            .post(app.url(path))
            .bearer_auth(TOKEN)
            .body(fixture("sim-deleted.json"))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 202, "{path}");
    }
    // Each delivery above is the same event: the first reaches WTL, the rest are duplicates.
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

#[tokio::test]
async fn missing_content_type_is_accepted_and_non_json_is_415() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app
        .client
        .post(app.url("/process-event"))
        .bearer_auth(TOKEN)
        .body(fixture("sim-deleted.json"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 202, "no Content-Type is fine");
    let resp = app
        .client
        .post(app.url("/process-event"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(fixture("sim-created.json"))
        .send()
        .await
        .expect("answer");
    error_body(resp, 415, "VALIDATION_ERROR").await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 1, "the 415 event made no call");
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413_declared_or_streamed() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[("MAX_BODY_BYTES", "2048")]).await;
    let big = format!(
        r#"{{"event_id":"big","data":{{"event_type":"SIM/Deleted"}},"pad":"{}"}}"#,
        "x".repeat(4096)
    );
    let resp = app.send(&big).await;
    let body = error_body(resp, 413, "VALIDATION_ERROR").await;
    assert!(body["message"].as_str().expect("text").contains("2048"));
    // Without Content-Length (chunked), the limit holds while reading.
    let stream = futures_stream(big.into_bytes());
    let resp = app
        .client
        .post(app.url("/process-event"))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("answer");
    error_body(resp, 413, "VALIDATION_ERROR").await;
    assert!(wtl_bodies(&wtl).await.is_empty());
}

fn futures_stream(bytes: Vec<u8>) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn auth_failures_are_401_with_www_authenticate() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let body = fixture("sim-created.json");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        ("other scheme", Some(format!("Basic {TOKEN}"))),
        ("wrong token", Some("Bearer nope".into())),
        ("token prefix", Some("Bearer test-token".into())),
        ("empty token", Some("Bearer ".into())),
    ];
    for (case, header) in cases {
        let mut req = app.client.post(app.url("/process-event")).body(body.clone());
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let resp = req.send().await.expect("answer");
        assert_eq!(
            resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{case}"
        );
        let body = error_body(resp, 401, "AUTHENTICATION_ERROR").await;
        assert_eq!(
            body,
            json!({"message":"Invalid access token","error":"Unauthorized","type":"AUTHENTICATION_ERROR"}),
            "{case}"
        );
    }
    assert!(
        wtl_bodies(&wtl).await.is_empty(),
        "no unauthenticated event reached WTL"
    );
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_every_listed_token_works() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    for (i, header) in ["bearer test-token-1", "BEARER test-token-1", "Bearer second-token"]
        .iter()
        .enumerate()
    {
        let body = event(
            &format!("ev-{i}"),
            "SIM/Deleted",
            json!({"sim_info": {"imsi": "001010000020350"}}),
        );
        let resp = app
            .client
            .post(app.url("/process-event"))
            .header("authorization", *header)
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 202, "{header}");
    }
    assert_eq!(wtl_bodies(&wtl).await.len(), 3);
}

#[tokio::test]
async fn auth_is_checked_before_the_body_is_read() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[("MAX_BODY_BYTES", "1024")]).await;
    // Too large, wrong type and not JSON: without a token, the answer is still 401.
    let resp = app
        .client
        .post(app.url("/process-event"))
        .header("content-type", "text/plain")
        .body("x".repeat(10_000))
        .send()
        .await
        .expect("answer");
    error_body(resp, 401, "AUTHENTICATION_ERROR").await;
}

#[tokio::test]
async fn malformed_or_incomplete_events_are_422_naming_the_field() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let cases = [
        (r#"{"event_id":"1","#, "(body)"),
        (r#"{"data":{"event_type":"SIM/Updated"}}"#, "event_id"),
        (r#"{"event_id":"1","data":{}}"#, "data.event_type"),
        (r#"{"event_id":"1","data":{"event_type":7}}"#, "data.event_type"),
        (
            r#"{"event_id":"1","data":{"event_type":"SIM/Updated"},"pb_data":{"sim_info":{"imsi":"12345"}}}"#,
            "pb_data.sim_info.imsi",
        ),
        (
            r#"{"event_id":"1","data":{"event_type":"SIM/Updated"},"pb_data":{"account_info":{"blocked":"perhaps"},"sim_info":{"imsi":"001010000020349"}}}"#,
            "pb_data.account_info.blocked",
        ),
        (
            r#"{"event_id":"1","data":{"event_type":"SIM/Updated"},"pb_data":{"account_info":{"bill_status":"open","id":"x"},"sim_info":{"imsi":"001010000020349"}}}"#,
            "pb_data.account_info.id",
        ),
        (
            r#"{"event_id":"1","data":{"event_type":"SIM/Updated"},"pb_data":{"sim_info":{"imsi":"001010000020349"},"access_policy_info":{"attributes":[{"name":"cs_profile","value":"bad profile"}]}}}"#,
            "pb_data.access_policy_info.attributes[0].value",
        ),
    ];
    for (body, field) in cases {
        let resp = app.send(body).await;
        let err = error_body(resp, 422, "VALIDATION_ERROR").await;
        assert_eq!(err["details"][0]["field"], field, "{body}: {err}");
        assert!(err["details"][0]["message"].is_string());
    }
    assert!(wtl_bodies(&wtl).await.is_empty());
}

#[tokio::test]
async fn unknown_and_odd_unused_fields_do_not_fail_the_event() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let mut event: serde_json::Value = serde_json::from_str(&fixture("sim-updated-open.json")).expect("json");
    event["brand_new_field"] = json!({"nested": [1, 2, 3]});
    event["pb_data"]["account_info"]["i_account"] = json!("not-a-number");
    event["pb_data"]["account_info"]["assigned_addons"] = json!("none");
    event["pb_data"]["full_vd_counter_info"] = json!([{"remaining": "N/A", "allocated_amount": "lots"}]);
    event["pb_data"]["sim_info"]["i_sim_card"] = json!(null);
    let resp = app.send(&event.to_string()).await;
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

#[tokio::test]
async fn trace_ids_are_echoed_and_sent_to_wtl() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app
        .client
        .post(app.url("/process-event"))
        .bearer_auth(TOKEN)
        .header("x-b3-traceid", "trace-abc")
        .header("x-request-id", "req-123")
        .body(fixture("sim-created.json"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.headers()["x-b3-traceid"], "trace-abc");
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let received = wtl.received_requests().await.expect("recorded");
    assert_eq!(received[0].headers["x-b3-traceid"], "trace-abc");
    assert_eq!(received[0].headers["x-request-id"], "req-123");
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert!(
        received[0].headers.get("authorization").is_none(),
        "WTL_AUTH=none sends no credentials"
    );

    // Missing ids are generated (UUID v4), echoed, and the same ones reach WTL.
    let resp = app.send_fixture("sim-deleted.json").await;
    let b3 = resp.headers()["x-b3-traceid"].to_str().expect("text").to_string();
    let rid = resp.headers()["x-request-id"].to_str().expect("text").to_string();
    assert_eq!(uuid::Uuid::parse_str(&b3).expect("uuid").get_version_num(), 4);
    assert_eq!(uuid::Uuid::parse_str(&rid).expect("uuid").get_version_num(), 4);
    let received = wtl.received_requests().await.expect("recorded");
    assert_eq!(received[1].headers["x-b3-traceid"], b3.as_str());
    assert_eq!(received[1].headers["x-request-id"], rid.as_str());
}

#[tokio::test]
async fn metrics_need_the_token_unless_opened() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let resp = app.client.get(app.url("/metrics")).send().await.expect("answer");
    error_body(resp, 401, "AUTHENTICATION_ERROR").await;
    app.send_fixture("sim-created.json").await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("nsps_events_total{event_type=\"SIM/Created\",outcome=\"processed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("wtl_calls_total{action=\"insert\",result=\"success\"} 1"),
        "{text}"
    );
    let open = spawn_app(&wtl.uri(), &[("METRICS_PUBLIC", "true")]).await;
    let resp = open.client.get(open.url("/metrics")).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn the_trace_continues_on_every_wtl_call_and_a_malformed_traceparent_starts_a_new_one() {
    let wtl = wtl_answering(200, "{}").await;
    let app = spawn_app(&wtl.uri(), &[]).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let send = |sent: &'static str, id: &'static str, extra: Option<(&'static str, &'static str)>| {
        let mut request = app
            .client
            .post(app.url("/process-event"))
            .bearer_auth(TOKEN)
            .header("traceparent", sent)
            .body(event(
                id,
                "SIM/Deleted",
                serde_json::json!({"sim_info": {"imsi": "001010000044001"}}),
            ));
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.send()
    };
    let last_traceparent = || async {
        let received = wtl.received_requests().await.expect("recorded");
        let last = received.last().expect("a WTL call");
        assert!(
            last.headers.get("x-b3-traceid").is_some(),
            "the B3 ids travel beside it"
        );
        last.headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .expect("a traceparent")
            .to_string()
    };
    let parts = |tp: &str| tp.split('-').map(str::to_string).collect::<Vec<_>>();

    assert_eq!(send(traceparent, "tp-1", None).await.expect("answer").status(), 202);
    let sent = parts(&last_traceparent().await);
    assert_eq!(
        sent[1], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace continues"
    );
    assert_ne!(sent[2], "00f067aa0ba902b7", "from the connector's own span");
    assert_eq!(
        (sent[0].as_str(), sent[3].as_str()),
        ("00", "01"),
        "sampled as the caller said"
    );

    assert_eq!(
        send("00-not-a-trace", "tp-2", None).await.expect("answer").status(),
        202
    );
    let fresh = parts(&last_traceparent().await);
    assert_eq!(fresh.len(), 4);
    assert!(fresh[1].len() == 32 && fresh[1] != "00000000000000000000000000000000");
    assert_ne!(fresh[1], "4bf92f3577b34da6a3ce929d0e0e4736");

    // NSPS's own B3 id (16 hex digits) starts the trace when nothing else names one.
    let b3 = send("garbage", "tp-3", Some(("x-b3-traceid", "a3ce929d0e0e4736")))
        .await
        .expect("answer");
    assert_eq!(b3.status(), 202);
    assert_eq!(parts(&last_traceparent().await)[1], "0000000000000000a3ce929d0e0e4736");
}

//! Several instances, one truth: two connectors sharing one real `redis-server` behave as one
//! for duplicates, stale events and one event at a time per IMSI; Redis down means 503 and no
//! WTL call, and Redis back means events flow again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;
use crate::stands::RedisServer;

const IMSI: &str = "001010000055001";

fn update(id: &str, updated_at: &str) -> String {
    let mut e: serde_json::Value = serde_json::from_str(&event(id, "SIM/Updated", open_sim(IMSI))).expect("json");
    e["updated_at"] = json!(updated_at);
    e.to_string()
}

async fn two_instances(wtl: &str, redis: &RedisServer, extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let url = redis.url();
    let mut vars = vec![("REDIS_URL", url.as_str()), ("REDIS_TIMEOUT", "0.5")];
    vars.extend_from_slice(extra);
    (spawn_app(wtl, &vars).await, spawn_app(wtl, &vars).await)
}

/// The `running:` and `lock:` keys Redis holds.
async fn leases(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis.connection().await;
    let mut keys = Vec::new();
    for pattern in ["*:running:*", "*:lock:*"] {
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("keys");
        keys.extend(found);
    }
    keys
}

async fn message(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, json(resp).await["message"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn a_duplicate_delivered_to_the_other_instance_makes_no_wtl_call() {
    let redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let (a, b) = two_instances(&wtl.uri(), &redis, &[]).await;
    assert_eq!(
        message(a.send(&update("e-1", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    assert_eq!(
        message(b.send(&update("e-1", "2025-03-12T17:00:00Z")).await).await,
        (202, "Event already processed".to_string())
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

#[tokio::test]
async fn an_older_event_on_the_other_instance_after_a_newer_one_is_stale() {
    let redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let (a, b) = two_instances(&wtl.uri(), &redis, &[]).await;
    assert_eq!(
        message(a.send(&update("new", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    let (status, text) = message(b.send(&update("old", "2025-03-12T16:00:00Z")).await).await;
    assert_eq!(status, 202);
    assert!(
        text.starts_with(&format!("Event ignored: stale event: IMSI {IMSI}")) && text.contains("2025-03-12T17:00:00Z"),
        "{text}"
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 1, "the stale event made no call");
    assert_eq!(
        leases(&redis).await,
        Vec::<String>::new(),
        "the stale event gave its leases back"
    );
    // The time only moves forward: a later event applies, an equal one too.
    assert_eq!(
        message(b.send(&update("same", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 2);
}

#[tokio::test]
async fn a_replacement_redelivered_to_one_instance_after_a_later_event_on_the_other_skips_only_that_sim() {
    for later_on_new in [true, false] {
        let redis = RedisServer::start(None);
        let wtl = wtl_failing_first(503, 1).await;
        let (a, b) = two_instances(&wtl.uri(), &redis, &[("WTL_MAX_RETRIES", "0")]).await;
        crate::redelivery::a_replacement_after_a_later_event_on_one_sim(&a, &b, &wtl, later_on_new).await;
        assert_eq!(leases(&redis).await, Vec::<String>::new(), "every lease given back");
    }
}

/// Answers after `hold`, recording when each call arrived and when its answer was due.
struct Recorder {
    hold: Duration,
    spans: Arc<Mutex<Vec<(Instant, Instant)>>>,
}

impl Respond for Recorder {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let now = Instant::now();
        self.spans.lock().expect("lock").push((now, now + self.hold));
        ResponseTemplate::new(200)
            .set_body_string(r#"{"result":true}"#)
            .set_delay(self.hold)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_one_imsi_on_two_instances_never_overlap_at_wtl() {
    let redis = RedisServer::start(None);
    let wtl = MockServer::start().await;
    let spans = Arc::new(Mutex::new(Vec::new()));
    let hold = Duration::from_millis(150);
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(Recorder {
            hold,
            spans: spans.clone(),
        })
        .mount(&wtl)
        .await;
    let (a, b) = two_instances(&wtl.uri(), &redis, &[]).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            // One time for all: none is stale, so each makes its call.
            app.send(&update(&format!("c-{i}"), "2025-03-12T17:00:00Z"))
                .await
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 202);
    }
    let mut spans = spans.lock().expect("lock").clone();
    assert_eq!(spans.len(), 6, "{spans:?}");
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 + Duration::from_millis(5) >= pair[0].1,
            "a call started before the previous one for the same IMSI was answered"
        );
    }
}

/// Records, per IMSI, when WTL started and finished each call.
struct PerImsi {
    hold: Duration,
    spans: Arc<Mutex<Vec<(String, Instant, Instant)>>>,
}

impl Respond for PerImsi {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let imsi = body["imsi"].as_str().unwrap_or("?").to_string();
        let now = Instant::now();
        self.spans.lock().expect("lock").push((imsi, now, now + self.hold));
        ResponseTemplate::new(200)
            .set_body_string(r#"{"result":true}"#)
            .set_delay(self.hold)
    }
}

/// A `SIM/Replaced` from the fixture, from SIM `old` to SIM `new`.
fn replaced(id: &str, old: &str, new: &str) -> String {
    let mut e: serde_json::Value = serde_json::from_str(&fixture("sim-replaced.json")).expect("json");
    e["event_id"] = json!(id);
    e["pb_data"]["sim_info"]["imsi"] = json!(new);
    e["pb_data"]["prev_sim_info"]["imsi"] = json!(old);
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_replacements_on_two_instances_never_overlap_at_wtl_nor_wait_on_each_other() {
    const OTHER: &str = "001010000055002";
    let redis = RedisServer::start(None);
    let wtl = MockServer::start().await;
    let spans = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/prov"))
        .respond_with(PerImsi {
            hold: Duration::from_millis(60),
            spans: spans.clone(),
        })
        .mount(&wtl)
        .await;
    let (a, b) = two_instances(&wtl.uri(), &redis, &[]).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for round in 0..3 {
        // A→B on one instance, B→A on the other, and a plain update of each IMSI, all at once.
        let events = [
            (a.clone(), replaced(&format!("x-{round}"), IMSI, OTHER)),
            (b.clone(), replaced(&format!("y-{round}"), OTHER, IMSI)),
            (b.clone(), event(&format!("u-{round}"), "SIM/Updated", open_sim(IMSI))),
            (a.clone(), event(&format!("v-{round}"), "SIM/Updated", open_sim(OTHER))),
        ];
        for (app, body) in events {
            tasks.push(tokio::spawn(async move { message(app.send(&body).await).await }));
        }
    }
    for t in tasks {
        let (status, text) = t.await.expect("task");
        assert_eq!(status, 202, "{text}");
    }
    let spans = spans.lock().expect("lock").clone();
    assert_eq!(spans.len(), 3 * (2 + 2 + 1 + 1), "every event made its calls");
    for imsi in [IMSI, OTHER] {
        let mut mine: Vec<_> = spans.iter().filter(|s| s.0 == imsi).map(|s| (s.1, s.2)).collect();
        mine.sort();
        for pair in mine.windows(2) {
            assert!(
                pair[1].0 + Duration::from_millis(5) >= pair[0].1,
                "two calls for IMSI {imsi} overlapped at WTL"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_event_on_two_instances_make_one_set_of_calls() {
    let redis = RedisServer::start(None);
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("{}")
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&wtl)
        .await;
    let (a, b) = two_instances(&wtl.uri(), &redis, &[]).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            message(app.send_fixture("sim-replaced.json").await).await
        }));
    }
    let mut processed = 0;
    for t in tasks {
        let (status, text) = t.await.expect("task");
        assert_eq!(status, 202, "{text}");
        if text == "Event processed successfully" {
            processed += 1;
        } else {
            assert_eq!(text, "Event already processed");
        }
    }
    assert_eq!(processed, 1);
    assert_eq!(wtl_bodies(&wtl).await.len(), 2, "SIM/Replaced makes its two calls once");
}

#[tokio::test]
async fn redis_down_means_503_and_no_wtl_call_and_redis_back_means_events_flow_again() {
    let mut redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(
        &wtl.uri(),
        &[("REDIS_URL", redis.url().as_str()), ("REDIS_TIMEOUT", "0.5")],
    )
    .await;
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status()
            .as_u16(),
        200
    );

    redis.stop();
    let resp = app.send(&update("while-down", "2025-03-12T17:00:00Z")).await;
    assert!(
        resp.headers().get("retry-after").is_some(),
        "NSPS is told when to come back"
    );
    let body = error_body(resp, 503, "CONNECTION_ERROR").await;
    assert_eq!(body["message"], "redelivery store unavailable");
    assert!(
        wtl_bodies(&wtl).await.is_empty(),
        "nothing applied without the guarantees"
    );
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status()
            .as_u16(),
        503
    );
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .expect("health")
            .status()
            .as_u16(),
        200
    );
    assert!(app.state.metrics.render().contains("redelivery_store_errors_total"));

    redis.restart();
    let mut ready = false;
    for _ in 0..50 {
        if app
            .client
            .get(app.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status()
            .as_u16()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once Redis is back, without a restart");
    assert_eq!(
        message(app.send(&update("while-down", "2025-03-12T17:00:00Z")).await).await,
        (202, "Event processed successfully".to_string())
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

#[tokio::test]
async fn with_redis_fail_open_events_are_processed_while_redis_is_down() {
    let mut redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(
        &wtl.uri(),
        &[
            ("REDIS_URL", redis.url().as_str()),
            ("REDIS_TIMEOUT", "0.5"),
            ("REDIS_FAIL_OPEN", "true"),
        ],
    )
    .await;
    redis.stop();
    assert_eq!(
        message(app.send(&update("open", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

#[tokio::test]
async fn a_password_protected_redis_works_and_its_password_is_never_shown() {
    let redis = RedisServer::start(Some("redis-pw-5150"));
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let (a, b) = two_instances(&wtl.uri(), &redis, &[]).await;
    assert_eq!(
        message(a.send(&update("pw", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    assert_eq!(
        message(b.send(&update("pw", "2025-03-12T17:00:00Z")).await).await.1,
        "Event already processed"
    );
    let shown = format!("{:?} {:?}", a.settings.redacted(), a.settings);
    assert!(!shown.contains("redis-pw-5150"), "{shown}");

    // A wrong password: refused, and the answer names no password.
    let wrong = format!("redis://:not-the-pw-777@127.0.0.1:{}", redis.port);
    let app = spawn_app(&wtl.uri(), &[("REDIS_URL", wrong.as_str()), ("REDIS_TIMEOUT", "0.5")]).await;
    let resp = app.send(&update("wrong-pw", "2025-03-12T17:00:00Z")).await;
    let body = error_body(resp, 503, "CONNECTION_ERROR").await;
    assert!(!body.to_string().contains("not-the-pw-777"), "{body}");
}

#[tokio::test]
async fn every_key_has_a_time_to_live_and_no_lease_is_left_behind() {
    let redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let (a, _b) = two_instances(&wtl.uri(), &redis, &[("REDIS_KEY_PREFIX", "test-prefix:")]).await;
    assert_eq!(
        message(a.send(&update("ttl-1", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    assert_eq!(a.send_fixture("sim-replaced.json").await.status().as_u16(), 202);
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("keys");
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.starts_with("test-prefix:"), "{key}");
        assert!(
            !key.contains(":running:") && !key.contains(":lock:"),
            "a lease outlived its event: {key}"
        );
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.expect("ttl");
        assert!(ttl > 0, "{key} has no time to live ({ttl})");
    }
    assert!(keys.contains(&"test-prefix:done:ttl-1".to_string()), "{keys:?}");
    // The IMSI's time is a field of its hundred's hash: the first 13 digits, then `xx`.
    let hundred = format!("test-prefix:applied:{}xx", &IMSI[..13]);
    assert!(keys.contains(&hundred), "{keys:?}");
    let kept: Option<String> = redis::cmd("HGET")
        .arg(&hundred)
        .arg(IMSI[13..].trim_start_matches('0'))
        .query_async(&mut conn)
        .await
        .expect("hget");
    assert_eq!(kept.as_deref(), Some("1741798800000000"), "the event's time in µs");
}

#[tokio::test]
async fn a_time_kept_in_the_earlier_layout_still_guards_its_imsi_and_moves_into_the_hash() {
    let redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let mut conn = redis.connection().await;
    // What an earlier version left: one key per IMSI, the time in µs (2025-03-12T18:00:00Z).
    let legacy = format!("nsps-wtl:applied:{IMSI}");
    let _: () = redis::cmd("SET")
        .arg(&legacy)
        .arg("1741802400000000")
        .arg("PX")
        .arg(3_000_000_000u64)
        .query_async(&mut conn)
        .await
        .expect("set");
    let (a, _b) = two_instances(&wtl.uri(), &redis, &[]).await;
    let (status, text) = message(a.send(&update("old-1", "2025-03-12T17:00:00Z")).await).await;
    assert_eq!(status, 202);
    assert!(
        text.contains("stale event"),
        "the earlier layout's time still counts: {text}"
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 0, "nothing sent for a stale event");

    assert_eq!(
        message(a.send(&update("new-1", "2025-03-12T19:00:00Z")).await).await.0,
        202
    );
    let hundred = format!("nsps-wtl:applied:{}xx", &IMSI[..13]);
    let field = IMSI[13..].trim_start_matches('0');
    let kept: Option<String> = redis::cmd("HGET")
        .arg(&hundred)
        .arg(field)
        .query_async(&mut conn)
        .await
        .expect("hget");
    assert_eq!(kept.as_deref(), Some("1741806000000000"));
    let left: i64 = redis::cmd("EXISTS")
        .arg(&legacy)
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert_eq!(left, 0, "the earlier key is gone once its IMSI moved");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&hundred)
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!(
        ttl > 34 * 86_400_000,
        "the hash lives STALE_EVENT_TTL from its last write: {ttl}"
    );
    let (status, text) = message(a.send(&update("between", "2025-03-12T18:30:00Z")).await).await;
    assert_eq!(status, 202);
    assert!(text.contains("stale event"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_off_while_its_imsi_is_busy_on_another_instance_leaves_nothing_behind() {
    let redis = RedisServer::start(None);
    let wtl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(crate::helpers::InTurn::new(vec![
            ResponseTemplate::new(200)
                .set_body_string("{}")
                .set_delay(Duration::from_millis(1200)),
            ResponseTemplate::new(200).set_body_string("{}"),
        ]))
        .mount(&wtl)
        .await;
    let (a, b) = two_instances(&wtl.uri(), &redis, &[]).await;
    let a = Arc::new(a);
    let first = {
        let a = a.clone();
        tokio::spawn(async move {
            a.send(&update("holder", "2025-03-12T17:00:00Z"))
                .await
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.send_and_hang_up(&update("waiter", "2025-03-12T17:00:01Z"), Duration::from_millis(300))
        .await;
    assert_eq!(first.await.expect("task"), 202);
    let redelivered = tokio::time::timeout(
        Duration::from_secs(10),
        b.send(&update("waiter", "2025-03-12T17:00:01Z")),
    )
    .await
    .expect("answered in time");
    assert_eq!(
        message(redelivered).await,
        (202, "Event processed successfully".to_string())
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(leases(&redis).await, Vec::<String>::new());
}

#[tokio::test]
async fn rediss_with_redis_ca_file_is_trusted_and_without_it_refused() {
    let (files, ca) = (crate::stands::Files::new(), crate::stands::Ca::new("Memorystore CA"));
    let redis = RedisServer::start_tls(&ca);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let ca_file = files.write("redis-ca.pem", &ca.pem);
    let (a, b) = two_instances(&wtl.uri(), &redis, &[("REDIS_CA_FILE", ca_file.as_str())]).await;
    assert_eq!(
        message(a.send(&update("tls", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    assert_eq!(
        message(b.send(&update("tls", "2025-03-12T17:00:00Z")).await).await.1,
        "Event already processed"
    );

    let untrusting = spawn_app(
        &wtl.uri(),
        &[("REDIS_URL", redis.url().as_str()), ("REDIS_TIMEOUT", "0.5")],
    )
    .await;
    let resp = untrusting.send(&update("tls-2", "2025-03-12T17:00:00Z")).await;
    error_body(resp, 503, "CONNECTION_ERROR").await;
    assert_eq!(wtl_bodies(&wtl).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_off_while_redis_runs_its_admission_gives_back_what_it_took() {
    let redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    let app = spawn_app(
        &wtl.uri(),
        &[
            ("REDIS_URL", redis.url().as_str()),
            ("REDIS_TIMEOUT", "5"),
            ("REQUEST_TIMEOUT", "1"),
        ],
    )
    .await;
    // One event first, so Redis knows the scripts (an unknown script is loaded and sent again,
    // which a cut-off delivery would never do).
    assert_eq!(
        message(app.send(&update("first", "2025-03-12T17:00:00Z")).await)
            .await
            .0,
        202
    );
    // Redis holds every script for 1.6 s: the delivery is cut off (REQUEST_TIMEOUT) while its
    // admission waits in Redis's queue, then Redis runs it and takes the leases.
    let mut conn = redis.connection().await;
    let paused = Instant::now();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1600)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .expect("pause");
    let cut = app.send_fixture("sim-replaced.json").await;
    assert_eq!(cut.status().as_u16(), 503);
    assert!(
        paused.elapsed() < Duration::from_millis(1600),
        "cut off before Redis ran it"
    );
    tokio::time::sleep_until((paused + Duration::from_millis(1850)).into()).await;
    // The leases, left alone, would live until 2.6 s.
    assert_eq!(
        leases(&redis).await,
        Vec::<String>::new(),
        "the cut-off delivery gave its leases back"
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 1, "only the first event reached WTL");
}

#[tokio::test]
async fn without_duplicate_detection_or_without_ordering_the_shared_memory_keeps_only_what_is_asked() {
    let redis = RedisServer::start(None);
    let wtl = wtl_answering(200, r#"{"result":true}"#).await;
    // No duplicate detection: a redelivery calls WTL again; stale events are still skipped.
    let (a, b) = two_instances(&wtl.uri(), &redis, &[("EVENT_DEDUP_TTL", "0")]).await;
    for app in [&a, &b] {
        assert_eq!(
            message(app.send(&update("again", "2025-03-12T17:00:00Z")).await).await,
            (202, "Event processed successfully".to_string())
        );
    }
    assert_eq!(wtl_bodies(&wtl).await.len(), 2);
    let (_, text) = message(b.send(&update("older", "2025-03-12T16:00:00Z")).await).await;
    assert!(text.starts_with("Event ignored: stale event"), "{text}");
    assert_eq!(leases(&redis).await, Vec::<String>::new());
    // No ordering: an older event is applied; duplicates are still answered from memory.
    let (c, d) = two_instances(
        &wtl.uri(),
        &redis,
        &[("STALE_EVENT_CHECK", "false"), ("REDIS_KEY_PREFIX", "unordered:")],
    )
    .await;
    assert_eq!(
        message(c.send(&update("n-1", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    assert_eq!(
        message(d.send(&update("n-2", "2025-03-12T16:00:00Z")).await).await,
        (202, "Event processed successfully".to_string())
    );
    assert_eq!(
        message(d.send(&update("n-1", "2025-03-12T17:00:00Z")).await).await,
        (202, "Event already processed".to_string())
    );
    assert_eq!(wtl_bodies(&wtl).await.len(), 4);
    assert_eq!(leases(&redis).await, Vec::<String>::new());
    // Both off: there is nothing to keep, and Redis is not asked.
    let (e, _f) = two_instances(
        &wtl.uri(),
        &redis,
        &[
            ("EVENT_DEDUP_TTL", "0"),
            ("STALE_EVENT_CHECK", "false"),
            ("REDIS_KEY_PREFIX", "nothing:"),
        ],
    )
    .await;
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .expect("reset");
    assert_eq!(
        message(e.send(&update("z-1", "2025-03-12T17:00:00Z")).await).await.0,
        202
    );
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("info");
    assert!(!stats.contains("cmdstat_eval"), "a script ran: {stats}");
    let kept: Vec<String> = redis::cmd("KEYS")
        .arg("nothing:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(kept, Vec::<String>::new());
}

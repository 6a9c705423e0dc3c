//! Any input, no panic: random and mutated NSPS events through the parser and the plan, and
//! through the running app.

// Test helpers are shared between the test modules as `pub`; the visibility lint is for the
// library's API.
#![allow(unreachable_pub)]

use std::path::PathBuf;

use nsps_wtl_connector::Settings;
use proptest::prelude::*;
use serde_json::Value;

#[path = "fuzz/fuzz_targets/check.rs"]
mod fuzz_check;

fn rules() -> nsps_wtl_connector::PlanRules {
    Settings::from_vars([("API_TOKEN", "t"), ("WTL_API_URL", "http://127.0.0.1:9")])
        .expect("valid")
        .rules
}

fn fixtures() -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json"));
        }
    }
    out.sort_by_key(|v| v.to_string());
    out
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        "[0-9]{13,16}".prop_map(Value::String),
        prop_oneof![
            Just("open"),
            Just("O"),
            Just("Y"),
            Just("N"),
            Just("cs_profile"),
            Just("eps_profile"),
            Just("SIM/Updated"),
            Just("SIM/Replaced"),
            Just("79123456789@msisdn")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One edit somewhere in the tree: replace a node, delete an object member, or add one.
#[derive(Clone, Debug)]
enum Edit {
    Replace(Value),
    Delete,
    Insert(String, Value),
}

fn edit() -> impl Strategy<Value = (Vec<usize>, Edit)> {
    let e = prop_oneof![
        any_json().prop_map(Edit::Replace),
        Just(Edit::Delete),
        (".{0,8}", any_json()).prop_map(|(k, v)| Edit::Insert(k, v)),
    ];
    (prop::collection::vec(any::<usize>(), 0..6), e)
}

/// Walks `path` (each step picks a child by index modulo the child count) and applies `edit`.
fn apply(value: &mut Value, path: &[usize], edit: &Edit) {
    let children = match value {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if let (Some((step, rest)), true) = (path.split_first(), children > 0) {
        let i = step % children;
        let last = rest.is_empty();
        match value {
            Value::Object(m) => {
                let key = m.keys().nth(i).cloned().unwrap_or_default();
                if last && matches!(edit, Edit::Delete) {
                    m.remove(&key);
                    return;
                }
                if let Some(child) = m.get_mut(&key) {
                    apply(child, rest, edit);
                }
            }
            Value::Array(a) => {
                if last && matches!(edit, Edit::Delete) {
                    a.remove(i);
                    return;
                }
                apply(&mut a[i], rest, edit);
            }
            _ => {}
        }
        return;
    }
    match edit {
        Edit::Replace(v) => *value = v.clone(),
        Edit::Insert(k, v) => {
            if let Value::Object(m) = value {
                m.insert(k.clone(), v.clone());
            } else {
                *value = v.clone();
            }
        }
        Edit::Delete => *value = Value::Null,
    }
}

/// Parse and plan under the default settings; every outcome must be a plan, a skip, or a
/// problem naming a field (the fuzz target's check).
fn check(body: &[u8]) {
    fuzz_check::check(body, &rules());
}

/// The fuzz target's seed corpus through its own check and settings, so the target's code and
/// corpus are built and run by every `cargo test` (a fuzz run itself needs cargo-fuzz).
#[test]
fn the_fuzz_corpus_passes_the_fuzz_check() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/parse_and_plan");
    let rules = fuzz_check::fuzz_rules();
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).expect("corpus dir") {
        let body = std::fs::read(entry.expect("entry").path()).expect("read");
        fuzz_check::check(&body, &rules);
        seeds += 1;
    }
    assert!(seeds >= 10, "the corpus has {seeds} seeds");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn random_json_never_panics(value in any_json()) {
        check(value.to_string().as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(index in any::<usize>(), edits in prop::collection::vec(edit(), 1..4)) {
        let all = fixtures();
        let mut event = all[index % all.len()].clone();
        for (path, e) in &edits {
            apply(&mut event, path, e);
        }
        check(event.to_string().as_bytes());
        check(serde_json::to_string_pretty(&event).expect("serialises").as_bytes());
    }

    /// Byte edits to the fixtures as sent (pretty-printed): mostly syntax errors, escapes and
    /// odd numbers, where the readers must still agree.
    #[test]
    fn edited_fixture_text_reads_the_same(index in any::<usize>(), edits in prop::collection::vec(byte_edit(), 1..4)) {
        let all = fixture_texts();
        let mut text = all[index % all.len()].clone().into_bytes();
        for (at, e) in &edits {
            let at = at % (text.len() + 1);
            match e {
                ByteEdit::Insert(b) => text.insert(at, *b),
                ByteEdit::Remove if at < text.len() => {
                    text.remove(at);
                }
                ByteEdit::Replace(b) if at < text.len() => text[at] = *b,
                _ => {}
            }
        }
        check(&text);
    }
}

#[derive(Clone, Debug)]
enum ByteEdit {
    Insert(u8),
    Remove,
    Replace(u8),
}

/// An edit at a position, with bytes that matter to JSON more often than not.
fn byte_edit() -> impl Strategy<Value = (usize, ByteEdit)> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"{}[]\"\\,:0123456789-+.eEtrufalsn \n\tuD8".to_vec()),
        1 => any::<u8>(),
    ];
    let e = prop_oneof![
        byte.clone().prop_map(ByteEdit::Insert),
        Just(ByteEdit::Remove),
        byte.prop_map(ByteEdit::Replace),
    ];
    (any::<usize>(), e)
}

fn fixture_texts() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| std::fs::read_to_string(path).expect("read"))
        .collect();
    out.sort();
    out
}

/// The same mutated events through the running connector: always a JSON answer, 202 or 422,
/// never a 5xx (WTL is the simulator, which accepts whatever the plan sends or says 404/409).
#[test]
fn mutated_fixtures_through_the_running_app_get_a_json_answer() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (base, client) = runtime.block_on(async {
        let sim = nsps_wtl_connector::Simulator::bind("127.0.0.1:0".parse().expect("addr"), None)
            .await
            .expect("simulator");
        let sim_url = format!("http://{}", sim.local_addr().expect("addr"));
        tokio::spawn(sim.run_until(std::future::pending()));
        let settings = Settings::from_vars([
            ("API_TOKEN", "t"),
            ("WTL_API_URL", sim_url.as_str()),
            ("EVENT_DEDUP_TTL", "0"),
            ("STALE_EVENT_CHECK", "false"),
        ])
        .expect("valid");
        let app = nsps_wtl_connector::Application::bind(settings, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("binds");
        let base = format!("http://{}/process-event", app.local_addr());
        tokio::spawn(app.run_until(std::future::pending()));
        (base, reqwest::Client::new())
    });
    let all = fixtures();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(any::<usize>(), prop::collection::vec(edit(), 1..4)),
            |(index, edits)| {
                let mut event = all[index % all.len()].clone();
                for (path, e) in &edits {
                    apply(&mut event, path, e);
                }
                let (status, body) = runtime.block_on(async {
                    let resp = client
                        .post(&base)
                        .bearer_auth("t")
                        .body(event.to_string())
                        .send()
                        .await
                        .expect("answer");
                    (resp.status().as_u16(), resp.bytes().await.expect("body"))
                });
                let json: Value = serde_json::from_slice(&body).expect("a JSON answer");
                prop_assert!(matches!(status, 202 | 404 | 422), "{status}: {json}");
                if status == 422 {
                    prop_assert!(json["details"][0]["field"].is_string(), "{json}");
                }
                Ok(())
            },
        )
        .expect("every mutated event gets a JSON 202/404/422");
}

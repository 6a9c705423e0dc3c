//! The built binary as a process: JSON log lines with trace ids, start-up errors, shutdown.

// Test helpers are shared between the test modules as `pub`; the visibility lint is for the
// library's API.
#![allow(unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "api/stands.rs"]
mod stands;

const BIN: &str = env!("CARGO_BIN_EXE_nsps-wtl-connector");
const SECRET_TOKEN: &str = "nsps-secret-token-xyz";
const WTL_SECRET: &str = "wtl-secret-token-abc";

struct Running {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread reading stdout into `lines`; joined once the process has exited, so that the
    /// output read after `wait_exit` is all of it.
    reader: Option<std::thread::JoinHandle<()>>,
    dir: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the binary in an empty directory (no `.env`) with only `vars` set.
fn start(vars: &[(&str, &str)]) -> Running {
    start_with_args(&[], vars)
}

fn start_with_args(args: &[&str], vars: &[(&str, &str)]) -> Running {
    let dir = std::env::temp_dir().join(format!("nsps-wtl-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = stands::free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("stdout");
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push(line);
        }
    });
    Running {
        child,
        port,
        lines,
        reader: Some(reader),
        dir,
    }
}

impl Running {
    /// Waits for `/health` to answer 200; a child that exits first fails the test at once with
    /// what it wrote.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if self.reader.as_ref().is_none_or(|r| r.is_finished()) {
                let lines = self.lines.lock().expect("lock");
                panic!("the connector closed its output before it became healthy: {lines:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the connector did not become healthy");
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the exit (bounded far above any legitimate drain) and returns the exit code.
    fn wait_exit(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // The pipe is closed now: the reader ends once it has read the last line.
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("the output reader");
                }
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the process did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access line of the event (the one POST) the connector served.
    fn event_access_line(&self) -> serde_json::Value {
        self.json_lines()
            .into_iter()
            .find(|l| l["message"] == "request completed" && l["method"] == "POST")
            .expect("the event's access line")
    }

    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
            .collect()
    }

    fn raw_output(&self) -> String {
        self.output().join("\n")
    }

    /// Every line the process wrote to stdout; read after `wait_exit`, which saw the last one.
    fn output(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        assert!(self.reader.is_none(), "the output is read once the process has exited");
        self.lines.lock().expect("lock")
    }
}

fn post_event(port: u16, body: &str, trace: &str, request: &str) -> mini_http::Answer {
    mini_http::post(port, body, SECRET_TOKEN, trace, request)
}

/// A tiny blocking HTTP/1.1 client (the tests drive a process, not the library).
mod mini_http {
    pub use inner::*;
    mod inner {
        use std::io::{Read, Write};
        use std::net::TcpStream;

        pub struct Answer {
            pub status: u16,
            pub head: String,
            pub body: String,
        }

        pub fn post(port: u16, body: &str, token: &str, trace: &str, request: &str) -> Answer {
            post_with(
                port,
                body,
                token,
                &format!("x-b3-traceid: {trace}\r\nx-request-id: {request}\r\n"),
            )
        }

        /// POSTs an event with `extra` header lines (each ending in CRLF).
        pub fn post_with(port: u16, body: &str, token: &str, extra: &str) -> Answer {
            send(
                port,
                &format!(
                    "POST /process-event HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nUser-Agent: nsps-test\r\n{extra}\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            )
        }

        /// Sends `request` as it is (on a connection it closes) and reads the answer.
        pub fn send(port: u16, request: &str) -> Answer {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(request.as_bytes()).expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
            let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            Answer {
                status,
                head: head.to_ascii_lowercase(),
                body: body.to_string(),
            }
        }
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// A WTL stand-in that accepts every call, answering after `delay`.
async fn wtl_answering_after(delay: Duration) -> MockServer {
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

#[tokio::test(flavor = "multi_thread")]
async fn stdout_is_json_lines_carrying_trace_ids_and_no_secret() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let uri = wtl.uri();
    let app = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", &uri),
        ("WTL_API_TOKEN", WTL_SECRET),
    ]);
    let port = app.port;
    let answer = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let a = post_event(port, &fixture("sim-updated-open.json"), "trace-111", "req-222");
        let forged = post_event(
            port,
            &fixture("sim-deleted.json"),
            r#"x"}{"level":"CRITICAL","message":"forged"#,
            "req-333",
        );
        assert_eq!(forged.status, 202);
        (app, a)
    })
    .await
    .expect("thread");
    let (mut app, answer) = answer;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert!(answer.head.contains("x-b3-traceid: trace-111"));
    assert!(answer.head.contains("x-request-id: req-222"));
    app.terminate();
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0, "SIGTERM exits 0");

    let raw = app.raw_output();
    assert!(!raw.contains(SECRET_TOKEN), "the NSPS token never reaches a log line");
    assert!(!raw.contains(WTL_SECRET), "the WTL token never reaches a log line");
    let lines = app.json_lines();
    for l in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    let config = lines
        .iter()
        .find(|l| l["message"] == "effective configuration")
        .expect("config line");
    assert_eq!(config["config"]["WTL_API_TOKEN"], "***");
    assert_eq!(config["config"]["WTL_AUTH"], "bearer");

    let request_lines: Vec<&serde_json::Value> = lines.iter().filter(|l| l["request_id"] == "trace-111").collect();
    assert!(request_lines.len() >= 2, "WTL call and access lines: {request_lines:?}");
    for l in &request_lines {
        assert_eq!(l["unique_id"], "req-222");
    }
    let wtl_line = request_lines
        .iter()
        .find(|l| l["message"] == "WTL call succeeded")
        .expect("a WTL line");
    assert_eq!(wtl_line["imsi"], "001010000020349");
    assert_eq!(wtl_line["action"], "update");
    assert_eq!(wtl_line["wtl_status"], 200);
    assert!(wtl_line["latency_ms"].is_number());
    assert_eq!(wtl_line["event_type"], "SIM/Updated");
    assert_eq!(wtl_line["event_id"], "3e84c79f-ab6f-4546-8e27-0b6ab866f1fb");
    let access = request_lines
        .iter()
        .find(|l| l["message"] == "request completed")
        .expect("an access line");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["path"], "/process-event");
    assert_eq!(access["status"], 202);
    assert_eq!(access["outcome"], "processed");
    assert_eq!(access["event_id"], "3e84c79f-ab6f-4546-8e27-0b6ab866f1fb");
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").starts_with("drained"))
    );
}

#[test]
fn a_missing_setting_stops_start_up_with_one_line_naming_it() {
    let mut app = start(&[("WTL_API_URL", "http://127.0.0.1:9")]);
    let code = app.wait_exit(Duration::from_secs(20));
    assert_ne!(code, 0);
    let lines = app.json_lines();
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert!(lines[0]["message"].as_str().expect("text").contains("API_TOKEN"));
    let mut stderr = String::new();
    let _ = app.child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
    assert!(!stderr.contains("panicked"), "no panic trace: {stderr}");
}

#[test]
fn an_invalid_setting_names_the_variable_without_echoing_secrets() {
    let mut app = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", "http://127.0.0.1:9"),
        ("WTL_HTTP_REQUESTS_TIMEOUT", "soon"),
    ]);
    assert_ne!(app.wait_exit(Duration::from_secs(20)), 0);
    let lines = app.json_lines();
    assert_eq!(lines.len(), 1);
    let message = lines[0]["message"].as_str().expect("text");
    assert!(message.contains("WTL_HTTP_REQUESTS_TIMEOUT"), "{message}");
    assert!(!app.raw_output().contains(SECRET_TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_events_finish_and_idle_connections_do_not_hold_the_drain() {
    let wtl = wtl_answering_after(Duration::from_millis(3000)).await;
    let uri = wtl.uri();
    // A drain that had to wait for the idle connection would take the whole minute.
    let app = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", &uri),
        ("SHUTDOWN_TIMEOUT", "60"),
    ]);
    let port = app.port;
    let (mut app, answer, idle_closed) = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        // An idle keep-alive connection: one request answered, the socket left open.
        let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

        let in_flight = std::thread::spawn(move || post_event(port, &fixture("sim-created.json"), "t-1", "r-1"));
        std::thread::sleep(Duration::from_millis(1000));
        app.terminate();
        let answer = in_flight.join().expect("request thread");
        // The server closes the idle connection: a read returns end-of-stream.
        idle.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let idle_closed = matches!(idle.read(&mut buf), Ok(0));
        (app, answer, idle_closed)
    })
    .await
    .expect("thread");
    assert_eq!(answer.status, 202, "the in-flight event finished: {}", answer.body);
    assert!(idle_closed, "the idle keep-alive connection was closed");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let lines = app.json_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "shutdown signal received" && l["signal"] == "SIGTERM")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").starts_with("drained"))
    );
    assert_eq!(wtl.received_requests().await.expect("recorded").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_line_written_in_batches_is_out_when_sigterm_ends_the_process() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let uri = wtl.uri();
    let app = start(&[("API_TOKEN", SECRET_TOKEN), ("WTL_API_URL", &uri)]);
    let port = app.port;
    let mut app = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let senders: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..40 {
                        let body = format!(
                            r#"{{"event_id":"batch-{t}-{i}","data":{{"event_type":"SIM/Deleted"}},"pb_data":{{"sim_info":{{"imsi":"0010100000{t}{i:04}"}}}}}}"#
                        );
                        assert_eq!(post_event(port, &body, "t", "r").status, 202);
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().expect("sender");
        }
        // At once, while the last batch may still be waiting in the buffer.
        app.terminate();
        app
    })
    .await
    .expect("thread");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let lines = app.json_lines();
    let answered = lines
        .iter()
        .filter(|l| l["message"] == "request completed" && l["status"] == 202)
        .count();
    assert_eq!(answered, 8 * 40, "an access line for every event answered");
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").starts_with("drained")),
        "the last line too"
    );
}

/// Runs one event through a process started with `vars` at `LOG_LEVEL=DEBUG` and returns its
/// answer and every line it wrote.
async fn one_event_at_debug(vars: Vec<(&'static str, String)>) -> (mini_http::Answer, String) {
    let mut all: Vec<(&str, &str)> = vec![("API_TOKEN", SECRET_TOKEN), ("LOG_LEVEL", "DEBUG")];
    all.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let app = start(&all);
    let port = app.port;
    let (mut app, answer) = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let answer = post_event(port, &fixture("sim-deleted.json"), "t-1", "r-1");
        app.terminate();
        (app, answer)
    })
    .await
    .expect("thread");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let mut stderr = String::new();
    let _ = app.child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
    (answer, format!("{}\n{stderr}", app.raw_output()))
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_inside_urls_never_reach_an_answer_or_a_log_line() {
    const URL_SECRET: &str = "url-secret-pw-789";
    let closed = format!("127.0.0.1:{}", stands::free_port());
    let token_endpoint = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string(r#"{"error":"invalid_client"}"#))
        .mount(&token_endpoint)
        .await;
    let refusing = token_endpoint
        .uri()
        .replace("http://", &format!("http://cid:{URL_SECRET}@"));
    let cases: Vec<(u16, Vec<(&'static str, String)>)> = vec![
        // WTL unreachable, its URL carrying credentials.
        (
            503,
            vec![("WTL_API_URL", format!("http://hlr:{URL_SECRET}@{closed}/wtl"))],
        ),
        // Token endpoint unreachable.
        (
            503,
            vec![
                ("WTL_API_URL", format!("http://{closed}")),
                ("WTL_AUTH", "oauth2".into()),
                ("WTL_OAUTH_TOKEN_URL", format!("http://cid:{URL_SECRET}@{closed}/token")),
            ],
        ),
        // Token endpoint refusing.
        (
            500,
            vec![
                ("WTL_API_URL", format!("http://{closed}")),
                ("WTL_AUTH", "oauth2".into()),
                ("WTL_OAUTH_TOKEN_URL", format!("{refusing}/token")),
            ],
        ),
    ];
    for (status, vars) in cases {
        let (answer, output) = one_event_at_debug(vars.clone()).await;
        assert_eq!(answer.status, status, "{vars:?}: {}", answer.body);
        assert!(!answer.body.contains(URL_SECRET), "answer: {}", answer.body);
        assert!(!output.contains(URL_SECRET), "log: {output}");
        assert!(
            output.contains("effective configuration"),
            "the start-up line was written"
        );
    }
    // The refusing token endpoint was sent the URL's credentials as the client's.
    let sent = token_endpoint.received_requests().await.expect("recorded");
    assert_eq!(sent.len(), 1);
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("cid:{URL_SECRET}"))
    );
    assert_eq!(sent[0].headers["authorization"], basic.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_inside_the_wtl_url_are_sent_as_basic_credentials() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let url = wtl.uri().replace("http://", "http://hlr-user:hlr-pass-456@");
    let (answer, output) = one_event_at_debug(vec![("WTL_API_URL", url)]).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert!(!output.contains("hlr-pass-456"), "{output}");
    let sent = wtl.received_requests().await.expect("recorded");
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("hlr-user:hlr-pass-456")
    );
    assert_eq!(sent[0].headers["authorization"], basic.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_says_so_loudly_at_start_up_and_logs_each_planned_call() {
    let wtl = MockServer::start().await;
    let (answer, output) =
        one_event_at_debug(vec![("WTL_API_URL", wtl.uri()), ("WTL_DRY_RUN", "true".to_string())]).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert!(answer.body.contains(r#""dry_run":true"#), "{}", answer.body);
    assert!(output.contains("DRY RUN MODE"), "{output}");
    let planned = output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "dry run: WTL call planned, not made")
        .expect("a line per planned call");
    assert_eq!(planned["action"], "delete");
    assert_eq!(planned["imsi"], "001010000020350");
    assert_eq!(
        planned["body"],
        serde_json::json!({"imsi": "001010000020350", "action": "delete"})
    );
    assert!(wtl.received_requests().await.expect("recorded").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_cloud_run_every_line_of_a_traced_request_carries_the_trace_and_the_access_line_http_request() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let uri = wtl.uri();
    let app = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", &uri),
        ("GOOGLE_CLOUD_PROJECT", "nsps-prod"),
        ("LOG_LEVEL", "DEBUG"),
    ]);
    let port = app.port;
    let (mut app, answers) = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let w3c = mini_http::post_with(
            port,
            &fixture("sim-updated-open.json"),
            SECRET_TOKEN,
            "x-b3-traceid: w3c-1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
        );
        let google = mini_http::post_with(
            port,
            &fixture("sim-deleted.json"),
            SECRET_TOKEN,
            "x-b3-traceid: gcp-1\r\nX-Cloud-Trace-Context: 105445aa7843bc8bf206b12000100000/1;o=1\r\n",
        );
        let untraced = mini_http::post_with(
            port,
            &fixture("sim-created.json"),
            SECRET_TOKEN,
            "x-b3-traceid: none-1\r\n",
        );
        app.terminate();
        (app, [w3c.status, google.status, untraced.status])
    })
    .await
    .expect("thread");
    assert_eq!(answers, [202, 202, 202]);
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let lines = app.json_lines();
    for (request, trace) in [
        (
            "w3c-1",
            Some("projects/nsps-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736"),
        ),
        (
            "gcp-1",
            Some("projects/nsps-prod/traces/105445aa7843bc8bf206b12000100000"),
        ),
        ("none-1", None),
    ] {
        let of_request: Vec<&serde_json::Value> = lines.iter().filter(|l| l["request_id"] == request).collect();
        assert!(of_request.len() >= 2, "{request}: {of_request:?}");
        let first = of_request[0];
        let own_trace = first["logging.googleapis.com/trace"]
            .as_str()
            .expect("a trace name")
            .to_string();
        match trace {
            Some(trace) => assert_eq!(own_trace, trace),
            None => assert!(
                own_trace.starts_with("projects/nsps-prod/traces/")
                    && own_trace.len() == "projects/nsps-prod/traces/".len() + 32,
                "a request without a trace header gets one of its own: {own_trace}"
            ),
        }
        let span_id = first["logging.googleapis.com/spanId"]
            .as_str()
            .expect("a span id")
            .to_string();
        assert!(
            span_id.len() == 16 && span_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{span_id}"
        );
        for line in &of_request {
            assert_eq!(line["logging.googleapis.com/trace"], own_trace.as_str(), "{line}");
            assert_eq!(line["logging.googleapis.com/spanId"], span_id.as_str(), "{line}");
            assert_eq!(line["logging.googleapis.com/trace_sampled"], trace.is_some(), "{line}");
            let (seconds, nanos) = (line["timestampSeconds"].as_i64(), line["timestampNanos"].as_i64());
            assert!(
                seconds.is_some_and(|s| s > 1_700_000_000) && nanos.is_some_and(|n| n < 1_000_000_000),
                "{line}"
            );
        }
        let access = of_request
            .iter()
            .find(|l| l["message"] == "request completed")
            .expect("an access line");
        let http = &access["httpRequest"];
        assert_eq!(http["requestMethod"], "POST");
        assert_eq!(http["requestUrl"], "http://x/process-event", "the full URL");
        assert_eq!(http["protocol"], "HTTP/1.1");
        assert!(
            http["requestSize"]
                .as_str()
                .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 100)),
            "{http}"
        );
        assert!(
            http["responseSize"]
                .as_str()
                .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 10)),
            "{http}"
        );
        assert_eq!(http["status"], 202);
        assert_eq!(http["userAgent"], "nsps-test");
        assert_eq!(http["remoteIp"], "127.0.0.1");
        let latency = http["latency"].as_str().expect("text");
        assert!(
            latency.ends_with('s') && latency.trim_end_matches('s').parse::<f64>().is_ok(),
            "{latency}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_password_never_reaches_a_log_line_or_the_start_up_configuration() {
    let redis = stands::RedisServer::start(Some("redis-secret-pw-4242"));
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let (answer, output) = one_event_at_debug(vec![("WTL_API_URL", wtl.uri()), ("REDIS_URL", redis.url())]).await;
    assert_eq!(answer.status, 202, "{}\n{output}", answer.body);
    assert!(!output.contains("redis-secret-pw-4242"), "{output}");
    assert!(
        output.contains(&format!("redis://***@127.0.0.1:{}", redis.port)),
        "{output}"
    );
    // Redis down: the 503 and its log lines name no password either.
    drop(redis);
    let redis = stands::RedisServer::start(Some("redis-secret-pw-4242"));
    let url = redis.url();
    drop(redis);
    let (answer, output) = one_event_at_debug(vec![("WTL_API_URL", wtl.uri()), ("REDIS_URL", url)]).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        !answer.body.contains("redis-secret-pw-4242") && !output.contains("redis-secret-pw-4242"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_roots_stay_trusted_beside_wtl_ca_file() {
    use stands::{Ca, Files, LOCAL_NAMES, TlsWtl};
    // The system's roots are where the platform looks for them; SSL_CERT_FILE points that look
    // at a bundle this test made, standing in for a public CA.
    let files = Files::new();
    let (public, private) = (Ca::new("Public Root CA"), Ca::new("Operator Root CA"));
    let idp = TlsWtl::start(&public.server(LOCAL_NAMES), None, &[b"h2", b"http/1.1"]).await;
    let hlr = TlsWtl::start(&private.server(LOCAL_NAMES), None, &[b"h2", b"http/1.1"]).await;
    let system_bundle = files.write("system.pem", &public.pem);
    let (answer, output) = one_event_at_debug(vec![
        ("SSL_CERT_FILE", system_bundle),
        ("WTL_CA_FILE", files.write("operator.pem", &private.pem)),
        ("WTL_API_URL", hlr.url()),
        ("WTL_AUTH", "oauth2".into()),
        ("WTL_OAUTH_TOKEN_URL", format!("{}/oauth/token", idp.url())),
        ("WTL_OAUTH_CLIENT_ID", "connector".into()),
        ("WTL_OAUTH_CLIENT_SECRET", "client-secret".into()),
    ])
    .await;
    assert_eq!(answer.status, 202, "{}\n{output}", answer.body);
    assert_eq!(idp.paths(), vec!["/oauth/token"], "reached through the system's roots");
    assert_eq!(hlr.paths(), vec!["/prov"], "reached through WTL_CA_FILE");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_still_running_at_shutdown_timeout_are_answered_503_never_2xx() {
    let wtl = wtl_answering_after(Duration::from_secs(6)).await;
    let uri = wtl.uri();
    let app = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", &uri),
        ("SHUTDOWN_TIMEOUT", "1"),
    ]);
    let port = app.port;
    let (mut app, answers) = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let senders: Vec<_> = (0..3)
            .map(|i| {
                std::thread::spawn(move || {
                    let body = format!(
                        r#"{{"event_id":"cut-{i}","data":{{"event_type":"SIM/Deleted"}},"pb_data":{{"sim_info":{{"imsi":"00101000009900{i}"}}}}}}"#
                    );
                    post_event(port, &body, "t", "r")
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        app.terminate();
        let answers: Vec<_> = senders.into_iter().map(|t| t.join().expect("sender")).collect();
        (app, answers)
    })
    .await
    .expect("thread");
    for answer in &answers {
        assert_eq!(answer.status, 503, "cut off, answered, not dropped: {}", answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON error body");
        assert_eq!(body["message"], "The connector is shutting down");
        assert!(answer.head.contains("retry-after:"), "{}", answer.head);
    }
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    assert_eq!(wtl.received_requests().await.expect("recorded").len(), 3);
    let lines = app.json_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").contains("answered 503")),
        "the drain says what happened"
    );
    let cut_off_access_lines = lines
        .iter()
        .filter(|l| l["message"] == "request completed" && l["outcome"] == "cut_off" && l["status"] == 503)
        .count();
    assert_eq!(
        cut_off_access_lines, 3,
        "each cut-off answer's access line names its outcome"
    );
}

#[test]
fn the_command_line_has_help_version_and_refuses_unknown_commands() {
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_clear()
            .output()
            .expect("the binary runs")
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["serve", "demo", "simulator", "healthcheck", "openapi"] {
        assert!(text.contains(command), "{command} in --help: {text}");
    }
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let unknown = run(&["frobnicate"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("frobnicate"));
    let openapi = run(&["openapi"]);
    assert!(openapi.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&openapi.stdout).expect("JSON");
    assert!(doc["openapi"].is_string());
}

#[test]
fn healthcheck_subcommand_reports_health() {
    let mut app = start(&[("API_TOKEN", SECRET_TOKEN), ("WTL_API_URL", "http://127.0.0.1:9")]);
    app.wait_ready();
    let ok = Command::new(BIN)
        .arg("healthcheck")
        .env("PORT", app.port.to_string())
        .status()
        .expect("runs");
    assert!(ok.success());
    app.terminate();
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let down = Command::new(BIN)
        .arg("healthcheck")
        .env("PORT", app.port.to_string())
        .stderr(Stdio::null())
        .status()
        .expect("runs");
    assert!(!down.success(), "nothing listens any more");
}

#[test]
fn demo_serves_events_into_the_embedded_simulator() {
    // SIMULATOR_PORT is honoured (and keeps the simulator off the port picked for the connector).
    let sim_port = stands::free_port().to_string();
    let mut app = start_with_args(&["demo"], &[("API_TOKEN", SECRET_TOKEN), ("SIMULATOR_PORT", &sim_port)]);
    app.wait_ready();
    let created = post_event(app.port, nsps_wtl_connector::SAMPLE_CREATED, "t-1", "r-1");
    assert_eq!(created.status, 202, "{}", created.body);
    assert!(created.body.contains(r#""action":"insert""#), "{}", created.body);
    let updated = post_event(app.port, nsps_wtl_connector::SAMPLE_UPDATED, "t-2", "r-2");
    assert_eq!(updated.status, 202, "{}", updated.body);
    app.terminate();
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let lines = app.json_lines();
    let sim = lines
        .iter()
        .find(|l| l["message"] == "WTL simulator listening")
        .and_then(|l| l["address"].as_str())
        .expect("the simulator's address is logged");
    assert_eq!(
        sim,
        format!("127.0.0.1:{sim_port}"),
        "the simulator listens on SIMULATOR_PORT"
    );
    let mut stderr = String::new();
    let _ = app.child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
    assert!(
        stderr.contains("curl -sS -X POST"),
        "the banner shows a ready-to-paste curl: {stderr}"
    );
    assert!(stderr.contains(SECRET_TOKEN), "the banner shows the token to use");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "WTL call succeeded" && l["action"] == "update")
    );
}

#[test]
fn log_level_and_format_are_honoured() {
    let mut quiet = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", "http://127.0.0.1:9"),
        ("LOG_LEVEL", "warning"),
    ]);
    quiet.wait_ready();
    quiet.terminate();
    assert_eq!(quiet.wait_exit(Duration::from_secs(20)), 0);
    let lines = quiet.json_lines();
    assert!(
        lines.iter().all(|l| l["level"] != "INFO"),
        "LOG_LEVEL=warning hides INFO: {lines:?}"
    );

    let mut text = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", "http://127.0.0.1:9"),
        ("LOG_FORMAT", "text"),
    ]);
    text.wait_ready();
    // WTL is unreachable: the event is answered 503, and its lines still name the request.
    let answer = post_event(text.port, &fixture("sim-updated-open.json"), "trace-text", "req-text");
    assert_eq!(answer.status, 503, "{}", answer.body);
    text.terminate();
    assert_eq!(text.wait_exit(Duration::from_secs(20)), 0);
    let raw = text.raw_output();
    assert!(raw.contains("INFO") && raw.contains("connector listening"), "{raw}");
    let access = raw
        .lines()
        .find(|l| l.contains("request completed") && l.contains("/process-event"))
        .unwrap_or_else(|| panic!("an access line: {raw}"));
    for part in [
        "trace-text",
        "req-text",
        "3e84c79f-ab6f-4546-8e27-0b6ab866f1fb",
        "failed",
        "status=503",
    ] {
        assert!(access.contains(part), "{part} in {access}");
    }
    assert!(
        serde_json::from_str::<serde_json::Value>(raw.lines().next().unwrap_or("")).is_err(),
        "text, not JSON"
    );
    assert!(!raw.contains(SECRET_TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_proxy_the_access_line_names_the_client_and_debug_shows_the_raw_header() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let uri = wtl.uri();
    let app = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", &uri),
        ("TRUSTED_PROXIES", "1"),
        ("ALLOWED_SOURCE_RANGES", "203.0.113.7"),
        ("LOG_LEVEL", "DEBUG"),
    ]);
    let port = app.port;
    let (mut app, answers) = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let proxied = mini_http::post_with(
            port,
            &fixture("sim-deleted.json"),
            SECRET_TOKEN,
            "x-b3-traceid: via-proxy\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n",
        );
        let forged = mini_http::post_with(
            port,
            &fixture("sim-deleted.json"),
            SECRET_TOKEN,
            "x-b3-traceid: forged\r\nX-Forwarded-For: 203.0.113.7, 198.51.100.9\r\n",
        );
        app.terminate();
        (app, [proxied.status, forged.status])
    })
    .await
    .expect("thread");
    assert_eq!(answers, [202, 403]);
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let lines = app.json_lines();
    let of = |request: &str, message: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == request && l["message"] == message)
            .cloned()
            .unwrap_or_else(|| panic!("no {message:?} line for {request}"))
    };
    assert_eq!(
        of("via-proxy", "request completed")["httpRequest"]["remoteIp"],
        "203.0.113.7"
    );
    let debug = of("via-proxy", "client address");
    assert_eq!(debug["level"], "DEBUG");
    assert_eq!(debug["x_forwarded_for"], "198.51.100.1, 203.0.113.7");
    assert_eq!(debug["peer"], "127.0.0.1");
    assert_eq!(debug["trusted_proxies"], 1);
    assert_eq!(debug["client_address"], "203.0.113.7");
    let refused = of(
        "forged",
        "request refused: source address not allowed (ALLOWED_SOURCE_RANGES)",
    );
    assert_eq!(refused["level"], "WARNING");
    assert_eq!(refused["client_address"], "198.51.100.9");
    assert_eq!(of("forged", "request completed")["httpRequest"]["status"], 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotations_are_logged_by_variable_once_per_change_and_never_with_the_value() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let uri = wtl.uri();
    let files = stands::Files::new();
    let token_file = files.write("api-token", "rotating-secret-one");
    let wtl_file = files.write("wtl-token", "rotating-wtl-secret-one");
    let app = start(&[
        ("API_TOKEN_FILE", &token_file),
        ("WTL_API_TOKEN_FILE", &wtl_file),
        ("WTL_API_URL", &uri),
    ]);
    let port = app.port;
    let token_path = std::path::PathBuf::from(&token_file);
    let wtl_path = std::path::PathBuf::from(&wtl_file);
    let (mut app, answers) = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let before = mini_http::post(port, &fixture("sim-deleted.json"), "rotating-secret-one", "t-1", "r-1").status;
        std::fs::write(&token_path, "rotating-secret-two\n").expect("rotate");
        std::fs::write(&wtl_path, "rotating-wtl-secret-two").expect("rotate");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = 0;
        while Instant::now() < deadline && after != 202 {
            std::thread::sleep(Duration::from_millis(200));
            after = mini_http::post(port, &fixture("sim-created.json"), "rotating-secret-two", "t-2", "r-2").status;
        }
        // Broken: stays broken over several looks, logged once.
        std::fs::write(&token_path, "").expect("break");
        std::thread::sleep(nsps_wtl_connector::ROTATION_POLL * 6);
        let still = mini_http::post(
            port,
            &fixture("sim-updated-open.json"),
            "rotating-secret-two",
            "t-3",
            "r-3",
        )
        .status;
        app.terminate();
        (app, [before, after, still])
    })
    .await
    .expect("thread");
    assert_eq!(answers, [202, 202, 202]);
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let mut stderr = String::new();
    let _ = app.child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
    let output = format!("{}\n{stderr}", app.raw_output());
    for secret in ["rotating-secret", "rotating-wtl-secret"] {
        assert!(!output.contains(secret), "{secret} reached the output");
    }
    let lines = app.json_lines();
    let rotated: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "rotated: the new value is in use")
        .filter_map(|l| l["variable"].as_str())
        .collect();
    assert!(
        rotated.contains(&"API_TOKEN_FILE") && rotated.contains(&"WTL_API_TOKEN_FILE"),
        "{rotated:?}"
    );
    let refused: Vec<&serde_json::Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(refused.len(), 1, "one ERROR for one broken change: {refused:?}");
    assert_eq!(refused[0]["variable"], "API_TOKEN_FILE");
    let sent: Vec<String> = wtl
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(sent.first().map(String::as_str), Some("Bearer rotating-wtl-secret-one"));
    assert_eq!(sent.last().map(String::as_str), Some("Bearer rotating-wtl-secret-two"));
}

/// What an OTLP/HTTP receiver got: every span of every export, with its resource's attributes.
mod otlp {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;

    pub struct Span {
        pub name: String,
        pub kind: i32,
        pub trace_id: String,
        pub span_id: String,
        pub parent_span_id: String,
        pub attributes: Vec<(String, String)>,
        pub resource: Vec<(String, String)>,
        /// From its start to its end.
        pub took: std::time::Duration,
        /// The status code: 0 unset, 1 ok, 2 error.
        pub status: i32,
    }

    impl Span {
        pub fn attribute(&self, key: &str) -> Option<&str> {
            self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
        }
    }

    /// An OTLP/HTTP receiver that takes every trace export.
    pub async fn receiver() -> wiremock::MockServer {
        let receiver = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/v1/traces"))
            .respond_with(wiremock::ResponseTemplate::new(200).insert_header("content-type", "application/x-protobuf"))
            .mount(&receiver)
            .await;
        receiver
    }

    /// Every span the receiver was sent.
    pub async fn received(receiver: &wiremock::MockServer) -> Vec<Span> {
        let exports = receiver.received_requests().await.unwrap_or_default();
        let bodies: Vec<Vec<u8>> = exports.iter().map(|r| r.body.clone()).collect();
        spans(&bodies)
    }

    fn text(attributes: &[KeyValue]) -> Vec<(String, String)> {
        attributes
            .iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    Some(Value::IntValue(i)) => i.to_string(),
                    Some(Value::BoolValue(b)) => b.to_string(),
                    Some(Value::DoubleValue(d)) => d.to_string(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect()
    }

    /// Decodes every request body as an `ExportTraceServiceRequest` (protobuf).
    pub fn spans(bodies: &[Vec<u8>]) -> Vec<Span> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut out = Vec::new();
        for body in bodies {
            let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP trace export");
            for resource_spans in request.resource_spans {
                let resource = resource_spans.resource.map(|r| text(&r.attributes)).unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        out.push(Span {
                            name: span.name.clone(),
                            kind: span.kind,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            attributes: text(&span.attributes),
                            resource: resource.clone(),
                            took: std::time::Duration::from_nanos(
                                span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano),
                            ),
                            status: span.status.as_ref().map_or(0, |s| s.code),
                        });
                    }
                }
            }
        }
        out
    }
}

/// A WTL stand-in answering after `wtl_delay`, an OTLP receiver, and the connector calling the
/// one and exporting spans to the other, with `extra` settings.
async fn exporting_connector(wtl_delay: Duration, extra: &[(&str, &str)]) -> (MockServer, MockServer, Running) {
    let wtl = wtl_answering_after(wtl_delay).await;
    let collector = otlp::receiver().await;
    let (wtl_uri, collector_uri) = (wtl.uri(), collector.uri());
    let mut vars = vec![
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", wtl_uri.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector_uri.as_str()),
    ];
    vars.extend_from_slice(extra);
    let app = start(&vars);
    (wtl, collector, app)
}

/// The `traceparent` header of the first call WTL received.
async fn first_traceparent(wtl: &MockServer) -> String {
    let sent = wtl.received_requests().await.unwrap_or_default();
    sent.first()
        .and_then(|call| call.headers.get("traceparent"))
        .and_then(|v| v.to_str().ok())
        .expect("a call with a traceparent")
        .to_string()
}

/// Sends one event (with `headers`, each line ending in CRLF), then stops the connector and
/// waits for it to exit 0 (its spans flushed); returns it and the event's status.
async fn one_event_then_stop(app: Running, headers: &'static str) -> (Running, u16) {
    then_stop(app, move |port| {
        mini_http::post_with(port, &fixture("sim-deleted.json"), SECRET_TOKEN, headers).status
    })
    .await
}

/// Once the connector is ready, runs `exchange` with its port; then stops it and waits for it
/// to exit 0 (its spans flushed); returns it and what `exchange` returned.
async fn then_stop<T: Send + 'static>(app: Running, exchange: impl FnOnce(u16) -> T + Send + 'static) -> (Running, T) {
    let port = app.port;
    let (mut app, out) = tokio::task::spawn_blocking(move || {
        app.wait_ready();
        let out = exchange(port);
        app.terminate();
        (app, out)
    })
    .await
    .expect("thread");
    assert_eq!(
        app.wait_exit(Duration::from_secs(20)),
        0,
        "spans are flushed at shutdown"
    );
    (app, out)
}

/// The span named `name`.
fn span_named<'a>(spans: &'a [otlp::Span], name: &str) -> &'a otlp::Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no {name} span in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_otlp_receiver_with_the_incoming_trace_as_parent() {
    let (wtl, collector, app) = exporting_connector(
        Duration::ZERO,
        &[
            ("WTL_API_TOKEN", WTL_SECRET),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=otel-secret-key"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("GOOGLE_CLOUD_PROJECT", "otel-project"),
        ],
    )
    .await;
    let wtl_uri = wtl.uri();
    let (app, status) = one_event_then_stop(
        app,
        "x-b3-traceid: otel-1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    )
    .await;
    assert_eq!(status, 202);
    let exports = collector.received_requests().await.unwrap_or_default();
    assert!(!exports.is_empty(), "the receiver got an export");
    assert!(
        exports
            .iter()
            .all(|r| r.headers.get("x-collector-key").is_some_and(|v| v == "otel-secret-key")),
        "OTEL_EXPORTER_OTLP_HEADERS are sent"
    );
    let spans = otlp::received(&collector).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let server = span_named(&spans, "POST /process-event");
    assert_eq!(server.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(server.trace_id, trace);
    assert_eq!(
        server.parent_span_id, "00f067aa0ba902b7",
        "the caller's span is the parent"
    );
    assert_eq!(server.attribute("http.request.method"), Some("POST"));
    assert_eq!(server.attribute("http.route"), Some("/process-event"));
    assert_eq!(
        (server.status, server.attribute("error.type")),
        (0, None),
        "a 202 is no error"
    );
    assert_eq!(
        server.attribute("request_id"),
        Some("otel-1"),
        "leads from the logs to the trace"
    );
    assert_eq!(server.attribute("http.response.status_code"), Some("202"));
    assert_eq!(server.attribute("event_type"), Some("SIM/Deleted"));
    assert_eq!(server.attribute("outcome"), Some("processed"));
    assert!(server.attribute("event_id").is_some());
    assert!(
        server
            .resource
            .contains(&("service.name".into(), "nsps-wtl-connector".into()))
    );
    assert!(
        server
            .resource
            .contains(&("deployment.environment".into(), "test".into()))
    );

    let call = spans
        .iter()
        .find(|s| s.name == "POST /prov")
        .expect("a WTL attempt span");
    assert_eq!(call.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(
        (call.trace_id.as_str(), call.parent_span_id.as_str()),
        (trace, server.span_id.as_str())
    );
    assert_eq!(call.attribute("url.full"), Some(format!("{wtl_uri}/prov").as_str()));
    let wtl_address = wtl.address();
    assert_eq!(
        call.attribute("server.address"),
        Some(wtl_address.ip().to_string().as_str())
    );
    assert_eq!(
        call.attribute("server.port"),
        Some(wtl_address.port().to_string().as_str())
    );
    assert_eq!(call.attribute("http.request.method"), Some("POST"));
    assert_eq!(call.attribute("http.response.status_code"), Some("200"));
    assert_eq!(call.attribute("http.request.resend_count"), Some("0"));
    let store = spans
        .iter()
        .find(|s| s.name == "admit")
        .expect("a redelivery store span");
    assert_eq!(store.parent_span_id, server.span_id);
    assert_eq!(store.attribute("db.system.name"), Some("in-process"));
    assert!(
        !spans.iter().any(|s| s.name.starts_with("record ")),
        "the in-process memory records an outcome without a span"
    );

    let traceparent = first_traceparent(&wtl).await;
    assert_eq!(
        traceparent,
        format!("00-{trace}-{}-01", call.span_id),
        "WTL continues from the attempt's span"
    );

    for span in &spans {
        for (key, value) in span.attributes.iter().chain(&span.resource) {
            for secret in [SECRET_TOKEN, WTL_SECRET, "otel-secret-key"] {
                assert!(!value.contains(secret), "{secret} in {}.{key}", span.name);
            }
        }
    }
    let access = app.event_access_line();
    assert_eq!(access["request_id"], "otel-1");
    assert!(
        access.get("otel.kind").is_none() && access.get("http.route").is_none(),
        "no span attribute in the logs"
    );
    assert_eq!(
        access["logging.googleapis.com/trace"],
        format!("projects/otel-project/traces/{trace}")
    );
    assert_eq!(
        access["logging.googleapis.com/spanId"], server.span_id,
        "the logs name the exported server span"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_fetch_is_a_span_of_the_attempt_it_is_made_for_without_the_credentials() {
    const CLIENT_SECRET: &str = "client-secret-in-url-357";
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "tok-1", "expires_in": 3600, "token_type": "Bearer"}),
            ),
        )
        .mount(&idp)
        .await;
    let token_url = format!("http://cid:{CLIENT_SECRET}@{}/token", idp.address());
    let (_wtl, collector, app) = exporting_connector(
        Duration::ZERO,
        &[("WTL_AUTH", "oauth2"), ("WTL_OAUTH_TOKEN_URL", &token_url)],
    )
    .await;
    let (_app, status) = one_event_then_stop(app, "").await;
    assert_eq!(status, 202);
    let spans = otlp::received(&collector).await;
    let named = |name| span_named(&spans, name);
    let (server, attempt, token) = (named("POST /process-event"), named("POST /prov"), named("POST token"));
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(
        token.parent_span_id, attempt.span_id,
        "the token was fetched for the attempt"
    );
    assert_eq!(token.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(token.attribute("http.response.status_code"), Some("200"));
    assert_eq!(
        token.attribute("url.full"),
        Some(format!("http://{}/token", idp.address()).as_str()),
        "the URL without its credentials"
    );
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains(CLIENT_SECRET),
                "the client secret in {}.{key}",
                span.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_did_not_sample_its_trace_gets_no_spans_and_wtl_is_told_so() {
    let (wtl, collector, app) = exporting_connector(Duration::ZERO, &[("GOOGLE_CLOUD_PROJECT", "otel-project")]).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (app, status) = one_event_then_stop(
        app,
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n",
    )
    .await;
    assert_eq!(status, 202);
    let spans = otlp::received(&collector).await;
    assert!(
        spans.iter().any(|s| s.name == "GET /health"),
        "the readiness checks' own traces are exported"
    );
    assert!(
        !spans.iter().any(|s| s.trace_id == trace),
        "the default sampler follows the caller's decision: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let traceparent = first_traceparent(&wtl).await;
    assert!(
        traceparent.starts_with(&format!("00-{trace}-")) && traceparent.ends_with("-00"),
        "WTL continues the trace, unsampled: {traceparent}"
    );
    let access = app.event_access_line();
    assert_eq!(
        access["logging.googleapis.com/trace"],
        format!("projects/otel-project/traces/{trace}")
    );
    assert_eq!(access["logging.googleapis.com/trace_sampled"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spans_of_a_request_whose_caller_hung_up_end_there_and_are_exported() {
    let (_wtl, collector, app) = exporting_connector(Duration::from_secs(30), &[]).await;
    let port = app.port;
    let mut app = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        app.wait_ready();
        let body = fixture("sim-deleted.json");
        let mut caller = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let request = format!(
            "POST /process-event HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        caller.write_all(request.as_bytes()).expect("write");
        // The WTL call is under way (it answers after 30 s) when the caller goes.
        std::thread::sleep(Duration::from_millis(500));
        drop(caller);
        std::thread::sleep(Duration::from_millis(300));
        app.terminate();
        app
    })
    .await
    .expect("thread");
    assert_eq!(
        app.wait_exit(Duration::from_secs(20)),
        0,
        "spans are flushed at shutdown"
    );
    let spans = otlp::received(&collector).await;
    let server = spans
        .iter()
        .find(|s| s.name == "POST /process-event")
        .expect("the request's server span");
    let call = spans
        .iter()
        .find(|s| s.name == "POST /prov")
        .expect("the WTL attempt's span");
    assert_eq!(call.parent_span_id, server.span_id);
    for span in [server, call] {
        assert_eq!(
            span.attribute("http.response.status_code"),
            None,
            "{} ended without an answer",
            span.name
        );
        assert!(
            span.took < Duration::from_secs(5),
            "{} ended when the caller hung up, not when WTL or shutdown would have ended it ({:?})",
            span.name,
            span.took
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_names_its_trace_keeps_it_with_export_on_even_without_naming_its_span() {
    let trace = "105445aa7843bc8bf206b12000100000";
    // (headers, the server span's parent): Google's header with and without the caller's span
    // (a decimal id), and B3's trace id alone, as NSPS may send it.
    let cases: [(&'static str, &str); 3] = [
        ("x-cloud-trace-context: 105445aa7843bc8bf206b12000100000;o=1\r\n", ""),
        (
            "x-cloud-trace-context: 105445aa7843bc8bf206b12000100000/12345;o=1\r\n",
            "0000000000003039",
        ),
        ("x-b3-traceid: 105445aa7843bc8bf206b12000100000\r\n", ""),
    ];
    for (headers, parent) in cases {
        let (wtl, collector, app) =
            exporting_connector(Duration::ZERO, &[("GOOGLE_CLOUD_PROJECT", "otel-project")]).await;
        let (app, status) = one_event_then_stop(app, headers).await;
        assert_eq!(status, 202, "{headers}");
        let spans = otlp::received(&collector).await;
        let server = span_named(&spans, "POST /process-event");
        assert_eq!(
            (server.trace_id.as_str(), server.parent_span_id.as_str()),
            (trace, parent),
            "{headers}: the caller's trace"
        );
        let attempt = span_named(&spans, "POST /prov");
        assert_eq!(attempt.trace_id, trace, "{headers}");
        assert_eq!(
            first_traceparent(&wtl).await,
            format!("00-{trace}-{}-01", attempt.span_id),
            "{headers}: WTL continues the caller's trace"
        );
        let access = app.event_access_line();
        assert_eq!(
            access["logging.googleapis.com/trace"],
            format!("projects/otel-project/traces/{trace}"),
            "{headers}"
        );
        assert_eq!(access["logging.googleapis.com/spanId"], server.span_id, "{headers}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_spans_of_odd_methods_and_unknown_paths_have_bounded_names() {
    let (_wtl, collector, app) = exporting_connector(Duration::ZERO, &[]).await;
    let (_app, statuses) = then_stop(app, |port| {
        let odd = mini_http::send(port, "PURGE /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let unknown = mini_http::send(
            port,
            "GET /no/such/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        (odd.status, unknown.status)
    })
    .await;
    assert_eq!(statuses, (405, 404));
    let spans = otlp::received(&collector).await;
    let odd = span_named(&spans, "HTTP /health");
    assert_eq!(odd.attribute("http.request.method"), Some("_OTHER"));
    assert_eq!(odd.attribute("http.request.method_original"), Some("PURGE"));
    assert_eq!(odd.attribute("http.response.status_code"), Some("405"));
    assert_eq!(
        (odd.status, odd.attribute("error.type")),
        (0, None),
        "a 4xx is the caller's error, not the server span's"
    );
    let unknown = span_named(&spans, "GET /*");
    assert_eq!(unknown.attribute("http.route"), Some("/*"));
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_store_visits_are_client_spans_and_an_unreachable_store_marks_them_and_the_request_failed() {
    let redis = stands::RedisServer::start(None);
    let url = redis.url();
    let (_wtl, collector, app) = exporting_connector(Duration::ZERO, &[("REDIS_URL", &url)]).await;
    let (_app, status) = one_event_then_stop(app, "").await;
    assert_eq!(status, 202);
    let spans = otlp::received(&collector).await;
    let server = span_named(&spans, "POST /process-event");
    for name in ["admit", "record success"] {
        let store = span_named(&spans, name);
        assert_eq!(store.parent_span_id, server.span_id, "{name}");
        assert_eq!(store.kind, 3, "{name}: SPAN_KIND_CLIENT");
        assert_eq!(store.attribute("db.system.name"), Some("redis"), "{name}");
        assert_eq!(store.status, 0, "{name}: no error");
    }

    drop(redis);
    let (wtl, collector, app) = exporting_connector(Duration::ZERO, &[("REDIS_URL", &url)]).await;
    let (_app, status) = one_event_then_stop(app, "").await;
    assert_eq!(status, 503);
    let spans = otlp::received(&collector).await;
    let server = span_named(&spans, "POST /process-event");
    assert_eq!(server.status, 2, "STATUS_CODE_ERROR");
    assert_eq!(server.attribute("error.type"), Some("503"));
    let admit = span_named(&spans, "admit");
    assert_eq!(
        (admit.status, admit.attribute("error.type")),
        (2, Some("store_unavailable"))
    );
    assert!(
        wtl.received_requests().await.unwrap_or_default().is_empty(),
        "no WTL call without the store"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_or_hangs_costs_events_nothing() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    // One address that refuses (with credentials in the URL, which no line may show), one that
    // accepts and never answers.
    let refusing = format!("http://otel-user:otel-url-password@127.0.0.1:{}", stands::free_port());
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hanging_url = format!("http://{}", hanging.local_addr().expect("addr"));
    for collector in [refusing, hanging_url] {
        let uri = wtl.uri();
        let app = start(&[
            ("API_TOKEN", SECRET_TOKEN),
            ("WTL_API_URL", &uri),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
        ]);
        let port = app.port;
        let warned = |app: &Running| {
            app.lines.lock().expect("lock").iter().any(|l| {
                l.contains("\"level\":\"WARNING\"")
                    && l.contains("spans could not be exported to the OpenTelemetry collector")
            })
        };
        let (mut app, answers, warning) = tokio::task::spawn_blocking(move || {
            app.wait_ready();
            let mut answers = Vec::new();
            for i in 0..20 {
                let started = Instant::now();
                let mut event: serde_json::Value = serde_json::from_str(&fixture("sim-deleted.json")).expect("json");
                event["event_id"] = format!("down-{i}").into();
                let status = post_event(port, &event.to_string(), "t", "r").status;
                answers.push((status, started.elapsed()));
            }
            // The batch is exported every few seconds; a hanging collector fails after 5 s.
            let deadline = Instant::now() + Duration::from_secs(25);
            while !warned(&app) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            let warning = warned(&app);
            app.terminate();
            (app, answers, warning)
        })
        .await
        .expect("thread");
        assert_eq!(
            app.wait_exit(Duration::from_secs(20)),
            0,
            "{collector}: shutdown is bounded"
        );
        for (status, took) in &answers {
            assert_eq!(*status, 202, "{collector}");
            assert!(*took < Duration::from_secs(2), "{collector}: an event waited {took:?}");
        }
        assert!(warning, "{collector}: a WARNING says the spans are dropped");
        let output = app.raw_output();
        assert!(
            !output.contains("otel-url-password") && !output.contains("otel-user"),
            "the endpoint's credentials are never shown: {output}"
        );
    }
    drop(hanging);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_cloud_run_the_project_comes_from_the_metadata_server_without_delaying_start_up() {
    let wtl = wtl_answering_after(Duration::ZERO).await;
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/computeMetadata/v1/project/project-id"))
        .and(wiremock::matchers::header("Metadata-Flavor", "Google"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("nsps-from-metadata")
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&metadata)
        .await;
    let (uri, host) = (wtl.uri(), metadata.address().to_string());
    let app = start(&[
        ("API_TOKEN", SECRET_TOKEN),
        ("WTL_API_URL", &uri),
        ("K_SERVICE", "nsps-wtl-connector"),
        ("GCE_METADATA_HOST", &host),
    ]);
    let port = app.port;
    let (mut app, statuses) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        app.wait_ready();
        let ready_after = started.elapsed();
        // Once the (slow) metadata server has answered, lines name the project.
        std::thread::sleep(Duration::from_millis(800));
        let traced = mini_http::post_with(
            port,
            &fixture("sim-deleted.json"),
            SECRET_TOKEN,
            "x-b3-traceid: md-1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
        );
        app.terminate();
        (app, (traced.status, ready_after))
    })
    .await
    .expect("thread");
    assert_eq!(statuses.0, 202);
    assert!(statuses.1 < Duration::from_secs(5));
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let asked = metadata.received_requests().await.unwrap_or_default();
    assert_eq!(asked.len(), 1, "asked once");
    let access = app.event_access_line();
    assert_eq!(access["request_id"], "md-1");
    assert_eq!(
        access["logging.googleapis.com/trace"],
        "projects/nsps-from-metadata/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

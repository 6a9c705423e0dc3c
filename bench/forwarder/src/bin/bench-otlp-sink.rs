//! The benchmarks' OTLP/HTTP receiver: answers every export 200 and counts the spans it was
//! sent, writing the running count to the file given, so that a span processor that drops spans
//! under load shows in the report.
//!
//!     bench-otlp-sink PORT COUNT_FILE
//!
//! It runs on the two cores the exporting connector is measured on, so it is kept cheap: one
//! thread, and prost decodes each export only down to its spans, whose own bytes it leaves
//! undecoded (protobuf skips the fields a reader's schema does not name).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::TcpListener;

/// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`, down to its spans.
#[derive(Clone, PartialEq, Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

/// `opentelemetry.proto.trace.v1.ResourceSpans`: its `scope_spans` only.
#[derive(Clone, PartialEq, Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

/// `opentelemetry.proto.trace.v1.ScopeSpans`: its `spans`, each left as its encoded bytes.
#[derive(Clone, PartialEq, Message)]
struct ScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
}

fn spans_in(body: Bytes) -> Result<u64, prost::DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    Ok(request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(count_file)) = (args.next(), args.next()) else {
        return Err("usage: bench-otlp-sink PORT COUNT_FILE".into());
    };
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    let received = Arc::new(AtomicU64::new(0));
    let count_file = Arc::new(count_file);
    loop {
        // A failed accept (a connection reset before it was taken, no descriptor free) loses
        // that connection only; the exporter's retry comes back on another.
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("bench-otlp-sink: accept failed: {e}");
                continue;
            }
        };
        let (received, count_file) = (received.clone(), count_file.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (received, count_file) = (received.clone(), count_file.clone());
                async move {
                    let body = req.into_body().collect().await.map(|b| b.to_bytes());
                    // A body that could not be read or decoded is refused: never counted as none.
                    let status = match body.map(spans_in) {
                        Ok(Ok(spans)) => {
                            let total = received.fetch_add(spans, Ordering::Relaxed) + spans;
                            // One thread: the writes come in order, the last is the total.
                            let _ = std::fs::write(count_file.as_str(), total.to_string());
                            StatusCode::OK
                        }
                        Ok(Err(_)) | Err(_) => StatusCode::BAD_REQUEST,
                    };
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = status;
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/x-protobuf"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

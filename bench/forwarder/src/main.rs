//! The benchmark's baseline: receives a POST, forwards its body unchanged to the upstream's
//! `/prov` and answers 202 with the upstream's body. No parsing, no auth, no logging: the cost
//! of one HTTP hop in and one out, which the connector is compared against.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8100".into());
    let upstream: hyper::Uri = std::env::var("UPSTREAM")
        .unwrap_or_else(|_| "http://127.0.0.1:9000/prov".into())
        .parse()?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let upstream = upstream.clone();
                async move {
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let out = Request::post(upstream)
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap_or_default();
                    let answer = match client.request(out).await {
                        Ok(resp) => resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default(),
                        Err(_) => Bytes::from_static(b"{}"),
                    };
                    let mut resp = Response::new(Full::new(answer));
                    *resp.status_mut() = StatusCode::ACCEPTED;
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

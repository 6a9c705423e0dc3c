//! One `POST /prov`: the request with its headers, and the answer read within the attempt's
//! limit. The retries, the credentials and the rate limit around it are the client's
//! (`wtl/mod.rs`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use tokio::time::Instant;

use super::{WtlError, net, outcome};
use crate::telemetry::{TRACEPARENT, TraceIds, X_B3_TRACEID, X_REQUEST_ID};

/// Longest WTL answer body read; anything beyond is not needed to classify it.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends `POST /prov` and reads the answer (at most [`MAX_ANSWER_BYTES`] of its body), all
/// within `limit` (the request's own timeout, which covers reading the body too).
pub(super) async fn post(
    http: &reqwest::Client,
    url: &reqwest::Url,
    auth: Option<HeaderValue>,
    body: Bytes,
    ids: &TraceIds,
    traceparent: &str,
    limit: Duration,
) -> Result<Answer, WtlError> {
    let mut request = http
        .post(url.clone())
        .timeout(limit)
        .header(http::header::CONTENT_TYPE, HeaderValue::from_static(JSON))
        .header(http::header::ACCEPT, HeaderValue::from_static(JSON))
        .header(&X_B3_TRACEID, ids.request_id.as_str())
        .header(&X_REQUEST_ID, ids.unique_id.as_str())
        .body(body);
    if let Some(auth) = auth {
        request = request.header(http::header::AUTHORIZATION, auth);
    }
    request = request.header(&TRACEPARENT, traceparent);
    let started = Instant::now();
    let unreachable = |e: reqwest::Error| {
        let (kind, detail) = net::classify(&e);
        let detail = if net::limit_ran_out(&e, started, limit) {
            format!("no answer within {}s", limit.as_secs_f64())
        } else {
            detail
        };
        WtlError::Unreachable { kind, detail }
    };
    let mut response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| outcome::parse_retry_after(v, SystemTime::now()));
    let body = read_capped(&mut response).await.map_err(unreachable)?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// What WTL answered to one `POST /prov`.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Vec<u8>,
}

const JSON: &str = "application/json";

/// An answer's body, at most [`MAX_ANSWER_BYTES`] of it: the rest is not needed to classify the
/// answer (the connection is then not reused).
pub(crate) async fn read_capped(response: &mut reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(body)
}

//! The connection pool and HTTP/1.1 exchange behind `POST {WTL_API_URL}/prov`.
//!
//! Every event makes one or two small JSON calls to one host, so the client is built for exactly
//! that: keep-alive connections (plain TCP, or rustls with the platform's trusted roots for
//! `https`) kept in a pool, and each call done inside the event's own task: take an idle
//! connection, write the request with one write, read the answer, put the connection back. No
//! connection task, no channel between tasks, no per-call URL handling: measured with `bench/`,
//! this costs a fraction of a general-purpose pooled client, and it is the event's hot path.
//!
//! What the exchange understands of HTTP/1.1 answers: informational (1xx) heads are skipped;
//! the body is framed by `Transfer-Encoding: chunked`, by `Content-Length`, or by the end of
//! the connection; `Connection: close` and HTTP/1.0 answers are never reused; at most
//! `max_answer` bytes of a body are kept (the rest is not read, and the connection is dropped).
//! An idle connection that the server has closed (or written to) is noticed before reuse
//! without a system call (the reactor has already marked it readable) and dropped; idle
//! connections older than [`IDLE_TIMEOUT`] are closed. If writing the request to a reused
//! connection fails because the server had already reset it, the request never reached the
//! server and is written once more on a new connection. A connection that breaks after the
//! request was written is a failure the caller handles (its retries, rate limit and metrics):
//! the server may have acted on the request.
//!
//! Timeouts: the TCP connect and the TLS handshake are bounded by `connect_timeout` (shared
//! among the host's addresses, so one address that never answers does not use it all); the
//! whole exchange is bounded by the caller, which drops the future (and with it the connection).
//! Hostile answers are bounded too: heads and lines by size, interim (1xx) heads and trailers by
//! count and size, the kept body by `max_answer`.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use http::HeaderValue;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ClientBuildError;
use super::outcome::NetFailure;

/// Longest answer head (status line and headers) read.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most headers read from one answer head.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size or trailer line of a chunked body.
const MAX_LINE: usize = 4096;
/// An idle connection unused for this long is closed instead of reused (below the idle timeout
/// of common servers and load balancers, so the server rarely closes one just as it is used).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most interim (1xx) heads accepted before the answer.
const MAX_INTERIM: usize = 8;
/// Most idle connections kept.
const MAX_IDLE: usize = 1024;
/// TCP keep-alive probe interval on WTL connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// Read buffer size: larger than a usual answer, so one read takes it whole.
const READ_CHUNK: usize = 8 * 1024;

/// Where the calls go, from `{WTL_API_URL}/prov`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// Host name or IP address to connect to (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header: host, with the port when it is not the scheme's default.
    pub authority: String,
    /// The request target: the URL's path (base path included) with `/prov`.
    pub path: String,
}

impl Endpoint {
    /// Splits `{base_url}/prov`. User information in the URL (`user:pass@`) is not sent.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the scheme must be http or https".into()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
        let default_port = if tls { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = if port == default_port {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let path = match uri.path() {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(Self {
            tls,
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
            authority,
            path,
        })
    }
}

/// A failure to reach WTL or to read its answer.
#[derive(Debug)]
pub struct Failure {
    pub kind: NetFailure,
    pub detail: String,
}

impl Failure {
    fn new(kind: NetFailure, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// One answer from WTL.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The `Retry-After` header, when it is text.
    pub retry_after: Option<String>,
    /// The body, at most `max_answer` bytes of it.
    pub body: Vec<u8>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Reads into `buf`'s spare room; 0 means the server closed the connection.
    async fn read_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        match self {
            Self::Plain(s) => s.read_buf(buf).await,
            Self::Tls(s) => s.read_buf(buf).await,
        }
    }

    /// Still fit for a call: not closed by the server, nothing unread. An idle connection the
    /// server closed or wrote to has been marked readable by the reactor, which this asks
    /// without a system call.
    fn is_idle_and_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.tcp().poll_read_ready(&mut cx).is_pending()
    }

    /// No decrypted bytes are left waiting inside TLS (stray bytes after an answer would be
    /// read as the start of the next one). Asks rustls' buffer only, without reading the socket.
    fn nothing_buffered(&mut self) -> bool {
        match self {
            Self::Plain(_) => true,
            Self::Tls(s) => {
                let mut probe = [0u8; 1];
                matches!(
                    std::io::Read::read(&mut s.get_mut().1.reader(), &mut probe),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock
                )
            }
        }
    }
}

struct Idle {
    stream: Stream,
    since: Instant,
}

/// The `/prov` client: an endpoint, a TLS setup and a pool of idle connections.
pub struct Http1Client {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    max_answer: usize,
    /// The request line and the headers every call carries, ready to be copied.
    head: Vec<u8>,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Http1Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Http1Client {
    /// `fixed` headers go on every call (values checked by `HeaderValue`, so none can break
    /// the head). For `https`, TLS trusts the platform's roots and offers HTTP/1.1 only.
    pub fn new(
        endpoint: Endpoint,
        connect_timeout: Duration,
        max_answer: usize,
        fixed: &[(&str, &HeaderValue)],
    ) -> Result<Self, ClientBuildError> {
        let tls = if endpoint.tls {
            use rustls_platform_verifier::BuilderVerifierExt;
            let mut config = rustls::ClientConfig::builder()
                .with_platform_verifier()
                .map_err(|e| ClientBuildError::Tls(e.to_string()))?
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                ClientBuildError::Url(format!("{:?} is not a valid TLS server name: {e}", endpoint.host))
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(endpoint.path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(endpoint.authority.as_bytes());
        head.extend_from_slice(b"\r\n");
        for (name, value) in fixed {
            push_header(&mut head, name, value.as_bytes());
        }
        Ok(Self {
            endpoint,
            tls,
            connect_timeout,
            max_answer,
            head,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `POST`s `body` (JSON) with the fixed headers and `extra`, and reads the answer. An
    /// `extra` value holding a line break or NUL is left out, so no value can break the head.
    pub async fn post(&self, extra: &[(&str, &[u8])], body: &[u8]) -> Result<Answer, Failure> {
        let mut request = Vec::with_capacity(self.head.len() + 160 + body.len());
        request.extend_from_slice(&self.head);
        for (name, value) in extra {
            if !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
                push_header(&mut request, name, value);
            }
        }
        request.extend_from_slice(b"content-length: ");
        request.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);

        if let Some(mut stream) = self.checkout() {
            match exchange(&mut stream, &request, self.max_answer).await {
                Ok((answer, reusable)) => {
                    self.give_back(stream, reusable);
                    return Ok(answer);
                }
                // Reset by the server before the request was written: it never arrived.
                Err(Broken::Unsent(f)) => {
                    tracing::debug!(
                        detail = %f.detail,
                        "a reused WTL connection was closed before the call was written; writing it on a new connection"
                    );
                }
                Err(Broken::Sent(f)) => return Err(f),
            }
        }
        let mut stream = self.connect().await?;
        match exchange(&mut stream, &request, self.max_answer).await {
            Ok((answer, reusable)) => {
                self.give_back(stream, reusable);
                Ok(answer)
            }
            Err(Broken::Unsent(f) | Broken::Sent(f)) => Err(f),
        }
    }

    /// The most recently used idle connection that is still open, if any.
    fn checkout(&self) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.since.elapsed() < IDLE_TIMEOUT && conn.stream.is_idle_and_open() {
                return Some(conn.stream);
            }
        }
        None
    }

    fn give_back(&self, mut stream: Stream, reusable: bool) {
        if !reusable || !stream.nothing_buffered() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The longest idle sit at the bottom: close the expired ones, so a pool that grew in a
        // burst does not keep sockets open for good.
        let expired = idle
            .iter()
            .take_while(|c| now.duration_since(c.since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { stream, since: now });
        }
    }

    /// Idle connections in the pool (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn connect(&self) -> Result<Stream, Failure> {
        let limit = self.connect_timeout;
        match tokio::time::timeout(limit, self.open()).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                NetFailure::Timeout,
                format!(
                    "no connection to {} within {}s (WTL_CONNECT_TIMEOUT)",
                    self.endpoint.authority,
                    limit.as_secs_f64()
                ),
            )),
        }
    }

    async fn open(&self) -> Result<Stream, Failure> {
        let Endpoint { host, port, .. } = &self.endpoint;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| Failure::new(NetFailure::Dns, format!("dns error: cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Failure::new(
                NetFailure::Dns,
                format!("dns error: {host} has no address"),
            ));
        }
        let tcp = dial(&addrs, self.connect_timeout).await?;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => match connector.connect(name.clone(), tcp).await {
                Ok(tls) => Ok(Stream::Tls(Box::new(tls))),
                Err(e) => Err(Failure::new(
                    NetFailure::Connect,
                    format!("TLS handshake with {} failed: {e}", self.endpoint.authority),
                )),
            },
        }
    }
}

/// A TCP connection to the first of `addrs` that accepts one, each address given an equal share
/// of what is left of `limit`. `addrs` is not empty.
async fn dial(addrs: &[SocketAddr], limit: Duration) -> Result<TcpStream, Failure> {
    let deadline = Instant::now() + limit;
    let mut failure = Failure::new(NetFailure::Connect, "no address to connect to");
    for (k, addr) in addrs.iter().enumerate() {
        let left = u32::try_from(addrs.len() - k).unwrap_or(1);
        let share = deadline.saturating_duration_since(Instant::now()) / left;
        let error = match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        };
        let kind = if error.kind() == io::ErrorKind::TimedOut {
            NetFailure::Timeout
        } else {
            NetFailure::Connect
        };
        failure = Failure::new(kind, format!("tcp connect to {addr} failed: {error}"));
    }
    Err(failure)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How an exchange broke.
enum Broken {
    /// Writing the request failed because the server had reset the connection: it never
    /// arrived.
    Unsent(Failure),
    /// After the request was written: WTL may have acted on it.
    Sent(Failure),
}

fn broken(e: &io::Error) -> Failure {
    let kind = if e.kind() == io::ErrorKind::TimedOut {
        NetFailure::Timeout
    } else {
        NetFailure::Transport
    };
    Failure::new(kind, e.to_string())
}

fn bad_answer(why: impl Into<String>) -> Broken {
    Broken::Sent(Failure::new(NetFailure::Transport, why))
}

/// Writes `request`, reads one answer. Returns it and whether the connection may be reused.
async fn exchange(stream: &mut Stream, request: &[u8], max_answer: usize) -> Result<(Answer, bool), Broken> {
    if let Err(e) = stream.write_all(request).await {
        return Err(match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Broken::Unsent(broken(&e))
            }
            _ => Broken::Sent(broken(&e)),
        });
    }
    let mut wire = Wire {
        stream,
        buf: Vec::with_capacity(READ_CHUNK),
        pos: 0,
    };
    read_answer(&mut wire, max_answer).await
}

/// Buffered reading from a connection: `buf[pos..]` is read but not yet used.
struct Wire<'a> {
    stream: &'a mut Stream,
    buf: Vec<u8>,
    pos: usize,
}

impl Wire<'_> {
    fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Reads more; `Ok(false)` when the server closed the connection. Bytes already used are
    /// dropped first, so the buffer holds at most what is still unread plus one read.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(self.stream.read_into(&mut self.buf).await? > 0)
    }

    /// One line ending in CRLF (or LF), without it.
    async fn line(&mut self) -> Result<Vec<u8>, Broken> {
        loop {
            if let Some(end) = self.pending().iter().position(|&b| b == b'\n') {
                let line = self.pending()[..end]
                    .strip_suffix(b"\r")
                    .unwrap_or(&self.pending()[..end])
                    .to_vec();
                self.pos += end + 1;
                return Ok(line);
            }
            if self.pending().len() > MAX_LINE {
                return Err(bad_answer("a chunked answer has an over-long line"));
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Err(bad_answer("the connection closed in the middle of a chunked answer")),
                Err(e) => return Err(Broken::Sent(broken(&e))),
            }
        }
    }

    /// Up to `n` more bytes into `out`, but never past `room` bytes of `out`. `Ok(false)` when
    /// the server closed the connection first.
    async fn take(&mut self, mut n: usize, out: &mut Vec<u8>, room: usize) -> Result<bool, Broken> {
        while n > 0 {
            if self.pending().is_empty() {
                match self.fill().await {
                    Ok(true) => {}
                    Ok(false) => return Ok(false),
                    Err(e) => return Err(Broken::Sent(broken(&e))),
                }
            }
            let here = self.pending().len().min(n);
            let keep = here.min(room.saturating_sub(out.len()));
            out.extend_from_slice(&self.pending()[..keep]);
            self.pos += here;
            n -= here;
        }
        Ok(true)
    }
}

/// The parts of an answer head the exchange uses.
struct Head {
    status: u16,
    len: usize,
    http11: bool,
    close: bool,
    chunked: bool,
    /// `Transfer-Encoding` other than a final `chunked`: the body runs to the end of the connection.
    other_coding: bool,
    content_length: Option<u64>,
    retry_after: Option<String>,
}

fn parse_head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("WTL's answer is not valid HTTP/1.1: {e}")),
    };
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        len,
        http11: resp.version == Some(1),
        close: false,
        chunked: false,
        other_coding: false,
        content_length: None,
        retry_after: None,
    };
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = Some(value)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("WTL's answer has an invalid Content-Length: {value:?}"))?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err("WTL's answer has two different Content-Length headers".into());
            }
            head.content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            head.chunked = last.eq_ignore_ascii_case("chunked");
            head.other_coding = !head.chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = Some(value.to_string());
        }
    }
    Ok(Some(head))
}

async fn read_answer(wire: &mut Wire<'_>, max_answer: usize) -> Result<(Answer, bool), Broken> {
    let mut interim = 0;
    let head = loop {
        match parse_head(wire.pending()) {
            Err(why) => return Err(bad_answer(why)),
            Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                // An interim answer (100 Continue and the like): the real one follows.
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(bad_answer("WTL sent more than 8 interim (1xx) answers"));
                }
                wire.pos += head.len;
                continue;
            }
            Ok(Some(head)) => break head,
            Ok(None) => {}
        }
        if wire.pending().len() > MAX_HEAD_BYTES {
            return Err(bad_answer("WTL's answer head is larger than 64 KiB"));
        }
        match wire.fill().await {
            Ok(true) => {}
            Ok(false) if wire.buf.is_empty() => {
                return Err(bad_answer("the connection closed before WTL answered"));
            }
            Ok(false) => {
                return Err(bad_answer("the connection closed in the middle of WTL's answer head"));
            }
            Err(e) => return Err(Broken::Sent(broken(&e))),
        }
    };
    if head.status == 101 {
        return Err(bad_answer("WTL answered 101 Switching Protocols"));
    }
    wire.pos += head.len;
    let mut body = Vec::new();
    // Both framings at once is a sign of a confused or hostile peer: read by chunks, never reuse.
    let mut reusable = head.http11 && !head.close && !(head.chunked && head.content_length.is_some());
    if head.status == 204 || head.status == 304 {
        // No body, whatever the head says.
    } else if head.chunked {
        reusable &= read_chunked(wire, &mut body, max_answer).await?;
    } else if head.other_coding || head.content_length.is_none() {
        // The body runs until the server closes the connection.
        reusable = false;
        while body.len() < max_answer {
            if !wire.take(max_answer - body.len(), &mut body, max_answer).await? {
                break;
            }
        }
    } else if let Some(n) = head.content_length {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let wanted = n.min(max_answer);
        if !wire.take(wanted, &mut body, max_answer).await? {
            return Err(bad_answer(format!(
                "the connection closed after {} of the {n} bytes of WTL's answer",
                body.len()
            )));
        }
        reusable &= wanted == n;
    }
    // Bytes beyond the answer would be the start of an answer nobody asked for.
    reusable &= wire.pending().is_empty();
    Ok((
        Answer {
            status: head.status,
            retry_after: head.retry_after,
            body,
        },
        reusable,
    ))
}

/// Reads a chunked body into `body` (at most `max` bytes kept). Returns whether the whole body,
/// trailers included, was read (so the connection is at the start of the next answer).
async fn read_chunked(wire: &mut Wire<'_>, body: &mut Vec<u8>, max: usize) -> Result<bool, Broken> {
    loop {
        let line = wire.line().await?;
        let text = std::str::from_utf8(&line).unwrap_or("");
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = Some(size_text)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|t| usize::from_str_radix(t, 16).ok())
            .ok_or_else(|| bad_answer(format!("a chunked answer has an invalid chunk size: {size_text:?}")))?;
        if size == 0 {
            // Trailers, up to an empty line, at most a head's worth.
            let mut trailers = 0;
            loop {
                let line = wire.line().await?;
                if line.is_empty() {
                    return Ok(true);
                }
                trailers += line.len() + 2;
                if trailers > MAX_HEAD_BYTES {
                    return Err(bad_answer("a chunked answer has more than 64 KiB of trailers"));
                }
            }
        }
        if body.len() >= max {
            // Enough is kept; the rest is not read and the connection will not be reused.
            return Ok(false);
        }
        if !wire.take(size, body, max).await? {
            return Err(bad_answer("the connection closed in the middle of a chunked answer"));
        }
        if !wire.line().await?.is_empty() {
            return Err(bad_answer("a chunk of WTL's answer is longer than its size says"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn endpoints_are_split_from_the_url() {
        let e = Endpoint::parse("https://hlr.example.com/wtl/hlr/v1/prov").expect("valid");
        assert_eq!(
            e,
            Endpoint {
                tls: true,
                host: "hlr.example.com".into(),
                port: 443,
                authority: "hlr.example.com".into(),
                path: "/wtl/hlr/v1/prov".into(),
            }
        );
        let e = Endpoint::parse("http://user:secret@127.0.0.1:8080/prov").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 8080));
        assert_eq!(e.authority, "127.0.0.1:8080", "user information is never sent");
        let e = Endpoint::parse("http://[::1]:9000/prov").expect("valid");
        assert_eq!((e.host.as_str(), e.authority.as_str()), ("::1", "[::1]:9000"));
        assert!(Endpoint::parse("ftp://x/prov").is_err());
    }

    /// A server that answers each request on a connection with the next of `answers` (raw
    /// bytes), and records what it received. Counts the connections it accepted.
    struct Server {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        received: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    async fn server(answers: Vec<&'static [u8]>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (acc, rec) = (accepted.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let answers = answers.clone();
                let rec = rec.clone();
                tokio::spawn(async move {
                    for answer in answers {
                        let Some(request) = read_request(&mut socket).await else {
                            return;
                        };
                        rec.lock().expect("lock").push(request);
                        if answer.is_empty() {
                            return; // close without answering
                        }
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            accepted,
            received,
        }
    }

    /// One request: head, then `content-length` bytes of body.
    async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return Some(buf);
                }
            }
        }
    }

    fn client(addr: SocketAddr) -> Http1Client {
        let endpoint = Endpoint::parse(&format!("http://{addr}/base/prov")).expect("valid");
        let json = HeaderValue::from_static("application/json");
        Http1Client::new(endpoint, Duration::from_secs(2), 100, &[("content-type", &json)]).expect("client")
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";

    #[tokio::test]
    async fn the_request_is_written_as_http_1_1_and_the_connection_reused() {
        let server = server(vec![OK, OK, OK]).await;
        let client = client(server.addr);
        for _ in 0..3 {
            let extra: [(&str, &[u8]); 2] = [("x-b3-traceid", b"abc"), ("x-bad", b"a\r\nx-injected: 1")];
            let answer = client.post(&extra, b"{\"a\":1}").await.expect("answer");
            assert_eq!((answer.status, answer.body.as_slice()), (200, &b"{\"ok\":true}"[..]));
        }
        assert_eq!(
            server.accepted.load(Ordering::SeqCst),
            1,
            "one connection for three calls"
        );
        let received = server.received.lock().expect("lock").clone();
        let first = String::from_utf8(received[0].clone()).expect("text");
        assert_eq!(
            first,
            format!(
                "POST /base/prov HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nx-b3-traceid: abc\r\ncontent-length: 7\r\n\r\n{{\"a\":1}}",
                server.addr
            )
        );
        assert_eq!(client.idle_connections(), 1);
    }

    #[tokio::test]
    async fn chunked_answers_split_anywhere_are_read_whole() {
        let answer: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"err\r\n6\r\nor\":1}\r\n0\r\nx-trailer: y\r\n\r\n";
        // A server that sends the answer one byte per write.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                while read_request(&mut socket).await.is_some() {
                    for b in answer {
                        let _ = socket.write_all(&[*b]).await;
                        let _ = socket.flush().await;
                        tokio::task::yield_now().await;
                    }
                }
            }
        });
        let client = client(addr);
        for _ in 0..2 {
            let a = client.post(&[], b"{}").await.expect("answer");
            assert_eq!(a.status, 503);
            assert_eq!(a.retry_after.as_deref(), Some("7"));
            assert_eq!(a.body, b"{\"error\":1}");
        }
        assert_eq!(
            client.idle_connections(),
            1,
            "a whole chunked answer leaves the connection reusable"
        );
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_close_is_honoured() {
        let server = server(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nConnection: close\r\ncontent-length: 2\r\n\r\n{}",
        ])
        .await;
        let client = client(server.addr);
        let a = client.post(&[], b"{}").await.expect("answer");
        assert_eq!((a.status, a.body.as_slice()), (201, &b"{}"[..]));
        assert_eq!(client.idle_connections(), 0, "Connection: close is not reused");
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_long_bodies_are_cut() {
        let long: &'static [u8] = Box::leak(
            [&b"HTTP/1.1 500 Internal Server Error\r\n\r\n"[..], &[b'x'; 300][..]]
                .concat()
                .into_boxed_slice(),
        );
        let server = server(vec![long]).await;
        let client = client(server.addr);
        let a = client.post(&[], b"{}").await.expect("answer");
        assert_eq!(a.status, 500);
        assert_eq!(a.body.len(), 100, "at most max_answer bytes are kept");
        assert_eq!(client.idle_connections(), 0);
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_closed_is_not_reused() {
        // The server answers once per connection, then closes it.
        let server = server(vec![OK]).await;
        let client = client(server.addr);
        client.post(&[], b"{}").await.expect("first");
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.post(&[], b"{}").await.expect("second, on a new connection");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(
            server.received.lock().expect("lock").len(),
            2,
            "each request reached the server once"
        );
    }

    #[tokio::test]
    async fn a_reused_connection_closed_after_the_request_is_a_failure_not_a_silent_resend() {
        // Each connection: the first request is answered, the second is read and then the
        // connection is closed without an answer. WTL may have acted on it, so the client does
        // not send it again by itself: the caller's retry rules decide.
        let server = server(vec![OK, b""]).await;
        let client = client(server.addr);
        client.post(&[], b"{}").await.expect("first");
        let f = client.post(&[], b"{}").await.expect_err("no answer to the second");
        assert_eq!(f.kind, NetFailure::Transport);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "not sent again");
        assert_eq!(server.received.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn expired_idle_connections_are_closed_when_a_call_ends() {
        let server = server(vec![OK, OK, OK]).await;
        let client = client(server.addr);
        client.post(&[], b"{}").await.expect("first");
        // Make the pooled connection look older than the idle timeout.
        if let Some(conn) = client.idle.lock().expect("lock").first_mut() {
            conn.since = conn.since.checked_sub(IDLE_TIMEOUT).expect("an instant 30 s back");
        }
        assert!(client.checkout().is_none(), "an expired connection is not reused");
        client.post(&[], b"{}").await.expect("second, on a new connection");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(client.idle_connections(), 1);
    }

    #[tokio::test]
    async fn endless_interim_answers_and_trailers_are_cut_off() {
        let interims: &'static [u8] = Box::leak(b"HTTP/1.1 100 Continue\r\n\r\n".repeat(20).into_boxed_slice());
        let mut trailer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n".to_vec();
        for _ in 0..2000 {
            trailer.extend_from_slice(b"x-trailer: 0123456789012345678901234567890123456789\r\n");
        }
        let trailer: &'static [u8] = Box::leak(trailer.into_boxed_slice());
        for answer in [interims, trailer] {
            let server = server(vec![answer]).await;
            let f = client(server.addr).post(&[], b"{}").await.expect_err("refused");
            assert_eq!(f.kind, NetFailure::Transport, "{}", f.detail);
        }
    }

    #[tokio::test]
    async fn a_new_connection_closed_before_the_answer_is_a_transport_failure() {
        let server = server(vec![b""]).await;
        let client = client(server.addr);
        let f = client.post(&[], b"{}").await.expect_err("no answer");
        assert_eq!(f.kind, NetFailure::Transport);
        assert!(f.detail.contains("closed before WTL answered"), "{}", f.detail);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "not sent twice");
    }

    #[tokio::test]
    async fn a_truncated_or_malformed_answer_is_a_transport_failure() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{\"short\":1}"[..],
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..],
            &b"not http at all\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n{}"[..],
            &b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n{}"[..],
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+2\r\n{}\r\n0\r\n\r\n"[..],
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                if let Ok((mut socket, _)) = listener.accept().await {
                    let _ = read_request(&mut socket).await;
                    let _ = socket.write_all(answer).await;
                }
            });
            let f = client(addr).post(&[], b"{}").await.expect_err("broken answer");
            assert_eq!(f.kind, NetFailure::Transport, "{}", f.detail);
        }
    }
}

//! Test stands for reaching WTL: a certificate authority made in the test (rcgen), an HTTPS
//! WTL stand-in (rustls server, HTTP/1.1 and HTTP/2) that records what it received, and an
//! HTTP proxy (CONNECT tunnels and absolute-form requests) that records what it carried.
//! Shared by the api tests and the process tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A port for a child to listen on (or to find closed). It is taken below the kernel's ephemeral
/// range (32768-60999 by default): a port the kernel picked for a throw-away listener can be handed
/// out again, to another listener on port 0 or to an outgoing connection, before the child binds
/// it. Ports here are only ever bound by number; each test process walks its own stretch of them
/// and skips any that is taken.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let port = (FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN)
}

/// A directory for one test's PEM files, removed when dropped.
pub struct Files(PathBuf);

impl Files {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("nsps-wtl-pki-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    /// Writes `content` to `name` and returns the path as text.
    pub fn write(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write PEM");
        path.to_string_lossy().into_owned()
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority made for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - days(1);
        params.not_after = now + days(30);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(
        &self,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
        valid_until: time::OffsetDateTime,
        key: KeyPair,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![purpose];
        params.not_before = valid_until - days(60);
        params.not_after = valid_until;
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost`, 127.0.0.1 and ::1 (or `names`).
    pub fn server(&self, names: &[&str]) -> Issued {
        let until = time::OffsetDateTime::now_utc() + days(30);
        self.issue(
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            until,
            KeyPair::generate().expect("key"),
        )
    }

    /// A server certificate that expired yesterday.
    pub fn expired_server(&self, names: &[&str]) -> Issued {
        let until = time::OffsetDateTime::now_utc() - days(1);
        self.issue(
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            until,
            KeyPair::generate().expect("key"),
        )
    }

    /// A client certificate (ECDSA P-256, key as PKCS#8).
    pub fn client(&self, name: &str) -> Issued {
        let until = time::OffsetDateTime::now_utc() + days(30);
        self.issue(
            &[name],
            ExtendedKeyUsagePurpose::ClientAuth,
            until,
            KeyPair::generate().expect("key"),
        )
    }

    /// A client certificate with an RSA key (PKCS#8).
    pub fn rsa_client(&self, name: &str) -> Issued {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).expect("RSA key");
        let until = time::OffsetDateTime::now_utc() + days(30);
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth, until, key)
    }
}

pub const LOCAL_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// One request the HTTPS stand-in received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub version: http::Version,
    pub authorization: Option<String>,
    /// The connection presented a client certificate.
    pub client_cert: bool,
    /// The client certificate presented (DER), to tell which one.
    pub client_cert_der: Option<Vec<u8>>,
    pub body: Vec<u8>,
}

/// An HTTPS WTL stand-in: `/prov` answers `{"result":true}`, `/oauth/token` a token.
pub struct TlsWtl {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted (each one a handshake attempt).
    pub connections: Arc<AtomicUsize>,
}

impl TlsWtl {
    /// `https://localhost:<port>`
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }

    /// Serves with `server` as its certificate; demands a client certificate issued by
    /// `client_ca` when given; offers `alpn` (e.g. `h2`, `http/1.1`).
    pub async fn start(server: &Issued, client_ca: Option<&Ca>, alpn: &[&[u8]]) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("server chain");
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("server key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                    roots.add(c.expect("CA")).expect("root");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).expect("server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, connections2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections2.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen) = (acceptor.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let client_cert_der = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.as_ref().to_vec());
                    serve_recording(tls, client_cert_der, seen).await;
                });
            }
        });
        Self {
            port,
            seen,
            connections,
        }
    }
}

async fn serve_recording<S>(io: S, client_cert_der: Option<Vec<u8>>, seen: Arc<Mutex<Vec<Seen>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        let client_cert_der = client_cert_der.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            let path = parts.uri.path().to_string();
            seen.lock().expect("lock").push(Seen {
                path: path.clone(),
                version: parts.version,
                authorization: parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                client_cert: client_cert_der.is_some(),
                client_cert_der,
                body,
            });
            let answer = if path == "/oauth/token" {
                r#"{"access_token":"tls-token","token_type":"Bearer","expires_in":3600}"#
            } else {
                r#"{"result":true}"#
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(answer.as_bytes())))
                    .expect("response"),
            )
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let _ = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

/// What the proxy carried: the request line's method and target, and the proxy credentials.
#[derive(Clone, Debug)]
pub struct Carried {
    pub method: String,
    pub target: String,
    pub proxy_authorization: Option<String>,
}

/// An HTTP proxy on loopback: `CONNECT host:port` opens a tunnel; an absolute-form request
/// (`POST http://host:port/path`) is passed on as it is.
pub struct Proxy {
    pub port: u16,
    pub carried: Arc<Mutex<Vec<Carried>>>,
}

impl Proxy {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn carried(&self) -> Vec<Carried> {
        self.carried.lock().expect("lock").clone()
    }

    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let carried = Arc::new(Mutex::new(Vec::new()));
        let log = carried.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, log.clone()));
            }
        });
        Self { port, carried }
    }
}

async fn relay(mut client: TcpStream, log: Arc<Mutex<Vec<Carried>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.lines().next().unwrap_or("").split(' ');
    let (method, target) = (
        words.next().unwrap_or("").to_string(),
        words.next().unwrap_or("").to_string(),
    );
    let proxy_authorization = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_string())
    });
    log.lock().expect("lock").push(Carried {
        method: method.clone(),
        target: target.clone(),
        proxy_authorization,
    });
    let authority = if method == "CONNECT" {
        target.clone()
    } else {
        let rest = target.split_once("://").map(|(_, r)| r).unwrap_or(&target);
        rest.split('/').next().unwrap_or("").to_string()
    };
    let Ok(mut upstream) = TcpStream::connect(authority.as_str()).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if method == "CONNECT" {
        let _ = client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await;
    } else if upstream.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// A real `redis-server` on a free loopback port, in a directory of its own; stopped when
/// dropped.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    /// Serves TLS only, with this certificate and key (paths).
    tls: Option<(String, String)>,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start(password: Option<&str>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("nsps-wtl-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = Self {
            port,
            password: password.map(str::to_string),
            tls: None,
            dir,
            child: None,
        };
        server.run();
        server
    }

    /// A Redis that speaks only TLS, with a certificate for `localhost` issued by `ca`.
    pub fn start_tls(ca: &Ca) -> Self {
        let mut server = Self::start(None);
        server.stop();
        let issued = ca.server(LOCAL_NAMES);
        let cert = server.dir.join("server.pem");
        let key = server.dir.join("server.key");
        std::fs::write(&cert, &issued.cert_pem).expect("cert");
        std::fs::write(&key, &issued.key_pem).expect("key");
        server.tls = Some((cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned()));
        server.run();
        server
    }

    /// `redis://[:password@]127.0.0.1:<port>`
    pub fn url(&self) -> String {
        match (&self.password, &self.tls) {
            (_, Some(_)) => format!("rediss://localhost:{}", self.port),
            (Some(p), None) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            (None, None) => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn run(&mut self) {
        let mut cmd = std::process::Command::new("redis-server");
        let port = self.port.to_string();
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some((cert, key)) => cmd.args([
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                cert,
                "--tls-auth-clients",
                "no",
            ]),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = self
            .child
            .insert(cmd.spawn().expect("redis-server runs (apt-get install redis-server)"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server exited ({status}) instead of listening on {}", self.port);
            }
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops the server (its data is gone: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// A connection for the test itself to look at the keys.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connects")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

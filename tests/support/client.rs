//! HTTP clients and certificate helpers for integration tests.
//!
//! * [`get`], [`send`], [`try_send`] and the pooled [`TestClient`]: plain
//!   HTTP/1.1 (or h2c) through hyper-util's legacy client.
//! * [`TestConnection`]: one explicit connection (plain HTTP/1.1, h2c, or TLS
//!   via [`TlsTestClient`]) on which several requests can be sent; TLS
//!   connections choose the server name (SNI) independently of the address.
//! * [`raw_exchange`]: bytes in, bytes out, for malformed-request tests.
//! * [`TestCerts`]: an rcgen CA and a leaf certificate signed by it.
//!
//! Every request helper gives up (panics, or returns an error for the `try_`
//! variants) after [`DEFAULT_TIMEOUT`] so that a hung gateway fails the test
//! instead of hanging it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Error type of the fallible helpers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Upper bound on any single request made by these helpers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// ALPN `h2`.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN `http/1.1`.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Installs aws-lc-rs as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    install_crypto_provider();
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A fully buffered response.
#[derive(Clone, Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Protocol version the response came with (HTTP/2 when h2 was negotiated).
    pub version: Version,
    /// Response headers.
    pub headers: HeaderMap,
    /// The full response body.
    pub body: Bytes,
}

impl TestResponse {
    /// The status as a number.
    pub fn status_u16(&self) -> u16 {
        self.status.as_u16()
    }

    /// The body parsed as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header (invalid UTF-8 values are skipped).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

/// Builds a request; `uri` may be absolute or origin-form.
fn build_request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, BoxError> {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes())?)
        .uri(uri.parse::<Uri>()?)
        .body(Full::new(body))?;
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    Ok(request)
}

async fn buffer(response: http::Response<Incoming>) -> Result<TestResponse, BoxError> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(TestResponse {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

async fn with_timeout<T>(future: impl Future<Output = Result<T, BoxError>>) -> Result<T, BoxError> {
    tokio::time::timeout(DEFAULT_TIMEOUT, future)
        .await
        .map_err(|_| format!("request timed out after {DEFAULT_TIMEOUT:?}"))?
}

/// A pooled plain-HTTP client (HTTP/1.1 by default, or h2c prior knowledge).
#[derive(Clone)]
pub struct TestClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for TestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClient {
    /// An HTTP/1.1 client with keep-alive pooling.
    pub fn new() -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// An HTTP/2 client speaking h2c with prior knowledge.
    pub fn h2c() -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// `GET url` (panics on transport error).
    pub async fn get(&self, url: &str) -> TestResponse {
        self.send("GET", url, &[], Bytes::new()).await
    }

    /// Sends a request to an absolute `url` (panics on transport error).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        self.try_send(method, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"))
    }

    /// Sends a request to an absolute `url`, returning transport errors.
    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<TestResponse, BoxError> {
        let request = build_request(method, url, headers, body.into())?;
        with_timeout(async { buffer(self.inner.request(request).await?).await }).await
    }
}

/// `GET url` over a fresh HTTP/1.1 client (panics on transport error).
pub async fn get(url: &str) -> TestResponse {
    TestClient::new().get(url).await
}

/// Sends a request over a fresh HTTP/1.1 client (panics on transport error).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> TestResponse {
    TestClient::new().send(method, url, headers, body).await
}

/// Sends a request over a fresh HTTP/1.1 client, returning transport errors.
pub async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<TestResponse, BoxError> {
    TestClient::new().try_send(method, url, headers, body).await
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One client connection (HTTP/1.1 or HTTP/2, plain or TLS) carrying
/// successive requests. The connection driver stops when this is dropped.
pub struct TestConnection {
    sender: Sender,
    scheme: &'static str,
    /// `host:port` used for the `Host` header (HTTP/1.1) or `:authority` (HTTP/2).
    authority: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for TestConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl TestConnection {
    /// Opens a plain HTTP/1.1 connection to `addr`.
    pub async fn http1(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Self::handshake(stream, false, "http", addr.to_string()).await
    }

    /// Opens a plain HTTP/2 connection (h2c, prior knowledge) to `addr`.
    pub async fn h2c(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Self::handshake(stream, true, "http", addr.to_string()).await
    }

    async fn handshake<IO>(
        io: IO,
        h2: bool,
        scheme: &'static str,
        authority: String,
    ) -> Result<Self, BoxError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let (sender, driver) = if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (Sender::H2(sender), driver)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (Sender::H1(sender), driver)
        };
        Ok(Self {
            sender,
            scheme,
            authority,
            driver,
        })
    }

    /// The protocol spoken on this connection.
    pub fn version(&self) -> Version {
        match self.sender {
            Sender::H1(_) => Version::HTTP_11,
            Sender::H2(_) => Version::HTTP_2,
        }
    }

    /// `GET path` (panics on transport error).
    pub async fn get(&mut self, path: &str) -> TestResponse {
        self.send("GET", path, &[], Bytes::new()).await
    }

    /// Sends a request for `path` (origin form, e.g. `/a?b`) (panics on transport error).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// Sends a request for `path`, returning transport errors. On HTTP/1.1 a
    /// `Host` header is added unless given; on HTTP/2 the URI is made absolute.
    pub async fn try_send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<TestResponse, BoxError> {
        let body = body.into();
        with_timeout(async {
            match &mut self.sender {
                Sender::H1(sender) => {
                    let mut request = build_request(method, path, headers, body)?;
                    if !request.headers().contains_key(http::header::HOST) {
                        request
                            .headers_mut()
                            .insert(http::header::HOST, HeaderValue::from_str(&self.authority)?);
                    }
                    sender.ready().await?;
                    buffer(sender.send_request(request).await?).await
                }
                Sender::H2(sender) => {
                    let uri = format!("{}://{}{}", self.scheme, self.authority, path);
                    let request = build_request(method, &uri, headers, body)?;
                    sender.ready().await?;
                    buffer(sender.send_request(request).await?).await
                }
            }
        })
        .await
    }
}

/// Which ALPN protocols a TLS client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// Offer only `h2`.
    H2,
    /// Offer only `http/1.1`.
    Http1,
    /// Offer `h2` then `http/1.1`.
    Both,
    /// Offer no ALPN at all (HTTP/1.1 is spoken).
    None,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2 => vec![ALPN_H2.to_vec()],
            Alpn::Http1 => vec![ALPN_HTTP1.to_vec()],
            Alpn::Both => vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()],
            Alpn::None => Vec::new(),
        }
    }
}

/// A TLS client trusting one CA; the protocol follows the negotiated ALPN.
#[derive(Clone)]
pub struct TlsTestClient {
    config: Arc<rustls::ClientConfig>,
}

impl TlsTestClient {
    /// A client trusting only `ca_pem` (one or more PEM certificates), offering `alpn`.
    pub fn new(ca_pem: &str, alpn: Alpn) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.expect("CA PEM"))
                .expect("add CA certificate");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.protocols();
        Self {
            config: Arc::new(config),
        }
    }

    /// Wraps an existing rustls client configuration.
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Self {
        Self { config }
    }

    /// Connects to `addr`, sending `server_name` as SNI and verifying the
    /// certificate against it; HTTP/2 is used iff the server selected `h2`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<TestConnection, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_owned())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let tls = with_timeout(async { Ok(connector.connect(name, stream).await?) }).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(ALPN_H2);
        let authority = format!("{server_name}:{}", addr.port());
        TestConnection::handshake(tls, h2, "https", authority).await
    }

    /// `GET path` on a fresh connection (panics on error).
    pub async fn get(&self, addr: SocketAddr, server_name: &str, path: &str) -> TestResponse {
        self.send(addr, server_name, "GET", path, &[], Bytes::new())
            .await
    }

    /// Sends one request on a fresh connection (panics on error).
    pub async fn send(
        &self,
        addr: SocketAddr,
        server_name: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        self.try_send(addr, server_name, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} https://{server_name}{path} failed: {e}"))
    }

    /// Sends one request on a fresh connection, returning TLS/transport errors.
    pub async fn try_send(
        &self,
        addr: SocketAddr,
        server_name: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<TestResponse, BoxError> {
        let mut conn = self.connect(addr, server_name).await?;
        conn.try_send(method, path, headers, body).await
    }
}

/// Opens a TCP connection to `addr`, writes `request` verbatim and returns
/// everything read until the peer closes or `read_timeout` (total) elapses.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], read_timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("raw connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(request).await.expect("raw write");
    let mut received = Vec::new();
    let _ = tokio::time::timeout(read_timeout, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    received
}

/// Status codes of the HTTP/1.x status lines found in a raw byte stream
/// (lines starting with `HTTP/1.`), e.g. to count responses in smuggling tests.
pub fn raw_status_codes(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    text.split("\r\n")
        .filter_map(|line| line.strip_prefix("HTTP/1."))
        .filter_map(|rest| rest.get(2..5)?.parse().ok())
        .collect()
}

/// Paths of certificate files written by [`TestCerts::write_to`].
#[derive(Clone, Debug)]
pub struct CertPaths {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The leaf certificate (PEM).
    pub cert: PathBuf,
    /// The leaf private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// A test CA and a leaf certificate it signed (ECDSA P-256). The leaf is valid
/// for the given DNS names and for IP `127.0.0.1`, for server and client auth.
pub struct TestCerts {
    /// The CA certificate (PEM).
    pub ca_cert_pem: String,
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The leaf private key (PKCS#8 PEM).
    pub key_pem: String,
    ca_params: rcgen::CertificateParams,
    ca_key_pem: String,
}

impl TestCerts {
    /// Generates a fresh CA and a leaf for `dns_names` (+ `127.0.0.1`).
    pub fn new(dns_names: &[&str]) -> Self {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fxa-gateway test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let mut certs = Self {
            ca_cert_pem: ca_cert.pem(),
            cert_pem: String::new(),
            key_pem: String::new(),
            ca_params,
            ca_key_pem: ca_key.serialize_pem(),
        };
        let (cert_pem, key_pem) = certs.issue(dns_names);
        certs.cert_pem = cert_pem;
        certs.key_pem = key_pem;
        certs
    }

    /// Issues another leaf from the same CA: returns `(cert_pem, key_pem)`.
    pub fn issue(&self, dns_names: &[&str]) -> (String, String) {
        let ca_key = rcgen::KeyPair::from_pem(&self.ca_key_pem).expect("CA key PEM");
        let issuer = rcgen::Issuer::new(self.ca_params.clone(), ca_key);
        let mut sans: Vec<String> = dns_names.iter().map(|n| (*n).to_owned()).collect();
        sans.push("127.0.0.1".to_owned());
        let mut params = rcgen::CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            dns_names.first().copied().unwrap_or("127.0.0.1"),
        );
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// Leaf followed by the CA certificate (PEM).
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.ca_cert_pem)
    }

    /// Writes `ca.pem`, `cert.pem` (leaf) and `key.pem` into `dir`.
    pub fn write_to(&self, dir: &Path) -> CertPaths {
        let paths = CertPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&paths.ca, &self.ca_cert_pem).expect("write ca.pem");
        std::fs::write(&paths.cert, &self.cert_pem).expect("write cert.pem");
        std::fs::write(&paths.key, &self.key_pem).expect("write key.pem");
        paths
    }

    /// A rustls server configuration presenting the leaf, with the given ALPN
    /// protocols (e.g. `&[ALPN_H2, ALPN_HTTP1]`).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("leaf PEM");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM");
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A [`TlsTestClient`] trusting this CA.
    pub fn client(&self, alpn: Alpn) -> TlsTestClient {
        TlsTestClient::new(&self.ca_cert_pem, alpn)
    }
}

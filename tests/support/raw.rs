//! Raw-socket helpers shared by the edge tests: TLS client set-up trusting a test CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A root store holding every certificate of `ca_pem` (the crypto provider installed first).
pub fn ca_roots(ca_pem: &str) -> rustls::RootCertStore {
    super::client::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    roots
}

/// A client config trusting `ca_pem`, offering the one ALPN protocol `alpn`.
pub fn tls_client_config(ca_pem: &str, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(ca_roots(ca_pem))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` for `localhost`, trusting `ca_pem` and offering `alpn`.
pub async fn tls_connect(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(ca_pem, alpn));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// One HTTP/1.x response read off a raw socket: status, lower-cased header names, body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Parses the first response in `raw`: the head up to the blank line, then the rest as body.
    pub fn parse(raw: &[u8]) -> RawResponse {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
        let (status, headers) = parse_head(&String::from_utf8_lossy(&raw[..split]));
        RawResponse {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the errno contract: the JSON body, its content type, our error and id headers.
    pub fn assert_errno(&self, status: u16, errno: u16) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "{self:?} {text}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert!(self.header("x-fxa-gateway-error").is_some(), "{self:?}");
        assert!(self.header("x-request-id").is_some(), "{self:?}");
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("errno body is not JSON ({e}): {text}"));
        assert_eq!(v["code"], status, "{v}");
        assert_eq!(v["errno"], errno, "{v}");
        v
    }
}

/// The status code and the lower-cased, trimmed headers of a response head (CRLF lines, no
/// trailing blank line needed).
pub fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// Reads one request off a raw upstream's socket: the head up to the blank line, then its body
/// (by `Content-Length`, or a small chunked body up to its last chunk), which is dropped.
/// Returns the head's text, or `None` once the peer is gone.
pub async fn read_request(sock: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let lower = text.to_ascii_lowercase();
    let body_len = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if lower.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        while !body.ends_with(b"0\r\n\r\n") {
            match sock.read(&mut byte).await {
                Ok(1) => body.push(byte[0]),
                _ => return None,
            }
        }
    } else {
        let mut body = vec![0u8; body_len];
        sock.read_exact(&mut body).await.ok()?;
    }
    Some(text)
}

/// Polls `f` every 20 ms until it returns true or `within` passes; whether it did.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

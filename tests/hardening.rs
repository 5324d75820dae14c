//! Bad input through real sockets: malformed heads, oversized heads and bodies, odd bytes in
//! headers, request smuggling, path tricks, slow and idle clients. Every refusal is errno JSON,
//! nothing questionable reaches the upstream, and every test ends by proving the gateway still
//! serves a normal request (no panic, no wedged listener).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::client::{self, raw_exchange, raw_status_codes};
use support::fake::{FakeUpstream, Reply};
use support::{TestGateway, config_with, simple_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

// === helpers ===

const API_ROUTE: &str = r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1", "v2"]
"#;

/// The `/api` route with the given `[limits]` keys.
fn limited_config(upstream_url: &str, limits: &str) -> String {
    config_with(upstream_url, &format!("{API_ROUTE}\n[limits]\n{limits}\n"))
}

/// How long raw exchanges wait for the gateway to answer and close.
const RAW_WAIT: Duration = Duration::from_secs(3);

/// The first HTTP/1.x response in a raw byte stream.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn parse(raw: &[u8]) -> RawResponse {
        let text = String::from_utf8_lossy(raw);
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
        let head = String::from_utf8_lossy(&raw[..head_end]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &raw[head_end + 4..];
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(rest.len())
            .min(rest.len());
        RawResponse {
            status,
            headers,
            body: rest[..len].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Asserts a gateway-made errno answer on a raw connection; returns the body.
fn assert_raw_errno(raw: &[u8], status: u16, errno: u16, message: &str, reason: &str) -> Value {
    let resp = RawResponse::parse(raw);
    let text = String::from_utf8_lossy(raw);
    assert_eq!(resp.status, status, "{text}");
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{text}"
    );
    assert_eq!(resp.header("x-fxa-gateway-error"), Some(reason), "{text}");
    assert!(
        resp.header("x-request-id").is_some_and(|id| !id.is_empty()),
        "{text}"
    );
    let v: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"));
    let reason_phrase = StatusCode::from_u16(status)
        .expect("valid status")
        .canonical_reason()
        .expect("reason phrase");
    assert_eq!(v["code"], json!(status), "{v}");
    assert_eq!(v["errno"], json!(errno), "{v}");
    assert_eq!(v["error"], json!(reason_phrase), "{v}");
    assert_eq!(v["message"], json!(message), "{v}");
    v
}

fn assert_raw_bad_request(raw: &[u8]) -> Value {
    assert_raw_errno(raw, 400, 999, "Bad Request", "bad-request")
}

/// A malformed request either gets one 400 errno answer, or (when the parser tolerates it) is
/// served normally. Returns the status.
fn assert_refused_or_served(raw: &[u8]) -> u16 {
    let resp = RawResponse::parse(raw);
    match resp.status {
        400 => {
            assert_raw_bad_request(raw);
        }
        200 => {}
        other => panic!(
            "expected 400 or 200, got {other}: {}",
            String::from_utf8_lossy(raw)
        ),
    }
    resp.status
}

async fn assert_still_serves(gw: &TestGateway, fake: &FakeUpstream) {
    fake.reset_script();
    let resp = client::get(&gw.url("/api/v1/still-alive")).await;
    assert_eq!(
        resp.status_u16(),
        200,
        "gateway stopped serving: {}",
        resp.text()
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path() == "/v1/still-alive"),
        "the normal request did not reach upstream"
    );
}

/// Reads until the peer closes or `limit` passes: (bytes, closed by peer, time to close).
async fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (received, closed, started.elapsed())
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect to gateway");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

// === malformed request heads ===

#[tokio::test]
async fn garbage_request_line_gets_400_errno_json_and_the_connection_closes() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let raw = raw_exchange(gw.addr, b"GARBAGE\r\n\r\n", RAW_WAIT).await;
    assert_raw_bad_request(&raw);
    assert_eq!(raw_status_codes(&raw), vec![400]);
    let raw = raw_exchange(
        gw.addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        RAW_WAIT,
    )
    .await;
    // A TLS ClientHello on a plain listener: refused (or dropped), never served.
    assert!(raw.is_empty() || RawResponse::parse(&raw).status == 400);
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn unknown_http_version_gets_400_errno_json() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let raw = raw_exchange(
        gw.addr,
        b"GET /api/v1/x HTTP/9.9\r\nHost: a\r\n\r\n",
        RAW_WAIT,
    )
    .await;
    assert_raw_bad_request(&raw);
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn request_line_with_bad_method_or_spaces_gets_400_errno_json() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for request in [
        &b"G(T /api/v1/x HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /api/v1/x y HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /api/v1/\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
        assert_raw_bad_request(&raw);
    }
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn http11_request_without_host_is_refused_or_served_never_a_crash() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let raw = raw_exchange(
        gw.addr,
        b"GET /api/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        RAW_WAIT,
    )
    .await;
    let status = assert_refused_or_served(&raw);
    if status == 200 {
        // Served: the upstream still got its own Host.
        let seen = fake.last_request().expect("forwarded");
        assert_eq!(seen.header("host"), Some(fake.addr().to_string().as_str()));
    }
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn oversized_request_head_gets_431_errno_json() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&limited_config(&fake.url(), "max_header_bytes = \"9KiB\"")).await;
    let big = "a".repeat(20 * 1024);
    let request = format!("GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    let raw = raw_exchange(gw.addr, request.as_bytes(), RAW_WAIT).await;
    assert_raw_errno(
        &raw,
        431,
        999,
        "Request header fields too large",
        "headers-too-large",
    );
    // Many small headers adding up over the limit, too.
    let many: String = (0..400)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(40)))
        .collect();
    let request = format!("GET /api/v1/x HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    let raw = raw_exchange(gw.addr, request.as_bytes(), RAW_WAIT).await;
    let status = RawResponse::parse(&raw).status;
    assert!(status == 431 || status == 400, "got {status}");
    assert_eq!(fake.request_count(), 0);

    // Just under the limit is served.
    let fits = "c".repeat(7 * 1024);
    let resp = client::send("GET", &gw.url("/api/v1/x"), &[("x-fits", &fits)], "").await;
    assert_eq!(resp.status_u16(), 200);
    assert_still_serves(&gw, &fake).await;
}

// === bodies over the limit ===

#[tokio::test]
async fn declared_body_over_the_limit_is_413_errno_113_and_never_forwarded() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&limited_config(&fake.url(), "max_body_bytes = \"1KiB\"")).await;
    let resp = client::send("POST", &gw.url("/api/v1/upload"), &[], "x".repeat(5000)).await;
    assert_eq!(resp.status_u16(), 413, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("x-fxa-gateway-error"), Some("body-too-large"));
    assert!(resp.header("x-request-id").is_some());
    let v = resp.json();
    assert_eq!(v["code"], 413);
    assert_eq!(v["errno"], 113);
    assert_eq!(v["error"], "Payload Too Large");
    assert_eq!(v["message"], "Request body too large");
    assert_eq!(
        fake.request_count(),
        0,
        "an oversized body reached upstream"
    );

    // Exactly at the limit is fine.
    let resp = client::send("POST", &gw.url("/api/v1/upload"), &[], "y".repeat(1024)).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(fake.last_request().expect("forwarded").body.len(), 1024);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_before_the_body_arrives() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&limited_config(&fake.url(), "max_body_bytes = \"1KiB\"")).await;
    // Only the head is sent: the answer must not wait for 10 MB that never come.
    let raw = raw_exchange(
        gw.addr,
        b"POST /api/v1/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n",
        Duration::from_millis(1500),
    )
    .await;
    assert_raw_errno(&raw, 413, 113, "Request body too large", "body-too-large");
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413_errno_113() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&limited_config(&fake.url(), "max_body_bytes = \"1KiB\"")).await;
    let mut request =
        b"POST /api/v1/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        request.extend_from_slice(b"100\r\n");
        request.extend_from_slice(&[b'z'; 0x100]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let raw = raw_exchange(gw.addr, &request, RAW_WAIT).await;
    assert_raw_errno(&raw, 413, 113, "Request body too large", "body-too-large");
    assert!(
        fake.requests().iter().all(|r| r.body.len() <= 1024),
        "more than the limit reached upstream"
    );

    // A chunked body within the limit streams through.
    let small = b"POST /api/v1/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                  Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let raw = raw_exchange(gw.addr, small, RAW_WAIT).await;
    assert_eq!(RawResponse::parse(&raw).status, 200);
    assert_eq!(
        fake.last_request().expect("forwarded").body_str(),
        "hello world"
    );
    assert_still_serves(&gw, &fake).await;
}

// === odd bytes in headers ===

#[tokio::test]
async fn obs_text_bytes_in_a_header_value_are_forwarded_verbatim_or_refused() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let raw = raw_exchange(
        gw.addr,
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Weird: caf\xe9 \xff\xfe\r\nConnection: close\r\n\r\n",
        RAW_WAIT,
    )
    .await;
    if assert_refused_or_served(&raw) == 200 {
        let seen = fake.last_request().expect("forwarded");
        let value = seen.headers.get("x-weird").expect("x-weird forwarded");
        assert_eq!(value.as_bytes(), b"caf\xe9 \xff\xfe");
    }
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn invalid_utf8_in_routing_relevant_headers_does_not_crash() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for request in [
        &b"GET /api/v1/x HTTP/1.1\r\nHost: \xc3\x28.example\r\nConnection: close\r\n\r\n"[..],
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Request-Id: \xff\xfe\xfd\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: \xff\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: \xff\r\nConnection: close\r\n\r\n",
    ] {
        let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
        assert_refused_or_served(&raw);
        let resp = RawResponse::parse(&raw);
        if let Some(id) = resp.header("x-request-id") {
            assert!(id.is_ascii() && !id.contains('\u{fffd}'), "{id:?}");
        }
    }
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn nul_and_control_bytes_in_headers_get_400_errno_json() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for request in [
        &b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n"[..],
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Bad: a\x7fb\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-B\x00d: ab\r\n\r\n",
    ] {
        let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
        assert_raw_bad_request(&raw);
    }
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn header_names_with_spaces_or_no_colon_get_400_errno_json() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for request in [
        &b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"[..],
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nno-colon-here\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n",
    ] {
        let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
        assert_raw_bad_request(&raw);
    }
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn obsolete_line_folding_is_refused_or_unfolded_never_forwarded_raw() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let raw = raw_exchange(
        gw.addr,
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\nConnection: close\r\n\r\n",
        RAW_WAIT,
    )
    .await;
    if assert_refused_or_served(&raw) == 200 {
        let seen = fake.last_request().expect("forwarded");
        for value in seen.headers.get_all("x-folded") {
            assert!(!value.as_bytes().contains(&b'\n'), "{value:?}");
        }
    }
    assert_still_serves(&gw, &fake).await;
}

// === request smuggling ===

/// Asserts nothing but the first request (if any) was forwarded and at most one answer came.
fn assert_not_smuggled(raw: &[u8], fake: &FakeUpstream) {
    let codes = raw_status_codes(raw);
    let text = String::from_utf8_lossy(raw);
    assert!(
        codes.len() <= 1,
        "a second (smuggled) response: {codes:?}\n{text}"
    );
    let seen = fake.requests();
    assert!(seen.len() <= 1, "upstream saw {} requests", seen.len());
    assert!(
        seen.iter().all(|r| !r.path().contains("smuggled")),
        "the smuggled request reached upstream"
    );
    if codes == [400] {
        assert_raw_bad_request(raw);
    }
}

#[tokio::test]
async fn transfer_encoding_with_content_length_cannot_smuggle_a_request() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().echo());
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    // CL.TE: a front end trusting Content-Length would forward the tail as body.
    let request = b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 47\r\n\
                    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                    GET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
    assert_not_smuggled(&raw, &fake);
    assert_closes_if_served(&raw);
    if let Some(seen) = fake.last_request() {
        // Forwarded: framed once, by Transfer-Encoding, without the conflicting length.
        assert!(seen.body.is_empty(), "{:?}", seen.body_str());
        assert_ne!(seen.header("content-length"), Some("47"));
    }
    // TE.CL order of the headers, too.
    fake.clear_requests();
    let request = b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                    Content-Length: 3\r\n\r\n2a\r\nGET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n";
    let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
    assert_not_smuggled(&raw, &fake);
    assert_closes_if_served(&raw);
    if let Some(seen) = fake.last_request() {
        // Forwarded: the chunk is body, never a request of its own.
        assert_eq!(
            seen.body_str(),
            "GET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        );
    }
    assert_still_serves(&gw, &fake).await;
}

/// RFC 9112 §6.1: after a request with both Transfer-Encoding and Content-Length the server
/// closes the connection, so nothing after it can be read as a request.
fn assert_closes_if_served(raw: &[u8]) {
    let resp = RawResponse::parse(raw);
    if resp.status != 400 {
        assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
    }
}

#[tokio::test]
async fn two_different_content_lengths_get_400_and_nothing_is_forwarded() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for request in [
        &b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n\
          helloGET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 40\r\n\r\n\
          helloGET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello",
    ] {
        let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
        assert_raw_bad_request(&raw);
        assert_eq!(raw_status_codes(&raw), vec![400]);
    }
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn unknown_transfer_encodings_get_400_and_nothing_is_forwarded() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for request in [
        &b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n\
          0\r\n\r\nGET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n\
          0\r\n\r\nGET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n\
          0\r\n\r\nGET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
        assert_raw_bad_request(&raw);
        assert_not_smuggled(&raw, &fake);
    }
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn bad_chunk_framing_never_yields_a_second_request() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let request = b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                    zz\r\nGET /api/v1/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
    assert_not_smuggled(&raw, &fake);
    let codes = raw_status_codes(&raw);
    assert!(codes.is_empty() || codes[0] == 400, "{codes:?}");
    assert_still_serves(&gw, &fake).await;
}

// === path tricks ===

#[tokio::test]
async fn dot_segments_and_encoded_separators_get_400_and_are_not_forwarded() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for path in [
        "/api/v1/../../admin",
        "/api/v1/./x",
        "/api/v1/%2e%2e/x",
        "/api/v1/%2E%2E/%2e%2E/admin",
        "/api/v1/.%2e/x",
        "/api/v1/a%2fb",
        "/api/v1/a%2Fb",
        "/api/v1/a%5cb",
        "/api/v1/a%00b",
        "/api/..",
    ] {
        let resp = client::get(&gw.url(path)).await;
        assert_eq!(resp.status_u16(), 400, "{path}: {}", resp.text());
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(
            resp.header("x-fxa-gateway-error"),
            Some("bad-request"),
            "{path}"
        );
        assert!(resp.header("x-request-id").is_some(), "{path}");
        let v = resp.json();
        assert_eq!(
            (
                v["code"].clone(),
                v["errno"].clone(),
                v["error"].clone(),
                v["message"].clone()
            ),
            (
                json!(400),
                json!(999),
                json!("Bad Request"),
                json!("Bad Request")
            ),
            "{path}"
        );
    }
    // A backslash is not a valid URI byte for the client library: send it raw.
    let raw = raw_exchange(
        gw.addr,
        b"GET /api/v1/a\\..\\admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        RAW_WAIT,
    )
    .await;
    assert_raw_bad_request(&raw);
    assert_eq!(fake.request_count(), 0, "a tricky path reached upstream");
    // Dots inside a segment are ordinary.
    assert_eq!(
        client::get(&gw.url("/api/v1/file..name.txt"))
            .await
            .status_u16(),
        200
    );
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn absolute_form_request_target_is_handled_without_panic() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().echo());
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let raw = raw_exchange(
        gw.addr,
        b"GET http://other.example/api/v1/x?q=1 HTTP/1.1\r\nHost: other.example\r\n\
          Connection: close\r\n\r\n",
        RAW_WAIT,
    )
    .await;
    if assert_refused_or_served(&raw) == 200 {
        let seen = fake.last_request().expect("forwarded");
        assert_eq!(seen.path_and_query(), "/v1/x?q=1");
        // The upstream's own host, never the one named in the target.
        assert_eq!(seen.header("host"), Some(fake.addr().to_string().as_str()));
    }
    // An absolute target whose path has dot segments is refused like any other.
    let raw = raw_exchange(
        gw.addr,
        b"GET http://other.example/api/v1/../admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        RAW_WAIT,
    )
    .await;
    assert_raw_bad_request(&raw);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn asterisk_and_authority_form_targets_get_400_errno_json() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for request in [
        &b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\nConnection: close\r\n\r\n",
    ] {
        let raw = raw_exchange(gw.addr, request, RAW_WAIT).await;
        assert_raw_bad_request(&raw);
    }
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

// === slow and idle clients ===

#[tokio::test]
async fn slowloris_partial_head_gets_408_errno_json_then_close() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&limited_config(
        &fake.url(),
        "header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"",
    ))
    .await;
    let mut stream = connect(gw.addr).await;
    stream
        .write_all(b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .expect("write partial head");
    let (raw, closed, after) = read_until_close(&mut stream, RAW_WAIT).await;
    assert!(closed, "connection left open after the header timeout");
    assert!(
        after >= Duration::from_millis(250) && after < Duration::from_millis(1000),
        "closed after {after:?}, expected about 300ms"
    );
    assert_raw_errno(
        &raw,
        408,
        999,
        "Request header not received in time",
        "header-timeout",
    );
    assert_eq!(raw_status_codes(&raw), vec![408]);
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn dripping_a_head_byte_by_byte_does_not_extend_the_header_deadline() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&limited_config(
        &fake.url(),
        "header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"",
    ))
    .await;
    let mut stream = connect(gw.addr).await;
    let started = Instant::now();
    let head = b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Drip: aaaaaaaaaaaaaaaaaaaa";
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err()
            || started.elapsed() > Duration::from_millis(700)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (raw, closed, _) = read_until_close(&mut stream, RAW_WAIT).await;
    let total = started.elapsed();
    assert!(closed, "dripping client kept the connection open");
    assert!(total < Duration::from_millis(1500), "took {total:?}");
    assert_raw_errno(
        &raw,
        408,
        999,
        "Request header not received in time",
        "header-timeout",
    );
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn idle_connections_are_closed_without_any_bytes() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&limited_config(
        &fake.url(),
        "idle_timeout = \"300ms\"\nheader_read_timeout = \"5s\"",
    ))
    .await;

    // A connection that never sends anything.
    let mut silent = connect(gw.addr).await;
    let (raw, closed, after) = read_until_close(&mut silent, RAW_WAIT).await;
    assert!(closed, "silent connection left open");
    assert!(
        raw.is_empty(),
        "idle close wrote {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        after >= Duration::from_millis(250) && after < Duration::from_millis(1000),
        "{after:?}"
    );

    // A keep-alive connection after one full exchange.
    let mut kept = connect(gw.addr).await;
    kept.write_all(b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write request");
    let (raw, closed, after) = read_until_close(&mut kept, RAW_WAIT).await;
    assert!(closed, "idle keep-alive connection left open");
    assert!(after < Duration::from_millis(1000), "{after:?}");
    assert_eq!(
        raw_status_codes(&raw),
        vec![200],
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let resp = RawResponse::parse(&raw);
    let head_len = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert_eq!(
        raw.len(),
        head_len + resp.body.len(),
        "bytes after the response on an idle close"
    );
    assert_eq!(resp.body, br#"{"ok":true}"#);
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn a_request_waiting_on_a_slow_upstream_is_not_cut_by_the_idle_timeout() {
    let fake = FakeUpstream::start().await;
    fake.push(
        Reply::new()
            .delay(Duration::from_millis(800))
            .body("worth the wait"),
    );
    let gw = TestGateway::start(&limited_config(
        &fake.url(),
        "idle_timeout = \"300ms\"\nheader_read_timeout = \"5s\"",
    ))
    .await;
    let resp = client::get(&gw.url("/api/v1/slow")).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(resp.text(), "worth the wait");
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn a_slow_body_upload_is_not_cut_by_the_header_timeout() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().echo());
    let gw = TestGateway::start(&limited_config(
        &fake.url(),
        "header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"",
    ))
    .await;
    let mut stream = connect(gw.addr).await;
    stream
        .write_all(b"POST /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nab")
        .await
        .expect("write head");
    tokio::time::sleep(Duration::from_millis(450)).await;
    stream.write_all(b"cd").await.expect("write rest of body");
    let (raw, closed, _) = read_until_close(&mut stream, RAW_WAIT).await;
    assert!(closed);
    assert_eq!(
        raw_status_codes(&raw),
        vec![200],
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(fake.last_request().expect("forwarded").body_str(), "abcd");
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn many_malformed_connections_at_once_leave_the_gateway_serving() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let inputs: [&[u8]; 5] = [
        b"GARBAGE\r\n\r\n",
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x00\x00\x00\x00\r\n\r\n",
        b"GET /api/v1/%2e%2e HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let addr = gw.addr;
        let input = inputs[i % inputs.len()];
        tasks.push(tokio::spawn(async move {
            raw_exchange(addr, input, RAW_WAIT).await
        }));
    }
    for task in tasks {
        let raw = task.await.expect("raw exchange task");
        let codes = raw_status_codes(&raw);
        assert!(
            codes.len() <= 1 && codes.iter().all(|c| *c == 400),
            "{codes:?}"
        );
    }
    assert_eq!(fake.request_count(), 0);
    assert_still_serves(&gw, &fake).await;
}

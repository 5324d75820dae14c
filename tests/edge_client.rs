//! The client side of connections (issue 14, sections 3 and 4): errno JSON on every request of
//! a connection (HTTP/1.1 plain and TLS, pipelined or not; HTTP/2 header lists), and slow or
//! stalled clients (header deadline on every head, bare-LF heads, trickling bodies, clients that
//! stop reading, the connection cap across listeners and per peer). All through real sockets.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use support::TestGateway;
use support::client::{Alpn, CertPaths, TestCerts};
use support::fake::{FakeUpstream, Reply};
use support::raw::{self, RawResponse};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

// === helpers ===

const API_ROUTE: &str = r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1", "v2"]
"#;

/// One plain listener, the `/api` route to `upstream_url`, the upstream's own keys and the
/// given `[limits]` keys.
fn config(upstream_url: &str, upstream_keys: &str, limits: &str) -> String {
    format!(
        r#"
[server]
drain_timeout = "1s"

[[listeners]]
name = "test"
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "api"
url = "{upstream_url}"
connect_timeout = "1s"
{upstream_keys}

{API_ROUTE}

[limits]
{limits}
"#
    )
}

/// A gateway with the given `[limits]` in front of a fake answering 200 `ok`.
async fn gateway(limits: &str) -> (FakeUpstream, TestGateway) {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body("ok"));
    let gw = TestGateway::start(&config(&fake.url(), "response_timeout = \"2s\"", limits)).await;
    (fake, gw)
}

const WAIT: Duration = Duration::from_secs(5);

/// Reads one response (framed by `Content-Length`; without one, up to the close).
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> RawResponse {
    tokio::time::timeout(WAIT, read_response_inner(stream))
        .await
        .expect("a response in time")
}

async fn read_response_inner<S: AsyncRead + Unpin>(stream: &mut S) -> RawResponse {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read");
        assert!(
            n == 1,
            "closed before a complete head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let (status, headers) = raw::parse_head(&String::from_utf8_lossy(&buf));
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().expect("content-length"));
    let mut body = Vec::new();
    match len {
        Some(len) => {
            body.resize(len, 0);
            stream.read_exact(&mut body).await.expect("body");
        }
        None => {
            stream.read_to_end(&mut body).await.expect("body");
        }
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Whether the peer closes the stream (EOF or reset) within `limit`.
async fn closes<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut sink = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

const GOOD: &[u8] = b"GET /api/v1/x HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Heads hyper cannot take, each answered by hyper itself (400 or 431) before the pipeline.
fn malformed_heads() -> Vec<(&'static str, Vec<u8>, u16)> {
    let long_target = format!(
        "GET /api/v1/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    let big_head = format!(
        "GET /api/v1/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    vec![
        ("bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "header without a colon",
            b"GET /api/v1/x HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n".to_vec(),
            400,
        ),
        ("head over max_header_bytes", big_head.into_bytes(), 431),
        ("target too long", long_target.into_bytes(), 431),
        (
            "invalid Content-Length",
            b"POST /api/v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
    ]
}

/// On `stream`: a good request answered 200, then `bad`, answered with errno JSON and a close.
async fn second_request_gets_errno<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    what: &str,
    bad: &[u8],
    status: u16,
) {
    stream.write_all(GOOD).await.unwrap();
    let first = read_response(stream).await;
    assert_eq!(first.status, 200, "{what}: first request {first:?}");
    stream.write_all(bad).await.unwrap();
    let second = read_response(stream).await;
    second.assert_errno(status, 999);
    assert!(closes(stream, WAIT).await, "{what}: connection stays open");
}

// === section 3: errno JSON on every request of a connection ===

#[tokio::test]
async fn a_malformed_second_head_on_a_keep_alive_connection_gets_errno_json() {
    let (_fake, gw) = gateway("").await;
    for (what, bad, status) in malformed_heads() {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        second_request_gets_errno(&mut stream, what, &bad, status).await;
    }
}

#[tokio::test]
async fn a_malformed_head_pipelined_behind_good_requests_gets_errno_json() {
    let (fake, gw) = gateway("").await;
    // A large first answer, read only after everything was sent: the gateway's writes of it
    // wait on the client while the bad head is already there.
    fake.on("/v1/big", Reply::new().body(vec![b'x'; 4 << 20]));
    for (what, bad, status) in malformed_heads() {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        let mut all = b"GET /api/v1/big HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        all.extend_from_slice(GOOD);
        all.extend_from_slice(&bad);
        stream.write_all(&all).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let big = read_response(&mut stream).await;
        assert_eq!((big.status, big.body.len()), (200, 4 << 20), "{what}");
        let good = read_response(&mut stream).await;
        assert_eq!(
            (good.status, good.body.as_slice()),
            (200, &b"ok"[..]),
            "{what}"
        );
        read_response(&mut stream).await.assert_errno(status, 999);
        assert!(closes(&mut stream, WAIT).await, "{what}");
    }
}

fn tls_config(upstream_url: &str, paths: &CertPaths, limits: &str) -> String {
    format!(
        r#"
[server]
drain_timeout = "1s"

[[listeners]]
name = "edge"
addr = "127.0.0.1:0"

[listeners.tls]
[[listeners.tls.certificates]]
cert = {cert:?}
key = {{ file = {key:?} }}
server_names = ["localhost"]

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "api"
url = "{upstream_url}"
connect_timeout = "1s"
response_timeout = "2s"

{API_ROUTE}

[limits]
{limits}
"#,
        cert = paths.cert.display().to_string(),
        key = paths.key.display().to_string(),
    )
}

struct TlsSetup {
    _dir: tempfile::TempDir,
    certs: TestCerts,
    _fake: FakeUpstream,
    gw: TestGateway,
}

async fn tls_gateway(limits: &str) -> TlsSetup {
    let dir = tempfile::TempDir::new().unwrap();
    let certs = TestCerts::new(&["localhost"]);
    let paths = certs.write_to(dir.path());
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body("ok"));
    let toml = tls_config(&fake.url(), &paths, limits);
    let gw = TestGateway::start_in(&toml, Path::new(dir.path())).await;
    TlsSetup {
        _dir: dir,
        certs,
        _fake: fake,
        gw,
    }
}

async fn raw_tls(setup: &TlsSetup) -> tokio_rustls::client::TlsStream<TcpStream> {
    raw::tls_connect(setup.gw.addr, &setup.certs.ca_cert_pem, b"http/1.1").await
}

#[tokio::test]
async fn a_malformed_second_head_over_tls_gets_errno_json() {
    let setup = tls_gateway("").await;
    for (what, bad, status) in malformed_heads() {
        let mut stream = raw_tls(&setup).await;
        second_request_gets_errno(&mut stream, what, &bad, status).await;
    }
}

#[tokio::test]
async fn an_http2_header_list_over_the_limit_gets_errno_431_json() {
    let setup = tls_gateway("h2_max_header_list_size = \"4KiB\"").await;
    let client = setup.certs.client(Alpn::H2);
    let value = "v".repeat(5000);
    let resp = client
        .send(
            setup.gw.addr,
            "localhost",
            "GET",
            "/api/v1/x",
            &[("x-big", value.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status_u16(), 431);
    assert!(resp.header("x-fxa-gateway-error").is_some());
    assert!(resp.header("x-request-id").is_some());
    assert_eq!(resp.json()["errno"], 999);
    // Within the limit, served.
    let small = "v".repeat(3000);
    let resp = client
        .send(
            setup.gw.addr,
            "localhost",
            "GET",
            "/api/v1/x",
            &[("x-big", small.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status_u16(), 200);
}

/// Beyond the h2 crate's own limit (twice the configured one) the stream is reset: never a
/// bare `:status 431` without the errno body (h2 answers one of its own unless patched,
/// see vendor/PATCHES.md).
#[tokio::test]
async fn an_http2_header_list_over_h2s_own_limit_is_reset_not_a_bare_431() {
    let setup = tls_gateway("h2_max_header_list_size = \"4KiB\"").await;
    let client = setup.certs.client(Alpn::H2);
    let value = "v".repeat(12_000);
    let answer = client
        .try_send(
            setup.gw.addr,
            "localhost",
            "GET",
            "/api/v1/x",
            &[("x-big", value.as_str())],
            Bytes::new(),
        )
        .await;
    match answer {
        Err(e) => {
            let reason = format!("{e:?}");
            assert!(reason.contains("PROTOCOL_ERROR"), "reset reason: {reason}");
        }
        Ok(resp) => panic!(
            "an answer instead of a reset: {} {:?}",
            resp.status_u16(),
            resp.text()
        ),
    }
    // The connection's other streams, and new ones, are still served.
    let resp = client.get(setup.gw.addr, "localhost", "/api/v1/x").await;
    assert_eq!(resp.status_u16(), 200);
}

// === section 4: slow and stalled clients ===

/// Writes `bytes` one at a time, `gap` apart, until done or the peer is gone.
async fn drip<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8], gap: Duration) {
    for b in bytes {
        if stream.write_all(&[*b]).await.is_err() {
            return;
        }
        tokio::time::sleep(gap).await;
    }
}

const SLOW_HEAD: &[u8] = b"GET /api/v1/second HTTP/1.1\r\nHost: localhost\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

#[tokio::test]
async fn the_header_deadline_applies_to_every_head_of_a_connection() {
    let (fake, gw) = gateway("header_read_timeout = \"300ms\"").await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(GOOD).await.unwrap();
    assert_eq!(read_response(&mut rd).await.status, 200);
    let started = Instant::now();
    let dripping =
        tokio::spawn(async move { drip(&mut wr, SLOW_HEAD, Duration::from_millis(40)).await });
    read_response(&mut rd).await.assert_errno(408, 999);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "cut after {took:?}");
    assert!(closes(&mut rd, WAIT).await);
    dripping.abort();
    assert_eq!(
        fake.request_count(),
        1,
        "the dripped head never reached the upstream"
    );
}

#[tokio::test]
async fn dripping_second_heads_do_not_fill_the_connection_cap() {
    let (_fake, gw) = gateway("header_read_timeout = \"300ms\"\nmax_connections = 50").await;
    let mut drippers = Vec::new();
    for _ in 0..50 {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        wr.write_all(GOOD).await.unwrap();
        assert_eq!(read_response(&mut rd).await.status, 200);
        drippers.push(tokio::spawn(async move {
            let _rd = rd;
            drip(&mut wr, SLOW_HEAD, Duration::from_millis(50)).await
        }));
    }
    // Every slot is taken by a dripping client; they are cut at their header deadline.
    let started = Instant::now();
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(GOOD).await.unwrap();
    let resp = read_response(&mut stream).await;
    assert_eq!(resp.status, 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    for d in drippers {
        d.abort();
    }
}

#[tokio::test]
async fn a_bare_lf_head_is_answered_by_the_upstream_not_by_a_408() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body("slow").delay(Duration::from_millis(700)));
    let toml = config(
        &fake.url(),
        "response_timeout = \"3s\"",
        "header_read_timeout = \"200ms\"",
    );
    let gw = TestGateway::start(&toml).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /api/v1/x HTTP/1.1\nHost: localhost\n\n")
        .await
        .unwrap();
    let resp = read_response(&mut stream).await;
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"slow"[..]),
        "{resp:?}"
    );
    assert_eq!(fake.request_count(), 1);
    // And the next bare-LF request on the connection is served too.
    stream
        .write_all(b"GET /api/v1/y HTTP/1.1\nHost: localhost\n\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
}

/// A POST declaring 100 bytes that sends 10 and stalls.
async fn stalled_post(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn a_trickling_body_gets_408_after_the_body_read_timeout() {
    let (_fake, gw) = gateway("body_read_timeout = \"300ms\"").await;
    let started = Instant::now();
    let mut stream = stalled_post(gw.addr).await;
    read_response(&mut stream).await.assert_errno(408, 999);
    let took = started.elapsed();
    // Before the upstream's 2 s response timeout, which would have blamed the upstream.
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_trickling_chunked_body_gets_408_after_the_body_read_timeout() {
    let (_fake, gw) = gateway("body_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    read_response(&mut stream).await.assert_errno(408, 999);
}

#[tokio::test]
async fn the_upstream_timeout_while_the_body_is_incomplete_is_the_clients_408() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body("ok"));
    let toml = config(&fake.url(), "response_timeout = \"300ms\"", "");
    let gw = TestGateway::start(&toml).await;
    let mut stream = stalled_post(gw.addr).await;
    read_response(&mut stream).await.assert_errno(408, 999);
    // An upstream that is slow after the whole body arrived is still the upstream's 504.
    fake.set_default(Reply::new().body("late").delay(Duration::from_secs(1)));
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    read_response(&mut stream).await.assert_errno(504, 203);
}

/// A client with a small receive buffer that asks for `path` and then reads nothing.
async fn non_reader(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn clients_that_stop_reading_do_not_lock_everyone_out_of_an_upstream() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body("ok"));
    fake.on("/v1/big", Reply::new().body(vec![b'x'; 32 << 20]));
    let toml = config(
        &fake.url(),
        "response_timeout = \"5s\"\nmax_connections = 4",
        "send_timeout = \"500ms\"",
    );
    let gw = TestGateway::start(&toml).await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(non_reader(gw.addr, "/api/v1/big").await);
    }
    assert!(fake.wait_for_requests(4, WAIT).await);
    // Four answers sit in the pipes; the clients read nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(GOOD).await.unwrap();
    let resp = read_response(&mut stream).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The stalled clients' connections were closed (what was sent before is still there to
    // read, then the end).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for mut s in stalled {
        assert!(closes(&mut s, WAIT).await);
    }
}

/// How many requests the fake has seen once the count has stopped moving for `still`.
async fn settled_request_count(fake: &FakeUpstream, still: Duration) -> usize {
    let mut last = fake.request_count();
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::time::sleep(still).await;
        let now = fake.request_count();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn a_client_that_pipelines_and_never_reads_gets_little_work_done_for_it() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body(vec![b'x'; 1024]));
    let toml = config(
        &fake.url(),
        "response_timeout = \"2s\"",
        "max_unsent_bytes = \"16KiB\"\nsend_timeout = \"30s\"",
    );
    let gw = TestGateway::start(&toml).await;
    // 4,000 pipelined requests (about 4 MiB of answers) in one go, from a client whose
    // receive buffer is small and which never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gw.addr).await.unwrap();
    let (_read_half, mut write_half) = stream.into_split();
    let requests = b"GET /api/v1/item HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4000);
    let writer = tokio::spawn(async move {
        // Blocks once the gateway stops reading: that is the point.
        let _ = write_half.write_all(&requests).await;
        write_half
    });
    assert!(fake.wait_for_requests(1, WAIT).await);
    let worked = settled_request_count(&fake, Duration::from_millis(300)).await;
    // What fits unsent (16 KiB) and in the client's window, a few dozen answers of 1 KiB;
    // the kernel's autotuned send buffer alone would hold thousands.
    assert!(
        worked < 200,
        "{worked} requests worked out for a client that reads nothing"
    );
    // The gateway still serves everyone else.
    let mut other = TcpStream::connect(gw.addr).await.unwrap();
    other.write_all(GOOD).await.unwrap();
    assert_eq!(read_response(&mut other).await.status, 200);
    writer.abort();
}

#[tokio::test]
async fn max_connections_counts_across_listeners_and_the_rest_wait() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body("ok"));
    let toml = format!(
        "{}\n[[listeners]]\nname = \"second\"\naddr = \"127.0.0.1:0\"\n",
        config(
            &fake.url(),
            "response_timeout = \"2s\"",
            "max_connections = 4"
        )
    );
    let gw = TestGateway::start(&toml).await;
    assert_eq!(gw.addrs.len(), 2);
    let mut open = Vec::new();
    for i in 0..4 {
        let mut stream = TcpStream::connect(gw.addrs[i % 2]).await.unwrap();
        stream.write_all(GOOD).await.unwrap();
        assert_eq!(
            read_response(&mut stream).await.status,
            200,
            "connection {i}"
        );
        open.push(stream);
    }
    // A fifth waits (in the backlog) until one of the four closes.
    let mut fifth = TcpStream::connect(gw.addrs[1]).await.unwrap();
    fifth.write_all(GOOD).await.unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), fifth.read(&mut first)).await;
    assert!(early.is_err(), "a fifth connection was served over the cap");
    drop(open.pop());
    let resp = read_response(&mut fifth).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn one_peer_address_cannot_take_every_slot() {
    let (_fake, gw) = gateway("max_connections = 10\nmax_connections_per_peer = 3").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(GOOD).await.unwrap();
        assert_eq!(read_response(&mut stream).await.status, 200);
        open.push(stream);
    }
    // The fourth from the same address is closed at once.
    let mut fourth = TcpStream::connect(gw.addr).await.unwrap();
    let _ = fourth.write_all(GOOD).await;
    assert!(closes(&mut fourth, WAIT).await);
    // Another address still gets in.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(gw.addr).await.unwrap();
    other.write_all(GOOD).await.unwrap();
    assert_eq!(read_response(&mut other).await.status, 200);
    // Counted in the metrics.
    let metrics = support::client::get(&gw.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("fxa_gateway_refused_connections_total 1"),
        "{metrics}"
    );
    // A slot given back is usable again.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(gw.addr).await.unwrap();
    again.write_all(GOOD).await.unwrap();
    assert_eq!(read_response(&mut again).await.status, 200);
}

#[test]
fn max_connections_per_peer_defaults_below_the_total_and_may_not_exceed_it() {
    let base = config("http://127.0.0.1:1", "", "max_connections = 50");
    let parse =
        |toml: &str| fxa_gateway::config::parse_str(toml, Path::new("t.toml"), Path::new("."));
    let c = parse(&base).expect("valid");
    assert_eq!(c.limits.max_connections_per_peer, 50);
    assert_eq!(c.limits.body_read_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.send_timeout, Duration::from_secs(60));
    let c = parse(&config("http://127.0.0.1:1", "", "")).expect("valid");
    assert_eq!(c.limits.max_connections_per_peer, 1000);
    let err = parse(&config(
        "http://127.0.0.1:1",
        "",
        "max_connections = 50\nmax_connections_per_peer = 51",
    ))
    .expect_err("over the total");
    assert!(
        err.to_string()
            .contains("limits.max_connections_per_peer: must not be above limits.max_connections"),
        "{err}"
    );
    let err = parse(&config("http://127.0.0.1:1", "", "send_timeout = \"0s\"")).expect_err("zero");
    assert!(err.to_string().contains("limits.send_timeout"), "{err}");
    assert_eq!(c.limits.max_unsent_bytes, 16 * 1024);
    let err = parse(&config(
        "http://127.0.0.1:1",
        "",
        "max_unsent_bytes = \"1KiB\"",
    ))
    .expect_err("too small");
    assert!(
        err.to_string()
            .contains(r#"limits.max_unsent_bytes: must be from "4KiB" to "64MiB""#),
        "{err}"
    );
}

// --- HTTP/2 by hand: a client that opens no flow-control window ---

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK literal fields without indexing, no Huffman (names and values under 127 bytes).
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

async fn raw_h2(setup: &TlsSetup) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tls = raw::tls_connect(setup.gw.addr, &setup.certs.ca_cert_pem, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

#[tokio::test]
async fn an_http2_stream_the_client_gives_no_window_is_reset_and_frees_the_upstream() {
    let dir = tempfile::TempDir::new().unwrap();
    let certs = TestCerts::new(&["localhost"]);
    let paths = certs.write_to(dir.path());
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().body("ok"));
    fake.on("/v1/big", Reply::new().body(vec![b'x'; 1 << 20]));
    let toml = tls_config(&fake.url(), &paths, "send_timeout = \"500ms\"").replace(
        "response_timeout = \"2s\"",
        "response_timeout = \"2s\"\nmax_connections = 1",
    );
    let gw = TestGateway::start_in(&toml, dir.path()).await;
    let setup = TlsSetup {
        _dir: dir,
        certs,
        _fake: fake,
        gw,
    };

    let mut h2 = raw_h2(&setup).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may send DATA until a WINDOW_UPDATE.
    hello.extend(h2_frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    let head = hpack(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/api/v1/big"),
    ]);
    hello.extend(h2_frame(0x1, 0x5, 1, &head));
    h2.write_all(&hello).await.unwrap();
    let started = Instant::now();
    let (mut headers, mut reset) = (false, None);
    while reset.is_none() && started.elapsed() < WAIT {
        let mut fh = [0u8; 9];
        if tokio::time::timeout(WAIT, h2.read_exact(&mut fh))
            .await
            .is_err()
        {
            break;
        }
        let len = (usize::from(fh[0]) << 16) | (usize::from(fh[1]) << 8) | usize::from(fh[2]);
        let (kind, flags) = (fh[3], fh[4]);
        let stream = u32::from_be_bytes([fh[5], fh[6], fh[7], fh[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        h2.read_exact(&mut payload).await.unwrap();
        match (kind, stream) {
            (0x4, 0) if flags & 1 == 0 => h2.write_all(&h2_frame(0x4, 1, 0, &[])).await.unwrap(),
            (0x1, 1) => headers = true,
            (0x3, 1) => reset = Some(started.elapsed()),
            (0x0, 1) => panic!("DATA without a window"),
            _ => {}
        }
    }
    assert!(headers, "no response head");
    let reset = reset.expect("the stalled stream was never reset");
    assert!(reset >= Duration::from_millis(400), "reset after {reset:?}");

    // The upstream's only connection slot is free again, and the connection still serves.
    let client = setup.certs.client(Alpn::H2);
    let resp = client.get(setup.gw.addr, "localhost", "/api/v1/x").await;
    assert_eq!(resp.status_u16(), 200);
    let ping = h2_frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    h2.write_all(&ping).await.unwrap();
    let mut fh = [0u8; 9];
    h2.read_exact(&mut fh)
        .await
        .expect("the connection is still open");
}

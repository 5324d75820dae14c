//! Self-tests of the test support: the fake upstream and the test clients.

#[path = "support/client.rs"]
mod client;
#[path = "support/fake.rs"]
mod fake;

use std::time::{Duration, Instant};

use client::{
    ALPN_H2, ALPN_HTTP1, Alpn, TestCerts, TestClient, TestConnection, get, raw_exchange,
    raw_status_codes, send, try_send,
};
use fake::{FakeUpstream, Reply};
use http::Version;
use serde_json::json;

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn default_reply_is_ok_json() {
    let fake = FakeUpstream::start().await;
    let resp = get(&format!("{}/anything", fake.url())).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json(), json!({"ok": true}));
    assert_eq!(fake.request_count(), 1);
    assert_eq!(fake.requests()[0].path(), "/anything");
}

#[tokio::test]
async fn routes_script_status_headers_and_body() {
    let fake = FakeUpstream::start().await;
    fake.on(
        "/v1",
        Reply::new()
            .status(201)
            .header("x-one", "1")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body("v1 body"),
    );
    fake.on(
        "/v1/account",
        Reply::new().status(404).json(json!({"errno": 102})),
    );

    let resp = get(&format!("{}/v1/thing", fake.url())).await;
    assert_eq!(resp.status_u16(), 201);
    assert_eq!(resp.header("x-one"), Some("1"));
    assert_eq!(resp.header_all("set-cookie"), vec!["a=1", "b=2"]);
    assert_eq!(resp.text(), "v1 body");
    assert_eq!(resp.header("content-length"), Some("7"));

    // Longest prefix wins.
    let resp = get(&format!("{}/v1/account/status?x=1", fake.url())).await;
    assert_eq!(resp.status_u16(), 404);
    assert_eq!(resp.json(), json!({"errno": 102}));

    // Re-registering a prefix replaces it; unmatched paths use the default.
    fake.on("/v1", Reply::new().status(202));
    assert_eq!(get(&format!("{}/v1/x", fake.url())).await.status_u16(), 202);
    assert_eq!(
        get(&format!("{}/other", fake.url())).await.status_u16(),
        200
    );

    fake.set_default(Reply::new().status(418));
    assert_eq!(
        get(&format!("{}/other", fake.url())).await.status_u16(),
        418
    );
    fake.reset_script();
    assert_eq!(get(&format!("{}/v1/x", fake.url())).await.status_u16(), 200);
}

#[tokio::test]
async fn queued_replies_are_consumed_in_order_before_routes() {
    let fake = FakeUpstream::start().await;
    fake.on("/", Reply::new().status(204));
    fake.push(Reply::new().status(503));
    fake.push(Reply::new().status(502));
    assert_eq!(fake.queued(), 2);

    let url = format!("{}/retry", fake.url());
    let statuses = [
        get(&url).await.status_u16(),
        get(&url).await.status_u16(),
        get(&url).await.status_u16(),
    ];
    assert_eq!(statuses, [503, 502, 204]);
    assert_eq!(fake.queued(), 0);
}

#[tokio::test]
async fn echo_describes_the_request() {
    let fake = FakeUpstream::start().await;
    fake.on(
        "/echo",
        Reply::new().status(207).header("x-echo", "yes").echo(),
    );
    let resp = send(
        "POST",
        &format!("{}/echo/path?q=1&r=2", fake.url()),
        &[
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("content-type", "text/plain"),
        ],
        "hello body",
    )
    .await;
    assert_eq!(resp.status_u16(), 207);
    assert_eq!(resp.header("x-echo"), Some("yes"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let echo = resp.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/echo/path?q=1&r=2");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["body"], "hello body");
    assert_eq!(echo["headers"]["x-multi"], json!(["a", "b"]));
    assert_eq!(echo["headers"]["content-type"], json!(["text/plain"]));
    assert_eq!(echo["headers"]["content-length"], json!(["10"]));
}

#[tokio::test]
async fn records_requests_and_chunked_bodies() {
    let fake = FakeUpstream::start().await;
    let raw = b"PUT /upload?id=7 HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\
                X-Dup: 1\r\nX-Dup: 2\r\nConnection: close\r\n\r\n\
                5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let out = raw_exchange(fake.addr(), raw, SHORT).await;
    assert_eq!(raw_status_codes(&out), vec![200]);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method, http::Method::PUT);
    assert_eq!(req.path_and_query(), "/upload?id=7");
    assert_eq!(req.version, Version::HTTP_11);
    assert_eq!(req.header("host"), Some("up.test"));
    assert_eq!(req.header_all("x-dup"), vec!["1", "2"]);
    assert_eq!(req.body_str(), "hello world");
    assert_eq!(req.connection, 1);
    assert_eq!(fake.last_request().unwrap().body_str(), "hello world");
    fake.clear_requests();
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let fake = FakeUpstream::start().await;
    let client = TestClient::new();
    for _ in 0..3 {
        assert_eq!(
            client.get(&format!("{}/a", fake.url())).await.status_u16(),
            200
        );
    }
    assert_eq!(fake.connection_count(), 1);
    assert!(fake.requests().iter().all(|r| r.connection == 1));

    // Fresh clients open fresh connections.
    get(&format!("{}/b", fake.url())).await;
    assert_eq!(fake.connection_count(), 2);

    // An explicit connection carries successive requests too.
    let mut conn = TestConnection::http1(fake.addr()).await.unwrap();
    conn.get("/c").await;
    conn.send("POST", "/d", &[], "x").await;
    assert_eq!(fake.connection_count(), 3);
    assert_eq!(
        fake.last_request().unwrap().header("host"),
        Some(&*fake.addr().to_string())
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let fake = FakeUpstream::start().await;
    let resp = TestClient::h2c().get(&format!("{}/h2c", fake.url())).await;
    assert_eq!(resp.version, Version::HTTP_2);
    let mut conn = TestConnection::h2c(fake.addr()).await.unwrap();
    assert_eq!(conn.get("/again").await.version, Version::HTTP_2);
    assert!(fake.requests().iter().all(|r| r.version == Version::HTTP_2));
}

#[tokio::test]
async fn delay_holds_the_response_head() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().delay(Duration::from_millis(150)));
    let started = Instant::now();
    let resp = get(&format!("{}/slow", fake.url())).await;
    assert_eq!(resp.status_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    // The request is recorded before the delay elapses.
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn stall_mid_body_sends_a_prefix_then_waits() {
    let fake = FakeUpstream::start().await;
    fake.push(
        Reply::new()
            .body("-second")
            .stall_mid_body("first", Duration::from_millis(150)),
    );
    let raw = format!("GET /s HTTP/1.1\r\nHost: {}\r\n\r\n", fake.addr());

    // Before the stall ends, only the head and the first part have arrived.
    let early = raw_exchange(fake.addr(), raw.as_bytes(), Duration::from_millis(60)).await;
    let early = String::from_utf8_lossy(&early);
    assert!(early.starts_with("HTTP/1.1 200 OK\r\n"), "{early}");
    assert!(
        early
            .to_ascii_lowercase()
            .contains("content-length: 12\r\n"),
        "{early}"
    );
    assert!(early.ends_with("\r\n\r\nfirst"), "{early}");

    // Through a client, the whole body eventually arrives.
    fake.push(
        Reply::new()
            .body("-second")
            .stall_mid_body("first", Duration::from_millis(100)),
    );
    let started = Instant::now();
    let resp = get(&format!("{}/s", fake.url())).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(resp.text(), "first-second");
}

#[tokio::test]
async fn drop_connection_closes_without_answer() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().drop_connection());
    let err = try_send("POST", &format!("{}/gone", fake.url()), &[], "payload")
        .await
        .expect_err("connection must be closed without a response");
    assert!(!err.to_string().is_empty());
    // The request (with its body) was read and recorded first.
    assert_eq!(fake.requests()[0].body_str(), "payload");

    fake.push(Reply::new().drop_connection());
    let raw = format!("GET /gone HTTP/1.1\r\nHost: {}\r\n\r\n", fake.addr());
    let out = raw_exchange(fake.addr(), raw.as_bytes(), SHORT).await;
    assert!(out.is_empty(), "{out:?}");

    // Subsequent requests get the normal reply again.
    assert_eq!(get(&format!("{}/ok", fake.url())).await.status_u16(), 200);
}

#[tokio::test]
async fn raw_reply_writes_garbage_then_closes() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().raw("NOT HTTP\r\n\r\n"));
    let raw = format!("GET /raw HTTP/1.1\r\nHost: {}\r\n\r\n", fake.addr());
    let started = Instant::now();
    let out = raw_exchange(fake.addr(), raw.as_bytes(), SHORT).await;
    assert_eq!(out, b"NOT HTTP\r\n\r\n");
    assert!(
        started.elapsed() < SHORT,
        "the fake must close after the raw bytes"
    );

    fake.push(Reply::new().raw("NOT HTTP\r\n\r\n"));
    let err = try_send("GET", &format!("{}/raw", fake.url()), &[], "")
        .await
        .expect_err("garbage is not a response");
    assert!(!err.to_string().is_empty());
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn raw_reply_can_be_a_hand_written_response() {
    let fake = FakeUpstream::start().await;
    fake.push(
        Reply::new()
            .raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Raw: 1\r\nConnection: close\r\n\r\nhi"),
    );
    let resp = get(&format!("{}/raw", fake.url())).await;
    assert_eq!(resp.header("x-raw"), Some("1"));
    assert_eq!(resp.text(), "hi");
}

#[tokio::test]
async fn wait_for_requests_and_refusing_address() {
    let fake = FakeUpstream::start().await;
    assert!(!fake.wait_for_requests(1, Duration::from_millis(50)).await);
    let url = format!("{}/later", fake.url());
    let task = tokio::spawn(async move { get(&url).await.status_u16() });
    assert!(fake.wait_for_requests(1, SHORT).await);
    assert_eq!(task.await.unwrap(), 200);

    let refused = FakeUpstream::refusing();
    assert!(
        try_send("GET", &format!("http://{refused}/"), &[], "")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tls_negotiates_h2_or_http1_by_alpn() {
    let certs = TestCerts::new(&["upstream.test", "localhost"]);
    let fake = FakeUpstream::start_tls(certs.server_config(&[ALPN_H2, ALPN_HTTP1])).await;
    fake.on("/", Reply::new().echo());
    assert!(fake.url().starts_with("https://127.0.0.1:"));

    let resp = certs
        .client(Alpn::H2)
        .get(fake.addr(), "upstream.test", "/h2")
        .await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.json()["version"], "HTTP/2.0");
    assert_eq!(
        fake.last_request()
            .unwrap()
            .uri
            .authority()
            .unwrap()
            .as_str(),
        format!("upstream.test:{}", fake.addr().port())
    );

    let resp = certs
        .client(Alpn::Both)
        .get(fake.addr(), "localhost", "/both")
        .await;
    assert_eq!(resp.version, Version::HTTP_2);

    let resp = certs
        .client(Alpn::Http1)
        .get(fake.addr(), "127.0.0.1", "/h1")
        .await;
    assert_eq!(resp.version, Version::HTTP_11);
    assert_eq!(fake.last_request().unwrap().version, Version::HTTP_11);

    let resp = certs
        .client(Alpn::None)
        .get(fake.addr(), "upstream.test", "/none")
        .await;
    assert_eq!(resp.version, Version::HTTP_11);

    // h2 multiplexes requests over one connection.
    let before = fake.connection_count();
    let mut conn = certs
        .client(Alpn::H2)
        .connect(fake.addr(), "upstream.test")
        .await
        .unwrap();
    assert_eq!(conn.version(), Version::HTTP_2);
    conn.get("/one").await;
    conn.send("POST", "/two", &[("x-a", "b")], "body").await;
    assert_eq!(fake.connection_count(), before + 1);
    assert_eq!(fake.last_request().unwrap().body_str(), "body");
}

#[tokio::test]
async fn tls_server_without_h2_speaks_http1() {
    let certs = TestCerts::new(&["upstream.test"]);
    let fake = FakeUpstream::start_tls(certs.server_config(&[ALPN_HTTP1])).await;
    let resp = certs
        .client(Alpn::Both)
        .get(fake.addr(), "upstream.test", "/")
        .await;
    assert_eq!(resp.version, Version::HTTP_11);
    assert_eq!(resp.json(), json!({"ok": true}));
}

#[tokio::test]
async fn tls_rejects_untrusted_ca_and_wrong_name() {
    let certs = TestCerts::new(&["upstream.test"]);
    let other = TestCerts::new(&["upstream.test"]);
    let fake = FakeUpstream::start_tls(certs.server_config(&[ALPN_H2, ALPN_HTTP1])).await;
    assert!(
        other
            .client(Alpn::Both)
            .try_send(fake.addr(), "upstream.test", "GET", "/", &[], "")
            .await
            .is_err()
    );
    assert!(
        certs
            .client(Alpn::Both)
            .try_send(fake.addr(), "wrong.test", "GET", "/", &[], "")
            .await
            .is_err()
    );
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn tls_drop_and_raw_work_over_http1() {
    let certs = TestCerts::new(&["upstream.test"]);
    let fake = FakeUpstream::start_tls(certs.server_config(&[ALPN_HTTP1])).await;
    let client = certs.client(Alpn::Http1);
    fake.push(Reply::new().drop_connection());
    assert!(
        client
            .try_send(fake.addr(), "upstream.test", "GET", "/", &[], "")
            .await
            .is_err()
    );
    fake.push(Reply::new().raw("HTTP/1.1 203 X\r\nContent-Length: 0\r\n\r\n"));
    let resp = client.get(fake.addr(), "upstream.test", "/").await;
    assert_eq!(resp.status_u16(), 203);
}

#[tokio::test]
async fn h2_drop_connection_fails_the_stream() {
    let certs = TestCerts::new(&["upstream.test"]);
    let fake = FakeUpstream::start_tls(certs.server_config(&[ALPN_H2])).await;
    fake.push(Reply::new().drop_connection());
    assert!(
        certs
            .client(Alpn::H2)
            .try_send(fake.addr(), "upstream.test", "GET", "/", &[], "")
            .await
            .is_err()
    );
}

#[test]
fn certs_write_to_dir_and_parse_raw_statuses() {
    let certs = TestCerts::new(&["a.test"]);
    let dir = tempfile::tempdir().unwrap();
    let paths = certs.write_to(dir.path());
    assert!(
        std::fs::read_to_string(&paths.ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        std::fs::read_to_string(&paths.cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        std::fs::read_to_string(&paths.key)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(certs.chain_pem().matches("BEGIN CERTIFICATE").count(), 2);
    let (leaf, key) = certs.issue(&["b.test"]);
    assert!(leaf.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));

    let raw = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    assert_eq!(raw_status_codes(raw), vec![400, 200]);
}

#[tokio::test]
async fn concurrent_requests_are_all_served_and_recorded() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().delay(Duration::from_millis(50)).echo());
    let client = TestClient::new();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/n/{i}", fake.url());
            tokio::spawn(async move { client.get(&url).await.json()["uri"].clone() })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), format!("/n/{i}"));
    }
    assert_eq!(fake.request_count(), 20);
    assert!(fake.connection_count() <= 20);
}

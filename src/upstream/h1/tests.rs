//! The gateway's own HTTP/1.1 client: head parsing and framing rules on bytes, then whole
//! exchanges with a scripted peer on a loopback socket (split writes, reuse, closes).

use std::time::Duration;

use bytes::BytesMut;
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn head(bytes: &[u8], head_only: bool) -> Head {
    let mut buf = BytesMut::from(bytes);
    match parse_head(&mut buf, head_only) {
        Ok(Some(head)) => head,
        Ok(None) => panic!("incomplete head"),
        Err(_) => panic!("head refused"),
    }
}

fn refused(bytes: &[u8]) -> bool {
    let mut buf = BytesMut::from(bytes);
    matches!(parse_head(&mut buf, false), Err(Failure::Protocol(_)))
}

#[test]
fn a_complete_head_is_split_off_and_its_values_kept() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\n\
           Content-Length: 2\r\n\r\n{}rest"[..],
    );
    let head = parse_head(&mut buf, false)
        .ok()
        .flatten()
        .expect("complete");
    assert_eq!(head.status, StatusCode::CREATED);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.headers["content-type"], "application/json");
    let all: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(all, ["1", "2"]);
    assert_eq!(head.framing, Framing::Length(2));
    assert!(head.keep_alive);
    assert_eq!(&buf[..], b"{}rest", "only the head is taken");
}

#[test]
fn a_partial_head_waits_for_more() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Len"[..]);
    assert!(matches!(parse_head(&mut buf, false), Ok(None)));
    assert_eq!(buf.len(), 28, "nothing consumed");
}

#[test]
fn malformed_heads_are_protocol_errors() {
    assert!(refused(b"HTTP/1.1 2x0 OK\r\n\r\n"));
    assert!(refused(b"HTTX/1.1 200 OK\r\n\r\n"));
    // Obsolete line folding and a space before the colon: refused, as hyper's client does.
    assert!(refused(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n"));
    assert!(refused(b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n"));
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(refused(&many), "more than {MAX_HEADERS} fields");
}

#[test]
fn content_length_must_be_digits_and_repeats_must_agree() {
    assert_eq!(parse_content_length(b"42"), Some(42));
    assert_eq!(parse_content_length(b"5, 5"), Some(5));
    assert_eq!(parse_content_length(b"5, 6"), None);
    assert_eq!(parse_content_length(b""), None);
    assert_eq!(parse_content_length(b"-1"), None);
    assert_eq!(parse_content_length(b"+1"), None);
    assert_eq!(parse_content_length(b"0x10"), None);
    assert_eq!(parse_content_length(b"99999999999999999999"), None);
    assert_eq!(
        head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            false
        )
        .framing,
        Framing::Length(3)
    );
    assert!(refused(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
    ));
    assert!(refused(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"));
}

#[test]
fn no_body_for_head_requests_204_304_and_1xx() {
    let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(head(cl, true).framing, Framing::None);
    assert_eq!(head(cl, false).framing, Framing::Length(10));
    assert_eq!(
        head(b"HTTP/1.1 204 No Content\r\n\r\n", false).framing,
        Framing::None
    );
    assert_eq!(
        head(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            false
        )
        .framing,
        Framing::None
    );
    assert_eq!(
        head(b"HTTP/1.1 100 Continue\r\n\r\n", false).framing,
        Framing::None
    );
}

#[test]
fn transfer_coding_decides_and_a_length_beside_it_is_dropped() {
    let chunked = head(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        false,
    );
    assert_eq!(chunked.framing, Framing::Chunked);
    assert!(chunked.keep_alive);

    let both = head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
    );
    assert_eq!(both.framing, Framing::Chunked);
    assert!(!both.headers.contains_key("content-length"));
    assert!(
        !both.keep_alive,
        "a message framed twice is not trusted with another"
    );

    let not_last = head(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        false,
    );
    assert_eq!(not_last.framing, Framing::Close);
}

#[test]
fn without_length_or_coding_the_body_runs_to_the_close() {
    assert_eq!(
        head(b"HTTP/1.1 200 OK\r\n\r\n", false).framing,
        Framing::Close
    );
}

#[test]
fn reuse_follows_version_and_connection_tokens() {
    assert!(
        !head(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false
        )
        .keep_alive
    );
    assert!(
        !head(
            b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n",
            false
        )
        .keep_alive
    );
    let old = head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    assert_eq!(old.version, Version::HTTP_10);
    assert!(!old.keep_alive);
    assert!(
        head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false
        )
        .keep_alive
    );
}

#[test]
fn chunk_size_lines() {
    assert_eq!(parse_chunk_size(b"1a\r"), Some(26));
    assert_eq!(parse_chunk_size(b"FF;name=value\r"), Some(255));
    assert_eq!(parse_chunk_size(b"10 ;ext\r"), Some(16));
    assert_eq!(parse_chunk_size(b"0\r"), Some(0));
    assert_eq!(parse_chunk_size(b"1a"), None, "a bare LF is refused");
    assert_eq!(parse_chunk_size(b"\r"), None);
    assert_eq!(parse_chunk_size(b";ext\r"), None);
    assert_eq!(parse_chunk_size(b"1g\r"), None);
    assert_eq!(parse_chunk_size(b"-1\r"), None);
    assert_eq!(parse_chunk_size(b"11111111111111111\r"), None, "17 digits");
    assert_eq!(parse_chunk_size(b"ffffffffffffffff\r"), Some(u64::MAX));
}

#[test]
fn eligibility() {
    let req = |body| Request::builder().uri("/").body(body).unwrap();
    assert!(eligible(&req(UpstreamBody::Empty)));
    assert!(eligible(&req(UpstreamBody::Full(Some(
        Bytes::from_static(b"x")
    )))));
    assert!(!eligible(&req(UpstreamBody::Full(Some(Bytes::from(
        vec![0u8; MAX_INLINE_BODY + 1]
    ))))));
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri("example.com:443")
        .body(UpstreamBody::Empty)
        .unwrap();
    assert!(!eligible(&connect));
}

// === exchanges over a loopback socket ===

/// A peer that takes one connection, and per request reads a head (and `body_len` bytes) and
/// writes the scripted parts, each flushed on its own. Returns the requests it read.
struct Peer {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<(Vec<Vec<u8>>, TcpStream)>,
}

impl Peer {
    async fn start(script: Vec<(usize, Vec<&'static [u8]>)>) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for (body_len, parts) in script {
                let mut req = Vec::new();
                let mut byte = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") {
                    assert_eq!(sock.read(&mut byte).await.unwrap(), 1, "request cut short");
                    req.push(byte[0]);
                }
                let mut body = vec![0u8; body_len];
                sock.read_exact(&mut body).await.unwrap();
                req.extend_from_slice(&body);
                seen.push(req);
                for part in parts {
                    sock.write_all(part).await.unwrap();
                    sock.flush().await.unwrap();
                    // Separate segments, so the client sees the parts in separate reads.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            (seen, sock)
        });
        Peer { addr, task }
    }
}

async fn connect(addr: std::net::SocketAddr) -> Box<Conn> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    Conn::new(TokioIo::new(MaybeHttpsStream::Http(TokioIo::new(tcp))))
}

/// A peer that takes one connection, reads once, writes `parts` (none: no answer) and closes.
async fn answer_and_close(parts: Vec<&'static [u8]>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        for part in parts {
            sock.write_all(part).await.unwrap();
        }
        // Dropped: the close ends the answer.
    });
    addr
}

/// One request on a new connection to `addr`, which must answer with a head.
async fn exchange(
    addr: std::net::SocketAddr,
    req: &Request<UpstreamBody>,
    pool: &Pool,
) -> Response<ResponseBody> {
    match connect(addr).await.send(req, &host(), later(), pool).await {
        Ok(resp) => resp,
        Err(_) => panic!("no answer"),
    }
}

fn get(path: &str) -> Request<UpstreamBody> {
    Request::builder()
        .uri(path)
        .header("x-trace", "t1")
        .body(UpstreamBody::Empty)
        .unwrap()
}

fn pool() -> Pool {
    Pool::new(Duration::from_secs(90), 8)
}

/// A response deadline no exchange here comes near.
fn later() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn host() -> HeaderValue {
    HeaderValue::from_static("upstream.test")
}

async fn body_of(resp: Response<ResponseBody>) -> Result<Bytes, BoxError> {
    resp.into_body().collect().await.map(|c| c.to_bytes())
}

type BoxError = crate::body::BoxError;

#[tokio::test]
async fn request_bytes_on_the_wire() {
    let peer = Peer::start(vec![
        (0, vec![b"HTTP/1.1 204 No Content\r\n\r\n"]),
        (3, vec![b"HTTP/1.1 204 No Content\r\n\r\n"]),
    ])
    .await;
    let pool = pool();
    let conn = connect(peer.addr).await;
    let resp = conn
        .send(&get("/v1/profile?x=1"), &host(), later(), &pool)
        .await
        .ok()
        .unwrap();
    assert_eq!(resp.status(), 204);
    let Some(super::super::pool::Sender::Fast(conn)) = pool.checkout(true) else {
        panic!("the connection went back to the pool");
    };
    let post = Request::builder()
        .method(Method::POST)
        .uri("/v1/token")
        .header("host", "caller.test")
        .header("transfer-encoding", "chunked")
        .header("content-length", "99")
        .body(UpstreamBody::Full(Some(Bytes::from_static(b"a=1"))))
        .unwrap();
    conn.send(&post, &host(), later(), &pool)
        .await
        .ok()
        .unwrap();
    let (seen, _) = peer.task.await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen[0]),
        "GET /v1/profile?x=1 HTTP/1.1\r\nhost: upstream.test\r\nx-trace: t1\r\n\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&seen[1]),
        "POST /v1/token HTTP/1.1\r\nhost: caller.test\r\ncontent-length: 3\r\n\r\na=1",
        "the caller's Host kept; framing headers replaced by the held body's length"
    );
}

#[tokio::test]
async fn chunked_body_in_odd_pieces_with_extensions_and_trailers() {
    let peer = Peer::start(vec![(
        0,
        vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5",
            b";ext=1\r\nhel",
            b"lo\r",
            b"\n6\r\n world\r\n0\r\nX-Trailer: a\r\n",
            b"\r\n",
        ],
    )])
    .await;
    let pool = pool();
    let resp = exchange(peer.addr, &get("/"), &pool).await;
    assert_eq!(body_of(resp).await.unwrap(), "hello world");
    assert_eq!(pool.idle_count(), 1, "read to its end: reusable");
}

#[tokio::test]
async fn length_body_split_across_reads_then_reused() {
    let peer = Peer::start(vec![
        (
            0,
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123",
                b"456789",
            ],
        ),
        (0, vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]),
    ])
    .await;
    let pool = pool();
    let resp = exchange(peer.addr, &get("/a"), &pool).await;
    assert_eq!(pool.idle_count(), 0, "busy until its body is read");
    assert_eq!(body_of(resp).await.unwrap(), "0123456789");
    assert_eq!(pool.idle_count(), 1);
    let Some(super::super::pool::Sender::Fast(conn)) = pool.checkout(true) else {
        panic!("pooled");
    };
    let resp = conn
        .send(&get("/b"), &host(), later(), &pool)
        .await
        .ok()
        .unwrap();
    assert_eq!(body_of(resp).await.unwrap(), "ok");
    let (seen, _) = peer.task.await.unwrap();
    assert_eq!(seen.len(), 2, "both requests on one connection");
}

#[tokio::test]
async fn close_delimited_body_ends_with_the_connection() {
    let addr = answer_and_close(vec![b"HTTP/1.1 200 OK\r\n\r\npart one,", b" part two"]).await;
    let pool = pool();
    let resp = exchange(addr, &get("/"), &pool).await;
    assert_eq!(body_of(resp).await.unwrap(), "part one, part two");
    assert_eq!(
        pool.idle_count(),
        0,
        "a close-delimited answer leaves nothing to reuse"
    );
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_not_pooled() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
    ] {
        let addr = answer_and_close(vec![response]).await;
        let pool = pool();
        let resp = exchange(addr, &get("/"), &pool).await;
        assert!(
            body_of(resp).await.is_err(),
            "{}",
            String::from_utf8_lossy(response)
        );
        assert_eq!(pool.idle_count(), 0);
    }
}

#[tokio::test]
async fn interim_answers_are_skipped_and_an_upgrade_refused() {
    let peer = Peer::start(vec![(
        0,
        vec![
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ],
    )])
    .await;
    let pool = pool();
    let resp = exchange(peer.addr, &get("/"), &pool).await;
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("link"),
        "the 103's fields stay with it"
    );
    assert_eq!(body_of(resp).await.unwrap(), "ok");

    let peer = Peer::start(vec![(
        0,
        vec![b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"],
    )])
    .await;
    let failed = connect(peer.addr)
        .await
        .send(&get("/"), &host(), later(), &pool)
        .await;
    assert!(matches!(failed, Err(Failure::Protocol(_))));
}

#[tokio::test]
async fn bytes_after_a_response_keep_the_connection_out_of_the_pool() {
    let peer = Peer::start(vec![(
        0,
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"],
    )])
    .await;
    let pool = pool();
    let resp = exchange(peer.addr, &get("/"), &pool).await;
    assert_eq!(body_of(resp).await.unwrap(), "ok");
    assert_eq!(pool.idle_count(), 0);
}

#[tokio::test]
async fn a_close_before_the_head_is_retryable_and_a_head_answer_has_no_body() {
    let addr = answer_and_close(vec![]).await;
    let failed = connect(addr)
        .await
        .send(&get("/"), &host(), later(), &pool())
        .await;
    assert!(matches!(failed, Err(Failure::BeforeResponse(_))));

    let peer = Peer::start(vec![(
        0,
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"],
    )])
    .await;
    let pool = pool();
    let head_req = Request::builder()
        .method(Method::HEAD)
        .uri("/")
        .body(UpstreamBody::Empty)
        .unwrap();
    let resp = exchange(peer.addr, &head_req, &pool).await;
    assert_eq!(resp.headers()["content-length"], "1000");
    assert_eq!(body_of(resp).await.unwrap(), "");
    assert_eq!(pool.idle_count(), 1, "reusable at once");
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_upstream_is_seen_as_closed() {
    let peer = Peer::start(vec![(
        0,
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    )])
    .await;
    let pool = pool();
    exchange(peer.addr, &get("/"), &pool).await;
    let Some(super::super::pool::Sender::Fast(conn)) = pool.checkout(true) else {
        panic!("pooled");
    };
    assert!(conn.still_open(), "the peer still holds it");
    let (_, sock) = peer.task.await.unwrap();
    drop(sock);
    // Socket state, not a time rule of the gateway: the FIN takes a moment to arrive.
    let mut open = true;
    for _ in 0..200 {
        open = conn.still_open();
        if !open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!open, "the upstream's close is noticed");
}

/// A peer that answers its connection's first request at once and the second after `delay`
/// (never, if None), holding the connection open meanwhile.
async fn answer_twice(delay: Option<Duration>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        sock.write_all(answer).await.unwrap();
        let _ = sock.read(&mut buf).await;
        match delay {
            Some(d) => {
                tokio::time::sleep(d).await;
                let _ = sock.write_all(answer).await;
            }
            None => std::future::pending::<()>().await,
        }
        let _ = sock.read(&mut buf).await;
    });
    addr
}

/// The connection's timer, moved to an earlier deadline than the last request's: it must fire
/// at the new one.
#[tokio::test]
async fn a_reused_connection_times_out_at_the_new_request_deadline() {
    let addr = answer_twice(None).await;
    let pool = pool();
    let resp = exchange(addr, &get("/a"), &pool).await;
    assert_eq!(body_of(resp).await.unwrap(), "ok");
    let Some(super::super::pool::Sender::Fast(conn)) = pool.checkout(true) else {
        panic!("pooled");
    };
    let started = Instant::now();
    let sent = conn
        .send(
            &get("/b"),
            &host(),
            started + Duration::from_millis(200),
            &pool,
        )
        .await;
    let waited = started.elapsed();
    assert!(
        matches!(sent, Err(Failure::Timeout)),
        "a silent upstream times out"
    );
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "timed out after {waited:?}, expected 200ms"
    );
    assert_eq!(pool.idle_count(), 0, "a timed-out connection is not pooled");
}

/// Moved to a later deadline than the last request's: the earlier one must not fire.
#[tokio::test]
async fn a_reused_connection_outlives_the_previous_request_deadline() {
    let addr = answer_twice(Some(Duration::from_millis(300))).await;
    let pool = pool();
    let first = connect(addr)
        .await
        .send(
            &get("/a"),
            &host(),
            Instant::now() + Duration::from_millis(100),
            &pool,
        )
        .await;
    let Ok(resp) = first else { panic!("no answer") };
    assert_eq!(body_of(resp).await.unwrap(), "ok");
    let Some(super::super::pool::Sender::Fast(conn)) = pool.checkout(true) else {
        panic!("pooled");
    };
    let Ok(resp) = conn.send(&get("/b"), &host(), later(), &pool).await else {
        panic!("the first request's deadline cut the second one")
    };
    assert_eq!(body_of(resp).await.unwrap(), "ok");
}

#[test]
fn framing_fields_stay_behind_and_a_connection_naming_others_is_kept() {
    let h = head(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
          Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n",
        false,
    );
    assert_eq!(h.framing, Framing::Chunked);
    assert!(h.keep_alive);
    assert_eq!(h.headers.len(), 1, "only content-type: {:?}", h.headers);
    assert!(h.headers.contains_key("content-type"));

    let h = head(
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert!(!h.keep_alive);
    assert_eq!(
        h.headers["connection"], "close, X-Hop",
        "kept, so that the hop-by-hop stripping removes what it names"
    );
    assert!(h.headers.contains_key("x-hop"));
}

#[test]
fn heads_with_more_fields_than_the_stack_holds_keep_them_all() {
    let mut bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..INLINE_FIELDS + 6 {
        bytes.extend_from_slice(format!("X-Field-{i}: value {i}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let h = head(&bytes, false);
    assert_eq!(h.headers.len(), INLINE_FIELDS + 7);
    for i in 0..INLINE_FIELDS + 6 {
        assert_eq!(
            h.headers[format!("x-field-{i}").as_str()],
            format!("value {i}")
        );
    }
}

#[test]
fn field_values_keep_tabs_and_obsolete_text_bytes() {
    let h = head(
        b"HTTP/1.1 200 OK\r\nX-Obs: caf\xe9\tau lait\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert_eq!(h.headers["x-obs"].as_bytes(), b"caf\xe9\tau lait");
    assert!(refused(
        b"HTTP/1.1 200 OK\r\nX-Ctl: a\x01b\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(refused(
        b"HTTP/1.1 200 OK\r\nX-Del: a\x7fb\r\nContent-Length: 0\r\n\r\n"
    ));
}

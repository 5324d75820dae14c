//! The upstream side of the edge (issue 14, sections 1 and 2): whatever an upstream writes on
//! its connections, each caller gets the answer to its own request, correctly framed, in the
//! gateway's HTTP version. A raw upstream on a loopback socket writes exact bytes; the gateway
//! in front of it is driven by real requests.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::client::{self, TestClient};
use support::raw;
use support::{TestGateway, config_with, simple_config};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the raw upstream does, in order, after reading a request.
#[derive(Clone)]
enum Step {
    Write(Vec<u8>),
    Pause(Duration),
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST).
    Reset,
    /// Write these bytes again and again until the gateway goes away, or for at most the
    /// duration.
    Flood(Vec<u8>, Duration),
}

/// A request as the raw upstream read it.
struct Seen {
    method: String,
    target: String,
}

impl Seen {
    /// The last path segment: the test's per-request marker.
    fn marker(&self) -> &str {
        self.target.rsplit('/').next().unwrap_or("")
    }
}

type Script = Arc<dyn Fn(&Seen) -> Vec<Step> + Send + Sync>;

/// A raw HTTP/1.1 upstream: answers each request with what the script says, counts
/// connections and keeps every request line.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Connections whose serving ended (closed by either side).
    ended: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start(script: impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static) -> RawUpstream {
        let script: Script = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (conns, done, seen) = (connections.clone(), ended.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                sock.set_nodelay(true).unwrap();
                conns.fetch_add(1, Ordering::SeqCst);
                let (script, seen, done) = (script.clone(), seen.clone(), done.clone());
                tokio::spawn(async move {
                    serve(sock, script, seen).await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawUpstream {
            addr,
            connections,
            ended,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut sock: TcpStream, script: Script, seen: Arc<Mutex<Vec<String>>>) {
    loop {
        let Some(text) = raw::read_request(&mut sock).await else {
            return;
        };
        let mut line = text.lines().next().unwrap_or("").split(' ');
        let request = Seen {
            method: line.next().unwrap_or("").to_owned(),
            target: line.next().unwrap_or("").to_owned(),
        };
        seen.lock()
            .unwrap()
            .push(format!("{} {}", request.method, request.target));
        for step in script(&request) {
            match step {
                Step::Write(bytes) => {
                    if sock.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Pause(d) => tokio::time::sleep(d).await,
                Step::Close => return,
                Step::Reset => {
                    let _ = sock.set_zero_linger();
                    return;
                }
                Step::Flood(bytes, limit) => {
                    // From a thread of its own with blocking writes: the gateway finds more
                    // to read every time it looks, as with a fast upstream on another host.
                    let Ok(sock) = sock.into_std() else { return };
                    let _ = sock.set_nonblocking(false);
                    let batch = bytes.repeat(64 * 1024 / bytes.len());
                    let _ = tokio::task::spawn_blocking(move || {
                        let mut sock = sock;
                        let started = Instant::now();
                        while started.elapsed() < limit {
                            if std::io::Write::write_all(&mut sock, &batch).is_err() {
                                return;
                            }
                        }
                    })
                    .await;
                    return;
                }
            }
        }
    }
}

/// `200 OK` with the marker in a header and as the body.
fn answer(marker: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nx-marker: {marker}\r\ncontent-length: {}\r\n\r\n{marker}",
        marker.len()
    )
    .into_bytes()
}

const LATE: Duration = Duration::from_millis(2);

/// What a misbehaving upstream writes on a connection after its answer.
#[derive(Clone, Copy, Debug)]
enum Junk {
    /// A second, unasked response.
    LateResponse,
    /// A body after a HEAD answer (which has none).
    BodyAfterHead,
    /// A body after a 204 (which has none).
    BodyAfter204,
    /// More bytes than the Content-Length said.
    PastContentLength,
    /// A `408` with `Connection: close`, as a server whose idle timeout ran out writes it.
    Late408,
}

fn misbehaving(junk: Junk, seen: &Seen) -> Vec<Step> {
    let m = seen.marker();
    let stale = b"HTTP/1.1 200 OK\r\nx-marker: stale\r\ncontent-length: 5\r\n\r\nstale".to_vec();
    let (first, late) = match junk {
        Junk::LateResponse => (answer(m), stale),
        Junk::BodyAfterHead => (
            format!("HTTP/1.1 200 OK\r\nx-marker: {m}\r\ncontent-length: 50\r\n\r\n").into_bytes(),
            stale,
        ),
        Junk::BodyAfter204 => (
            format!("HTTP/1.1 204 No Content\r\nx-marker: {m}\r\n\r\n").into_bytes(),
            b"HTTP/1.1 204 No Content\r\nx-marker: stale\r\n\r\n".to_vec(),
        ),
        Junk::PastContentLength => (answer(m), b"<html>leftover</html>\r\n\r\n".to_vec()),
        Junk::Late408 => (
            answer(m),
            b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        ),
    };
    let mut steps = vec![Step::Write(first), Step::Pause(LATE), Step::Write(late)];
    if matches!(junk, Junk::Late408) {
        steps.push(Step::Close);
    }
    steps
}

#[tokio::test]
async fn bytes_an_upstream_writes_on_an_idle_connection_never_answer_the_next_request() {
    for junk in [
        Junk::LateResponse,
        Junk::BodyAfterHead,
        Junk::BodyAfter204,
        Junk::PastContentLength,
        Junk::Late408,
    ] {
        let up = RawUpstream::start(move |seen| misbehaving(junk, seen)).await;
        let gw = Arc::new(TestGateway::start(&simple_config(&up.url())).await);
        // Three clients take turns, each pausing a little after its answer (less than the
        // 100 ms the old pool trusted a connection without a look): the late bytes arrive
        // while the connection is idle, never while a request is in flight.
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let mut clients = Vec::new();
        for c in 0..3 {
            let (gw, turn) = (gw.clone(), turn.clone());
            clients.push(tokio::spawn(async move {
                let client = TestClient::new();
                let mut wrong = Vec::new();
                for i in 0..4 {
                    let _turn = turn.lock().await;
                    let marker = format!("c{c}r{i}");
                    let method = if matches!(junk, Junk::BodyAfterHead) {
                        "HEAD"
                    } else {
                        "GET"
                    };
                    let url = gw.url(&format!("/api/v1/m/{marker}"));
                    let resp = client.send(method, &url, &[], "").await;
                    let expected = if matches!(junk, Junk::BodyAfter204) {
                        204
                    } else {
                        200
                    };
                    let body_ok = method == "HEAD" || expected == 204 || resp.text() == marker;
                    if resp.status_u16() != expected
                        || resp.header("x-marker") != Some(marker.as_str())
                        || !body_ok
                    {
                        wrong.push(format!(
                            "{marker}: {} {:?} {:?}",
                            resp.status_u16(),
                            resp.header("x-marker"),
                            resp.text()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50 + 10 * ((c + i) % 3) as u64)).await;
                }
                wrong
            }));
        }
        let mut wrong = Vec::new();
        for c in clients {
            wrong.extend(c.await.unwrap());
        }
        assert!(wrong.is_empty(), "{junk:?}: wrong answers {wrong:?}");
    }
}

#[tokio::test]
async fn a_connection_the_upstream_closed_right_after_answering_is_not_used_for_a_post() {
    for reset in [false, true] {
        let up = RawUpstream::start(move |seen| {
            vec![
                Step::Write(answer(seen.marker())),
                // Time for the gateway to read the answer before the reset.
                Step::Pause(Duration::from_millis(5)),
                if reset { Step::Reset } else { Step::Close },
            ]
        })
        .await;
        let gw = TestGateway::start(&simple_config(&up.url())).await;
        let client = TestClient::new();
        for i in 0..3 {
            let resp = client.get(&gw.url(&format!("/api/v1/m/get{i}"))).await;
            assert_eq!(resp.text(), format!("get{i}"));
            // Enough for the close to reach the gateway, less than the 100 ms the old pool
            // trusted a connection without a look.
            tokio::time::sleep(Duration::from_millis(60)).await;
            let url = gw.url(&format!("/api/v1/m/post{i}"));
            let resp = client
                .send("POST", &url, &[("content-length", "0")], "")
                .await;
            assert_eq!(
                (resp.status_u16(), resp.text()),
                (200, format!("post{i}")),
                "reset: {reset}"
            );
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let posts = up
            .requests()
            .iter()
            .filter(|r| r.starts_with("POST"))
            .count();
        assert_eq!(posts, 3, "each POST went out once");
        assert_eq!(up.connections(), 6);
    }
}

#[tokio::test]
async fn connection_close_keep_alive_from_an_http10_upstream_is_not_reused() {
    // The upstream says close (and keep-alive): were the connection reused, it would never
    // answer the next request on it.
    let up = RawUpstream::start(|seen| {
        let m = seen.marker();
        vec![
            Step::Write(
                format!(
                    "HTTP/1.0 200 OK\r\nconnection: close, keep-alive\r\ncontent-length: {}\r\n\r\n{m}",
                    m.len()
                )
                .into_bytes(),
            ),
            Step::Pause(Duration::from_secs(30)),
        ]
    })
    .await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    for i in 0..3 {
        let resp = client::get(&gw.url(&format!("/api/v1/m/r{i}"))).await;
        assert_eq!((resp.status_u16(), resp.text()), (200, format!("r{i}")));
    }
    assert_eq!(up.connections(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_interim_answers_get_504_at_the_response_timeout() {
    let up = RawUpstream::start(|_| {
        vec![Step::Flood(
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            Duration::from_secs(8),
        )]
    })
    .await;
    let config = config_with(
        &up.url(),
        r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1"]
"#,
    )
    .replace("response_timeout = \"2s\"", "response_timeout = \"300ms\"");
    let gw = TestGateway::start(&config).await;
    let started = Instant::now();
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let took = started.elapsed();
    assert_eq!(resp.status_u16(), 504, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 203);
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    // And the gateway let go of that connection: the stream stops (long before its 8 s).
    let ended = &up.ended;
    assert!(
        raw::eventually(Duration::from_secs(3), || async {
            ended.load(Ordering::SeqCst) > 0
        })
        .await,
        "the gateway still reads the interim answers"
    );
}

#[tokio::test]
async fn a_response_with_both_transfer_encoding_and_content_length_arrives_whole() {
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\
        content-type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let up = RawUpstream::start(|_| vec![Step::Write(ANSWER.to_vec())]).await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    // A request without a body, and one that streams its body to the upstream.
    let big = "x".repeat(20 * 1024);
    for (method, body) in [("GET", ""), ("POST", big.as_str())] {
        let resp = client::send(method, &gw.url("/api/v1/x"), &[], body.to_owned()).await;
        assert_eq!(resp.status_u16(), 200);
        assert_eq!(resp.text(), "hello world", "{method}");
        assert!(
            resp.header("content-length").is_none_or(|v| v == "11"),
            "{method}: {:?}",
            resp.header("content-length")
        );
    }
    // On the wire: one framing, and the whole body.
    let raw = client::raw_exchange(
        gw.addr,
        b"POST /api/v1/x HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\
          transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("http/1.1 200"), "{text}");
    assert!(
        !(head.contains("\r\ncontent-length:") && head.contains("\r\ntransfer-encoding:")),
        "{text}"
    );
    assert!(!head.contains("\r\ncontent-length: 3\r\n"), "{text}");
    assert!(body.contains("hello") && body.contains(" world"), "{text}");
}

#[tokio::test]
async fn the_gateway_answers_in_its_own_http_version() {
    let up = RawUpstream::start(|seen| {
        let m = seen.marker();
        vec![
            Step::Write(
                format!("HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{m}", m.len()).into_bytes(),
            ),
            Step::Close,
        ]
    })
    .await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    let raw = client::raw_exchange(
        gw.addr,
        b"GET /api/v1/m/raw HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nraw"), "{text}");

    // (HTTP/2 carries no version on the wire: tests/tls.rs checks that h2 clients get h2.)
}

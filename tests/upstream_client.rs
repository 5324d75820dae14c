//! HTTP/1.1 upstream exchanges end to end (hyper's client under the gateway's pool): a raw upstream
//! on a loopback socket controls the wire (framing, closes, garbage) and the gateway in front of
//! it is driven by real requests.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::client;
use support::raw;
use support::{TestGateway, simple_config};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the raw upstream does after writing an answer.
#[derive(Clone, Copy, PartialEq)]
enum After {
    KeepOpen,
    Close,
}

/// A raw HTTP/1.1 upstream: answers every request with the next scripted bytes (the last one
/// repeats), counts connections and keeps every request head it read.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start(script: Vec<(&'static [u8], After)>) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(AtomicUsize::new(0));
        let (conns, seen) = (connections.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (script, seen, served) = (script.clone(), seen.clone(), served.clone());
                tokio::spawn(async move { serve(sock, script, seen, served).await });
            }
        });
        RawUpstream {
            addr,
            connections,
            heads,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn serve(
    mut sock: TcpStream,
    script: Vec<(&'static [u8], After)>,
    seen: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicUsize>,
) {
    loop {
        let Some(text) = raw::read_request(&mut sock).await else {
            return;
        };
        seen.lock().unwrap().push(text);
        let i = served.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
        let (answer, after) = script[i];
        if sock.write_all(answer).await.is_err() {
            return;
        }
        if after == After::Close {
            return;
        }
    }
}

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";

#[tokio::test]
async fn keep_alive_answers_reuse_one_connection() {
    let up = RawUpstream::start(vec![(OK, After::KeepOpen)]).await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    for _ in 0..5 {
        let resp = client::get(&gw.url("/api/v1/x")).await;
        assert_eq!(resp.status_u16(), 200);
        assert_eq!(resp.text(), "{\"ok\":true}");
    }
    assert_eq!(up.connections(), 1);
    let head = &up.heads()[0];
    assert!(head.starts_with("GET /v1/x HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nhost: {}\r\n", up.addr)),
        "{head}"
    );
}

#[tokio::test]
async fn connection_close_answers_are_not_reused() {
    let up = RawUpstream::start(vec![(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        After::Close,
    )])
    .await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    for _ in 0..3 {
        let resp = client::get(&gw.url("/api/v1/x")).await;
        assert_eq!(resp.status_u16(), 200);
        assert_eq!(resp.text(), "ok");
    }
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used_for_a_post() {
    // The upstream answers as keep-alive, then closes the connection (as a server whose idle
    // timeout ran out does). A POST is never retried, so it must not go out on that one.
    let up = RawUpstream::start(vec![(OK, After::Close)]).await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    assert_eq!(client::get(&gw.url("/api/v1/x")).await.status_u16(), 200);
    // Real time, and about socket state rather than a gateway time rule: the close must reach
    // the gateway, and a pooled connection is only looked at after 100 ms unused.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let resp = client::send("POST", &gw.url("/api/v1/x"), &[], "").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(up.connections(), 2);
    assert_eq!(up.heads().len(), 2, "the POST went out once");
}

#[tokio::test]
async fn a_chunked_answer_reaches_the_client_whole() {
    let up = RawUpstream::start(vec![(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n\
          4;a=b\r\nchun\r\n7\r\nked bod\r\n1\r\ny\r\n0\r\nx-checksum: 1\r\n\r\n",
        After::KeepOpen,
    )])
    .await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    for _ in 0..2 {
        let resp = client::get(&gw.url("/api/v1/x")).await;
        assert_eq!(resp.status_u16(), 200);
        assert_eq!(resp.text(), "chunked body");
    }
    assert_eq!(
        up.connections(),
        1,
        "read to its end, the connection is reused"
    );
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_and_do_not_hang() {
    let up = RawUpstream::start(vec![(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n",
        After::KeepOpen,
    )])
    .await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client::send("HEAD", &gw.url("/api/v1/x"), &[], ""),
    )
    .await
    .expect("a HEAD answer does not wait for a body");
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.header("content-length"), Some("5000"));
    assert_eq!(resp.text(), "");

    for answer in [
        &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
        &b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n"[..],
    ] {
        let up = RawUpstream::start(vec![(answer, After::KeepOpen)]).await;
        let gw = TestGateway::start(&simple_config(&up.url())).await;
        for _ in 0..2 {
            let resp =
                tokio::time::timeout(Duration::from_secs(5), client::get(&gw.url("/api/v1/x")))
                    .await
                    .expect("answered");
            assert!(matches!(resp.status_u16(), 204 | 304));
            assert_eq!(resp.text(), "");
        }
        assert_eq!(up.connections(), 1);
    }
}

#[tokio::test]
async fn a_malformed_upstream_head_is_a_502_errno_203() {
    for answer in [
        &b"HTTP/1.1 abc Nope\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx"[..],
        &b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"[..],
        &b"not http at all\r\n\r\n"[..],
    ] {
        let up = RawUpstream::start(vec![(answer, After::Close)]).await;
        let gw = TestGateway::start(&simple_config(&up.url())).await;
        // A bad answer is not retried.
        let resp = client::get(&gw.url("/api/v1/x")).await;
        assert_eq!(
            resp.status_u16(),
            502,
            "{}",
            String::from_utf8_lossy(answer)
        );
        assert_eq!(resp.json()["errno"], 203);
        assert_eq!(up.heads().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn a_small_post_body_goes_out_with_its_length() {
    let up = RawUpstream::start(vec![(OK, After::KeepOpen)]).await;
    let gw = TestGateway::start(&simple_config(&up.url())).await;
    let resp = client::send(
        "POST",
        &gw.url("/api/v1/x"),
        &[("content-type", "application/json")],
        "{\"a\":1}",
    )
    .await;
    assert_eq!(resp.status_u16(), 200);
    let head = &up.heads()[0];
    assert!(head.starts_with("POST /v1/x HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-length: 7\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
}

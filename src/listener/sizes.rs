//! What one client connection costs in memory, by type size (issue 19: the idle keep-alive
//! connection against nginx's). A connection is one tokio task whose future is the small state
//! machine of `serve_connection`; the TLS handshake runs boxed while it lasts, then the HTTP
//! connection runs boxed (`http`): the TLS stream (rustls' connection state inline), the
//! `GuardedIo` wrapper and hyper's HTTP/1 or HTTP/2 connection, as large as that protocol
//! needs. Heap buffers come on top (hyper's read buffer, 8 KiB, and write buffer; rustls'
//! record buffers): `benches/compare.sh` measures the whole (`PHASES=memory`).
//!
//! `cargo nextest run --lib listener::sizes --no-capture` prints the figures; the test fails
//! when the inline state of a connection grows past the budget, so a change that makes every
//! connection dearer is seen.

use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;
use crate::pipeline::Snapshot;

const CONFIG: &str = r#"
[[listeners]]
name = "plain"
addr = "127.0.0.1:0"

[[upstreams]]
name = "backend"
url = "http://127.0.0.1:9"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "backend"
auth = "none"
"#;

/// The inline state of one connection's task (`serve_connection`'s future), in bytes, as the
/// test profile builds it (no optimisation: a release build can lay it out smaller). It
/// was 10,416 bytes when this test was written (issue 19), 328 once the handshake and the
/// HTTP connection were boxed; a jump past the budget is a regression.
const TASK_BUDGET: usize = 512;

/// The boxed HTTP/1.1 connection of a plain listener (`http`'s future; the test profile keeps
/// hyper's connection twice in it, as the argument and pinned): 1,984 bytes when written.
const PLAIN_H1_BUDGET: usize = 2304;

#[tokio::test]
async fn connection_task_state_stays_within_budget() {
    crate::install_crypto_provider();
    let config =
        crate::config::parse_str(CONFIG, Path::new("sizes.toml"), Path::new(".")).expect("config");
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    let state = Arc::new(State::new(
        Snapshot::new(&config, &clock).expect("snapshot"),
        clock,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _client = TcpStream::connect(addr).await.expect("connect");
    let (stream, peer) = listener.accept().await.expect("accept");
    let conn = Arc::new(ConnInfo {
        peer,
        local: Some(addr),
        tls: false,
        listener: Arc::from("plain"),
        accept_refresh_token: false,
        allow_underscore_headers: false,
        in_flight: Arc::new(InFlight::default()),
        peer_header: crate::headers::peer_header(peer.ip()),
    });
    let (_phase_tx, phase_rx) = watch::channel(Phase::Serving);
    // Never polled: its size is that of the whole state machine, TLS or not.
    let task = serve_connection(stream, None, conn.clone(), state.clone(), phase_rx.clone());
    let task_bytes = std::mem::size_of_val(&task);
    drop(task);
    let _client2 = TcpStream::connect(addr).await.expect("connect");
    let (stream, _) = listener.accept().await.expect("accept");
    let limits = state.limits();
    let timeouts = Timeouts {
        header_read: limits.header_read_timeout,
        idle: limits.idle_timeout,
        send: limits.send_timeout,
    };
    let io = GuardedIo::new(
        stream,
        Protocol::Http1,
        timeouts,
        state.ids.clone(),
        conn.in_flight.clone(),
    );
    let plain = http(io, Protocol::Http1, &limits, conn, state, phase_rx);
    // The size of the boxed future itself (a `dyn Future`).
    let plain_bytes = std::mem::size_of_val(&*plain);
    drop(plain);

    type Plain = GuardedIo<TcpStream>;
    type Tls = GuardedIo<tokio_rustls::server::TlsStream<TcpStream>>;
    let sizes = [
        ("connection task future (serve_connection)", task_bytes),
        ("boxed plain HTTP/1.1 connection (http)", plain_bytes),
        (
            "hyper http1::Connection (plain)",
            std::mem::size_of::<http1::Connection<TokioIo<Plain>, GatewayService>>(),
        ),
        (
            "hyper http1::Connection (TLS)",
            std::mem::size_of::<http1::Connection<TokioIo<Tls>, GatewayService>>(),
        ),
        (
            "hyper http2::Connection (TLS)",
            std::mem::size_of::<http2::Connection<TokioIo<Tls>, GatewayService, StreamExec>>(),
        ),
        ("GuardedIo<TcpStream>", std::mem::size_of::<Plain>()),
        (
            "tokio_rustls::server::TlsStream<TcpStream>",
            std::mem::size_of::<tokio_rustls::server::TlsStream<TcpStream>>(),
        ),
        (
            "rustls::ServerConnection",
            std::mem::size_of::<rustls::ServerConnection>(),
        ),
        ("ConnInfo (Arc'd)", std::mem::size_of::<ConnInfo>()),
        ("GatewayService", std::mem::size_of::<GatewayService>()),
    ];
    for (name, bytes) in sizes {
        println!("{name:<45} {bytes:>6} bytes");
    }
    assert!(
        plain_bytes <= PLAIN_H1_BUDGET,
        "a plain connection's boxed HTTP/1.1 state is {plain_bytes} bytes, over the {PLAIN_H1_BUDGET}-byte budget"
    );
    assert!(
        task_bytes <= TASK_BUDGET,
        "a connection's task state is {task_bytes} bytes, over the {TASK_BUDGET}-byte budget"
    );
}

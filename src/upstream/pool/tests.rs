use std::convert::Infallible;

use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::*;
use bytes::Bytes;
use hyper::body::Incoming;

use crate::body::{Release, ResponseBody};

const IDLE: Duration = Duration::from_secs(30);

/// An HTTP/1.1 connection over an in-memory pipe to a server answering `body_len` bytes;
/// the handle finishes when the server side sees the connection closed.
async fn connection(pool: &Pool, body_len: usize) -> (Box<H1Conn>, JoinHandle<()>) {
    let (client_io, server_io) = tokio::io::duplex(1024);
    let server = tokio::spawn(async move {
        let service = service_fn(move |_req: Request<Incoming>| async move {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; body_len]))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server_io), service)
            .await;
    });
    let (tx, conn) = http1::handshake(TokioIo::new(client_io))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    (pool.h1_conn(tx), server)
}

async fn get(pool: &Pool, mut conn: Box<H1Conn>) -> ResponseBody {
    let req = Request::builder()
        .uri("/")
        .header("host", "upstream")
        .body(UpstreamBody::Empty)
        .expect("request");
    let resp = conn.sender.send_request(req).await.expect("response");
    ResponseBody::new(resp.into_body(), pool.after_head(conn))
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn connection_is_pooled_when_its_body_ends_and_reused() {
    let pool = Pool::new(IDLE, 8);
    let (tx, _server) = connection(&pool, 100_000).await;
    let body = get(&pool, tx).await;
    let bytes = body.collect().await.expect("body").to_bytes();
    assert_eq!(bytes.len(), 100_000);
    settle().await;
    assert_eq!(pool.idle_count(), 1);
    let Checkout::Ready(Sender::H1(conn)) = pool.checkout() else {
        panic!("no pooled connection");
    };
    assert_eq!(pool.idle_count(), 0);
    let body = get(&pool, conn).await;
    assert_eq!(
        body.collect().await.expect("body").to_bytes().len(),
        100_000
    );
}

#[tokio::test(start_paused = true)]
async fn connection_whose_body_was_dropped_early_is_not_pooled() {
    let pool = Pool::new(IDLE, 8);
    let (tx, server) = connection(&pool, 100_000).await;
    let mut body = get(&pool, tx).await;
    let first = body.frame().await.expect("a frame").expect("data");
    assert!(first.is_data());
    drop(body);
    settle().await;
    assert_eq!(pool.idle_count(), 0);
    assert!(matches!(pool.checkout(), Checkout::Empty));
    server.await.expect("server side closed");
}

#[tokio::test(start_paused = true)]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let pool = Pool::new(IDLE, 8);
    let (tx, server) = connection(&pool, 10).await;
    let body = get(&pool, tx).await;
    body.collect().await.expect("body");
    settle().await;
    assert_eq!(pool.idle_count(), 1);

    tokio::time::advance(IDLE / 2).await;
    settle().await;
    assert_eq!(pool.idle_count(), 1, "closed before the idle timeout");

    tokio::time::advance(IDLE).await;
    settle().await;
    assert_eq!(pool.idle_count(), 0);
    server.await.expect("server side closed");
}

#[tokio::test(start_paused = true)]
async fn closed_connection_is_never_checked_out() {
    let pool = Pool::new(IDLE, 8);
    let (tx, server) = connection(&pool, 10).await;
    let body = get(&pool, tx).await;
    body.collect().await.expect("body");
    settle().await;
    assert_eq!(pool.idle_count(), 1);
    server.abort();
    let _ = server.await;
    settle().await;
    assert!(matches!(pool.checkout(), Checkout::Empty));
}

#[tokio::test(start_paused = true)]
async fn idle_connections_over_the_cap_are_closed_oldest_first() {
    let pool = Pool::new(IDLE, 2);
    let mut servers = Vec::new();
    for _ in 0..3 {
        let (tx, server) = connection(&pool, 10).await;
        get(&pool, tx).await.collect().await.expect("body");
        servers.push(server);
        settle().await;
    }
    assert_eq!(pool.idle_count(), 2);
    servers.remove(0).await.expect("the oldest was closed");
}

/// A connection back in the pool while hyper still reads its body (as a body that ended just
/// before the connection task ran would bring it), and that response.
async fn busy_in_the_pool(pool: &Pool) -> (Response<Incoming>, JoinHandle<()>) {
    let (mut conn, server) = connection(pool, 100_000).await;
    let req = Request::builder()
        .uri("/")
        .header("host", "upstream")
        .body(UpstreamBody::Empty)
        .expect("request");
    let resp = conn.sender.send_request(req).await.expect("response");
    assert!(!conn.sender.is_ready());
    Release::release(conn);
    assert_eq!(pool.idle_count(), 1);
    (resp, server)
}

#[tokio::test(start_paused = true)]
async fn a_connection_still_busy_stays_pooled_when_it_does_not_get_ready_in_time() {
    let pool = Pool::new(IDLE, 8);
    let (resp, _server) = busy_in_the_pool(&pool).await;
    let Checkout::Soon(conn) = pool.checkout() else {
        panic!("the busy connection was not offered");
    };
    // Its body is not read: it stays busy past the wait, and goes back for later.
    assert!(pool.when_ready(conn).await.is_none());
    assert_eq!(pool.idle_count(), 1, "kept for when it is ready");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), 100_000);
    settle().await;
    assert!(matches!(pool.checkout(), Checkout::Ready(Sender::H1(_))));
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_for_a_connection_hyper_is_wrapping_up_rather_than_open_one() {
    let pool = Pool::new(IDLE, 8);
    let (resp, _server) = busy_in_the_pool(&pool).await;
    let Checkout::Soon(conn) = pool.checkout() else {
        panic!("the busy connection was not offered");
    };
    assert_eq!(pool.idle_count(), 0, "taken by the waiting request");
    let (ready, body) = tokio::join!(pool.when_ready(conn), resp.into_body().collect());
    assert_eq!(body.expect("body").to_bytes().len(), 100_000);
    let Some(Sender::H1(conn)) = ready else {
        panic!("the connection did not become ready");
    };
    get(&pool, conn).await.collect().await.expect("body");
}

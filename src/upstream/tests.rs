use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// A hyper server on loopback answering every request `ok`; counts the requests.
async fn server() -> (Uri, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}").parse().expect("uri"), requests)
}

fn upstream(url: Uri) -> Upstream {
    Upstream::new(&UpstreamConfig {
        name: "api".into(),
        url,
        ca_pem: None,
        ca_only: false,
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(2),
        max_connections: 4,
        pool_idle_timeout: Duration::from_secs(30),
        http2: false,
        rate_limit: None,
    })
    .expect("upstream")
}

/// A pooled connection that looks ready, whose upstream has closed it: the close is not read
/// yet when the next request is handed to it.
async fn closed_but_ready(upstream: &Upstream) {
    let (client_io, server_io) = tokio::io::duplex(1024);
    let (tx, conn) = http1::handshake(TokioIo::new(client_io))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // The connection task runs once and asks for a request.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(tx.is_ready());
    drop(server_io);
    upstream.pool.checkin(upstream.pool.h1_conn(tx));
}

#[tokio::test]
async fn a_post_a_pooled_connection_gives_back_unsent_goes_out_on_a_new_one() {
    let (url, requests) = server().await;
    let upstream = upstream(url);
    closed_but_ready(&upstream).await;
    let mut req = Request::new(UpstreamBody::Full(Some(bytes::Bytes::from("{}"))));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = upstream.uri_for("/x", None).expect("uri");
    let resp = upstream.send(req).await.expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, "ok");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

/// The connection's timer is left at the first request's deadline; a second request on the same
/// connection still gets its whole response timeout, no less, and no hang past it.
#[tokio::test]
async fn a_reused_connection_gives_each_request_its_whole_response_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let answered = Arc::new(AtomicUsize::new(0));
        let service = service_fn(move |_req: Request<Incoming>| {
            let first = answered.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if !first {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(sock), service)
            .await;
    });
    let upstream = Upstream::new(&UpstreamConfig {
        name: "api".into(),
        url: format!("http://{addr}").parse().expect("uri"),
        ca_pem: None,
        ca_only: false,
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_millis(400),
        max_connections: 4,
        pool_idle_timeout: Duration::from_secs(30),
        http2: false,
        rate_limit: None,
    })
    .expect("upstream");
    let get = || {
        let mut req = Request::new(UpstreamBody::Empty);
        *req.uri_mut() = upstream.uri_for("/x", None).expect("uri");
        req
    };
    let resp = upstream.send(get()).await.expect("answered");
    resp.into_body().collect().await.expect("body");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = std::time::Instant::now();
    let err = upstream.send(get()).await.err().expect("timed out");
    let waited = started.elapsed();
    assert!(
        matches!(
            err,
            CallError::Gateway(GatewayError::UpstreamTimeout { .. })
        ),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_millis(390),
        "cut short: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "hung: {waited:?}");
}

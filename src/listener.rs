//! Accepting client connections: the connection cap, the TLS handshake (with ALPN choosing
//! HTTP/1.1 or HTTP/2), hyper's per-protocol limits, and graceful drain on shutdown.
//!
//! Never lets one slow client hold the accept loop: handshakes and connections run in their own
//! tasks, each bounded by a timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::InFlight;
use crate::config::{Limits, ListenerConfig};
use crate::conn_io::{GuardedIo, Protocol, Timeouts};
use crate::pipeline::{ConnInfo, GatewayService, State};

/// A bound client listener, ready to serve.
pub struct BoundListener {
    pub name: Arc<str>,
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Callers may send `X-FxA-Refresh-Token` on this listener.
    pub accept_refresh_token: bool,
    /// Header names with an underscore are forwarded (never the gateway's own).
    pub allow_underscore_headers: bool,
}

impl BoundListener {
    pub async fn bind(config: &ListenerConfig) -> anyhow::Result<BoundListener> {
        let tcp = TcpListener::bind(config.addr).await.map_err(|e| {
            anyhow::anyhow!("listener {}: cannot bind {}: {e}", config.name, config.addr)
        })?;
        let tls = match &config.tls {
            Some(settings) => Some(TlsAcceptor::from(crate::tls::server_config(settings)?)),
            None => None,
        };
        if config.tls.is_none() && !config.addr.ip().is_loopback() {
            tracing::warn!(listener = %config.name, addr = %config.addr, "plain HTTP listener on a non-loopback address (allowed by allow_plain_non_loopback)");
        }
        Ok(BoundListener {
            name: Arc::from(config.name.as_str()),
            tcp,
            tls,
            accept_refresh_token: config.accept_refresh_token,
            allow_underscore_headers: config.allow_underscore_headers,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Where the gateway is in its life: serving, draining in-flight requests, or closing whatever
/// is left after the drain timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    Draining,
    Closing,
}

/// Accepts until `shutdown` leaves `Serving`, handing each connection to its own task.
pub async fn serve(
    listener: BoundListener,
    state: Arc<State>,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<Phase>,
) {
    let local = listener.local_addr().ok();
    loop {
        // Take a connection slot before accepting: at the cap, new clients wait in the backlog.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.tcp.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo {
            peer,
            local,
            tls: listener.tls.is_some(),
            listener: listener.name.clone(),
            accept_refresh_token: listener.accept_refresh_token,
            allow_underscore_headers: listener.allow_underscore_headers,
            in_flight: Arc::new(InFlight::default()),
            peer_header: crate::headers::peer_header(peer.ip()),
        });
        let tls = listener.tls.clone();
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            state.metrics.open_connections.inc();
            serve_connection(stream, tls, conn, state.clone(), shutdown).await;
            state.metrics.open_connections.dec();
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    conn: Arc<ConnInfo>,
    state: Arc<State>,
    shutdown: watch::Receiver<Phase>,
) {
    let limits = state.limits();
    let timeouts = Timeouts {
        header_read: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    match tls {
        None => {
            let io = GuardedIo::new(
                stream,
                Protocol::Http1,
                timeouts,
                state.ids.clone(),
                conn.in_flight.clone(),
            );
            drive(io, Protocol::Http1, &limits, conn, state, shutdown).await
        }
        Some(acceptor) => {
            let accepted =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await;
            let tls_stream = match accepted {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %conn.peer, "TLS handshake timed out");
                    return;
                }
            };
            let protocol = match tls_stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            let io = GuardedIo::new(
                tls_stream,
                protocol,
                timeouts,
                state.ids.clone(),
                conn.in_flight.clone(),
            );
            drive(io, protocol, &limits, conn, state, shutdown).await
        }
    }
}

async fn drive<T>(
    io: GuardedIo<T>,
    protocol: Protocol,
    limits: &Limits,
    conn: Arc<ConnInfo>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<Phase>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = GatewayService::new(state, conn);
    let io = TokioIo::new(io);
    let result = match protocol {
        Protocol::Http1 => {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .keep_alive(true)
                .writev(false)
                .max_header_size(limits.max_header_bytes)
                .max_headers(limits.max_headers)
                // GuardedIo runs the header-read and idle deadlines (hyper's would answer
                // without a body and also cut idle keep-alive connections).
                .header_read_timeout(None);
            let c = builder.serve_connection(io, service);
            run_until_drained(c, &mut shutdown, |c| c.graceful_shutdown()).await
        }
        Protocol::Http2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(limits.h2_max_concurrent_streams)
                .max_header_list_size(limits.h2_max_header_list_size)
                .max_pending_accept_reset_streams(Some(20));
            let c = builder.serve_connection(io, service);
            run_until_drained(c, &mut shutdown, |c| c.graceful_shutdown()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Runs a connection; when shutdown starts, asks it to finish in-flight requests and close, and
/// drops it if it is still open when the drain time is up.
async fn run_until_drained<C, E>(
    conn: C,
    shutdown: &mut watch::Receiver<Phase>,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = shutdown.wait_for(|p| *p >= Phase::Draining) => {}
    }
    graceful(conn.as_mut());
    tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.wait_for(|p| *p == Phase::Closing) => Ok(()),
    }
}

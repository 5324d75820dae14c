//! Accepting client connections: the connection cap, the TLS handshake (with ALPN choosing
//! HTTP/1.1 or HTTP/2), hyper's per-protocol limits, and graceful drain on shutdown.
//!
//! Never lets one slow client hold the accept loop: handshakes and connections run in their own
//! tasks, each bounded by a timeout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::{InFlight, watch_send};
use crate::config::{Limits, ListenerConfig};
use crate::conn_io::{GuardedIo, Protocol, Timeouts};
use crate::pipeline::{ConnInfo, GatewayService, State};
use crate::tls::{CertStore, SniResolver};

/// A bound client listener, ready to serve.
pub struct BoundListener {
    pub tcp: TcpListener,
    /// The address as configured (port 0 stays 0): a reload keeps the socket of a listener
    /// whose configured address is unchanged.
    pub configured: SocketAddr,
    /// What the listener applies to each new connection; a reload swaps it.
    pub runtime: Arc<ArcSwap<ListenerRuntime>>,
}

/// A listener's settings for new connections: its name, TLS and header options. Swapped as a
/// whole by a reload; connections already open keep the settings they were accepted with.
pub struct ListenerRuntime {
    pub name: Arc<str>,
    pub tls: Option<ListenerTls>,
    /// Callers may send `X-FxA-Refresh-Token` on this listener.
    pub accept_refresh_token: bool,
    /// Header names with an underscore are forwarded (never the gateway's own).
    pub allow_underscore_headers: bool,
}

/// A TLS listener's acceptor and the certificate store behind it.
#[derive(Clone)]
pub struct ListenerTls {
    pub acceptor: TlsAcceptor,
    pub certs: Arc<CertStore>,
}

/// A listener's new settings, built and checked but not yet in use.
pub struct PreparedRuntime {
    runtime: ListenerRuntime,
    /// Certificates for the acceptor kept from before: stored at commit.
    certs: Option<(Arc<CertStore>, SniResolver)>,
}

impl ListenerRuntime {
    /// Builds the settings for `config`. A TLS listener that had TLS keeps its acceptor (and so
    /// its session cache) and gets the new certificates at commit. Loading the certificates
    /// checks each key against its certificate, so a mismatch fails here.
    pub fn prepare(
        config: &ListenerConfig,
        previous: Option<&ListenerRuntime>,
    ) -> anyhow::Result<PreparedRuntime> {
        let context = || format!("listener {}", config.name);
        let (tls, certs) = match (&config.tls, previous.and_then(|p| p.tls.as_ref())) {
            (None, _) => (None, None),
            (Some(settings), Some(kept)) => {
                let resolver = CertStore::load(settings).with_context(context)?;
                (Some(kept.clone()), Some((kept.certs.clone(), resolver)))
            }
            (Some(settings), None) => {
                let store = Arc::new(CertStore::new(
                    CertStore::load(settings).with_context(context)?,
                ));
                let acceptor = TlsAcceptor::from(crate::tls::server_config(store.clone())?);
                let tls = ListenerTls {
                    acceptor,
                    certs: store,
                };
                (Some(tls), None)
            }
        };
        let runtime = ListenerRuntime {
            name: Arc::from(config.name.as_str()),
            tls,
            accept_refresh_token: config.accept_refresh_token,
            allow_underscore_headers: config.allow_underscore_headers,
        };
        Ok(PreparedRuntime { runtime, certs })
    }
}

impl PreparedRuntime {
    /// Puts the settings in use for new connections (and new handshakes). Cannot fail.
    pub fn commit(self, slot: &ArcSwap<ListenerRuntime>) {
        if let Some((store, resolver)) = self.certs {
            store.replace(resolver);
        }
        slot.store(Arc::new(self.runtime));
    }

    /// The settings in a new slot, for a listener just bound.
    pub fn into_slot(self) -> Arc<ArcSwap<ListenerRuntime>> {
        if let Some((store, resolver)) = self.certs {
            store.replace(resolver);
        }
        Arc::new(ArcSwap::from_pointee(self.runtime))
    }
}

impl BoundListener {
    pub async fn bind(config: &ListenerConfig) -> anyhow::Result<BoundListener> {
        let runtime = ListenerRuntime::prepare(config, None)?;
        Ok(BoundListener {
            tcp: bind_socket(config).await?,
            configured: config.addr,
            runtime: runtime.into_slot(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn name(&self) -> Arc<str> {
        self.runtime.load().name.clone()
    }
}

/// Binds a listener's socket.
pub async fn bind_socket(config: &ListenerConfig) -> anyhow::Result<TcpListener> {
    let tcp = TcpListener::bind(config.addr).await.map_err(|e| {
        anyhow::anyhow!("listener {}: cannot bind {}: {e}", config.name, config.addr)
    })?;
    if config.tls.is_none() && !config.addr.ip().is_loopback() {
        tracing::warn!(listener = %config.name, addr = %config.addr, "plain HTTP listener on a non-loopback address (allowed by allow_plain_non_loopback)");
    }
    Ok(tcp)
}

/// Where the gateway is in its life: serving, draining in-flight requests, or closing whatever
/// is left after the drain timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    Draining,
    Closing,
}

/// The connection cap all listeners share: `max_connections` open in all, at most
/// `max_connections_per_peer` of them from one address.
pub struct ConnectionSlots {
    total: Arc<Semaphore>,
    max: usize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    per_peer_max: usize,
}

/// One open connection's slot, given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<ConnectionSlots>,
    peer: IpAddr,
}

impl ConnectionSlots {
    pub fn new(limits: &Limits) -> ConnectionSlots {
        ConnectionSlots {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            max: limits.max_connections,
            per_peer: Mutex::new(HashMap::new()),
            per_peer_max: limits.max_connections_per_peer,
        }
    }

    /// Waits until a slot is free without taking it, so that an accept loop waiting for a
    /// client holds none (taking one would leave each listener's idle loop a slot short).
    async fn wait_for_free_slot(&self) -> bool {
        self.total.acquire().await.is_ok()
    }

    /// A slot for a connection from `peer`: `None` when the peer has its share open already;
    /// else the next free slot, waited for (another listener may have taken the last one since
    /// `wait_for_free_slot`).
    async fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let peer = peer.to_canonical();
        {
            let mut open = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(peer).or_insert(0);
            if *n >= self.per_peer_max {
                return None;
            }
            *n += 1;
        }
        let slot = |permit| Slot {
            _permit: permit,
            slots: self.clone(),
            peer,
        };
        match self.total.clone().acquire_owned().await {
            Ok(permit) => Some(slot(permit)),
            Err(_) => {
                self.release(peer);
                None
            }
        }
    }

    fn release(&self, peer: IpAddr) {
        let mut open = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&peer);
            }
        }
    }

    /// Resolves once every connection has closed (all slots are back).
    pub async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.total.acquire_many(all).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.peer);
    }
}

/// Accepts until `shutdown` leaves `Serving`, handing each connection to its own task.
pub async fn serve(
    listener: BoundListener,
    state: Arc<State>,
    connections: Arc<ConnectionSlots>,
    mut shutdown: watch::Receiver<Phase>,
) {
    let local = listener.local_addr().ok();
    loop {
        // Accept only while a slot is free: at the cap, new clients wait in the kernel's
        // backlog (as with HAProxy's maxconn), whichever listener they came to.
        tokio::select! {
            free = connections.wait_for_free_slot() => if !free { return },
            _ = shutdown.changed() => return,
        }
        let (stream, peer) = tokio::select! {
            r = listener.tcp.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(listener = %listener.name(), error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let slot = tokio::select! {
            slot = connections.take(peer.ip()) => slot,
            _ = shutdown.changed() => return,
        };
        let Some(slot) = slot else {
            // Over its share: closed at once, before any byte is read.
            tracing::debug!(listener = %listener.name(), %peer, "peer has max_connections_per_peer open: connection closed");
            state.metrics.refused_connections.inc();
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The settings as they are now: a reload after this does not change this connection.
        let runtime = listener.runtime.load_full();
        let conn = Arc::new(ConnInfo {
            peer,
            local,
            tls: runtime.tls.is_some(),
            listener: runtime.name.clone(),
            accept_refresh_token: runtime.accept_refresh_token,
            allow_underscore_headers: runtime.allow_underscore_headers,
            in_flight: Arc::new(InFlight::default()),
            peer_header: crate::headers::peer_header(peer.ip()),
        });
        let tls = runtime.tls.as_ref().map(|t| t.acceptor.clone());
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            state.metrics.open_connections.inc();
            serve_connection(stream, tls, conn, state.clone(), shutdown).await;
            state.metrics.open_connections.dec();
            drop(slot);
        });
    }
}

/// The read and write buffer limit of an HTTP/1.1 connection. hyper's default (~410 KiB)
/// lets each buffer of a connection that carried a large body grow that far and stay so
/// (with `writev(false)` the write buffer copies body chunks); 64 KiB reads and writes move
/// large bodies at about the same cost. Never below what a request head may take.
const H1_MAX_BUF: usize = 64 * 1024;

/// One client connection. Its task's own state stays small (issue 19, memory per idle
/// connection): the TLS handshake and the HTTP connection each run boxed, as large as what they
/// hold, rather than the task reserving room for the largest of them all along.
async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    conn: Arc<ConnInfo>,
    state: Arc<State>,
    shutdown: watch::Receiver<Phase>,
) {
    let limits = state.limits();
    // A client that stops reading gets at most this much of our output held unsent in the
    // kernel (beside its own receive window): past it our writes wait, hyper stops taking its
    // pipelined requests, and send_timeout ends the connection. Without it the kernel's send
    // buffer autotunes to megabytes: thousands of small answers worked out for nobody.
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(limits.max_unsent_bytes) {
        tracing::debug!(peer = %conn.peer, error = %e, "TCP_NOTSENT_LOWAT not set");
    }
    let timeouts = Timeouts {
        header_read: limits.header_read_timeout,
        idle: limits.idle_timeout,
        send: limits.send_timeout,
    };
    let connection = match tls {
        None => {
            let io = GuardedIo::new(
                stream,
                Protocol::Http1,
                timeouts,
                state.ids.clone(),
                conn.in_flight.clone(),
            );
            http(io, Protocol::Http1, &limits, conn, state, shutdown)
        }
        Some(acceptor) => {
            let handshake = acceptor.accept(stream);
            let accepted = Box::pin(tokio::time::timeout(
                limits.tls_handshake_timeout,
                handshake,
            ))
            .await;
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
            http(io, protocol, &limits, conn, state, shutdown)
        }
    };
    connection.await
}

/// HTTP on `io` until it closes or the drain ends, as one boxed future.
fn http<T>(
    io: GuardedIo<T>,
    protocol: Protocol,
    limits: &Limits,
    conn: Arc<ConnInfo>,
    state: Arc<State>,
    shutdown: watch::Receiver<Phase>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = GatewayService::new(state, conn);
    let io = TokioIo::new(io);
    match protocol {
        Protocol::Http1 => {
            let c = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .writev(false)
                .max_buf_size(H1_MAX_BUF.max(limits.max_header_bytes * 2))
                .max_header_size(limits.max_header_bytes)
                .max_headers(limits.max_headers)
                // GuardedIo runs the header-read and idle deadlines (hyper's would answer
                // without a body and also cut idle keep-alive connections).
                .header_read_timeout(None)
                .serve_connection(io, service);
            Box::pin(run_until_drained(c, peer, shutdown, |c| {
                c.graceful_shutdown()
            }))
        }
        Protocol::Http2 => {
            let c = http2::Builder::new(StreamExec {
                send_timeout: limits.send_timeout,
            })
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            // Twice the configured limit: h2 answers a list over its own limit with a bare
            // 431; the pipeline refuses one over the configured limit with errno JSON.
            .max_header_list_size(limits.h2_max_header_list_size.saturating_mul(2))
            .max_pending_accept_reset_streams(Some(20))
            .serve_connection(io, service);
            Box::pin(run_until_drained(c, peer, shutdown, |c| {
                c.graceful_shutdown()
            }))
        }
    }
}

/// Runs a connection; when shutdown starts, asks it to finish in-flight requests and close, and
/// drops it if it is still open when the drain time is up.
async fn run_until_drained<C, E>(
    conn: C,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<Phase>,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let result = 'run: {
        tokio::select! {
            r = conn.as_mut() => break 'run r,
            _ = shutdown.wait_for(|p| *p >= Phase::Draining) => {}
        }
        graceful(conn.as_mut());
        tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.wait_for(|p| *p == Phase::Closing) => Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Runs each HTTP/2 stream in its own task, as hyper asks, under the send timeout: a stream
/// whose response body has had data out for `send_timeout` without the client taking it (a
/// zero flow-control window) is dropped, so h2 resets it (`CANCEL`) and the response body, with
/// its upstream connection, is let go. The connection and its other streams go on.
#[derive(Clone)]
struct StreamExec {
    send_timeout: std::time::Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(SendWatched {
            stream,
            send_timeout: self.send_timeout,
            waiting_since: None,
            timer: None,
        });
    }
}

pin_project_lite::pin_project! {
    struct SendWatched<F> {
        #[pin]
        stream: F,
        send_timeout: std::time::Duration,
        waiting_since: Option<tokio::time::Instant>,
        // Made on the first wait.
        timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for SendWatched<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        let me = self.project();
        let stream = me.stream;
        if watch_send(me.waiting_since, || stream.poll(cx)).is_ready() {
            return Poll::Ready(());
        }
        let Some(since) = *me.waiting_since else {
            return Poll::Pending;
        };
        let deadline = since + *me.send_timeout;
        let timer = me
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                tracing::debug!("send timeout: HTTP/2 stream reset, the client takes no data");
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod sizes;

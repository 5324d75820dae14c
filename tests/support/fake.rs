//! A scriptable, in-process fake upstream (and fake FxA) for integration tests.
//!
//! [`FakeUpstream`] listens on `127.0.0.1:0` and serves HTTP/1.1 and HTTP/2
//! (h2c prior knowledge on plain sockets, ALPN `h2` under TLS) with hyper.
//! Every request is recorded; the reply is chosen, in order, from:
//!
//! 1. the one-shot queue filled with [`FakeUpstream::push`] (FIFO),
//! 2. the route whose path prefix ([`FakeUpstream::on`], or a handler registered with
//!    [`FakeUpstream::on_fn`]) is the longest match,
//! 3. the default reply: `200` with `{"ok":true}` (see [`FakeUpstream::set_default`]).
//!
//! A [`Reply`] is a normal response (status, headers, body, optional delay
//! before the head and optional stall in the middle of the body), an echo of
//! the request, a dropped connection, or raw bytes written on the socket in
//! place of a response. Drop and raw replies hijack the connection: the
//! hyper connection is torn down and the connection task writes the bytes
//! (if any) on the bare socket, half-closes it and drains what the peer sends
//! so that the close is a clean FIN rather than a reset.
//!
//! Everything is torn down when the [`FakeUpstream`] is dropped.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;

/// How long a hijacked connection is drained for after the fake's half-close.
const DRAIN_AFTER_HIJACK: Duration = Duration::from_secs(2);

/// What the fake does with a request.
#[derive(Clone, Debug, Default)]
enum Mode {
    /// Answer with the scripted status, headers and body.
    #[default]
    Normal,
    /// Answer with the scripted status and headers and a JSON description of the request.
    Echo,
    /// Close the connection without answering.
    Drop,
    /// Write these bytes on the socket instead of a response, then close.
    Raw(Bytes),
}

/// A scripted reply of the fake upstream (builder style).
///
/// `Reply::new()` is a `200` with no headers and an empty body.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    delay: Option<Duration>,
    stall: Option<(Bytes, Duration)>,
    mode: Mode,
}

impl Default for Reply {
    fn default() -> Self {
        Self::new()
    }
}

impl Reply {
    /// A `200` with no headers and an empty body.
    pub fn new() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: None,
            stall: None,
            mode: Mode::Normal,
        }
    }

    /// Sets the status code.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Appends a header (repeat the call for multi-valued headers such as `set-cookie`).
    /// Panics if the name or value is not valid in HTTP.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        HeaderName::from_bytes(name.as_bytes()).expect("scripted header name");
        HeaderValue::from_str(value).expect("scripted header value");
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body (Content-Length is computed by hyper).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and replaces any `content-type` with `application/json`.
    pub fn json(mut self, value: serde_json::Value) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_owned(), "application/json".to_owned()));
        self.body = Bytes::from(value.to_string());
        self
    }

    /// Waits this long (after reading the whole request) before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sends `first_part`, stalls for `stall`, then sends the body set with
    /// [`Reply::body`]/[`Reply::json`]. Content-Length covers both parts.
    pub fn stall_mid_body(mut self, first_part: impl Into<Bytes>, stall: Duration) -> Self {
        self.stall = Some((first_part.into(), stall));
        self
    }

    /// Reads the request, then closes the connection without answering.
    pub fn drop_connection(mut self) -> Self {
        self.mode = Mode::Drop;
        self
    }

    /// Reads the request, writes `bytes` verbatim on the socket instead of a
    /// response, then closes the connection.
    pub fn raw(mut self, bytes: impl Into<Bytes>) -> Self {
        self.mode = Mode::Raw(bytes.into());
        self
    }

    /// Answers with the scripted status/headers and a JSON body describing the
    /// request: `{"method", "uri" (path and query), "version", "headers":
    /// {name: [values]}, "body" (lossy UTF-8)}`; `content-type` is set to JSON.
    pub fn echo(mut self) -> Self {
        self.mode = Mode::Echo;
        self
    }
}

/// A request as received by the fake.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target as received (origin form for HTTP/1.1, absolute for HTTP/2).
    pub uri: Uri,
    /// Protocol version.
    pub version: Version,
    /// Request headers (for HTTP/2, `host` is absent: the authority is in `uri`).
    pub headers: HeaderMap,
    /// The full request body.
    pub body: Bytes,
    /// Peer address of the TCP connection.
    pub peer: SocketAddr,
    /// 1-based index of the accepted TCP connection that carried the request.
    pub connection: usize,
}

impl RecordedRequest {
    /// The path component of the URI.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// Path and query, as in an origin-form request line.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |pq| pq.as_str())
    }

    /// The first value of a header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header (invalid UTF-8 values are skipped).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The body as (lossy) UTF-8.
    /// A field of a form-encoded body (test values need no percent-decoding).
    pub fn form_field(&self, name: &str) -> Option<String> {
        let body = self.body_str();
        let prefix = format!("{name}=");
        body.split('&')
            .find_map(|pair| pair.strip_prefix(prefix.as_str()).map(str::to_owned))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", self.body_str()))
    }
}

/// A reply computed from the request (see [`FakeUpstream::on_fn`]).
pub type Handler = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync + 'static>;

/// A scripted route: a fixed reply or a handler.
#[derive(Clone)]
enum Route {
    Fixed(Reply),
    Dynamic(Handler),
}

/// Mutable script and recording of a fake.
struct State {
    queue: VecDeque<Reply>,
    routes: Vec<(String, Reply)>,
    handlers: Vec<(String, Handler)>,
    default: Reply,
    requests: Vec<RecordedRequest>,
}

impl State {
    /// Picks the reply for `path`: queue first, then longest route prefix, then default.
    fn choose(&mut self, path: &str) -> Reply {
        if let Some(reply) = self.queue.pop_front() {
            return reply;
        }
        self.routes
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or_else(|| self.default.clone(), |(_, reply)| reply.clone())
    }

    /// Like `choose`, with handlers competing by prefix length too (a handler wins a tie).
    /// The handler is returned, not called: it runs outside the state lock.
    fn choose_route(&mut self, path: &str) -> Route {
        if self.queue.is_empty() {
            let handler = self
                .handlers
                .iter()
                .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len());
            let fixed = self
                .routes
                .iter()
                .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
                .map(|(prefix, _)| prefix.len())
                .max();
            if let Some((prefix, handler)) = handler
                && fixed.is_none_or(|len| prefix.len() >= len)
            {
                return Route::Dynamic(Arc::clone(handler));
            }
        }
        Route::Fixed(self.choose(path))
    }
}

struct Shared {
    state: Mutex<State>,
    connections: AtomicUsize,
    recorded: Notify,
}

/// An instruction from a request handler to its connection task.
enum Hijack {
    Drop,
    Raw(Bytes),
}

/// A scriptable fake upstream server bound on `127.0.0.1`.
pub struct FakeUpstream {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.accept_task.abort();
    }
}

impl FakeUpstream {
    /// Starts a plain-HTTP fake (HTTP/1.1, and h2c with prior knowledge).
    pub async fn start() -> Self {
        Self::spawn(None).await
    }

    /// Starts a TLS fake with `config` (set its ALPN to `h2` and/or `http/1.1`
    /// to offer HTTP/2; the protocol actually spoken is detected from the preface).
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Self {
        Self::spawn(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    /// An address on loopback where nothing listens (connections are refused). On 127.0.0.2,
    /// which no other test binds: a port freed on 127.0.0.1 could be handed to a listener a
    /// test running in parallel opens a moment later.
    pub fn refusing() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.2:0").expect("bind probe listener");
        listener.local_addr().expect("probe listener address")
    }

    async fn spawn(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("fake upstream address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                routes: Vec::new(),
                handlers: Vec::new(),
                default: Reply::new().json(serde_json::json!({"ok": true})),
                requests: Vec::new(),
            }),
            connections: AtomicUsize::new(0),
            recorded: Notify::new(),
        });
        let is_tls = tls.is_some();
        let accept_task = tokio::spawn(accept_loop(listener, tls, Arc::clone(&shared)));
        Self {
            addr,
            tls: is_tls,
            shared,
            accept_task,
        }
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL: `http://127.0.0.1:PORT` (or `https://…` for a TLS fake), no trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Answers requests whose path starts with `path_prefix` with `reply`
    /// (longest prefix wins; registering the same prefix again replaces it).
    pub fn on(&self, path_prefix: &str, reply: Reply) {
        let mut state = self.state();
        state.routes.retain(|(prefix, _)| prefix != path_prefix);
        state.routes.push((path_prefix.to_owned(), reply));
    }

    /// Answers requests whose path starts with `path_prefix` with whatever `handler` returns
    /// for the recorded request (called after the request is recorded, outside the fake's
    /// lock). Competes with [`FakeUpstream::on`] routes by prefix length (a handler wins a
    /// tie); one-shot queued replies still come first. Registering the same prefix again
    /// replaces the handler.
    pub fn on_fn(
        &self,
        path_prefix: &str,
        handler: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) {
        let mut state = self.state();
        state.handlers.retain(|(prefix, _)| prefix != path_prefix);
        state
            .handlers
            .push((path_prefix.to_owned(), Arc::new(handler)));
    }

    /// Queues a one-shot reply; queued replies are used in FIFO order, before routes.
    pub fn push(&self, reply: Reply) {
        self.state().queue.push_back(reply);
    }

    /// Replaces the default reply (initially `200 {"ok":true}`).
    pub fn set_default(&self, reply: Reply) {
        self.state().default = reply;
    }

    /// Removes all routes and queued replies and restores the default reply
    /// (recorded requests are kept).
    pub fn reset_script(&self) {
        let mut state = self.state();
        state.queue.clear();
        state.routes.clear();
        state.handlers.clear();
        state.default = Reply::new().json(serde_json::json!({"ok": true}));
    }

    /// Number of queued one-shot replies not consumed yet.
    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// All requests received so far, in order of arrival (recorded once the body is read).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state().requests.last().cloned()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.state().requests.len()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Number of TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were recorded; returns `false` on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.recorded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.request_count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.request_count() >= n;
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.shared.state)
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, id, shared).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_connection(stream, peer, id, shared).await;
                    }
                }
            }
        });
    }
}

/// Serves one connection with hyper until it ends or a handler hijacks it.
async fn serve_connection<IO>(io: IO, peer: SocketAddr, id: usize, shared: Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = SharedIo(Arc::new(Mutex::new(io)));
    let handle = Arc::clone(&io.0);
    let (hijack_tx, mut hijack_rx) = mpsc::unbounded_channel::<Hijack>();

    let service = service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let hijack_tx = hijack_tx.clone();
        async move { Ok::<_, Infallible>(handle_request(req, peer, id, shared, hijack_tx).await) }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    let mut conn = Box::pin(builder.serve_connection(TokioIo::new(io), service));

    let hijack = tokio::select! {
        biased;
        hijack = hijack_rx.recv() => hijack,
        _ = conn.as_mut() => None,
    };
    let Some(hijack) = hijack else {
        return;
    };
    // Tear hyper down; the handler futures (owned by the connection) go with it.
    drop(conn);
    drop(hijack_rx);
    let Ok(io) = Arc::try_unwrap(handle) else {
        return;
    };
    let mut io = io
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Hijack::Raw(bytes) = hijack {
        let _ = io.write_all(&bytes).await;
        let _ = io.flush().await;
    }
    let _ = io.shutdown().await;
    // Drain until the peer closes so the socket ends with a FIN, not a reset.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(DRAIN_AFTER_HIJACK, async {
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn handle_request(
    req: Request<Incoming>,
    peer: SocketAddr,
    connection: usize,
    shared: Arc<Shared>,
    hijack_tx: mpsc::UnboundedSender<Hijack>,
) -> Response<FakeBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let recorded = RecordedRequest {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body,
        peer,
        connection,
    };
    let route = {
        let mut state = lock(&shared.state);
        let route = state.choose_route(recorded.uri.path());
        state.requests.push(recorded.clone());
        route
    };
    shared.recorded.notify_waiters();
    let reply = match route {
        Route::Fixed(reply) => reply,
        Route::Dynamic(handler) => handler(&recorded),
    };

    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }

    let hijack = match &reply.mode {
        Mode::Drop => Some(Hijack::Drop),
        Mode::Raw(bytes) => Some(Hijack::Raw(bytes.clone())),
        Mode::Normal | Mode::Echo => None,
    };
    if let Some(hijack) = hijack {
        if hijack_tx.send(hijack).is_ok() {
            // Resolves once the connection task has dropped its receiver.
            hijack_tx.closed().await;
        }
        let mut response = Response::new(FakeBody::full(Bytes::new()));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    }

    let mut headers = reply.headers.clone();
    let body = if matches!(reply.mode, Mode::Echo) {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        Bytes::from(echo_json(&recorded).to_string())
    } else {
        reply.body.clone()
    };
    let body = match &reply.stall {
        Some((first, stall)) => FakeBody::stalling(first.clone(), *stall, body),
        None => FakeBody::full(body),
    };

    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("scripted header name");
        let value = HeaderValue::from_str(value).expect("scripted header value");
        response.headers_mut().append(name, value);
    }
    response
}

/// The JSON description of a request used by [`Reply::echo`].
fn echo_json(req: &RecordedRequest) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &req.headers {
        let entry = headers
            .entry(name.as_str())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = entry {
            values.push(
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            );
        }
    }
    serde_json::json!({
        "method": req.method.as_str(),
        "uri": req.path_and_query(),
        "version": format!("{:?}", req.version),
        "headers": headers,
        "body": req.body_str(),
    })
}

/// Response body of the fake: one chunk, or two chunks with a stall in between.
pub struct FakeBody {
    first: Option<Bytes>,
    stall: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    rest: Option<Bytes>,
    remaining: u64,
}

impl FakeBody {
    fn full(body: Bytes) -> Self {
        Self::stalling(Bytes::new(), Duration::ZERO, body)
    }

    fn stalling(first: Bytes, stall: Duration, rest: Bytes) -> Self {
        let remaining = (first.len() + rest.len()) as u64;
        Self {
            first: Some(first).filter(|b| !b.is_empty()),
            stall: Some(stall).filter(|d| !d.is_zero()),
            sleep: None,
            rest: Some(rest).filter(|b| !b.is_empty()),
            remaining,
        }
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            this.remaining -= first.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if let Some(stall) = this.stall.take() {
            this.sleep = Some(Box::pin(tokio::time::sleep(stall)));
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        match this.rest.take() {
            Some(rest) => {
                this.remaining -= rest.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(rest))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// An IO object shared between hyper and the connection task, so that the
/// task can take the socket back after tearing hyper down.
struct SharedIo<IO>(Arc<Mutex<IO>>);

impl<IO: AsyncRead + Unpin> AsyncRead for SharedIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SharedIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        lock(&self.0).is_write_vectored()
    }
}

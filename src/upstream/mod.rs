//! Upstream clients: one connection pool per configured upstream, over rustls with the webpki
//! roots and/or the upstream's own CA, HTTP/2 when the upstream offers it by ALPN.
//!
//! Every exchange goes through hyper's client connections (`hyper::client::conn`, HTTP/1.1
//! and HTTP/2), which parse and frame the wire; this module and its pool decide policy only.
//!
//! Every call is bounded: a per-upstream cap on requests in flight (the pool itself only caps
//! idle connections), a connect timeout and a timeout to the response head. A request hyper
//! gives back unsent goes out once more on another connection; one that was written and
//! failed before any response byte is retried once when it is idempotent.

mod pool;
mod resolve;

use std::future::{Future as _, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout_at;
use tower_service::Service as _;

use crate::body::{ResponseBody, UpstreamBody};
use crate::config::UpstreamConfig;
use crate::errno::GatewayError;
use pool::{Checkout, H1Conn, Pool, Sender};
pub use resolve::{Resolve, Resolver};

type Connector = HttpsConnector<HttpConnector<Resolver>>;

/// One upstream service and its connection pool.
pub struct Upstream {
    pub name: String,
    scheme: Scheme,
    authority: Authority,
    /// `Host` for HTTP/1.1 requests: the authority without a default port.
    host: HeaderValue,
    /// Base path without a trailing '/' ("" for the root).
    base_path: String,
    connector: Connector,
    pool: Pool,
    permits: Arc<Semaphore>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// What an upstream call failed with, before the pipeline turns it into an errno answer.
#[derive(Debug)]
pub enum CallError {
    Gateway(GatewayError),
    /// The request body failed (e.g. over the size cap); the pipeline decides what to answer.
    RequestBody,
}

impl Upstream {
    /// An upstream whose host name goes to the system resolver.
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Upstream> {
        Upstream::with_resolver(config, Resolver::system())
    }

    /// An upstream whose host name goes to `resolver`.
    pub fn with_resolver(config: &UpstreamConfig, resolver: Resolver) -> anyhow::Result<Upstream> {
        let scheme = config.url.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let authority = config
            .url
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("upstream {} has no host", config.name))?;
        let base_path = config.url.path().trim_end_matches('/').to_owned();
        let host = host_header(&scheme, &authority)?;
        Ok(Upstream {
            name: config.name.clone(),
            scheme,
            authority,
            host,
            base_path,
            connector: build_connector(config, resolver)?,
            pool: Pool::new(config.pool_idle_timeout, config.max_connections),
            permits: Arc::new(Semaphore::new(config.max_connections)),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        })
    }

    /// The upstream for `config` after a reload, keeping what still means the same thing from
    /// `old` (the same upstream by name, built from `old_config`): the connector and the idle
    /// pooled connections when the URL, CA, `ca_only` and `http2` are equal (and the pool's own
    /// `pool_idle_timeout` and `max_connections`), and the cap on requests in flight when
    /// `max_connections` is equal. Anything else starts afresh; `old` keeps serving the
    /// requests that started on it. `same_resolution`: the `[resolver]` settings are equal
    /// (else connections to the addresses of the old ones are not kept).
    pub fn carry_over(
        config: &UpstreamConfig,
        old_config: &UpstreamConfig,
        old: &Upstream,
        resolver: Resolver,
        same_resolution: bool,
    ) -> anyhow::Result<Upstream> {
        let same_peer = same_resolution
            && config.url == old_config.url
            && config.ca_pem == old_config.ca_pem
            && config.ca_only == old_config.ca_only
            && config.http2 == old_config.http2;
        let same_cap = config.max_connections == old_config.max_connections;
        let same_pool =
            same_peer && same_cap && config.pool_idle_timeout == old_config.pool_idle_timeout;
        let mut upstream = Upstream::with_resolver(config, resolver)?;
        if same_peer {
            upstream.connector = old.connector.clone();
        }
        if same_pool {
            upstream.pool = old.pool.clone();
        }
        if same_cap {
            upstream.permits = old.permits.clone();
        }
        Ok(upstream)
    }

    /// The upstream URI for a request path (already stripped of the route prefix if asked), in
    /// origin-form (`/base/path?query`): what HTTP/1.1 sends; `send` adds this upstream's scheme
    /// and authority when the connection is HTTP/2.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1) + 1,
        );
        pq.push_str(&self.base_path);
        if !path.starts_with('/') {
            pq.push('/');
        }
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        PathAndQuery::try_from(pq)
            .map(Uri::from)
            .map_err(|_| GatewayError::BadRequest("invalid request target"))
    }

    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Root URI of the upstream, for health checks.
    pub fn base_uri(&self) -> Result<Uri, GatewayError> {
        self.uri_for("/", None)
    }

    /// Waits (up to the connect timeout) for a free connection slot.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, GatewayError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout(self.connect_timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(GatewayError::UpstreamBusy {
                upstream: self.name.clone(),
            }),
        }
    }

    /// Sends a request and waits for the response head, within the response timeout.
    pub async fn send(
        &self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, CallError> {
        // The downstream may be h2; the upstream's version comes from ALPN.
        *req.version_mut() = Version::HTTP_11;
        let pooled = match self.pool.checkout() {
            Checkout::Ready(sender) => Some(sender),
            // Boxed: rare, and its future would otherwise size every request's.
            Checkout::Soon(conn) => Box::pin(self.pool.when_ready(conn)).await,
            Checkout::Empty => None,
        };
        let failed = match self.send_once(req, false, pooled).await {
            Ok(response) => return Ok(response),
            Err(failed) => failed,
        };
        match *failed {
            (Failure::BeforeResponse(cause), Some(req)) => {
                tracing::debug!(upstream = %self.name, %cause, "retrying on a fresh connection");
                // Boxed: rare, and its future would otherwise size every request's.
                Box::pin(self.send_once(req, true, None))
                    .await
                    .map_err(|failed| self.classify(failed.0))
            }
            (f, _) => Err(self.classify(f)),
        }
    }

    /// One attempt, on `pooled` (taken from the pool by the caller) or else a new connection,
    /// within the response timeout; `fresh` marks the retry. A request that a pooled
    /// connection gave back unsent (it was closing) goes out once more on a new one, whatever
    /// its method. A failure before any response byte on a first attempt comes with the
    /// request to retry: the request itself when hyper gave it back unsent, else a copy when it
    /// is idempotent and its body is held. The timeout wraps each step rather than the whole: a
    /// wrapped future would be moved, all of it, with every request.
    async fn send_once(
        &self,
        mut req: Request<UpstreamBody>,
        fresh: bool,
        mut pooled: Option<Sender>,
    ) -> Result<Response<ResponseBody>, Attempt> {
        let deadline = tokio::time::Instant::now() + self.response_timeout;
        loop {
            let reused = pooled.is_some();
            let sender = match pooled.take() {
                Some(s) => s,
                // Boxed: the connect and handshake futures are large and rarely needed.
                None => match timeout_at(deadline, Box::pin(self.connect())).await {
                    Ok(Ok(sender)) => sender,
                    Ok(Err(f)) => return Err(Box::new((f, None))),
                    Err(_) => return Err(Box::new((Failure::Timeout, None))),
                },
            };
            // What a retry sends once this request is written (hyper takes it).
            let replay;
            let mut error = match sender {
                Sender::H1(mut conn) => {
                    self.to_http1(&mut req);
                    replay = retry_copy(&req, fresh);
                    let H1Conn { sender, timer, .. } = &mut *conn;
                    if timer.deadline() > deadline {
                        timer.as_mut().reset(deadline);
                    }
                    let mut response = pin!(sender.try_send_request(req));
                    // The connection's own timer, left at an earlier request's deadline: when
                    // it fires before this one's, it is moved on to it then (about once per
                    // response timeout on a busy connection) rather than on every request.
                    let answer = poll_fn(|cx| {
                        if let Poll::Ready(r) = response.as_mut().poll(cx) {
                            return Poll::Ready(Some(r));
                        }
                        while timer.as_mut().poll(cx).is_ready() {
                            if timer.deadline() >= deadline {
                                return Poll::Ready(None);
                            }
                            timer.as_mut().reset(deadline);
                        }
                        Poll::Pending
                    })
                    .await;
                    match answer {
                        Some(Ok(resp)) => {
                            return self
                                .response(resp, Some(conn))
                                .map_err(|f| Box::new((f, None)));
                        }
                        Some(Err(e)) => e,
                        None => return Err(Box::new((Failure::Timeout, None))),
                    }
                }
                Sender::H2(mut tx) => {
                    self.to_http2(&mut req);
                    replay = retry_copy(&req, fresh);
                    match timeout_at(deadline, tx.try_send_request(req)).await {
                        Err(_) => return Err(Box::new((Failure::Timeout, None))),
                        Ok(Ok(resp)) => {
                            return self.response(resp, None).map_err(|f| Box::new((f, None)));
                        }
                        Ok(Err(e)) => e,
                    }
                }
            };
            match error.take_message() {
                Some(unsent) if reused => {
                    // Again on a new connection (`pooled` is empty now).
                    req = unsent;
                }
                Some(unsent) => {
                    let error = error.into_error();
                    let again = (!fresh).then_some(unsent);
                    return Err(Box::new((
                        Failure::BeforeResponse(error_chain(&error)),
                        again,
                    )));
                }
                None => {
                    let failure = Failure::from_hyper(&error.into_error());
                    let again = match failure {
                        Failure::BeforeResponse(_) => replay.map(ReplayParts::into_request),
                        _ => None,
                    };
                    return Err(Box::new((failure, again)));
                }
            }
        }
    }

    /// The policy on an upstream response head: no unasked protocol switch; the framing of the
    /// body the gateway sends, never the upstream's length beside a transfer coding (and that
    /// connection is not reused); the gateway's own HTTP version. An HTTP/1.1 connection goes
    /// back to the pool, now or at the end of the body.
    fn response(
        &self,
        response: Response<Incoming>,
        conn: Option<Box<H1Conn>>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (mut parts, body) = response.into_parts();
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Failure::Protocol(
                "unrequested protocol upgrade (101)".into(),
            ));
        }
        let mut conn = conn;
        if parts.headers.contains_key(TRANSFER_ENCODING)
            && parts.headers.remove(CONTENT_LENGTH).is_some()
        {
            conn = None;
        }
        parts.version = Version::HTTP_11;
        let release = conn.and_then(|c| self.pool.after_head(c));
        Ok(Response::from_parts(
            parts,
            ResponseBody::new(body, release),
        ))
    }

    /// Opens a connection (TCP, TLS and ALPN as configured), with hyper's connection task
    /// spawned.
    async fn connect(&self) -> Result<Sender, Failure> {
        let mut connector = self.connector.clone();
        let uri = Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
            parts
        })
        .map_err(|e| Failure::Connect(e.to_string()))?;
        let io = connector
            .call(uri)
            .await
            .map_err(|e| Failure::from_connect_error(&*e))?;
        if io.connected().is_negotiated_h2() {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| Failure::Connect(error_chain(&e)))?;
            tokio::spawn(drive(self.name.clone(), conn));
            self.pool.keep_h2(&tx);
            Ok(Sender::H2(tx))
        } else {
            let (tx, conn) = http1::Builder::new()
                // One buffer per request (head and any small body), one plain write: the
                // vectored path zeroes a 64-slot iovec array on every flush.
                .writev(false)
                // hyper's default (~400 KiB) lets a pooled connection's buffers grow that far
                // under large bodies and stay there; 64 KiB still holds any sane response head.
                .max_buf_size(UPSTREAM_MAX_BUF)
                .handshake(Fair::new(io))
                .await
                .map_err(|e| Failure::Connect(error_chain(&e)))?;
            tokio::spawn(drive(self.name.clone(), conn));
            Ok(Sender::H1(self.pool.h1_conn(tx)))
        }
    }

    /// HTTP/1.1 wants origin-form (`/path?query`, as `uri_for` makes it) and a `Host` header.
    fn to_http1(&self, req: &mut Request<UpstreamBody>) {
        // One lookup: the pipeline has removed the caller's `Host`, so it is nearly always absent.
        req.headers_mut()
            .entry(HOST)
            .or_insert_with(|| self.host.clone());
        if req.uri().scheme().is_some() {
            let pq = std::mem::take(req.uri_mut())
                .into_parts()
                .path_and_query
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
        }
    }

    /// HTTP/2 takes `:scheme` and `:authority` from an absolute URI; hyper drops the
    /// connection-specific headers.
    fn to_http2(&self, req: &mut Request<UpstreamBody>) {
        if req.uri().scheme().is_none() {
            let mut parts = std::mem::take(req.uri_mut()).into_parts();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }

    fn classify(&self, failure: Failure) -> CallError {
        let upstream = self.name.clone();
        CallError::Gateway(match failure {
            Failure::Timeout => GatewayError::UpstreamTimeout {
                upstream,
                after: self.response_timeout,
            },
            Failure::ConnectTimeout => GatewayError::UpstreamTimeout {
                upstream,
                after: self.connect_timeout,
            },
            Failure::Connect(cause) => GatewayError::UpstreamUnreachable { upstream, cause },
            Failure::BeforeResponse(cause) | Failure::Protocol(cause) => {
                GatewayError::UpstreamBadResponse { upstream, cause }
            }
            Failure::RequestBody => return CallError::RequestBody,
        })
    }
}

/// Why one attempt failed, with the request to send again where a retry is allowed. Boxed: it
/// is rare and `Request` large, and the `Ok` of every attempt goes through the same slot.
type Attempt = Box<(Failure, Option<Request<UpstreamBody>>)>;

/// Why one attempt failed.
enum Failure {
    Timeout,
    ConnectTimeout,
    Connect(String),
    /// The connection closed or reset before any response byte: safe to retry if idempotent.
    BeforeResponse(String),
    Protocol(String),
    RequestBody,
}

impl Failure {
    fn from_connect_error(e: &(dyn std::error::Error + 'static)) -> Failure {
        if find_io_kind(e) == Some(std::io::ErrorKind::TimedOut) {
            Failure::ConnectTimeout
        } else {
            Failure::Connect(error_chain(e))
        }
    }

    fn from_hyper(e: &hyper::Error) -> Failure {
        let cause = error_chain(e);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if err.is::<crate::body::BodyTooLarge>() {
                return Failure::RequestBody;
            }
            if let Some(h) = err.downcast_ref::<hyper::Error>() {
                if h.is_user() {
                    return Failure::RequestBody;
                }
                if h.is_incomplete_message() || h.is_canceled() {
                    return Failure::BeforeResponse(cause);
                }
            }
            source = err.source();
        }
        match find_io_kind(e) {
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
                Failure::BeforeResponse(cause)
            }
            _ => Failure::Protocol(cause),
        }
    }
}

/// An HTTP/1.1 connection's reads, made to yield once reads without a pause have been offered
/// [`READ_SLICE`] bytes of room. A connection task that finds more to read every time it looks
/// (an upstream streaming interim answers without end) would otherwise keep its worker, and the
/// timers that worker drives (the response timeout among them), for as long as the stream
/// lasts: tokio's budget counts reads, not bytes, and hyper's reads grow to hundreds of KiB.
struct Fair<T> {
    inner: T,
    offered: usize,
}

/// Read room offered without a pause before a connection task yields.
const READ_SLICE: usize = 64 * 1024;

/// The most an upstream HTTP/1.1 connection's read and write buffers may grow to.
const UPSTREAM_MAX_BUF: usize = 64 * 1024;

impl<T> Fair<T> {
    fn new(inner: T) -> Fair<T> {
        Fair { inner, offered: 0 }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Fair<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.offered >= READ_SLICE {
            self.offered = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let room = buf.remaining();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_pending() {
            self.offered = 0;
        } else {
            self.offered += room;
        }
        polled
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Fair<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs one connection until it closes.
async fn drive<F>(upstream: String, conn: F)
where
    F: std::future::Future<Output = hyper::Result<()>>,
{
    if let Err(e) = conn.await {
        tracing::debug!(%upstream, error = %e, "upstream connection closed with an error");
    }
}

/// The `Host` value HTTP/1.1 requests carry: host, and the port unless it is the scheme's.
fn host_header(scheme: &Scheme, authority: &Authority) -> anyhow::Result<HeaderValue> {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let value = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    Ok(HeaderValue::try_from(value)?)
}

fn find_io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}

/// What is kept to replay an idempotent, body-less request once.
struct ReplayParts {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<bytes::Bytes>,
}

impl ReplayParts {
    fn into_request(self) -> Request<UpstreamBody> {
        let mut req = Request::new(match self.body {
            Some(b) => UpstreamBody::Full(Some(b)),
            None => UpstreamBody::Empty,
        });
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a request that failed before any response byte goes out once more: on a first
/// attempt, idempotent, and with its body still at hand (none, or held whole).
fn retryable(req: &Request<UpstreamBody>, fresh: bool) -> bool {
    !fresh && idempotent(req.method()) && !matches!(req.body(), UpstreamBody::Stream(_))
}

/// The copy hyper's client needs for that retry (it takes the request).
fn retry_copy(req: &Request<UpstreamBody>, fresh: bool) -> Option<ReplayParts> {
    retryable(req, fresh).then(|| ReplayParts {
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers: req.headers().clone(),
        body: match req.body() {
            UpstreamBody::Full(b) => b.clone(),
            _ => None,
        },
    })
}

fn build_connector(config: &UpstreamConfig, resolver: Resolver) -> anyhow::Result<Connector> {
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = crate::tls::client_config(config.ca_pem.as_deref(), config.ca_only)?;
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(
        if config.http2 && config.url.scheme() == Some(&Scheme::HTTPS) {
            builder.enable_all_versions().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        },
    )
}

#[cfg(test)]
mod tests;

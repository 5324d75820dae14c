//! Body types for both directions, as enums rather than boxed trait objects: no allocation per
//! request, and upstream bodies stream through untouched.
//!
//! Nothing here knows the upstream pool: a response body hands its connection back through
//! [`Release`], which the pool implements.

use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::metrics::{Metrics, Name};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the gateway sends back to its client.
pub enum Body {
    Empty,
    Full(Option<Bytes>),
    /// An upstream body streamed through; the permit holds the upstream's connection slot
    /// until the body is done.
    Upstream {
        inner: ResponseBody,
        _permit: Option<OwnedSemaphorePermit>,
        watch: Option<UpstreamWatch>,
    },
}

/// Watches an upstream body that streams after its head went out: a failure, or no byte for
/// the stall time while the gateway waits on the upstream, ends the body with an error (hyper
/// then closes the HTTP/1.1 connection before the body's end, or resets the HTTP/2 stream, so
/// the client sees a cut answer rather than a short one) and is counted in the metrics.
pub struct UpstreamWatch {
    metrics: Arc<Metrics>,
    upstream: Name,
    stall_after: Duration,
    /// Runs while the body waits on the upstream; made on the first wait.
    stall: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl UpstreamWatch {
    pub fn new(metrics: Arc<Metrics>, upstream: Name, stall_after: Duration) -> UpstreamWatch {
        UpstreamWatch {
            metrics,
            upstream,
            stall_after,
            stall: None,
            waiting: false,
        }
    }

    /// The body waits on the upstream: whether it has waited the stall time since it began.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let after = self.stall_after;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        if !self.waiting {
            self.waiting = true;
            stall.as_mut().reset(Instant::now() + after);
        }
        stall.as_mut().poll(cx).is_ready()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream response body stalled")]
pub struct UpstreamStalled;

impl Body {
    pub fn empty() -> Self {
        Body::Empty
    }
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }
    pub fn upstream(inner: ResponseBody, permit: Option<OwnedSemaphorePermit>) -> Self {
        Body::Upstream {
            inner,
            _permit: permit,
            watch: None,
        }
    }

    /// Watches an upstream body for failures and stalls (nothing for other bodies).
    pub fn watch_upstream(&mut self, new_watch: impl FnOnce() -> UpstreamWatch) {
        if let Body::Upstream { inner, watch, .. } = self
            && !inner.is_end_stream()
        {
            *watch = Some(new_watch());
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream { inner, watch, .. } => {
                let polled = Pin::new(inner).poll_frame(cx);
                let Some(w) = watch else {
                    return polled;
                };
                match &polled {
                    Poll::Pending if w.stalled(cx) => {
                        w.metrics.upstream_error(&w.upstream, "body_stalled");
                        *watch = None;
                        return Poll::Ready(Some(Err(Box::new(UpstreamStalled))));
                    }
                    Poll::Pending => {}
                    Poll::Ready(Some(Err(_))) => {
                        w.metrics.upstream_error(&w.upstream, "body_broken");
                        *watch = None;
                    }
                    Poll::Ready(_) => w.waiting = false,
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

/// Something to give back once an upstream response body has been read to its end: the
/// HTTP/1.1 connection it arrived on, to its pool. The box is the connection's own, made once
/// per connection: handing it to a body allocates nothing.
pub trait Release: Send {
    fn release(self: Box<Self>);
}

/// The body of an upstream response (hyper's), with the connection to give back at its end
/// when that connection was still busy with it when the head arrived. A body dropped or failed
/// before its end gives nothing back: hyper closes that connection.
pub struct ResponseBody {
    inner: Incoming,
    release: Option<Box<dyn Release>>,
}

impl ResponseBody {
    pub fn new(inner: Incoming, release: Option<Box<dyn Release>>) -> ResponseBody {
        ResponseBody { inner, release }
    }

    fn release(&mut self) {
        if let Some(r) = self.release.take() {
            r.release();
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            // Trailers end a body; a body of known length ends with its last byte.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || this.inner.is_end_stream() => {
                this.release()
            }
            Poll::Ready(Some(Err(_))) => this.release = None,
            _ => {}
        }
        polled.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Read to its end (or empty from the start) without the last poll: nothing is left on
        // the connection.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

/// Counts the requests of one connection whose response is not fully handed to hyper yet, so
/// the idle deadline never cuts a connection that is still answering, and tells the connection's
/// I/O guard (`conn_io`) when a request head reached the pipeline and when no response is being
/// produced.
#[derive(Debug, Default)]
pub struct InFlight {
    active: AtomicUsize,
    /// Requests that reached the pipeline so far (never decreases).
    started: AtomicU64,
    /// A response body handed hyper a data frame ending in an empty line since the guard last
    /// looked: such bytes could be mistaken for an answer of hyper's own.
    blank_line_tail: AtomicBool,
}

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }
    pub fn is_idle(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 0
    }
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
    /// Whether a body frame ended in `\r\n\r\n` since the last call.
    pub fn take_blank_line_tail(&self) -> bool {
        self.blank_line_tail.load(Ordering::Relaxed)
            && self.blank_line_tail.swap(false, Ordering::Relaxed)
    }
}

/// Held by a response body until hyper drops it (fully written, or the stream was reset).
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection counted as busy while it exists.
pub struct TrackedBody {
    pub inner: Body,
    pub _guard: InFlightGuard,
}

thread_local! {
    /// Set while an HTTP/2 stream's task is polled (`watch_send`): since when a frame of its
    /// response body has been out without the stream asking for the next one, i.e. how long
    /// the stream has waited for the client to take data.
    static SEND_WAIT: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// Polls an HTTP/2 stream's task with its send-wait state (`waiting_since`) in view of the
/// response body, and stores back what the body reported.
pub fn watch_send<R>(waiting_since: &mut Option<Instant>, poll: impl FnOnce() -> R) -> R {
    SEND_WAIT.set(Some(*waiting_since));
    let polled = poll();
    *waiting_since = SEND_WAIT.replace(None).flatten();
    polled
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let watched = SEND_WAIT.get().is_some();
        if watched {
            SEND_WAIT.set(Some(None));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            if data.ends_with(b"\r\n\r\n") {
                this._guard.0.blank_line_tail.store(true, Ordering::Relaxed);
            }
            if watched && !data.is_empty() {
                SEND_WAIT.set(Some(Some(Instant::now())));
            }
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body sent upstream: the client's body streamed with a size cap, or bytes the
/// gateway holds (a replayable buffered body, or nothing). Kept small (see
/// [`LimitedIncoming`]): requests to upstreams are held and moved whole.
pub enum UpstreamBody {
    Empty,
    Full(Option<Bytes>),
    Stream(LimitedIncoming),
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Stream(s) => s.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Full(bytes) => bytes.is_none(),
            UpstreamBody::Stream(s) => s.0.prefix.is_none() && s.0.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpstreamBody::Full(None) => SizeHint::with_exact(0),
            UpstreamBody::Stream(s) => {
                let mut hint = s.0.inner.size_hint();
                if let Some(prefix) = &s.0.prefix {
                    let len = prefix.len() as u64;
                    hint.set_lower(hint.lower() + len);
                    if let Some(upper) = hint.upper() {
                        hint.set_upper(upper + len);
                    }
                }
                hint
            }
        }
    }
}

/// What the pipeline learns about the client's body while it streams upstream: it went over
/// the cap, it stalled past `body_read_timeout`, or the gateway is waiting on the client's next
/// bytes right now (a timeout that runs out then is the client's fault, not the upstream's).
#[derive(Debug, Default)]
pub struct BodyWatch {
    over_limit: AtomicBool,
    stalled: AtomicBool,
    waiting: AtomicBool,
}

impl BodyWatch {
    pub fn over_limit(&self) -> bool {
        self.over_limit.load(Ordering::Acquire)
    }
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }
    pub fn waiting_on_client(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }
}

/// The client's body with a byte cap and a progress deadline. Going over the cap, or waiting
/// longer than the read timeout for the client's next bytes, fails the upstream request and
/// raises a flag the pipeline reads to answer 413 or 408 instead of a 502.
///
/// Its state is boxed, so that a request to an upstream stays small inline: a request carries
/// its body, and each pooled HTTP/1.1 upstream connection keeps one or two blocks of 32 whole
/// requests in its request channel (hyper's dispatch channel, a tokio list). Inline, the body
/// was 120 bytes and a block about 11.5 KiB (a 12 KiB allocation); boxed, 40 bytes and about
/// 8.8 KiB (10 KiB), for one small allocation per streamed request, which is most requests
/// (`body::sizes` prints the figures).
pub struct LimitedIncoming(Box<Limited>);

struct Limited {
    /// Bytes already read from `inner` (a body that turned out too large to buffer for a
    /// replay), sent first.
    prefix: Option<Bytes>,
    inner: Incoming,
    remaining: u64,
    watch: Arc<BodyWatch>,
    read_timeout: Duration,
    /// Runs while the body waits on the client; made on the first wait.
    stall: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("request body over the configured limit")]
pub struct BodyTooLarge;

#[derive(Debug, thiserror::Error)]
#[error("request body stalled")]
pub struct BodyStalled;

impl LimitedIncoming {
    pub fn new(inner: Incoming, limit: u64, watch: Arc<BodyWatch>, read_timeout: Duration) -> Self {
        LimitedIncoming(Box::new(Limited {
            prefix: None,
            inner,
            remaining: limit,
            watch,
            read_timeout,
            stall: None,
            waiting: false,
        }))
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_frame(cx)
    }
}

impl Limited {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let Poll::Ready(item) = Pin::new(&mut self.inner).poll_frame(cx) else {
            return self.poll_stall(cx);
        };
        if self.waiting {
            self.waiting = false;
            self.watch.waiting.store(false, Ordering::Release);
        }
        match item {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.watch.over_limit.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            None => Poll::Ready(None),
        }
    }

    /// The body waits on the client: from the start of the wait, the client has the read
    /// timeout to send more.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let timeout = self.read_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.waiting {
            self.waiting = true;
            self.watch.waiting.store(true, Ordering::Release);
            stall.as_mut().reset(Instant::now() + timeout);
        }
        if stall.as_mut().poll(cx).is_ready() {
            self.watch.stalled.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(BodyStalled))));
        }
        Poll::Pending
    }
}

/// Reads a request body whole when it has at most `max` bytes, so it can be sent twice (a
/// replay after a token refresh). A longer one comes back as a stream that starts with what
/// was read, under the same total `limit`. Trailers are not kept. Each wait for the client's
/// next bytes is bounded by `read_timeout`; the caller bounds the whole.
pub async fn buffer_for_replay(
    mut incoming: Incoming,
    max: u64,
    limit: u64,
    watch: Arc<BodyWatch>,
    read_timeout: Duration,
) -> Result<UpstreamBody, BufferError> {
    use http_body_util::BodyExt as _;
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(read_timeout, incoming.frame()).await {
            Err(_) => return Err(BufferError::Stalled),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|_| BufferError::Broken)?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = (buf.len() + data.len()) as u64;
        if total > limit {
            return Err(BufferError::TooLarge);
        }
        buf.extend_from_slice(&data);
        if total > max {
            let mut rest = LimitedIncoming::new(incoming, limit - total, watch, read_timeout);
            rest.0.prefix = Some(buf.freeze());
            return Ok(UpstreamBody::Stream(rest));
        }
    }
    Ok(if buf.is_empty() {
        UpstreamBody::Empty
    } else {
        UpstreamBody::Full(Some(buf.freeze()))
    })
}

/// Why a body could not be read for buffering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferError {
    TooLarge,
    /// The client's body failed or ended early.
    Broken,
    /// The client sent nothing for the read timeout.
    Stalled,
}

#[cfg(test)]
mod sizes;

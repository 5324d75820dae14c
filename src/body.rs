//! Body types for both directions, as enums rather than boxed trait objects: no allocation per
//! request, and upstream bodies stream through untouched.
//!
//! Nothing here knows the upstream pool: a response body hands its connection back through
//! [`Release`], which the pool implements.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

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
    },
}

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
            Body::Upstream { inner, .. } => Pin::new(inner).poll_frame(cx),
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

/// Counts the requests of one connection whose response is not fully written yet, so the idle
/// deadline never cuts a connection that is still answering.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::atomic::AtomicUsize);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }
    pub fn is_idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// Held by a response body until hyper drops it (fully written, or the stream was reset).
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection counted as busy while it exists.
pub struct TrackedBody {
    pub inner: Body,
    pub _guard: InFlightGuard,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body sent upstream: the client's body streamed with a size cap, or bytes the
/// gateway holds (a replayable buffered body, or nothing).
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
            UpstreamBody::Stream(s) => s.prefix.is_none() && s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpstreamBody::Full(None) => SizeHint::with_exact(0),
            UpstreamBody::Stream(s) => {
                let mut hint = s.inner.size_hint();
                if let Some(prefix) = &s.prefix {
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

/// The client's body with a byte cap. Going over the cap fails the upstream request and raises
/// a flag the pipeline reads to answer 413 instead of a 502.
pub struct LimitedIncoming {
    /// Bytes already read from `inner` (a body that turned out too large to buffer for a
    /// replay), sent first.
    prefix: Option<Bytes>,
    inner: Incoming,
    remaining: u64,
    exceeded: Option<Arc<AtomicBool>>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body over the configured limit")]
pub struct BodyTooLarge;

impl LimitedIncoming {
    /// `exceeded` is only needed when the length is not declared up front (chunked, h2 without
    /// content-length); a declared length over the cap is refused before forwarding.
    pub fn new(inner: Incoming, limit: u64, exceeded: Option<Arc<AtomicBool>>) -> Self {
        LimitedIncoming {
            prefix: None,
            inner,
            remaining: limit,
            exceeded,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        if let Some(flag) = &self.exceeded {
                            flag.store(true, Ordering::Release);
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reads a request body whole when it has at most `max` bytes, so it can be sent twice (a
/// replay after a token refresh). A longer one comes back as a stream that starts with what
/// was read, under the same total `limit`. Trailers are not kept. The caller bounds the time.
pub async fn buffer_for_replay(
    mut incoming: Incoming,
    max: u64,
    limit: u64,
    exceeded: Option<Arc<AtomicBool>>,
) -> Result<UpstreamBody, BufferError> {
    use http_body_util::BodyExt as _;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|_| BufferError::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = (buf.len() + data.len()) as u64;
        if total > limit {
            return Err(BufferError::TooLarge);
        }
        buf.extend_from_slice(&data);
        if total > max {
            return Ok(UpstreamBody::Stream(LimitedIncoming {
                prefix: Some(buf.freeze()),
                inner: incoming,
                remaining: limit - total,
                exceeded,
            }));
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
}

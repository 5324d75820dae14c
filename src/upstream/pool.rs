//! The connection pool of one upstream: idle HTTP/1.1 connections (most recently used first),
//! of two kinds (this gateway's own client, see `h1`, and hyper's, for streamed request
//! bodies), and at most one shared HTTP/2 connection.
//!
//! An HTTP/1.1 connection goes back to the pool as soon as it can take the next request: at
//! once after the response head when its body is already in (the usual small answer), else
//! when the response body has been read to its end. Nothing is spawned per response. A
//! connection whose body was dropped early is not reused (hyper closes it). Idle connections
//! are closed after the idle timeout by one sweeping task per pool, which stops when the pool
//! is empty or gone.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use tokio::time::Instant;

use super::h1;
use crate::body::{BoxError, UpstreamBody};

pub(super) type H1Sender = http1::SendRequest<UpstreamBody>;
pub(super) type H2Sender = http2::SendRequest<UpstreamBody>;

/// A connection ready for one request.
pub(super) enum Sender {
    /// The gateway's own HTTP/1.1 client, driven by the request's task.
    Fast(Box<h1::Conn>),
    H1(H1Sender),
    H2(H2Sender),
}

#[derive(Clone)]
pub(super) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    idle: Mutex<Idle>,
    idle_timeout: Duration,
    max_idle: usize,
}

#[derive(Default)]
struct Idle {
    /// Oldest first: checkout takes from the end (the warmest connection), expiry trims the front.
    h1: Vec<(H1Sender, Instant)>,
    /// Same order, for the gateway's own client.
    fast: Vec<(Box<h1::Conn>, Instant)>,
    /// Shared by all requests; the instant is its last use.
    h2: Option<(H2Sender, Instant)>,
    sweeping: bool,
}

/// The response body of an upstream call. For HTTP/1.1 it may carry its connection, which goes
/// back to the pool when the body ends.
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    /// From hyper's client; the HTTP/1.1 connection, if it is still busy, comes back at the end.
    Hyper {
        inner: Incoming,
        release: Option<Release>,
    },
    /// Read whole with the head (the connection is already back).
    Full(Option<Bytes>),
    /// Still arriving on the gateway's own client connection.
    Streaming(Box<h1::Streaming>),
}

struct Release {
    pool: Arc<Shared>,
    sender: H1Sender,
}

// === impl Pool ===

impl Pool {
    pub(super) fn new(idle_timeout: Duration, max_idle: usize) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                idle: Mutex::new(Idle::default()),
                idle_timeout,
                max_idle,
            }),
        }
    }

    /// A pooled connection that can take a request now, if any: the HTTP/2 one, else an
    /// HTTP/1.1 one of the kind asked for (`fast`: the gateway's own client).
    pub(super) fn checkout(&self, fast: bool) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.shared.lock();
        if let Some((h2, last_used)) = &mut idle.h2 {
            if h2.is_ready() && now.duration_since(*last_used) < self.shared.idle_timeout {
                *last_used = now;
                return Some(Sender::H2(h2.clone()));
            }
            idle.h2 = None;
        }
        if fast {
            while let Some((conn, since)) = idle.fast.pop() {
                let unused = now.duration_since(since);
                if unused >= self.shared.idle_timeout {
                    // The rest are older still.
                    idle.fast.clear();
                    break;
                }
                if unused < h1::PROBE_AFTER || conn.still_open() {
                    return Some(Sender::Fast(conn));
                }
            }
            return None;
        }
        let mut i = idle.h1.len();
        while i > 0 {
            i -= 1;
            let (sender, since) = &idle.h1[i];
            if sender.is_closed() || now.duration_since(*since) >= self.shared.idle_timeout {
                idle.h1.remove(i);
            } else if sender.is_ready() {
                return Some(Sender::H1(idle.h1.remove(i).0));
            }
            // Else its last response is still being wrapped up (a request body still going
            // out, or the connection task has not run yet): leave it for later.
        }
        None
    }

    /// Keeps a new HTTP/2 connection for the requests that follow (unless one is already kept).
    pub(super) fn keep_h2(&self, sender: &H2Sender) {
        let mut idle = self.shared.lock();
        if !idle.h2.as_ref().is_some_and(|(h2, _)| h2.is_ready())
            && self.shared.start_sweeping(&mut idle)
        {
            idle.h2 = Some((sender.clone(), Instant::now()));
        }
    }

    /// Takes back a connection of the gateway's own client that is ready for a request.
    pub(super) fn checkin_fast(&self, conn: Box<h1::Conn>) {
        let mut idle = self.shared.lock();
        if idle.fast.len() >= self.shared.max_idle {
            idle.fast.remove(0);
        }
        if self.shared.start_sweeping(&mut idle) {
            idle.fast.push((conn, Instant::now()));
        }
    }

    /// The response body for a response that arrived on `sender`. The connection goes back to
    /// the pool now if it is already free, else with the end of the body.
    pub(super) fn response_body(&self, inner: Incoming, sender: H1Sender) -> ResponseBody {
        if sender.is_ready() {
            self.shared.checkin(sender);
            return ResponseBody::unpooled(inner);
        }
        ResponseBody {
            kind: Kind::Hyper {
                inner,
                release: Some(Release {
                    pool: self.shared.clone(),
                    sender,
                }),
            },
        }
    }

    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        let idle = self.shared.lock();
        idle.h1.len() + idle.fast.len() + usize::from(idle.h2.is_some())
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The sections below cannot panic half-way, so a poisoned lock still holds a valid pool.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkin(self: &Arc<Self>, sender: H1Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.h1.len() >= self.max_idle {
            idle.h1.remove(0);
        }
        if self.start_sweeping(&mut idle) {
            idle.h1.push((sender, Instant::now()));
        }
    }

    /// Makes sure the sweeping task runs; false when it cannot (no runtime: the caller then
    /// keeps nothing, since nothing would close it).
    fn start_sweeping(self: &Arc<Self>, idle: &mut Idle) -> bool {
        if idle.sweeping {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        idle.sweeping = true;
        runtime.spawn(sweep(Arc::downgrade(self), self.idle_timeout));
        true
    }

    /// Drops closed and expired connections; false once nothing is left to watch.
    fn sweep(&self) -> bool {
        let now = Instant::now();
        let mut idle = self.lock();
        let timeout = self.idle_timeout;
        idle.h1
            .retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < timeout);
        idle.fast
            .retain(|(_, since)| now.duration_since(*since) < timeout);
        if idle
            .h2
            .as_ref()
            .is_some_and(|(s, used)| !s.is_ready() || now.duration_since(*used) >= timeout)
        {
            idle.h2 = None;
        }
        idle.sweeping = !idle.h1.is_empty() || !idle.fast.is_empty() || idle.h2.is_some();
        idle.sweeping
    }
}

/// Closes idle connections past the timeout, at most one period late.
async fn sweep(pool: Weak<Shared>, period: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match pool.upgrade() {
            Some(pool) if pool.sweep() => {}
            _ => return,
        }
    }
}

// === impl ResponseBody ===

impl ResponseBody {
    /// A body whose connection is not pooled here (HTTP/2, or already back in the pool).
    pub(super) fn unpooled(inner: Incoming) -> ResponseBody {
        ResponseBody {
            kind: Kind::Hyper {
                inner,
                release: None,
            },
        }
    }

    pub(super) fn full(data: Option<Bytes>) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(data),
        }
    }

    pub(super) fn streaming(body: h1::Streaming) -> ResponseBody {
        ResponseBody {
            kind: Kind::Streaming(Box::new(body)),
        }
    }
}

impl Kind {
    fn release(&mut self) {
        if let Kind::Hyper { release, .. } = self
            && let Some(r) = release.take()
        {
            r.pool.checkin(r.sender);
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
        let kind = &mut self.get_mut().kind;
        match kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Streaming(body) => body.poll_frame(cx).map_err(BoxError::from),
            Kind::Hyper { inner, release } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => kind.release(),
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => kind.release(),
                    // hyper closes a connection whose body failed; never pool it.
                    Poll::Ready(Some(Err(_))) => *release = None,
                    _ => {}
                }
                polled.map_err(BoxError::from)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Streaming(body) => body.is_end_stream(),
            Kind::Hyper { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Streaming(body) => body.size_hint(),
            Kind::Hyper { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves unread bytes on the connection: hyper closes it,
        // so it must not be pooled. (The gateway's own client closes it by dropping it.)
        if let Kind::Hyper { inner, .. } = &self.kind
            && inner.is_end_stream()
        {
            self.kind.release();
        }
    }
}

#[cfg(test)]
mod tests;

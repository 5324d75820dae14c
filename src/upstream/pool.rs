//! The connection pool of one upstream, over hyper's client connections: idle HTTP/1.1
//! connections (most recently used first) and at most one shared HTTP/2 connection.
//!
//! hyper's connection task keeps reading while a connection is idle, so a connection the
//! upstream closed, or wrote anything unasked on, is closed by hyper and never handed out:
//! checkout takes only a connection whose `SendRequest` is ready.
//!
//! An HTTP/1.1 connection goes back to the pool as soon as it can take the next request: at
//! once after the response head when hyper is already done with it (the usual small answer),
//! else when the response body has been read to its end. A connection back from a body may
//! still be wrapping up in hyper's task (it has not run since the body ended): a request that
//! finds no ready connection waits briefly for such a one rather than opening another, or
//! many concurrent requests (one HTTP/2 client) would each open their own. Nothing is spawned per response. A
//! connection whose body was dropped early is not reused (hyper closes it). Idle connections
//! are closed after the idle timeout by one sweeping task per pool, which stops when the pool
//! is empty or gone.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use tokio::time::{Instant, Sleep};

use crate::body::{Release, UpstreamBody};

pub(super) type H1Sender = http1::SendRequest<UpstreamBody>;
pub(super) type H2Sender = http2::SendRequest<UpstreamBody>;

/// How long a request waits for a pooled connection that hyper is still wrapping up, before
/// it opens a new one: hyper's task is already woken, so it is normally ready within the same
/// turn of the runtime; this bounds a connection that stays busy for some other reason.
const SOON: Duration = Duration::from_millis(50);

/// What the pool has for the next request.
pub(super) enum Checkout {
    Ready(Sender),
    /// An idle HTTP/1.1 connection whose last exchange hyper is still wrapping up.
    Soon(Box<H1Conn>),
    Empty,
}

/// A connection ready for one request.
pub(super) enum Sender {
    H1(Box<H1Conn>),
    H2(H2Sender),
}

/// One HTTP/1.1 connection (hyper's, driven by its own task), boxed once for its life: it
/// travels between the pool and the response bodies without further allocation.
pub(super) struct H1Conn {
    pub(super) sender: H1Sender,
    /// The response deadline of the request in flight, or an earlier one (see `send_once`). One
    /// timer for the connection's life: a new timer per request takes the timer wheel's lock
    /// twice (register, cancel).
    pub(super) timer: Pin<Box<Sleep>>,
    pool: Weak<Shared>,
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
    h1: Vec<(Box<H1Conn>, Instant)>,
    /// Shared by all requests; the instant is its last use.
    h2: Option<(H2Sender, Instant)>,
    sweeping: bool,
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

    /// A pooled connection that can take a request now, if any: the HTTP/2 one, else the
    /// warmest ready HTTP/1.1 one, else the warmest one hyper is still wrapping up.
    pub(super) fn checkout(&self) -> Checkout {
        let now = Instant::now();
        let mut idle = self.shared.lock();
        if let Some((h2, last_used)) = &mut idle.h2 {
            if h2.is_ready() && now.duration_since(*last_used) < self.shared.idle_timeout {
                *last_used = now;
                return Checkout::Ready(Sender::H2(h2.clone()));
            }
            idle.h2 = None;
        }
        let mut soon = None;
        let mut i = idle.h1.len();
        while i > 0 {
            i -= 1;
            let (conn, since) = &idle.h1[i];
            if now.duration_since(*since) >= self.shared.idle_timeout || conn.sender.is_closed() {
                idle.h1.remove(i);
                soon = soon.map(|s: usize| s - 1);
            } else if conn.sender.is_ready() {
                return Checkout::Ready(Sender::H1(idle.h1.remove(i).0));
            } else if soon.is_none() {
                // hyper is still wrapping up its last exchange (the connection task has not
                // run since the response ended).
                soon = Some(i);
            }
        }
        match soon {
            Some(i) => Checkout::Soon(idle.h1.remove(i).0),
            None => Checkout::Empty,
        }
    }

    /// `conn` (from `Checkout::Soon`) once hyper has made it ready, if that happens within
    /// [`SOON`]; else it goes back to the pool (or away, if it closed) and the caller opens a
    /// new connection.
    pub(super) async fn when_ready(&self, mut conn: Box<H1Conn>) -> Option<Sender> {
        match tokio::time::timeout(SOON, conn.sender.ready()).await {
            Ok(Ok(())) => Some(Sender::H1(conn)),
            Ok(Err(_)) => None,
            Err(_) => {
                self.shared.checkin(conn);
                None
            }
        }
    }

    /// A new HTTP/1.1 connection of this pool.
    pub(super) fn h1_conn(&self, sender: H1Sender) -> Box<H1Conn> {
        Box::new(H1Conn {
            sender,
            // Already elapsed: the first request moves it to its deadline.
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            pool: Arc::downgrade(&self.shared),
        })
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

    /// Takes back an HTTP/1.1 connection whose response is complete, or gives it to the body
    /// to bring back at its end when hyper is not done with it yet.
    pub(super) fn after_head(&self, conn: Box<H1Conn>) -> Option<Box<dyn Release>> {
        if conn.sender.is_ready() {
            self.shared.checkin(conn);
            None
        } else {
            Some(conn)
        }
    }

    /// Puts a connection in the pool as it is.
    #[cfg(test)]
    pub(super) fn checkin(&self, conn: Box<H1Conn>) {
        self.shared.checkin(conn);
    }

    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        let idle = self.shared.lock();
        idle.h1.len() + usize::from(idle.h2.is_some())
    }
}

impl Release for H1Conn {
    fn release(self: Box<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.checkin(self);
        }
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The sections below cannot panic half-way, so a poisoned lock still holds a valid pool.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkin(self: &Arc<Self>, conn: Box<H1Conn>) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.h1.len() >= self.max_idle {
            idle.h1.remove(0);
        }
        if self.start_sweeping(&mut idle) {
            idle.h1.push((conn, Instant::now()));
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
            .retain(|(c, since)| !c.sender.is_closed() && now.duration_since(*since) < timeout);
        if idle
            .h2
            .as_ref()
            .is_some_and(|(s, used)| !s.is_ready() || now.duration_since(*used) >= timeout)
        {
            idle.h2 = None;
        }
        idle.sweeping = !idle.h1.is_empty() || idle.h2.is_some();
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

#[cfg(test)]
mod tests;

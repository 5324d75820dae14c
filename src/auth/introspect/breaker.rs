//! The introspection circuit breaker: after the OAuth server failed (unreachable, timeout, 5xx,
//! garbage), answer "unavailable" at once for a short time instead of making every request
//! wait out a full timeout, then let exactly one call probe. Time is passed in (the gateway's
//! clock), so tests move a manual clock.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub(super) struct Breaker {
    open_for: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set by a failure; `None` while closed.
    open_until: Option<SystemTime>,
    /// The one call let through after `open_until` has not settled yet.
    probe_in_flight: bool,
}

/// Permission for one call. Dropping it unsettled (the call never reached the server, or
/// panicked) frees the probe slot without counting a result.
pub(super) struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

// === impl Breaker ===

impl Breaker {
    /// A zero `open_for` disables the breaker.
    pub(super) fn new(open_for: Duration) -> Self {
        Breaker {
            open_for,
            state: Mutex::new(State::default()),
        }
    }

    /// `None` while open, or while the probe is out.
    pub(super) fn admit(&self, now: SystemTime) -> Option<Ticket<'_>> {
        let mut state = self.lock();
        let probe = match state.open_until {
            None => false,
            Some(until) if now < until || state.probe_in_flight => return None,
            Some(_) => {
                state.probe_in_flight = true;
                true
            }
        };
        Some(Ticket {
            breaker: self,
            probe,
            settled: false,
        })
    }

    /// How long the breaker stays open from `now`; `None` while closed or while its probe is
    /// out (then nobody knows).
    pub(super) fn remaining(&self, now: SystemTime) -> Option<Duration> {
        let until = self.lock().open_until?;
        until
            .duration_since(now)
            .ok()
            .filter(|left| !left.is_zero())
    }

    /// What a caller refused now should wait: the time left open, or, while the probe is
    /// out, the open time (if the probe fails, the breaker opens that long again). `None`
    /// while closed.
    pub(super) fn wait(&self, now: SystemTime) -> Option<Duration> {
        let probing = {
            let state = self.lock();
            state.open_until.is_some() && state.probe_in_flight
        };
        match self.remaining(now) {
            Some(left) => Some(left),
            None if probing => Some(self.open_for),
            None => None,
        }
    }

    pub(super) fn is_open(&self, now: SystemTime) -> bool {
        self.lock().open_until.is_some_and(|until| now < until)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Ticket ===

impl Ticket<'_> {
    /// The OAuth server answered properly: close.
    pub(super) fn succeed(mut self) {
        self.settled = true;
        let mut state = self.breaker.lock();
        state.open_until = None;
        state.probe_in_flight = false;
    }

    /// The OAuth server failed: (re)open from `now`.
    pub(super) fn fail(mut self, now: SystemTime) {
        self.settled = true;
        if self.breaker.open_for.is_zero() {
            return;
        }
        let mut state = self.breaker.lock();
        state.open_until = Some(now.checked_add(self.breaker.open_for).unwrap_or(now));
        state.probe_in_flight = false;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.lock().probe_in_flight = false;
        }
    }
}

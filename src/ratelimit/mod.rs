//! Step 5, quotas: per-key limits (OAuth client id, a configured header, or the peer address)
//! and a global cap per upstream, with governor's GCRA limiters. Over a per-key quota the
//! caller answers 429 errno 114; over the upstream-wide cap, 503 errno 201; both with
//! `Retry-After` = [`RetryAfter::secs`].
//!
//! Never holds more than `max_keys` keys (a flood of distinct keys cannot exhaust memory) and
//! never stores a raw header value (see [`SecretKeyHasher`]). Generic over governor's clock so
//! tests drive time with `FakeRelativeClock`.
//!
//! Beyond `max_keys`, a new key is refused (fail closed, `RetryAfter::table_full`) after one
//! inline sweep of stale keys, at most once per second; keys already tracked keep their normal
//! quota. A key used once is stale two replenish intervals (`window / requests`) later, so only
//! a sustained flood of over `max_keys` new keys per that time keeps new callers out, while the
//! upstream stays protected either way.

mod headers;
mod key;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

pub use headers::{
    RATELIMIT, RATELIMIT_POLICY, policy_header, ratelimit_allowed, ratelimit_denied,
    ratelimit_header,
};
use key::SharedStore;
pub use key::{RateKey, SecretKeyHasher};

use crate::backoff::whole_seconds_up;

/// How often a full key table may be swept inline.
const INLINE_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// `requests` per `window`, with a burst of `requests`: GCRA releases one request every
/// `window / requests` and lets up to `requests` through at once after idling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    requests: NonZeroU32,
    window: Duration,
    quota: Quota,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("a quota must allow at least one request")]
    NoRequests,
    #[error("a quota window must be at least one second")]
    WindowTooShort,
}

/// An admitted request, with what the `RateLimit` header reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Requests that could still go through right now.
    pub remaining: u32,
    /// Until the quota is whole again.
    pub reset: Duration,
}

/// A refused request: retry after `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    pub wait: Duration,
    /// Refused because the key table is full, not because this key used its quota.
    pub table_full: bool,
}

/// Per-key quotas with a hard cap on tracked keys.
pub struct KeyedLimiter<C: Clock = DefaultClock> {
    limit: Limit,
    store: SharedStore,
    limiter: RateLimiter<RateKey, SharedStore, C, StateInformationMiddleware>,
    max_keys: usize,
    last_sweep: Mutex<Option<C::Instant>>,
}

/// One quota for all traffic to an upstream: protects FxA from the whole fleet.
pub struct GlobalLimiter<C: Clock = DefaultClock> {
    limit: Limit,
    limiter: RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>,
}

// === impl Limit ===

impl Limit {
    pub fn new(requests: u32, window: Duration) -> Result<Self, LimitError> {
        let requests = NonZeroU32::new(requests).ok_or(LimitError::NoRequests)?;
        if window < Duration::from_secs(1) {
            return Err(LimitError::WindowTooShort);
        }
        let quota = Quota::with_period(window / requests.get())
            .ok_or(LimitError::WindowTooShort)?
            .allow_burst(requests);
        Ok(Limit {
            requests,
            window,
            quota,
        })
    }

    pub fn requests(&self) -> u32 {
        self.requests.get()
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn allowed(&self, remaining: u32) -> Allowed {
        let used = self.requests.get().saturating_sub(remaining);
        Allowed {
            remaining,
            reset: self.quota.replenish_interval() * used,
        }
    }
}

// === impl RetryAfter ===

impl RetryAfter {
    /// Whole seconds for `Retry-After` / `retryAfter`: rounded up, at least 1.
    pub fn secs(&self) -> u64 {
        whole_seconds_up(self.wait)
    }
}

// === impl KeyedLimiter ===

impl KeyedLimiter<DefaultClock> {
    pub fn new(limit: Limit, max_keys: usize) -> Self {
        Self::with_clock(limit, max_keys, DefaultClock::default())
    }
}

impl<C: Clock> KeyedLimiter<C> {
    pub fn with_clock(limit: Limit, max_keys: usize, clock: C) -> Self {
        let store = SharedStore::default();
        KeyedLimiter {
            limiter: RateLimiter::new(limit.quota, store.clone(), clock),
            store,
            limit,
            max_keys: max_keys.max(1),
            last_sweep: Mutex::new(None),
        }
    }

    pub fn limit(&self) -> &Limit {
        &self.limit
    }

    /// Counts one request against `key`.
    pub fn check(&self, key: &RateKey) -> Result<Allowed, RetryAfter> {
        if !self.store.contains(key) && self.store.len() >= self.max_keys {
            self.sweep_if_due();
            if self.store.len() >= self.max_keys {
                return Err(RetryAfter {
                    wait: self.limit.quota.replenish_interval() * 2 + INLINE_SWEEP_EVERY,
                    table_full: true,
                });
            }
        }
        match self.limiter.check_key(key) {
            Ok(state) => Ok(self.limit.allowed(state.remaining_burst_capacity())),
            Err(not_until) => Err(RetryAfter {
                wait: not_until.wait_time_from(self.limiter.clock().now()),
                table_full: false,
            }),
        }
    }

    /// Drops keys whose quota is whole again and returns their memory. Run periodically.
    pub fn housekeeping(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys tracked now (for a gauge).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// `retain_recent` when the table is full, at most once per second and by one thread.
    fn sweep_if_due(&self) {
        let mut last = match self.last_sweep.try_lock() {
            Ok(last) => last,
            // A timestamp cannot be left half-written: ignore poisoning.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let now = self.limiter.clock().now();
        let due =
            last.is_none_or(|at| Duration::from(now.duration_since(at)) >= INLINE_SWEEP_EVERY);
        if due {
            self.limiter.retain_recent();
            *last = Some(now);
        }
    }
}

// === impl GlobalLimiter ===

impl GlobalLimiter<DefaultClock> {
    pub fn new(limit: Limit) -> Self {
        Self::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock> GlobalLimiter<C> {
    pub fn with_clock(limit: Limit, clock: C) -> Self {
        GlobalLimiter {
            limiter: RateLimiter::new(limit.quota, InMemoryState::default(), clock),
            limit,
        }
    }

    pub fn limit(&self) -> &Limit {
        &self.limit
    }

    /// Counts one request against the upstream-wide cap.
    pub fn check(&self) -> Result<Allowed, RetryAfter> {
        match self.limiter.check() {
            Ok(state) => Ok(self.limit.allowed(state.remaining_burst_capacity())),
            Err(not_until) => Err(RetryAfter {
                wait: not_until.wait_time_from(self.limiter.clock().now()),
                table_full: false,
            }),
        }
    }
}

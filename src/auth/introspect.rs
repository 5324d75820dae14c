//! Bearer-token introspection against the OAuth server (`POST /v1/introspect`,
//! `fxa-reference.md` §1.6), behind a bounded cache.
//!
//! - The cache (moka) is keyed by HMAC-SHA256 of the token under a per-process random key;
//!   the raw token is never a key, never stored, never logged. Active answers live until
//!   min(`exp`, `max_ttl`); inactive ones, and tokens the endpoint refused with a 4xx, for
//!   `negative_ttl`, so token guessing does not turn into FxA traffic. Every hit is judged on
//!   the gateway's clock: a token past its `exp` is never served as active.
//! - Concurrent lookups of one uncached token make one call (moka's `try_get_with`). The call
//!   runs in its own task, so a client that goes away never cuts it short and the breaker and
//!   back-off bookkeeping always complete; moka then hands the lookup to one waiter, which may
//!   ask once more.
//! - Failures (unreachable, timeout, 429, 5xx, garbage) are never cached and never read as
//!   "inactive": they are [`IntrospectError::Unavailable`] (503 errno 104). After one, the
//!   breaker answers at once for [`IntrospectSettings::breaker`], then lets one call probe.
//!   The upstream's back-off gate is checked before every call and told every answer, so a
//!   429/503 with `Retry-After` from the OAuth server holds off every caller.
//! - A refresh token introspected as active is returned as it is (`token_type:
//!   "refresh_token"`); [`TokenInfo::is_active_access_token`] is what a bearer route checks.

mod answer;
mod breaker;
mod cache;
mod call;
mod intern;

#[cfg(test)]
mod sizes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compact;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_lc_rs::{hmac, rand};
use http::StatusCode;
use moka::future::Cache;
use moka::ops::compute::Op;
use serde_json::Value;
use tracing::Instrument as _;

pub use answer::{
    MILLIS_THRESHOLD, MalformedAnswer, TokenInfo, epoch_time, parse_answer, scope_field,
};
pub use cache::entry_ttl;
pub use intern::SharedStr;

use crate::auth::form_post::RawAnswer;
use crate::auth::revocation::{Revocation, Revocations};
use crate::auth::ttl::TtlExpiry;
use crate::backoff::{
    Admission, BackoffGate, Caller, Gate as _, Scope, UpstreamAnswer, clamp_retry_after,
    parse_retry_after, whole_seconds_up,
};
use crate::clock::SharedClock;
use crate::upstream::Upstream;
use breaker::Breaker;
use cache::{CacheKey, Cached};

/// Tokens longer than this are refused without a call: FxA's opaque tokens are 64 hex chars
/// and its JWT access tokens are capped at 1024 (`fxa-reference.md` §1.3).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Operator knobs; the config maps `gateway.toml` onto this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectSettings {
    /// Longest reuse of an active answer: the revocation window (default 300 s).
    pub max_ttl: Duration,
    /// Reuse of an inactive or refused answer (default 5 s).
    pub negative_ttl: Duration,
    /// Most cached answers (default 100,000); least useful ones are evicted past it.
    pub capacity: u64,
    /// How long an OAuth-server failure is remembered before the next probe (default 1 s;
    /// zero disables the breaker).
    pub breaker: Duration,
}

/// Why a token could not be judged or was refused by the endpoint. An inactive token is not an
/// error: it is `Ok` with `active == false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectError {
    /// The OAuth server is down, slow, failing, backed off or the breaker is open: answer 503
    /// errno 104, with `Retry-After` when known (whole seconds).
    #[error("OAuth server unavailable for introspection")]
    Unavailable { retry_after: Option<u64> },
    /// The endpoint answered 4xx (e.g. FxA's 400 errno 116 for a confidential client's refresh
    /// token): the token is not acceptable (401 errno 110), not an outage.
    #[error("introspection endpoint refused the token")]
    Refused,
}

/// Looks tokens up, through the cache. Build one per OAuth upstream at start-up and share it.
pub struct Introspector {
    cache: Cache<CacheKey, Cached>,
    key: hmac::Key,
    fetcher: Arc<Fetcher>,
    /// What security events said; an answer they cover is asked for again.
    revocations: Option<Arc<dyn Revocations>>,
    /// Answers a security event dropped that may still be in the cache (shared with the
    /// introspectors the cache is carried over to).
    dropped: Arc<Dropped>,
}

/// The keys of answers [`Introspector::invalidate_user`] dropped, until they are out of the
/// cache: a lookup that finds its key here does not use what is cached. This is what moka's
/// invalidation closures would do, without their per-entry cost (a write-order queue node in
/// every entry).
#[derive(Default)]
struct Dropped {
    keys: Mutex<HashSet<CacheKey>>,
    /// Whether `keys` may hold any: lookups skip the lock when not.
    any: AtomicBool,
}

/// Everything a cache miss needs, owned by the spawned call.
struct Fetcher {
    upstream: Arc<Upstream>,
    upstream_index: usize,
    gate: Arc<BackoffGate>,
    clock: SharedClock,
    settings: IntrospectSettings,
    breaker: Breaker,
}

/// How an answer from the OAuth server is taken.
enum Verdict {
    Info(TokenInfo),
    Refused,
    Unavailable { retry_after: Option<u64> },
}

// === impl IntrospectSettings ===

impl Default for IntrospectSettings {
    fn default() -> Self {
        IntrospectSettings {
            max_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
            capacity: 100_000,
            breaker: Duration::from_secs(1),
        }
    }
}

// === impl IntrospectError ===

impl IntrospectError {
    /// Stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            IntrospectError::Unavailable { .. } => "introspect_unavailable",
            IntrospectError::Refused => "introspect_refused",
        }
    }
}

// === impl Introspector ===

impl Introspector {
    /// Call at start-up: draws the cache's HMAC key from the system RNG.
    pub fn new(
        upstream: Arc<Upstream>,
        upstream_index: usize,
        gate: Arc<BackoffGate>,
        clock: SharedClock,
        settings: IntrospectSettings,
    ) -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret).expect("the system RNG is available at startup");
        let cache = Cache::builder()
            .name("introspection")
            .max_capacity(settings.capacity)
            .expire_after(TtlExpiry)
            .build();
        Introspector {
            cache,
            revocations: None,
            dropped: Arc::default(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            fetcher: Fetcher::new(upstream, upstream_index, gate, clock, settings),
        }
    }

    /// The introspector for a reloaded configuration that keeps `old`'s cached answers (and
    /// its cache key). Only for the same OAuth server and the same cache settings: answers
    /// cached under a longer TTL than the new one must not outlive it.
    pub fn carry_over(
        old: &Introspector,
        upstream: Arc<Upstream>,
        upstream_index: usize,
        gate: Arc<BackoffGate>,
        clock: SharedClock,
        settings: IntrospectSettings,
    ) -> Self {
        Introspector {
            cache: old.cache.clone(),
            revocations: old.revocations.clone(),
            dropped: Arc::clone(&old.dropped),
            key: old.key.clone(),
            fetcher: Fetcher::new(upstream, upstream_index, gate, clock, settings),
        }
    }

    /// The revocations cached answers are judged by.
    pub fn revocations(&self) -> Option<&Arc<dyn Revocations>> {
        self.revocations.as_ref()
    }

    /// Judges cached answers against `revocations` (security events) from now on.
    pub fn with_revocations(mut self, revocations: Arc<dyn Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// What the OAuth server says about `token`, from the cache when fresh. Inactive, unknown,
    /// expired and oversized tokens are `Ok` with `active == false`.
    pub async fn introspect(&self, token: &str) -> Result<Arc<TokenInfo>, IntrospectError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(TokenInfo::inactive_shared());
        }
        let key = self.cache_key(token);
        let now = self.fetcher.clock.now();
        // Taken whether or not the answer is still there: what is cached from now on is newer.
        let dropped = self.dropped.take(&key);
        if let Some(cached) = self.cache.get(&key).await {
            let revoked = dropped
                || self
                    .revocations
                    .as_deref()
                    .is_some_and(|r| cached.revoked_by(r, now));
            if cached.is_fresh(now) && !revoked {
                return cached.serve(now);
            }
            if revoked {
                // A security event covers this answer: FxA is asked again.
                self.cache.invalidate(&key).await;
            } else {
                self.drop_if_stale(key, now).await;
            }
        }
        let fetcher = Arc::clone(&self.fetcher);
        let token = token.to_owned();
        // Only the leader's future runs; the spawned call outlives a leader that is dropped.
        let init = async move {
            let span = tracing::debug_span!("introspect", upstream = %fetcher.upstream.name);
            tokio::spawn(fetcher.fetch(token).instrument(span))
                .await
                .unwrap_or(Err(IntrospectError::Unavailable { retry_after: None }))
        };
        let cached = self.cache.try_get_with(key, init).await.map_err(|e| *e)?;
        cached.serve(self.fetcher.clock.now())
    }

    /// Asks the OAuth server about `token` now, bypassing and not filling the cache (the
    /// revocation recheck of a locally verified JWT). Same breaker and back-off rules.
    pub async fn introspect_uncached(
        &self,
        token: &str,
    ) -> Result<Arc<TokenInfo>, IntrospectError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(TokenInfo::inactive_shared());
        }
        let fetcher = Arc::clone(&self.fetcher);
        let span = tracing::debug_span!("introspect", upstream = %fetcher.upstream.name);
        let cached = tokio::spawn(fetcher.fetch(token.to_owned()).instrument(span))
            .await
            .unwrap_or(Err(IntrospectError::Unavailable { retry_after: None }))?;
        cached.serve(self.fetcher.clock.now())
    }

    /// Drops every cached answer about a token of `uid` that `revocation` covers (a security
    /// event); the user's later tokens stay. From the return on, no lookup uses them (they are
    /// marked dropped); a task then removes them from the cache. One pass over the cache.
    pub fn invalidate_user(&self, uid: &str, revocation: Revocation) {
        let keys: Vec<CacheKey> = self
            .cache
            .iter()
            .filter(|(_, c)| c.is_of(uid) && c.covered_by(&revocation))
            .map(|(key, _)| *key)
            .collect();
        if keys.is_empty() {
            return;
        }
        self.dropped.add(&keys);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Outside the runtime (never in the gateway): the marks alone keep them unused.
            return;
        };
        let (cache, dropped) = (self.cache.clone(), Arc::clone(&self.dropped));
        runtime.spawn(async move {
            for key in keys {
                cache.invalidate(&key).await;
                dropped.take(&key);
            }
        });
    }

    /// Forgets what is cached for `token` (after a refresh or a revocation the gateway saw).
    pub async fn invalidate(&self, token: &str) {
        self.cache.invalidate(&self.cache_key(token)).await;
    }

    /// Caches `info` for `token` as if the OAuth server had just said it (same TTL rules).
    pub async fn seed(&self, token: &str, info: TokenInfo) {
        let now = self.fetcher.clock.now();
        self.seed_asked_at(token, info, now).await;
    }

    /// Caches `info` for `token` as if the OAuth server had said it when asked at `asked_at`
    /// (same TTL rules; a security event recorded after `asked_at` covers it).
    pub async fn seed_asked_at(&self, token: &str, info: TokenInfo, asked_at: SystemTime) {
        let now = self.fetcher.clock.now();
        let cached =
            Cached::new(Some(Arc::new(info)), now, &self.fetcher.settings).asked_at(asked_at);
        self.cache.insert(self.cache_key(token), cached).await;
    }

    /// Cached answers now (approximate; for a gauge).
    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Whether the breaker is answering for the OAuth server (for health output).
    pub fn breaker_open(&self) -> bool {
        self.fetcher.breaker.is_open(self.fetcher.clock.now())
    }

    fn cache_key(&self, token: &str) -> CacheKey {
        let tag = hmac::sign(&self.key, token.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&tag.as_ref()[..16]);
        CacheKey(u128::from_be_bytes(first))
    }

    /// Removes the entry only if it is still stale, under moka's per-key lock, so a fresh
    /// answer another caller just stored is never thrown away.
    async fn drop_if_stale(&self, key: CacheKey, now: SystemTime) {
        self.cache
            .entry(key)
            .and_compute_with(|current| {
                let stale = current.is_some_and(|entry| !entry.value().is_fresh(now));
                std::future::ready(if stale { Op::Remove } else { Op::Nop })
            })
            .await;
    }
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("upstream", &self.fetcher.upstream.name)
            .field("settings", &self.fetcher.settings)
            .finish_non_exhaustive()
    }
}

// === impl Dropped ===

impl Dropped {
    fn add(&self, keys: &[CacheKey]) {
        let mut held = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        held.extend(keys.iter().copied());
        self.any.store(true, Ordering::Release);
    }

    /// Whether `key` was marked dropped (the mark is removed).
    fn take(&self, key: &CacheKey) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut held = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = held.remove(key);
        if held.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        taken
    }
}

// === impl Fetcher ===

impl Fetcher {
    fn new(
        upstream: Arc<Upstream>,
        upstream_index: usize,
        gate: Arc<BackoffGate>,
        clock: SharedClock,
        settings: IntrospectSettings,
    ) -> Arc<Fetcher> {
        Arc::new(Fetcher {
            breaker: Breaker::new(settings.breaker),
            upstream,
            upstream_index,
            gate,
            clock,
            settings,
        })
    }

    /// One cache miss: breaker, back-off gate, the call, then bookkeeping of its answer.
    async fn fetch(self: Arc<Self>, token: String) -> Result<Cached, IntrospectError> {
        let now = self.clock.now();
        let asked_at = now;
        let Some(ticket) = self.breaker.admit(now) else {
            tracing::debug!("introspection breaker open");
            return Err(self.unavailable(None, now));
        };
        let scope = Scope::Upstream(self.upstream_index);
        let probe = match self.gate.admit(scope, now).await {
            Admission::Allow => false,
            Admission::Probe => true,
            Admission::Deny(denial) => {
                return Err(IntrospectError::Unavailable {
                    retry_after: Some(denial.retry_after_secs),
                });
            }
        };
        let result = call::post(&self.upstream, &token).await;
        drop(token);
        let now = self.clock.now();
        let raw = match result {
            Ok(raw) => raw,
            Err(cause) => {
                if probe {
                    self.gate.release_probe(scope, now);
                }
                tracing::warn!(upstream = %self.upstream.name, %cause, "introspection call failed");
                ticket.fail(now);
                return Err(self.unavailable(None, now));
            }
        };
        let (answer, verdict) = self.judge(&raw, now);
        let caller = Caller {
            upstream: self.upstream_index,
            client_id: None,
            identity: None,
        };
        self.gate.record(&caller, &answer, now);
        match verdict {
            Verdict::Info(info) => {
                ticket.succeed();
                Ok(Cached::new(Some(Arc::new(info)), now, &self.settings).asked_at(asked_at))
            }
            Verdict::Refused => {
                ticket.succeed();
                Ok(Cached::new(None, now, &self.settings).asked_at(asked_at))
            }
            Verdict::Unavailable { retry_after } => {
                tracing::warn!(upstream = %self.upstream.name, status = raw.status.as_u16(), "introspection answer unusable");
                ticket.fail(now);
                Err(self.unavailable(retry_after, now))
            }
        }
    }

    /// "Unavailable", with the longest wait known: the OAuth server's own, the breaker's, and
    /// the upstream's back-off window (a 503 may open one without a `Retry-After`).
    fn unavailable(&self, retry_after: Option<u64>, now: SystemTime) -> IntrospectError {
        let window = self
            .gate
            .upstream_window(self.upstream_index, now)
            .map(|w| w.remaining)
            .filter(|left| !left.is_zero());
        let known = [self.breaker.wait(now), window]
            .into_iter()
            .flatten()
            .map(whole_seconds_up)
            .chain(retry_after)
            .max();
        IntrospectError::Unavailable { retry_after: known }
    }

    /// What the answer means for the token, and what it means for back-off.
    fn judge(&self, raw: &RawAnswer, now: SystemTime) -> (UpstreamAnswer, Verdict) {
        let status = raw.status;
        let error_body = match &raw.body {
            Some(body) if !status.is_success() => serde_json::from_slice::<Value>(body).ok(),
            _ => None,
        };
        let field = |name: &str| error_body.as_ref().and_then(|b| b.get(name).cloned());
        let errno = field("errno")
            .and_then(|v| v.as_u64())
            .and_then(|n| u16::try_from(n).ok());
        let retry_after = parse_retry_after(
            raw.retry_after.as_ref().map(|v| v.as_bytes()),
            field("retryAfter").and_then(|v| v.as_f64()),
            now,
        );
        let answer = UpstreamAnswer {
            status,
            errno,
            retry_after,
            backoff: None,
        };
        let verdict = match status {
            s if s.is_success() => match raw.body.as_deref().map(parse_answer) {
                Some(Ok(info)) => Verdict::Info(info),
                _ => Verdict::Unavailable { retry_after: None },
            },
            StatusCode::TOO_MANY_REQUESTS => Verdict::Unavailable {
                retry_after: self.retry_secs(retry_after),
            },
            s if s.is_client_error() => Verdict::Refused,
            _ => Verdict::Unavailable {
                retry_after: self.retry_secs(retry_after),
            },
        };
        (answer, verdict)
    }

    fn retry_secs(&self, wait: Option<Duration>) -> Option<u64> {
        wait.map(|w| whole_seconds_up(clamp_retry_after(w, self.gate.policy().max_window)))
    }
}

//! FxA's published signing keys (`GET /v1/jwks` on the OAuth server, `fxa-reference.md` §1.8),
//! for JWT access tokens and the event broker's Security Event Tokens alike (both are signed with
//! the OAuth server's OpenID key: `lib/oauth/keys.ts`, `fxa-event-broker/src/config.ts`).
//!
//! - Fetched at start in the background: a failure never stops the start; until keys arrive,
//!   JWTs fall back to introspection and SETs are refused.
//! - Kept for the server's `Cache-Control: max-age` (`no-store`/`no-cache`: the minimum), or
//!   without either for its `Expires` (minus its `Date`), bounded to [`MIN_TTL`, `MAX_TTL`]
//!   ([`DEFAULT_TTL`] without any), then fetched again; a failed fetch keeps the keys it has and
//!   retries sooner. A key leaves only when a successful fetch no longer lists it.
//! - A token naming an unknown `kid` may trigger one fetch at most once per `refetch_interval`
//!   (real time), however many such tokens arrive: made-up `kid`s cost the OAuth server nothing.
//! - Never fetched while the OAuth server is in a back-off window; answers do not open windows
//!   (only introspection and refresh answers do).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, DATE, EXPIRES};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::jose::KeySet;
use crate::backoff::{BackoffGate, Gate as _};
use crate::body::UpstreamBody;
use crate::clock::SharedClock;
use crate::metrics::AuthMetrics;
use crate::upstream::Upstream;

/// Keys are kept at least this long whatever the server says (FxA sends `max-age=10`).
pub const MIN_TTL: Duration = Duration::from_secs(10);
/// And at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Without a `max-age`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Longest wait between attempts after failures.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A JWK set is a few KiB.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The key set and how it is kept fresh. One per OAuth upstream, shared.
pub struct Jwks {
    keys: ArcSwapOption<KeySet>,
    upstream: Arc<Upstream>,
    upstream_index: usize,
    gate: Arc<BackoffGate>,
    clock: SharedClock,
    path: String,
    refetch_interval: Duration,
    /// Start of the last fetch (real time), for the unknown-`kid` limit.
    last_fetch: Mutex<Option<Instant>>,
    /// One fetch at a time; unknown-`kid` callers queue here and see its result.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    metrics: AuthMetrics,
}

/// Why a fetch gave no keys (logged).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("OAuth server in a back-off window")]
    BackedOff,
    #[error("request failed: {0}")]
    Call(String),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("answer is not a JWK set with a usable RS256 key")]
    NotAKeySet,
}

impl Jwks {
    pub fn new(
        upstream: Arc<Upstream>,
        upstream_index: usize,
        gate: Arc<BackoffGate>,
        clock: SharedClock,
        path: String,
        refetch_interval: Duration,
    ) -> Self {
        Jwks {
            keys: ArcSwapOption::empty(),
            upstream,
            upstream_index,
            gate,
            clock,
            path,
            refetch_interval,
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            metrics: AuthMetrics::default(),
        }
    }

    /// Counts fetches into `metrics` (the process's series).
    pub fn with_metrics(mut self, metrics: AuthMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The keys held now (`None` until a fetch succeeded).
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Fetch attempts so far (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The key set when it names `kid`: fetched again first if it does not and the last
    /// fetch is older than the refetch interval. `None`: no keys at all, or `kid` unknown.
    pub async fn with_kid(&self, kid: &str) -> Option<Arc<KeySet>> {
        if let Some(keys) = self.keys().filter(|k| k.get(kid).is_some()) {
            return Some(keys);
        }
        let _turn = self.fetching.lock().await;
        // Someone may have fetched while this caller waited.
        if let Some(keys) = self.keys().filter(|k| k.get(kid).is_some()) {
            return Some(keys);
        }
        let recent = self
            .last_fetch_started()
            .is_some_and(|at| at.elapsed() < self.refetch_interval);
        if recent {
            return None;
        }
        let _ = self.fetch_locked().await;
        self.keys().filter(|k| k.get(kid).is_some())
    }

    /// Keeps the set fresh for as long as the returned task's `Jwks` lives.
    pub fn spawn_refresher(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let weak = Arc::downgrade(self);
        Some(handle.spawn(refresh_loop(weak)))
    }

    fn last_fetch_started(&self) -> Option<Instant> {
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One fetch, single-flight with unknown-`kid` refetches. The TTL to wait before the next.
    async fn fetch(&self) -> Result<Duration, ()> {
        let _turn = self.fetching.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<Duration, ()> {
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.get().await {
            Ok((set, ttl)) => {
                self.metrics.jwks_fetch("ok");
                tracing::info!(upstream = %self.upstream.name, kids = ?set.kids(), "JWK set fetched");
                self.keys.store(Some(Arc::new(set)));
                Ok(ttl)
            }
            Err(e) => {
                self.metrics.jwks_fetch(match e {
                    FetchError::BackedOff => "backed_off",
                    _ => "failed",
                });
                tracing::warn!(upstream = %self.upstream.name, error = %e, held = self.keys().map_or(0, |k| k.len()), "JWK set fetch failed; keeping the keys held");
                Err(())
            }
        }
    }

    async fn get(&self) -> Result<(KeySet, Duration), FetchError> {
        let now = self.clock.now();
        if self
            .gate
            .upstream_window(self.upstream_index, now)
            .is_some_and(|w| !w.remaining.is_zero())
        {
            return Err(FetchError::BackedOff);
        }
        let uri = self
            .upstream
            .uri_for(&self.path, None)
            .map_err(|e| FetchError::Call(e.to_string()))?;
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(ACCEPT, "application/json")
            .body(UpstreamBody::Empty)
            .map_err(|e| FetchError::Call(e.to_string()))?;
        let _permit = self
            .upstream
            .acquire()
            .await
            .map_err(|e| FetchError::Call(e.to_string()))?;
        let deadline = Instant::now() + self.upstream.response_timeout();
        let response = self
            .upstream
            .send(request)
            .await
            .map_err(|e| FetchError::Call(format!("{e:?}")))?;
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(FetchError::Status(parts.status));
        }
        let read = Limited::new(body, MAX_JWKS_BYTES).collect();
        let body: Bytes = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => return Err(FetchError::Call("body not read whole in time".into())),
        };
        let previous = self.keys();
        let set = KeySet::parse(&body, previous.as_deref()).ok_or(FetchError::NotAKeySet)?;
        Ok((set, response_ttl(&parts.headers, now)))
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("upstream", &self.upstream.name)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

/// Fetches now, then again when the keys' TTL ends (sooner after a failure, backing off up to
/// [`MAX_RETRY`]), until the `Jwks` is dropped.
async fn refresh_loop(jwks: Weak<Jwks>) {
    let mut retry = Duration::from_millis(500);
    loop {
        let Some(strong) = jwks.upgrade() else { return };
        let wait = match strong.fetch().await {
            Ok(ttl) => {
                retry = Duration::from_millis(500);
                ttl
            }
            Err(()) => {
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}

/// How long an answer's keys are kept (RFC 9111 §4.2.1): `Cache-Control` (`max-age`,
/// `no-store`/`no-cache`) first; without either, `Expires` minus the answer's `Date` (the
/// server's own clock, so skew does not matter; `now` without a `Date`), an unparsable or past
/// `Expires` meaning already stale; without any, [`DEFAULT_TTL`]. Always within [`MIN_TTL`,
/// `MAX_TTL`].
pub fn response_ttl(headers: &http::HeaderMap, now: std::time::SystemTime) -> Duration {
    let text = |name| {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    if let Some(cc) = text(CACHE_CONTROL) {
        let lower = cc.to_ascii_lowercase();
        if ["max-age", "no-store", "no-cache"]
            .iter()
            .any(|d| lower.contains(d))
        {
            return cache_ttl(&cc);
        }
    }
    let Some(expires) = text(EXPIRES) else {
        return DEFAULT_TTL;
    };
    let date = text(DATE)
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or(now);
    httpdate::parse_http_date(expires.trim())
        .ok()
        .and_then(|at| at.duration_since(date).ok())
        .map_or(MIN_TTL, |ttl| ttl.clamp(MIN_TTL, MAX_TTL))
}

/// The TTL a `Cache-Control` value allows: `max-age` bounded to [`MIN_TTL`, `MAX_TTL`];
/// `no-store`/`no-cache` mean the minimum; neither, [`DEFAULT_TTL`].
pub fn cache_ttl(cache_control: &str) -> Duration {
    let mut ttl = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return MIN_TTL;
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            ttl = secs.trim_matches('"').parse::<u64>().ok();
        }
    }
    ttl.map_or(DEFAULT_TTL, |secs| {
        Duration::from_secs(secs).clamp(MIN_TTL, MAX_TTL)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_headers_set_the_ttl_within_bounds() {
        assert_eq!(cache_ttl("public, max-age=60"), Duration::from_secs(60));
        assert_eq!(cache_ttl("max-age=0"), MIN_TTL);
        assert_eq!(cache_ttl("max-age=99999999"), MAX_TTL);
        assert_eq!(cache_ttl("no-store"), MIN_TTL);
        assert_eq!(cache_ttl("public"), DEFAULT_TTL);
        assert_eq!(cache_ttl("max-age=abc"), DEFAULT_TTL);
    }

    #[test]
    fn expires_counts_only_without_max_age_and_from_the_answers_date() {
        use http::{HeaderMap, HeaderValue};
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let date = |t| HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(response_ttl(&h, now), DEFAULT_TTL);
        h.insert(EXPIRES, date(now + Duration::from_secs(600)));
        assert_eq!(response_ttl(&h, now), Duration::from_secs(600));
        // The server's clock is 100 s behind ours: its Date is what Expires counts from.
        h.insert(DATE, date(now - Duration::from_secs(100)));
        assert_eq!(response_ttl(&h, now), Duration::from_secs(700));
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        assert_eq!(
            response_ttl(&h, now),
            Duration::from_secs(60),
            "max-age wins"
        );
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert_eq!(response_ttl(&h, now), MIN_TTL);
        h.insert(CACHE_CONTROL, HeaderValue::from_static("public"));
        assert_eq!(response_ttl(&h, now), Duration::from_secs(700));
        h.insert(EXPIRES, HeaderValue::from_static("0"));
        assert_eq!(response_ttl(&h, now), MIN_TTL, "invalid: already stale");
        h.insert(EXPIRES, date(now - Duration::from_secs(3600)));
        assert_eq!(response_ttl(&h, now), MIN_TTL, "in the past");
        h.insert(EXPIRES, date(now + Duration::from_secs(10 * 24 * 3600)));
        assert_eq!(response_ttl(&h, now), MAX_TTL);
    }
}

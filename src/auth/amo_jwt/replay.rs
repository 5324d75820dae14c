//! The `jti` replay cache: remembers each (issuer, jti) until the token's `exp` plus leeway, after
//! which the token itself is refused as expired, so forgetting it is safe.
//!
//! With `[redis]`, the fleet's record is in Redis (one `SET NX PX` per token, the key an HMAC
//! of (issuer, jti) under the shared hashing key, kept until `until` on Redis's clock); this
//! process's cache is the fallback while Redis is down when `on_redis_down.amo_replay` is
//! `"local"` (by default it is `"refuse"`: a replica alone could accept a replay).
//!
//! Per process, bounded. Keys are SHA-256 digests of (issuer, jti), so every entry costs the
//! same whatever the `jti` length. moka's own clock (real time) only evicts; whether an entry
//! still counts is decided against the caller's `now`, so tests can move time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use moka::future::Cache;
use moka::policy::EvictionPolicy;

use super::unix_seconds_signed;
use crate::config::DownPolicy;
use crate::shared::{Kind, Store};

/// Default bound on remembered `jti`s: 100 000 entries (about 10 MB), enough for 320 verified
/// requests per second sustained over the longest token life (300 s + 2 × leeway).
pub const DEFAULT_REPLAY_CAPACITY: u64 = 100_000;

/// Seen `(issuer, jti)` pairs. Cloning shares the cache (so it can outlive a config reload).
#[derive(Clone)]
pub struct ReplayCache {
    seen: Cache<[u8; 32], Remembered>,
    store: Option<Arc<Store>>,
}

/// Until when an entry counts, in Unix seconds, and how long moka keeps it.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    until: i64,
    ttl: Duration,
}

struct UntilExpiry;

impl moka::Expiry<[u8; 32], Remembered> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Remembered,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    // A replaced (stale) entry gets the new token's lifetime, not the old remainder.
    fn expire_after_update(
        &self,
        _key: &[u8; 32],
        value: &Remembered,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl ReplayCache {
    /// A cache holding at most about `capacity` entries. When full, the oldest entries are
    /// evicted first (LRU, so a new `jti` is always remembered); size it above the peak rate of
    /// verified tokens times their lifetime, or those evicted early could be replayed.
    pub fn new(capacity: u64) -> Self {
        ReplayCache {
            seen: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(UntilExpiry)
                .build(),
            store: None,
        }
    }

    /// Remembers `jti`s fleet-wide through `store`.
    pub fn with_store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// `Retry-After` for a refusal while the fleet's record is unreachable.
    pub fn retry_after_secs(&self) -> u64 {
        self.store.as_ref().map_or(1, |s| s.retry_after_secs())
    }

    /// Records `(issuer, jti)` as used until `until` (Unix seconds). Returns `Some(false)` if it
    /// was already recorded and still counts: a replay; `None` when the fleet's record cannot
    /// be asked and the policy is to refuse. Atomic for concurrent callers (and replicas).
    pub(super) async fn first_use(
        &self,
        issuer: &str,
        jti: &[u8],
        until: i64,
        now: SystemTime,
    ) -> Option<bool> {
        if let Some(store) = &self.store {
            let id = store.hash("amo-jti", &replay_key(issuer, jti));
            match store.first_use(&id, until).await {
                Some(first) => return Some(first),
                None if store.policy(Kind::AmoReplay) == DownPolicy::Refuse => return None,
                None => {}
            }
        }
        Some(self.first_use_here(issuer, jti, until, now).await)
    }

    async fn first_use_here(&self, issuer: &str, jti: &[u8], until: i64, now: SystemTime) -> bool {
        let now = unix_seconds_signed(now);
        let remembered = Remembered {
            until,
            ttl: remember_for(until, now),
        };
        self.seen
            .entry(replay_key(issuer, jti))
            .or_insert_with_if(async move { remembered }, |old| old.until < now)
            .await
            .is_fresh()
    }

    /// Approximate number of remembered `jti`s (for metrics).
    pub fn len(&self) -> u64 {
        self.seen.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("entries", &self.seen.entry_count())
            .finish()
    }
}

/// How long moka should keep an entry that counts until `until`: at least a second, and never
/// longer than the longest a token can stay valid (the caller already bounded `until`).
fn remember_for(until: i64, now: i64) -> Duration {
    let secs = until.saturating_sub(now).clamp(1, 3600);
    Duration::from_secs(secs.unsigned_abs() + 1)
}

/// Issuer length first, so ("ab", "c…") and ("a", "bc…") never collide.
fn replay_key(issuer: &str, jti: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(issuer.len() as u64).to_be_bytes());
    ctx.update(issuer.as_bytes());
    ctx.update(jti);
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moka_keeps_entries_at_least_until_they_stop_counting() {
        assert_eq!(remember_for(1_000, 1_000), Duration::from_secs(2));
        assert_eq!(remember_for(1_305, 1_000), Duration::from_secs(306));
        assert_eq!(remember_for(900, 1_000), Duration::from_secs(2));
        assert_eq!(remember_for(i64::MAX, 0), Duration::from_secs(3601));
    }

    #[test]
    fn replay_keys_separate_issuer_from_jti() {
        assert_ne!(replay_key("ab", b"c"), replay_key("a", b"bc"));
        assert_eq!(replay_key("a", b"bc"), replay_key("a", b"bc"));
    }
}

//! Where the introspection cache keeps its answers: shards of plain hash maps keyed by the
//! token's keyed hash.
//!
//! It replaces moka here for memory (issue 19: 100,000 cached tokens below 40 MB). moka keeps
//! about 300 bytes of its own per entry (the key's `Arc`, the hash table's bucket, the entry
//! info with its timestamps, the access-order deque and timer-wheel nodes, the entry's lock);
//! here an entry is its 16-byte key and its 40-byte value, in the table itself. What moka gave
//! the cache, this keeps:
//! - bounded: at most about `capacity` answers; a full shard first drops what is no longer
//!   fresh, then the answer closest to going stale among [`EVICTION_SAMPLE`] of its entries;
//! - stale answers do not pile up: a shard that is written to drops what is no longer fresh at
//!   most once per [`SWEEP_EVERY`] (and whenever it is full);
//! - one call for concurrent lookups of one uncached token ([`TokenStore::get_or_fetch`]);
//!   when the caller running the call goes away, a waiter takes over (it may ask once more).
//!
//! Freshness is the gateway's clock (`now` from the caller), as for every hit.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;

use super::IntrospectError;
use super::cache::{CacheKey, Cached};

/// How many entries a full shard looks at to choose the one to evict.
pub(super) const EVICTION_SAMPLE: usize = 16;

/// How often a shard that is written to drops its stale answers.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Shards hold about this many answers each at capacity (at most 64 shards).
const SHARD_TARGET: u64 = 4096;

/// The answers, by key.
pub(super) struct TokenStore {
    shards: Box<[Mutex<Shard>]>,
    /// Most answers per shard.
    shard_capacity: usize,
    /// Lookups being answered now: one call per key.
    pending: Mutex<HashMap<CacheKey, Arc<Pending>, KeyHash>>,
}

/// The answer of one call, shared by every caller waiting for it.
type Pending = OnceCell<Result<Cached, IntrospectError>>;

struct Shard {
    entries: HashMap<CacheKey, Cached, KeyHash>,
    /// When the next write sweeps the stale answers out.
    next_sweep: SystemTime,
}

/// The key is HMAC-SHA256 output under a per-process secret key: uniformly spread and not
/// choosable by a client, so its low 64 bits are the hash (no second hash to compute).
type KeyHash = BuildHasherDefault<KeyHasher>;

#[derive(Default)]
pub(super) struct KeyHasher(u64);

// === impl KeyHasher ===

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }

    /// Not used by [`CacheKey`] (it hashes one `u128`); folds anything else in.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

// === impl TokenStore ===

impl TokenStore {
    pub(super) fn new(capacity: u64) -> TokenStore {
        let shards = (capacity / SHARD_TARGET).clamp(1, 64).next_power_of_two();
        let shard_capacity = capacity.div_ceil(shards).max(1);
        TokenStore {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::default(),
                        next_sweep: SystemTime::UNIX_EPOCH,
                    })
                })
                .collect(),
            shard_capacity: usize::try_from(shard_capacity).unwrap_or(usize::MAX),
            pending: Mutex::new(HashMap::default()),
        }
    }

    /// The answer stored for `key`, fresh or not.
    pub(super) fn get(&self, key: &CacheKey) -> Option<Cached> {
        self.shard(key).entries.get(key).cloned()
    }

    /// Stores `value` for `key`, making room when the shard is full.
    pub(super) fn insert(&self, key: CacheKey, value: Cached, now: SystemTime) {
        let mut shard = self.shard(&key);
        shard.make_room(&key, now, self.shard_capacity);
        shard.entries.insert(key, value);
    }

    pub(super) fn remove(&self, key: &CacheKey) {
        self.shard(key).entries.remove(key);
    }

    /// Removes the answer for `key` only if `stale` says so, under the shard's lock: an answer
    /// another caller has just stored is judged, not thrown away blindly.
    pub(super) fn remove_if(&self, key: &CacheKey, stale: impl FnOnce(&Cached) -> bool) {
        let mut shard = self.shard(key);
        if shard.entries.get(key).is_some_and(stale) {
            shard.entries.remove(key);
        }
    }

    /// Removes every answer `drop` picks (one shard at a time).
    pub(super) fn remove_all_if(&self, drop: impl Fn(&Cached) -> bool) {
        for shard in self.shards.iter() {
            lock(shard).entries.retain(|_, c| !drop(c));
        }
    }

    /// Answers stored now, fresh or not.
    pub(super) fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| lock(s).entries.len() as u64)
            .sum()
    }

    /// The fresh answer for `key`, or the one `fetch` gets, stored when it is `Ok` (errors are
    /// not stored). Concurrent callers for one key wait for one `fetch`; if the caller running
    /// it is dropped, a waiter runs its own.
    pub(super) async fn get_or_fetch(
        &self,
        key: CacheKey,
        now: SystemTime,
        fetch: impl Future<Output = Result<Cached, IntrospectError>>,
    ) -> Result<Cached, IntrospectError> {
        let waiter = {
            let mut pending = lock(&self.pending);
            let p = match pending.get(&key) {
                Some(p) => Arc::clone(p),
                None => {
                    // Stored by a call that finished since the caller looked: no second call.
                    if let Some(cached) = self.get(&key).filter(|c| c.is_fresh(now)) {
                        return Ok(cached);
                    }
                    let p = Arc::new(Pending::new());
                    pending.insert(key, Arc::clone(&p));
                    p
                }
            };
            Waiter {
                store: self,
                key,
                pending: Some(p),
            }
        };
        let pending = waiter.pending.as_deref().expect("set above");
        pending
            .get_or_init(|| async {
                let result = fetch.await;
                if let Ok(cached) = &result {
                    self.insert(key, cached.clone(), now);
                }
                result
            })
            .await
            .clone()
    }

    fn shard(&self, key: &CacheKey) -> MutexGuard<'_, Shard> {
        // The high half picks the shard, the low half is the hash within it.
        let index = (key.0 >> 64) as usize & (self.shards.len() - 1);
        lock(&self.shards[index])
    }
}

// === impl Waiter ===

/// A caller waiting for (or running) the call for `key`; the last one out, or the first once
/// the answer is in, takes the key off the pending map, also when the caller is dropped.
struct Waiter<'a> {
    store: &'a TokenStore,
    key: CacheKey,
    pending: Option<Arc<Pending>>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiting = lock(&self.store.pending);
        let Some(p) = self.pending.take() else { return };
        let ours = waiting.get(&self.key).is_some_and(|q| Arc::ptr_eq(q, &p));
        // Waiters clone and drop their handle under this lock: 2 is the map's and ours.
        let done = p.initialized() || Arc::strong_count(&p) <= 2;
        drop(p);
        if ours && done {
            waiting.remove(&self.key);
        }
    }
}

// === impl Shard ===

impl Shard {
    /// Before `key` is stored: sweeps when due, and when the shard is full and `key` new, drops
    /// what is stale, else the sampled answer that goes stale first.
    fn make_room(&mut self, key: &CacheKey, now: SystemTime, capacity: usize) {
        let full = self.entries.len() >= capacity && !self.entries.contains_key(key);
        if now >= self.next_sweep || full {
            self.entries.retain(|_, c| c.is_fresh(now));
            self.next_sweep = now.checked_add(SWEEP_EVERY).unwrap_or(now);
        }
        if self.entries.len() >= capacity && !self.entries.contains_key(key) {
            let victim = self
                .entries
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, c)| c.fresh_until())
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                self.entries.remove(&victim);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::auth::introspect::{IntrospectSettings, TokenInfo};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn key(n: u128) -> CacheKey {
        // Spread like an HMAC: both halves vary.
        CacheKey(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    }

    /// An active answer made at `made`, fresh for `ttl_secs`.
    fn answer(made: u64, ttl_secs: u64) -> Cached {
        let settings = IntrospectSettings {
            max_ttl: Duration::from_secs(ttl_secs),
            ..IntrospectSettings::default()
        };
        let info = TokenInfo {
            active: true,
            ..TokenInfo::inactive()
        };
        Cached::new(Some(Arc::new(info)), at(made), &settings)
    }

    #[test]
    fn stays_within_capacity_and_evicts_the_answer_closest_to_stale() {
        let store = TokenStore::new(4);
        assert_eq!(store.shards.len(), 1);
        store.insert(key(1), answer(1000, 100), at(1000));
        for n in 2..=4 {
            store.insert(key(n), answer(1000, 300), at(1000));
        }
        assert_eq!(store.len(), 4);
        store.insert(key(5), answer(1000, 300), at(1000));
        assert_eq!(store.len(), 4);
        assert!(store.get(&key(1)).is_none(), "the one stale soonest goes");
        assert!((2..=5).all(|n| store.get(&key(n)).is_some()));
        // Overwriting a stored key takes no room.
        store.insert(key(5), answer(1001, 300), at(1001));
        assert_eq!(store.len(), 4);
        assert!((2..=5).all(|n| store.get(&key(n)).is_some()));
    }

    #[test]
    fn a_full_shard_drops_stale_answers_first() {
        let store = TokenStore::new(3);
        store.insert(key(1), answer(1000, 10), at(1000));
        store.insert(key(2), answer(1000, 10), at(1000));
        store.insert(key(3), answer(1000, 300), at(1000));
        store.insert(key(4), answer(1020, 300), at(1020));
        assert_eq!(store.len(), 2);
        assert!(store.get(&key(3)).is_some() && store.get(&key(4)).is_some());
    }

    #[test]
    fn writes_sweep_stale_answers_at_most_every_sweep_interval() {
        let store = TokenStore::new(1000);
        store.insert(key(1), answer(1000, 5), at(1000));
        store.insert(key(2), answer(1006, 300), at(1006));
        assert!(
            store.get(&key(1)).is_some(),
            "swept at 1000, next sweep due at 1010"
        );
        store.insert(key(3), answer(1010, 300), at(1010));
        assert!(
            store.get(&key(1)).is_none(),
            "stale since 1005, swept at 1010"
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let store = TokenStore::new(200_000);
        assert_eq!(store.shards.len(), 64);
        assert_eq!(store.shard_capacity, 3125);
        for n in 0..6400 {
            store.insert(key(n), answer(1000, 300), at(1000));
        }
        let sizes: Vec<usize> = store.shards.iter().map(|s| lock(s).entries.len()).collect();
        assert!(sizes.iter().all(|&n| (50..=150).contains(&n)), "{sizes:?}");
        assert_eq!(store.len(), 6400);
    }

    #[test]
    fn remove_if_and_remove_all_if() {
        let store = TokenStore::new(100);
        store.insert(key(1), answer(1000, 10), at(1000));
        store.insert(key(2), answer(1000, 300), at(1000));
        store.remove_if(&key(1), |c| !c.is_fresh(at(1005)));
        assert!(store.get(&key(1)).is_some(), "still fresh at 1005");
        store.remove_if(&key(1), |c| !c.is_fresh(at(1020)));
        assert!(store.get(&key(1)).is_none());
        store.insert(key(3), answer(1000, 10), at(1000));
        store.remove_all_if(|c| c.fresh_until() < at(1100));
        assert_eq!(store.len(), 1);
        store.remove(&key(2));
        assert_eq!(store.len(), 0);
    }

    #[tokio::test]
    async fn concurrent_lookups_make_one_fetch_and_errors_are_not_stored() {
        let store = Arc::new(TokenStore::new(100));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (store, fetches) = (Arc::clone(&store), Arc::clone(&fetches));
            tasks.spawn(async move {
                let fetch = async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(answer(1000, 300))
                };
                store.get_or_fetch(key(7), at(1000), fetch).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert!(r.unwrap().is_ok());
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(store.get(&key(7)).is_some());
        assert!(lock(&store.pending).is_empty());
        // A fresh stored answer is returned without a fetch.
        let r = store
            .get_or_fetch(key(7), at(1001), async { unreachable!() })
            .await;
        assert!(r.is_ok());

        let failed = store
            .get_or_fetch(key(8), at(1000), async {
                Err(IntrospectError::Unavailable { retry_after: None })
            })
            .await;
        assert!(failed.is_err());
        assert!(store.get(&key(8)).is_none());
        assert!(lock(&store.pending).is_empty());
    }

    #[tokio::test]
    async fn a_dropped_lone_caller_leaves_nothing_pending() {
        let store = TokenStore::new(100);
        let fetch = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(answer(1000, 300))
        };
        let r = tokio::time::timeout(
            Duration::from_millis(20),
            store.get_or_fetch(key(3), at(1000), fetch),
        )
        .await;
        assert!(r.is_err(), "timed out");
        assert!(lock(&store.pending).is_empty());
        assert!(store.get(&key(3)).is_none());
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_leader_goes_away() {
        let store = Arc::new(TokenStore::new(100));
        let leader = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let fetch = async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(answer(1000, 300))
                };
                store.get_or_fetch(key(9), at(1000), fetch).await
            })
        };
        while lock(&store.pending).is_empty() {
            tokio::task::yield_now().await;
        }
        let follower = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let fetch = async { Ok(answer(1000, 300)) };
                store.get_or_fetch(key(9), at(1000), fetch).await
            })
        };
        tokio::task::yield_now().await;
        leader.abort();
        assert!(follower.await.unwrap().is_ok());
        assert!(store.get(&key(9)).is_some());
        assert!(lock(&store.pending).is_empty());
    }
}

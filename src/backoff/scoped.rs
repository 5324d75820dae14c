//! Bounded, sharded map of per-client and per-identity windows.
//!
//! Keys are keyed SipHash digests of (kind, upstream, id), so the map never holds a user id or
//! client id (nothing to leak, fixed-size entries whatever the caller passes) and an attacker
//! cannot aim collisions at one shard. Never grows past its capacity: a full shard first drops
//! idle windows, then the live window that ends soonest.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::Scope;
use super::window::{self, Window};

const SHARDS: usize = 16;

pub(super) struct ScopedWindows {
    shards: Box<[Mutex<HashMap<u64, Window>>]>,
    hasher: RandomState,
    /// Windows held across all shards: lets every request skip the locks while none exist,
    /// which is nearly always.
    live: AtomicUsize,
    per_shard: usize,
}

// === impl ScopedWindows ===

impl ScopedWindows {
    pub(super) fn new(capacity: usize) -> Self {
        ScopedWindows {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            live: AtomicUsize::new(0),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Runs `f` on the state under `key` (`None` when it has no window) and stores the result.
    pub(super) fn with<R>(
        &self,
        key: u64,
        now: SystemTime,
        f: impl FnOnce(&mut Option<Window>) -> R,
    ) -> R {
        let mut shard = self.shards[(key % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut state = shard.remove(&key);
        let had = state.is_some();
        let out = f(&mut state);
        match (had, state) {
            (true, Some(w)) => {
                shard.insert(key, w);
            }
            (true, None) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            (false, Some(w)) => {
                self.make_room(&mut shard, now);
                shard.insert(key, w);
                self.live.fetch_add(1, Ordering::Relaxed);
            }
            (false, None) => {}
        }
        out
    }

    /// Drops every idle window (ended, no probe in flight). For a periodic housekeeping task.
    pub(super) fn sweep(&self, now: SystemTime) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            self.drop_idle(&mut shard, now);
        }
    }

    fn make_room(&self, shard: &mut HashMap<u64, Window>, now: SystemTime) {
        if shard.len() < self.per_shard {
            return;
        }
        self.drop_idle(shard, now);
        while shard.len() >= self.per_shard {
            let Some(soonest) = shard
                .iter()
                .min_by_key(|(_, w)| window::ends_at(w))
                .map(|(k, _)| *k)
            else {
                return;
            };
            shard.remove(&soonest);
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn drop_idle(&self, shard: &mut HashMap<u64, Window>, now: SystemTime) {
        let before = shard.len();
        shard.retain(|_, w| !window::is_idle(w, now));
        self.live.fetch_sub(before - shard.len(), Ordering::Relaxed);
    }

    /// This process's key for a scope (with `[redis]`, keys come from the shared hashing key
    /// instead, so every replica files a window under the same key).
    pub(super) fn key(&self, scope: &Scope<'_>) -> u64 {
        match scope {
            Scope::Upstream(upstream) => self.hasher.hash_one((0u8, upstream)),
            Scope::Client {
                upstream,
                client_id,
            } => self.hasher.hash_one((1u8, upstream, client_id)),
            Scope::Identity { upstream, identity } => {
                self.hasher.hash_one((2u8, upstream, identity))
            }
        }
    }
}

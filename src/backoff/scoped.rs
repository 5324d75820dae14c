//! Bounded, sharded map of per-client and per-identity windows.
//!
//! Keys are the upstream's index and a keyed SipHash digest of (kind, id), so the map never
//! holds a user id or client id (nothing to leak, fixed-size entries whatever the caller passes) and an attacker
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

/// The upstream's index (kept apart so a reload can move a window to the upstream's new
/// index) and the digest of the scope's kind and id.
/// The upstream's index (`SHARED` for the fleet's windows, which are filed by upstream name)
/// and a digest of the scope.
pub(super) type Key = (usize, u64);

/// The index part of the keys of windows shared through `[redis]`: a reload does not remap
/// them (their digest covers the upstream's name).
pub(super) const SHARED: usize = usize::MAX;

pub(super) struct ScopedWindows {
    shards: Box<[Mutex<HashMap<Key, Window>>]>,
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
        key: Key,
        now: SystemTime,
        f: impl FnOnce(&mut Option<Window>) -> R,
    ) -> R {
        let mut shard = self.shards[(key.1 % SHARDS as u64) as usize]
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

    fn make_room(&self, shard: &mut HashMap<Key, Window>, now: SystemTime) {
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

    fn drop_idle(&self, shard: &mut HashMap<Key, Window>, now: SystemTime) {
        let before = shard.len();
        shard.retain(|_, w| !window::is_idle(w, now));
        self.live.fetch_sub(before - shard.len(), Ordering::Relaxed);
    }

    /// This process's key for a scope (with `[redis]`, keys come from the shared hashing key
    /// instead, so every replica files a window under the same key).
    pub(super) fn key(&self, scope: &Scope<'_>) -> Key {
        match scope {
            Scope::Upstream(upstream) => (*upstream, self.hasher.hash_one(0u8)),
            Scope::Client {
                upstream,
                client_id,
            } => (*upstream, self.hasher.hash_one((1u8, client_id))),
            Scope::Identity { upstream, identity } => {
                (*upstream, self.hasher.hash_one((2u8, identity)))
            }
        }
    }

    /// A new map of `capacity` holding this one's windows, each moved to its upstream's new
    /// index (`remap[old]`); windows of upstreams that are gone are dropped.
    pub(super) fn carry_over(&self, capacity: usize, remap: &[Option<usize>]) -> ScopedWindows {
        let next = ScopedWindows {
            hasher: self.hasher.clone(),
            ..ScopedWindows::new(capacity)
        };
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (&(upstream, digest), window) in shard.iter() {
                let Some(Some(to)) = remap.get(upstream) else {
                    continue;
                };
                let mut target = next.shards[(digest % SHARDS as u64) as usize]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if target.len() < next.per_shard {
                    target.insert((*to, digest), window.clone());
                    next.live.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        next
    }
}

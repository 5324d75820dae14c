//! Revocations shared by the fleet (`[redis]`), built like the shared back-off windows: every
//! decision still reads memory only (a bearer request never waits on Redis), and Redis carries
//! the changes between replicas.
//!
//! - A revocation recorded here is applied here at once, then written to Redis (a hash field
//!   named by the uid's keyed hash, the uid itself sealed with the fleet's key, widened with
//!   what is there, stamped with Redis's clock, kept `remember`) and published in the same
//!   script. Every other replica records it and drops the user's cached state at once.
//! - After every (re)subscription (start, Redis back, a broken connection) a replica reads the
//!   whole table, so one that started, or lost Redis, after an event still honours it. Entries
//!   it applied already (same Redis time) change nothing.
//! - Redis down: the revocation holds on this replica and is written once Redis is back
//!   (counted as a fallback; the health output says degraded).
//!
//! Why not ask Redis on the request path (on a cache miss): a miss already asks FxA, whose
//! answer reflects the event, and a hit must not pay a round trip; the subscription and the
//! catch-up read give the same guarantee for the cost of one message per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use super::{LocalRevocations, Revocation, Revocations, UserCaches};
use crate::clock::SharedClock;
use crate::metrics::AuthMetrics;
use crate::shared::{RevocationEntry, RevocationListener, Store};

pub struct SharedRevocations {
    local: LocalRevocations,
    store: Arc<Store>,
    clock: SharedClock,
    remember: Duration,
    capacity: usize,
    /// Redis's time of the last entry applied per user: the same entry read again is a no-op.
    applied: Mutex<HashMap<Box<str>, u64>>,
    /// Recorded here while Redis was down: written once it is back.
    unwritten: Mutex<Vec<(Box<str>, Option<u64>)>>,
    caches: Mutex<Option<Weak<dyn UserCaches>>>,
    metrics: AuthMetrics,
    me: Weak<SharedRevocations>,
}

impl SharedRevocations {
    /// Registers with `store` for the fleet's revocations; `remember` and `capacity` as
    /// [`LocalRevocations`].
    pub fn new(
        store: Arc<Store>,
        clock: SharedClock,
        remember: Duration,
        capacity: usize,
        metrics: AuthMetrics,
    ) -> Arc<Self> {
        let shared = Arc::new_cyclic(|me| SharedRevocations {
            local: LocalRevocations::new(remember, capacity),
            store: Arc::clone(&store),
            clock,
            remember,
            capacity: capacity.max(1),
            applied: Mutex::new(HashMap::new()),
            unwritten: Mutex::new(Vec::new()),
            caches: Mutex::new(None),
            metrics,
            me: me.clone(),
        });
        let listener: Arc<dyn RevocationListener> = shared.clone();
        store.set_revocation_listener(Arc::downgrade(&listener));
        // Already subscribed (a reload): catch up now rather than at the next reconnect.
        if store.is_subscribed() {
            shared.resubscribed();
        }
        shared
    }

    fn remember_ms(&self) -> u64 {
        u64::try_from(self.remember.as_millis()).unwrap_or(u64::MAX)
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(work);
        }
    }

    /// Writes one revocation for the fleet; kept for later when Redis does not take it.
    async fn write(&self, uid: Box<str>, not_before_ms: Option<u64>) {
        match self
            .store
            .revoke(&uid, not_before_ms, self.remember_ms())
            .await
        {
            Some(at_ms) => {
                self.mark_applied(&uid, at_ms);
            }
            None => lock(&self.unwritten).push((uid, not_before_ms)),
        }
    }

    /// Whether `entry` is news here, noting it.
    fn mark_applied(&self, uid: &str, at_ms: u64) -> bool {
        let mut applied = lock(&self.applied);
        if applied.get(uid).is_some_and(|seen| *seen >= at_ms) {
            return false;
        }
        if applied.len() >= self.capacity && !applied.contains_key(uid) {
            // Forgetting costs at most one more application (a few introspections).
            applied.clear();
        }
        applied.insert(uid.into(), at_ms);
        true
    }

    fn caches(&self) -> Option<Arc<dyn UserCaches>> {
        lock(&self.caches).as_ref().and_then(Weak::upgrade)
    }
}

impl Revocations for SharedRevocations {
    fn record(&self, uid: &str, revocation: Revocation) {
        self.local.record(uid, revocation);
        let not_before_ms = revocation.not_before.map(unix_ms);
        if let Some(me) = self.me.upgrade() {
            let uid: Box<str> = uid.into();
            self.spawn(async move { me.write(uid, not_before_ms).await });
        }
    }

    fn get(&self, uid: &str, now: SystemTime) -> Option<Revocation> {
        self.local.get(uid, now)
    }

    fn sweep(&self, now: SystemTime) {
        self.local.sweep(now);
    }

    fn attach(&self, caches: Weak<dyn UserCaches>) {
        *lock(&self.caches) = Some(caches);
    }
}

impl RevocationListener for SharedRevocations {
    fn apply(&self, entry: RevocationEntry) {
        if !self.mark_applied(&entry.uid, entry.at_ms) {
            return;
        }
        // Answers this replica holds were all obtained before it heard of the event.
        let revocation = Revocation {
            not_before: entry
                .not_before_ms
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            recorded_at: self.clock.now(),
        };
        self.local.record(&entry.uid, revocation);
        if let Some(caches) = self.caches() {
            caches.drop_user(&entry.uid, revocation);
        }
        self.metrics.revocation_applied("remote");
        tracing::info!("security event from another replica: the user's cached tokens dropped");
    }

    fn resubscribed(&self) {
        let Some(me) = self.me.upgrade() else { return };
        self.spawn(async move {
            let unwritten = std::mem::take(&mut *lock(&me.unwritten));
            for (uid, not_before_ms) in unwritten {
                me.write(uid, not_before_ms).await;
            }
            if let Some(entries) = me.store.revocations(me.remember_ms()).await {
                for entry in entries {
                    me.apply(entry);
                }
            }
        });
    }
}

impl std::fmt::Debug for SharedRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRevocations")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

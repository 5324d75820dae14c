//! What FxA's security events told the gateway about users: "tokens of user X issued before T
//! are no longer to be trusted from memory" (a password change), or "no token of X is" (an
//! account deletion). Every cached answer the gateway holds about a token of X (introspection,
//! locally verified JWT) is judged against this on every use: a token the revocation covers
//! is not accepted again without FxA's word (a fresh introspection, or a refresh).
//!
//! [`Revocations`] is the seam for sharing this state between replicas: [`LocalRevocations`]
//! keeps it in this process only; [`SharedRevocations`] (`[redis]`) also writes each one to
//! Redis and publishes it, so every replica records it and drops the user's cached state at
//! once, and reads the ones it missed whenever it (re)subscribes.

mod shared;

pub use shared::SharedRevocations;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime};

/// One user's revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// Tokens issued before this need FxA's word again; `None`: every token of the user (the
    /// account is gone).
    pub not_before: Option<SystemTime>,
    /// When the gateway learnt it (its own clock): answers obtained from FxA after this already
    /// reflect the change.
    pub recorded_at: SystemTime,
}

/// Shared revocation state. Implementations must be cheap to query when empty: every bearer
/// request with a cached answer asks.
pub trait Revocations: Send + Sync + 'static {
    /// Records (or widens) the revocation of `uid`.
    fn record(&self, uid: &str, revocation: Revocation);
    /// The revocation in force for `uid` at `now`, if any.
    fn get(&self, uid: &str, now: SystemTime) -> Option<Revocation>;
    /// Drops revocations that no token can fall under any more.
    fn sweep(&self, now: SystemTime);
    /// Where revocations learnt from other replicas drop cached state (the configuration
    /// serving now; replaces the previous one). Per process: nothing to learn.
    fn attach(&self, _caches: Weak<dyn UserCaches>) {}
}

/// The cached state about a user's tokens one configuration holds (introspection answers,
/// verified JWTs, refresh grace entries).
pub trait UserCaches: Send + Sync {
    /// Drops what `revocation` covers of `uid`'s cached state.
    fn drop_user(&self, uid: &str, revocation: Revocation);
}

/// In-process revocations, bounded in number and age.
pub struct LocalRevocations {
    entries: Mutex<HashMap<Box<str>, Revocation>>,
    len: AtomicUsize,
    /// How long a revocation is kept: longer than any access token FxA issues lives.
    remember: Duration,
    capacity: usize,
}

// === impl Revocation ===

impl Revocation {
    /// Whether a token issued at `iat` (unknown: assumed before) falls under it.
    pub fn covers(&self, iat: Option<SystemTime>) -> bool {
        match (self.not_before, iat) {
            (None, _) | (Some(_), None) => true,
            (Some(not_before), Some(iat)) => iat < not_before,
        }
    }

    /// Whether an answer obtained at `seen_at` about a token issued at `iat` may no longer be
    /// served from memory.
    pub fn invalidates(&self, iat: Option<SystemTime>, seen_at: SystemTime) -> bool {
        seen_at < self.recorded_at && self.covers(iat)
    }

    /// The union of two revocations of one user: the wider cut, the later record.
    fn widen(self, other: Revocation) -> Revocation {
        let not_before = match (self.not_before, other.not_before) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        Revocation {
            not_before,
            recorded_at: self.recorded_at.max(other.recorded_at),
        }
    }
}

// === impl LocalRevocations ===

impl LocalRevocations {
    pub fn new(remember: Duration, capacity: usize) -> Self {
        LocalRevocations {
            entries: Mutex::new(HashMap::new()),
            len: AtomicUsize::new(0),
            remember,
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Revocation>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, r: &Revocation, now: SystemTime) -> bool {
        r.recorded_at
            .checked_add(self.remember)
            .is_some_and(|until| until <= now)
    }
}

impl Revocations for LocalRevocations {
    fn record(&self, uid: &str, revocation: Revocation) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(uid) {
            let now = revocation.recorded_at;
            entries.retain(|_, r| !self.expired(r, now));
            if entries.len() >= self.capacity {
                // Still full: the oldest goes (logged; size `capacity` above the event rate).
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, r)| r.recorded_at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                    tracing::warn!("revocation store full: the oldest revocation was dropped");
                }
            }
        }
        let merged = match entries.get(uid) {
            Some(old) => old.widen(revocation),
            None => revocation,
        };
        entries.insert(uid.into(), merged);
        self.len.store(entries.len(), Ordering::Relaxed);
    }

    fn get(&self, uid: &str, now: SystemTime) -> Option<Revocation> {
        if self.is_empty() {
            return None;
        }
        let entries = self.lock();
        entries.get(uid).filter(|r| !self.expired(r, now)).copied()
    }

    fn sweep(&self, now: SystemTime) {
        let mut entries = self.lock();
        entries.retain(|_, r| !self.expired(r, now));
        self.len.store(entries.len(), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for LocalRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRevocations")
            .field("len", &self.len())
            .field("remember", &self.remember)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_password_change_covers_tokens_issued_before_it_only() {
        let r = Revocation {
            not_before: Some(at(100)),
            recorded_at: at(200),
        };
        assert!(r.covers(Some(at(99))));
        assert!(!r.covers(Some(at(100))));
        assert!(r.covers(None), "an unknown issue time is assumed before");
        assert!(
            r.invalidates(Some(at(99)), at(150)),
            "seen before the event"
        );
        assert!(
            !r.invalidates(Some(at(99)), at(200)),
            "FxA's word after the event"
        );
    }

    #[test]
    fn revocations_widen_expire_and_stay_per_user() {
        let store = LocalRevocations::new(Duration::from_secs(60), 10);
        assert_eq!(store.get("a", at(0)), None);
        let first = Revocation {
            not_before: Some(at(100)),
            recorded_at: at(110),
        };
        store.record("a", first);
        store.record(
            "a",
            Revocation {
                not_before: Some(at(90)),
                recorded_at: at(120),
            },
        );
        let merged = store.get("a", at(120)).expect("recorded");
        assert_eq!(merged.not_before, Some(at(100)));
        assert_eq!(merged.recorded_at, at(120));
        assert_eq!(store.get("b", at(120)), None);
        store.record(
            "a",
            Revocation {
                not_before: None,
                recorded_at: at(130),
            },
        );
        assert_eq!(store.get("a", at(130)).and_then(|r| r.not_before), None);
        assert!(store.get("a", at(189)).is_some());
        assert_eq!(store.get("a", at(190)), None, "forgotten after `remember`");
        store.sweep(at(190));
        assert!(store.is_empty());
    }

    #[test]
    fn the_store_is_bounded() {
        let store = LocalRevocations::new(Duration::from_secs(60), 2);
        for (i, uid) in ["a", "b", "c"].iter().enumerate() {
            store.record(
                uid,
                Revocation {
                    not_before: None,
                    recorded_at: at(i as u64),
                },
            );
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("a", at(3)), None, "the oldest went");
        assert!(store.get("c", at(3)).is_some());
    }
}

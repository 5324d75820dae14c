//! Which SET `jti`s were delivered to the RP, and which are being delivered now.
//!
//! A `jti` is claimed before forwarding and settled by the RP's answer: 2xx records it as
//! delivered (until the SET would be refused as too old anyway), anything else (or a request
//! that ends without an answer: the ticket is dropped) forgets it, so the broker's retry gets
//! through. Copies that arrive while one is in flight wait for it to settle.
//!
//! [`JtiLedger`] is the seam for sharing this between replicas; [`LocalJtiLedger`] keeps it in
//! this process, bounded in number (`capacity`) and age; [`SharedJtiLedger`] (`[redis]`) puts
//! a pending claim with a short TTL in Redis in front of it, confirmed on 2xx and released on
//! failure, so the fleet delivers one SET once (Redis down: the local ledger alone).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::shared::{SetClaim, Store};

/// The outcome of a claim.
pub enum Claim {
    /// This request delivers the SET; settle the ticket with the RP's answer.
    Mine(DeliveryTicket),
    /// Delivered before.
    Delivered,
    /// Another copy is in flight: wait for this, then claim again.
    InFlight(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Too many `jti`s within their age to remember another.
    Full,
}

/// A claim being decided.
pub type Claiming = Pin<Box<dyn Future<Output = Claim> + Send>>;

/// Delivery state of SETs by `jti` digest.
pub trait JtiLedger: Send + Sync + 'static {
    /// Claims the delivery of `key`, remembered until `until` once delivered.
    fn claim(self: Arc<Self>, key: [u8; 32], until: SystemTime, now: SystemTime) -> Claiming;
    /// Records the RP's answer for a claim.
    fn settle(&self, key: &[u8; 32], delivered: bool, until: SystemTime);
}

/// The right to deliver one SET. Settled by the RP's answer; dropped unsettled, not delivered.
pub struct DeliveryTicket {
    ledger: Arc<dyn JtiLedger>,
    key: [u8; 32],
    until: SystemTime,
    settled: bool,
}

/// In-process ledger.
pub struct LocalJtiLedger {
    slots: Mutex<HashMap<[u8; 32], Slot>>,
    capacity: usize,
}

enum Slot {
    /// Being delivered; the sender is dropped when it settles, which wakes the waiters.
    InFlight {
        waiters: watch::Receiver<()>,
        _settled: watch::Sender<()>,
    },
    Delivered {
        until: SystemTime,
    },
}

/// Longest wait for another copy's delivery (the RP's own timeouts end it sooner).
const MAX_WAIT: Duration = Duration::from_secs(120);

// === impl DeliveryTicket ===

impl DeliveryTicket {
    /// The RP answered: `delivered` when it was a 2xx.
    pub fn settle(mut self, delivered: bool) {
        self.settled = true;
        self.ledger.settle(&self.key, delivered, self.until);
    }
}

impl Drop for DeliveryTicket {
    fn drop(&mut self) {
        if !self.settled {
            self.ledger.settle(&self.key, false, self.until);
        }
    }
}

impl std::fmt::Debug for DeliveryTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTicket")
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

// === impl LocalJtiLedger ===

impl LocalJtiLedger {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(LocalJtiLedger {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        })
    }

    /// Remembered `jti`s (delivered or in flight).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the in-process ledger says about a claim.
enum Local {
    /// The slot is this caller's: settle it.
    Taken,
    Delivered,
    InFlight(Pin<Box<dyn Future<Output = ()> + Send>>),
    Full,
}

impl LocalJtiLedger {
    fn take(&self, key: &[u8; 32], now: SystemTime) -> Local {
        let mut slots = self.lock();
        match slots.get(key) {
            Some(Slot::Delivered { until }) if *until > now => return Local::Delivered,
            Some(Slot::InFlight { waiters, .. }) => {
                let mut rx = waiters.clone();
                return Local::InFlight(Box::pin(async move {
                    // Resolves when the sender is dropped (the copy in flight settled).
                    let _ = tokio::time::timeout(MAX_WAIT, rx.changed()).await;
                }));
            }
            _ => {}
        }
        if slots.len() >= self.capacity && !slots.contains_key(key) {
            slots.retain(|_, s| !matches!(s, Slot::Delivered { until } if *until <= now));
            if slots.len() >= self.capacity {
                return Local::Full;
            }
        }
        let (tx, rx) = watch::channel(());
        slots.insert(
            *key,
            Slot::InFlight {
                waiters: rx,
                _settled: tx,
            },
        );
        Local::Taken
    }
}

impl JtiLedger for LocalJtiLedger {
    fn claim(self: Arc<Self>, key: [u8; 32], until: SystemTime, now: SystemTime) -> Claiming {
        let claim = match self.take(&key, now) {
            Local::Taken => Claim::Mine(DeliveryTicket {
                ledger: self,
                key,
                until,
                settled: false,
            }),
            Local::Delivered => Claim::Delivered,
            Local::InFlight(wait) => Claim::InFlight(wait),
            Local::Full => Claim::Full,
        };
        Box::pin(std::future::ready(claim))
    }

    fn settle(&self, key: &[u8; 32], delivered: bool, until: SystemTime) {
        let mut slots = self.lock();
        // Dropping the in-flight slot drops its sender: waiters wake and claim again.
        let previous = if delivered {
            slots.insert(*key, Slot::Delivered { until })
        } else {
            slots.remove(key)
        };
        drop(slots);
        drop(previous);
    }
}

impl std::fmt::Debug for LocalJtiLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalJtiLedger")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The fleet's ledger (`[redis]`): the local one first (copies on this replica wait for each
/// other in memory), then a claim in Redis that lapses after `pending` unless the RP's 2xx
/// turns it into "delivered" (kept until the SET is too old anyway).
pub struct SharedJtiLedger {
    local: Arc<LocalJtiLedger>,
    store: Arc<Store>,
    clock: SharedClock,
    /// How long another replica's copies wait for this one's delivery at most: longer than
    /// the webhook's response timeout.
    pending: Duration,
}

/// How often a copy waiting on another replica's delivery asks Redis again.
const POLL: Duration = Duration::from_millis(50);

impl SharedJtiLedger {
    pub fn new(
        local: Arc<LocalJtiLedger>,
        store: Arc<Store>,
        clock: SharedClock,
        pending: Duration,
    ) -> Arc<Self> {
        Arc::new(SharedJtiLedger {
            local,
            store,
            clock,
            pending,
        })
    }

    /// The in-process part (kept across a reload).
    pub fn local(&self) -> &Arc<LocalJtiLedger> {
        &self.local
    }

    fn id(&self, key: &[u8; 32]) -> String {
        self.store.hash("set-jti", key)
    }
}

impl JtiLedger for SharedJtiLedger {
    fn claim(self: Arc<Self>, key: [u8; 32], until: SystemTime, now: SystemTime) -> Claiming {
        Box::pin(async move {
            match self.local.take(&key, now) {
                Local::Taken => {}
                Local::Delivered => return Claim::Delivered,
                Local::InFlight(wait) => return Claim::InFlight(wait),
                Local::Full => return Claim::Full,
            }
            let id = self.id(&key);
            let pending = u64::try_from(self.pending.as_millis()).unwrap_or(u64::MAX);
            let store = Arc::clone(&self.store);
            // Settles the local slot (and the Redis claim) whatever happens from here, even
            // if this future is dropped.
            let ticket = DeliveryTicket {
                ledger: self,
                key,
                until,
                settled: false,
            };
            match store.set_claim(&id, pending).await {
                // Ours, or Redis is down: this replica delivers on its own ledger.
                Some(SetClaim::Mine) | None => Claim::Mine(ticket),
                Some(SetClaim::Delivered) => {
                    ticket.settle(true);
                    Claim::Delivered
                }
                Some(SetClaim::Elsewhere { ttl_ms }) => {
                    drop(ticket);
                    let wait = POLL.min(Duration::from_millis(ttl_ms.max(1)));
                    Claim::InFlight(Box::pin(tokio::time::sleep(wait)))
                }
            }
        })
    }

    fn settle(&self, key: &[u8; 32], delivered: bool, until: SystemTime) {
        self.local.settle(key, delivered, until);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, id) = (Arc::clone(&self.store), self.id(key));
        let keep = until.duration_since(self.clock.now()).unwrap_or_default();
        runtime.spawn(async move {
            if delivered {
                let keep = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
                store.set_delivered(&id, keep).await
            } else {
                store.set_release(&id).await
            }
        });
    }
}

impl std::fmt::Debug for SharedJtiLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedJtiLedger")
            .field("local", &self.local)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claim(ledger: &Arc<LocalJtiLedger>, key: u8, now: u64) -> Claim {
        let claiming = Arc::clone(ledger).claim([key; 32], at(100), at(now));
        futures_util::FutureExt::now_or_never(claiming).expect("the local ledger answers at once")
    }

    #[tokio::test]
    async fn a_jti_counts_only_once_the_rp_took_it() {
        let ledger = LocalJtiLedger::new(10);
        let Claim::Mine(ticket) = claim(&ledger, 1, 0) else {
            panic!("first claim")
        };
        ticket.settle(false);
        let Claim::Mine(ticket) = claim(&ledger, 1, 0) else {
            panic!("retry after an error")
        };
        ticket.settle(true);
        assert!(matches!(claim(&ledger, 1, 50), Claim::Delivered));
        // Past its age the SET is refused anyway: the jti may be claimed (and forgotten).
        assert!(matches!(claim(&ledger, 1, 100), Claim::Mine(_)));
    }

    #[tokio::test]
    async fn a_copy_waits_for_the_one_in_flight() {
        let ledger = LocalJtiLedger::new(10);
        let Claim::Mine(ticket) = claim(&ledger, 2, 0) else {
            panic!("first claim")
        };
        let Claim::InFlight(wait) = claim(&ledger, 2, 0) else {
            panic!("copy in flight")
        };
        let waiter = tokio::spawn(wait);
        drop(ticket); // an unanswered delivery is not a delivery
        waiter.await.expect("woken");
        assert!(matches!(claim(&ledger, 2, 0), Claim::Mine(_)));
    }

    #[tokio::test]
    async fn the_ledger_is_bounded_by_jtis_within_their_age() {
        let ledger = LocalJtiLedger::new(2);
        for key in [3, 4] {
            let Claim::Mine(t) = claim(&ledger, key, 0) else {
                panic!("claim")
            };
            t.settle(true);
        }
        assert!(matches!(claim(&ledger, 5, 10), Claim::Full));
        let Claim::Mine(held) = claim(&ledger, 5, 100) else {
            panic!("aged out: room again")
        };
        assert_eq!(ledger.len(), 1);
        held.settle(true);
        assert_eq!(ledger.len(), 1);
    }
}

//! Quota keys, and the key store shared between governor and the key-count cap.
//!
//! Never stores a raw header value: it may be an API key, so it is kept only as a keyed
//! HMAC-SHA256 digest under a random per-process key (a dump of the limiter's memory reveals
//! nothing reusable, and digests of two processes cannot be correlated).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use aws_lc_rs::{hmac, rand};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};

/// Bytes of the digest kept: 128 bits is collision-free for any number of keys we can hold.
const DIGEST_LEN: usize = 16;

/// Who a quota counts against.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// An OAuth client id (from introspection): an identifier, not a secret.
    Client(Arc<str>),
    /// A header value (e.g. an API key), as a keyed digest; see [`SecretKeyHasher`].
    Secret([u8; DIGEST_LEN]),
    /// The peer address; IPv6 is cut to its /64 (one subscriber's usual allocation), so
    /// rotating through a prefix does not mint fresh quotas.
    Peer(IpAddr),
}

/// Turns possibly secret header values into [`RateKey::Secret`] keys.
pub struct SecretKeyHasher {
    key: hmac::Key,
}

/// governor's dashmap store behind an `Arc`, so the limiter can hold the store while
/// `KeyedLimiter` still sees it (governor offers no way back to its store for `contains_key`).
#[derive(Clone, Default)]
pub(super) struct SharedStore(pub(super) Arc<DashMapStateStore<RateKey>>);

// === impl RateKey ===

impl RateKey {
    pub fn client(client_id: &str) -> Self {
        RateKey::Client(Arc::from(client_id))
    }

    pub fn peer(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !(u128::MAX >> 64);
                RateKey::Peer(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => RateKey::Peer(v4),
        }
    }
}

impl fmt::Debug for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateKey::Client(id) => f.debug_tuple("Client").field(id).finish(),
            RateKey::Secret(digest) => write!(f, "Secret({:02x}{:02x}…)", digest[0], digest[1]),
            RateKey::Peer(addr) => f.debug_tuple("Peer").field(addr).finish(),
        }
    }
}

// === impl SecretKeyHasher ===

impl SecretKeyHasher {
    /// A hasher with a fresh random key. Build it once at startup.
    pub fn new() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret).expect("the system RNG is available at startup");
        SecretKeyHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    pub fn key(&self, value: &[u8]) -> RateKey {
        let tag = hmac::sign(&self.key, value);
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&tag.as_ref()[..DIGEST_LEN]);
        RateKey::Secret(digest)
    }
}

impl Default for SecretKeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SecretKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKeyHasher(<redacted>)")
    }
}

// === impl SharedStore ===

impl SharedStore {
    pub(super) fn contains(&self, key: &RateKey) -> bool {
        self.0.contains_key(key)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

impl StateStore for SharedStore {
    type Key = RateKey;

    fn measure_and_replace<T, F, E>(&self, key: &RateKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<RateKey> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

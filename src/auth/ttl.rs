//! moka's per-entry expiry for values that carry their own time to live.
//!
//! moka evicts by its own (real) clock; this only bounds memory. Whether an entry may still be
//! used is judged by its owner on the gateway's clock at every hit.

use std::time::{Duration, Instant};

/// A cached value that knows how long it may be kept, decided when it was made.
pub trait Ttl {
    fn ttl(&self) -> Duration;
}

impl<T: Ttl> Ttl for std::sync::Arc<T> {
    fn ttl(&self) -> Duration {
        (**self).ttl()
    }
}

/// Expires each entry after its value's [`Ttl`], counted again on every insert (moka's default
/// would keep an updated entry's old remaining time).
pub struct TtlExpiry;

impl<K, V: Ttl> moka::Expiry<K, V> for TtlExpiry {
    fn expire_after_create(&self, _: &K, value: &V, _: Instant) -> Option<Duration> {
        Some(value.ttl())
    }

    fn expire_after_update(
        &self,
        _: &K,
        value: &V,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
}

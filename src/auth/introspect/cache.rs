//! What the introspection cache holds and for how long.
//!
//! Freshness is decided twice: moka evicts by its own (real) clock through [`crate::auth::ttl::TtlExpiry`],
//! which only bounds memory; every hit is then judged against the gateway's clock
//! ([`Cached::is_fresh`], [`Cached::serve`]), so a test that moves a manual clock sees expiry at
//! once and an entry past the token's `exp` is never served as active.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{IntrospectError, IntrospectSettings, TokenInfo};
use crate::auth::revocation::{Revocation, Revocations};

/// HMAC-SHA256 of the token under a per-process random key, truncated to its first 128 bits
/// (RFC 2104 §5 allows down to half the output): never the raw token, and a dump of keys cannot
/// be matched against a public hash of known tokens. 16 bytes less in moka's `Arc` of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct CacheKey(pub(super) u128);

/// One cached answer: the token's info, or `None` when the endpoint refused the token (4xx).
#[derive(Clone)]
pub(super) struct Cached {
    info: Option<Arc<TokenInfo>>,
    /// On the gateway's clock.
    fresh_until: SystemTime,
    /// The same span for moka's eviction.
    ttl: Duration,
    /// When the OAuth server was asked (gateway clock): a revocation recorded later makes the
    /// answer stale for the tokens it covers.
    seen_at: SystemTime,
}

/// How long an answer may be reused, from `now` (pure, so it is tested without moka):
/// - active with `exp` in the future: until `exp`, at most `max_ttl` (the revocation window:
///   a token revoked at FxA stops working here within `max_ttl`);
/// - active without `exp`: `max_ttl`;
/// - inactive, refused, or active with `exp` already past (clock skew): `negative_ttl`, so
///   guessed or dead tokens do not turn into one FxA call each.
pub fn entry_ttl(
    info: Option<&TokenInfo>,
    now: SystemTime,
    settings: &IntrospectSettings,
) -> Duration {
    match info {
        Some(info) if info.active => match info.exp {
            None => settings.max_ttl,
            Some(exp) => match exp.duration_since(now) {
                Ok(left) if !left.is_zero() => left.min(settings.max_ttl),
                _ => settings.negative_ttl,
            },
        },
        _ => settings.negative_ttl,
    }
}

// === impl CacheKey ===

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({:04x}…)", self.0 >> 112)
    }
}

// === impl Cached ===

impl Cached {
    pub(super) fn new(
        info: Option<Arc<TokenInfo>>,
        now: SystemTime,
        settings: &IntrospectSettings,
    ) -> Self {
        let ttl = entry_ttl(info.as_deref(), now, settings);
        let info = info.map(|info| {
            if info.active {
                info
            } else {
                TokenInfo::inactive_shared()
            }
        });
        Cached {
            info,
            fresh_until: now.checked_add(ttl).unwrap_or(now),
            ttl,
            seen_at: now,
        }
    }

    /// The same answer, asked for at `at` (the start of the call).
    pub(super) fn asked_at(mut self, at: SystemTime) -> Self {
        self.seen_at = at.min(self.seen_at);
        self
    }

    /// Whether the answer is about a token of `uid`.
    pub(super) fn is_of(&self, uid: &str) -> bool {
        self.info
            .as_ref()
            .is_some_and(|i| i.sub.as_deref() == Some(uid))
    }

    /// Whether `revocation` covers the token this answer is about (refusals: no).
    pub(super) fn covered_by(&self, revocation: &Revocation) -> bool {
        self.info
            .as_ref()
            .is_some_and(|i| i.active && revocation.covers(i.iat))
    }

    /// Whether a revocation makes this answer unusable from memory.
    pub(super) fn revoked_by(&self, revocations: &dyn Revocations, now: SystemTime) -> bool {
        let Some(info) = self.info.as_ref().filter(|i| i.active) else {
            return false;
        };
        let Some(sub) = info.sub.as_deref() else {
            return false;
        };
        revocations
            .get(sub, now)
            .is_some_and(|r| r.invalidates(info.iat, self.seen_at))
    }

    pub(super) fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.fresh_until
    }

    /// The answer for a caller at `now`: a token past its own `exp` is inactive, whatever the
    /// entry's age.
    pub(super) fn serve(&self, now: SystemTime) -> Result<Arc<TokenInfo>, IntrospectError> {
        match &self.info {
            None => Err(IntrospectError::Refused),
            Some(info) if info.active && info.is_expired_at(now) => {
                Ok(TokenInfo::inactive_shared())
            }
            Some(info) => Ok(Arc::clone(info)),
        }
    }
}

// === impl Ttl ===

impl crate::auth::ttl::Ttl for Cached {
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

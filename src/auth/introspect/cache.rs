//! What the introspection cache holds and for how long.
//!
//! Freshness is decided twice: moka evicts by its own (real) clock through [`crate::auth::ttl::TtlExpiry`],
//! which only bounds memory; every hit is then judged against the gateway's clock
//! ([`Cached::is_fresh`], [`Cached::serve`]), so a test that moves a manual clock sees expiry at
//! once and an entry past the token's `exp` is never served as active.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use super::intern::Interner;
use super::{IntrospectError, IntrospectSettings, TokenInfo};
use crate::auth::revocation::{Revocation, Revocations};

/// HMAC-SHA256 of the token under a per-process random key, truncated to its first 128 bits
/// (RFC 2104 §5 allows down to half the output): never the raw token, and a dump of keys cannot
/// be matched against a public hash of known tokens. 16 bytes less in moka's `Arc` of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct CacheKey(pub(super) u128);

/// One cached answer: the token's info, or `None` when the endpoint refused the token (4xx).
///
/// Compact, because there is one per cached token (issue 19): what the answer says apart from
/// its times is shared by every token with the same description (see [`ABOUT`]), and the times
/// are nanoseconds since the epoch ([`Stamp`]). 40 bytes; moka keeps it in its entry.
#[derive(Clone)]
pub(super) struct Cached {
    /// The answer without `exp` and `iat`.
    about: Option<Arc<TokenInfo>>,
    exp: Stamp,
    iat: Stamp,
    /// On the gateway's clock. moka evicts the entry `fresh_until - seen_at` after it was
    /// stored: the answer's own TTL, plus the time the call took (memory only: every hit is
    /// judged by `fresh_until`).
    fresh_until: Stamp,
    /// When the OAuth server was asked (gateway clock): a revocation recorded later makes the
    /// answer stale for the tokens it covers.
    seen_at: Stamp,
}

/// A point in time as nanoseconds since the Unix epoch, or none. Exact from 1970 to 2554;
/// earlier times read as 1970 and later ones as 2554, which no token's validity depends on.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp(u64);

/// The descriptions ([`TokenInfo`] less `exp` and `iat`) of the cached tokens, each held once.
static ABOUT: LazyLock<Interner<TokenInfo>> = LazyLock::new(Interner::new);

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
        let (exp, iat) = info
            .as_ref()
            .filter(|info| info.active)
            .map_or((None, None), |info| (info.exp, info.iat));
        let about = info.map(|info| {
            if info.active {
                let about = TokenInfo {
                    exp: None,
                    iat: None,
                    ..Arc::unwrap_or_clone(info)
                };
                ABOUT.intern(&about, || Arc::new(about.clone()))
            } else {
                TokenInfo::inactive_shared()
            }
        });
        Cached {
            about,
            exp: Stamp::from_time(exp),
            iat: Stamp::from_time(iat),
            fresh_until: Stamp::at(now.checked_add(ttl).unwrap_or(now)),
            seen_at: Stamp::at(now),
        }
    }

    /// The same answer, asked for at `at` (the start of the call).
    pub(super) fn asked_at(mut self, at: SystemTime) -> Self {
        self.seen_at = self.seen_at.min(Stamp::at(at));
        self
    }

    /// Whether the answer is about a token of `uid`.
    pub(super) fn is_of(&self, uid: &str) -> bool {
        self.about
            .as_ref()
            .is_some_and(|i| i.sub.as_deref() == Some(uid))
    }

    /// Whether `revocation` covers the token this answer is about (refusals: no).
    pub(super) fn covered_by(&self, revocation: &Revocation) -> bool {
        self.about
            .as_ref()
            .is_some_and(|i| i.active && revocation.covers(self.iat.time()))
    }

    /// Whether a revocation makes this answer unusable from memory.
    pub(super) fn revoked_by(&self, revocations: &dyn Revocations, now: SystemTime) -> bool {
        let Some(info) = self.about.as_ref().filter(|i| i.active) else {
            return false;
        };
        let Some(sub) = info.sub.as_deref() else {
            return false;
        };
        revocations
            .get(sub, now)
            .is_some_and(|r| r.invalidates(self.iat.time(), self.seen_at.as_time()))
    }

    pub(super) fn is_fresh(&self, now: SystemTime) -> bool {
        Stamp::at(now) < self.fresh_until
    }

    /// The answer for a caller at `now`: a token past its own `exp` is inactive, whatever the
    /// entry's age.
    pub(super) fn serve(&self, now: SystemTime) -> Result<Arc<TokenInfo>, IntrospectError> {
        let about = match &self.about {
            None => return Err(IntrospectError::Refused),
            Some(about) if !about.active => return Ok(Arc::clone(about)),
            Some(about) => about,
        };
        let (exp, iat) = (self.exp.time(), self.iat.time());
        if exp.is_some_and(|exp| exp <= now) {
            return Ok(TokenInfo::inactive_shared());
        }
        if exp.is_none() && iat.is_none() {
            return Ok(Arc::clone(about));
        }
        Ok(Arc::new(TokenInfo {
            exp,
            iat,
            ..TokenInfo::clone(about)
        }))
    }
}

// === impl Stamp ===

impl Stamp {
    const NONE: Stamp = Stamp(u64::MAX);

    fn at(time: SystemTime) -> Stamp {
        let nanos = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Stamp(u64::try_from(nanos).unwrap_or(u64::MAX).min(u64::MAX - 1))
    }

    fn from_time(time: Option<SystemTime>) -> Stamp {
        time.map_or(Stamp::NONE, Stamp::at)
    }

    fn as_time(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    fn time(self) -> Option<SystemTime> {
        (self != Stamp::NONE).then(|| self.as_time())
    }

    fn min(self, other: Stamp) -> Stamp {
        Stamp(self.0.min(other.0))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

// === impl Ttl ===

impl crate::auth::ttl::Ttl for Cached {
    fn ttl(&self) -> Duration {
        Duration::from_nanos(self.fresh_until.0.saturating_sub(self.seen_at.0))
    }
}

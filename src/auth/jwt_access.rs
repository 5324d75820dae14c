//! Local verification of FxA's JWT access tokens (`fxa-reference.md` §1.3), as FxA's own
//! `lib/oauth/jwt_access_token.js` and `lib/oauth/jwt.js` verify them: header `typ` `at+JWT`
//! (normalised), `alg` RS256 only, a signature by the `kid` key of the OAuth server's JWK set,
//! `iss` exactly the configured issuer, `exp` in the future on the gateway's clock, and `aud`
//! containing the configured audience when one is set.
//!
//! A verified token's claims are cached under an HMAC of the token until its `exp`, so a
//! repeat costs a hash and a map lookup, not an RSA verification.
//!
//! Revocation window: FxA does not store JWT access tokens whose lifetime is at most six
//! hours (`lib/oauth/db/index.js` `generateAccessToken`: "We avoid revocation concerns with
//! short-lived tokens, so we do not store them"), so `/v1/introspect` answers `active: false`
//! for every such token, valid or not (`lib/routes/oauth/introspect.js` looks the token id up
//! in the store only), and `/v1/verify` accepts it from the JWT alone (`lib/oauth/token.js`).
//! Introspection can say nothing about them: they are never rechecked (a recheck would revoke
//! every one) and live until `exp`, or until a security event covers them. Longer-lived JWTs
//! are stored at FxA, and each is introspected again at most once per `revocation_window`,
//! in the background: `active: false` revokes it here; a failed recheck (OAuth server down)
//! keeps it verified for another window and never revokes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_lc_rs::{hmac, rand};
use moka::future::Cache;
use serde_json::Value;
use tracing::Instrument as _;

use super::introspect::{IntrospectError, Introspector, SharedStr, TokenInfo, epoch_time};
use super::jose::{self, JoseError};
use super::jwks::Jwks;
use super::revocation::Revocation;
use super::ttl::{Ttl, TtlExpiry};
use crate::clock::SharedClock;
use crate::metrics::AuthMetrics;

/// FxA's `SHORT_ACCESS_TOKEN_TTL_IN_MS` (`fxa-shared/oauth/constants`): JWTs living at most
/// this long are not stored, so introspection cannot speak for them.
pub const SHORT_LIVED: Duration = Duration::from_secs(6 * 3600);
/// FxA's production issuer (`oauthServer.openid.issuer`).
pub const FXA_ISSUER: &str = "https://accounts.firefox.com";
/// Allowed clock skew for `iat` and `nbf` in the future.
const LEEWAY: Duration = Duration::from_secs(60);

/// Operator knobs (`[jwt]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    /// `aud` must contain this when set (the RP's client id or the resource server's URL).
    pub audience: Option<String>,
    /// A long-lived JWT is introspected again at most this often.
    pub revocation_window: Duration,
    pub cache_size: u64,
}

/// Why a JWT was refused. Labels only: never token bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Algorithm,
    Type,
    Critical,
    MissingKid,
    UnknownKid,
    Signature,
    Issuer,
    Audience,
    Claims,
    NotYetValid,
    RevokedAtRecheck,
}

/// What local verification says about a token.
pub enum Verdict {
    /// Signed by FxA and well formed; judge `info` as an introspection answer (it may be
    /// expired: `exp` is the caller's to check, so refresh works as for introspected tokens).
    Verified(Arc<Verified>),
    Refused(Refusal),
    /// No keys yet: the caller falls back to introspection.
    NoKeys,
}

/// A verified token, cached until its `exp`.
pub struct Verified {
    pub info: Arc<TokenInfo>,
    /// Lifetime over [`SHORT_LIVED`]: FxA stores it, so it is rechecked.
    pub long_lived: bool,
    /// On the gateway's clock.
    pub verified_at: SystemTime,
    /// The account uid FxA's introspection gave (a JWT's `sub` may be a pairwise id).
    uid: Mutex<Option<String>>,
    recheck: Mutex<Recheck>,
    ttl: Duration,
}

struct Recheck {
    due: SystemTime,
    running: bool,
    revoked: bool,
}

/// HMAC-SHA256 of a token under a per-process key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey([u8; 32]);

/// Verifies JWT access tokens against the OAuth server's keys. One per configuration, shared.
pub struct LocalVerifier {
    settings: JwtSettings,
    jwks: Arc<Jwks>,
    clock: SharedClock,
    key: hmac::Key,
    cache: Cache<CacheKey, Arc<Verified>>,
    metrics: AuthMetrics,
}

// === impl Refusal ===

impl Refusal {
    /// Stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Algorithm => "alg",
            Refusal::Type => "typ",
            Refusal::Critical => "crit",
            Refusal::MissingKid => "kid-missing",
            Refusal::UnknownKid => "kid-unknown",
            Refusal::Signature => "signature",
            Refusal::Issuer => "iss",
            Refusal::Audience => "aud",
            Refusal::Claims => "claims",
            Refusal::NotYetValid => "not-yet-valid",
            Refusal::RevokedAtRecheck => "revoked",
        }
    }

    /// The metric outcome of this refusal's class.
    pub fn outcome(self) -> &'static str {
        match self {
            Refusal::Malformed | Refusal::Type | Refusal::Critical => "refused_format",
            Refusal::Algorithm | Refusal::MissingKid | Refusal::UnknownKid | Refusal::Signature => {
                "refused_signature"
            }
            Refusal::Issuer | Refusal::Audience | Refusal::Claims | Refusal::NotYetValid => {
                "refused_claims"
            }
            Refusal::RevokedAtRecheck => "refused_revoked",
        }
    }
}

impl From<JoseError> for Refusal {
    fn from(e: JoseError) -> Self {
        match e {
            JoseError::Malformed => Refusal::Malformed,
            JoseError::Algorithm => Refusal::Algorithm,
            JoseError::Critical => Refusal::Critical,
            JoseError::MissingKid => Refusal::MissingKid,
            JoseError::Signature => Refusal::Signature,
        }
    }
}

// === impl Verified ===

impl Verified {
    /// The ids a security event may name this token's user by: its `sub`, and the uid FxA
    /// told on a recheck.
    pub fn is_of(&self, uid: &str) -> bool {
        self.info.sub.as_deref() == Some(uid) || self.learnt_uid().as_deref() == Some(uid)
    }

    pub fn learnt_uid(&self) -> Option<String> {
        self.uid.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// FxA said `active: false` at a recheck.
    pub fn is_revoked(&self) -> bool {
        self.recheck
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .revoked
    }

    /// Claims a recheck: due, not running, not revoked, and the token long-lived.
    fn take_recheck(&self, now: SystemTime) -> bool {
        if !self.long_lived {
            return false;
        }
        let mut r = self.recheck.lock().unwrap_or_else(|p| p.into_inner());
        if r.running || r.revoked || r.due > now {
            return false;
        }
        r.running = true;
        true
    }

    fn finish_recheck(
        &self,
        answer: Result<Arc<TokenInfo>, IntrospectError>,
        now: SystemTime,
        window: Duration,
    ) {
        let mut r = self.recheck.lock().unwrap_or_else(|p| p.into_inner());
        r.running = false;
        r.due = now.checked_add(window).unwrap_or(now);
        match answer {
            Ok(info) if info.is_active_access_token() => {
                if let Some(sub) = &info.sub {
                    *self.uid.lock().unwrap_or_else(|p| p.into_inner()) = Some(sub.to_string());
                }
            }
            Ok(_) | Err(IntrospectError::Refused) => r.revoked = true,
            // An outage never revokes: the verified state holds for another window.
            Err(IntrospectError::Unavailable { .. }) => {}
        }
    }
}

impl Ttl for Verified {
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

// === impl LocalVerifier ===

impl LocalVerifier {
    /// Call at start-up: draws the cache's HMAC key from the system RNG.
    pub fn new(settings: JwtSettings, jwks: Arc<Jwks>, clock: SharedClock) -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret).expect("the system RNG is available at startup");
        let cache = Cache::builder()
            .name("jwt-access")
            .max_capacity(settings.cache_size)
            .expire_after(TtlExpiry)
            .support_invalidation_closures()
            .build();
        LocalVerifier {
            settings,
            jwks,
            clock,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            cache,
            metrics: AuthMetrics::default(),
        }
    }

    /// Counts into `metrics` (the process's series).
    pub fn with_metrics(mut self, metrics: AuthMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &AuthMetrics {
        &self.metrics
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    /// Cached verified tokens now (approximate).
    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// What `token` (shaped like a JWT) is: from the cache, or verified now.
    pub async fn verify(&self, token: &str) -> Verdict {
        let key = self.cache_key(token);
        if let Some(verified) = self.cache.get(&key).await {
            self.metrics.claim_cache_hit();
            return Verdict::Verified(verified);
        }
        let now = self.clock.now();
        let verified = match self.check(token, now).await {
            Ok(v) => Arc::new(v),
            Err(verdict) => {
                self.metrics.verification(match &verdict {
                    Verdict::Refused(r) => r.outcome(),
                    _ => "no_keys",
                });
                return verdict;
            }
        };
        self.metrics.verification("verified");
        if !verified.ttl.is_zero() {
            self.cache.insert(key, Arc::clone(&verified)).await;
        }
        Verdict::Verified(verified)
    }

    /// Starts the background recheck of a long-lived token when one is due (never on the
    /// request path: the current request is served from the verified state).
    pub fn recheck_if_due(
        &self,
        verified: &Arc<Verified>,
        token: &str,
        introspector: &Arc<Introspector>,
    ) {
        let now = self.clock.now();
        if !verified.take_recheck(now) {
            return;
        }
        let (verified, introspector) = (Arc::clone(verified), Arc::clone(introspector));
        let metrics = self.metrics.clone();
        let (token, clock, window) = (
            token.to_owned(),
            self.clock.clone(),
            self.settings.revocation_window,
        );
        let span = tracing::debug_span!("jwt_recheck");
        tokio::spawn(
            async move {
                let answer = introspector.introspect_uncached(&token).await;
                drop(token);
                metrics.recheck(match &answer {
                    Ok(info) if info.is_active_access_token() => "active",
                    Ok(_) | Err(IntrospectError::Refused) => "revoked",
                    Err(IntrospectError::Unavailable { .. }) => "failed",
                });
                verified.finish_recheck(answer, clock.now(), window);
            }
            .instrument(span),
        );
    }

    /// Drops every cached token of `uid` that `revocation` covers (a security event).
    pub fn invalidate_user(&self, uid: &str, revocation: Revocation) {
        let uid = uid.to_owned();
        let drop =
            move |_: &CacheKey, v: &Arc<Verified>| v.is_of(&uid) && revocation.covers(v.info.iat);
        if let Err(e) = self.cache.invalidate_entries_if(drop) {
            tracing::warn!(error = %e, "could not drop the user's verified JWTs");
        }
    }

    /// Forgets `token` (after FxA refused it).
    pub async fn invalidate(&self, token: &str) {
        self.cache.invalidate(&self.cache_key(token)).await;
    }

    fn cache_key(&self, token: &str) -> CacheKey {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(hmac::sign(&self.key, token.as_bytes()).as_ref());
        CacheKey(digest)
    }

    /// Every check, in order: nothing in the token is trusted before the signature matched.
    async fn check(&self, token: &str, now: SystemTime) -> Result<Verified, Verdict> {
        let refuse = |r: Refusal| Verdict::Refused(r);
        let compact = jose::split(token).map_err(|e| refuse(e.into()))?;
        if !jose::typ_matches(compact.typ.as_deref(), "at+jwt") {
            return Err(refuse(Refusal::Type));
        }
        let kid = compact.kid.as_deref().ok_or(refuse(Refusal::MissingKid))?;
        let Some(keys) = self.jwks.with_kid(kid).await else {
            return Err(match self.jwks.keys() {
                None => Verdict::NoKeys,
                Some(_) => refuse(Refusal::UnknownKid),
            });
        };
        let key = keys.get(kid).ok_or(refuse(Refusal::UnknownKid))?;
        compact.verify(key).map_err(|e| refuse(e.into()))?;

        // Authenticated from here on.
        if compact.str_claim("iss") != Some(self.settings.issuer.as_str()) {
            return Err(refuse(Refusal::Issuer));
        }
        if let Some(audience) = &self.settings.audience
            && !audience_contains(compact.claims.get("aud"), audience)
        {
            return Err(refuse(Refusal::Audience));
        }
        let date = |name: &str| {
            compact
                .date_claim(name)
                .filter(|d| *d >= 0.0 && *d < crate::auth::introspect::MILLIS_THRESHOLD)
                .and_then(|d| epoch_time(&Value::from(d)))
        };
        let (Some(exp), Some(iat)) = (date("exp"), date("iat")) else {
            return Err(refuse(Refusal::Claims));
        };
        let (Some(sub), Some(client_id), Some(scope)) = (
            compact.str_claim("sub"),
            compact.str_claim("client_id"),
            compact.str_claim("scope"),
        ) else {
            return Err(refuse(Refusal::Claims));
        };
        let skewed = now.checked_add(LEEWAY).unwrap_or(now);
        let nbf_passed = match compact.claims.get("nbf") {
            None => true,
            Some(_) => date("nbf").is_some_and(|nbf| nbf <= skewed),
        };
        if iat > skewed || !nbf_passed {
            return Err(refuse(Refusal::NotYetValid));
        }
        if exp <= iat {
            return Err(refuse(Refusal::Claims));
        }
        let lifetime = exp.duration_since(iat).unwrap_or_default();
        let info = TokenInfo {
            active: true,
            sub: Some(SharedStr::interned(sub)),
            client_id: Some(SharedStr::interned(client_id)),
            scope: SharedStr::interned(scope),
            token_type: Some(SharedStr::interned("access_token")),
            exp: Some(exp),
            iat: Some(iat),
        };
        let window = self.settings.revocation_window;
        let first_due = iat.checked_add(window).unwrap_or(iat).max(now);
        Ok(Verified {
            info: Arc::new(info),
            long_lived: lifetime > SHORT_LIVED,
            verified_at: now,
            uid: Mutex::new(None),
            recheck: Mutex::new(Recheck {
                due: first_due,
                running: false,
                revoked: false,
            }),
            ttl: exp.duration_since(now).unwrap_or_default(),
        })
    }
}

impl std::fmt::Debug for LocalVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// `aud` as a string equal to `audience`, or an array holding it (FxA sends `[client_id,
/// resource]` when a resource was asked for).
fn audience_contains(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_audience_is_a_string_or_one_of_an_array() {
        assert!(audience_contains(Some(&json!("abc")), "abc"));
        assert!(audience_contains(
            Some(&json!(["abc", "https://rs"])),
            "https://rs"
        ));
        assert!(!audience_contains(Some(&json!(["abc"])), "https://rs"));
        assert!(!audience_contains(None, "abc"));
        assert!(!audience_contains(Some(&json!(1)), "abc"));
    }
}

//! Transparent refresh (DESIGN.md step 7, `fxa-reference.md` §1.2 and §7): exchanges a
//! caller's refresh token for a new access token at the OAuth server, once per refresh token
//! however many requests are waiting, and remembers the result for a short grace period.
//!
//! - Keys are HMAC-SHA256 of the tokens under a per-process random key; no raw token is ever
//!   a key. The new access token is held in memory only while it may be reused (the grace
//!   period, never past its expiry), so late requests holding the same old access token and
//!   refresh token get it without another call.
//! - Concurrent refreshes of one refresh token make one call (moka's `try_get_with`), in its
//!   own task so a caller that goes away never cuts it short.
//! - The introspection cache is seeded with the new token only with what is known for sure:
//!   its scope and expiry from the token endpoint, its client (ours), and its user only when
//!   the old token was itself minted here from the same refresh token (same grant). Otherwise
//!   the new token is introspected on first use.
//! - A rejected refresh token (re-authentication) drops every cached entry of the old access
//!   token, the refresh token and the access token last minted from it.
//! - The OAuth server's back-off windows are checked before every call and told every answer.
//! - With `[redis]`, the single flight and the grace period are the fleet's (see `flight`).

mod answer;
mod call;
mod flight;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_lc_rs::{hmac, rand};
use http::header::{HeaderMap, HeaderName};
use moka::future::Cache;
use moka::ops::compute::Op;
use tracing::Instrument as _;

pub use answer::{NewToken, TokenAnswer, judge};
use call::TokenCall;

use super::introspect::{Introspector, SharedStr, TokenInfo};
use super::revocation::Revocations;
use super::ttl::{Ttl, TtlExpiry};
use crate::backoff::BackoffGate;
use crate::clock::SharedClock;
use crate::config::RefreshSettings;
use crate::errno::GatewayError;
use crate::shared::Store;
use crate::upstream::Upstream;

/// The caller's refresh token. Never forwarded (hygiene strips every `X-FxA-*` header), never
/// logged.
pub const REFRESH_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-fxa-refresh-token");
/// The new access token, in the answer to a request that was refreshed.
pub const ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-fxa-access-token");
/// Whole seconds the new access token has left.
pub const EXPIRES_IN_HEADER: HeaderName = HeaderName::from_static("x-fxa-access-token-expires-in");
/// What the gateway did: `refreshed` (sent with the new token), `replayed` (sent again with
/// it after a 401), `not-replayed` (the 401 is returned: the body could not be replayed).
pub const REFRESH_HEADER: HeaderName = HeaderName::from_static("x-fxa-refresh");

/// FxA refresh tokens are 32 random bytes as 64 hex characters (`fxa-reference.md` §1.3).
const REFRESH_TOKEN_LEN: usize = 64;

/// The refresh token a caller sent, for a route that refreshes (`wanted`): refused (400) on a
/// listener that does not accept refresh tokens whatever the route, and when it is not one
/// FxA refresh token. Elsewhere the header is only dropped.
pub fn caller_refresh_token(
    headers: &HeaderMap,
    accepted_here: bool,
    wanted: bool,
) -> Result<Option<String>, GatewayError> {
    if accepted_here && !wanted {
        // Not used here, and hygiene strips it: no need to look.
        return Ok(None);
    }
    let mut values = headers.get_all(REFRESH_TOKEN_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if !accepted_here {
        return Err(GatewayError::RefreshTokenNotAccepted);
    }
    let bytes = value.as_bytes();
    if values.next().is_some()
        || bytes.len() != REFRESH_TOKEN_LEN
        || !bytes.iter().all(u8::is_ascii_hexdigit)
    {
        return Err(GatewayError::RefreshTokenMalformed);
    }
    // FxA issues lowercase hex; its validator takes either case.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// HMAC of a token: what the refresh state is keyed by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The result of one refresh, shared by every request it serves. Holds a live access token:
/// `Debug` does not show it.
pub struct Grant {
    /// The access token this refresh replaced (the one the first caller held).
    old: TokenKey,
    /// The `scope` asked for (a route's narrowing), if any.
    asked_scope: Option<String>,
    access_token: String,
    /// Space-separated, as the token endpoint granted it.
    granted_scope: String,
    /// On the gateway's clock.
    pub expires_at: SystemTime,
    /// Reuse ends here (grace period, never past `expires_at`), on the gateway's clock.
    reuse_until: SystemTime,
    /// The same span for moka's eviction.
    ttl: Duration,
    /// Every id the old token's user was known by (its `sub`, the grant's user): a security
    /// event about one of them drops the grant.
    users: Vec<String>,
    /// When the token endpoint was asked (gateway clock): the new token was minted no earlier,
    /// so a security event recorded after this may cover it (a refresh that started before the
    /// event and finished after it).
    asked_at: SystemTime,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Grant {
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// Whole seconds the new token has left at `now` (what `X-FxA-Access-Token-Expires-In`
    /// says), at least 0.
    pub fn expires_in(&self, now: SystemTime) -> u64 {
        self.expires_at
            .duration_since(now)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn reusable_for(&self, old: TokenKey, scope: Option<&str>, now: SystemTime) -> bool {
        self.old == old && self.asked_scope.as_deref() == scope && now < self.reuse_until
    }

    /// Whether a security event recorded after the token endpoint was asked covers the new
    /// token (minted after `asked_at`, possibly before the change): not served from memory.
    fn revoked_by(&self, revocations: &dyn Revocations, now: SystemTime) -> bool {
        self.users.iter().any(|uid| {
            revocations
                .get(uid, now)
                .is_some_and(|r| r.invalidates(Some(self.asked_at), self.asked_at))
        })
    }
}

/// Who minted an access token here: the refresh token it came from, and its user when known
/// for sure (from an introspection of a token of the same grant).
#[derive(Clone)]
struct Lineage {
    refresh: TokenKey,
    sub: Option<String>,
    ttl: Duration,
}

/// Why a refresh gave no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The refresh token is dead: the user must sign in again.
    #[error("refresh token rejected")]
    Reauth,
    /// The OAuth server is down, failing, slow or backed off (whole seconds to wait if known).
    #[error("OAuth server unavailable for refresh")]
    Unavailable { retry_after: Option<u64> },
    /// The OAuth server refused the gateway's own request.
    #[error("refresh request refused (status {status}, errno {errno:?})")]
    Misconfigured { status: u16, errno: Option<u16> },
}

/// Whether this request made the token endpoint call or used another's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Called,
    Reused,
}

impl From<Source> for &'static str {
    /// The metrics label of a successful refresh.
    fn from(source: Source) -> &'static str {
        match source {
            Source::Called => "refreshed",
            Source::Reused => "reused",
        }
    }
}

/// What a refresh needs to know about the request's current access token.
pub struct OldToken<'a> {
    pub token: &'a str,
    /// Its introspection answer when one was made (bearer routes).
    pub info: Option<&'a TokenInfo>,
}

/// The refresh state for one OAuth client. Build one at start-up and share it.
pub struct Refresher {
    key: hmac::Key,
    grants: Cache<TokenKey, Arc<Grant>>,
    lineage: Cache<TokenKey, Lineage>,
    call: Arc<TokenCall>,
    skew: Duration,
    max_replay_body: u64,
    store: Option<Arc<Store>>,
}

impl Ttl for Grant {
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Ttl for Lineage {
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

// === impl Refresher ===

impl Refresher {
    /// Call at start-up: draws the HMAC key from the system RNG.
    pub fn new(
        settings: &RefreshSettings,
        upstream: Arc<Upstream>,
        gate: Arc<BackoffGate>,
        clock: SharedClock,
        introspector: Option<Arc<Introspector>>,
    ) -> Refresher {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret).expect("the system RNG is available at startup");
        Refresher {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            grants: Cache::builder()
                .name("refresh-grants")
                .max_capacity(settings.cache_size)
                .expire_after(TtlExpiry)
                .support_invalidation_closures()
                .build(),
            lineage: Cache::builder()
                .name("refresh-lineage")
                .max_capacity(settings.cache_size)
                .expire_after(TtlExpiry)
                .support_invalidation_closures()
                .build(),
            call: Arc::new(TokenCall {
                upstream,
                upstream_index: settings.oauth_upstream,
                endpoint: settings.token_endpoint,
                client_id: settings.client_id.clone(),
                client_secret: settings.client_secret.clone(),
                gate,
                clock,
                grace: settings.grace,
                introspector,
            }),
            skew: settings.skew,
            max_replay_body: settings.max_replay_body,
            store: None,
        }
    }

    /// The refresher for a reloaded configuration that keeps `old`'s grants and token
    /// lineages (and their key): only for the same OAuth client at the same token endpoint of
    /// the same server, with the same cache size and grace period.
    pub fn carry_over(
        old: &Refresher,
        settings: &RefreshSettings,
        upstream: Arc<Upstream>,
        gate: Arc<BackoffGate>,
        clock: SharedClock,
        introspector: Option<Arc<Introspector>>,
    ) -> Refresher {
        let fresh = Refresher::new(settings, upstream, gate, clock, introspector);
        Refresher {
            key: old.key.clone(),
            grants: old.grants.clone(),
            lineage: old.lineage.clone(),
            ..fresh
        }
    }

    /// Refreshes once per refresh token across the fleet, through `store`.
    pub fn with_store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Refresh proactively when the token expires within this.
    pub fn skew(&self) -> Duration {
        self.skew
    }

    /// Request bodies up to this size are buffered for a replay.
    pub fn max_replay_body(&self) -> u64 {
        self.max_replay_body
    }

    /// A new access token for `refresh_token`, replacing `old`: from a grant made within the
    /// grace period for the same old token and scope, from a refresh already under way for
    /// this refresh token, or from a new call.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        old: OldToken<'_>,
        scope: Option<&str>,
    ) -> (Result<Arc<Grant>, RefreshError>, Source) {
        let refresh_key = self.key_of(refresh_token);
        let old_key = self.key_of(old.token);
        let now = self.call.clock.now();
        if let Some(grant) = self.grants.get(&refresh_key).await {
            let revoked = self
                .revocations()
                .is_some_and(|r| grant.revoked_by(r.as_ref(), now));
            if grant.reusable_for(old_key, scope, now) && !revoked {
                return (Ok(grant), Source::Reused);
            }
            self.forget_grant_if_same(refresh_key, &grant).await;
        }
        let known_sub = self.known_user(old_key, refresh_key, old.info).await;
        let users: Vec<String> = old
            .info
            .and_then(|i| i.sub.as_deref().map(str::to_owned))
            .into_iter()
            .chain(known_sub.clone())
            .collect();
        let called = Arc::new(AtomicBool::new(false));
        let fleet = self.store.as_ref().map(|store| {
            let ids = flight::FleetIds {
                refresh: store.hash("refresh-token", refresh_token.as_bytes()),
                old: store.hash("access-token", old.token.as_bytes()),
            };
            (store.clone(), ids)
        });
        let init = {
            let call = Arc::clone(&self.call);
            let refresh_token = refresh_token.to_owned();
            let scope = scope.map(str::to_owned);
            let called = Arc::clone(&called);
            async move {
                let span = tracing::debug_span!("refresh", upstream = %call.upstream.name);
                let work = async move {
                    match fleet {
                        Some((store, ids)) => {
                            flight::refresh(
                                store,
                                call,
                                refresh_token,
                                old_key,
                                ids,
                                flight::Ask { scope, users },
                                called,
                            )
                            .await
                        }
                        None => {
                            called.store(true, Ordering::Relaxed);
                            call.exchange(refresh_token, old_key, scope, users).await
                        }
                    }
                };
                tokio::spawn(work.instrument(span))
                    .await
                    .unwrap_or(Err(RefreshError::Unavailable { retry_after: None }))
            }
        };
        let result = self
            .grants
            .try_get_with(refresh_key, init)
            .await
            .map_err(|e| *e);
        let source = if called.load(Ordering::Relaxed) {
            Source::Called
        } else {
            Source::Reused
        };
        match &result {
            Ok(grant) if source == Source::Called => {
                self.record_lineage(grant, refresh_key, known_sub).await;
            }
            Err(RefreshError::Reauth) => {
                self.forget(refresh_token, old.token).await;
            }
            _ => {}
        }
        (result, source)
    }

    /// The user of the new token's grant, when the introspection of `token` (minted here)
    /// tells it: lets the next refresh of the same grant seed the cache with it.
    pub async fn learn_user(&self, token: &str, sub: &str) {
        let key = self.key_of(token);
        if let Some(mut lineage) = self.lineage.get(&key).await
            && lineage.sub.is_none()
        {
            lineage.sub = Some(sub.to_owned());
            self.lineage.insert(key, lineage).await;
        }
    }

    /// Drops everything cached about a dead refresh token and the access token it was sent
    /// with: the grant (and the introspection of the token it minted), lineage, and both
    /// tokens' introspection entries.
    pub async fn forget(&self, refresh_token: &str, access_token: &str) {
        let refresh_key = self.key_of(refresh_token);
        if let Some(grant) = self.grants.remove(&refresh_key).await {
            self.lineage
                .invalidate(&self.key_of(&grant.access_token))
                .await;
            if let Some(introspector) = &self.call.introspector {
                introspector.invalidate(&grant.access_token).await;
            }
        }
        self.lineage.invalidate(&self.key_of(access_token)).await;
        if let Some(introspector) = &self.call.introspector {
            introspector.invalidate(access_token).await;
            introspector.invalidate(refresh_token).await;
        }
    }

    /// Drops every grant (the grace period) and lineage of `uid` (a security event): the next
    /// refresh asks the OAuth server.
    pub fn invalidate_user(&self, uid: &str) {
        let user = uid.to_owned();
        let grants = self
            .grants
            .invalidate_entries_if(move |_, g| g.users.contains(&user));
        let user = uid.to_owned();
        let lineage = self
            .lineage
            .invalidate_entries_if(move |_, l| l.sub.as_deref() == Some(user.as_str()));
        if let Err(e) = grants.and(lineage) {
            tracing::warn!(error = %e, "could not drop the user's refresh state");
        }
    }

    /// The revocations security events recorded (through the introspector that judges by
    /// them).
    fn revocations(&self) -> Option<&Arc<dyn Revocations>> {
        self.call.introspector.as_ref()?.revocations()
    }

    fn key_of(&self, token: &str) -> TokenKey {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(hmac::sign(&self.key, token.as_bytes()).as_ref());
        TokenKey(digest)
    }

    /// The old token's user, if the old token was minted here from this refresh token (so
    /// the new one belongs to the same user). A token from anywhere else proves nothing: the
    /// caller could pair one user's access token with another's refresh token.
    async fn known_user(
        &self,
        old: TokenKey,
        refresh: TokenKey,
        info: Option<&TokenInfo>,
    ) -> Option<String> {
        let lineage = self.lineage.get(&old).await?;
        if lineage.refresh != refresh {
            return None;
        }
        info.filter(|i| i.active)
            .and_then(|i| i.sub.as_deref().map(str::to_owned))
            .or(lineage.sub)
    }

    /// Notes where the new token came from, and seeds the introspection cache when its user
    /// is known for sure.
    async fn record_lineage(&self, grant: &Grant, refresh: TokenKey, sub: Option<String>) {
        let now = self.call.clock.now();
        let lifetime = grant.expires_at.duration_since(now).unwrap_or_default();
        if lifetime.is_zero() {
            return;
        }
        if let (Some(sub), Some(introspector)) = (&sub, &self.call.introspector) {
            // Issued no earlier than the call: a security event recorded since it began
            // covers the seed as it would FxA's own answer asked for then.
            let info = TokenInfo {
                active: true,
                sub: Some(SharedStr::interned(sub)),
                client_id: Some(SharedStr::interned(&self.call.client_id)),
                scope: SharedStr::interned(&grant.granted_scope),
                token_type: Some(SharedStr::interned("access_token")),
                exp: Some(grant.expires_at),
                iat: Some(grant.asked_at),
            };
            introspector
                .seed_asked_at(&grant.access_token, info, grant.asked_at)
                .await;
        }
        let lineage = Lineage {
            refresh,
            sub,
            ttl: lifetime,
        };
        self.lineage
            .insert(self.key_of(&grant.access_token), lineage)
            .await;
    }

    /// Removes a grant that cannot be reused, unless another caller already replaced it.
    async fn forget_grant_if_same(&self, key: TokenKey, seen: &Arc<Grant>) {
        self.grants
            .entry(key)
            .and_compute_with(|current| {
                let same = current.is_some_and(|entry| Arc::ptr_eq(entry.value(), seen));
                std::future::ready(if same { Op::Remove } else { Op::Nop })
            })
            .await;
    }
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("upstream", &self.call.upstream.name)
            .field("client_id", &self.call.client_id)
            .finish_non_exhaustive()
    }
}

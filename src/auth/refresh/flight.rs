//! One `/v1/token` call per refresh token across the fleet (`[redis]`). The replica that takes
//! the lease (one `SET NX PX` in a script, as long as the token call may take) makes the call
//! and leaves the result: the new access token sealed with AES-256-GCM under the shared key,
//! kept for the grace period, or a re-authentication mark. The others wait for it (polling, at
//! most the token call's timeout) and hand out the same token. Every key is a keyed hash of
//! the refresh token; the old access token is checked by its keyed hash inside the sealed value.
//!
//! Redis down: this replica refreshes on its own (`on_redis_down.refresh = "local"`, the
//! default: at worst one call per replica, as without Redis) or answers 503 errno 104.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::call::TokenCall;
use super::{Grant, RefreshError, TokenKey};
use crate::config::DownPolicy;
use crate::shared::{Kind, RefreshClaim, Store};

/// How often a waiting replica looks for the leader's result.
const POLL: Duration = Duration::from_millis(20);

/// What one refresh is known by in Redis: keyed hashes, never the tokens.
pub(super) struct FleetIds {
    /// The refresh token's.
    pub(super) refresh: String,
    /// The old access token's.
    pub(super) old: String,
}

/// The sealed value. Holds a live access token: no `Debug`.
#[derive(Serialize, Deserialize)]
struct Shared {
    /// Keyed hash of the access token this refresh replaced.
    o: String,
    /// The scope asked for.
    a: Option<String>,
    /// The new access token.
    t: String,
    /// Its granted scope.
    s: String,
}

/// What one request asks of a refresh: the route's narrowed `scope`, and every id the old
/// token's user is known by (a security event about one of them drops the grant).
pub(super) struct Ask {
    pub scope: Option<String>,
    pub users: Vec<String>,
}

/// One refresh as the fleet makes it. `called` is set when this replica makes the call.
pub(super) async fn refresh(
    store: Arc<Store>,
    call: Arc<TokenCall>,
    refresh_token: String,
    old: TokenKey,
    ids: FleetIds,
    ask: Ask,
    called: Arc<AtomicBool>,
) -> Result<Arc<Grant>, RefreshError> {
    let Ask { scope, users } = ask;
    // A waiter waits at most as long as the token call may take; the leader's lease covers
    // its call with a second to spare (then another replica may lead).
    let call_timeout = call.upstream.response_timeout();
    let lease_ms = millis(call_timeout + Duration::from_secs(1));
    let deadline = Instant::now() + call_timeout;
    let mut skip_grant = false;
    loop {
        match store
            .refresh_claim(&ids.refresh, lease_ms, skip_grant)
            .await
        {
            None if store.policy(Kind::Refresh) == DownPolicy::Refuse => {
                return Err(RefreshError::Unavailable {
                    retry_after: Some(store.retry_after_secs()),
                });
            }
            None => {
                called.store(true, Ordering::Relaxed);
                return call.exchange(refresh_token, old, scope, users).await;
            }
            Some(RefreshClaim::Grant {
                sealed,
                expires_in_ms,
                reuse_ms,
            }) => match open(
                &store,
                &call,
                &ids,
                &sealed,
                old,
                scope.as_deref(),
                &users,
                expires_in_ms,
                reuse_ms,
            ) {
                Some(grant) => return Ok(Arc::new(grant)),
                // Made for another old token or scope: this one needs its own call.
                None => skip_grant = true,
            },
            Some(RefreshClaim::Reauth) => return Err(RefreshError::Reauth),
            Some(RefreshClaim::Lead) => {
                called.store(true, Ordering::Relaxed);
                let result = Arc::clone(&call)
                    .exchange(refresh_token, old, scope, users)
                    .await;
                leave(&store, &call, &ids, &result).await;
                return result;
            }
            Some(RefreshClaim::Wait { .. }) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(RefreshError::Unavailable { retry_after: None });
                }
                tokio::time::sleep(POLL.min(deadline - now)).await;
            }
        }
    }
}

/// The leader's result, for the others.
async fn leave(
    store: &Store,
    call: &TokenCall,
    ids: &FleetIds,
    result: &Result<Arc<Grant>, RefreshError>,
) {
    match result {
        Ok(grant) => {
            let now = call.clock.now();
            let expires_in = grant.expires_at.duration_since(now).unwrap_or_default();
            let value = Shared {
                o: ids.old.clone(),
                a: grant.asked_scope.clone(),
                t: grant.access_token.clone(),
                s: grant.granted_scope.clone(),
            };
            let sealed = serde_json::to_vec(&value)
                .ok()
                .and_then(|plain| store.seal(aad(ids).as_bytes(), &plain));
            match sealed {
                Some(sealed) => {
                    store
                        .refresh_grant(&ids.refresh, &sealed, millis(expires_in), millis(grant.ttl))
                        .await;
                }
                None => {
                    store.refresh_release(&ids.refresh).await;
                }
            }
        }
        Err(RefreshError::Reauth) => {
            store.refresh_reauth(&ids.refresh, millis(call.grace)).await;
        }
        Err(_) => {
            store.refresh_release(&ids.refresh).await;
        }
    }
}

/// Another replica's grant, if it is for this old token and scope.
#[allow(clippy::too_many_arguments)]
fn open(
    store: &Store,
    call: &TokenCall,
    ids: &FleetIds,
    sealed: &[u8],
    old: TokenKey,
    scope: Option<&str>,
    users: &[String],
    expires_in_ms: i64,
    reuse_ms: i64,
) -> Option<Grant> {
    let plain = store.open(aad(ids).as_bytes(), sealed)?;
    let value: Shared = serde_json::from_slice(&plain).ok()?;
    if value.o != ids.old || value.a.as_deref() != scope || reuse_ms <= 0 {
        return None;
    }
    let now = call.clock.now();
    let expires_in = Duration::from_millis(u64::try_from(expires_in_ms).ok()?);
    let reuse = Duration::from_millis(u64::try_from(reuse_ms).ok()?).min(expires_in);
    Some(Grant {
        old,
        asked_scope: value.a,
        access_token: value.t,
        granted_scope: value.s,
        expires_at: now.checked_add(expires_in)?,
        reuse_until: now.checked_add(reuse)?,
        ttl: reuse,
        users: users.to_vec(),
        // Another replica's call: minted at most the grace period ago.
        asked_at: now
            .checked_sub(call.grace.saturating_sub(reuse))
            .unwrap_or(now),
    })
}

/// Binds a sealed grant to its refresh token: moved under another key, it does not open.
fn aad(ids: &FleetIds) -> String {
    format!("refresh-grant:{}", ids.refresh)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

//! Where a bearer token's description comes from: local verification for FxA JWT access
//! tokens (when on and keys are held), introspection for everything else, and in both cases
//! the revocations security events recorded. Whatever the source, the answer is a
//! [`TokenInfo`], so scopes, presets, identity headers, quotas and refresh treat a verified
//! JWT exactly as an introspected token.
//!
//! Never answers 401 for an outage, and never accepts a token a revocation covers without
//! FxA's word.

use std::sync::Arc;

use super::introspect::{IntrospectError, Introspector, TokenInfo, epoch_time};
use super::jose;
use super::jwt_access::{LocalVerifier, Refusal, SHORT_LIVED, Verdict, Verified};
use super::revocation::Revocations;
use crate::clock::SharedClock;
use crate::errno::{BearerChallenge, GatewayError};

/// The token sources of one configuration.
pub struct TokenSource {
    introspector: Arc<Introspector>,
    jwt: Option<Arc<LocalVerifier>>,
    revocations: Arc<dyn Revocations>,
    clock: SharedClock,
}

impl TokenSource {
    pub fn new(
        introspector: Arc<Introspector>,
        jwt: Option<Arc<LocalVerifier>>,
        revocations: Arc<dyn Revocations>,
        clock: SharedClock,
    ) -> Self {
        TokenSource {
            introspector,
            jwt,
            revocations,
            clock,
        }
    }

    pub fn introspector(&self) -> &Arc<Introspector> {
        &self.introspector
    }

    /// The revocations security events recorded (kept across a reload).
    pub fn revocations(&self) -> &Arc<dyn Revocations> {
        &self.revocations
    }

    pub fn jwt(&self) -> Option<&Arc<LocalVerifier>> {
        self.jwt.as_ref()
    }

    /// What `token` is: an outage is 503 errno 104, a refusal by the OAuth server 401 errno
    /// 110. A JWT refused here reads as FxA's introspection reads it, `active: false`, so the
    /// route answers 401 or, with a refresh token at hand, refreshes.
    pub async fn describe(&self, token: &str) -> Result<Arc<TokenInfo>, GatewayError> {
        if let Some(jwt) = &self.jwt
            && jose::looks_like_jwt(token)
        {
            match jwt.verify(token).await {
                Verdict::Verified(verified) => return self.verified(jwt, &verified, token).await,
                Verdict::Refused(refusal) => {
                    tracing::debug!(reason = refusal.label(), "JWT access token refused");
                    return Ok(TokenInfo::inactive_shared());
                }
                Verdict::NoKeys => return self.without_keys(token).await,
            }
        }
        self.introspect(token).await
    }

    /// The introspection answer, 401/503 mapped.
    pub async fn introspect(&self, token: &str) -> Result<Arc<TokenInfo>, GatewayError> {
        self.introspector
            .introspect(token)
            .await
            .map_err(unavailable)
    }

    /// A locally verified token: revoked at a recheck (401), covered by a revocation (FxA's
    /// word is needed: introspection), or accepted with a background recheck when one is due.
    async fn verified(
        &self,
        jwt: &LocalVerifier,
        verified: &Arc<Verified>,
        token: &str,
    ) -> Result<Arc<TokenInfo>, GatewayError> {
        if verified.is_revoked() {
            jwt.metrics()
                .verification(Refusal::RevokedAtRecheck.outcome());
            tracing::debug!(
                reason = Refusal::RevokedAtRecheck.label(),
                "JWT access token refused"
            );
            return Ok(TokenInfo::inactive_shared());
        }
        let now = self.clock.now();
        let covered = [
            verified.info.sub.as_deref().map(str::to_owned),
            verified.learnt_uid(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|uid| self.revocations.get(&uid, now))
        .any(|r| r.covers(verified.info.iat));
        if covered {
            // FxA's word: for a short-lived JWT (never stored) that is `active: false`.
            let info = self.introspect(token).await?;
            if !info.is_active_access_token() {
                jwt.invalidate(token).await;
            }
            return Ok(info);
        }
        jwt.recheck_if_due(verified, token, &self.introspector);
        Ok(Arc::clone(&verified.info))
    }

    /// A JWT while no keys are held: introspection, which speaks only for stored
    /// (long-lived) JWTs. A short-lived one it calls inactive is not judged: 503, not 401,
    /// unless its own (unverified) `exp` has passed.
    async fn without_keys(&self, token: &str) -> Result<Arc<TokenInfo>, GatewayError> {
        let info = self.introspect(token).await?;
        if info.active {
            return Ok(info);
        }
        let now = self.clock.now();
        let unjudged = jose::split(token).is_ok_and(|c| {
            let date = |n: &str| c.date_claim(n).and_then(|d| epoch_time(&d.into()));
            match (date("iat"), date("exp")) {
                (Some(iat), Some(exp)) => {
                    exp > now && exp.duration_since(iat).is_ok_and(|l| l <= SHORT_LIVED)
                }
                _ => false,
            }
        });
        if unjudged {
            tracing::warn!("JWT access token not judged: no JWK set held yet");
            return Err(GatewayError::IntrospectionUnavailable {
                retry_after: Some(1),
            });
        }
        Ok(info)
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("introspector", &self.introspector)
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

fn invalid() -> GatewayError {
    GatewayError::InvalidToken(BearerChallenge::InvalidToken)
}

fn unavailable(e: IntrospectError) -> GatewayError {
    match e {
        IntrospectError::Unavailable { retry_after } => {
            GatewayError::IntrospectionUnavailable { retry_after }
        }
        IntrospectError::Refused => invalid(),
    }
}

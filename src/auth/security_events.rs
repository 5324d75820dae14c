//! The `security-events` policy: a route fronting the RP's webhook for FxA's event broker,
//! which POSTs one Security Event Token (RFC 8417) per event in `Authorization: Bearer`
//! (`packages/fxa-event-broker/README.md`, `src/jwtset/jwtset.service.ts`).
//!
//! The broker signs SETs with the OAuth server's OpenID signing key (its `openid.keyFile`
//! defaults to the auth server's `config/secret-key.json`, the key `/v1/jwks` publishes), with
//! `alg` RS256 and that key's `kid`, no `typ` and no `exp`; `iss` is its `openid.issuer`
//! (`https://accounts.firefox.com/`, with the trailing slash), `aud` the RP's client id, `sub`
//! the account uid, `iat` = `Date.now() / 1000` (fractional), `jti` a fresh UUID per delivery
//! attempt. RPs are told to verify them with the keys behind the OpenID configuration's
//! `jwks_uri`, RS256 only (ecosystem-platform "Integration with FxA", Webhook Events).
//!
//! A SET passes only with every check; a refused one is 401 errno 110 and never reaches the
//! RP. A `jti` counts as delivered only once the RP answered 2xx (an error answer lets FxA's
//! retry through); copies arriving while one is being delivered wait for its outcome, so one
//! SET reaches the RP once. Remembered `jti`s are bounded in number ([`JtiLedger`]) and age
//! (a SET older than `max_age` is refused anyway, so its `jti` can be forgotten).

mod ledger;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use http::HeaderMap;
use serde_json::Value;

pub use ledger::{Claim, DeliveryTicket, JtiLedger, LocalJtiLedger, SharedJtiLedger};

use super::introspect::epoch_time;
use super::jose::{self, JoseError};
use super::jwks::Jwks;
use super::revocation::Revocation;
use super::scheme;
use crate::clock::SharedClock;

pub const PASSWORD_CHANGE: &str = "https://schemas.accounts.firefox.com/event/password-change";
pub const DELETE_USER: &str = "https://schemas.accounts.firefox.com/event/delete-user";
pub const PROFILE_CHANGE: &str = "https://schemas.accounts.firefox.com/event/profile-change";
pub const SUBSCRIPTION_STATE_CHANGE: &str =
    "https://schemas.accounts.firefox.com/event/subscription-state-change";
/// The event broker's issuer in production (with the trailing slash, unlike the OAuth server's).
pub const FXA_SET_ISSUER: &str = "https://accounts.firefox.com/";
const MAX_JTI_LEN: usize = 256;

/// Operator knobs (`[security_events]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSettings {
    /// The RP's OAuth client id: the SETs' `aud`.
    pub client_id: String,
    pub issuer: String,
    /// Clock skew allowed for `iat` in the future.
    pub leeway: Duration,
    /// Oldest `iat` accepted.
    pub max_age: Duration,
    /// Bound on remembered `jti`s.
    pub jti_capacity: usize,
    /// Profile changes also revoke the user's cached tokens (default: the RP acts on them).
    pub revoke_on_profile_change: bool,
    /// Subscription state changes also revoke them.
    pub revoke_on_subscription_change: bool,
}

/// Why a SET was refused. [`SetRejection::message`] is safe to send (401 errno 110).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetRejection {
    MissingToken,
    Malformed,
    Algorithm,
    Type,
    Critical,
    MissingKid,
    UnknownKid,
    Signature,
    Issuer,
    Audience,
    IssuedAt,
    IssuedInFuture,
    TooOld,
    Expired,
    Events,
    Subject,
    Jti,
    AlreadyDelivered,
}

/// Why a SET could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    Rejected(SetRejection),
    /// No JWK set held yet: the SET cannot be judged (503; FxA retries).
    NoKeys,
    /// Every remembered `jti` is still within its age: none can be forgotten (503).
    LedgerFull,
}

/// What a verified SET says, for the revocation it triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// The account uid (`sub`).
    pub uid: String,
    /// Event type URIs it carries.
    pub events: Vec<String>,
    /// What the gateway drops for `uid`, if anything.
    pub revocation: Option<Revocation>,
}

/// A verified SET and the right to deliver it.
#[derive(Debug)]
pub struct Accepted {
    pub event: SecurityEvent,
    pub ticket: DeliveryTicket,
}

/// Verifies SETs for one RP.
pub struct SetVerifier {
    settings: SetSettings,
    jwks: Arc<Jwks>,
    clock: SharedClock,
    ledger: Arc<dyn JtiLedger>,
}

// === impl SetRejection ===

impl SetRejection {
    pub fn message(self) -> &'static str {
        use SetRejection::*;
        match self {
            MissingToken => "Security event token not provided",
            Malformed => "Security event token is malformed",
            Algorithm => "Security event token alg must be RS256",
            Type => "Security event token typ is not accepted",
            Critical => "Security event token crit header parameters are not supported",
            MissingKid => "Security event token has no kid",
            UnknownKid => "Security event token kid is not a published FxA key",
            Signature => "Security event token signature is invalid",
            Issuer => "Security event token iss (issuer) is not FxA",
            Audience => "Security event token aud (audience) is not this client",
            IssuedAt => "Security event token iat (issued at time) is missing or not a number",
            IssuedInFuture => "Security event token iat (issued at time) is in the future",
            TooOld => "Security event token is too old",
            Expired => "Security event token has expired",
            Events => "Security event token events claim is missing or malformed",
            Subject => "Security event token sub (subject) is missing",
            Jti => "Security event token jti (JWT ID) is missing, empty or too long",
            AlreadyDelivered => "Security event token jti was already delivered",
        }
    }

    /// Stable label for logs, metrics and `X-FxA-Gateway-Error`.
    pub fn reason(self) -> &'static str {
        use SetRejection::*;
        match self {
            MissingToken => "set-missing",
            Malformed => "set-malformed",
            Algorithm => "set-alg",
            Type => "set-typ",
            Critical => "set-crit",
            MissingKid => "set-kid-missing",
            UnknownKid => "set-kid-unknown",
            Signature => "set-signature",
            Issuer => "set-iss",
            Audience => "set-aud",
            IssuedAt => "set-iat",
            IssuedInFuture => "set-iat-future",
            TooOld => "set-too-old",
            Expired => "set-expired",
            Events => "set-events",
            Subject => "set-sub",
            Jti => "set-jti",
            AlreadyDelivered => "set-replayed",
        }
    }
}

impl From<JoseError> for SetRejection {
    fn from(e: JoseError) -> Self {
        match e {
            JoseError::Malformed => SetRejection::Malformed,
            JoseError::Algorithm => SetRejection::Algorithm,
            JoseError::Critical => SetRejection::Critical,
            JoseError::MissingKid => SetRejection::MissingKid,
            JoseError::Signature => SetRejection::Signature,
        }
    }
}

// === impl SetVerifier ===

impl SetVerifier {
    /// The `jti`s delivered so far (kept across a reload).
    pub fn ledger(&self) -> &Arc<dyn JtiLedger> {
        &self.ledger
    }

    pub fn new(
        settings: SetSettings,
        jwks: Arc<Jwks>,
        clock: SharedClock,
        ledger: Arc<dyn JtiLedger>,
    ) -> Self {
        SetVerifier {
            settings,
            jwks,
            clock,
            ledger,
        }
    }

    /// Verifies the request's SET and claims its delivery.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<Accepted, SetError> {
        let reject = |r: SetRejection| SetError::Rejected(r);
        let token =
            scheme::bearer_token(headers).map_err(|_| reject(SetRejection::MissingToken))?;
        let compact = jose::split(token).map_err(|e| reject(e.into()))?;
        // RFC 8417 §2.3 explicit typing, or none (FxA's broker sets none); never an access
        // token's `at+jwt`.
        let typ = compact.typ.as_deref();
        if typ.is_some()
            && !["jwt", "secevent+jwt"]
                .iter()
                .any(|t| jose::typ_matches(typ, t))
        {
            return Err(reject(SetRejection::Type));
        }
        let kid = compact
            .kid
            .as_deref()
            .ok_or(reject(SetRejection::MissingKid))?;
        let Some(keys) = self.jwks.with_kid(kid).await else {
            return Err(match self.jwks.keys() {
                None => SetError::NoKeys,
                Some(_) => reject(SetRejection::UnknownKid),
            });
        };
        let key = keys.get(kid).ok_or(reject(SetRejection::UnknownKid))?;
        compact.verify(key).map_err(|e| reject(e.into()))?;

        // Authenticated from here on.
        let now = self.clock.now();
        let (event, until) = self.claims(&compact, now).map_err(reject)?;
        let jti = compact
            .str_claim("jti")
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or(reject(SetRejection::Jti))?;
        let key = jti_key(&self.settings.issuer, jti);
        loop {
            let now = self.clock.now();
            match Arc::clone(&self.ledger).claim(key, until, now).await {
                Claim::Mine(ticket) => return Ok(Accepted { event, ticket }),
                Claim::Delivered => return Err(reject(SetRejection::AlreadyDelivered)),
                Claim::Full => return Err(SetError::LedgerFull),
                // Another copy is being delivered: its outcome decides.
                Claim::InFlight(settled) => settled.await,
            }
        }
    }

    /// `iss`, `aud`, `iat`, `exp`, `events`, `sub`, and the revocation they mean; with the
    /// time until which the `jti` must be remembered.
    fn claims(
        &self,
        c: &jose::Compact<'_>,
        now: SystemTime,
    ) -> Result<(SecurityEvent, SystemTime), SetRejection> {
        use SetRejection::*;
        if c.str_claim("iss") != Some(self.settings.issuer.as_str()) {
            return Err(Issuer);
        }
        let audience = self.settings.client_id.as_str();
        let aud_ok = match c.claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(Audience);
        }
        let date = |name: &str| {
            c.claims
                .get(name)
                .filter(|v| v.is_number())
                .and_then(epoch_time)
        };
        let iat = date("iat").ok_or(IssuedAt)?;
        if iat > now.checked_add(self.settings.leeway).unwrap_or(now) {
            return Err(IssuedInFuture);
        }
        let oldest = now
            .checked_sub(self.settings.max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if iat < oldest {
            return Err(TooOld);
        }
        if c.claims.contains_key("exp") && date("exp").is_none_or(|exp| exp <= now) {
            return Err(Expired);
        }
        let events = c
            .claims
            .get("events")
            .and_then(Value::as_object)
            .ok_or(Events)?;
        if events.is_empty() || events.values().any(|v| !v.is_object()) {
            return Err(Events);
        }
        let uid = c
            .str_claim("sub")
            .filter(|s| !s.is_empty())
            .ok_or(Subject)?;
        let revocation = self.revocation(events, iat, now);
        let until = iat
            .checked_add(self.settings.max_age + self.settings.leeway)
            .unwrap_or(iat);
        let event = SecurityEvent {
            uid: uid.to_owned(),
            events: events.keys().cloned().collect(),
            revocation,
        };
        Ok((event, until))
    }

    /// What the events revoke: a password change, tokens issued before its `changeTime`
    /// (milliseconds; its absence, before the SET); a deletion, every token; profile and
    /// subscription changes, tokens issued before the SET when configured.
    fn revocation(
        &self,
        events: &serde_json::Map<String, Value>,
        iat: SystemTime,
        now: SystemTime,
    ) -> Option<Revocation> {
        let mut cut: Option<Option<SystemTime>> = None;
        let mut widen = |not_before: Option<SystemTime>| {
            cut = Some(match (cut, not_before) {
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.max(b)),
                (None, b) => b,
            });
        };
        for (kind, payload) in events {
            match kind.as_str() {
                DELETE_USER => widen(None),
                PASSWORD_CHANGE => {
                    let change = payload.get("changeTime").and_then(epoch_time);
                    widen(Some(change.unwrap_or(iat)));
                }
                PROFILE_CHANGE if self.settings.revoke_on_profile_change => widen(Some(iat)),
                SUBSCRIPTION_STATE_CHANGE if self.settings.revoke_on_subscription_change => {
                    widen(Some(iat))
                }
                _ => {}
            }
        }
        cut.map(|not_before| Revocation {
            not_before,
            recorded_at: now,
        })
    }
}

impl std::fmt::Debug for SetVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of (issuer, jti): every ledger entry costs the same whatever the `jti`.
fn jti_key(issuer: &str, jti: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(issuer.as_bytes());
    ctx.update(&[0]);
    ctx.update(jti.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

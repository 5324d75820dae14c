//! AMO (addons.mozilla.org) API-key JWTs: minting them for `amo-jwt` routes and verifying them
//! for `amo-jwt-verify` routes (reference §6.1).
//!
//! Minting builds `Authorization: JWT <token>`, an HS256 JWT signed with the account's API
//! secret: `iss` = API key, `jti` = 128 bits from the CSPRNG, and `iat`/`exp` from ONE clock read
//! so `exp - iat` is exactly the configured lifetime (two reads are how clients end up at 301 s
//! and get refused). A token is never reused.
//!
//! Verifying is stricter than AMO: HS256 only (no `none`, no RS*, no alg confusion), constant-time
//! HMAC comparison, numeric `iat`/`exp`, `exp - iat` ≤ 300 s, a leeway for clock skew, `orig_iat`
//! refused, and `jti` accepted once per issuer until the token expires (a per-process replay
//! cache; AMO itself does not enforce `jti`).
//!
//! Both sides are hand-rolled on aws-lc-rs `hmac` and strict base64url, so no JWT library decides
//! the algorithm; the tests check them against jsonwebtoken. Never logs, echoes or `Debug`-prints
//! a token or a secret: rejections carry only which check failed.

mod replay;
mod verify;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde::Serialize;

use crate::clock::Clock;
use crate::config::Secret;

pub use replay::{DEFAULT_REPLAY_CAPACITY, ReplayCache};
pub use verify::{
    AmoVerifier, AmoVerifierConfig, IssuerConfig, JwtRejection, MAX_AUTHORIZATION_LEN, MAX_JTI_LEN,
    VerifiedIssuer,
};

/// AMO's `MAX_APIKEY_JWT_AUTH_TOKEN_LIFETIME`: the longest `exp - iat` it accepts.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Token lifetime when the config does not say.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// AMO's `JWT_LEEWAY`, used for both `iat` and `exp`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// base64url of `{"alg":"HS256","typ":"JWT"}`, the only header we mint.
const HS256_HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
/// 128 random bits; a UUIDv4 would carry only 122.
const JTI_BYTES: usize = 16;

/// Errors building a credential or verifier, or minting. Messages name settings, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("AMO JWT lifetime must be a whole number of seconds from 1 to 300")]
    InvalidLifetime,
    #[error("AMO JWT leeway must be a whole number of seconds up to 60")]
    InvalidLeeway,
    #[error("AMO API key (iss) must not be empty")]
    EmptyKey,
    #[error("AMO API secret must not be empty")]
    EmptySecret,
    #[error("AMO JWT issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    #[error("AMO JWT verifier needs at least one issuer")]
    NoIssuers,
    #[error("AMO JWT replay cache capacity must be at least 1")]
    ZeroReplayCapacity,
    #[error("clock plus offset is outside the range of a JWT NumericDate")]
    ClockOutOfRange,
    #[error("the system random number generator failed")]
    Random,
    #[error("minted JWT could not be encoded")]
    Encoding,
}

/// One AMO account's signing credential. `Debug` shows the API key only.
pub struct AmoCredential {
    /// The API key, sent as `iss`.
    key: String,
    /// The API secret, prepared once as an HMAC-SHA256 key.
    signing_key: hmac::Key,
    /// `exp - iat`, whole seconds in 1..=300.
    lifetime_secs: u64,
    /// Added to the clock reading, for a host whose clock is known to be off.
    clock_offset: i64,
}

/// A freshly minted JWT. `Debug` is redacted; send it with [`MintedJwt::header_value`].
pub struct MintedJwt {
    token: String,
    header: HeaderValue,
    issued_at: u64,
    expires_at: u64,
}

#[derive(Serialize)]
struct MintClaims<'a> {
    iss: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
}

// === impl AmoCredential ===

impl AmoCredential {
    /// `lifetime` must be whole seconds in 1..=300; `clock_offset` is in seconds.
    pub fn new(
        key: impl Into<String>,
        secret: &Secret,
        lifetime: Duration,
        clock_offset: i64,
    ) -> Result<Self, JwtError> {
        let key = key.into();
        if key.is_empty() {
            return Err(JwtError::EmptyKey);
        }
        if secret.expose().is_empty() {
            return Err(JwtError::EmptySecret);
        }
        let lifetime_secs = whole_seconds(lifetime, MAX_LIFETIME)
            .filter(|s| *s > 0)
            .ok_or(JwtError::InvalidLifetime)?;
        Ok(AmoCredential {
            key,
            signing_key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose()),
            lifetime_secs,
            clock_offset,
        })
    }

    /// The API key (`iss`).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.lifetime_secs)
    }

    /// Mints a new token with `iat = now + offset` and `exp = iat + lifetime`, both from the
    /// single reading `now`.
    pub fn mint(&self, now: SystemTime) -> Result<MintedJwt, JwtError> {
        let iat = unix_seconds_signed(now)
            .checked_add(self.clock_offset)
            .and_then(|s| u64::try_from(s).ok())
            .ok_or(JwtError::ClockOutOfRange)?;
        let exp = iat
            .checked_add(self.lifetime_secs)
            .filter(|s| *s < (1 << 53)) // stays exact for verifiers that parse f64
            .ok_or(JwtError::ClockOutOfRange)?;

        let mut nonce = [0u8; JTI_BYTES];
        rand::fill(&mut nonce).map_err(|_| JwtError::Random)?;
        let jti = URL_SAFE_NO_PAD.encode(nonce);

        let claims = MintClaims {
            iss: &self.key,
            jti: &jti,
            iat,
            exp,
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| JwtError::Encoding)?;

        let mut value =
            String::with_capacity(4 + HS256_HEADER_B64.len() + payload.len() * 4 / 3 + 48);
        value.push_str("JWT ");
        value.push_str(HS256_HEADER_B64);
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut value);
        let tag = hmac::sign(&self.signing_key, &value.as_bytes()[4..]);
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut value);

        let token = value[4..].to_owned();
        let mut header = HeaderValue::try_from(value).map_err(|_| JwtError::Encoding)?;
        header.set_sensitive(true);
        Ok(MintedJwt {
            token,
            header,
            issued_at: iat,
            expires_at: exp,
        })
    }

    /// Mints with one reading of `clock`.
    pub fn mint_now(&self, clock: &dyn Clock) -> Result<MintedJwt, JwtError> {
        self.mint(clock.now())
    }
}

impl std::fmt::Debug for AmoCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmoCredential")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("lifetime_secs", &self.lifetime_secs)
            .field("clock_offset", &self.clock_offset)
            .finish()
    }
}

// === impl MintedJwt ===

impl MintedJwt {
    /// `JWT <token>`, marked sensitive so HTTP/2 HPACK never indexes it.
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// The bare token. Only for sending or tests; never log it.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// `iat`, Unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// `exp`, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl std::fmt::Debug for MintedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MintedJwt(<redacted>, iat={}, exp={})",
            self.issued_at, self.expires_at
        )
    }
}

// === time helpers ===

/// Whole seconds in `d`, if it has no fractional part and is at most `max`.
fn whole_seconds(d: Duration, max: Duration) -> Option<u64> {
    (d.subsec_nanos() == 0 && d <= max).then_some(d.as_secs())
}

/// Unix seconds, negative before the epoch (floored), saturating far outside i64.
fn unix_seconds_signed(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                secs.saturating_neg().saturating_sub(1)
            } else {
                secs.saturating_neg()
            }
        }
    }
}

//! Verifying `Authorization: JWT <token>` for `amo-jwt-verify` routes.
//!
//! Order matters: everything read before the signature check (header shape, `alg`, `iss`) only
//! selects the key; no claim is trusted until the HMAC matched. Size is bounded before any
//! decoding. A rejection names the failed check and never carries token bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::replay::{DEFAULT_REPLAY_CAPACITY, ReplayCache};
use super::{DEFAULT_LEEWAY, JwtError, MAX_LIFETIME, unix_seconds_signed, whole_seconds};
use crate::config::Secret;

/// Longest `Authorization` value looked at; longer ones are refused before decoding.
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;
/// Longest `jti` accepted (bytes of its JSON string).
pub const MAX_JTI_LEN: usize = 256;
const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// One issuer whose tokens a route accepts.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The API key that appears as `iss`.
    pub key: String,
    pub secret: Secret,
    /// Refuse tokens without `jti` (default). Turning it off accepts web-ext style tokens, and
    /// with them replays until `exp`.
    pub require_jti: bool,
}

/// Verifier settings; `Default` gives AMO's rules (5 s leeway, 300 s max lifetime).
#[derive(Debug, Clone)]
pub struct AmoVerifierConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Allowed clock skew for `iat` and `exp`, whole seconds up to 60.
    pub leeway: Duration,
    /// Longest `exp - iat` accepted, whole seconds in 1..=300.
    pub max_lifetime: Duration,
    /// Bound on remembered `jti`s.
    pub replay_capacity: u64,
}

/// Verifies AMO-style JWTs for a fixed set of issuers. `Debug` lists issuer keys only.
pub struct AmoVerifier {
    issuers: HashMap<Box<str>, Issuer>,
    leeway: i64,
    max_lifetime: f64,
    replays: ReplayCache,
}

struct Issuer {
    key: Arc<str>,
    hmac_key: hmac::Key,
    require_jti: bool,
}

/// Who signed a token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIssuer {
    key: Arc<str>,
}

/// Why a token was refused. Each variant is one check; [`JwtRejection::message`] is safe to
/// send to the client (errno 110, 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRejection {
    MissingHeader,
    InvalidHeader,
    TooLarge,
    Malformed,
    UnsupportedAlgorithm,
    UnsupportedType,
    CriticalHeader,
    MissingIssuer,
    UnknownIssuer,
    BadSignature,
    MissingIssuedAt,
    MissingExpiry,
    WrongClaimType,
    Refreshable,
    NonPositiveLifetime,
    LifetimeTooLong,
    IssuedInFuture,
    Expired,
    MissingJti,
    InvalidJti,
    Replayed,
    /// The fleet's replay cache (Redis) cannot be asked and `on_redis_down.amo_replay` is
    /// `"refuse"`: answered 503, not 401 (the token may be fine).
    ReplayUnverifiable,
}

/// JOSE header fields we look at; duplicates of these make serde fail (no parser differential).
#[derive(Deserialize)]
struct JoseHeader {
    alg: Option<Value>,
    typ: Option<Value>,
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<Value>,
    iat: Option<Value>,
    exp: Option<Value>,
    jti: Option<Value>,
    orig_iat: Option<IgnoredAny>,
}

/// A token that passed every check except replay.
struct Checked<'v> {
    issuer: &'v Issuer,
    jti: Option<String>,
    /// Unix seconds after which the token is refused as expired anyway.
    remember_until: i64,
}

// === impl AmoVerifierConfig / IssuerConfig ===

impl Default for AmoVerifierConfig {
    fn default() -> Self {
        AmoVerifierConfig {
            issuers: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            max_lifetime: MAX_LIFETIME,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
        }
    }
}

impl IssuerConfig {
    /// An issuer whose tokens must carry a `jti`.
    pub fn new(key: impl Into<String>, secret: Secret) -> Self {
        IssuerConfig {
            key: key.into(),
            secret,
            require_jti: true,
        }
    }
}

// === impl AmoVerifier ===

impl AmoVerifier {
    pub fn new(config: AmoVerifierConfig) -> Result<Self, JwtError> {
        if config.replay_capacity == 0 {
            return Err(JwtError::ZeroReplayCapacity);
        }
        let replays = ReplayCache::new(config.replay_capacity);
        Self::with_replay_cache(config, replays)
    }

    /// Like [`AmoVerifier::new`], sharing `replays` (e.g. with the verifier a reload replaces,
    /// so tokens seen before the reload still count as used).
    pub fn with_replay_cache(
        config: AmoVerifierConfig,
        replays: ReplayCache,
    ) -> Result<Self, JwtError> {
        let leeway = whole_seconds(config.leeway, MAX_LEEWAY).ok_or(JwtError::InvalidLeeway)?;
        let max_lifetime = whole_seconds(config.max_lifetime, MAX_LIFETIME)
            .filter(|s| *s > 0)
            .ok_or(JwtError::InvalidLifetime)?;
        if config.issuers.is_empty() {
            return Err(JwtError::NoIssuers);
        }
        let mut issuers = HashMap::with_capacity(config.issuers.len());
        for issuer in config.issuers {
            if issuer.key.is_empty() {
                return Err(JwtError::EmptyKey);
            }
            if issuer.secret.expose().is_empty() {
                return Err(JwtError::EmptySecret);
            }
            let entry = Issuer {
                key: Arc::from(issuer.key.as_str()),
                hmac_key: hmac::Key::new(hmac::HMAC_SHA256, issuer.secret.expose()),
                require_jti: issuer.require_jti,
            };
            if issuers
                .insert(issuer.key.clone().into_boxed_str(), entry)
                .is_some()
            {
                return Err(JwtError::DuplicateIssuer(issuer.key));
            }
        }
        Ok(AmoVerifier {
            issuers,
            leeway: leeway as i64,
            max_lifetime: max_lifetime as f64,
            replays,
        })
    }

    /// The replay cache, to share across reloads or read its size.
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replays
    }

    /// Verifies one `Authorization` value (`JWT <token>`) at time `now`, and records its `jti`.
    pub async fn verify(
        &self,
        authorization: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedIssuer, JwtRejection> {
        let checked = self.check(authorization, now)?;
        if let Some(jti) = &checked.jti {
            let first = self
                .replays
                .first_use(
                    &checked.issuer.key,
                    jti.as_bytes(),
                    checked.remember_until,
                    now,
                )
                .await;
            match first {
                Some(true) => {}
                Some(false) => return Err(JwtRejection::Replayed),
                None => return Err(JwtRejection::ReplayUnverifiable),
            }
        }
        Ok(VerifiedIssuer {
            key: checked.issuer.key.clone(),
        })
    }

    /// Verifies the request's `Authorization` header: exactly one must be present.
    pub async fn verify_headers(
        &self,
        headers: &http::HeaderMap,
        now: SystemTime,
    ) -> Result<VerifiedIssuer, JwtRejection> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => self.verify(value.as_bytes(), now).await,
            (None, _) => Err(JwtRejection::MissingHeader),
            (Some(_), Some(_)) => Err(JwtRejection::InvalidHeader),
        }
    }

    /// Every check but replay.
    fn check(&self, authorization: &[u8], now: SystemTime) -> Result<Checked<'_>, JwtRejection> {
        use JwtRejection::*;
        let token = token_from_authorization(authorization)?;
        let mut parts = token.split(|b| *b == b'.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed);
        };

        let header: JoseHeader = decode_json(header_b64)?;
        if !matches!(&header.alg, Some(Value::String(alg)) if alg == "HS256") {
            return Err(UnsupportedAlgorithm);
        }
        match &header.typ {
            None => {}
            Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
            Some(_) => return Err(UnsupportedType),
        }
        if header.crit.is_some() {
            return Err(CriticalHeader);
        }

        // Unverified: `iss` only picks the key.
        let claims: Claims = decode_json(payload_b64)?;
        let issuer = match &claims.iss {
            None => return Err(MissingIssuer),
            Some(Value::String(iss)) => self.issuers.get(iss.as_str()).ok_or(UnknownIssuer)?,
            Some(_) => return Err(WrongClaimType),
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| Malformed)?;
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        hmac::verify(&issuer.hmac_key, &token[..signed_len], &signature)
            .map_err(|_| BadSignature)?;

        // Authenticated from here on.
        let iat = numeric_date(claims.iat.as_ref(), MissingIssuedAt)?;
        let exp = numeric_date(claims.exp.as_ref(), MissingExpiry)?;
        if claims.orig_iat.is_some() {
            return Err(Refreshable);
        }
        let lifetime = exp - iat;
        if lifetime <= 0.0 {
            return Err(NonPositiveLifetime);
        }
        if lifetime > self.max_lifetime {
            return Err(LifetimeTooLong);
        }
        let now = unix_seconds_signed(now) as f64;
        let leeway = self.leeway as f64;
        if iat > now + leeway {
            return Err(IssuedInFuture);
        }
        if exp < now - leeway {
            return Err(Expired);
        }
        let jti = match claims.jti {
            None if issuer.require_jti => return Err(MissingJti),
            None => None,
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => Some(jti),
            Some(Value::String(_)) => return Err(InvalidJti),
            Some(_) => return Err(WrongClaimType),
        };
        Ok(Checked {
            issuer,
            jti,
            // exp is finite and within now ± 310 s here, so the cast is exact enough.
            remember_until: (exp.ceil() as i64).saturating_add(self.leeway),
        })
    }
}

impl std::fmt::Debug for AmoVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&str> = self.issuers.keys().map(|k| &**k).collect();
        keys.sort_unstable();
        f.debug_struct("AmoVerifier")
            .field("issuers", &keys)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .field("replays", &self.replays)
            .finish()
    }
}

/// `JWT <token>`: scheme case-insensitive, exactly one space, no whitespace in the token.
fn token_from_authorization(value: &[u8]) -> Result<&[u8], JwtRejection> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(JwtRejection::TooLarge);
    }
    match value.split_at_checked(4) {
        Some((scheme, token))
            if scheme[..3].eq_ignore_ascii_case(b"JWT")
                && scheme[3] == b' '
                && !token.is_empty()
                && !token.iter().any(|b| b.is_ascii_whitespace()) =>
        {
            Ok(token)
        }
        _ => Err(JwtRejection::InvalidHeader),
    }
}

/// Strict base64url (no padding, canonical) of a JSON object.
fn decode_json<T: for<'de> Deserialize<'de>>(b64: &[u8]) -> Result<T, JwtRejection> {
    let json = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| JwtRejection::Malformed)?;
    // serde accepts a JSON array for a struct (positionally); a JWT part must be an object.
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(JwtRejection::Malformed);
    }
    serde_json::from_slice(&json).map_err(|_| JwtRejection::Malformed)
}

/// A required NumericDate: a JSON number (integer or not), never a string.
fn numeric_date(value: Option<&Value>, missing: JwtRejection) -> Result<f64, JwtRejection> {
    match value {
        None => Err(missing),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or(JwtRejection::WrongClaimType),
        Some(_) => Err(JwtRejection::WrongClaimType),
    }
}

// === impl VerifiedIssuer ===

impl VerifiedIssuer {
    /// The issuer's API key, to pass upstream.
    pub fn key(&self) -> &str {
        &self.key
    }
}

// === impl JwtRejection ===

impl JwtRejection {
    /// Public text saying which check failed. Static: never contains token content.
    pub fn message(&self) -> &'static str {
        use JwtRejection::*;
        match self {
            MissingHeader => "Missing Authorization header: expected JWT <token>",
            InvalidHeader => "Invalid Authorization header: expected JWT <token>",
            TooLarge => "JWT is too large",
            Malformed => "JWT is malformed",
            UnsupportedAlgorithm => "JWT alg must be HS256",
            UnsupportedType => "JWT typ must be JWT",
            CriticalHeader => "JWT crit header parameters are not supported",
            MissingIssuer => "JWT iss (issuer) claim is missing",
            UnknownIssuer => "Unknown JWT iss (issuer)",
            BadSignature => "JWT signature is invalid",
            MissingIssuedAt => "JWT iat (issued at time) claim is missing",
            MissingExpiry => "JWT exp (expiration) claim is missing",
            WrongClaimType => "Wrong type for one or more claims in the JWT payload",
            Refreshable => "JWT orig_iat is not accepted: API key tokens are not refreshable",
            NonPositiveLifetime => "JWT exp (expiration) is not after iat (issued at time)",
            LifetimeTooLong => "JWT exp (expiration) is too long",
            IssuedInFuture => {
                "JWT iat (issued at time) is in the future: make sure your system clock is synchronized"
            }
            Expired => "JWT has expired",
            MissingJti => "JWT jti (JWT ID) claim is missing",
            InvalidJti => "JWT jti (JWT ID) is empty or too long",
            Replayed => "JWT jti was already used",
            ReplayUnverifiable => "JWT jti cannot be checked for replay right now",
        }
    }

    /// Stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        use JwtRejection::*;
        match self {
            MissingHeader => "jwt-missing",
            InvalidHeader => "jwt-invalid-header",
            TooLarge => "jwt-too-large",
            Malformed => "jwt-malformed",
            UnsupportedAlgorithm => "jwt-alg",
            UnsupportedType => "jwt-typ",
            CriticalHeader => "jwt-crit",
            MissingIssuer => "jwt-iss-missing",
            UnknownIssuer => "jwt-iss-unknown",
            BadSignature => "jwt-signature",
            MissingIssuedAt => "jwt-iat-missing",
            MissingExpiry => "jwt-exp-missing",
            WrongClaimType => "jwt-claim-type",
            Refreshable => "jwt-orig-iat",
            NonPositiveLifetime => "jwt-lifetime-negative",
            LifetimeTooLong => "jwt-lifetime-too-long",
            IssuedInFuture => "jwt-iat-future",
            Expired => "jwt-expired",
            MissingJti => "jwt-jti-missing",
            InvalidJti => "jwt-jti-invalid",
            Replayed => "jwt-replayed",
            ReplayUnverifiable => "jwt-replay-unverifiable",
        }
    }
}

impl std::fmt::Display for JwtRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for JwtRejection {}

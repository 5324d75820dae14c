//! Reading a `/v1/introspect` answer (RFC 7662 §2.2, `fxa-reference.md` §1.6) into a
//! [`TokenInfo`], leniently: unknown fields are ignored and a field of the wrong type counts as
//! absent. Only `active` is required; without a boolean `active` the answer is unusable.
//!
//! FxA sends `iat`/`exp` in **milliseconds**, RFC 7662 servers (and JWT claims) in seconds.
//! [`epoch_time`] tells them apart by magnitude so an FxA expiry is never read as seconds
//! (which would put it tens of thousands of years away).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::intern::SharedStr;

/// What the OAuth server said about a token. Holds no token and no secret: `sub` is the account
/// id (or a pairwise id), `client_id` a public identifier, so deriving `Debug` is safe. The
/// strings are shared ([`SharedStr`]): an answer read here holds the process's one copy of
/// each value (a user's tokens share its `sub`, every token the few scopes and client ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenInfo {
    pub active: bool,
    /// Account uid (hex) or PPID.
    pub sub: Option<SharedStr>,
    pub client_id: Option<SharedStr>,
    /// Raw, space-separated; the scope module parses and bounds it.
    pub scope: SharedStr,
    /// FxA: `access_token` or `refresh_token`; RFC 7662 servers may send e.g. `bearer`.
    pub token_type: Option<SharedStr>,
    pub exp: Option<SystemTime>,
    pub iat: Option<SystemTime>,
}

/// The answer was not an introspection response (not JSON, not an object, no boolean
/// `active`): the gateway cannot tell whether the token is good, so this is an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("introspection answer is not a JSON object with a boolean \"active\"")]
pub struct MalformedAnswer;

/// Above this an `iat`/`exp` value is milliseconds: 1e11 s is the year 5138, 1e11 ms is March
/// 1973, so neither unit can be mistaken for the other for any token alive today.
pub const MILLIS_THRESHOLD: f64 = 100_000_000_000.0;

/// Shared by every inactive answer, so negative entries (token guessing) cost no allocation.
static INACTIVE: LazyLock<Arc<TokenInfo>> = LazyLock::new(|| Arc::new(TokenInfo::inactive()));

// === impl TokenInfo ===

impl TokenInfo {
    /// `{"active": false}`: unknown, revoked, expired or malformed token.
    pub fn inactive() -> Self {
        TokenInfo {
            active: false,
            sub: None,
            client_id: None,
            scope: SharedStr::from(""),
            token_type: None,
            exp: None,
            iat: None,
        }
    }

    /// The shared inactive value.
    pub fn inactive_shared() -> Arc<TokenInfo> {
        Arc::clone(&INACTIVE)
    }

    /// Whether a bearer route may accept this token: active and not a refresh token. FxA
    /// answers `active: true, token_type: "refresh_token"` for a public client's refresh token
    /// (the lookup falls back to refresh tokens despite the hint); that token must never act as
    /// an access token. Other types (`access_token`, RFC 7662 `bearer`, none) are accepted.
    pub fn is_active_access_token(&self) -> bool {
        self.active
            && !self
                .token_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("refresh_token"))
    }

    /// Whether the token's own expiry has passed at `now` (no `exp`: never).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.exp.is_some_and(|exp| exp <= now)
    }
}

/// Parses an introspection response body. An inactive answer carries nothing else (RFC 7662:
/// "if active is false no other attribute has content"), so its other fields are dropped.
pub fn parse_answer(body: &[u8]) -> Result<TokenInfo, MalformedAnswer> {
    let value: Value = serde_json::from_slice(body).map_err(|_| MalformedAnswer)?;
    let fields = value.as_object().ok_or(MalformedAnswer)?;
    let active = fields
        .get("active")
        .and_then(Value::as_bool)
        .ok_or(MalformedAnswer)?;
    if !active {
        return Ok(TokenInfo::inactive());
    }
    Ok(TokenInfo {
        active,
        sub: string_field(fields, "sub"),
        client_id: string_field(fields, "client_id"),
        scope: SharedStr::interned(&scope_field(fields)),
        token_type: string_field(fields, "token_type"),
        exp: fields.get("exp").and_then(epoch_time),
        iat: fields.get("iat").and_then(epoch_time),
    })
}

/// A point in time from a JSON number of seconds or milliseconds since the epoch (see
/// [`MILLIS_THRESHOLD`]), to the millisecond. Negative, non-numeric or unrepresentable values
/// are `None`. Integers are read exactly; fractions are rounded to the millisecond.
pub fn epoch_time(value: &Value) -> Option<SystemTime> {
    const THRESHOLD: u64 = MILLIS_THRESHOLD as u64;
    let since_epoch = match value.as_u64() {
        Some(ms) if ms > THRESHOLD => Duration::from_millis(ms),
        Some(secs) => Duration::from_secs(secs),
        None => {
            let number = value.as_f64()?;
            if !number.is_finite() || number < 0.0 {
                return None;
            }
            let ms = if number > MILLIS_THRESHOLD {
                number
            } else {
                number * 1000.0
            };
            if ms >= u64::MAX as f64 {
                return None;
            }
            Duration::from_millis(ms.round() as u64)
        }
    };
    SystemTime::UNIX_EPOCH.checked_add(since_epoch)
}

fn string_field(fields: &Map<String, Value>, name: &str) -> Option<SharedStr> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .map(SharedStr::interned)
}

/// RFC 7662 and FxA send a space-separated string; an array of strings (as `/v1/verify` uses)
/// is joined rather than lost.
pub fn scope_field(fields: &Map<String, Value>) -> String {
    match fields.get("scope") {
        Some(Value::String(scope)) => scope.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

//! What a token endpoint answer to a refresh grant means (`fxa-reference.md` §1.2, §1.10, §7).
//! Pure: status, errno and body in, a [`TokenAnswer`] out.
//!
//! Only two answers mean the user disconnected the RP: **400 errno 108** (`/v1/token`, OAuth
//! namespace) and **401 errno 110** (`/v1/oauth/token`, where the auth server re-throws 108 as
//! 110). Both are read as re-authentication on either route: neither combination means
//! anything else on the other. Everything else is an outage (never a re-auth signal, the caller
//! keeps its tokens) or the gateway's own misconfiguration.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::auth::introspect::scope_field;
use crate::auth::scheme::is_token68;
use crate::errno::errno_in;

/// Longest access token accepted from the token endpoint (FxA caps JWTs at 1024 characters).
const MAX_ACCESS_TOKEN_LEN: usize = 4096;

/// A token endpoint's successful answer, as far as the gateway uses it. Holds a live access
/// token: no `Debug`.
pub struct NewToken {
    pub access_token: String,
    pub expires_in: Duration,
    /// Space-separated, as granted.
    pub scope: String,
}

/// How the gateway takes a token endpoint answer.
pub enum TokenAnswer {
    Granted(NewToken),
    /// The refresh token is unknown, revoked, or not this client's: re-authenticate.
    Reauth,
    /// The OAuth server refused the gateway's own request (unknown client, wrong secret,
    /// invalid parameter, scope not allowed, not a public client...): 500, never a re-auth.
    Misconfigured {
        errno: Option<u16>,
    },
    /// Down, failing, rate-limited or an answer that is not one: 503 errno 104.
    Unavailable,
}

/// Reads an answer. `errno` is taken from the body when it is errno JSON.
pub fn judge(status: StatusCode, body: Option<&[u8]>) -> TokenAnswer {
    if status.is_success() {
        return body
            .and_then(granted)
            .map_or(TokenAnswer::Unavailable, TokenAnswer::Granted);
    }
    let errno = body.and_then(errno_in);
    match (status.as_u16(), errno) {
        (400, Some(108)) | (401, Some(110)) => TokenAnswer::Reauth,
        // 429 and every 5xx (including FxA's 503 errno 202 "client disabled") are outages.
        (429, _) | (500..=599, _) => TokenAnswer::Unavailable,
        // 408 is the load balancer giving up, not a verdict on the request.
        (408, _) => TokenAnswer::Unavailable,
        _ => TokenAnswer::Misconfigured { errno },
    }
}

/// `{access_token, expires_in, scope, token_type: "bearer"}`; unknown fields ignored.
fn granted(body: &[u8]) -> Option<NewToken> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let access_token = value.get("access_token")?.as_str()?;
    if access_token.is_empty()
        || access_token.len() > MAX_ACCESS_TOKEN_LEN
        || !access_token.bytes().all(is_token68)
    {
        return None;
    }
    if let Some(kind) = value.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return None;
    }
    // FxA sends whole seconds; under one second (`1e-300` read as a zero `Duration`) is no
    // usable token, and over ten years (or NaN, infinite) no real one.
    let expires_in = value.get("expires_in")?.as_f64()?;
    if !(1.0..=10.0 * 365.0 * 86_400.0).contains(&expires_in) {
        return None;
    }
    let scope = scope_field(value.as_object()?);
    Some(NewToken {
        access_token: access_token.to_owned(),
        expires_in: Duration::from_secs_f64(expires_in),
        scope,
    })
}

//! The `bearer` policy: `Authorization: Bearer <token>` introspected at the OAuth server
//! (cached), refused per RFC 6750 §3.1, scopes checked with FxA's implication rules against the
//! route's endpoint table or preset.
//!
//! Never sends anything upstream for a refused token, never answers 401 for an OAuth outage
//! (503 errno 104), and never puts the token in an error, a log line or a cache key.

use std::sync::Arc;
use std::time::SystemTime;

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::introspect::TokenInfo;
use super::outcome::AuthOutcome;
use super::presets::{self, Preset, Requirement};
use super::scheme::bearer_token;
use super::scope::ScopeSet;
use super::tokens::TokenSource;
use crate::config::{BearerPolicy, PresetName};
use crate::errno::{BearerChallenge, GatewayError};

pub const UID_HEADER: HeaderName = HeaderName::from_static("x-fxa-uid");
pub const CLIENT_ID_HEADER: HeaderName = HeaderName::from_static("x-fxa-client-id");
pub const SCOPE_HEADER: HeaderName = HeaderName::from_static("x-fxa-scope");

/// What an endpoint needs, resolved for one request.
enum Needed<'a> {
    Public,
    Forbidden,
    /// One of these scopes; empty = any valid token.
    OneOf(Vec<&'a str>),
}

pub async fn authenticate(
    tokens: &TokenSource,
    policy: &BearerPolicy,
    method: &Method,
    rest: &str,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<AuthOutcome, GatewayError> {
    let Some(required) = required_scopes(policy, method, rest, headers)? else {
        return Ok(AuthOutcome::default());
    };
    let token = bearer_token(headers)?;
    let info = describe(tokens, token).await?;
    accept(&info, &required, policy.identity_headers, now)
}

/// What the request needs: `None` when no token is needed (public endpoint, CORS preflight),
/// else one of these scopes (empty = any valid token).
pub fn required_scopes<'p>(
    policy: &'p BearerPolicy,
    method: &Method,
    rest: &str,
    headers: &HeaderMap,
) -> Result<Option<Vec<&'p str>>, GatewayError> {
    // A CORS preflight carries no credentials by design; the upstream answers it.
    if presets::is_cors_preflight(method, headers) {
        return Ok(None);
    }
    match needed(policy, method, rest) {
        Needed::Public => Ok(None),
        Needed::Forbidden => Err(GatewayError::EndpointNotAllowed),
        Needed::OneOf(scopes) => Ok(Some(scopes)),
    }
}

/// What `token` is: verified locally (FxA JWT access tokens) or the OAuth server's answer
/// (cached); an outage is 503 errno 104, a refusal 401.
pub async fn describe(tokens: &TokenSource, token: &str) -> Result<Arc<TokenInfo>, GatewayError> {
    tokens.describe(token).await
}

/// Accepts a token the introspection describes, for an endpoint needing one of `required`.
pub fn accept(
    info: &TokenInfo,
    required: &[&str],
    identity_headers: bool,
    now: SystemTime,
) -> Result<AuthOutcome, GatewayError> {
    if !usable(info, now) {
        return Err(GatewayError::InvalidToken(BearerChallenge::InvalidToken));
    }
    // Granted scopes come from the OAuth server: invalid values are dropped, never widened.
    let held = ScopeSet::parse_granted(&info.scope).unwrap_or_default();
    if !required.is_empty() && !required.iter().any(|r| held.implies_str(r)) {
        return Err(GatewayError::MissingScope {
            required: required.join(" "),
        });
    }
    Ok(outcome(info, identity_headers))
}

/// Active, an access token (not a refresh token), and not past its `exp` on the gateway's clock.
pub fn usable(info: &TokenInfo, now: SystemTime) -> bool {
    info.is_active_access_token() && !info.is_expired_at(now)
}

fn outcome(info: &TokenInfo, identity_headers: bool) -> AuthOutcome {
    let mut upstream_headers = Vec::new();
    if identity_headers {
        let pairs = [
            (UID_HEADER, info.sub.as_deref()),
            (CLIENT_ID_HEADER, info.client_id.as_deref()),
            (
                SCOPE_HEADER,
                Some(info.scope.as_str()).filter(|s| !s.is_empty()),
            ),
        ];
        for (name, value) in pairs {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                upstream_headers.push((name, v));
            }
        }
    }
    let identity = info
        .sub
        .as_deref()
        .map(|sub| format!("uid:{sub}"))
        .or_else(|| info.client_id.as_deref().map(|c| format!("client:{c}")));
    AuthOutcome {
        authorization: None,
        upstream_headers,
        identity,
        client_id: info.client_id.as_deref().map(str::to_owned),
        ..AuthOutcome::default()
    }
}

/// The endpoint table first, then the preset, then the route's scopes.
fn needed<'p>(policy: &'p BearerPolicy, method: &Method, rest: &str) -> Needed<'p> {
    let method_matches = |ms: &Option<Vec<Method>>| {
        ms.as_ref().is_none_or(|ms| {
            ms.iter()
                .any(|m| m == method || (m == Method::GET && method == Method::HEAD))
        })
    };
    let row = policy
        .endpoints
        .iter()
        .find(|e| path_under(&e.path, rest) && method_matches(&e.methods));
    if let Some(row) = row {
        return match &row.scopes {
            None => Needed::Public,
            Some(scopes) => Needed::OneOf(scopes.iter().map(String::as_str).collect()),
        };
    }
    if let Some(preset) = policy.preset {
        let preset = match preset {
            PresetName::Profile => Preset::Profile,
            PresetName::TokenServer => Preset::TokenServer,
            PresetName::OAuth => Preset::OAuth,
        };
        return match presets::requirement(preset, method, rest) {
            Requirement::Public => Needed::Public,
            Requirement::Forbidden => Needed::Forbidden,
            Requirement::AnyValidToken => Needed::OneOf(Vec::new()),
            Requirement::AnyOf(scopes) => Needed::OneOf(scopes.to_vec()),
        };
    }
    Needed::OneOf(policy.scopes.iter().map(String::as_str).collect())
}

/// `/v1/email` covers `/v1/email` and `/v1/email/...`.
fn path_under(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rows_match_on_segment_boundaries() {
        assert!(path_under("/v1/email", "/v1/email"));
        assert!(path_under("/v1/email", "/v1/email/x"));
        assert!(!path_under("/v1/email", "/v1/emails"));
        assert!(path_under("/", "/anything"));
    }
}

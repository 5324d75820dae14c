//! The gateway's error contract: every error the gateway makes, mapped once to FxA's errno JSON.
//!
//! `GatewayError` variants are meanings, not library errors. `GatewayError::parts` is the one
//! exhaustive mapping to (status, errno, public message); adding a variant does not compile
//! until it has a number. Public messages never carry tokens, secrets or upstream internals:
//! internal context goes to `Display`, which is only logged.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::body::Body;

/// Where FxA documents the response format; sent as `info` like the auth server does.
pub const INFO_URL: &str =
    "https://mozilla.github.io/ecosystem-platform/api#section/Response-format";

/// Header marking an error the gateway produced itself (value: a stable reason label).
pub const GATEWAY_ERROR_HEADER: &str = "x-fxa-gateway-error";

/// Errors the gateway itself answers with. Each variant is one row of the README's errno table.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route for this host and path")]
    RouteNotFound,
    #[error("API version {version:?} is not served on this route")]
    VersionNotSupported { version: String },
    #[error("API version {version:?} is past its sunset")]
    VersionGone { version: String },
    #[error("method not allowed")]
    MethodNotAllowed { allow: HeaderValue },
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("request head not received in time")]
    HeaderTimeout,
    #[error("request head too large")]
    HeadersTooLarge,
    #[error("request target too long")]
    UriTooLong,
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("upstream {upstream} at its connection cap")]
    UpstreamBusy { upstream: String },
    #[error("upstream {upstream} unreachable: {cause}")]
    UpstreamUnreachable { upstream: String, cause: String },
    #[error("upstream {upstream} answered with something that is not HTTP: {cause}")]
    UpstreamBadResponse { upstream: String, cause: String },
    #[error("upstream {upstream} did not answer within {after:?}")]
    UpstreamTimeout { upstream: String, after: Duration },
    #[error("gateway misconfigured: {0}")]
    Misconfigured(String),
    /// A reload's configuration did not validate (admin `/__reload__`): every problem, one a
    /// line; the configuration serving before keeps serving.
    #[error("configuration refused: {}", problems.join("; "))]
    ConfigRefused { problems: Vec<String> },
    #[error("AMO JWT refused: {0}")]
    AmoJwtRejected(crate::auth::amo_jwt::JwtRejection),
    #[error("security event token refused: {}", .0.reason())]
    SecurityEventRejected(crate::auth::security_events::SetRejection),
    #[error("too many security event jtis within their age to remember another")]
    SecurityEventsBusy,
    #[error("AMO credential selection refused: {0}")]
    CredentialSelectionRefused(&'static str),
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("upstream in a back-off window ({status}, errno {errno}) for {retry_after}s more")]
    BackedOff {
        status: StatusCode,
        errno: u16,
        retry_after: u64,
    },
    #[error("upstream-wide request cap reached")]
    UpstreamOverCap { retry_after: u64 },
    #[error("shared state (Redis) unavailable and on_redis_down = \"refuse\" for {state}")]
    SharedStateUnavailable {
        state: &'static str,
        retry_after: u64,
    },
    #[error("bearer token refused ({0:?})")]
    InvalidToken(BearerChallenge),
    #[error("token lacks a scope the endpoint needs")]
    MissingScope { required: String },
    #[error("endpoint not open to relying parties on this route")]
    EndpointNotAllowed,
    #[error("OAuth server unavailable for introspection")]
    IntrospectionUnavailable { retry_after: Option<u64> },
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("X-FxA-Refresh-Token sent on a listener that does not accept it")]
    RefreshTokenNotAccepted,
    #[error("X-FxA-Refresh-Token is not a refresh token")]
    RefreshTokenMalformed,
    #[error("the OAuth server rejected the refresh token: re-authentication required")]
    ReauthRequired,
    #[error("OAuth server unavailable for refresh")]
    RefreshUnavailable { retry_after: Option<u64> },
    #[error(
        "the OAuth server refused the gateway's refresh request (status {status}, errno {errno:?}): check [refresh] client_id, client_secret and the routes' refresh_scope"
    )]
    RefreshMisconfigured { status: u16, errno: Option<u16> },
    #[error("caller over its quota")]
    QuotaExceeded {
        retry_after: u64,
        headers: Option<(HeaderValue, HeaderValue)>,
    },
}

/// Set to `required` when the refresh token was rejected: the RP must drop its tokens and
/// send the user through sign-in again.
pub const REAUTH_HEADER: &str = "x-fxa-reauth";

/// Which RFC 6750 §3.1 challenge a bearer refusal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerChallenge {
    /// No credentials, or another scheme: no error attribute.
    NoCredentials,
    /// A malformed `Authorization` header: `error="invalid_request"`.
    InvalidRequest,
    /// Unknown, revoked, expired or not an access token: `error="invalid_token"`.
    InvalidToken,
}

/// Realm of the `WWW-Authenticate: Bearer` challenges.
pub const BEARER_REALM: &str = "fxa-gateway";

/// Realm of the `WWW-Authenticate: JWT` challenge on `amo-jwt-verify` routes.
pub const JWT_REALM: &str = "JWT realm=\"fxa-gateway\"";

/// Who is at fault, so logging and metrics can tell a client mistake from an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Gateway,
}

/// The public face of an error: what the client sees.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub status: StatusCode,
    pub errno: u16,
    pub message: &'static str,
    /// Stable label for logs, metrics and the `X-FxA-Gateway-Error` header.
    pub reason: &'static str,
    pub fault: Fault,
}

impl GatewayError {
    /// The one mapping from meaning to (status, errno, message). Numbers: `../shared/DESIGN.md`.
    pub fn parts(&self) -> Parts {
        use Fault::*;
        use GatewayError::*;
        let (status, errno, message, reason, fault) = match self {
            RouteNotFound => (
                StatusCode::NOT_FOUND,
                999,
                "Not Found",
                "route-not-found",
                Client,
            ),
            VersionNotSupported { .. } => (
                StatusCode::NOT_FOUND,
                999,
                "Not Found: unsupported API version",
                "version-not-supported",
                Client,
            ),
            VersionGone { .. } => (
                StatusCode::GONE,
                116,
                "This endpoint is no longer supported",
                "version-gone",
                Client,
            ),
            MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                999,
                "Method Not Allowed",
                "method-not-allowed",
                Client,
            ),
            BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                999,
                "Bad Request",
                "bad-request",
                Client,
            ),
            HeaderTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                999,
                "Request header not received in time",
                "header-timeout",
                Client,
            ),
            HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                999,
                "Request header fields too large",
                "headers-too-large",
                Client,
            ),
            UriTooLong => (
                StatusCode::URI_TOO_LONG,
                999,
                "URI Too Long",
                "uri-too-long",
                Client,
            ),
            BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                113,
                "Request body too large",
                "body-too-large",
                Client,
            ),
            UpstreamBusy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                201,
                "Service unavailable",
                "upstream-busy",
                Gateway,
            ),
            UpstreamUnreachable { .. } => (
                StatusCode::BAD_GATEWAY,
                203,
                "System unavailable, try again soon",
                "upstream-unreachable",
                Upstream,
            ),
            UpstreamBadResponse { .. } => (
                StatusCode::BAD_GATEWAY,
                203,
                "System unavailable, try again soon",
                "upstream-bad-response",
                Upstream,
            ),
            UpstreamTimeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                203,
                "System unavailable, try again soon",
                "upstream-timeout",
                Upstream,
            ),
            Misconfigured(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                999,
                "Unspecified error",
                "misconfigured",
                Gateway,
            ),
            ConfigRefused { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                999,
                "Configuration refused; the previous configuration keeps serving",
                "config-refused",
                Gateway,
            ),
            AmoJwtRejected(rejection) => (
                StatusCode::UNAUTHORIZED,
                110,
                rejection.message(),
                rejection.reason(),
                Client,
            ),
            SecurityEventRejected(rejection) => (
                StatusCode::UNAUTHORIZED,
                110,
                rejection.message(),
                rejection.reason(),
                Client,
            ),
            SecurityEventsBusy => (
                StatusCode::SERVICE_UNAVAILABLE,
                201,
                "Service unavailable",
                "set-ledger-full",
                Gateway,
            ),
            CredentialSelectionRefused(_) => (
                StatusCode::BAD_REQUEST,
                999,
                "Bad Request: this caller may not select that AMO credential",
                "credential-selection-refused",
                Client,
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                999,
                "Unspecified error",
                "internal",
                Gateway,
            ),
            BackedOff { status, errno, .. } if *status == StatusCode::TOO_MANY_REQUESTS => (
                *status,
                *errno,
                "Client has sent too many requests",
                "backed-off",
                Upstream,
            ),
            BackedOff { status, errno, .. } => (
                *status,
                *errno,
                "Service unavailable",
                "backed-off",
                Upstream,
            ),
            UpstreamOverCap { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                201,
                "Service unavailable",
                "upstream-over-cap",
                Gateway,
            ),
            SharedStateUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                201,
                "Service unavailable",
                "shared-state-unavailable",
                Gateway,
            ),
            InvalidToken(challenge) => (
                StatusCode::UNAUTHORIZED,
                110,
                match challenge {
                    BearerChallenge::NoCredentials => "Bearer token not provided",
                    BearerChallenge::InvalidRequest => {
                        "Malformed Authorization header: expected Bearer <token>"
                    }
                    BearerChallenge::InvalidToken => "Invalid authentication token",
                },
                match challenge {
                    BearerChallenge::NoCredentials => "token-missing",
                    BearerChallenge::InvalidRequest => "token-malformed",
                    BearerChallenge::InvalidToken => "token-invalid",
                },
                Client,
            ),
            MissingScope { .. } => (
                StatusCode::FORBIDDEN,
                100,
                "Unauthorized",
                "insufficient-scope",
                Client,
            ),
            EndpointNotAllowed => (
                StatusCode::FORBIDDEN,
                100,
                "Unauthorized",
                "endpoint-not-allowed",
                Client,
            ),
            IntrospectionUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                104,
                "OAuth service unavailable",
                "oauth-unavailable",
                Upstream,
            ),
            BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                999,
                "Request body not received in time",
                "body-timeout",
                Client,
            ),
            RefreshTokenNotAccepted => (
                StatusCode::BAD_REQUEST,
                999,
                "Bad Request: X-FxA-Refresh-Token is not accepted on this listener (refresh tokens may only travel between the relying party and the OAuth server)",
                "refresh-token-not-accepted",
                Client,
            ),
            RefreshTokenMalformed => (
                StatusCode::BAD_REQUEST,
                999,
                "Bad Request: X-FxA-Refresh-Token must be one FxA refresh token (64 hex characters)",
                "refresh-token-malformed",
                Client,
            ),
            ReauthRequired => (
                StatusCode::UNAUTHORIZED,
                110,
                "Invalid authentication token: the refresh token was rejected, the user must re-authenticate",
                "reauth-required",
                Client,
            ),
            RefreshUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                104,
                "OAuth service unavailable",
                "refresh-unavailable",
                Upstream,
            ),
            RefreshMisconfigured { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                999,
                "Unspecified error",
                "refresh-misconfigured",
                Gateway,
            ),
            QuotaExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                114,
                "Client has sent too many requests",
                "quota-exceeded",
                Client,
            ),
        };
        Parts {
            status,
            errno,
            message,
            reason,
            fault,
        }
    }

    /// Seconds the client should wait before retrying, when the error says so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::UpstreamBusy { .. } => Some(1),
            GatewayError::SecurityEventsBusy => Some(60),
            GatewayError::BackedOff { retry_after, .. }
            | GatewayError::UpstreamOverCap { retry_after }
            | GatewayError::SharedStateUnavailable { retry_after, .. }
            | GatewayError::QuotaExceeded { retry_after, .. } => Some((*retry_after).max(1)),
            GatewayError::IntrospectionUnavailable { retry_after }
            | GatewayError::RefreshUnavailable { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The JSON body, headers and status the client receives.
    pub fn into_response(self, request_id: &HeaderValue, method: &Method) -> Response<Body> {
        let parts = self.parts();
        let mut body = errno_body(parts.status, parts.errno, parts.message);
        match &self {
            GatewayError::UpstreamUnreachable { upstream, .. }
            | GatewayError::UpstreamBadResponse { upstream, .. }
            | GatewayError::UpstreamTimeout { upstream, .. } => {
                body.insert("service".into(), Value::String(upstream.clone()));
            }
            GatewayError::VersionNotSupported { version }
            | GatewayError::VersionGone { version } => {
                body.insert("version".into(), Value::String(version.clone()));
            }
            GatewayError::ConfigRefused { problems } => {
                let problems = problems.iter().cloned().map(Value::String).collect();
                body.insert("problems".into(), Value::Array(problems));
            }
            _ => {}
        }
        let retry_after = self.retry_after();
        if let Some(secs) = retry_after {
            insert_retry_after(&mut body, secs);
        }
        let mut response = json_response(parts.status, &body, method);
        let headers = response.headers_mut();
        headers.insert(GATEWAY_ERROR_HEADER, HeaderValue::from_static(parts.reason));
        headers.insert(crate::request_id::HEADER, request_id.clone());
        if let Some(secs) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, allow);
            }
            GatewayError::AmoJwtRejected(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(JWT_REALM));
            }
            GatewayError::InvalidToken(challenge) => {
                headers.insert(WWW_AUTHENTICATE, bearer_challenge(challenge));
            }
            GatewayError::SecurityEventRejected(_) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    bearer_challenge(BearerChallenge::InvalidToken),
                );
            }
            GatewayError::ReauthRequired => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    bearer_challenge(BearerChallenge::InvalidToken),
                );
                headers.insert(REAUTH_HEADER, HeaderValue::from_static("required"));
            }
            GatewayError::MissingScope { required } => {
                let value = format!(
                    "Bearer realm=\"{BEARER_REALM}\", error=\"insufficient_scope\", scope=\"{required}\""
                );
                let fallback = HeaderValue::from_static("Bearer error=\"insufficient_scope\"");
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_str(&value).unwrap_or(fallback),
                );
            }
            GatewayError::QuotaExceeded {
                headers: Some((policy, state)),
                ..
            } => {
                headers.insert(crate::ratelimit::RATELIMIT_POLICY, policy);
                headers.insert(crate::ratelimit::RATELIMIT, state);
            }
            _ => {}
        }
        response
    }
}

/// The RFC 6750 §3.1 challenge for a refused bearer token.
fn bearer_challenge(challenge: BearerChallenge) -> HeaderValue {
    HeaderValue::from_static(match challenge {
        BearerChallenge::NoCredentials => "Bearer realm=\"fxa-gateway\"",
        BearerChallenge::InvalidRequest => {
            "Bearer realm=\"fxa-gateway\", error=\"invalid_request\""
        }
        BearerChallenge::InvalidToken => "Bearer realm=\"fxa-gateway\", error=\"invalid_token\"",
    })
}

/// `{code, errno, error, message, info}`: the fields every FxA error carries.
pub fn errno_body(status: StatusCode, errno: u16, message: &str) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("code".into(), json!(status.as_u16()));
    body.insert("errno".into(), json!(errno));
    body.insert(
        "error".into(),
        json!(status.canonical_reason().unwrap_or("Error")),
    );
    body.insert("message".into(), json!(message));
    body.insert("info".into(), json!(INFO_URL));
    body
}

/// Adds `retryAfter` and `retryAfterLocalized` ("in 30 seconds") as FxA's 114/201 do.
pub fn insert_retry_after(body: &mut Map<String, Value>, secs: u64) {
    body.insert("retryAfter".into(), json!(secs));
    body.insert("retryAfterLocalized".into(), json!(localized_delay(secs)));
}

/// English "in N seconds/minutes/hours" text for `retryAfterLocalized`.
pub fn localized_delay(secs: u64) -> String {
    fn unit(n: u64, one: &str, many: &str) -> String {
        if n == 1 {
            format!("in 1 {one}")
        } else {
            format!("in {n} {many}")
        }
    }
    match secs {
        0..=89 => unit(secs.max(1), "second", "seconds"),
        90..=5399 => unit(secs.div_ceil(60), "minute", "minutes"),
        _ => unit(secs.div_ceil(3600), "hour", "hours"),
    }
}

/// The `errno` of an errno-shaped JSON body (FxA's services, the gateway's own errors).
pub fn errno_in(body: &[u8]) -> Option<u16> {
    #[derive(serde::Deserialize)]
    struct Errno {
        errno: u16,
    }
    serde_json::from_slice::<Errno>(body).ok().map(|e| e.errno)
}

/// Serialises an errno body as an `application/json` response; HEAD gets the headers only.
pub fn json_response(
    status: StatusCode,
    body: &Map<String, Value>,
    method: &Method,
) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let len = bytes.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::full(bytes)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(err: GatewayError) -> (Response<Body>, Value) {
        let rid = HeaderValue::from_static("req-1");
        let parts = err.parts();
        let resp = err.into_response(&rid, &Method::GET);
        let mut body = errno_body(parts.status, parts.errno, parts.message);
        body.insert("x".into(), Value::Null);
        (resp, Value::Object(body))
    }

    #[test]
    fn every_variant_has_design_table_numbers() {
        let cases: Vec<(GatewayError, u16, u16)> = vec![
            (GatewayError::RouteNotFound, 404, 999),
            (
                GatewayError::VersionNotSupported {
                    version: "v9".into(),
                },
                404,
                999,
            ),
            (
                GatewayError::VersionGone {
                    version: "v3".into(),
                },
                410,
                116,
            ),
            (
                GatewayError::MethodNotAllowed {
                    allow: HeaderValue::from_static("GET"),
                },
                405,
                999,
            ),
            (GatewayError::BadRequest("x"), 400, 999),
            (GatewayError::HeaderTimeout, 408, 999),
            (GatewayError::HeadersTooLarge, 431, 999),
            (GatewayError::UriTooLong, 414, 999),
            (GatewayError::BodyTooLarge { limit: 1 }, 413, 113),
            (
                GatewayError::UpstreamBusy {
                    upstream: "u".into(),
                },
                503,
                201,
            ),
            (
                GatewayError::UpstreamUnreachable {
                    upstream: "u".into(),
                    cause: "c".into(),
                },
                502,
                203,
            ),
            (
                GatewayError::UpstreamBadResponse {
                    upstream: "u".into(),
                    cause: "c".into(),
                },
                502,
                203,
            ),
            (
                GatewayError::UpstreamTimeout {
                    upstream: "u".into(),
                    after: Duration::from_secs(1),
                },
                504,
                203,
            ),
            (GatewayError::Misconfigured("x".into()), 500, 999),
            (
                GatewayError::AmoJwtRejected(crate::auth::amo_jwt::JwtRejection::Expired),
                401,
                110,
            ),
            (GatewayError::CredentialSelectionRefused("x"), 400, 999),
            (GatewayError::Internal("x"), 500, 999),
            (
                GatewayError::BackedOff {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    errno: 201,
                    retry_after: 30,
                },
                503,
                201,
            ),
            (
                GatewayError::BackedOff {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    errno: 114,
                    retry_after: 3,
                },
                429,
                114,
            ),
            (GatewayError::UpstreamOverCap { retry_after: 1 }, 503, 201),
            (
                GatewayError::SharedStateUnavailable {
                    state: "amo_replay",
                    retry_after: 1,
                },
                503,
                201,
            ),
            (
                GatewayError::InvalidToken(BearerChallenge::InvalidToken),
                401,
                110,
            ),
            (
                GatewayError::MissingScope {
                    required: "profile".into(),
                },
                403,
                100,
            ),
            (GatewayError::EndpointNotAllowed, 403, 100),
            (
                GatewayError::IntrospectionUnavailable { retry_after: None },
                503,
                104,
            ),
            (
                GatewayError::QuotaExceeded {
                    retry_after: 1,
                    headers: None,
                },
                429,
                114,
            ),
        ];
        for (err, status, errno) in cases {
            let p = err.parts();
            assert_eq!((p.status.as_u16(), p.errno), (status, errno), "{err:?}");
            let (resp, _) = body_of(err);
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
            assert!(resp.headers().contains_key(GATEWAY_ERROR_HEADER));
        }
    }

    #[test]
    fn bearer_refusals_carry_rfc_6750_challenges() {
        let rid = HeaderValue::from_static("r");
        let challenge = |e: GatewayError| {
            let resp = e.into_response(&rid, &Method::GET);
            resp.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            challenge(GatewayError::InvalidToken(BearerChallenge::NoCredentials)),
            "Bearer realm=\"fxa-gateway\""
        );
        assert!(
            challenge(GatewayError::InvalidToken(BearerChallenge::InvalidRequest))
                .ends_with("error=\"invalid_request\"")
        );
        assert!(
            challenge(GatewayError::InvalidToken(BearerChallenge::InvalidToken))
                .ends_with("error=\"invalid_token\"")
        );
        assert_eq!(
            challenge(GatewayError::MissingScope {
                required: "profile:email email".into()
            }),
            "Bearer realm=\"fxa-gateway\", error=\"insufficient_scope\", scope=\"profile:email email\""
        );
    }

    #[test]
    fn localized_delay_reads_naturally() {
        assert_eq!(localized_delay(0), "in 1 second");
        assert_eq!(localized_delay(1), "in 1 second");
        assert_eq!(localized_delay(30), "in 30 seconds");
        assert_eq!(localized_delay(120), "in 2 minutes");
        assert_eq!(localized_delay(7200), "in 2 hours");
    }
}

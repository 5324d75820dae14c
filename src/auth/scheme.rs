//! The `Authorization: Bearer` scheme (RFC 6750 §2.1): reading the one token of a request, the
//! token68 alphabet, and the canonical `Bearer <token>` form that goes upstream.
//!
//! Never echoes a token in an error.

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::errno::{BearerChallenge, GatewayError};

/// Longest bearer token accepted (FxA's JWT access tokens stay near 1 KiB).
const MAX_TOKEN_LEN: usize = 4096;

/// A byte of an RFC 6750 `b64token` (token68).
pub fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// The one bearer token of the request, per RFC 6750 §2.1 and §3.1 (the scheme in any case).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(GatewayError::InvalidToken(BearerChallenge::NoCredentials));
    };
    let malformed = GatewayError::InvalidToken(BearerChallenge::InvalidRequest);
    if values.next().is_some() {
        return Err(malformed);
    }
    let value = value
        .to_str()
        .map_err(|_| GatewayError::InvalidToken(BearerChallenge::InvalidRequest))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GatewayError::InvalidToken(BearerChallenge::NoCredentials));
    }
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.bytes().all(is_token68) {
        return Err(malformed);
    }
    Ok(token)
}

/// `Bearer <token>` as a header value (`Sensitive`, so HTTP/2 never indexes it).
pub fn bearer_value(token: &str) -> Result<HeaderValue, GatewayError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| GatewayError::Internal("access token is not a header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Rewrites a valid bearer credential sent with the scheme in another case (`bearer <token>`)
/// to `Bearer <token>`: FxA's profile server only accepts that spelling.
pub fn canonicalize(headers: &mut HeaderMap) {
    let sent_canonical = headers
        .get(AUTHORIZATION)
        .is_none_or(|v| v.as_bytes().starts_with(b"Bearer "));
    if sent_canonical {
        return;
    }
    if let Ok(value) = bearer_token(headers).and_then(bearer_value) {
        headers.insert(AUTHORIZATION, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn challenge(h: &HeaderMap) -> Option<BearerChallenge> {
        match bearer_token(h) {
            Err(GatewayError::InvalidToken(c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn the_token_is_the_one_value_after_the_scheme() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc123"])).ok(),
            Some("abc123")
        );
        assert_eq!(
            bearer_token(&headers(&["bEaReR abc.def-ghi_"])).ok(),
            Some("abc.def-ghi_")
        );
    }

    #[test]
    fn refusals_follow_rfc_6750() {
        assert_eq!(
            challenge(&HeaderMap::new()),
            Some(BearerChallenge::NoCredentials)
        );
        assert_eq!(
            challenge(&headers(&["Basic dXNlcjpwYXNz"])),
            Some(BearerChallenge::NoCredentials)
        );
        assert_eq!(
            challenge(&headers(&["JWT a.b.c"])),
            Some(BearerChallenge::NoCredentials)
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer  a",
            "Bearer a\"b",
        ] {
            assert_eq!(
                challenge(&headers(&[bad])),
                Some(BearerChallenge::InvalidRequest),
                "{bad}"
            );
        }
        assert_eq!(
            challenge(&headers(&["Bearer a", "Bearer b"])),
            Some(BearerChallenge::InvalidRequest)
        );
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            challenge(&headers(&[&long])),
            Some(BearerChallenge::InvalidRequest)
        );
    }

    #[test]
    fn the_scheme_goes_upstream_as_bearer() {
        let mut h = headers(&["bEARER abc.def"]);
        canonicalize(&mut h);
        assert_eq!(h[AUTHORIZATION], "Bearer abc.def");
        let mut h = headers(&["Basic dXNlcjpwYXNz"]);
        canonicalize(&mut h);
        assert_eq!(h[AUTHORIZATION], "Basic dXNlcjpwYXNz");
        let mut h = HeaderMap::new();
        canonicalize(&mut h);
        assert!(h.is_empty());
    }
}

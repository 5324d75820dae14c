//! The JOSE pieces FxA's signed JWTs share (JWT access tokens and the event broker's Security
//! Event Tokens): the compact serialisation split and decoded, RS256 checked against an RSA key
//! of the OAuth server's JWK set (`GET /v1/jwks`, `fxa-reference.md` §1.8).
//!
//! Only `RS256` is ever verified: `none`, every `HS*` (the key confusion where an RSA public key
//! is used as an HMAC secret) and every other algorithm are refused before any key is touched.
//! Keys come only from the configured JWK set, looked up by `kid`; keys a token carries itself
//! (`jwk`, `jku`, `x5u`, `x5c`) are never used. Nothing here logs or returns token bytes.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

/// Longest compact JWT looked at (FxA caps its access-token JWTs at 1024 characters).
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// The only algorithm FxA signs with (`lib/oauth/keys.ts`: `SIGNING_ALG = 'RS256'`).
pub const RS256: &str = "RS256";

/// Why a compact JWT could not be checked. Safe to log: no token bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("not a compact JWT")]
    Malformed,
    #[error("alg is not RS256")]
    Algorithm,
    #[error("crit header parameters are not supported")]
    Critical,
    #[error("no kid in the header")]
    MissingKid,
    #[error("signature does not verify")]
    Signature,
}

/// A compact JWT split and decoded; nothing in it is trusted until [`Compact::verify`] passed.
pub struct Compact<'t> {
    pub typ: Option<String>,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signed: &'t [u8],
    signature: Vec<u8>,
}

/// Header fields looked at; serde refuses duplicates of these (no parser differential).
#[derive(Deserialize)]
struct Header {
    alg: Option<Value>,
    typ: Option<Value>,
    kid: Option<Value>,
    crit: Option<IgnoredAny>,
}

/// One RSA verification key of the set.
pub struct RsaKey {
    parsed: ParsedPublicKey,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// The OAuth server's published keys by `kid`.
#[derive(Default, Clone)]
pub struct KeySet {
    keys: HashMap<String, Arc<RsaKey>>,
}

/// Whether `token` has the shape of a compact JWS (three base64url parts): FxA's opaque tokens
/// are hex and never do.
pub fn looks_like_jwt(token: &str) -> bool {
    token.len() <= MAX_JWT_LEN
        && token.bytes().filter(|b| *b == b'.').count() == 2
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits and decodes `token`. Refuses anything but `alg: RS256` and any `crit` header.
pub fn split(token: &str) -> Result<Compact<'_>, JoseError> {
    if token.len() > MAX_JWT_LEN {
        return Err(JoseError::Malformed);
    }
    let bytes = token.as_bytes();
    let mut parts = bytes.split(|b| *b == b'.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed);
    };
    let header: Header = decode_object(header_b64)?;
    let claims: Map<String, Value> = decode_object(payload_b64)?;
    let string = |v: Option<Value>| match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JoseError::Malformed),
    };
    let alg = string(header.alg)?;
    if alg.as_deref() != Some(RS256) {
        return Err(JoseError::Algorithm);
    }
    if header.crit.is_some() {
        return Err(JoseError::Critical);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JoseError::Malformed)?;
    Ok(Compact {
        typ: string(header.typ)?,
        kid: string(header.kid)?,
        claims,
        signed: &bytes[..header_b64.len() + 1 + payload_b64.len()],
        signature,
    })
}

/// FxA's `typ` comparison (`lib/oauth/jwt.js` `normalizeTyp`, RFC 7515 §4.1.9): case-insensitive,
/// with an implicit `application/` prefix when there is no `/`.
pub fn typ_matches(typ: Option<&str>, expected: &str) -> bool {
    fn normalize(typ: &str) -> String {
        let lower = typ.to_ascii_lowercase();
        if lower.contains('/') {
            lower
        } else {
            format!("application/{lower}")
        }
    }
    typ.is_some_and(|t| normalize(t) == normalize(expected))
}

/// Strict base64url (no padding) of a JSON object.
fn decode_object<T: for<'de> Deserialize<'de>>(b64: &[u8]) -> Result<T, JoseError> {
    let json = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| JoseError::Malformed)?;
    // serde reads a JSON array into a struct positionally; a JWT part must be an object.
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(JoseError::Malformed);
    }
    serde_json::from_slice(&json).map_err(|_| JoseError::Malformed)
}

// === impl Compact ===

impl Compact<'_> {
    /// Checks the RS256 signature with `key`.
    pub fn verify(&self, key: &RsaKey) -> Result<(), JoseError> {
        key.parsed
            .verify_sig(self.signed, &self.signature)
            .map_err(|_| JoseError::Signature)
    }

    /// A string claim (absent or another type: `None`).
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A NumericDate claim (JSON number, fractions allowed, finite).
    pub fn date_claim(&self, name: &str) -> Option<f64> {
        self.claims
            .get(name)
            .and_then(Value::as_f64)
            .filter(|f| f.is_finite())
    }
}

// === impl RsaKey ===

impl RsaKey {
    /// A key from the JWK's base64url `n` and `e` (leading zero bytes tolerated).
    pub fn from_jwk_parts(n_b64: &str, e_b64: &str) -> Option<RsaKey> {
        let strip = |b64: &str| {
            let bytes = URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).ok()?;
            let first = bytes.iter().position(|b| *b != 0)?;
            Some(bytes[first..].to_vec())
        };
        let (n, e) = (strip(n_b64)?, strip(e_b64)?);
        let parsed = RsaPublicKeyComponents { n: &n, e: &e }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .ok()?;
        Some(RsaKey { parsed, n, e })
    }

    fn same_as(&self, other: &RsaKey) -> bool {
        self.n == other.n && self.e == other.e
    }
}

// === impl KeySet ===

impl KeySet {
    /// The signing keys of a `{"keys": [...]}` document: RSA keys with a `kid`, meant for
    /// signatures (`use` absent or `sig`) with `alg` absent or RS256. Others are skipped; a
    /// document that is not a key set, or holds no usable key, is `None`. `previous` lends its
    /// parsed keys to unchanged entries.
    pub fn parse(body: &[u8], previous: Option<&KeySet>) -> Option<KeySet> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let entries = value.get("keys")?.as_array()?;
        let mut keys = HashMap::new();
        for jwk in entries.iter().take(64) {
            let field = |name: &str| jwk.get(name).and_then(Value::as_str);
            let usable = field("kty") == Some("RSA")
                && field("use").is_none_or(|u| u == "sig")
                && field("alg").is_none_or(|a| a == RS256);
            let (Some(kid), Some(n), Some(e)) = (field("kid"), field("n"), field("e")) else {
                continue;
            };
            if !usable || kid.is_empty() || kid.len() > 256 {
                continue;
            }
            let Some(key) = RsaKey::from_jwk_parts(n, e) else {
                continue;
            };
            let kept = previous
                .and_then(|p| p.keys.get(kid))
                .filter(|old| old.same_as(&key))
                .cloned();
            keys.insert(kid.to_owned(), kept.unwrap_or_else(|| Arc::new(key)));
        }
        (!keys.is_empty()).then_some(KeySet { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&RsaKey> {
        self.keys.get(kid).map(|k| &**k)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key ids, sorted (for logs).
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn only_rs256_gets_past_the_header() {
        let claims = b64(r#"{"sub":"x"}"#);
        for (header, want) in [
            (r#"{"alg":"none"}"#, JoseError::Algorithm),
            (r#"{"alg":"HS256","kid":"k"}"#, JoseError::Algorithm),
            (r#"{"alg":"rs256","kid":"k"}"#, JoseError::Algorithm),
            (r#"{"kid":"k"}"#, JoseError::Algorithm),
            (r#"{"alg":"RS256","crit":["exp"]}"#, JoseError::Critical),
            (r#"["RS256"]"#, JoseError::Malformed),
            (r#"{"alg":"RS256","alg":"none"}"#, JoseError::Malformed),
        ] {
            let token = format!("{}.{claims}.c2ln", b64(header));
            assert_eq!(split(&token).err(), Some(want), "{header}");
        }
        let token = format!("{}.{claims}.c2ln", b64(r#"{"alg":"RS256","kid":"k"}"#));
        let compact = split(&token).expect("well formed");
        assert_eq!(compact.kid.as_deref(), Some("k"));
        assert_eq!(compact.str_claim("sub"), Some("x"));
    }

    #[test]
    fn typ_is_normalised_like_fxa() {
        assert!(typ_matches(Some("at+JWT"), "at+jwt"));
        assert!(typ_matches(Some("application/AT+jwt"), "at+jwt"));
        assert!(!typ_matches(Some("JWT"), "at+jwt"));
        assert!(!typ_matches(None, "at+jwt"));
    }

    #[test]
    fn the_shape_test_tells_jwts_from_opaque_tokens() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt(&"a".repeat(64)));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a+.b.c"));
    }

    #[test]
    fn key_sets_keep_only_rsa_signing_keys() {
        assert!(KeySet::parse(br#"{"keys":[]}"#, None).is_none());
        assert!(KeySet::parse(br#"{"ok":true}"#, None).is_none());
        let hs = br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#;
        assert!(KeySet::parse(hs, None).is_none());
    }
}

//! AMO JWTs on `amo-jwt-verify` routes: decode and verify. Input: a mode byte, then either a
//! raw `Authorization` value (mode even), or a JOSE header and a claims set split at the first
//! NUL (mode odd), which the target base64url-encodes and signs with the issuer's real secret,
//! so the checks after the signature (times, lifetime, `jti`, replay) are reached too.

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fxa_gateway::auth::amo_jwt::{AmoVerifier, AmoVerifierConfig, IssuerConfig, JwtRejection};
use fxa_gateway::config::Secret;
use http::header::{AUTHORIZATION, HeaderMap};
use serde_json::Value;

const ISSUER: &str = "user:12345:67";
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";
/// An issuer that accepts tokens without `jti` (web-ext style).
const LAX_ISSUER: &str = "user:999:1";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

pub fn init() {
    LazyLock::force(&RUNTIME);
}

/// A new verifier (and replay cache) for each input, so one input's `jti` cannot turn
/// another's verdict into a replay.
fn verifier() -> AmoVerifier {
    let strict = IssuerConfig::new(ISSUER, Secret::new(SECRET.to_vec()));
    let mut lax = IssuerConfig::new(LAX_ISSUER, Secret::new(SECRET.to_vec()));
    lax.require_jti = false;
    let config = AmoVerifierConfig {
        issuers: vec![strict, lax],
        replay_capacity: 64,
        ..AmoVerifierConfig::default()
    };
    AmoVerifier::new(config).expect("valid verifier settings")
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let authorization = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let (header, claims) = crate::split_at_byte(rest, 0);
        signed(header, claims)
    };
    check(&authorization);
}

/// `JWT <header>.<claims>.<HS256 signature>` with the issuers' secret.
fn signed(header: &[u8], claims: &[u8]) -> Vec<u8> {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    format!("JWT {token}").into_bytes()
}

fn check(authorization: &[u8]) {
    let verifier = verifier();
    let now = crate::now();
    let verdict = RUNTIME.block_on(verifier.verify(authorization, now));
    let Ok(issuer) = verdict else {
        let rejection = verdict.unwrap_err();
        // Safe to send: a fixed message, never token bytes.
        assert!(!rejection.message().is_empty() && !rejection.reason().is_empty());
        return;
    };
    let token = std::str::from_utf8(&authorization[4..]).expect("an accepted token is ASCII");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["alg"], "HS256");
    assert_eq!(claims["iss"], issuer.key());
    let (iat, exp) = (
        claims["iat"].as_f64().unwrap(),
        claims["exp"].as_f64().unwrap(),
    );
    let now = 1_700_000_000.0;
    assert!(exp > iat && exp - iat <= 300.0, "lifetime {}", exp - iat);
    assert!(iat <= now + 5.0 && exp >= now - 5.0, "iat {iat}, exp {exp}");
    assert!(claims.get("orig_iat").is_none());
    match claims.get("jti") {
        Some(_) => {
            // Each jti is accepted once.
            let again = RUNTIME.block_on(verifier.verify(authorization, crate::now()));
            assert_eq!(again, Err(JwtRejection::Replayed));
        }
        None => assert_eq!(issuer.key(), LAX_ISSUER),
    }
}

/// The `Authorization` fields of a request, as an `amo-jwt-verify` route reads them.
pub fn verify_headers(headers: &HeaderMap) {
    if headers.get(AUTHORIZATION).is_none() {
        return;
    }
    let verifier = verifier();
    let verdict = RUNTIME.block_on(verifier.verify_headers(headers, crate::now()));
    if verdict.is_ok() {
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
    }
}

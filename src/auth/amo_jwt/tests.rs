//! Minted tokens are checked with jsonwebtoken (independent of the aws-lc-rs signing path) and
//! with our verifier; every verifier refusal has a test. Time is always explicit.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::clock::{Clock, ManualClock};

const KEY: &str = "user:543210:23";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OTHER_KEY: &str = "user:99:1";
const OTHER_SECRET: &[u8] = b"another-secret-of-reasonable-length-000000";
const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn credential(lifetime: u64, offset: i64) -> AmoCredential {
    AmoCredential::new(
        KEY,
        &Secret::new(SECRET.to_vec()),
        Duration::from_secs(lifetime),
        offset,
    )
    .expect("valid credential")
}

fn verifier_with(issuers: Vec<IssuerConfig>) -> AmoVerifier {
    AmoVerifier::new(AmoVerifierConfig {
        issuers,
        ..AmoVerifierConfig::default()
    })
    .expect("valid verifier")
}

fn verifier() -> AmoVerifier {
    verifier_with(vec![
        IssuerConfig::new(KEY, Secret::new(SECRET.to_vec())),
        IssuerConfig::new(OTHER_KEY, Secret::new(OTHER_SECRET.to_vec())),
    ])
}

/// Any header and claims JSON, HS256-signed over exactly the encoded bytes.
fn sign_raw(header: &str, claims: &str, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

fn hs256(claims: &Value) -> String {
    sign_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims.to_string(),
        SECRET,
    )
}

/// Good claims at `T0`, with `jti` made unique per call site by the caller.
fn claims(jti: &str) -> Value {
    json!({"iss": KEY, "jti": jti, "iat": T0, "exp": T0 + 60})
}

async fn verify_token(v: &AmoVerifier, token: &str) -> Result<VerifiedIssuer, JwtRejection> {
    v.verify(format!("JWT {token}").as_bytes(), at(T0)).await
}

// === minting ===

#[test]
fn minted_token_verifies_with_an_independent_implementation() {
    let minted = credential(60, 0).mint(at(T0)).unwrap();
    let token = minted.expose();

    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_exp = false; // T0 is not the real time; exp checked by hand below
    validation.set_required_spec_claims(&["iss", "iat", "exp"]);
    validation.set_issuer(&[KEY]);
    let data = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(SECRET), &validation)
        .expect("jsonwebtoken accepts our HS256 signature");
    assert_eq!(data.header.alg, Algorithm::HS256);

    // The header is exactly the documented one, byte for byte.
    let header_b64 = token.split('.').next().unwrap();
    let header = URL_SAFE_NO_PAD.decode(header_b64).unwrap();
    assert_eq!(header, br#"{"alg":"HS256","typ":"JWT"}"#);

    let c = data.claims;
    assert_eq!(c["iss"], KEY);
    assert_eq!(c["iat"], T0);
    assert_eq!(c["exp"], T0 + 60);
    let jti = URL_SAFE_NO_PAD.decode(c["jti"].as_str().unwrap()).unwrap();
    assert_eq!(jti.len(), 16, "jti carries 128 random bits");
    assert_eq!(c.as_object().unwrap().len(), 4, "no other claims: {c}");

    let wrong = DecodingKey::from_secret(b"not the secret");
    assert!(jsonwebtoken::decode::<Value>(token, &wrong, &validation).is_err());
}

#[test]
fn minted_token_is_accepted_by_jsonwebtoken_at_the_real_time() {
    let minted = credential(300, 0).mint(SystemTime::now()).unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(
        minted.expose(),
        &DecodingKey::from_secret(SECRET),
        &validation,
    )
    .expect("not expired, valid signature");
}

#[tokio::test]
async fn minted_token_passes_our_verifier() {
    let minted = credential(60, 0).mint(at(T0)).unwrap();
    let verified = verifier()
        .verify(minted.header_value().as_bytes(), at(T0))
        .await
        .unwrap();
    assert_eq!(verified.key(), KEY);
}

#[test]
fn exp_minus_iat_is_exactly_the_configured_lifetime() {
    for lifetime in [1, 59, 60, 295, 300] {
        let clock = ManualClock::new(at(T0) + Duration::from_millis(999));
        let minted = credential(lifetime, 0).mint_now(clock.as_ref()).unwrap();
        assert_eq!(minted.issued_at(), T0, "iat floors the one clock read");
        assert_eq!(minted.expires_at() - minted.issued_at(), lifetime);
    }
}

#[test]
fn clock_offset_shifts_iat_and_exp_together() {
    let ahead = credential(60, 30).mint(at(T0)).unwrap();
    assert_eq!((ahead.issued_at(), ahead.expires_at()), (T0 + 30, T0 + 90));
    let behind = credential(60, -30).mint(at(T0)).unwrap();
    assert_eq!(
        (behind.issued_at(), behind.expires_at()),
        (T0 - 30, T0 + 30)
    );
    assert_eq!(
        credential(60, -1).mint(at(0)).unwrap_err(),
        JwtError::ClockOutOfRange
    );
    let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
    assert_eq!(
        credential(60, 0).mint(before_epoch).unwrap_err(),
        JwtError::ClockOutOfRange
    );
}

#[test]
fn credential_rejects_bad_lifetimes_and_empty_values() {
    let secret = Secret::new(SECRET.to_vec());
    for bad in [
        Duration::ZERO,
        Duration::from_secs(301),
        Duration::from_millis(1500),
    ] {
        assert_eq!(
            AmoCredential::new(KEY, &secret, bad, 0).unwrap_err(),
            JwtError::InvalidLifetime,
            "{bad:?}"
        );
    }
    assert!(AmoCredential::new(KEY, &secret, MAX_LIFETIME, 0).is_ok());
    assert!(AmoCredential::new(KEY, &secret, DEFAULT_LIFETIME, 0).is_ok());
    assert_eq!(
        AmoCredential::new("", &secret, DEFAULT_LIFETIME, 0).unwrap_err(),
        JwtError::EmptyKey
    );
    assert_eq!(
        AmoCredential::new(KEY, &Secret::new(vec![]), DEFAULT_LIFETIME, 0).unwrap_err(),
        JwtError::EmptySecret
    );
}

#[test]
fn ten_thousand_minted_tokens_have_distinct_jtis() {
    let cred = credential(60, 0);
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let minted = cred.mint(at(T0)).unwrap();
        let payload = minted.expose().split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(seen.insert(claims["jti"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 10_000);
}

#[test]
fn token_and_secret_never_show_in_debug_and_header_is_sensitive() {
    let cred = credential(60, 0);
    let minted = cred.mint(at(T0)).unwrap();
    let secret = std::str::from_utf8(SECRET).unwrap();
    for debug in [
        format!("{minted:?}"),
        format!("{cred:?}"),
        format!("{:?}", verifier()),
    ] {
        assert!(!debug.contains(minted.expose()), "{debug}");
        assert!(!debug.contains(secret), "{debug}");
        for part in minted.expose().split('.').skip(1) {
            assert!(!debug.contains(part), "{debug}");
        }
    }
    let header = minted.header_value();
    assert!(header.is_sensitive());
    assert_eq!(header.to_str().unwrap(), format!("JWT {}", minted.expose()));
}

// === verifier: accepted forms ===

#[tokio::test]
async fn jsonwebtoken_encoded_token_is_accepted() {
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims("jwe-1"),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(verify_token(&verifier(), &token).await.unwrap().key(), KEY);
}

#[tokio::test]
async fn lowercase_scheme_and_missing_or_lowercase_typ_are_accepted() {
    let v = verifier();
    let token = hs256(&claims("lower-1"));
    assert!(
        v.verify(format!("jwt {token}").as_bytes(), at(T0))
            .await
            .is_ok()
    );
    let token = hs256(&claims("lower-2"));
    assert!(
        v.verify(format!("JwT {token}").as_bytes(), at(T0))
            .await
            .is_ok()
    );
    let no_typ = sign_raw(r#"{"alg":"HS256"}"#, &claims("typ-1").to_string(), SECRET);
    assert!(verify_token(&v, &no_typ).await.is_ok());
    let lower_typ = sign_raw(
        r#"{"typ":"jwt","alg":"HS256","kid":"x"}"#,
        &claims("typ-2").to_string(),
        SECRET,
    );
    assert!(verify_token(&v, &lower_typ).await.is_ok());
}

#[tokio::test]
async fn second_issuer_uses_its_own_secret() {
    let v = verifier();
    let c = json!({"iss": OTHER_KEY, "jti": "o-1", "iat": T0, "exp": T0 + 300});
    let token = sign_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &c.to_string(),
        OTHER_SECRET,
    );
    assert_eq!(verify_token(&v, &token).await.unwrap().key(), OTHER_KEY);
    let signed_with_first = hs256(&c);
    assert_eq!(
        verify_token(&v, &signed_with_first).await,
        Err(JwtRejection::BadSignature)
    );
}

#[tokio::test]
async fn non_integer_numeric_dates_are_accepted() {
    let c = json!({"iss": KEY, "jti": "f-1", "iat": T0 as f64 + 0.25, "exp": T0 as f64 + 60.5});
    assert!(verify_token(&verifier(), &hs256(&c)).await.is_ok());
}

// === verifier: refusals ===

async fn assert_rejected(token: &str, want: JwtRejection) {
    assert_eq!(verify_token(&verifier(), token).await, Err(want), "{token}");
}

#[tokio::test]
async fn wrong_secret_or_tampering_is_refused() {
    let c = claims("sig-1");
    let wrong = sign_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &c.to_string(),
        b"wrong secret",
    );
    assert_rejected(&wrong, JwtRejection::BadSignature).await;

    let good = hs256(&c);
    let (signing_input, sig) = good.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[0] ^= 1;
    let flipped = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert_rejected(&flipped, JwtRejection::BadSignature).await;
    let truncated = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&sig[..31]));
    assert_rejected(&truncated, JwtRejection::BadSignature).await;
    let empty_sig = format!("{signing_input}.");
    assert_rejected(&empty_sig, JwtRejection::BadSignature).await;

    let other_payload = URL_SAFE_NO_PAD.encode(claims("sig-2").to_string());
    let parts: Vec<&str> = good.split('.').collect();
    let swapped = format!("{}.{other_payload}.{}", parts[0], parts[2]);
    assert_rejected(&swapped, JwtRejection::BadSignature).await;
}

#[tokio::test]
async fn any_alg_but_hs256_is_refused() {
    let c = claims("alg-1").to_string();
    let payload = URL_SAFE_NO_PAD.encode(&c);
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        assert_rejected(
            &format!("{header}.{payload}."),
            JwtRejection::UnsupportedAlgorithm,
        )
        .await;
    }
    // HMAC-signed with the secret but labelled otherwise: no alg confusion.
    for header in [
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"alg":"ES256","typ":"JWT"}"#,
        r#"{"alg":"hs256","typ":"JWT"}"#,
        r#"{"alg":"HS256 ","typ":"JWT"}"#,
        r#"{"alg":["HS256"],"typ":"JWT"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        assert_rejected(
            &sign_raw(header, &c, SECRET),
            JwtRejection::UnsupportedAlgorithm,
        )
        .await;
    }
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims("alg-2"),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_rejected(&token, JwtRejection::UnsupportedAlgorithm).await;
    }
}

#[tokio::test]
async fn other_typ_and_crit_headers_are_refused() {
    let c = claims("typ-3").to_string();
    let typ = sign_raw(r#"{"alg":"HS256","typ":"at+jwt"}"#, &c, SECRET);
    assert_rejected(&typ, JwtRejection::UnsupportedType).await;
    let crit = sign_raw(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, &c, SECRET);
    assert_rejected(&crit, JwtRejection::CriticalHeader).await;
}

#[tokio::test]
async fn missing_or_mistyped_claims_are_refused() {
    use JwtRejection::*;
    let cases = [
        (
            json!({"jti": "m-1", "iat": T0, "exp": T0 + 60}),
            MissingIssuer,
        ),
        (
            json!({"iss": 7, "jti": "m-2", "iat": T0, "exp": T0 + 60}),
            WrongClaimType,
        ),
        (
            json!({"iss": KEY, "jti": "m-3", "exp": T0 + 60}),
            MissingIssuedAt,
        ),
        (json!({"iss": KEY, "jti": "m-4", "iat": T0}), MissingExpiry),
        (
            json!({"iss": KEY, "jti": "m-5", "iat": T0.to_string(), "exp": T0 + 60}),
            WrongClaimType,
        ),
        (
            json!({"iss": KEY, "jti": "m-6", "iat": T0, "exp": (T0 + 60).to_string()}),
            WrongClaimType,
        ),
        (
            json!({"iss": KEY, "jti": "m-7", "iat": null, "exp": T0 + 60}),
            MissingIssuedAt,
        ),
        (
            json!({"iss": KEY, "jti": "m-8", "iat": true, "exp": T0 + 60}),
            WrongClaimType,
        ),
        (
            json!({"iss": KEY, "jti": 8, "iat": T0, "exp": T0 + 60}),
            WrongClaimType,
        ),
        (
            json!({"iss": KEY, "jti": "", "iat": T0, "exp": T0 + 60}),
            InvalidJti,
        ),
        (
            json!({"iss": KEY, "jti": "x".repeat(257), "iat": T0, "exp": T0 + 60}),
            InvalidJti,
        ),
        (json!({"iss": KEY, "iat": T0, "exp": T0 + 60}), MissingJti),
        (
            json!({"iss": "user:0:0", "jti": "m-9", "iat": T0, "exp": T0 + 60}),
            UnknownIssuer,
        ),
        (
            json!({"iss": KEY, "jti": "m-10", "iat": T0, "exp": T0 + 60, "orig_iat": T0}),
            Refreshable,
        ),
    ];
    for (c, want) in cases {
        assert_eq!(
            verify_token(&verifier(), &hs256(&c)).await,
            Err(want),
            "{c}"
        );
    }
    let longest = json!({"iss": KEY, "jti": "x".repeat(256), "iat": T0, "exp": T0 + 60});
    assert!(verify_token(&verifier(), &hs256(&longest)).await.is_ok());
}

#[tokio::test]
async fn lifetime_over_300_or_not_positive_is_refused() {
    use JwtRejection::*;
    let v = verifier();
    let with = |jti: &str, iat: u64, exp: u64| {
        hs256(&json!({"iss": KEY, "jti": jti, "iat": iat, "exp": exp}))
    };
    assert_eq!(
        verify_token(&v, &with("l-1", T0, T0 + 301)).await,
        Err(LifetimeTooLong)
    );
    assert!(verify_token(&v, &with("l-2", T0, T0 + 300)).await.is_ok());
    assert_eq!(
        verify_token(&v, &with("l-3", T0, T0)).await,
        Err(NonPositiveLifetime)
    );
    assert_eq!(
        verify_token(&v, &with("l-4", T0, T0 - 1)).await,
        Err(NonPositiveLifetime)
    );
    let fractional = json!({"iss": KEY, "jti": "l-5", "iat": T0, "exp": T0 as f64 + 300.5});
    assert_eq!(
        verify_token(&v, &hs256(&fractional)).await,
        Err(LifetimeTooLong)
    );
}

#[tokio::test]
async fn iat_in_the_future_is_refused_beyond_the_leeway_only() {
    let v = verifier();
    let with =
        |jti: &str, iat: u64| hs256(&json!({"iss": KEY, "jti": jti, "iat": iat, "exp": iat + 60}));
    assert!(verify_token(&v, &with("f-1", T0 + 5)).await.is_ok());
    assert_eq!(
        verify_token(&v, &with("f-2", T0 + 6)).await,
        Err(JwtRejection::IssuedInFuture)
    );
}

#[tokio::test]
async fn expired_token_is_refused_beyond_the_leeway_only() {
    let v = verifier();
    let with =
        |jti: &str, exp: u64| hs256(&json!({"iss": KEY, "jti": jti, "iat": exp - 60, "exp": exp}));
    assert!(verify_token(&v, &with("e-1", T0 - 5)).await.is_ok());
    assert_eq!(
        verify_token(&v, &with("e-2", T0 - 6)).await,
        Err(JwtRejection::Expired)
    );
}

#[tokio::test]
async fn configured_leeway_and_max_lifetime_apply() {
    let v = AmoVerifier::new(AmoVerifierConfig {
        issuers: vec![IssuerConfig::new(KEY, Secret::new(SECRET.to_vec()))],
        leeway: Duration::ZERO,
        max_lifetime: Duration::from_secs(60),
        ..AmoVerifierConfig::default()
    })
    .unwrap();
    let future = hs256(&json!({"iss": KEY, "jti": "c-1", "iat": T0 + 1, "exp": T0 + 61}));
    assert_eq!(
        verify_token(&v, &future).await,
        Err(JwtRejection::IssuedInFuture)
    );
    let long = hs256(&json!({"iss": KEY, "jti": "c-2", "iat": T0, "exp": T0 + 61}));
    assert_eq!(
        verify_token(&v, &long).await,
        Err(JwtRejection::LifetimeTooLong)
    );
}

// === replay ===

#[tokio::test]
async fn a_jti_is_accepted_once_per_issuer_until_it_expires() {
    let v = verifier();
    let clock = ManualClock::new(at(T0));
    let token = hs256(&claims("r-1"));
    let header = format!("JWT {token}");
    assert!(v.verify(header.as_bytes(), clock.now()).await.is_ok());
    assert_eq!(
        v.verify(header.as_bytes(), clock.now()).await,
        Err(JwtRejection::Replayed)
    );
    // Same jti from another issuer is a different nonce.
    let other = json!({"iss": OTHER_KEY, "jti": "r-1", "iat": T0, "exp": T0 + 60});
    let other = sign_raw(r#"{"alg":"HS256"}"#, &other.to_string(), OTHER_SECRET);
    assert!(verify_token(&v, &other).await.is_ok());

    // Past exp + leeway the token is expired, not replayed; a new token may reuse the jti.
    clock.advance(Duration::from_secs(66));
    assert_eq!(
        v.verify(header.as_bytes(), clock.now()).await,
        Err(JwtRejection::Expired)
    );
    let later = T0 + 66;
    let reused = hs256(&json!({"iss": KEY, "jti": "r-1", "iat": later, "exp": later + 60}));
    let reused = format!("JWT {reused}");
    assert!(v.verify(reused.as_bytes(), clock.now()).await.is_ok());
    assert_eq!(
        v.verify(reused.as_bytes(), clock.now()).await,
        Err(JwtRejection::Replayed)
    );
}

#[tokio::test]
async fn concurrent_replays_let_exactly_one_through() {
    let v = std::sync::Arc::new(verifier());
    let header = format!("JWT {}", hs256(&claims("race-1")));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (v, header) = (v.clone(), header.clone());
            tokio::spawn(async move { v.verify(header.as_bytes(), at(T0)).await.is_ok() })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += usize::from(task.await.unwrap());
    }
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn missing_jti_is_accepted_and_replayable_only_where_allowed() {
    let no_jti = hs256(&json!({"iss": KEY, "iat": T0, "exp": T0 + 60}));
    assert_eq!(
        verify_token(&verifier(), &no_jti).await,
        Err(JwtRejection::MissingJti)
    );
    let mut lax = IssuerConfig::new(KEY, Secret::new(SECRET.to_vec()));
    lax.require_jti = false;
    let v = verifier_with(vec![lax]);
    assert!(verify_token(&v, &no_jti).await.is_ok());
    assert!(
        verify_token(&v, &no_jti).await.is_ok(),
        "documented: replayable until exp"
    );
    // A jti that is present is still checked for replay.
    let with_jti = hs256(&claims("lax-1"));
    assert!(verify_token(&v, &with_jti).await.is_ok());
    assert_eq!(
        verify_token(&v, &with_jti).await,
        Err(JwtRejection::Replayed)
    );
}

// === malformed input ===

#[tokio::test]
async fn malformed_authorization_headers_are_refused() {
    use JwtRejection::*;
    let v = verifier();
    let good = hs256(&claims("h-1"));
    let cases: Vec<(String, JwtRejection)> = vec![
        ("JWT".into(), InvalidHeader),
        ("JWT ".into(), InvalidHeader),
        ("JWT  x".into(), InvalidHeader),
        (format!("JWT  {good}"), InvalidHeader),
        (format!("JWT {good} "), InvalidHeader),
        (format!("JWT\t{good}"), InvalidHeader),
        (format!("JWT{good}"), InvalidHeader),
        (format!("Bearer {good}"), InvalidHeader),
        (format!("JWTX {good}"), InvalidHeader),
        ("".into(), InvalidHeader),
        ("JWT x".into(), Malformed),
        ("JWT a.b".into(), Malformed),
        (format!("JWT {good}.extra"), Malformed),
        ("JWT ..".into(), Malformed),
        (format!("JWT {}", good.replacen('.', "+.", 1)), Malformed),
        (format!("JWT {good}="), Malformed),
        (
            format!("JWT {}", "a".repeat(MAX_AUTHORIZATION_LEN)),
            TooLarge,
        ),
    ];
    for (header, want) in cases {
        assert_eq!(
            v.verify(header.as_bytes(), at(T0)).await,
            Err(want),
            "{header:.40}"
        );
    }
    assert_eq!(v.verify(b"JWT \xff\xfe.a.b", at(T0)).await, Err(Malformed));
}

#[tokio::test]
async fn parts_that_are_not_json_objects_are_refused() {
    let array = sign_raw(
        r#"{"alg":"HS256"}"#,
        &format!(r#"["{KEY}","j",{T0},{}]"#, T0 + 60),
        SECRET,
    );
    assert_rejected(&array, JwtRejection::Malformed).await;
    let dup_alg = sign_raw(
        r#"{"alg":"none","alg":"HS256"}"#,
        &claims("d-1").to_string(),
        SECRET,
    );
    assert_rejected(&dup_alg, JwtRejection::Malformed).await;
    let dup_iss = format!(
        r#"{{"iss":"{KEY}","iss":"{OTHER_KEY}","jti":"d-2","iat":{T0},"exp":{}}}"#,
        T0 + 60
    );
    assert_rejected(
        &sign_raw(r#"{"alg":"HS256"}"#, &dup_iss, SECRET),
        JwtRejection::Malformed,
    )
    .await;
    let not_json = sign_raw(r#"{"alg":"HS256"}"#, "not json", SECRET);
    assert_rejected(&not_json, JwtRejection::Malformed).await;
}

#[tokio::test]
async fn verify_headers_wants_exactly_one_authorization() {
    let v = verifier();
    let mut headers = http::HeaderMap::new();
    assert_eq!(
        v.verify_headers(&headers, at(T0)).await,
        Err(JwtRejection::MissingHeader)
    );
    let value = http::HeaderValue::try_from(format!("JWT {}", hs256(&claims("vh-1")))).unwrap();
    headers.append(http::header::AUTHORIZATION, value.clone());
    headers.append(http::header::AUTHORIZATION, value);
    assert_eq!(
        v.verify_headers(&headers, at(T0)).await,
        Err(JwtRejection::InvalidHeader)
    );
    headers.remove(http::header::AUTHORIZATION);
    let minted = credential(60, 0).mint(at(T0)).unwrap();
    headers.insert(http::header::AUTHORIZATION, minted.header_value());
    assert_eq!(v.verify_headers(&headers, at(T0)).await.unwrap().key(), KEY);
}

#[test]
fn rejection_messages_and_reasons_are_distinct_and_static() {
    use JwtRejection::*;
    let all = [
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
    ];
    let messages: HashSet<_> = all.iter().map(|r| r.message()).collect();
    let reasons: HashSet<_> = all.iter().map(|r| r.reason()).collect();
    assert_eq!((messages.len(), reasons.len()), (all.len(), all.len()));
    assert_eq!(Expired.to_string(), "JWT has expired");
}

#[test]
fn verifier_config_is_validated() {
    let issuer = || IssuerConfig::new(KEY, Secret::new(SECRET.to_vec()));
    let build = |f: &dyn Fn(&mut AmoVerifierConfig)| {
        let mut config = AmoVerifierConfig {
            issuers: vec![issuer()],
            ..AmoVerifierConfig::default()
        };
        f(&mut config);
        AmoVerifier::new(config).map(|_| ())
    };
    assert_eq!(build(&|_| {}), Ok(()));
    assert_eq!(build(&|c| c.issuers.clear()), Err(JwtError::NoIssuers));
    assert_eq!(
        build(&|c| c.issuers.push(issuer())),
        Err(JwtError::DuplicateIssuer(KEY.into()))
    );
    assert_eq!(
        build(&|c| c.issuers[0].secret = Secret::new(vec![])),
        Err(JwtError::EmptySecret)
    );
    assert_eq!(
        build(&|c| c.issuers[0].key.clear()),
        Err(JwtError::EmptyKey)
    );
    assert_eq!(
        build(&|c| c.leeway = Duration::from_secs(61)),
        Err(JwtError::InvalidLeeway)
    );
    assert_eq!(
        build(&|c| c.max_lifetime = Duration::from_secs(301)),
        Err(JwtError::InvalidLifetime)
    );
    assert_eq!(
        build(&|c| c.max_lifetime = Duration::ZERO),
        Err(JwtError::InvalidLifetime)
    );
    assert_eq!(
        build(&|c| c.replay_capacity = 0),
        Err(JwtError::ZeroReplayCapacity)
    );
}

// === properties ===

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #[test]
    fn arbitrary_authorization_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let v = verifier();
        let result = runtime().block_on(v.verify(&bytes, at(T0)));
        prop_assert!(result.is_err());
    }

    #[test]
    fn arbitrary_jwt_shaped_tokens_never_panic(
        parts in proptest::collection::vec("[A-Za-z0-9_\\-]{0,64}", 0..5),
    ) {
        let v = verifier();
        let header = format!("JWT {}", parts.join("."));
        let result = runtime().block_on(v.verify(header.as_bytes(), at(T0)));
        prop_assert!(result.is_err());
    }

    #[test]
    fn arbitrary_signed_parts_never_panic(header in ".{0,64}", claims in ".{0,128}") {
        let v = verifier();
        let token = sign_raw(&header, &claims, SECRET);
        let _ = runtime().block_on(verify_token(&v, &token));
    }

    #[test]
    fn arbitrary_numeric_dates_never_panic(iat in any::<f64>(), exp in any::<i64>(), jti in ".{0,300}") {
        let v = verifier();
        let token = hs256(&json!({"iss": KEY, "jti": jti, "iat": iat, "exp": exp}));
        let _ = runtime().block_on(verify_token(&v, &token));
    }
}

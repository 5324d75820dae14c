//! Per-operation cost of AMO JWT minting and verifying (target: both under 10 µs).
//!
//! `verify` includes the replay-cache insert (each iteration gets a freshly minted token, minted
//! outside the timed section); `verify_without_jti` is the same path without the cache.
//! A run this long fills the default 100 000-entry cache, so `verify` is measured in the
//! evicting regime (~8 µs here; ~4 µs while the cache is below capacity).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fxa_gateway::auth::amo_jwt::{AmoCredential, AmoVerifier, AmoVerifierConfig, IssuerConfig};
use fxa_gateway::config::Secret;

const KEY: &str = "user:543210:23";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn verifier(require_jti: bool) -> AmoVerifier {
    let mut issuer = IssuerConfig::new(KEY, Secret::new(SECRET.to_vec()));
    issuer.require_jti = require_jti;
    AmoVerifier::new(AmoVerifierConfig {
        issuers: vec![issuer],
        ..AmoVerifierConfig::default()
    })
    .expect("valid verifier")
}

fn amo_jwt(c: &mut Criterion) {
    let credential = AmoCredential::new(
        KEY,
        &Secret::new(SECRET.to_vec()),
        Duration::from_secs(60),
        0,
    )
    .expect("valid credential");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    c.bench_function("amo_jwt/mint", |b| {
        b.iter(|| black_box(credential.mint(black_box(SystemTime::now())).expect("mint")))
    });

    let with_jti = verifier(true);
    c.bench_function("amo_jwt/verify", |b| {
        b.to_async(&rt).iter_batched(
            || {
                credential
                    .mint(SystemTime::now())
                    .expect("mint")
                    .header_value()
            },
            |header| {
                let v = &with_jti;
                async move {
                    let verified = v.verify(header.as_bytes(), SystemTime::now()).await;
                    black_box(verified.expect("verifies"))
                }
            },
            BatchSize::SmallInput,
        )
    });

    // The pure checks: a token without jti is never remembered, so one token serves all runs.
    let without_jti = verifier(false);
    let token = no_jti_token(SystemTime::now());
    c.bench_function("amo_jwt/verify_without_jti", |b| {
        b.to_async(&rt).iter(|| async {
            let verified = without_jti
                .verify(token.as_bytes(), SystemTime::now())
                .await;
            black_box(verified.expect("verifies"))
        })
    });
}

/// `JWT <token>` with `iss`, `iat`, `exp` only, valid for five minutes from `now`.
fn no_jti_token(now: SystemTime) -> String {
    use aws_lc_rs::hmac;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    let claims = format!(r#"{{"iss":"{KEY}","iat":{iat},"exp":{}}}"#, iat + 300);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
    format!("JWT {input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

criterion_group!(benches, amo_jwt);
criterion_main!(benches);

//! FxA's signed JWTs for tests: RSA keys generated at test time, the JWK set the OAuth server
//! publishes, JWT access tokens and the event broker's Security Event Tokens signed with them
//! (and the forgeries a verifier must refuse), and [`FakeFxa`], an OAuth server behind a
//! [`FakeUpstream`] that serves `/v1/jwks` and answers `/v1/introspect` and `/v1/token` the
//! way FxA does for JWTs:
//!
//! - a JWT access token living at most six hours is not stored (fxa `lib/oauth/db/index.js`
//!   `generateAccessToken`), so introspection answers `{"active": false}` for it, valid or not;
//! - a longer-lived one is stored: `active: true` with the account uid as `sub` (never a
//!   pairwise id) and milliseconds `iat`/`exp`, until it is revoked;
//! - opaque tokens answer what the test granted, until revoked.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::fake::{FakeUpstream, RecordedRequest, Reply};

pub const CLIENT_ID: &str = "5882386c6d801776";
pub const ISSUER: &str = "https://accounts.firefox.com";
pub const SET_ISSUER: &str = "https://accounts.firefox.com/";
pub const PASSWORD_CHANGE: &str = "https://schemas.accounts.firefox.com/event/password-change";
pub const DELETE_USER: &str = "https://schemas.accounts.firefox.com/event/delete-user";
pub const PROFILE_CHANGE: &str = "https://schemas.accounts.firefox.com/event/profile-change";
pub const SUBSCRIPTION_CHANGE: &str =
    "https://schemas.accounts.firefox.com/event/subscription-state-change";
/// FxA's `SHORT_ACCESS_TOKEN_TTL_IN_MS`.
pub const SHORT_LIVED_SECS: u64 = 6 * 3600;

/// An RSA signing key with its `kid`, generated at test time.
pub struct SigningKey {
    pub kid: String,
    pair: KeyPair,
}

impl SigningKey {
    pub fn generate(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.to_owned(),
            pair: KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"),
        }
    }

    /// The public JWK as `/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The public key's DER (what an HS256 key-confusion forgery uses as its secret).
    pub fn public_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// A compact JWS over `header` (its `alg`/`kid` as given) and `claims`, RS256-signed.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing");
        format!("{input}.{}", b64(&sig))
    }

    /// An FxA JWT access token with `claims`.
    pub fn access_token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": "RS256", "typ": "at+JWT", "kid": self.kid}),
            claims,
        )
    }

    /// An event broker SET with `claims` (no `typ`, as fxa-jwtool signs).
    pub fn set(&self, claims: &Value) -> String {
        self.sign(&json!({"alg": "RS256", "kid": self.kid}), claims)
    }
}

/// The gateway config the security-event tests share: the fake FxA (`oauth`) as OAuth server
/// with `oauth_timeout`, the RP's webhook (`rp`) behind `/events`, a bearer route to `api`
/// behind `/api`; `events` goes into `[security_events]`, `extra` (more sections) at the end;
/// `refresh` adds `[refresh]` and turns refresh on for the bearer route.
pub fn events_config(
    oauth: &str,
    rp: &str,
    api: &str,
    oauth_timeout: &str,
    refresh: bool,
    events: &str,
    extra: &str,
) -> String {
    let (refresh_section, refresh_route) = if refresh {
        (
            format!("[refresh]\nclient_id = \"{CLIENT_ID}\"\n"),
            "refresh = true",
        )
    } else {
        (String::new(), "")
    };
    format!(
        r#"
[server]
drain_timeout = "1s"

[[listeners]]
name = "test"
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "oauth"
url = "{oauth}"
connect_timeout = "1s"
response_timeout = "{oauth_timeout}"

[[upstreams]]
name = "rp"
url = "{rp}"
connect_timeout = "1s"
response_timeout = "2s"

[[upstreams]]
name = "api"
url = "{api}"
connect_timeout = "1s"
response_timeout = "2s"

[bearer]
oauth_upstream = "oauth"
cache_max_ttl = "5m"

[jwt]
jwks_refetch_interval = "300ms"

{refresh_section}
[security_events]
client_id = "{CLIENT_ID}"
leeway = "60s"
max_age = "1h"
{events}

[[routes]]
name = "webhook"
path_prefix = "/events"
upstream = "rp"
methods = ["POST"]
auth = "security-events"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
auth = {{ policy = "bearer", scopes = ["profile"] }}
{refresh_route}

{extra}
"#
    )
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// `alg: none`, no signature.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// HS256 with the RSA public key as the HMAC secret (key confusion).
pub fn hs256_with(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!(
        "{input}.{}",
        b64(hmac::sign(&key, input.as_bytes()).as_ref())
    )
}

/// The token with its payload swapped for `claims`, signature kept.
pub fn with_claims(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    parts.next();
    let sig = parts.next().expect("signature");
    format!("{header}.{}.{sig}", b64(claims.to_string()))
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64
}

/// Access-token claims as FxA's `jwt_access_token.js` makes them: `iat` = `now`, living
/// `lifetime` seconds.
pub fn claims(sub: &str, scope: &str, now: SystemTime, lifetime: u64) -> Value {
    let iat = unix(now);
    json!({
        "aud": CLIENT_ID, "client_id": CLIENT_ID, "iss": ISSUER, "iat": iat,
        "exp": iat + lifetime, "jti": format!("{:064x}", iat as u128 * 7919 + lifetime as u128),
        "scope": scope, "sub": sub,
    })
}

/// SET claims as the broker's `jwtset.service.ts` makes them (`iat` fractional).
pub fn set_claims(uid: &str, events: Value, now: SystemTime, jti: &str) -> Value {
    let iat = now
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    json!({
        "iss": SET_ISSUER, "aud": CLIENT_ID, "sub": uid, "iat": iat, "jti": jti,
        "events": events,
    })
}

/// What the fake OAuth server knows and counts.
#[derive(Default)]
struct FxaState {
    jwks: Value,
    jwks_down: bool,
    /// Opaque tokens: token → introspection answer.
    opaque: HashMap<String, Value>,
    revoked: HashSet<String>,
    introspect_down: bool,
    /// Access token the next `/v1/token` refresh grant hands out.
    next_token: Option<(String, u64)>,
    /// Answers of `/v1/token` and `/v1/introspect` are decided on arrival and sent this late.
    token_delay: Duration,
    introspect_delay: Duration,
    /// Headers added to `/v1/jwks` answers.
    jwks_headers: Vec<(String, String)>,
}

/// The fake FxA OAuth server (the "pairwise id" case: a JWT may carry an `fxa-test-uid`
/// claim, the account uid introspection reports instead of its `sub`).
pub struct FakeFxa {
    pub server: FakeUpstream,
    state: Arc<Mutex<FxaState>>,
    jwks_fetches: Arc<AtomicUsize>,
    introspections: Arc<AtomicUsize>,
    token_calls: Arc<AtomicUsize>,
    cache_control: Arc<Mutex<String>>,
}

impl FakeFxa {
    pub async fn start(keys: &[&SigningKey]) -> FakeFxa {
        let server = FakeUpstream::start().await;
        let state = Arc::new(Mutex::new(FxaState {
            jwks: jwks(keys),
            ..FxaState::default()
        }));
        let fxa = FakeFxa {
            server,
            state,
            jwks_fetches: Arc::default(),
            introspections: Arc::default(),
            token_calls: Arc::default(),
            cache_control: Arc::new(Mutex::new("public, max-age=10".to_owned())),
        };
        let (state, count, cc) = (
            fxa.state.clone(),
            fxa.jwks_fetches.clone(),
            fxa.cache_control.clone(),
        );
        fxa.server.on_fn("/v1/jwks", move |_| {
            count.fetch_add(1, Ordering::SeqCst);
            let state = state.lock().unwrap();
            if state.jwks_down {
                return Reply::new()
                    .status(503)
                    .json(json!({"code": 503, "errno": 999}));
            }
            let mut reply = Reply::new()
                .json(state.jwks.clone())
                .header("cache-control", &cc.lock().unwrap());
            for (name, value) in &state.jwks_headers {
                reply = reply.header(name, value);
            }
            reply
        });
        let (state, count) = (fxa.state.clone(), fxa.introspections.clone());
        fxa.server.on_fn("/v1/introspect", move |req| {
            count.fetch_add(1, Ordering::SeqCst);
            let state = state.lock().unwrap();
            if state.introspect_down {
                return Reply::new().status(503).body("down");
            }
            Reply::new()
                .json(introspect(&state, &form_field(req, "token")))
                .delay(state.introspect_delay)
        });
        let (state, count) = (fxa.state.clone(), fxa.token_calls.clone());
        fxa.server.on_fn("/v1/token", move |_| {
            count.fetch_add(1, Ordering::SeqCst);
            let state = state.lock().unwrap();
            match &state.next_token {
                Some((token, expires_in)) => Reply::new()
                    .json(json!({
                        "access_token": token, "token_type": "bearer",
                        "scope": "profile", "expires_in": expires_in,
                    }))
                    .delay(state.token_delay),
                None => Reply::new()
                    .status(400)
                    .json(json!({"code": 400, "errno": 108, "message": "Invalid token"})),
            }
        });
        fxa
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Publishes exactly these keys from now on.
    pub fn publish(&self, keys: &[&SigningKey]) {
        self.state.lock().unwrap().jwks = jwks(keys);
    }

    pub fn set_jwks_down(&self, down: bool) {
        self.state.lock().unwrap().jwks_down = down;
    }

    pub fn set_introspect_down(&self, down: bool) {
        self.state.lock().unwrap().introspect_down = down;
    }

    pub fn set_cache_control(&self, value: &str) {
        *self.cache_control.lock().unwrap() = value.to_owned();
    }

    /// An opaque token of `sub` with `scope`, issued at `iat`, living an hour.
    pub fn grant_opaque(&self, token: &str, sub: &str, scope: &str, iat: SystemTime) {
        let iat_ms = unix_ms(iat);
        self.state.lock().unwrap().opaque.insert(
            token.to_owned(),
            json!({
                "active": true, "scope": scope, "client_id": CLIENT_ID,
                "token_type": "access_token", "sub": sub, "iat": iat_ms,
                "exp": iat_ms + 3_600_000, "jti": "00",
            }),
        );
    }

    /// FxA revokes `token` (it introspects as inactive from now on).
    pub fn revoke(&self, token: &str) {
        self.state.lock().unwrap().revoked.insert(token.to_owned());
    }

    /// What the next refresh grant hands out.
    pub fn next_refresh(&self, token: &str, expires_in: u64) {
        self.state.lock().unwrap().next_token = Some((token.to_owned(), expires_in));
    }

    /// `/v1/token` grants are decided on arrival and answered `delay` later.
    pub fn set_token_delay(&self, delay: Duration) {
        self.state.lock().unwrap().token_delay = delay;
    }

    /// `/v1/introspect` answers are decided on arrival and sent `delay` later.
    pub fn set_introspect_delay(&self, delay: Duration) {
        self.state.lock().unwrap().introspect_delay = delay;
    }

    /// Adds a header to every `/v1/jwks` answer.
    pub fn add_jwks_header(&self, name: &str, value: &str) {
        let mut state = self.state.lock().unwrap();
        state.jwks_headers.push((name.to_owned(), value.to_owned()));
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn introspections(&self) -> usize {
        self.introspections.load(Ordering::SeqCst)
    }

    pub fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }

    /// Waits (real time, up to 5 s) until `f` holds.
    pub async fn until(&self, what: &str, f: impl Fn(&FakeFxa) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

fn form_field(req: &RecordedRequest, name: &str) -> String {
    req.form_field(name).unwrap_or_default()
}

/// FxA's `/v1/introspect` for `token` (the fake trusts its own JWTs without verifying them).
fn introspect(state: &FxaState, token: &str) -> Value {
    if state.revoked.contains(token) {
        return json!({"active": false});
    }
    if let Some(answer) = state.opaque.get(token) {
        return answer.clone();
    }
    let Some(claims) = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return json!({"active": false});
    };
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return json!({"active": false});
    };
    if exp - iat <= SHORT_LIVED_SECS {
        // Never stored: introspection cannot find it.
        return json!({"active": false});
    }
    let uid = claims.get("fxa-test-uid").or(claims.get("sub")).cloned();
    json!({
        "active": true,
        "scope": claims["scope"], "client_id": claims["client_id"],
        "token_type": "access_token", "sub": uid, "iat": iat * 1000, "exp": exp * 1000,
        "jti": claims["jti"],
    })
}

/// Verifies an RS256 JWS with `key` (tests checking what they built).
pub fn verifies(key: &SigningKey, token: &str) -> bool {
    let (input, sig) = token.rsplit_once('.').expect("compact JWS");
    let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
    signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        key.pair.public_key().as_ref(),
    )
    .verify(input.as_bytes(), &sig)
    .is_ok()
}

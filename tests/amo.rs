//! AMO JWT policies end to end: `amo-jwt` mints a fresh HS256 JWT per request (checked here
//! with jsonwebtoken, independent of the gateway's own signing code), `amo-jwt-verify` checks
//! callers' JWTs.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use support::client;
use support::fake::{FakeUpstream, Reply};
use support::{TestGateway, config_with};

const SECRET_A: &str = "amo-secret-a-0123456789abcdef0123456789abcdef";
const SECRET_B: &str = "amo-secret-b-0123456789abcdef0123456789abcdef";
const ISSUER_SECRET: &str = "issuer-secret-0123456789abcdef0123456789abcdef";

fn write_secrets(dir: &Path) {
    std::fs::write(dir.join("a.secret"), SECRET_A).unwrap();
    std::fs::write(dir.join("b.secret"), SECRET_B).unwrap();
    std::fs::write(dir.join("issuer.secret"), ISSUER_SECRET).unwrap();
}

async fn start(fake: &FakeUpstream) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let extra = r#"
[[amo_credentials]]
name = "main"
api_key = "user:1:1"
secret = { file = "a.secret" }
lifetime = "60s"

[[amo_credentials]]
name = "second"
api_key = "user:2:2"
secret = { file = "b.secret" }
lifetime = "300s"
selectable_from_listeners = ["test"]

[[amo_credentials]]
name = "elsewhere"
api_key = "user:3:3"
secret = { file = "b.secret" }
selectable_from_peers = ["192.0.2.0/24"]

[[amo_issuers]]
api_key = "user:9:9"
secret = { file = "issuer.secret" }

[[routes]]
name = "amo"
path_prefix = "/amo/api"
upstream = "api"
versions = ["v5", "v4"]
auth = { policy = "amo-jwt", credential = "main", header_selection = true }

[[routes]]
name = "fixed"
path_prefix = "/fixed"
upstream = "api"
auth = { policy = "amo-jwt", credential = "main" }

[[routes]]
name = "verify"
path_prefix = "/verify"
upstream = "api"
auth = { policy = "amo-jwt-verify" }
"#;
    let gw = TestGateway::start_in(&config_with(&fake.url(), extra), dir.path()).await;
    (gw, dir)
}

fn now_secs(gw: &TestGateway) -> u64 {
    use fxa_gateway::clock::Clock;
    gw.clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Decodes and checks a gateway-minted JWT with jsonwebtoken, not the gateway's code.
fn decode_independently(authorization: &str, secret: &str) -> Value {
    let token = authorization.strip_prefix("JWT ").expect("JWT scheme");
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_exp = false;
    validation.required_spec_claims = HashSet::new();
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("signature verifies with the configured secret")
    .claims
}

#[tokio::test]
async fn amo_jwt_route_replaces_the_callers_credentials_with_a_fresh_jwt() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start(&fake).await;
    let resp = client::send(
        "GET",
        &gw.url("/amo/api/v5/addons/"),
        &[("authorization", "Bearer caller-token-must-not-pass")],
        "",
    )
    .await;
    assert_eq!(resp.status_u16(), 200);
    let seen = fake.last_request().unwrap();
    let auth = seen.header("authorization").unwrap().to_owned();
    assert!(!auth.contains("caller-token"));
    let claims = decode_independently(&auth, SECRET_A);
    assert_eq!(claims["iss"], "user:1:1");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(
        exp - iat,
        60,
        "exp - iat is exactly the configured lifetime"
    );
    assert!(
        iat.abs_diff(now_secs(&gw)) <= 1,
        "iat comes from the gateway clock"
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 22, "128-bit jti");
    assert!(claims.get("orig_iat").is_none());
}

#[tokio::test]
async fn every_request_gets_its_own_jti() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start(&fake).await;
    let c = client::TestClient::new();
    for _ in 0..50 {
        assert_eq!(c.get(&gw.url("/fixed/x")).await.status_u16(), 200);
    }
    let jtis: HashSet<String> = fake
        .requests()
        .iter()
        .map(|r| {
            decode_independently(r.header("authorization").unwrap(), SECRET_A)["jti"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(jtis.len(), 50);
}

#[tokio::test]
async fn a_granted_caller_selects_another_credential_by_header() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start(&fake).await;
    let resp = client::send(
        "GET",
        &gw.url("/amo/api/v5/x"),
        &[("x-fxa-amo-credential", "second")],
        "",
    )
    .await;
    assert_eq!(resp.status_u16(), 200);
    let seen = fake.last_request().unwrap();
    let claims = decode_independently(seen.header("authorization").unwrap(), SECRET_B);
    assert_eq!(claims["iss"], "user:2:2");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert_eq!(
        seen.header("x-fxa-amo-credential"),
        None,
        "selection header never forwarded"
    );
}

#[tokio::test]
async fn credential_selection_is_refused_where_the_config_does_not_grant_it() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start(&fake).await;
    for (path, name) in [
        ("/amo/api/v5/x", "elsewhere"),
        ("/amo/api/v5/x", "nope"),
        ("/fixed/x", "second"),
    ] {
        let resp = client::send("GET", &gw.url(path), &[("x-fxa-amo-credential", name)], "").await;
        assert_eq!(resp.status_u16(), 400, "{path} {name}");
        assert_eq!(resp.json()["errno"], 999);
        assert_eq!(
            resp.header("x-fxa-gateway-error"),
            Some("credential-selection-refused")
        );
    }
    assert_eq!(fake.request_count(), 0);
}

fn caller_jwt(claims: Value, secret: &str) -> String {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    format!("JWT {token}")
}

#[tokio::test]
async fn verify_route_accepts_a_valid_jwt_once_and_names_the_issuer_upstream() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start(&fake).await;
    let now = now_secs(&gw);
    let jwt = caller_jwt(
        json!({"iss": "user:9:9", "jti": "nonce-1", "iat": now, "exp": now + 60}),
        ISSUER_SECRET,
    );
    let headers = [
        ("authorization", jwt.as_str()),
        ("x-fxa-amo-issuer", "user:spoofed"),
    ];
    let resp = client::send("GET", &gw.url("/verify/x"), &headers, "").await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(
        fake.last_request().unwrap().header("x-fxa-amo-issuer"),
        Some("user:9:9")
    );

    let replay = client::send("GET", &gw.url("/verify/x"), &headers, "").await;
    assert_eq!(replay.status_u16(), 401);
    let body = replay.json();
    assert_eq!(body["errno"], 110);
    assert_eq!(body["message"], "JWT jti was already used");
    assert_eq!(
        replay.header("www-authenticate"),
        Some("JWT realm=\"fxa-gateway\"")
    );
    assert!(
        !replay.text().contains(jwt.trim_start_matches("JWT ")),
        "token never echoed"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn verify_route_refuses_bad_jwts_with_errno_110() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start(&fake).await;
    let now = now_secs(&gw);
    let cases = [
        (
            caller_jwt(
                json!({"iss": "user:9:9", "jti": "a", "iat": now, "exp": now + 60}),
                "wrong-secret",
            ),
            "JWT signature is invalid",
        ),
        (
            caller_jwt(
                json!({"iss": "user:7:7", "jti": "b", "iat": now, "exp": now + 60}),
                ISSUER_SECRET,
            ),
            "Unknown JWT iss (issuer)",
        ),
        (
            caller_jwt(
                json!({"iss": "user:9:9", "jti": "c", "iat": now, "exp": now + 301}),
                ISSUER_SECRET,
            ),
            "JWT exp (expiration) is too long",
        ),
        (
            caller_jwt(
                json!({"iss": "user:9:9", "iat": now, "exp": now + 60}),
                ISSUER_SECRET,
            ),
            "JWT jti (JWT ID) claim is missing",
        ),
        (
            "Bearer abc".to_owned(),
            "Invalid Authorization header: expected JWT <token>",
        ),
    ];
    for (authorization, message) in cases {
        let resp = client::send(
            "GET",
            &gw.url("/verify/x"),
            &[("authorization", authorization.as_str())],
            "",
        )
        .await;
        assert_eq!(resp.status_u16(), 401, "{message}");
        assert_eq!(resp.json()["errno"], 110);
        assert_eq!(resp.json()["message"], message);
        assert_eq!(
            resp.header("www-authenticate"),
            Some("JWT realm=\"fxa-gateway\"")
        );
    }
    let missing = client::get(&gw.url("/verify/x")).await;
    assert_eq!(missing.status_u16(), 401);
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn verify_route_judges_expiry_by_the_gateway_clock() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start(&fake).await;
    let now = now_secs(&gw);
    let jwt = caller_jwt(
        json!({"iss": "user:9:9", "jti": "late", "iat": now, "exp": now + 60}),
        ISSUER_SECRET,
    );
    gw.clock
        .set(SystemTime::UNIX_EPOCH + Duration::from_secs(now + 66));
    let resp = client::send(
        "GET",
        &gw.url("/verify/x"),
        &[("authorization", jwt.as_str())],
        "",
    )
    .await;
    assert_eq!(resp.status_u16(), 401);
    assert_eq!(resp.json()["message"], "JWT has expired");
}

#[tokio::test]
async fn amo_error_bodies_become_errno_shaped_with_the_challenge_kept() {
    let fake = FakeUpstream::start().await;
    fake.set_default(
        Reply::new()
            .status(401)
            .header(
                "www-authenticate",
                "JWT realm=\"Access to addons.mozilla.org external API\"",
            )
            .json(json!({"detail": "Signature has expired.", "code": "ERROR_SIGNATURE_EXPIRED"})),
    );
    let (gw, _dir) = start(&fake).await;
    let resp = client::get(&gw.url("/amo/api/v5/addons/")).await;
    assert_eq!(resp.status_u16(), 401);
    let body = resp.json();
    assert_eq!(body["errno"], 110);
    assert_eq!(body["detail"], "Signature has expired.");
    assert_eq!(body["upstreamCode"], "ERROR_SIGNATURE_EXPIRED");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("JWT realm=\"Access to addons.mozilla.org external API\"")
    );
}

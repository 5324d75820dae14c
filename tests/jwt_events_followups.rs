//! Issue 18, the parts finished after the shared state landed: a refresh or an introspection
//! that started before a security event and finished after it does not bring the revoked state
//! back (the fake FxA decides its answer on arrival and sends it late); the JWK set is kept for
//! the `Expires` of an answer without `max-age`; the local-JWT and security-event metrics on
//! `/metrics`, with no token, uid or jti in them.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fxa_gateway::clock::Clock as _;
use serde_json::json;
use support::TestGateway;
use support::client::{self, TestResponse};
use support::fake::{FakeUpstream, Reply};
use support::fxa_jwt::{self, FakeFxa, PASSWORD_CHANGE, SigningKey, claims, set_claims};
use support::replicas::series;

const UID: &str = "0123456789abcdef0123456789abcdef";
const UID_B: &str = "fedcba9876543210fedcba9876543210";
const HOUR: u64 = 3600;

fn config(oauth: &str, rp: &str, api: &str) -> String {
    fxa_jwt::events_config(oauth, rp, api, "2s", true, "", "")
}

struct Env {
    gw: TestGateway,
    fxa: FakeFxa,
    _rp: FakeUpstream,
    _api: FakeUpstream,
    key: Arc<SigningKey>,
}

impl Env {
    async fn start_with(setup: impl FnOnce(&FakeFxa)) -> Env {
        let key = Arc::new(SigningKey::generate("20261203-abab"));
        let fxa = FakeFxa::start(&[&key]).await;
        setup(&fxa);
        let rp = FakeUpstream::start().await;
        rp.set_default(Reply::new().echo());
        let api = FakeUpstream::start().await;
        let gw = TestGateway::start(&config(&fxa.url(), &rp.url(), &api.url())).await;
        fxa.until("the JWK set fetch at start", |f| f.jwks_fetches() >= 1)
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Env {
            gw,
            fxa,
            _rp: rp,
            _api: api,
            key,
        }
    }

    async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    fn now(&self) -> SystemTime {
        self.gw.clock.now()
    }

    fn password_change(&self, uid: &str, jti: &str) -> String {
        let change = fxa_jwt::unix_ms(self.now());
        let events = json!({PASSWORD_CHANGE: {"changeTime": change}});
        self.key.set(&set_claims(uid, events, self.now(), jti))
    }

    async fn deliver(&self, set: &str) -> TestResponse {
        let auth = format!("Bearer {set}");
        let url = self.gw.url("/events");
        client::send("POST", &url, &[("authorization", &auth)], Bytes::new()).await
    }

    async fn api(&self, token: &str, refresh: Option<&str>) -> TestResponse {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(r) = refresh {
            headers.push(("x-fxa-refresh-token", r));
        }
        client::send("GET", &self.gw.url("/api/v1/thing"), &headers, Bytes::new()).await
    }

    /// An access token of `uid` past its `exp` (verified locally, so a refresh is due).
    fn expired_jwt(&self, uid: &str) -> String {
        let now = fxa_jwt::unix(self.now());
        let mut c = claims(uid, "profile", self.now(), HOUR);
        c["iat"] = json!(now - 7200);
        c["exp"] = json!(now - 60);
        self.key.access_token(&c)
    }
}

#[tokio::test]
async fn a_refresh_that_started_before_an_event_is_not_reused_after_it() {
    let env = Env::start().await;
    let expired = env.expired_jwt(UID);
    let refresh = "c".repeat(64);
    // The new token: minted when the call arrives (before the password change).
    let new = "7".repeat(64);
    env.fxa.grant_opaque(&new, UID, "profile", env.now());
    env.fxa.next_refresh(&new, HOUR);
    env.fxa.set_token_delay(Duration::from_millis(500));

    let first = {
        let (url, auth, rt) = (
            env.gw.url("/api/v1/thing"),
            format!("Bearer {expired}"),
            refresh.clone(),
        );
        tokio::spawn(async move {
            let headers = [
                ("authorization", auth.as_str()),
                ("x-fxa-refresh-token", &rt),
            ];
            client::send("GET", &url, &headers, Bytes::new()).await
        })
    };
    env.fxa
        .until("the refresh call in flight", |f| f.token_calls() == 1)
        .await;
    // The password changes while the call is in flight; the event arrives before its answer.
    env.gw.clock.advance(Duration::from_secs(1));
    let resp = env.deliver(&env.password_change(UID, "pc-race-1")).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let first = first.await.unwrap();
    assert_eq!(first.header("x-fxa-refresh"), Some("refreshed"));
    // The request that waited got FxA's word on its new token (asked after the event).
    let introspections = env.fxa.introspections();
    assert!(introspections >= 1, "{introspections}");

    // Within the grace period, the grant written after the event is not served from memory:
    // the token endpoint is asked again.
    let again = env.api(&expired, Some(&refresh)).await;
    assert_eq!(again.status_u16(), 200, "{}", again.text());
    assert_eq!(again.header("x-fxa-refresh"), Some("refreshed"));
    assert_eq!(env.fxa.token_calls(), 2, "the grace entry was not reused");
    // A grant asked after the event is reused as usual.
    let reused = env.api(&expired, Some(&refresh)).await;
    assert_eq!(reused.status_u16(), 200);
    assert_eq!(env.fxa.token_calls(), 2);
}

#[tokio::test]
async fn an_introspection_that_started_before_an_event_is_not_served_after_it() {
    let env = Env::start().await;
    let issued = env.now() - Duration::from_secs(60);
    let token = "8".repeat(64);
    env.fxa.grant_opaque(&token, UID, "profile", issued);
    env.fxa.set_introspect_delay(Duration::from_millis(500));
    let first = {
        let (url, auth) = (env.gw.url("/api/v1/thing"), format!("Bearer {token}"));
        tokio::spawn(async move {
            client::send("GET", &url, &[("authorization", &auth)], Bytes::new()).await
        })
    };
    env.fxa
        .until("the introspection in flight", |f| f.introspections() == 1)
        .await;
    env.gw.clock.advance(Duration::from_secs(1));
    let resp = env.deliver(&env.password_change(UID, "pc-race-2")).await;
    assert_eq!(resp.status_u16(), 200);
    env.fxa.revoke(&token);
    // FxA said "active" before the change: that one request goes through.
    assert_eq!(first.await.unwrap().status_u16(), 200);
    // Its answer, cached after the event, is not served again: FxA is asked (revoked).
    env.fxa.set_introspect_delay(Duration::ZERO);
    let resp = env.api(&token, None).await;
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
    assert_eq!(env.fxa.introspections(), 2);
}

#[tokio::test]
async fn a_jwk_set_without_max_age_is_kept_for_its_expires() {
    let expires = SystemTime::now() + Duration::from_secs(12);
    let env = Env::start_with(|fxa| {
        fxa.set_cache_control("public");
        fxa.add_jwks_header("expires", &httpdate::fmt_http_date(expires));
    })
    .await;
    let started = Instant::now();
    assert_eq!(env.fxa.jwks_fetches(), 1);
    // Without Expires the set would be kept the default 300 s; with it, about 12 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.fxa.jwks_fetches() < 2 {
        assert!(
            Instant::now() < deadline,
            "not fetched again by its Expires"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(9), "{waited:?}: too early");
}

#[tokio::test]
async fn local_jwt_and_security_event_metrics_are_exported_without_ids() {
    let env = Env::start().await;
    let issued = env.now() - Duration::from_secs(60);
    let good = env.key.access_token(&claims(UID, "profile", issued, HOUR));
    let other_key = SigningKey::generate("20261203-abab");
    let forged = other_key.access_token(&claims(UID_B, "profile", issued, HOUR));
    let mut wrong_iss = claims(UID_B, "profile", issued, HOUR);
    wrong_iss["iss"] = json!("https://evil.example");
    let wrong_iss = env.key.access_token(&wrong_iss);
    let mut long = claims(UID_B, "profile", issued, 12 * HOUR);
    long["jti"] = json!("ab".repeat(32));
    let long = env.key.access_token(&long);

    assert_eq!(env.api(&good, None).await.status_u16(), 200);
    assert_eq!(env.api(&good, None).await.status_u16(), 200);
    assert_eq!(env.api(&forged, None).await.status_u16(), 401);
    assert_eq!(env.api(&wrong_iss, None).await.status_u16(), 401);
    assert_eq!(env.api(&long, None).await.status_u16(), 200);
    // A window later the long-lived token is rechecked in the background (FxA: active).
    env.gw.clock.advance(Duration::from_secs(301));
    assert_eq!(env.api(&long, None).await.status_u16(), 200);
    env.fxa
        .until("the recheck", |f| f.introspections() >= 1)
        .await;
    let set = env.password_change(UID, "pc-metrics-1");
    assert_eq!(env.deliver(&set).await.status_u16(), 200);
    assert_eq!(env.deliver(&set).await.status_u16(), 401, "replayed");
    assert_eq!(env.deliver("not-a-jwt").await.status_u16(), 401);

    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = client::get(&env.gw.admin_url("/metrics")).await.text();
        if series(&text, "fxa_gateway_jwt_rechecks_total{outcome=\"active\"}") >= 1.0
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let expect = |line: &str, value: f64| {
        assert_eq!(series(&text, line), value, "{line}\n{text}");
    };
    expect(
        "fxa_gateway_jwt_local_verifications_total{outcome=\"verified\"}",
        2.0,
    );
    expect(
        "fxa_gateway_jwt_local_verifications_total{outcome=\"refused_signature\"}",
        1.0,
    );
    expect(
        "fxa_gateway_jwt_local_verifications_total{outcome=\"refused_claims\"}",
        1.0,
    );
    expect("fxa_gateway_jwt_claim_cache_hits_total", 2.0);
    expect("fxa_gateway_jwt_rechecks_total{outcome=\"active\"}", 1.0);
    assert!(
        series(&text, "fxa_gateway_jwks_fetches_total{outcome=\"ok\"}") >= 1.0,
        "{text}"
    );
    expect(
        "fxa_gateway_security_events_total{event=\"password_change\",outcome=\"accepted\"}",
        1.0,
    );
    expect(
        "fxa_gateway_security_events_total{event=\"unknown\",outcome=\"replayed\"}",
        1.0,
    );
    expect(
        "fxa_gateway_security_events_total{event=\"unknown\",outcome=\"refused\"}",
        1.0,
    );
    expect(
        "fxa_gateway_revocations_applied_total{source=\"local\"}",
        1.0,
    );
    for id in [UID, UID_B, "pc-metrics-1", &good, &long, &"ab".repeat(32)] {
        assert!(!text.contains(id), "{id} in the metrics:\n{text}");
    }
}

//! Issue 18, part 2: a `security-events` route fronting the RP's webhook, end to end.
//!
//! The fake FxA (`support/fxa_jwt.rs`) publishes keys generated at test time and signs SETs
//! as the event broker does; the RP's webhook and a protected API are fake upstreams. Covers:
//! verified SETs forwarded once, every refusal (401 errno 110, never reaching the RP), a `jti`
//! delivered only after a 2xx (FxA's retry gets through), concurrent copies delivered once,
//! and the revocation: a token FxA revoked keeps working from the cache until the event
//! arrives and is refused right after it, other users' entries stay, JWTs (local and
//! pairwise), refresh grace entries, and profile/subscription changes by configuration.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fxa_gateway::clock::Clock as _;
use serde_json::{Value, json};
use support::TestGateway;
use support::client::{self, TestResponse};
use support::fake::{FakeUpstream, Reply};
use support::fxa_jwt::{
    self, DELETE_USER, FakeFxa, PASSWORD_CHANGE, PROFILE_CHANGE, SUBSCRIPTION_CHANGE, SigningKey,
    claims, hs256_with, set_claims, unsigned,
};

const UID: &str = "0123456789abcdef0123456789abcdef";
const UID_B: &str = "fedcba9876543210fedcba9876543210";
const HOUR: u64 = 3600;

fn config(oauth: &str, rp: &str, api: &str, events: &str) -> String {
    fxa_jwt::events_config(oauth, rp, api, "1s", true, events, "")
}

struct Env {
    gw: TestGateway,
    fxa: FakeFxa,
    rp: FakeUpstream,
    api: FakeUpstream,
    key: Arc<SigningKey>,
}

impl Env {
    async fn start(events: &str) -> Env {
        let key = Arc::new(SigningKey::generate("20261203-eeee"));
        let fxa = FakeFxa::start(&[&key]).await;
        let rp = FakeUpstream::start().await;
        rp.set_default(Reply::new().echo());
        let api = FakeUpstream::start().await;
        let gw = TestGateway::start(&config(&fxa.url(), &rp.url(), &api.url(), events)).await;
        fxa.until("the JWK set fetch at start", |f| f.jwks_fetches() >= 1)
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Env {
            gw,
            fxa,
            rp,
            api,
            key,
        }
    }

    fn now(&self) -> SystemTime {
        self.gw.clock.now()
    }

    fn set(&self, uid: &str, events: Value, jti: &str) -> String {
        self.key.set(&set_claims(uid, events, self.now(), jti))
    }

    fn password_change(&self, uid: &str, jti: &str) -> String {
        let change = fxa_jwt::unix_ms(self.now());
        self.set(uid, json!({PASSWORD_CHANGE: {"changeTime": change}}), jti)
    }

    async fn deliver(&self, set: &str) -> TestResponse {
        let auth = format!("Bearer {set}");
        client::send(
            "POST",
            &self.gw.url("/events"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
    }

    async fn api(&self, token: &str) -> TestResponse {
        let auth = format!("Bearer {token}");
        client::send(
            "GET",
            &self.gw.url("/api/v1/thing"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
    }

    fn delivered(&self) -> usize {
        self.rp.request_count()
    }
}

fn assert_refused(resp: &TestResponse, reason: &str) {
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 110);
    assert_eq!(
        resp.header("x-fxa-gateway-error"),
        Some(reason),
        "{}",
        resp.text()
    );
}

#[tokio::test]
async fn a_verified_set_reaches_the_rp_once() {
    let env = Env::start("").await;
    let set = env.password_change(UID, "e19ed6c5-4816-4171-aa43-56ffe80dbda1");
    let resp = env.deliver(&set).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let seen = resp.json();
    // The RP gets the SET as FxA sent it (it may verify it itself) and the verified uid.
    assert_eq!(seen["headers"]["authorization"][0], format!("Bearer {set}"));
    assert_eq!(seen["headers"]["x-fxa-uid"][0], UID);
    // The same SET again is a replay.
    assert_refused(&env.deliver(&set).await, "set-replayed");
    assert_eq!(env.delivered(), 1);
}

#[tokio::test]
async fn a_jti_counts_as_delivered_only_after_the_rp_answered_2xx() {
    let env = Env::start("").await;
    let set = env.set(
        UID,
        json!({DELETE_USER: {}}),
        "1b3d623a-300a-4ab8-9241-855c35586809",
    );
    env.rp.push(Reply::new().status(500).body("oops"));
    let resp = env.deliver(&set).await;
    assert_eq!(resp.status_u16(), 500);
    env.rp.push(
        Reply::new()
            .status(503)
            .json(json!({"code": 503, "errno": 201})),
    );
    assert_eq!(env.deliver(&set).await.status_u16(), 503);
    // FxA's retry after an error gets through; once the RP took it, no more.
    assert_eq!(env.deliver(&set).await.status_u16(), 200);
    assert_refused(&env.deliver(&set).await, "set-replayed");
    assert_eq!(env.delivered(), 3);
}

#[tokio::test]
async fn concurrent_copies_of_one_set_are_delivered_once() {
    let env = Env::start("").await;
    env.rp
        .set_default(Reply::new().delay(Duration::from_millis(300)));
    let set = env.set(UID, json!({PROFILE_CHANGE: {}}), "copy-1");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (url, auth) = (env.gw.url("/events"), format!("Bearer {set}"));
        tasks.push(tokio::spawn(async move {
            client::send("POST", &url, &[("authorization", &auth)], Bytes::new()).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().status_u16());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        9,
        "{statuses:?}"
    );
    assert_eq!(env.delivered(), 1);
}

#[tokio::test]
async fn a_copy_waiting_on_a_failed_delivery_is_delivered_itself() {
    let env = Env::start("").await;
    env.rp
        .push(Reply::new().status(500).delay(Duration::from_millis(300)));
    let set = env.set(UID, json!({PROFILE_CHANGE: {}}), "copy-2");
    let first = {
        let (url, auth) = (env.gw.url("/events"), format!("Bearer {set}"));
        tokio::spawn(async move {
            client::send("POST", &url, &[("authorization", &auth)], Bytes::new()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = env.deliver(&set).await;
    assert_eq!(first.await.unwrap().status_u16(), 500);
    assert_eq!(second.status_u16(), 200);
    assert_eq!(env.delivered(), 2);
}

#[tokio::test]
async fn every_refused_set_is_401_110_and_never_reaches_the_rp() {
    let env = Env::start("").await;
    let now = env.now();
    let kid = env.key.kid.clone();
    let good = set_claims(UID, json!({DELETE_USER: {}}), now, "jti-good");
    let unpublished = SigningKey::generate("unpublished");
    let twin = SigningKey::generate(&kid);
    let mut cases: Vec<(&str, String)> = vec![
        (
            "set-alg",
            unsigned(&json!({"alg": "none", "kid": kid}), &good),
        ),
        (
            "set-alg",
            hs256_with(
                &env.key.public_der(),
                &json!({"alg": "HS256", "kid": kid}),
                &good,
            ),
        ),
        (
            "set-alg",
            env.key.sign(&json!({"alg": "RS384", "kid": kid}), &good),
        ),
        (
            "set-typ",
            env.key
                .sign(&json!({"alg": "RS256", "typ": "at+JWT", "kid": kid}), &good),
        ),
        (
            "set-kid-missing",
            env.key.sign(&json!({"alg": "RS256"}), &good),
        ),
        ("set-kid-unknown", unpublished.set(&good)),
        ("set-signature", twin.set(&good)),
        (
            "set-signature",
            fxa_jwt::with_claims(
                &env.key.set(&good),
                &set_claims(UID_B, json!({DELETE_USER: {}}), now, "jti-good"),
            ),
        ),
        ("set-malformed", "not.a.jwt".to_owned()),
    ];
    let mut bad = |reason: &'static str, f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        cases.push((reason, env.key.set(&c)));
    };
    bad("set-iss", &|c| {
        c["iss"] = json!("https://accounts.firefox.com")
    });
    bad("set-aud", &|c| c["aud"] = json!("0000000000000000"));
    bad("set-aud", &|c| {
        c.as_object_mut().unwrap().remove("aud");
    });
    bad("set-iat", &|c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    bad("set-iat", &|c| c["iat"] = json!("1565720808"));
    bad("set-iat-future", &|c| {
        c["iat"] = json!(fxa_jwt::unix(now) + 120)
    });
    bad("set-too-old", &|c| {
        c["iat"] = json!(fxa_jwt::unix(now) - 3601)
    });
    bad("set-expired", &|c| c["exp"] = json!(fxa_jwt::unix(now) - 1));
    bad("set-events", &|c| {
        c.as_object_mut().unwrap().remove("events");
    });
    bad("set-events", &|c| c["events"] = json!({}));
    bad("set-events", &|c| c["events"] = json!({DELETE_USER: true}));
    bad("set-sub", &|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    bad("set-jti", &|c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    bad("set-jti", &|c| c["jti"] = json!(""));
    for (reason, set) in &cases {
        let resp = env.deliver(set).await;
        assert_refused(&resp, reason);
        assert_eq!(
            resp.header("www-authenticate"),
            Some(r#"Bearer realm="fxa-gateway", error="invalid_token""#)
        );
    }
    let resp = client::send("POST", &env.gw.url("/events"), &[], Bytes::new()).await;
    assert_refused(&resp, "set-missing");
    assert_eq!(env.delivered(), 0, "no refused SET reached the RP");

    // Within the leeway, and with a fractional iat (the broker's Date.now() / 1000): accepted.
    let mut ok = good.clone();
    ok["iat"] = json!(fxa_jwt::unix(now) as f64 + 30.25);
    assert_eq!(env.deliver(&env.key.set(&ok)).await.status_u16(), 200);
    let mut ok = good.clone();
    ok["jti"] = json!("explicitly-typed");
    let typed = env.key.sign(
        &json!({"alg": "RS256", "typ": "secevent+jwt", "kid": kid}),
        &ok,
    );
    assert_eq!(env.deliver(&typed).await.status_u16(), 200);
}

#[tokio::test]
async fn a_revoked_token_works_from_the_cache_until_the_event_and_is_refused_right_after() {
    let env = Env::start("").await;
    let issued = env.now() - Duration::from_secs(60);
    let (token_x, token_y) = ("1".repeat(64), "2".repeat(64));
    env.fxa.grant_opaque(&token_x, UID, "profile", issued);
    env.fxa.grant_opaque(&token_y, UID_B, "profile", issued);
    assert_eq!(env.api(&token_x).await.status_u16(), 200);
    assert_eq!(env.api(&token_y).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 2);

    // FxA revokes X's token (the password changed); the cache does not know yet.
    env.fxa.revoke(&token_x);
    env.gw.clock.advance(Duration::from_secs(1));
    assert_eq!(
        env.api(&token_x).await.status_u16(),
        200,
        "served from the cache"
    );
    assert_eq!(env.fxa.introspections(), 2);

    // The event arrives: X's token is refused at once (FxA was asked again)...
    let resp = env.deliver(&env.password_change(UID, "pc-1")).await;
    assert_eq!(resp.status_u16(), 200);
    let resp = env.api(&token_x).await;
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 110);
    assert_eq!(env.fxa.introspections(), 3);
    // ... and Y's entry stays cached.
    assert_eq!(env.api(&token_y).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 3);
    assert_eq!(env.api.request_count(), 4);
}

#[tokio::test]
async fn a_token_issued_after_the_password_change_is_served_from_the_cache() {
    let env = Env::start("").await;
    let before = env.now() - Duration::from_secs(60);
    let old = "3".repeat(64);
    env.fxa.grant_opaque(&old, UID, "profile", before);
    assert_eq!(env.api(&old).await.status_u16(), 200);
    let change = env.now();
    env.gw.clock.advance(Duration::from_secs(5));
    let new = "4".repeat(64);
    env.fxa.grant_opaque(&new, UID, "profile", env.now());
    assert_eq!(env.api(&new).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 2);
    let set = env.set(
        UID,
        json!({PASSWORD_CHANGE: {"changeTime": fxa_jwt::unix_ms(change)}}),
        "pc-2",
    );
    assert_eq!(env.deliver(&set).await.status_u16(), 200);
    // The new token: no FxA call. The old one: FxA's word (still active at the fake: allowed).
    assert_eq!(env.api(&new).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 2);
    assert_eq!(env.api(&old).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 3);
    // FxA's fresh word is cached again.
    assert_eq!(env.api(&old).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 3);
}

#[tokio::test]
async fn a_locally_verified_jwt_is_not_accepted_again_without_fxas_word() {
    let env = Env::start("").await;
    let issued = env.now() - Duration::from_secs(60);
    let short = env.key.access_token(&claims(UID, "profile", issued, HOUR));
    let other = env
        .key
        .access_token(&claims(UID_B, "profile", issued, HOUR));
    assert_eq!(env.api(&short).await.status_u16(), 200);
    assert_eq!(env.api(&other).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 0);

    assert_eq!(
        env.deliver(&env.password_change(UID, "pc-3"))
            .await
            .status_u16(),
        200
    );
    // FxA keeps no record of a short-lived JWT: its word is `active: false`.
    let resp = env.api(&short).await;
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
    assert_eq!(env.fxa.introspections(), 1);
    assert_eq!(env.api(&short).await.status_u16(), 401);
    // Another user's JWT is untouched and still local.
    assert_eq!(env.api(&other).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 1);
    // A JWT issued after the change verifies locally.
    env.gw.clock.advance(Duration::from_secs(2));
    let after = env
        .key
        .access_token(&claims(UID, "profile", env.now(), HOUR));
    assert_eq!(env.api(&after).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 1);

    // Deleting the account covers every token of the user, whenever issued.
    assert_eq!(
        env.deliver(&env.set(UID, json!({DELETE_USER: {}}), "del-1"))
            .await
            .status_u16(),
        200
    );
    assert_eq!(env.api(&after).await.status_u16(), 401);
}

#[tokio::test]
async fn what_an_event_can_and_cannot_reach_when_a_jwt_sub_is_a_pairwise_id() {
    let env = Env::start("").await;
    let issued = env.now() - Duration::from_secs(60);
    let ppid = "99999999999999999999999999999999";
    // Short-lived, pairwise sub: the gateway cannot tell whose it is.
    let short = env.key.access_token(&claims(ppid, "profile", issued, HOUR));
    // Long-lived, pairwise sub: stored at FxA, whose introspection names the account uid.
    let mut c = claims(ppid, "profile", issued, 12 * HOUR);
    c["fxa-test-uid"] = json!(UID);
    let long = env.key.access_token(&c);
    assert_eq!(env.api(&short).await.status_u16(), 200);
    assert_eq!(env.api(&long).await.status_u16(), 200);
    // The long-lived token's recheck (due a window after iat) teaches the gateway its uid.
    env.gw.clock.advance(Duration::from_secs(301));
    assert_eq!(env.api(&long).await.status_u16(), 200);
    env.fxa
        .until("the recheck", |f| f.introspections() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert_eq!(
        env.deliver(&env.password_change(UID, "pc-4"))
            .await
            .status_u16(),
        200
    );
    // Reached: the long-lived token needs FxA's word (it still says active here).
    assert_eq!(env.api(&long).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 2);
    // Not reached: the short-lived pairwise token keeps working until its exp.
    assert_eq!(env.api(&short).await.status_u16(), 200);
    assert_eq!(env.fxa.introspections(), 2);
}

#[tokio::test]
async fn a_refresh_grace_entry_of_the_user_is_dropped() {
    let env = Env::start("").await;
    let now = env.now();
    let mut expired = claims(UID, "profile", now, HOUR);
    expired["iat"] = json!(fxa_jwt::unix(now) - 7200);
    expired["exp"] = json!(fxa_jwt::unix(now) - 60);
    let expired = env.key.access_token(&expired);
    env.fxa.next_refresh(
        &env.key.access_token(&claims(UID, "profile", now, HOUR)),
        HOUR,
    );
    let refresh = "c".repeat(64);
    let call = || async {
        let auth = format!("Bearer {expired}");
        client::send(
            "GET",
            &env.gw.url("/api/v1/thing"),
            &[("authorization", &auth), ("x-fxa-refresh-token", &refresh)],
            Bytes::new(),
        )
        .await
    };
    assert_eq!(call().await.header("x-fxa-refresh"), Some("refreshed"));
    assert_eq!(
        call().await.status_u16(),
        200,
        "reused within the grace period"
    );
    assert_eq!(env.fxa.token_calls(), 1);
    assert_eq!(
        env.deliver(&env.password_change(UID, "pc-5"))
            .await
            .status_u16(),
        200
    );
    env.gw.clock.advance(Duration::from_secs(1));
    env.fxa.next_refresh(
        &env.key
            .access_token(&claims(UID, "profile", env.now(), HOUR)),
        HOUR,
    );
    assert_eq!(call().await.header("x-fxa-refresh"), Some("refreshed"));
    assert_eq!(
        env.fxa.token_calls(),
        2,
        "the grace entry was dropped: FxA asked again"
    );
}

#[tokio::test]
async fn profile_and_subscription_changes_revoke_nothing_unless_configured() {
    for (configured, expect_refused) in [
        ("", false),
        (
            "revoke_on_profile_change = true\nrevoke_on_subscription_change = true",
            true,
        ),
    ] {
        let env = Env::start(configured).await;
        let issued = env.now() - Duration::from_secs(60);
        let (t1, t2) = ("5".repeat(64), "6".repeat(64));
        env.fxa.grant_opaque(&t1, UID, "profile", issued);
        env.fxa.grant_opaque(&t2, UID_B, "profile", issued);
        assert_eq!(env.api(&t1).await.status_u16(), 200);
        assert_eq!(env.api(&t2).await.status_u16(), 200);
        env.fxa.revoke(&t1);
        env.fxa.revoke(&t2);
        let profile = env.set(UID, json!({PROFILE_CHANGE: {}}), "prof-1");
        let subscription = env.set(
            UID_B,
            json!({SUBSCRIPTION_CHANGE: {"capabilities": ["vpn"], "isActive": false, "changeTime": 1}}),
            "sub-1",
        );
        assert_eq!(env.deliver(&profile).await.status_u16(), 200);
        assert_eq!(env.deliver(&subscription).await.status_u16(), 200);
        let status = |r: TestResponse| r.status_u16();
        let want = if expect_refused { 401 } else { 200 };
        assert_eq!(
            status(env.api(&t1).await),
            want,
            "profile change, {configured:?}"
        );
        assert_eq!(
            status(env.api(&t2).await),
            want,
            "subscription change, {configured:?}"
        );
    }
}

#[tokio::test]
async fn without_keys_a_set_cannot_be_judged_and_fxa_is_told_to_retry() {
    let key = Arc::new(SigningKey::generate("20261203-ffff"));
    let fxa = FakeFxa::start(&[&key]).await;
    fxa.set_jwks_down(true);
    let rp = FakeUpstream::start().await;
    let api = FakeUpstream::start().await;
    let gw = TestGateway::start(&config(&fxa.url(), &rp.url(), &api.url(), "")).await;
    let set = key.set(&set_claims(
        UID,
        json!({DELETE_USER: {}}),
        gw.clock.now(),
        "nokeys",
    ));
    let auth = format!("Bearer {set}");
    let resp = client::send(
        "POST",
        &gw.url("/events"),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await;
    assert_eq!(resp.status_u16(), 503, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 104);
    assert_eq!(rp.request_count(), 0);
}

//! Issue 18 with the shared state of issue 17: security events reach every replica through a
//! real `redis-server`. Two gateways (in-process, each with its own caches and ledger) share
//! one Redis started by the test, in front of the fake FxA (`support/fxa_jwt.rs`), one RP
//! webhook and one protected API.
//!
//! Covers: an event delivered to replica A revokes a token cached on replica B (served from
//! B's cache until the event reaches A, refused on B right after); a SET delivered through A
//! is a replay on B; concurrent copies across A and B reach the RP once; an RP error on A lets
//! FxA's retry through on B; Redis down (each replica on its own, counted, degraded; the
//! revocation reaches the other replica once Redis is back); a replica started after the
//! event still refuses the old token; no uid or jti in the clear in Redis.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fxa_gateway::clock::Clock as _;
use serde_json::{Value, json};
use support::TestGateway;
use support::client::{self, TestResponse};
use support::fake::{FakeUpstream, Reply};
use support::fxa_jwt::{
    self, FakeFxa, PASSWORD_CHANGE, PROFILE_CHANGE, SigningKey, claims, set_claims,
};
use support::redis::RedisServer;
use support::replicas::{heartbeat, metrics, series, wait_redis_status};

const UID: &str = "0123456789abcdef0123456789abcdef";
const UID_B: &str = "fedcba9876543210fedcba9876543210";
const HOUR: u64 = 3600;
const HASHING_KEY: &str = "6f1c2a9e0b7d4c3f8a5e6b1d2c9f0a7e3b4d5c6e7f8091a2b3c4d5e6f708192a";
const ENCRYPTION_KEY: &str = "0d9c8b7a69584736251403f2e1d0c9b8a7968574635241302f1e0d9c8b7a6958";

fn config(oauth: &str, rp: &str, api: &str, redis: &str) -> String {
    let redis_section = format!(
        r#"[redis]
url = "{redis}"
key_prefix = "fleet:"
connect_timeout = "1s"
command_timeout = "1s"
health_interval = "200ms"
hashing_key = {{ file = "hash.key" }}
encryption_key = {{ file = "enc.key" }}
"#
    );
    fxa_jwt::events_config(oauth, rp, api, "1s", false, "", &redis_section)
}

struct Fleet {
    gws: Vec<TestGateway>,
    fxa: FakeFxa,
    rp: FakeUpstream,
    api: FakeUpstream,
    redis: RedisServer,
    key: Arc<SigningKey>,
    dir: tempfile::TempDir,
    toml: String,
}

impl Fleet {
    async fn start(replicas: usize) -> Fleet {
        let key = Arc::new(SigningKey::generate("20261203-ffff"));
        let fxa = FakeFxa::start(&[&key]).await;
        let rp = FakeUpstream::start().await;
        rp.set_default(Reply::new().echo());
        let api = FakeUpstream::start().await;
        let redis = RedisServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hash.key"), HASHING_KEY).unwrap();
        std::fs::write(dir.path().join("enc.key"), ENCRYPTION_KEY).unwrap();
        let toml = config(&fxa.url(), &rp.url(), &api.url(), &redis.url());
        let mut fleet = Fleet {
            gws: Vec::new(),
            fxa,
            rp,
            api,
            redis,
            key,
            dir,
            toml,
        };
        for _ in 0..replicas {
            fleet.add_replica().await;
        }
        fleet
    }

    /// Starts one more replica and waits until it holds keys and shares through Redis.
    async fn add_replica(&mut self) -> &TestGateway {
        let gw = TestGateway::start_in(&self.toml, self.dir.path()).await;
        let n = self.gws.len() + 1;
        self.fxa
            .until("the JWK set fetch at start", |f| f.jwks_fetches() >= n)
            .await;
        wait_redis_status(&gw, "ok").await;
        self.gws.push(gw);
        self.gws.last().unwrap()
    }

    fn now(&self) -> SystemTime {
        self.gws[0].clock.now()
    }

    /// Moves every replica's clock on (answers cached before, events after).
    fn advance(&self, by: Duration) {
        for gw in &self.gws {
            gw.clock.advance(by);
        }
    }

    fn set(&self, uid: &str, events: Value, jti: &str) -> String {
        self.key.set(&set_claims(uid, events, self.now(), jti))
    }

    fn password_change(&self, uid: &str, jti: &str) -> String {
        let change = fxa_jwt::unix_ms(self.now());
        self.set(uid, json!({PASSWORD_CHANGE: {"changeTime": change}}), jti)
    }

    fn delivered(&self) -> usize {
        forwarded(&self.rp)
    }
}

/// Requests the gateways forwarded (the heartbeat's `HEAD /` probes are not counted).
fn forwarded(upstream: &FakeUpstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.method != http::Method::HEAD)
        .count()
}

async fn deliver(gw: &TestGateway, set: &str) -> TestResponse {
    let auth = format!("Bearer {set}");
    client::send(
        "POST",
        &gw.url("/events"),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await
}

async fn api(gw: &TestGateway, token: &str) -> TestResponse {
    let auth = format!("Bearer {token}");
    client::send(
        "GET",
        &gw.url("/api/v1/thing"),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await
}

const REMOTE: &str = "fxa_gateway_revocations_applied_total{source=\"remote\"}";

/// Waits until `gw` applied `n` revocations heard from other replicas.
async fn wait_remote_revocations(gw: &TestGateway, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(gw).await;
        if series(&text, REMOTE) >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation never reached the replica: {text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_replayed(resp: &TestResponse) {
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 110);
    assert_eq!(resp.header("x-fxa-gateway-error"), Some("set-replayed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_to_one_replica_revokes_a_token_cached_on_the_other_at_once() {
    let fleet = Fleet::start(2).await;
    let (a, b) = (&fleet.gws[0], &fleet.gws[1]);
    let issued = fleet.now() - Duration::from_secs(60);
    let (token_x, token_y) = ("1".repeat(64), "2".repeat(64));
    fleet.fxa.grant_opaque(&token_x, UID, "profile", issued);
    fleet.fxa.grant_opaque(&token_y, UID_B, "profile", issued);
    assert_eq!(api(b, &token_x).await.status_u16(), 200);
    assert_eq!(api(b, &token_y).await.status_u16(), 200);
    assert_eq!(fleet.fxa.introspections(), 2);

    // FxA revokes X's token; B's cache does not know yet.
    fleet.fxa.revoke(&token_x);
    fleet.advance(Duration::from_secs(1));
    assert_eq!(api(b, &token_x).await.status_u16(), 200, "from B's cache");
    assert_eq!(fleet.fxa.introspections(), 2);

    // The event reaches A only; B hears of it through Redis and refuses X right after.
    let resp = deliver(a, &fleet.password_change(UID, "pc-shared-1")).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    wait_remote_revocations(b, 1.0).await;
    let resp = api(b, &token_x).await;
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 110);
    assert_eq!(fleet.fxa.introspections(), 3, "FxA was asked again");
    // The other user's entry stays cached on B.
    assert_eq!(api(b, &token_y).await.status_u16(), 200);
    assert_eq!(fleet.fxa.introspections(), 3);
    assert_eq!(forwarded(&fleet.api), 4);
    // A applied it itself (local), B from A (remote); A does not count its own echo.
    let text_a = metrics(a).await;
    assert_eq!(
        series(
            &text_a,
            "fxa_gateway_revocations_applied_total{source=\"local\"}"
        ),
        1.0,
        "{text_a}"
    );
    assert_eq!(series(&text_a, REMOTE), 0.0, "{text_a}");

    // Redis holds neither the uid nor the jti in the clear.
    for (key, value) in fleet.redis.dump().await {
        for secret in [UID.as_bytes(), b"pc-shared-1"] {
            assert!(
                !key.windows(secret.len()).any(|w| w == secret)
                    && !value.windows(secret.len()).any(|w| w == secret),
                "{} = {}",
                String::from_utf8_lossy(&key),
                String::from_utf8_lossy(&value)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_delivered_through_one_replica_is_a_replay_on_the_other() {
    let fleet = Fleet::start(2).await;
    let (a, b) = (&fleet.gws[0], &fleet.gws[1]);
    let set = fleet.set(UID, json!({PROFILE_CHANGE: {}}), "dedup-1");
    assert_eq!(deliver(a, &set).await.status_u16(), 200);
    assert_replayed(&deliver(b, &set).await);
    assert_replayed(&deliver(a, &set).await);
    assert_eq!(fleet.delivered(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_across_replicas_reach_the_rp_once() {
    let fleet = Fleet::start(2).await;
    fleet
        .rp
        .set_default(Reply::new().delay(Duration::from_millis(300)));
    let set = fleet.set(UID, json!({PROFILE_CHANGE: {}}), "copy-shared-1");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (url, auth) = (fleet.gws[i % 2].url("/events"), format!("Bearer {set}"));
        tasks.push(tokio::spawn(async move {
            client::send("POST", &url, &[("authorization", &auth)], Bytes::new()).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().status_u16());
    }
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
    assert_eq!(fleet.delivered(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rp_error_on_one_replica_lets_the_retry_through_on_the_other() {
    let fleet = Fleet::start(2).await;
    let (a, b) = (&fleet.gws[0], &fleet.gws[1]);
    let set = fleet.set(UID, json!({PROFILE_CHANGE: {}}), "retry-shared-1");
    fleet.rp.push(Reply::new().status(500).body("oops"));
    assert_eq!(deliver(a, &set).await.status_u16(), 500);
    // FxA's retry lands on the other replica: delivered there.
    assert_eq!(deliver(b, &set).await.status_u16(), 200);
    assert_replayed(&deliver(a, &set).await);
    assert_eq!(fleet.delivered(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_replica_decides_alone_counts_it_and_catches_up_after() {
    let mut fleet = Fleet::start(2).await;
    let issued = fleet.now() - Duration::from_secs(60);
    let token_x = "5".repeat(64);
    fleet.fxa.grant_opaque(&token_x, UID, "profile", issued);
    for gw in &fleet.gws {
        assert_eq!(api(gw, &token_x).await.status_u16(), 200);
    }
    fleet.fxa.revoke(&token_x);
    fleet.advance(Duration::from_secs(1));

    fleet.redis.kill();
    for gw in &fleet.gws {
        wait_redis_status(gw, "degraded").await;
    }
    let (a, b) = (&fleet.gws[0], &fleet.gws[1]);
    // A takes the event on its own ledger and revokes on its own.
    let set = fleet.password_change(UID, "pc-down-1");
    assert_eq!(deliver(a, &set).await.status_u16(), 200);
    assert_eq!(api(a, &token_x).await.status_u16(), 401);
    // B has not heard of it: per replica while Redis is down.
    assert_eq!(api(b, &token_x).await.status_u16(), 200, "B's cache");
    let text = metrics(a).await;
    for state in ["revocations", "set_jti"] {
        let line =
            format!("fxa_gateway_redis_fallbacks_total{{state=\"{state}\",outcome=\"local\"}}");
        assert!(series(&text, &line) >= 1.0, "{state}: {text}");
    }
    let (_, body) = heartbeat(a).await;
    assert_eq!(body["redis"]["status"], "degraded", "{body}");

    // Redis is back (empty): A writes what it recorded meanwhile and B applies it.
    fleet.redis.restart().await;
    for gw in &fleet.gws {
        wait_redis_status(gw, "ok").await;
    }
    let b = &fleet.gws[1];
    wait_remote_revocations(b, 1.0).await;
    let resp = api(b, &token_x).await;
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_after_the_event_still_refuses_the_old_token() {
    let mut fleet = Fleet::start(1).await;
    let issued = fleet.now() - Duration::from_secs(60);
    // Short-lived JWTs: verified locally, never stored at FxA (its word is `active: false`).
    let old = fleet
        .key
        .access_token(&claims(UID, "profile", issued, HOUR));
    let other = fleet
        .key
        .access_token(&claims(UID_B, "profile", issued, HOUR));
    assert_eq!(api(&fleet.gws[0], &old).await.status_u16(), 200);
    let resp = deliver(&fleet.gws[0], &fleet.password_change(UID, "pc-late-1")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(api(&fleet.gws[0], &old).await.status_u16(), 401);

    // B starts after the event: it reads the fleet's revocations when it subscribes.
    let b = fleet.add_replica().await;
    wait_remote_revocations(b, 1.0).await;
    let resp = api(b, &old).await;
    assert_eq!(resp.status_u16(), 401, "{}", resp.text());
    assert_eq!(
        api(b, &other).await.status_u16(),
        200,
        "other users verify locally"
    );
}

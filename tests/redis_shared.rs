//! Issue 17: many replicas behave as one gateway through a real `redis-server`. Three gateways
//! (in-process, each with its own listeners and state) share one Redis started by the test,
//! in front of the in-repo fake FxA. Shared deadlines are Redis's: these tests use real, short
//! windows (the gateways' injected clocks do not move).
//!
//! Covers: a back-off window learned by one replica enforced by the others (one upstream
//! request), one probe fleet-wide and a fleet-wide ramp; a fleet-wide quota and upstream cap;
//! 100 concurrent requests with one expired token over three replicas making one `/v1/token`
//! call; an AMO `jti` accepted once fleet-wide; Redis killed mid-test (served, counted,
//! degraded, refused where configured, then sharing again); and that no token, secret, id or
//! jti is ever written to Redis.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::client::{self, TestResponse};
use support::fake::{FakeUpstream, Reply};
use support::redis::RedisServer;
use support::replicas::{heartbeat, metrics, series, wait_redis_status};
use support::{TestGateway, config_with};

const HASHING_KEY: &str = "6f1c2a9e0b7d4c3f8a5e6b1d2c9f0a7e3b4d5c6e7f8091a2b3c4d5e6f708192a";
const ENCRYPTION_KEY: &str = "0d9c8b7a69584736251403f2e1d0c9b8a7968574635241302f1e0d9c8b7a6958";
const CLIENT_ID: &str = "5882386c6d801776";
const CLIENT_SECRET: &str = "a3c0c5cf3c2e1b47d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6";
const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const REFRESH: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const NEW: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const UID: &str = "0123456789abcdef0123456789abcdef";
const ISSUER: &str = "user:9:9";
const ISSUER_SECRET: &str = "issuer-secret-for-the-fleet-tests";
const API_KEY: &str = "caller-api-key-0123456789";

/// Key files for the `[redis]` and auth secrets.
fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("hash.key", HASHING_KEY),
        ("enc.key", ENCRYPTION_KEY),
        ("client.secret", CLIENT_SECRET),
        ("issuer.secret", ISSUER_SECRET),
    ] {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    dir
}

fn redis_section(redis: &RedisServer, on_down: &str) -> String {
    format!(
        r#"
[redis]
url = "{url}"
key_prefix = "fleet:"
connect_timeout = "1s"
command_timeout = "1s"
health_interval = "200ms"
hashing_key = {{ file = "hash.key" }}
encryption_key = {{ file = "enc.key" }}
{on_down}
"#,
        url = redis.url()
    )
}

async fn fleet(n: usize, toml: &str, dir: &Path) -> Vec<TestGateway> {
    let mut gateways = Vec::new();
    for _ in 0..n {
        gateways.push(TestGateway::start_in(toml, dir).await);
    }
    for gw in &gateways {
        wait_redis_status(gw, "ok").await;
    }
    gateways
}

/// Requests the gateways forwarded (the heartbeat's `HEAD /` probes are not counted).
fn forwarded(upstream: &FakeUpstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.method != http::Method::HEAD)
        .count()
}

fn unavailable(errno: u16) -> Reply {
    Reply::new().status(503).header("retry-after", "2").json(
        json!({"code": 503, "errno": errno, "error": "Service Unavailable", "message": "busy"}),
    )
}

fn route(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{upstream}\"\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_one_replica_learns_is_enforced_by_the_others_with_one_probe_and_one_ramp() {
    let redis = RedisServer::start().await;
    let api = FakeUpstream::start().await;
    let dir = secrets();
    let extra = format!(
        "{}\n[backoff]\nramp_period = \"3s\"\nramp_steps = 1\nramp_start_percent = 50\nramp_base_rate = 4\n\n{}",
        redis_section(&redis, ""),
        route("api", "api", "")
    );
    let gws = fleet(3, &config_with(&api.url(), &extra), dir.path()).await;

    // Replica 0 meets a 503 with Retry-After: 2 and opens a 2 s window.
    api.push(unavailable(201));
    let first = client::get(&gws[0].url("/api/x")).await;
    assert_eq!(first.status_u16(), 503);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The others learned it by pub/sub: they answer locally, with the same deadline.
    for gw in &gws[1..] {
        let r = client::get(&gw.url("/api/x")).await;
        assert_eq!(r.status_u16(), 503, "{}", r.text());
        assert_eq!(r.json()["errno"], 201);
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "retry-after {retry}");
    }
    assert_eq!(
        forwarded(&api),
        1,
        "only the first request reached the upstream"
    );

    // After the window: one probe for the whole fleet (it is slow, so the others ask while it
    // is out), then a ramp at 50 % of 4/s = 2 requests per second for the whole fleet.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    api.set_default(Reply::new().delay(Duration::from_millis(400)));
    let mut probes = Vec::new();
    for round in 0..3 {
        for gw in &gws {
            let url = gw.url("/api/probe");
            probes.push(tokio::spawn(async move { client::get(&url).await }));
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut passed = 0;
    for p in probes {
        let r = p.await.unwrap();
        if r.status_u16() == 200 {
            passed += 1;
        } else {
            assert_eq!(r.status_u16(), 503, "{}", r.text());
            assert_eq!(r.json()["errno"], 201);
        }
    }
    assert_eq!(passed, 1, "exactly one probe fleet-wide");
    assert_eq!(forwarded(&api), 2);

    api.set_default(Reply::new());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ramp = Vec::new();
    for _ in 0..2 {
        for gw in &gws {
            ramp.push(client::get(&gw.url("/api/ramp")).await.status_u16());
        }
    }
    let admitted = ramp.iter().filter(|s| **s == 200).count();
    assert_eq!(
        admitted, 2,
        "the fleet ramps at 2/s, not 2/s per replica: {ramp:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_wide_quota_and_upstream_cap_admit_exactly_n() {
    let redis = RedisServer::start().await;
    let api = FakeUpstream::start().await;
    let dir = secrets();
    let extra = format!(
        r#"{redis}
[[upstreams]]
name = "capped"
url = "{api}"
rate_limit = {{ requests = 4, window = "60s" }}

{quota}
{capped}
"#,
        redis = redis_section(&redis, ""),
        api = api.url(),
        quota = route(
            "quota",
            "api",
            "quota = { requests = 5, window = \"60s\", key = \"header:X-Api-Key\", headers = true }"
        ),
        capped = route("capped", "capped", ""),
    );
    let gws = fleet(3, &config_with(&api.url(), &extra), dir.path()).await;

    let mut statuses = Vec::new();
    for i in 0..15 {
        let gw = &gws[i % 3];
        let r = client::send("GET", &gw.url("/quota/x"), &[("x-api-key", API_KEY)], "").await;
        if r.status_u16() == 429 {
            assert_eq!(r.json()["errno"], 114);
            assert!(r.header("retry-after").is_some());
        }
        statuses.push(r.status_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 10);
    // Another caller has its own quota.
    let other = client::send(
        "GET",
        &gws[1].url("/quota/x"),
        &[("x-api-key", "other")],
        "",
    )
    .await;
    assert_eq!(other.status_u16(), 200);
    assert!(other.header("ratelimit").is_some());

    let mut capped = Vec::new();
    for i in 0..9 {
        capped.push(client::get(&gws[i % 3].url("/capped/x")).await.status_u16());
    }
    assert_eq!(
        capped.iter().filter(|s| **s == 200).count(),
        4,
        "{capped:?}"
    );
    assert_eq!(capped.iter().filter(|s| **s == 503).count(), 5);
}

/// A fake FxA OAuth server: `OLD` is expired, `/v1/token` mints `NEW` (slowly) and counts.
fn fake_oauth(oauth: &FakeUpstream) -> Arc<AtomicUsize> {
    let token_calls = Arc::new(AtomicUsize::new(0));
    oauth.on_fn("/v1/introspect", |req| {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        if req.form_field("token").as_deref() == Some(NEW) {
            Reply::new().json(json!({
                "active": true, "sub": UID, "client_id": CLIENT_ID, "scope": "profile",
                "token_type": "access_token", "iat": now_ms - 1000, "exp": now_ms + 3_600_000,
            }))
        } else {
            Reply::new().json(json!({"active": false}))
        }
    });
    let calls = token_calls.clone();
    oauth.on_fn("/v1/token", move |req| {
        calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(req.form_field("refresh_token").as_deref(), Some(REFRESH));
        Reply::new()
            .delay(Duration::from_millis(300))
            .json(json!({"access_token": NEW, "token_type": "bearer", "scope": "profile", "expires_in": 3600}))
    });
    token_calls
}

fn refresh_config(redis: &RedisServer, api: &FakeUpstream, oauth: &FakeUpstream) -> String {
    let extra = format!(
        r#"{redis}
[[upstreams]]
name = "oauth"
url = "{oauth}"
connect_timeout = "1s"
response_timeout = "5s"

[bearer]
oauth_upstream = "oauth"

[refresh]
client_id = "{CLIENT_ID}"
client_secret = {{ file = "client.secret" }}
grace = "60s"

{profile}
"#,
        redis = redis_section(redis, ""),
        oauth = oauth.url(),
        profile = route(
            "profile",
            "api",
            "auth = { policy = \"bearer\", scopes = [\"profile\"] }\nrefresh = true"
        ),
    );
    config_with(&api.url(), &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_expired_token_over_three_replicas_makes_one_token_call_and_one_new_token() {
    let redis = RedisServer::start().await;
    let api = FakeUpstream::start().await;
    let oauth = FakeUpstream::start().await;
    let token_calls = fake_oauth(&oauth);
    let dir = secrets();
    let gws = fleet(3, &refresh_config(&redis, &api, &oauth), dir.path()).await;

    let bearer = format!("Bearer {OLD}");
    let mut requests = Vec::new();
    for i in 0..100 {
        let url = gws[i % 3].url("/profile/v1/me");
        let bearer = bearer.clone();
        requests.push(tokio::spawn(async move {
            let headers = [
                ("authorization", bearer.as_str()),
                ("x-fxa-refresh-token", REFRESH),
            ];
            client::send("GET", &url, &headers, "").await
        }));
    }
    for r in requests {
        let r: TestResponse = r.await.unwrap();
        assert_eq!(r.status_u16(), 200, "{}", r.text());
        assert_eq!(r.header("x-fxa-access-token"), Some(NEW));
        assert_eq!(r.header("x-fxa-refresh"), Some("refreshed"));
    }
    assert_eq!(
        token_calls.load(Ordering::SeqCst),
        1,
        "one /v1/token call fleet-wide"
    );
    let sent = format!("Bearer {NEW}");
    let forwarded_with: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method != http::Method::HEAD)
        .collect();
    assert_eq!(forwarded_with.len(), 100);
    assert!(
        forwarded_with
            .iter()
            .all(|r| r.header("authorization") == Some(sent.as_str()))
    );

    // Re-authentication is seen by all: a dead refresh token is refused by every replica
    // after one call.
    let dead = "4444444444444444444444444444444444444444444444444444444444444444";
    oauth.on_fn("/v1/token", {
        let calls = token_calls.clone();
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Reply::new().status(400).json(json!({"code": 400, "errno": 108, "error": "Bad Request", "message": "Invalid token"}))
        }
    });
    for gw in &gws {
        let headers = [
            ("authorization", bearer.as_str()),
            ("x-fxa-refresh-token", dead),
        ];
        let r = client::send("GET", &gw.url("/profile/v1/me"), &headers, "").await;
        assert_eq!(r.status_u16(), 401, "{}", r.text());
        assert_eq!(r.json()["errno"], 110);
    }
    assert_eq!(
        token_calls.load(Ordering::SeqCst),
        2,
        "one call for the dead token too"
    );
}

fn amo_config(redis: &RedisServer, api: &FakeUpstream, on_down: &str) -> String {
    let extra = format!(
        r#"{redis}
[[amo_issuers]]
api_key = "{ISSUER}"
secret = {{ file = "issuer.secret" }}

{verify}
{quota}
{plain}
"#,
        redis = redis_section(redis, on_down),
        verify = route("verify", "api", "auth = { policy = \"amo-jwt-verify\" }"),
        quota = route("quota", "api", "quota = { requests = 3, window = \"60s\" }"),
        plain = route("plain", "api", ""),
    );
    config_with(&api.url(), &extra)
}

fn caller_jwt(jti: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": ISSUER, "jti": jti, "iat": now, "exp": now + 60});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(ISSUER_SECRET.as_bytes()),
    )
    .unwrap();
    format!("JWT {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amo_jwt_accepted_by_one_replica_is_refused_by_another() {
    let redis = RedisServer::start().await;
    let api = FakeUpstream::start().await;
    let dir = secrets();
    let gws = fleet(2, &amo_config(&redis, &api, ""), dir.path()).await;

    let jwt = caller_jwt("nonce-fleet-1");
    let headers = [("authorization", jwt.as_str())];
    let first = client::send("GET", &gws[0].url("/verify/x"), &headers, "").await;
    assert_eq!(first.status_u16(), 200, "{}", first.text());
    for gw in &gws {
        let again = client::send("GET", &gw.url("/verify/x"), &headers, "").await;
        assert_eq!(again.status_u16(), 401);
        assert_eq!(again.json()["errno"], 110);
        assert!(
            again.json()["message"]
                .as_str()
                .unwrap()
                .contains("already used")
        );
    }
    assert_eq!(forwarded(&api), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_requests_are_served_counted_and_sharing_resumes_when_it_returns() {
    let mut redis = RedisServer::start().await;
    let api = FakeUpstream::start().await;
    let dir = secrets();
    let gws = fleet(2, &amo_config(&redis, &api, ""), dir.path()).await;
    assert_eq!(client::get(&gws[0].url("/quota/x")).await.status_u16(), 200);

    redis.kill();
    let started = Instant::now();
    for gw in &gws {
        // Served, without waiting on Redis for long.
        assert_eq!(client::get(&gw.url("/plain/x")).await.status_u16(), 200);
        // The quota falls back to this replica's own count (on_redis_down.quotas = "local").
        assert_eq!(client::get(&gw.url("/quota/x")).await.status_u16(), 200);
        // The replay cache refuses rather than risk a replay (the default for it).
        let jwt = caller_jwt("nonce-while-down");
        let r = client::send(
            "GET",
            &gw.url("/verify/x"),
            &[("authorization", jwt.as_str())],
            "",
        )
        .await;
        assert_eq!(r.status_u16(), 503, "{}", r.text());
        assert_eq!(r.json()["errno"], 201);
        assert!(r.header("retry-after").is_some());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for gw in &gws {
        wait_redis_status(gw, "degraded").await;
        let (status, body) = heartbeat(gw).await;
        assert_eq!(status, 200, "degraded, not failed: {body}");
        assert_eq!(body["status"], "warning");
        let text = metrics(gw).await;
        assert_eq!(series(&text, "fxa_gateway_redis_up "), 0.0, "{text}");
        assert!(
            series(
                &text,
                "fxa_gateway_redis_fallbacks_total{state=\"quotas\",outcome=\"local\"}"
            ) >= 1.0,
            "{text}"
        );
        assert!(
            series(
                &text,
                "fxa_gateway_redis_fallbacks_total{state=\"amo_replay\",outcome=\"refused\"}"
            ) >= 1.0,
            "{text}"
        );
    }

    redis.restart().await;
    for gw in &gws {
        wait_redis_status(gw, "ok").await;
        assert_eq!(series(&metrics(gw).await, "fxa_gateway_redis_up "), 1.0);
    }
    // Sharing again: a jti is accepted once fleet-wide, a window opened by one replica holds
    // on the other.
    let jwt = caller_jwt("nonce-after-restart");
    let headers = [("authorization", jwt.as_str())];
    assert_eq!(
        client::send("GET", &gws[1].url("/verify/x"), &headers, "")
            .await
            .status_u16(),
        200
    );
    assert_eq!(
        client::send("GET", &gws[0].url("/verify/x"), &headers, "")
            .await
            .status_u16(),
        401
    );
    api.clear_requests();
    api.push(unavailable(201));
    assert_eq!(client::get(&gws[0].url("/plain/x")).await.status_u16(), 503);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(client::get(&gws[1].url("/plain/x")).await.status_u16(), 503);
    assert_eq!(forwarded(&api), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_state_over_rediss_with_a_ca_file() {
    let certs = support::client::TestCerts::new(&["localhost"]);
    let redis = RedisServer::start_tls(&certs).await;
    let api = FakeUpstream::start().await;
    let dir = secrets();
    // TLS handshakes on a loaded test machine get more time than the plain tests.
    let section = redis_section(&redis, "")
        .replace(
            "key_prefix",
            &format!("ca_file = {:?}\nkey_prefix", redis.ca_path()),
        )
        .replace("connect_timeout = \"1s\"", "connect_timeout = \"3s\"")
        .replace("command_timeout = \"1s\"", "command_timeout = \"2s\"");
    let extra = format!(
        "{section}\n[[amo_issuers]]\napi_key = \"{ISSUER}\"\nsecret = {{ file = \"issuer.secret\" }}\n{}",
        route("verify", "api", "auth = { policy = \"amo-jwt-verify\" }")
    );
    let gws = fleet(2, &config_with(&api.url(), &extra), dir.path()).await;
    let jwt = caller_jwt("nonce-over-tls");
    let headers = [("authorization", jwt.as_str())];
    assert_eq!(
        client::send("GET", &gws[0].url("/verify/x"), &headers, "")
            .await
            .status_u16(),
        200
    );
    let replay = client::send("GET", &gws[1].url("/verify/x"), &headers, "").await;
    assert_eq!(replay.status_u16(), 401, "{}", replay.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cache_set_to_local_keeps_verifying_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let api = FakeUpstream::start().await;
    let dir = secrets();
    let on_down = "[redis.on_redis_down]\namo_replay = \"local\"\nquotas = \"refuse\"";
    let gws = fleet(1, &amo_config(&redis, &api, on_down), dir.path()).await;
    redis.kill();
    let jwt = caller_jwt("nonce-local");
    let headers = [("authorization", jwt.as_str())];
    assert_eq!(
        client::send("GET", &gws[0].url("/verify/x"), &headers, "")
            .await
            .status_u16(),
        200
    );
    assert_eq!(
        client::send("GET", &gws[0].url("/verify/x"), &headers, "")
            .await
            .status_u16(),
        401
    );
    let r = client::get(&gws[0].url("/quota/x")).await;
    assert_eq!(
        r.status_u16(),
        503,
        "quotas refuse without Redis: {}",
        r.text()
    );
    assert_eq!(r.json()["errno"], 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_secret_id_or_jti_is_ever_written_to_redis() {
    let redis = RedisServer::start().await;
    let api = FakeUpstream::start().await;
    let oauth = FakeUpstream::start().await;
    fake_oauth(&oauth);
    let dir = secrets();
    // Refresh (access tokens, refresh token, client secret) on two replicas.
    let gws = fleet(2, &refresh_config(&redis, &api, &oauth), dir.path()).await;
    for gw in &gws {
        let bearer = format!("Bearer {OLD}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("x-fxa-refresh-token", REFRESH),
        ];
        let r = client::send("GET", &gw.url("/profile/v1/me"), &headers, "").await;
        assert_eq!(r.header("x-fxa-access-token"), Some(NEW));
    }
    // A per-identity window (the user id) from a 429.
    api.push(Reply::new().status(429).header("retry-after", "30").json(
        json!({"code": 429, "errno": 114, "error": "Too Many Requests", "message": "slow down"}),
    ));
    let bearer = format!("Bearer {NEW}");
    let r = client::send(
        "GET",
        &gws[0].url("/profile/v1/me"),
        &[("authorization", bearer.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status_u16(), 429);
    drop(gws);
    // AMO JWTs (jti, issuer secret) and a header-keyed quota (the API key).
    let gws = fleet(1, &amo_config(&redis, &api, ""), dir.path()).await;
    let jwt = caller_jwt("nonce-secret-scan");
    assert_eq!(
        client::send(
            "GET",
            &gws[0].url("/verify/x"),
            &[("authorization", jwt.as_str())],
            ""
        )
        .await
        .status_u16(),
        200
    );
    let quota_cfg = format!(
        "{}\n{}",
        redis_section(&redis, ""),
        route(
            "q",
            "api",
            "quota = { requests = 5, window = \"60s\", key = \"header:X-Api-Key\" }"
        )
    );
    let q = TestGateway::start_in(&config_with(&api.url(), &quota_cfg), dir.path()).await;
    wait_redis_status(&q, "ok").await;
    assert_eq!(
        client::send("GET", &q.url("/q/x"), &[("x-api-key", API_KEY)], "")
            .await
            .status_u16(),
        200
    );

    let dump = redis.dump().await;
    assert!(
        dump.len() >= 4,
        "the flows above wrote their state: {} keys",
        dump.len()
    );
    let kinds = ["{rf:", "{amo:", "{q:", "{bo}"];
    for kind in kinds {
        assert!(
            dump.iter()
                .any(|(k, _)| String::from_utf8_lossy(k).contains(kind)),
            "no {kind} key in {:?}",
            dump.iter()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        );
    }
    let secrets: [&[u8]; 10] = [
        OLD.as_bytes(),
        REFRESH.as_bytes(),
        NEW.as_bytes(),
        CLIENT_SECRET.as_bytes(),
        ISSUER_SECRET.as_bytes(),
        b"nonce-secret-scan",
        UID.as_bytes(),
        API_KEY.as_bytes(),
        HASHING_KEY.as_bytes(),
        ENCRYPTION_KEY.as_bytes(),
    ];
    for (key, value) in &dump {
        for secret in secrets {
            let found = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret);
            assert!(
                !found(key) && !found(value),
                "{:?} found in Redis under {}",
                String::from_utf8_lossy(secret),
                String::from_utf8_lossy(key)
            );
        }
    }
}

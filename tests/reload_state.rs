//! What a reload keeps, through the real binary and `POST /__reload__`: state that still means
//! the same thing survives by name (quota counters, back-off windows, idle pooled connections,
//! the introspection cache, refresh grants, the AMO replay cache), and a change to its
//! defining fields starts it afresh.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::client;
use support::fake::{FakeUpstream, Reply};
use support::reloading::Reloading;
use tempfile::TempDir;

fn base(upstreams: &str, rest: &str) -> String {
    format!(
        r#"
[server.log]
format = "json"
access_log = false

[reload]
watch = false

[[listeners]]
name = "main"
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

{upstreams}
{rest}
"#
    )
}

fn upstream(name: &str, url: &str, extra: &str) -> String {
    format!("[[upstreams]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

fn route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\n"
    )
}

async fn reload(gw: &Reloading, toml: &str) {
    gw.write_config(toml);
    let resp = gw.reload().await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
}

async fn status(url: &str, headers: &[(&str, &str)]) -> u16 {
    client::send("GET", url, headers, "").await.status_u16()
}

#[tokio::test]
async fn quota_counters_survive_a_reload_until_the_quota_changes() {
    let api = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let with = |requests: u32, extra_route: &str| {
        let quota = format!("quota = {{ requests = {requests}, window = \"1m\" }}");
        base(
            &upstream("api", &api.url(), ""),
            &format!(
                "{}{extra_route}",
                route("limited", "/limited", "api", &quota)
            ),
        )
    };
    let gw = Reloading::start(dir.path(), &with(2, "")).await;
    let url = format!("http://{}/limited/x", gw.addr("main"));
    assert_eq!(status(&url, &[]).await, 200);
    assert_eq!(status(&url, &[]).await, 200);
    assert_eq!(status(&url, &[]).await, 429);

    // Another route added: the quota is the same, so are its counters.
    reload(&gw, &with(2, &route("other", "/other", "api", ""))).await;
    let resp = client::get(&url).await;
    assert_eq!(
        resp.status_u16(),
        429,
        "the reload gave the caller a fresh quota"
    );
    assert_eq!(resp.json()["errno"], 114);

    // A new quota is new counters.
    reload(&gw, &with(3, "")).await;
    assert_eq!(status(&url, &[]).await, 200);
}

#[tokio::test]
async fn a_back_off_window_survives_a_reload_that_reorders_upstreams_but_not_a_new_url() {
    let api = FakeUpstream::start().await;
    let flaky = FakeUpstream::start().await;
    flaky.push(
        Reply::new()
            .status(503)
            .header("retry-after", "120")
            .body("busy"),
    );
    let dir = TempDir::new().unwrap();
    let routes = format!(
        "{}{}",
        route("api", "/api", "api", ""),
        route("flaky", "/flaky", "flaky", "")
    );
    let upstreams = |flaky_url: &str, flaky_first: bool| {
        let (a, f) = (
            upstream("api", &api.url(), ""),
            upstream("flaky", flaky_url, ""),
        );
        if flaky_first {
            format!("{f}{a}")
        } else {
            format!("{a}{f}")
        }
    };
    let gw = Reloading::start(dir.path(), &base(&upstreams(&flaky.url(), false), &routes)).await;
    let url = format!("http://{}/flaky/x", gw.addr("main"));
    assert_eq!(status(&url, &[]).await, 503);
    let local = client::get(&url).await;
    assert_eq!(local.status_u16(), 503);
    assert_eq!(local.json()["errno"], 201);
    assert_eq!(
        flaky.request_count(),
        1,
        "the window keeps traffic off the upstream"
    );

    // The upstreams change places (new indices): the window follows the name.
    reload(&gw, &base(&upstreams(&flaky.url(), true), &routes)).await;
    let still = client::get(&url).await;
    assert_eq!(still.status_u16(), 503);
    assert_eq!(still.json()["errno"], 201);
    assert!(still.header("retry-after").unwrap().parse::<u64>().unwrap() > 100);
    assert_eq!(flaky.request_count(), 1);
    assert_eq!(
        status(&format!("http://{}/api/x", gw.addr("main")), &[]).await,
        200
    );

    // Another server under the same name: its window is not the old server's.
    let replacement = FakeUpstream::start().await;
    reload(&gw, &base(&upstreams(&replacement.url(), true), &routes)).await;
    assert_eq!(status(&url, &[]).await, 200);
    assert_eq!(replacement.request_count(), 1);
}

#[tokio::test]
async fn idle_pooled_connections_survive_a_reload_until_the_pool_changes() {
    let api = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let with = |idle: &str, extra_route: &str| {
        base(
            &upstream(
                "api",
                &api.url(),
                &format!("pool_idle_timeout = \"{idle}\""),
            ),
            &format!("{}{extra_route}", route("api", "/api", "api", "")),
        )
    };
    let gw = Reloading::start(dir.path(), &with("90s", "")).await;
    let url = format!("http://{}/api/x", gw.addr("main"));
    for _ in 0..3 {
        assert_eq!(status(&url, &[]).await, 200);
    }
    assert_eq!(api.connection_count(), 1);
    reload(&gw, &with("90s", &route("other", "/other", "api", ""))).await;
    for _ in 0..3 {
        assert_eq!(status(&url, &[]).await, 200);
    }
    assert_eq!(
        api.connection_count(),
        1,
        "the idle connection was kept through the reload"
    );
    reload(&gw, &with("60s", "")).await;
    assert_eq!(status(&url, &[]).await, 200);
    assert_eq!(
        api.connection_count(),
        2,
        "a changed pool starts with no connections"
    );
}

const CLIENT_ID: &str = "5882386c6d801776";
const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const REFRESH: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A fake FxA OAuth server: `OLD` has expired, `NEW` is active, and `REFRESH` mints `NEW`.
async fn fake_oauth() -> FakeUpstream {
    let oauth = FakeUpstream::start().await;
    oauth.on_fn("/v1/introspect", |req| {
        if req.form_field("token").as_deref() == Some(NEW) {
            let now = now_ms();
            Reply::new().json(json!({
                "active": true, "scope": "profile", "client_id": CLIENT_ID,
                "token_type": "access_token", "sub": "0123456789abcdef0123456789abcdef",
                "iat": now, "exp": now + 3_600_000,
            }))
        } else {
            Reply::new().json(json!({"active": false}))
        }
    });
    oauth.on(
        "/v1/token",
        Reply::new().json(json!({
            "access_token": NEW, "token_type": "bearer", "scope": "profile", "expires_in": 3600,
        })),
    );
    oauth
}

fn calls(oauth: &FakeUpstream, path: &str) -> usize {
    oauth.requests().iter().filter(|r| r.path() == path).count()
}

#[tokio::test]
async fn the_introspection_cache_and_refresh_grants_survive_a_reload_until_their_settings_change() {
    let oauth = fake_oauth().await;
    let api = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let with = |max_ttl: &str, extra_route: &str| {
        let upstreams = format!(
            "{}{}",
            upstream("oauth", &oauth.url(), ""),
            upstream("api", &api.url(), "")
        );
        let rest = format!(
            "[bearer]\noauth_upstream = \"oauth\"\ncache_max_ttl = \"{max_ttl}\"\n\n\
             [refresh]\nclient_id = \"{CLIENT_ID}\"\n\n{}{extra_route}",
            route(
                "profile",
                "/profile",
                "api",
                "auth = { policy = \"bearer\", scopes = [\"profile\"] }\nrefresh = true"
            )
        );
        base(&upstreams, &rest)
    };
    let gw = Reloading::start(dir.path(), &with("5m", "")).await;
    let url = format!("http://{}/profile/v1/x", gw.addr("main"));
    let new = format!("Bearer {NEW}");
    assert_eq!(status(&url, &[("authorization", &new)]).await, 200);
    assert_eq!(status(&url, &[("authorization", &new)]).await, 200);
    assert_eq!(calls(&oauth, "/v1/introspect"), 1);
    // An expired token and its refresh token: refreshed once.
    let old = format!("Bearer {OLD}");
    let refreshing = [
        ("authorization", old.as_str()),
        ("x-fxa-refresh-token", REFRESH),
    ];
    let first = client::send("GET", &url, &refreshing, "").await;
    assert_eq!(first.status_u16(), 200, "{}", first.text());
    assert_eq!(calls(&oauth, "/v1/token"), 1);

    reload(&gw, &with("5m", &route("other", "/other", "api", ""))).await;
    assert_eq!(status(&url, &[("authorization", &new)]).await, 200);
    let again = client::send("GET", &url, &refreshing, "").await;
    assert_eq!(again.status_u16(), 200, "{}", again.text());
    assert_eq!(
        calls(&oauth, "/v1/token"),
        1,
        "the grant made before the reload was reused"
    );
    let introspections = calls(&oauth, "/v1/introspect");
    assert!(
        introspections <= 3,
        "cached answers were kept: {introspections} calls"
    );

    // A shorter cache TTL: answers cached under the old one are not kept.
    reload(&gw, &with("1m", "")).await;
    assert_eq!(status(&url, &[("authorization", &new)]).await, 200);
    assert_eq!(calls(&oauth, "/v1/introspect"), introspections + 1);
}

const ISSUER_SECRET: &str = "issuer-secret-0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn a_used_amo_jwt_stays_used_after_a_reload() {
    let api = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("issuer.secret"), ISSUER_SECRET).unwrap();
    let with = |extra_route: &str| {
        let rest = format!(
            "[[amo_issuers]]\napi_key = \"user:9:9\"\nsecret = {{ file = \"issuer.secret\" }}\n\n{}{extra_route}",
            route(
                "verify",
                "/verify",
                "api",
                "auth = { policy = \"amo-jwt-verify\" }"
            )
        );
        base(&upstream("api", &api.url(), ""), &rest)
    };
    let gw = Reloading::start(dir.path(), &with("")).await;
    let url = format!("http://{}/verify/x", gw.addr("main"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "user:9:9", "jti": "once", "iat": now, "exp": now + 60});
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(ISSUER_SECRET.as_bytes()),
    )
    .unwrap();
    let jwt = format!("JWT {token}");
    assert_eq!(status(&url, &[("authorization", &jwt)]).await, 200);
    reload(&gw, &with(&route("other", "/other", "api", ""))).await;
    let replay = client::send("GET", &url, &[("authorization", &jwt)], "").await;
    assert_eq!(
        replay.status_u16(),
        401,
        "a replay after the reload was accepted"
    );
    assert_eq!(replay.json()["errno"], 110);
    assert_eq!(api.request_count(), 1);
}

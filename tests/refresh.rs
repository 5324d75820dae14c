//! Transparent refresh end to end: a gateway in front of a fake FxA (`oauth`: `/v1/introspect`
//! and `/v1/token` over one token table) and a fake resource server (`api`, which accepts the
//! access tokens the table holds as active and answers 401 errno 100 otherwise, as FxA's
//! profile server does).
//!
//! Covers the three triggers (inactive/expired token, expiry within the skew, upstream 401),
//! the replay (bodies byte for byte, over the buffer limit not replayed, at most once), the
//! token hand-over headers, single flight and the grace period, seeding of the introspection
//! cache, re-authentication (400/108 and 401/110) with the cache dropped, outages and back-off
//! (503 errno 104), misconfiguration (500 errno 999), where `X-FxA-Refresh-Token` is accepted,
//! and the metrics. Time moves on the gateway's injected clock.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fxa_gateway::clock::ManualClock;
use serde_json::{Value, json};
use support::TestGateway;
use support::client::{self, TestClient, TestResponse};
use support::fake::{FakeUpstream, RecordedRequest, Reply};

const INTROSPECT: &str = "/v1/introspect";
const TOKEN: &str = "/v1/token";
const OAUTH_TOKEN: &str = "/v1/oauth/token";
const CLIENT_ID: &str = "5882386c6d801776";
const SECRET: &str = "a3c0c5cf3c2e1b47d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6";
const OTHER_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const UID: &str = "0123456789abcdef0123456789abcdef";
const OTHER_UID: &str = "fedcba9876543210fedcba9876543210";
const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const REFRESH: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// One access token as the fake OAuth server knows it.
#[derive(Clone)]
struct AccessRow {
    sub: String,
    scope: String,
    exp_ms: u64,
    active: bool,
}

/// The fake FxA's state: tokens, refresh tokens, and how `/v1/token` behaves.
#[derive(Default)]
struct FxaState {
    access: HashMap<String, AccessRow>,
    /// Refresh token -> (user, scope).
    refresh: HashMap<String, (String, String)>,
    minted: usize,
    expires_in: u64,
    /// Answer every token call with this instead.
    token_override: Option<Reply>,
    token_delay: Option<Duration>,
    /// Tokens the resource server refuses although the OAuth server says they are active.
    api_refuses: HashSet<String>,
    /// Answer every resource request with 401.
    api_always_401: bool,
    clock: Option<Arc<ManualClock>>,
}

impl FxaState {
    fn now_ms(&self) -> u64 {
        use fxa_gateway::clock::Clock as _;
        let clock = self.clock.as_ref().expect("clock set after start");
        clock.now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
    }

    fn introspect(&self, req: &RecordedRequest) -> Reply {
        let token = req.form_field("token").unwrap_or_default();
        match self.access.get(&token) {
            Some(row) if row.active && row.exp_ms > self.now_ms() => Reply::new().json(json!({
                "active": true,
                "sub": row.sub,
                "client_id": CLIENT_ID,
                "scope": row.scope,
                "token_type": "access_token",
                "iat": self.now_ms() - 1000,
                "exp": row.exp_ms,
            })),
            // FxA answers an expired or unknown token with `active: false` and nothing else.
            _ => Reply::new().json(json!({"active": false})),
        }
    }

    fn token(&mut self, req: &RecordedRequest, path: &str) -> Reply {
        if let Some(reply) = self.token_override.clone() {
            return reply;
        }
        let oauth_route = path == TOKEN;
        if req.form_field("client_id").as_deref() != Some(CLIENT_ID) {
            return fxa_error(400, 101, "Unknown client");
        }
        let secret = req.form_field("client_secret");
        if secret.is_some() && secret.as_deref() != Some(SECRET) {
            return fxa_error(400, 102, "Incorrect secret");
        }
        if req.form_field("grant_type").as_deref() != Some("refresh_token") {
            return fxa_error(400, 109, "Invalid request parameter");
        }
        let refresh = req.form_field("refresh_token").unwrap_or_default();
        let Some((sub, scope)) = self.refresh.get(&refresh).cloned() else {
            // §1.2: /v1/token says 400 errno 108; /v1/oauth/token re-throws it as 401/110.
            return if oauth_route {
                fxa_error(400, 108, "Invalid token")
            } else {
                fxa_error(401, 110, "Invalid authentication token")
            };
        };
        let scope = req
            .form_field("scope")
            .map(|s| s.replace('+', " ").replace("%3A", ":"))
            .unwrap_or(scope);
        self.minted += 1;
        let token = format!("{:064x}", 0xabc0_0000 + self.minted);
        let exp_ms = self.now_ms() + self.expires_in * 1000;
        self.access.insert(
            token.clone(),
            AccessRow {
                sub,
                scope: scope.clone(),
                exp_ms,
                active: true,
            },
        );
        let mut reply = Reply::new().json(json!({
            "access_token": token,
            "token_type": "bearer",
            "scope": scope,
            "expires_in": self.expires_in,
            "auth_at": 1_700_000_000,
        }));
        if let Some(delay) = self.token_delay {
            reply = reply.delay(delay);
        }
        reply
    }

    fn api(&self, req: &RecordedRequest) -> Reply {
        let token = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let accepted = !self.api_always_401
            && !self.api_refuses.contains(token)
            && self
                .access
                .get(token)
                .is_some_and(|row| row.active && row.exp_ms > self.now_ms());
        if accepted {
            Reply::new().echo()
        } else {
            fxa_error(401, 100, "Unauthorized for route")
        }
    }
}

fn fxa_error(status: u16, errno: u16, message: &str) -> Reply {
    Reply::new().status(status).json(json!({
        "code": status,
        "errno": errno,
        "error": if status == 401 { "Unauthorized" } else { "Bad Request" },
        "message": message,
    }))
}

/// Gateway + fake FxA + fake resource server.
struct Env {
    gw: TestGateway,
    oauth: FakeUpstream,
    api: FakeUpstream,
    fxa: Arc<Mutex<FxaState>>,
    _dir: tempfile::TempDir,
}

/// Options that change the gateway config.
struct Setup {
    secret: &'static str,
    token_path: &'static str,
    public_client: bool,
    max_replay_body: &'static str,
    sidecar_accepts: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            secret: SECRET,
            token_path: TOKEN,
            public_client: false,
            max_replay_body: "64KiB",
            sidecar_accepts: true,
        }
    }
}

impl Env {
    async fn start() -> Env {
        Env::start_with(Setup::default()).await
    }

    async fn start_with(setup: Setup) -> Env {
        let oauth = FakeUpstream::start().await;
        let api = FakeUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("client_secret");
        std::fs::write(&secret_path, format!("{}\n", setup.secret)).unwrap();
        let secret_line = if setup.public_client {
            String::new()
        } else {
            format!("client_secret = {{ file = {:?} }}", secret_path)
        };
        let toml = format!(
            r#"
[[listeners]]
name = "sidecar"
addr = "127.0.0.1:0"
accept_refresh_token = {sidecar_accepts}

[[listeners]]
name = "edge"
addr = "127.0.0.1:0"
accept_refresh_token = false

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "oauth"
url = "{oauth}"
connect_timeout = "1s"
response_timeout = "2s"

[[upstreams]]
name = "api"
url = "{api}"
connect_timeout = "1s"
response_timeout = "2s"

[bearer]
oauth_upstream = "oauth"

[refresh]
token_path = "{token_path}"
client_id = "{CLIENT_ID}"
{secret_line}
max_replay_body = "{max_replay_body}"
grace = "60s"
skew = "30s"

[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "api"
auth = {{ policy = "bearer", scopes = ["profile"], identity_headers = true }}
refresh = true

[[routes]]
name = "narrow"
path_prefix = "/narrow"
upstream = "api"
auth = {{ policy = "bearer", scopes = ["profile:email"] }}
refresh = true
refresh_scope = "profile:email"

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "api"
refresh = true

[[routes]]
name = "plain"
path_prefix = "/plain"
upstream = "api"
auth = {{ policy = "bearer", scopes = ["profile"] }}
"#,
            sidecar_accepts = setup.sidecar_accepts,
            oauth = oauth.url(),
            api = api.url(),
            token_path = setup.token_path,
            max_replay_body = setup.max_replay_body,
        );
        let gw = TestGateway::start(&toml).await;
        let fxa = Arc::new(Mutex::new(FxaState {
            expires_in: 3600,
            clock: Some(gw.clock.clone()),
            ..FxaState::default()
        }));
        let state = Arc::clone(&fxa);
        oauth.on_fn(INTROSPECT, move |req| state.lock().unwrap().introspect(req));
        for path in [TOKEN, OAUTH_TOKEN] {
            let state = Arc::clone(&fxa);
            oauth.on_fn(path, move |req| state.lock().unwrap().token(req, path));
        }
        let state = Arc::clone(&fxa);
        api.set_default(Reply::new());
        api.on_fn("/", move |req| state.lock().unwrap().api(req));
        Env {
            gw,
            oauth,
            api,
            fxa,
            _dir: dir,
        }
    }

    fn fxa(&self) -> std::sync::MutexGuard<'_, FxaState> {
        self.fxa.lock().unwrap()
    }

    /// `token` is an active access token for `sub` expiring in `secs` (gateway clock).
    fn issue(&self, token: &str, sub: &str, scope: &str, secs: u64) {
        let mut fxa = self.fxa();
        let exp_ms = fxa.now_ms() + secs * 1000;
        fxa.access.insert(
            token.to_owned(),
            AccessRow {
                sub: sub.to_owned(),
                scope: scope.to_owned(),
                exp_ms,
                active: true,
            },
        );
    }

    /// The user granted a refresh token to our client.
    fn grant_refresh(&self, refresh: &str, sub: &str, scope: &str) {
        self.fxa()
            .refresh
            .insert(refresh.to_owned(), (sub.to_owned(), scope.to_owned()));
    }

    /// The user disconnected the RP: FxA forgets the refresh token (and its access tokens).
    fn disconnect(&self, refresh: &str) {
        let mut fxa = self.fxa();
        fxa.refresh.remove(refresh);
        for row in fxa.access.values_mut() {
            row.active = false;
        }
    }

    fn calls(&self, path: &str) -> usize {
        self.oauth
            .requests()
            .iter()
            .filter(|r| r.path() == path)
            .count()
    }

    fn token_calls(&self) -> usize {
        self.calls(TOKEN) + self.calls(OAUTH_TOKEN)
    }

    fn introspections(&self) -> usize {
        self.calls(INTROSPECT)
    }

    /// Introspection calls the fake OAuth server received for `token`.
    fn introspections_of(&self, token: &str) -> usize {
        self.oauth
            .requests()
            .iter()
            .filter(|r| r.path() == INTROSPECT && r.form_field("token").as_deref() == Some(token))
            .count()
    }

    /// The access token the resource server saw on its `n`-th request.
    fn api_token(&self, n: usize) -> String {
        let requests = self.api.requests();
        requests[n]
            .header("authorization")
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_owned()
    }

    async fn get(&self, path: &str, token: &str, refresh: Option<&str>) -> TestResponse {
        self.send_on(self.gw.addrs[0], "GET", path, token, refresh, None)
            .await
    }

    async fn send_on(
        &self,
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        token: &str,
        refresh: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> TestResponse {
        let mut headers = vec![("authorization", format!("Bearer {token}"))];
        if let Some(r) = refresh {
            headers.push(("x-fxa-refresh-token", r.to_owned()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        client::send(
            method,
            &format!("http://{addr}{path}"),
            &headers,
            body.unwrap_or_default(),
        )
        .await
    }

    async fn metrics(&self) -> String {
        client::get(&self.gw.admin_url("/metrics")).await.text()
    }
}

/// The new token and its lifetime are handed to the caller, never cached by anyone.
fn assert_handed_over(resp: &TestResponse, how: &str) -> String {
    let token = resp
        .header("x-fxa-access-token")
        .unwrap_or_else(|| panic!("no X-FxA-Access-Token: {:?}", resp.text()))
        .to_owned();
    assert_eq!(token.len(), 64, "{token}");
    assert_ne!(token, OLD);
    assert_eq!(resp.header("x-fxa-access-token-expires-in"), Some("3600"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("x-fxa-refresh"), Some(how));
    token
}

#[track_caller]
fn assert_metric(metrics: &str, line: &str) {
    assert!(metrics.contains(line), "no {line:?} in:\n{metrics}");
}

fn assert_errno(resp: &TestResponse, status: u16, errno: u64) -> Value {
    assert_eq!(resp.status_u16(), status, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["errno"], errno, "{body}");
    assert_eq!(body["code"], status, "{body}");
    body
}

/// Nothing the resource server received carries the refresh token, in any header.
fn assert_refresh_token_never_forwarded(env: &Env) {
    for req in env.api.requests() {
        assert!(req.header("x-fxa-refresh-token").is_none());
        for (name, value) in &req.headers {
            assert!(
                !value
                    .as_bytes()
                    .windows(REFRESH.len())
                    .any(|w| w == REFRESH.as_bytes()),
                "refresh token forwarded in {name}"
            );
        }
        assert!(!req.body_str().contains(REFRESH));
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_new_one_handed_back() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 600);
    env.grant_refresh(REFRESH, UID, "profile");
    assert_eq!(
        env.get("/profile/v1/me", OLD, Some(REFRESH))
            .await
            .status_u16(),
        200
    );
    assert_eq!(env.token_calls(), 0, "a valid token needs no refresh");

    // Eleven minutes later the token has expired: FxA says `active: false`.
    env.gw.clock.advance(Duration::from_secs(660));
    let resp = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let new = assert_handed_over(&resp, "refreshed");
    assert_eq!(env.token_calls(), 1);

    // The grant was asked for as FxA's RP token endpoint wants it.
    let call = env
        .oauth
        .requests()
        .into_iter()
        .find(|r| r.path() == TOKEN)
        .unwrap();
    assert_eq!(
        call.form_field("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(call.form_field("refresh_token").as_deref(), Some(REFRESH));
    assert_eq!(call.form_field("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(call.form_field("client_secret").as_deref(), Some(SECRET));
    assert_eq!(call.form_field("scope"), None, "no narrowing on this route");
    assert!(
        call.header("authorization").is_none(),
        "never body and Basic both"
    );

    // The upstream got the request once, with the new token and its user.
    assert_eq!(env.api.request_count(), 2);
    assert_eq!(env.api_token(1), new);
    assert_eq!(env.api.requests()[1].header("x-fxa-uid"), Some(UID));
    assert_refresh_token_never_forwarded(&env);
}

#[tokio::test]
async fn a_token_expiring_within_the_skew_is_refreshed_before_forwarding() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 20);
    env.grant_refresh(REFRESH, UID, "profile");
    let resp = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    assert_eq!(resp.status_u16(), 200);
    let new = assert_handed_over(&resp, "refreshed");
    assert_eq!(
        env.api.request_count(),
        1,
        "one upstream request, with the new token"
    );
    assert_eq!(env.api_token(0), new);

    // Without a refresh token the same token is simply used while it lasts.
    let resp = env.get("/profile/v1/me", OLD, None).await;
    assert_eq!(resp.status_u16(), 200);
    assert!(resp.header("x-fxa-access-token").is_none());
    assert_eq!(env.api_token(1), OLD);
}

#[tokio::test]
async fn an_upstream_401_is_refreshed_and_replayed() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 3600);
    env.grant_refresh(REFRESH, UID, "profile");
    // The resource server already refuses the token the OAuth server still calls active.
    env.fxa().api_refuses.insert(OLD.to_owned());
    let resp = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let new = assert_handed_over(&resp, "replayed");
    assert_eq!(env.api.request_count(), 2);
    assert_eq!(env.api_token(0), OLD);
    assert_eq!(env.api_token(1), new);
    assert_eq!(env.token_calls(), 1);
    assert_refresh_token_never_forwarded(&env);

    let metrics = env.metrics().await;
    assert_metric(
        &metrics,
        r#"fxa_gateway_refresh_replays_total{route="profile",outcome="replayed"} 1"#,
    );
    assert_metric(
        &metrics,
        r#"fxa_gateway_refreshes_total{route="profile",outcome="refreshed"} 1"#,
    );
}

#[tokio::test]
async fn a_route_without_introspection_refreshes_on_a_401() {
    let env = Env::start().await;
    env.grant_refresh(REFRESH, UID, "profile");
    // OLD is unknown to FxA: the resource server refuses it.
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let new = assert_handed_over(&resp, "replayed");
    assert_eq!(env.api_token(1), new);
    assert_eq!(env.introspections(), 0, "auth = \"none\" never introspects");
    assert_refresh_token_never_forwarded(&env);
}

#[tokio::test]
async fn a_post_body_is_replayed_byte_for_byte() {
    let env = Env::start().await;
    env.grant_refresh(REFRESH, UID, "profile");
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let resp = env
        .send_on(
            env.gw.addr,
            "POST",
            "/open/v1/upload",
            OLD,
            Some(REFRESH),
            Some(body.clone()),
        )
        .await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_handed_over(&resp, "replayed");
    let requests = env.api.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body.as_ref(), body.as_slice());
    assert_eq!(requests[1].body.as_ref(), body.as_slice());
    assert_eq!(requests[1].method, "POST");
    assert_eq!(requests[1].path(), "/v1/upload");
}

#[tokio::test]
async fn a_body_over_the_replay_limit_is_not_replayed_but_the_new_token_is_given() {
    let env = Env::start_with(Setup {
        max_replay_body: "1KiB",
        ..Setup::default()
    })
    .await;
    env.grant_refresh(REFRESH, UID, "profile");
    let body = vec![b'x'; 4096];
    let resp = env
        .send_on(
            env.gw.addr,
            "POST",
            "/open/v1/upload",
            OLD,
            Some(REFRESH),
            Some(body.clone()),
        )
        .await;
    assert_errno(&resp, 401, 100);
    let new = assert_handed_over(&resp, "not-replayed");
    assert_eq!(env.api.request_count(), 1, "sent once, streamed");
    assert_eq!(env.api.requests()[0].body.as_ref(), body.as_slice());

    // The caller retries with the new token and it works.
    let resp = env
        .send_on(
            env.gw.addr,
            "POST",
            "/open/v1/upload",
            &new,
            Some(REFRESH),
            Some(body),
        )
        .await;
    assert_eq!(resp.status_u16(), 200);
    let metrics = env.metrics().await;
    assert!(
        metrics.contains(
            r#"fxa_gateway_refresh_replays_total{route="open",outcome="not_replayed"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_401_after_the_replay_goes_back_without_another_refresh() {
    let env = Env::start().await;
    env.grant_refresh(REFRESH, UID, "profile");
    env.fxa().api_always_401 = true;
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 401, 100);
    assert_handed_over(&resp, "replayed");
    assert_eq!(env.api.request_count(), 2, "original + one replay, no loop");
    assert_eq!(env.token_calls(), 1);
}

#[tokio::test]
async fn a_rejected_refresh_token_means_reauthentication_and_drops_the_cache() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 3600);
    // The token is cached as active.
    assert_eq!(env.get("/profile/v1/me", OLD, None).await.status_u16(), 200);
    assert_eq!(env.introspections(), 1);

    // The user disconnects the RP: FxA forgets the refresh token, the API refuses the token.
    env.disconnect(REFRESH);
    let resp = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    let body = assert_errno(&resp, 401, 110);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("re-authenticate"),
        "{body}"
    );
    assert_eq!(resp.header("x-fxa-reauth"), Some("required"));
    assert_eq!(
        resp.header("www-authenticate"),
        Some(r#"Bearer realm="fxa-gateway", error="invalid_token""#)
    );
    assert!(resp.header("x-fxa-access-token").is_none());
    assert_eq!(env.token_calls(), 1);

    // The cached "active" answer for the old token is gone: the next use asks FxA again.
    let before = env.introspections();
    let resp = env.get("/profile/v1/me", OLD, None).await;
    assert_errno(&resp, 401, 110);
    assert_eq!(env.introspections(), before + 1, "cache entry dropped");
    let metrics = env.metrics().await;
    assert_metric(
        &metrics,
        r#"fxa_gateway_refreshes_total{route="profile",outcome="reauth"} 1"#,
    );
}

#[tokio::test]
async fn the_auth_server_token_route_rejects_with_401_110_and_that_is_reauthentication_too() {
    let env = Env::start_with(Setup {
        token_path: OAUTH_TOKEN,
        ..Setup::default()
    })
    .await;
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 401, 110);
    assert_eq!(resp.header("x-fxa-reauth"), Some("required"));
    assert_eq!(env.calls(OAUTH_TOKEN), 1);
    assert_eq!(env.calls(TOKEN), 0);
}

#[tokio::test]
async fn an_oauth_outage_during_refresh_is_503_104_and_never_reauthentication() {
    let env = Env::start().await;
    env.grant_refresh(REFRESH, UID, "profile");
    env.fxa().token_override = Some(Reply::new().drop_connection());
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 503, 104);
    assert!(resp.header("x-fxa-reauth").is_none());
    assert!(resp.header("x-fxa-access-token").is_none());

    // 503 with Retry-After: the window is honoured, and later refreshes wait it out.
    env.fxa().token_override =
        Some(fxa_error(503, 201, "Service unavailable").header("retry-after", "30"));
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 503, 104);
    assert_eq!(resp.header("retry-after"), Some("30"));
    let calls = env.token_calls();
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 503, 104);
    assert!(resp.header("retry-after").is_some());
    assert_eq!(
        env.token_calls(),
        calls,
        "no call inside the OAuth server's window"
    );

    // After the window the refresh goes through.
    env.fxa().token_override = None;
    env.gw.clock.advance(Duration::from_secs(31));
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_handed_over(&resp, "replayed");
}

#[tokio::test]
async fn a_proactive_refresh_that_fails_for_an_outage_uses_the_still_valid_token() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 20);
    env.fxa().token_override = Some(fxa_error(500, 999, "Unspecified error"));
    let resp = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert!(resp.header("x-fxa-access-token").is_none());
    assert_eq!(env.api_token(0), OLD);
}

#[tokio::test]
async fn a_refused_client_secret_is_a_500_and_never_reauthentication() {
    let env = Env::start_with(Setup {
        secret: OTHER_SECRET,
        ..Setup::default()
    })
    .await;
    env.grant_refresh(REFRESH, UID, "profile");
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 500, 999);
    assert!(resp.header("x-fxa-reauth").is_none());
    assert_eq!(
        resp.header("x-fxa-gateway-error"),
        Some("refresh-misconfigured")
    );
    let metrics = env.metrics().await;
    assert_metric(
        &metrics,
        r#"fxa_gateway_refreshes_total{route="open",outcome="misconfigured"} 1"#,
    );
}

#[tokio::test]
async fn a_public_client_sends_no_secret_and_a_route_can_narrow_the_scope() {
    let env = Env::start_with(Setup {
        public_client: true,
        ..Setup::default()
    })
    .await;
    env.grant_refresh(REFRESH, UID, "profile");
    let resp = env.get("/narrow/v1/email", OLD, Some(REFRESH)).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_handed_over(&resp, "refreshed");
    let call = env
        .oauth
        .requests()
        .into_iter()
        .find(|r| r.path() == TOKEN)
        .unwrap();
    assert_eq!(call.form_field("client_secret"), None);
    assert_eq!(call.form_field("scope").as_deref(), Some("profile%3Aemail"));
}

#[tokio::test]
async fn two_hundred_concurrent_requests_with_one_expired_token_make_one_refresh_call() {
    let env = Env::start().await;
    env.grant_refresh(REFRESH, UID, "profile");
    // Slow enough that every request arrives while the call is under way.
    env.fxa().token_delay = Some(Duration::from_millis(300));
    let client = TestClient::new();
    let url = env.gw.url("/profile/v1/me");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                client
                    .send(
                        "GET",
                        &url,
                        &[
                            ("authorization", &format!("Bearer {OLD}")),
                            ("x-fxa-refresh-token", REFRESH),
                        ],
                        Vec::new(),
                    )
                    .await
            })
        })
        .collect();
    let mut tokens = HashSet::new();
    for task in tasks {
        let resp = task.await.unwrap();
        assert_eq!(resp.status_u16(), 200, "{}", resp.text());
        tokens.insert(resp.header("x-fxa-access-token").unwrap().to_owned());
    }
    assert_eq!(env.token_calls(), 1, "single flight");
    assert_eq!(tokens.len(), 1, "everyone got the same new token");
    assert_eq!(env.api.request_count(), 200);
    let metrics = env.metrics().await;
    assert_metric(
        &metrics,
        r#"fxa_gateway_refreshes_total{route="profile",outcome="refreshed"} 1"#,
    );
    assert_metric(
        &metrics,
        r#"fxa_gateway_refreshes_total{route="profile",outcome="reused"} 199"#,
    );
}

#[tokio::test]
async fn within_the_grace_period_the_same_old_token_reuses_the_new_one() {
    let env = Env::start().await;
    env.grant_refresh(REFRESH, UID, "profile");
    let first = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    let new = assert_handed_over(&first, "refreshed");

    env.gw.clock.advance(Duration::from_secs(30));
    let again = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    assert_eq!(again.status_u16(), 200);
    assert_eq!(again.header("x-fxa-access-token"), Some(new.as_str()));
    assert_eq!(
        again.header("x-fxa-access-token-expires-in"),
        Some("3570"),
        "the lifetime left, not the original"
    );
    assert_eq!(env.token_calls(), 1, "reused without a call");

    // Past the grace period a new refresh is made.
    env.gw.clock.advance(Duration::from_secs(31));
    let later = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    assert_eq!(later.status_u16(), 200);
    assert_ne!(later.header("x-fxa-access-token"), Some(new.as_str()));
    assert_eq!(env.token_calls(), 2);
}

#[tokio::test]
async fn the_introspection_cache_is_seeded_only_for_the_same_grant() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 20);
    env.grant_refresh(REFRESH, UID, "profile");
    // First refresh: OLD came from elsewhere, so the new token's user is not known for sure.
    let resp = env.get("/profile/v1/me", OLD, Some(REFRESH)).await;
    let second = assert_handed_over(&resp, "refreshed");
    assert_eq!(
        env.introspections_of(&second),
        1,
        "introspected on first use"
    );

    // The second generation was minted here from the same refresh token: seeded.
    env.gw.clock.advance(Duration::from_secs(3600 - 10));
    let resp = env.get("/profile/v1/me", &second, Some(REFRESH)).await;
    let third = assert_handed_over(&resp, "refreshed");
    assert_eq!(
        env.introspections_of(&third),
        0,
        "no call for the seeded token"
    );
    let last = env.api.requests().pop().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {third}").as_str())
    );
    assert_eq!(last.header("x-fxa-uid"), Some(UID));

    // A refresh token of another user paired with this user's token proves nothing: the new
    // token is introspected, and its own user goes upstream.
    const OTHER_REFRESH: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    env.grant_refresh(OTHER_REFRESH, OTHER_UID, "profile");
    env.gw.clock.advance(Duration::from_secs(3600 - 10));
    let resp = env.get("/profile/v1/me", &third, Some(OTHER_REFRESH)).await;
    let fourth = assert_handed_over(&resp, "refreshed");
    assert_eq!(
        env.introspections_of(&fourth),
        1,
        "not seeded across grants"
    );
    let last = env.api.requests().pop().unwrap();
    assert_eq!(last.header("x-fxa-uid"), Some(OTHER_UID));
}

#[tokio::test]
async fn the_refresh_token_header_is_refused_where_the_listener_does_not_accept_it() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 3600);
    let edge = env.gw.addrs[1];
    let resp = env
        .send_on(edge, "GET", "/profile/v1/me", OLD, Some(REFRESH), None)
        .await;
    let body = assert_errno(&resp, 400, 999);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("X-FxA-Refresh-Token"),
        "{body}"
    );
    assert!(!resp.text().contains(REFRESH));
    assert_eq!(env.api.request_count(), 0);
    assert_eq!(env.introspections(), 0);

    // Even on a route that does not refresh.
    let resp = env
        .send_on(edge, "GET", "/plain/v1/me", OLD, Some(REFRESH), None)
        .await;
    assert_errno(&resp, 400, 999);

    // Without the header the edge listener serves as usual.
    let resp = env
        .send_on(edge, "GET", "/plain/v1/me", OLD, None, None)
        .await;
    assert_eq!(resp.status_u16(), 200);

    // A malformed refresh token is refused where the header is accepted.
    let resp = env
        .get("/profile/v1/me", OLD, Some("not-a-refresh-token"))
        .await;
    assert_errno(&resp, 400, 999);
    assert_eq!(env.token_calls(), 0);
}

#[tokio::test]
async fn on_a_route_without_refresh_the_header_is_dropped_and_nothing_is_refreshed() {
    let env = Env::start().await;
    env.issue(OLD, UID, "profile", 3600);
    env.fxa().api_refuses.insert(OLD.to_owned());
    let resp = env.get("/plain/v1/me", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 401, 100);
    assert!(resp.header("x-fxa-access-token").is_none());
    assert_eq!(env.token_calls(), 0);
    assert_refresh_token_never_forwarded(&env);
}

#[tokio::test]
async fn a_listener_can_be_told_not_to_accept_refresh_tokens_even_on_loopback() {
    let env = Env::start_with(Setup {
        sidecar_accepts: false,
        ..Setup::default()
    })
    .await;
    let resp = env.get("/open/v1/thing", OLD, Some(REFRESH)).await;
    assert_errno(&resp, 400, 999);
}

/// A chunked upload (no declared length) as raw HTTP/1.1.
fn chunked_upload(path: &str, chunks: &[&[u8]]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {OLD}\r\n\
         X-FxA-Refresh-Token: {REFRESH}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw
}

fn head_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).into_owned();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[tokio::test]
async fn a_chunked_body_within_the_limit_is_buffered_and_replayed() {
    let env = Env::start_with(Setup {
        max_replay_body: "1KiB",
        ..Setup::default()
    })
    .await;
    env.grant_refresh(REFRESH, UID, "profile");
    let raw = client::raw_exchange(
        env.gw.addr,
        &chunked_upload("/open/v1/upload", &[b"hello ", b"chunked ", b"world"]),
        Duration::from_secs(5),
    )
    .await;
    let head = head_of(&raw);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-fxa-refresh: replayed"), "{head}");
    let requests = env.api.requests();
    assert_eq!(requests.len(), 2);
    for req in &requests {
        assert_eq!(req.body_str(), "hello chunked world");
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_streams_whole_and_is_not_replayed() {
    let env = Env::start_with(Setup {
        max_replay_body: "1KiB",
        ..Setup::default()
    })
    .await;
    env.grant_refresh(REFRESH, UID, "profile");
    let first = vec![b'a'; 700];
    let second = vec![b'b'; 700];
    let third = vec![b'c'; 100];
    let raw = client::raw_exchange(
        env.gw.addr,
        &chunked_upload("/open/v1/upload", &[&first, &second, &third]),
        Duration::from_secs(5),
    )
    .await;
    let head = head_of(&raw);
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("x-fxa-refresh: not-replayed"), "{head}");
    assert!(head.contains("x-fxa-access-token:"), "{head}");
    let requests = env.api.requests();
    assert_eq!(requests.len(), 1);
    let expected: Vec<u8> = [first, second, third].concat();
    assert_eq!(
        requests[0].body.as_ref(),
        expected.as_slice(),
        "buffered part sent first"
    );
}

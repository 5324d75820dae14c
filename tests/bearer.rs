//! The `bearer` policy end to end: a gateway with two upstreams, `oauth` (a fake FxA OAuth
//! server answering `POST /v1/introspect` per token) and `api` (the protected service), and
//! bearer routes using the FxA presets, a custom scope list and an endpoint table.
//!
//! Covers RFC 6750 challenges, FxA scope implication, the presets, the introspection cache
//! (hits, single-flight, negative entries, expiry on the injected clock), OAuth outages
//! (503 errno 104, breaker, `Retry-After`), identity headers and spoofing, per-identity
//! back-off, and that no token ever reaches a log line of the real binary.

mod support;

use support::process::Process;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Value, json};
use support::TestGateway;
use support::client::{self, TestClient, TestResponse};
use support::fake::{FakeUpstream, RecordedRequest, Reply};

const INTROSPECT: &str = "/v1/introspect";
const CLIENT_ID: &str = "5882386c6d801776";
const UID_A: &str = "0123456789abcdef0123456789abcdef";
const UID_B: &str = "fedcba9876543210fedcba9876543210";
const OLDSYNC: &str = "https://identity.mozilla.com/apps/oldsync";

const CHALLENGE: &str = r#"Bearer realm="fxa-gateway""#;
const CHALLENGE_INVALID_REQUEST: &str = r#"Bearer realm="fxa-gateway", error="invalid_request""#;
const CHALLENGE_INVALID_TOKEN: &str = r#"Bearer realm="fxa-gateway", error="invalid_token""#;

/// Routes of every test gateway:
/// - `/profile` (v1): the profile preset, identity headers on;
/// - `/token` (1.0): the token-server preset;
/// - `/oauth` (v1): the OAuth preset (fronting `api`, so forwarded requests never count as
///   introspections);
/// - `/custom`: route scopes `["profile"]`, an endpoint table with a public row and a POST row;
/// - `/open`: `auth = "none"`;
/// - `/metered`: any valid token, a quota of 2 per minute per OAuth client.
const ROUTES: &str = r#"
[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "api"
versions = ["v1"]
auth = { policy = "bearer", preset = "profile", identity_headers = true }

[[routes]]
name = "tokenserver"
path_prefix = "/token"
upstream = "api"
versions = ["1.0"]
auth = { policy = "bearer", preset = "tokenserver" }

[[routes]]
name = "oauth"
path_prefix = "/oauth"
upstream = "api"
versions = ["v1"]
auth = { policy = "bearer", preset = "oauth" }

[[routes]]
name = "custom"
path_prefix = "/custom"
upstream = "api"
auth = { policy = "bearer", scopes = ["profile"], endpoints = [
  { path = "/v1/public", public = true },
  { path = "/v1/write", methods = ["POST"], scopes = ["profile:display_name:write"] },
] }

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "api"

[[routes]]
name = "metered"
path_prefix = "/metered"
upstream = "api"
auth = { policy = "bearer" }
quota = { requests = 2, window = "60s", key = "client" }
"#;

/// The whole gateway config: `oauth` at `oauth_url`, `api` at `api_url`, [`ROUTES`].
fn config(oauth_url: &str, api_url: &str, log: &str) -> String {
    format!(
        r#"
[server]
drain_timeout = "5s"
[server.log]
access_log = true
{log}

[[listeners]]
name = "test"
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "oauth"
url = "{oauth_url}"
connect_timeout = "1s"
response_timeout = "1s"

[[upstreams]]
name = "api"
url = "{api_url}"
connect_timeout = "1s"
response_timeout = "2s"

[bearer]
oauth_upstream = "oauth"
cache_max_ttl = "5m"
negative_ttl = "5s"
cache_size = 100000
breaker = "1s"

# These tests script the OAuth server's introspection answers one by one: no JWK set fetch
# (local JWT verification, tests/jwt_access.rs) may take one of them.
[jwt]
local_verification = false

{ROUTES}
"#
    )
}

/// The fake OAuth server's answers by token; unknown tokens are `{"active": false}`.
type Answers = Arc<Mutex<HashMap<String, Reply>>>;

/// A gateway, the fake OAuth server and the fake protected service.
struct Env {
    gw: TestGateway,
    oauth: FakeUpstream,
    api: FakeUpstream,
    answers: Answers,
}

impl Env {
    async fn start() -> Env {
        Self::start_with_oauth_url(None).await
    }

    /// With `oauth_url`, the gateway's `oauth` upstream points there instead of at the fake.
    async fn start_with_oauth_url(oauth_url: Option<String>) -> Env {
        let oauth = FakeUpstream::start().await;
        let api = FakeUpstream::start().await;
        let answers: Answers = Arc::default();
        let script = Arc::clone(&answers);
        oauth.on_fn(INTROSPECT, move |req| {
            let answers = script.lock().unwrap();
            answers
                .get(&token_of(req))
                .cloned()
                .unwrap_or_else(|| Reply::new().json(json!({"active": false})))
        });
        let oauth_url = oauth_url.unwrap_or_else(|| oauth.url());
        let gw = TestGateway::start(&config(&oauth_url, &api.url(), "")).await;
        Env {
            gw,
            oauth,
            api,
            answers,
        }
    }

    fn answer(&self, token: &str, reply: Reply) {
        self.answers.lock().unwrap().insert(token.to_owned(), reply);
    }

    /// An FxA-shaped active access token for `sub` with `scope`, expiring an hour from the
    /// gateway's now (milliseconds, as FxA sends).
    fn grant(&self, token: &str, sub: &str, scope: &str) {
        self.grant_until(token, sub, scope, self.now_ms() + 3_600_000);
    }

    fn grant_until(&self, token: &str, sub: &str, scope: &str, exp_ms: u64) {
        self.answer(token, Reply::new().json(fxa_answer(sub, scope, exp_ms)));
    }

    fn now_ms(&self) -> u64 {
        use fxa_gateway::clock::Clock as _;
        self.gw
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    /// Introspection calls the fake OAuth server received.
    fn introspections(&self) -> usize {
        self.oauth
            .requests()
            .iter()
            .filter(|r| r.path() == INTROSPECT)
            .count()
    }

    /// Requests the protected service received.
    fn forwarded(&self) -> usize {
        self.api.request_count()
    }

    async fn get(&self, path: &str, token: &str) -> TestResponse {
        let auth = format!("Bearer {token}");
        client::send("GET", &self.gw.url(path), &[("authorization", &auth)], "").await
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        client::send(method, &self.gw.url(path), headers, "").await
    }
}

/// FxA's introspection answer for an active access token (`iat`/`exp` in milliseconds).
fn fxa_answer(sub: &str, scope: &str, exp_ms: u64) -> Value {
    json!({
        "active": true, "scope": scope, "client_id": CLIENT_ID,
        "token_type": "access_token", "sub": sub,
        "iat": exp_ms.saturating_sub(3_600_000), "exp": exp_ms, "jti": "ab",
    })
}

/// The `token` field of an introspection request.
fn token_of(req: &RecordedRequest) -> String {
    req.form_field("token").unwrap_or_default()
}

/// An errno-shaped refusal with the given challenge (`None`: no `WWW-Authenticate`).
fn assert_refused(resp: &TestResponse, status: u16, errno: u64, challenge: Option<&str>) {
    assert_eq!(resp.status_u16(), status, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["code"], status, "{body}");
    assert_eq!(body["errno"], errno, "{body}");
    assert_eq!(
        resp.header_all("www-authenticate"),
        challenge.into_iter().collect::<Vec<_>>(),
        "WWW-Authenticate on {status}: {body}"
    );
}

fn assert_invalid_token(resp: &TestResponse) {
    assert_refused(resp, 401, 110, Some(CHALLENGE_INVALID_TOKEN));
}

fn assert_insufficient_scope(resp: &TestResponse, required: &str) {
    let challenge =
        format!(r#"Bearer realm="fxa-gateway", error="insufficient_scope", scope="{required}""#);
    assert_refused(resp, 403, 100, Some(&challenge));
    assert_eq!(resp.json()["message"], "Unauthorized");
}

fn assert_oauth_unavailable(resp: &TestResponse) {
    assert_eq!(resp.status_u16(), 503, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["errno"], 104, "{body}");
    assert_eq!(body["message"], "OAuth service unavailable", "{body}");
    assert!(resp.header("www-authenticate").is_none(), "{body}");
}

// === the happy path ===

#[tokio::test]
async fn a_valid_token_with_enough_scope_is_forwarded_with_the_callers_authorization() {
    let env = Env::start().await;
    env.grant("tok-email", UID_A, "profile:email");
    let resp = env.get("/profile/v1/email", "tok-email").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());

    let seen = env.api.last_request().expect("forwarded");
    assert_eq!(seen.path(), "/v1/email");
    assert_eq!(seen.header("authorization"), Some("Bearer tok-email"));

    let calls: Vec<_> = env
        .oauth
        .requests()
        .into_iter()
        .filter(|r| r.path() == INTROSPECT)
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, http::Method::POST);
    let form: Vec<String> = calls[0].body_str().split('&').map(str::to_owned).collect();
    assert!(form.contains(&"token=tok-email".to_owned()), "{form:?}");
    assert!(
        form.contains(&"token_type_hint=access_token".to_owned()),
        "{form:?}"
    );
}

#[tokio::test]
async fn the_scheme_is_case_insensitive() {
    let env = Env::start().await;
    env.grant("tok-case", UID_A, "profile");
    let resp = env
        .send(
            "GET",
            "/profile/v1/email",
            &[("authorization", "bEaReR tok-case")],
        )
        .await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
}

// === RFC 6750 refusals ===

#[tokio::test]
async fn no_credentials_or_another_scheme_get_a_challenge_without_error() {
    let env = Env::start().await;
    let no_header = env.send("GET", "/profile/v1/email", &[]).await;
    assert_refused(&no_header, 401, 110, Some(CHALLENGE));
    let basic = env
        .send(
            "GET",
            "/profile/v1/email",
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_refused(&basic, 401, 110, Some(CHALLENGE));
    let custom = env.send("GET", "/custom/v1/thing", &[]).await;
    assert_refused(&custom, 401, 110, Some(CHALLENGE));
    assert_eq!(env.forwarded(), 0, "the upstream receives nothing");
    assert_eq!(env.introspections(), 0);
}

#[tokio::test]
async fn a_malformed_authorization_header_is_invalid_request() {
    let env = Env::start().await;
    env.grant("tok-a", UID_A, "profile");
    env.grant("tok-b", UID_A, "profile");
    let cases: &[&[(&str, &str)]] = &[
        &[("authorization", "Bearer")],
        &[("authorization", "Bearer a b")],
        &[("authorization", "Bearer tok\"a")],
        &[
            ("authorization", "Bearer tok-a"),
            ("authorization", "Bearer tok-b"),
        ],
        &[
            ("authorization", "Bearer tok-a"),
            ("authorization", "Bearer tok-a"),
        ],
    ];
    for headers in cases {
        let resp = env.send("GET", "/profile/v1/email", headers).await;
        assert_refused(&resp, 401, 110, Some(CHALLENGE_INVALID_REQUEST));
        assert!(
            !resp.text().contains("tok-"),
            "{headers:?}: {}",
            resp.text()
        );
    }
    let long = format!("Bearer {}", "a".repeat(5000));
    let resp = env
        .send("GET", "/profile/v1/email", &[("authorization", &long)])
        .await;
    assert_refused(&resp, 401, 110, Some(CHALLENGE_INVALID_REQUEST));
    assert_eq!(env.forwarded(), 0, "the upstream receives nothing");
    assert_eq!(
        env.introspections(),
        0,
        "malformed headers are never introspected"
    );
}

#[tokio::test]
async fn unknown_inactive_expired_and_refresh_tokens_are_invalid_token() {
    let env = Env::start().await;
    env.answer("tok-inactive", Reply::new().json(json!({"active": false})));
    let past = env.now_ms() - 60_000;
    env.grant_until("tok-expired", UID_A, "profile", past);
    let mut refresh = fxa_answer(UID_A, "profile", env.now_ms() + 3_600_000);
    refresh["token_type"] = json!("refresh_token");
    env.answer("tok-refresh", Reply::new().json(refresh));

    for token in ["tok-unknown", "tok-inactive", "tok-expired", "tok-refresh"] {
        let resp = env.get("/profile/v1/email", token).await;
        assert_invalid_token(&resp);
        assert_eq!(resp.json()["message"], "Invalid authentication token");
        assert!(
            !resp.text().contains(token),
            "{token} echoed: {}",
            resp.text()
        );
    }
    assert_eq!(env.introspections(), 4);
    assert_eq!(env.forwarded(), 0, "the upstream receives nothing");
}

#[tokio::test]
async fn a_4xx_from_the_introspection_endpoint_is_invalid_token_not_an_outage() {
    let env = Env::start().await;
    env.answer(
        "tok-confidential-refresh",
        Reply::new().status(400).json(json!({
            "code": 400, "errno": 116, "error": "Bad Request",
            "message": "Not a public client",
        })),
    );
    let resp = env
        .get("/profile/v1/email", "tok-confidential-refresh")
        .await;
    assert_invalid_token(&resp);
    assert_eq!(env.forwarded(), 0);
    // And the OAuth server is not considered down: another token still works at once.
    env.grant("tok-good", UID_A, "profile");
    let resp = env.get("/profile/v1/email", "tok-good").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
}

// === scopes ===

#[tokio::test]
async fn profile_implies_profile_email() {
    let env = Env::start().await;
    env.grant("tok-profile", UID_A, "profile");
    for path in [
        "/profile/v1/email",
        "/profile/v1/uid",
        "/profile/v1/display_name",
        "/profile/v1/profile",
    ] {
        let resp = env.get(path, "tok-profile").await;
        assert_eq!(resp.status_u16(), 200, "{path}: {}", resp.text());
    }
    assert_eq!(env.forwarded(), 4);
    assert_eq!(env.introspections(), 1);
}

#[tokio::test]
async fn email_is_accepted_for_v1_email() {
    let env = Env::start().await;
    env.grant("tok-oidc-email", UID_A, "openid email");
    let resp = env.get("/profile/v1/email", "tok-oidc-email").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    // ... but `email` is no profile scope elsewhere.
    let resp = env.get("/profile/v1/uid", "tok-oidc-email").await;
    assert_insufficient_scope(&resp, "profile:uid");
}

#[tokio::test]
async fn profile_email_write_does_not_imply_profile() {
    let env = Env::start().await;
    env.grant("tok-write", UID_A, "profile:email:write");
    let resp = env.get("/custom/v1/thing", "tok-write").await;
    assert_insufficient_scope(&resp, "profile");
    assert_eq!(env.forwarded(), 0);
    // The write scope does imply its read scope.
    let resp = env.get("/profile/v1/email", "tok-write").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
}

#[tokio::test]
async fn insufficient_scope_is_403_errno_100_with_the_required_scopes() {
    let env = Env::start().await;
    env.grant("tok-uid", UID_A, "profile:uid");
    let resp = env.get("/profile/v1/email", "tok-uid").await;
    assert_insufficient_scope(&resp, "profile:email email");
    assert!(!resp.text().contains("tok-uid"));
    env.grant("tok-name", UID_A, "profile:display_name");
    let resp = env
        .send(
            "POST",
            "/profile/v1/display_name",
            &[("authorization", "Bearer tok-name")],
        )
        .await;
    assert_insufficient_scope(&resp, "profile:display_name:write");
    assert_eq!(env.forwarded(), 0, "the upstream receives nothing");
}

#[tokio::test]
async fn endpoint_rows_take_precedence_over_the_route_scopes() {
    let env = Env::start().await;
    env.grant("tok-profile", UID_A, "profile");
    env.grant("tok-write", UID_A, "profile:display_name:write");
    // POST /v1/write needs the row's scope; `profile` does not imply a write scope.
    let resp = env
        .send(
            "POST",
            "/custom/v1/write",
            &[("authorization", "Bearer tok-profile")],
        )
        .await;
    assert_insufficient_scope(&resp, "profile:display_name:write");
    let resp = env
        .send(
            "POST",
            "/custom/v1/write",
            &[("authorization", "Bearer tok-write")],
        )
        .await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    // GET on the same path is not the row's method: the route's scopes apply.
    let resp = env.get("/custom/v1/write", "tok-profile").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let resp = env.get("/custom/v1/write", "tok-write").await;
    assert_insufficient_scope(&resp, "profile");
}

#[tokio::test]
async fn the_token_server_requires_the_oldsync_scope() {
    let env = Env::start().await;
    env.grant("tok-sync", UID_A, &format!("profile {OLDSYNC}"));
    env.grant("tok-parent", UID_A, "https://identity.mozilla.com/apps");
    env.grant("tok-sub", UID_A, &format!("{OLDSYNC}/bookmarks"));
    env.grant("tok-profile", UID_A, "profile");
    env.grant(
        "tok-other-app",
        UID_A,
        "https://identity.mozilla.com/apps/send",
    );

    for ok in ["tok-sync", "tok-parent"] {
        let resp = env.get("/token/1.0/sync/1.5", ok).await;
        assert_eq!(resp.status_u16(), 200, "{ok}: {}", resp.text());
    }
    for short in ["tok-sub", "tok-profile", "tok-other-app"] {
        let resp = env.get("/token/1.0/sync/1.5", short).await;
        assert_insufficient_scope(&resp, OLDSYNC);
    }
    assert_eq!(env.forwarded(), 2);
    // Anything else on the token server is refused before introspection.
    let before = env.introspections();
    let resp = env.get("/token/1.0/sync/1.1", "tok-sync").await;
    assert_refused(&resp, 403, 100, None);
    assert_eq!(env.introspections(), before);
}

// === presets: public and forbidden endpoints ===

#[tokio::test]
async fn the_oauth_preset_opens_its_public_endpoints_and_refuses_the_rest() {
    let env = Env::start().await;
    env.grant("tok-profile", UID_A, "profile");
    let jwks = env.send("GET", "/oauth/v1/jwks", &[]).await;
    assert_eq!(jwks.status_u16(), 200, "{}", jwks.text());
    let token = env.send("POST", "/oauth/v1/token", &[]).await;
    assert_eq!(token.status_u16(), 200, "{}", token.text());
    // A bearer token sent to a public endpoint is passed on as is, not introspected.
    let jwks = env.get("/oauth/v1/jwks", "tok-profile").await;
    assert_eq!(jwks.status_u16(), 200, "{}", jwks.text());
    assert_eq!(env.forwarded(), 3);

    for (method, path) in [
        ("GET", "/oauth/v1/unlisted"),
        ("POST", "/oauth/v1/jwks"),
        ("GET", "/oauth/v1/token"),
    ] {
        for headers in [&[][..], &[("authorization", "Bearer tok-profile")][..]] {
            let resp = env.send(method, path, headers).await;
            assert_refused(&resp, 403, 100, None);
        }
    }
    assert_eq!(
        env.forwarded(),
        3,
        "forbidden endpoints are never forwarded"
    );
    assert_eq!(
        env.introspections(),
        0,
        "no introspection on the oauth preset"
    );
}

#[tokio::test]
async fn the_profile_preset_refuses_unknown_endpoints_without_introspection() {
    let env = Env::start().await;
    env.grant("tok-profile", UID_A, "profile");
    for path in [
        "/profile/v1/_core_profile",
        "/profile/v1/unknown",
        "/profile/v1/email/",
    ] {
        let resp = env.get(path, "tok-profile").await;
        assert_refused(&resp, 403, 100, None);
        assert_eq!(resp.json()["message"], "Unauthorized");
    }
    assert_eq!(env.introspections(), 0);
    assert_eq!(env.forwarded(), 0);
    // The default avatar (monogram) is public.
    let resp = env.send("GET", "/profile/v1/avatar/A", &[]).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
}

#[tokio::test]
async fn a_cors_preflight_passes_without_a_token() {
    let env = Env::start().await;
    let preflight = [
        ("origin", "https://rp.example"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization"),
    ];
    for path in [
        "/profile/v1/email",
        "/custom/v1/thing",
        "/token/1.0/sync/1.5",
    ] {
        let resp = env.send("OPTIONS", path, &preflight).await;
        assert_eq!(resp.status_u16(), 200, "{path}: {}", resp.text());
        let seen = env.api.last_request().unwrap();
        assert_eq!(seen.method, http::Method::OPTIONS);
    }
    assert_eq!(env.forwarded(), 3);
    assert_eq!(env.introspections(), 0);
    // An OPTIONS that is not a preflight is no exception.
    let resp = env
        .send(
            "OPTIONS",
            "/custom/v1/thing",
            &[("origin", "https://rp.example")],
        )
        .await;
    assert_refused(&resp, 401, 110, Some(CHALLENGE));
    assert_eq!(env.forwarded(), 3);
}

#[tokio::test]
async fn a_public_endpoint_row_passes_without_a_token() {
    let env = Env::start().await;
    let resp = env.send("GET", "/custom/v1/public", &[]).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let resp = env.send("POST", "/custom/v1/public/below", &[]).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(env.forwarded(), 2);
    assert_eq!(env.introspections(), 0);
    // Only on a segment boundary.
    let resp = env.send("GET", "/custom/v1/publicity", &[]).await;
    assert_refused(&resp, 401, 110, Some(CHALLENGE));
}

// === the cache ===

#[tokio::test]
async fn one_introspection_serves_a_hundred_requests() {
    let env = Env::start().await;
    env.grant("tok-cached", UID_A, "profile");
    let client = TestClient::new();
    for n in 0..100 {
        let resp = client
            .send(
                "GET",
                &env.gw.url("/profile/v1/email"),
                &[("authorization", "Bearer tok-cached")],
                "",
            )
            .await;
        assert_eq!(resp.status_u16(), 200, "request {n}: {}", resp.text());
    }
    assert_eq!(env.forwarded(), 100);
    assert_eq!(env.introspections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_make_one_introspection() {
    let env = Env::start().await;
    let now = env.now_ms();
    env.answer(
        "tok-new",
        Reply::new()
            .delay(Duration::from_millis(300))
            .json(fxa_answer(UID_A, "profile", now + 3_600_000)),
    );
    let url = env.gw.url("/profile/v1/email");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                client::send("GET", &url, &[("authorization", "Bearer tok-new")], "").await
            })
        })
        .collect();
    for task in tasks {
        let resp = task.await.unwrap();
        assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    }
    assert_eq!(env.introspections(), 1, "single-flight");
    assert_eq!(env.forwarded(), 100);
}

#[tokio::test]
async fn unknown_tokens_are_cached_for_the_negative_ttl() {
    let env = Env::start().await;
    for _ in 0..10 {
        assert_invalid_token(&env.get("/profile/v1/email", "tok-guess").await);
    }
    assert_eq!(env.introspections(), 1);
    env.gw.clock.advance(Duration::from_secs(4));
    assert_invalid_token(&env.get("/profile/v1/email", "tok-guess").await);
    assert_eq!(env.introspections(), 1, "still within negative_ttl");
    env.gw.clock.advance(Duration::from_secs(2));
    assert_invalid_token(&env.get("/profile/v1/email", "tok-guess").await);
    assert_eq!(env.introspections(), 2, "asked again after negative_ttl");
    assert_eq!(env.forwarded(), 0);
}

#[tokio::test]
async fn a_token_that_becomes_active_is_accepted_once_the_negative_entry_ends() {
    let env = Env::start().await;
    assert_invalid_token(&env.get("/profile/v1/email", "tok-late").await);
    env.grant("tok-late", UID_A, "profile");
    assert_invalid_token(&env.get("/profile/v1/email", "tok-late").await);
    env.gw.clock.advance(Duration::from_secs(6));
    let resp = env.get("/profile/v1/email", "tok-late").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(env.introspections(), 2);
}

#[tokio::test]
async fn expiry_is_judged_on_the_gateways_clock_in_milliseconds() {
    let env = Env::start().await;
    let exp = env.now_ms() + 60_000;
    env.grant_until("tok-minute", UID_A, "profile", exp);
    let resp = env.get("/profile/v1/email", "tok-minute").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    env.gw.clock.advance(Duration::from_secs(30));
    let resp = env.get("/profile/v1/email", "tok-minute").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(env.introspections(), 1, "served from the cache");
    assert_eq!(env.forwarded(), 2);

    env.gw.clock.advance(Duration::from_secs(31));
    let resp = env.get("/profile/v1/email", "tok-minute").await;
    assert_invalid_token(&resp);
    assert_eq!(env.forwarded(), 2, "no forward past exp");
    assert!(env.introspections() <= 2);
}

#[tokio::test]
async fn expiry_in_seconds_from_an_rfc_7662_server_is_honoured_too() {
    let env = Env::start().await;
    let exp_secs = env.now_ms() / 1000 + 60;
    env.answer(
        "tok-seconds",
        Reply::new().json(json!({
            "active": true, "scope": "profile", "client_id": CLIENT_ID,
            "token_type": "access_token", "sub": UID_A,
            "iat": exp_secs - 60, "exp": exp_secs,
        })),
    );
    let resp = env.get("/profile/v1/email", "tok-seconds").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    env.gw.clock.advance(Duration::from_secs(61));
    assert_invalid_token(&env.get("/profile/v1/email", "tok-seconds").await);
    assert_eq!(env.forwarded(), 1);
}

#[tokio::test]
async fn active_entries_are_re_introspected_after_the_max_ttl() {
    let env = Env::start().await;
    env.grant("tok-hour", UID_A, "profile");
    assert_eq!(
        env.get("/profile/v1/email", "tok-hour").await.status_u16(),
        200
    );
    env.gw.clock.advance(Duration::from_secs(4 * 60));
    assert_eq!(
        env.get("/profile/v1/email", "tok-hour").await.status_u16(),
        200
    );
    assert_eq!(env.introspections(), 1);
    env.gw.clock.advance(Duration::from_secs(2 * 60));
    // Revoked meanwhile: the next introspection says so.
    env.answer("tok-hour", Reply::new().json(json!({"active": false})));
    assert_invalid_token(&env.get("/profile/v1/email", "tok-hour").await);
    assert_eq!(env.introspections(), 2, "cache_max_ttl bounds the reuse");
    assert_eq!(env.forwarded(), 2);
}

// === OAuth server outages ===

#[tokio::test]
async fn an_unreachable_oauth_server_is_503_errno_104_never_401() {
    let refusing = FakeUpstream::refusing();
    let env = Env::start_with_oauth_url(Some(format!("http://{refusing}"))).await;
    for _ in 0..3 {
        let started = Instant::now();
        let resp = env.get("/profile/v1/email", "tok-any").await;
        assert_oauth_unavailable(&resp);
        assert!(started.elapsed() < Duration::from_secs(1), "at once");
    }
    assert_eq!(env.forwarded(), 0);
}

#[tokio::test]
async fn a_slow_oauth_server_opens_the_breaker_which_answers_at_once() {
    let env = Env::start().await;
    env.answer(
        "tok-slow",
        Reply::new().delay(Duration::from_secs(3)).json(fxa_answer(
            UID_A,
            "profile",
            env.now_ms() + 3_600_000,
        )),
    );
    let started = Instant::now();
    assert_oauth_unavailable(&env.get("/profile/v1/email", "tok-slow").await);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the first call waits out the 1s response timeout"
    );
    assert_eq!(env.introspections(), 1);

    // The breaker is open (1s on the gateway's clock, which has not moved): at once, no call.
    env.grant("tok-fine", UID_A, "profile");
    for token in ["tok-slow", "tok-fine"] {
        let started = Instant::now();
        assert_oauth_unavailable(&env.get("/profile/v1/email", token).await);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{token}: took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(env.introspections(), 1, "the breaker makes no call");
    assert_eq!(env.forwarded(), 0);

    // After the breaker time a probe goes through.
    env.gw.clock.advance(Duration::from_millis(1500));
    let resp = env.get("/profile/v1/email", "tok-fine").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(env.introspections(), 2);
}

#[tokio::test]
async fn after_an_oauth_503_requests_succeed_again_once_the_breaker_time_has_passed() {
    let env = Env::start().await;
    env.grant("tok-a", UID_A, "profile");
    env.oauth.push(Reply::new().status(503).json(json!({
        "code": 503, "errno": 999, "error": "Service Unavailable", "message": "down",
    })));
    assert_oauth_unavailable(&env.get("/profile/v1/email", "tok-a").await);
    assert_eq!(env.introspections(), 1);
    // The failure was not cached as "inactive", and the breaker holds for now.
    assert_oauth_unavailable(&env.get("/profile/v1/email", "tok-a").await);
    assert_eq!(env.introspections(), 1);

    env.gw.clock.advance(Duration::from_millis(1100));
    let resp = env.get("/profile/v1/email", "tok-a").await;
    assert_eq!(resp.status_u16(), 200, "recovered: {}", resp.text());
    assert_eq!(env.introspections(), 2);
    let resp = env.get("/profile/v1/email", "tok-a").await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(env.introspections(), 2, "cached after recovery");
    assert_eq!(env.forwarded(), 2);
}

#[tokio::test]
async fn an_oauth_503_with_retry_after_is_passed_on() {
    let env = Env::start().await;
    env.grant("tok-a", UID_A, "profile");
    env.oauth.push(
        Reply::new()
            .status(503)
            .header("retry-after", "30")
            .json(json!({
                "code": 503, "errno": 201, "error": "Service Unavailable",
                "message": "Service unavailable", "retryAfter": 30,
            })),
    );
    let resp = env.get("/profile/v1/email", "tok-a").await;
    assert_oauth_unavailable(&resp);
    assert_eq!(resp.header("retry-after"), Some("30"), "{}", resp.text());
    assert_eq!(env.introspections(), 1);

    // Within the window nobody asks the OAuth server, even after the breaker time.
    env.gw.clock.advance(Duration::from_secs(10));
    let resp = env.get("/profile/v1/email", "tok-a").await;
    assert_oauth_unavailable(&resp);
    let wait: u64 = resp
        .header("retry-after")
        .expect("Retry-After within the window")
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    assert_eq!(env.introspections(), 1);
    assert_eq!(env.forwarded(), 0);
}

// === identity headers ===

#[tokio::test]
async fn identity_headers_come_from_introspection_and_caller_ones_are_stripped() {
    let env = Env::start().await;
    env.grant("tok-a", UID_A, "profile openid");
    let spoof = [
        ("authorization", "Bearer tok-a"),
        ("x-fxa-uid", "spoofed-uid"),
        ("x-fxa-client-id", "spoofed-client"),
        ("x-fxa-scope", "profile:write"),
    ];

    // identity_headers = true: set from the introspection answer, once each.
    let resp = env.send("GET", "/profile/v1/email", &spoof).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let seen = env.api.last_request().unwrap();
    assert_eq!(seen.header_all("x-fxa-uid"), [UID_A]);
    assert_eq!(seen.header_all("x-fxa-client-id"), [CLIENT_ID]);
    assert_eq!(seen.header_all("x-fxa-scope"), ["profile openid"]);

    // identity_headers off (the default): none of them reaches the upstream.
    let resp = env.send("GET", "/custom/v1/thing", &spoof).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let seen = env.api.last_request().unwrap();
    assert_eq!(seen.path(), "/v1/thing");
    for name in ["x-fxa-uid", "x-fxa-client-id", "x-fxa-scope"] {
        assert!(seen.header(name).is_none(), "{name} reached the upstream");
    }

    // A route without auth strips them too.
    let resp = env.send("GET", "/open/v1/anything", &spoof).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let seen = env.api.last_request().unwrap();
    assert_eq!(seen.path(), "/v1/anything");
    for name in ["x-fxa-uid", "x-fxa-client-id", "x-fxa-scope"] {
        assert!(seen.header(name).is_none(), "{name} reached the upstream");
    }
    assert_eq!(seen.header("authorization"), Some("Bearer tok-a"));

    // A public endpoint of a bearer route with identity headers sets none.
    let resp = env.send("GET", "/profile/v1/avatar/A", &spoof).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let seen = env.api.last_request().unwrap();
    for name in ["x-fxa-uid", "x-fxa-client-id", "x-fxa-scope"] {
        assert!(seen.header(name).is_none(), "{name} reached the upstream");
    }
}

// === per-identity back-off ===

#[tokio::test]
async fn a_429_for_one_user_leaves_another_users_token_working() {
    let env = Env::start().await;
    env.grant("tok-user-a", UID_A, "profile");
    env.grant("tok-user-b", UID_B, "profile");
    let throttled = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&throttled);
    env.api.on_fn("/v1/", move |req| {
        if req.header("authorization") == Some("Bearer tok-user-a") {
            count.fetch_add(1, Ordering::SeqCst);
            Reply::new()
                .status(429)
                .header("retry-after", "30")
                .json(json!({
                    "code": 429, "errno": 114, "error": "Too Many Requests",
                    "message": "Client has sent too many requests", "retryAfter": 30,
                }))
        } else {
            Reply::new().json(json!({"ok": true}))
        }
    });

    assert_eq!(
        env.get("/profile/v1/email", "tok-user-a")
            .await
            .status_u16(),
        429
    );
    assert_eq!(env.forwarded(), 1);

    let a = env.get("/profile/v1/email", "tok-user-a").await;
    assert_eq!(a.status_u16(), 429, "{}", a.text());
    assert_eq!(a.json()["errno"], 114);
    assert_eq!(a.header("x-fxa-gateway-error"), Some("backed-off"));
    assert_eq!(a.header("retry-after"), Some("30"));
    assert_eq!(env.forwarded(), 1, "A is answered by the gateway");

    let b = env.get("/profile/v1/email", "tok-user-b").await;
    assert_eq!(
        b.status_u16(),
        200,
        "B still reaches the upstream: {}",
        b.text()
    );
    assert_eq!(env.forwarded(), 2);
    assert_eq!(throttled.load(Ordering::SeqCst), 1);

    // A's window ends with the clock; A reaches the upstream again.
    env.gw.clock.advance(Duration::from_secs(31));
    assert_eq!(
        env.get("/profile/v1/email", "tok-user-a")
            .await
            .status_u16(),
        429
    );
    assert_eq!(env.forwarded(), 3);
}

#[tokio::test]
async fn a_503_errno_202_closes_only_that_oauth_client() {
    let env = Env::start().await;
    env.grant("tok-client-a", UID_A, "profile");
    // Same user, another OAuth client.
    let other = fxa_answer(UID_A, "profile", env.now_ms() + 3_600_000);
    let mut other = other.as_object().unwrap().clone();
    other.insert("client_id".into(), json!("0000000000000002"));
    env.answer("tok-client-b", Reply::new().json(Value::Object(other)));
    env.api.on_fn("/v1/", move |req| {
        if req.header("authorization") == Some("Bearer tok-client-a") {
            Reply::new()
                .status(503)
                .header("retry-after", "60")
                .json(json!({
                    "code": 503, "errno": 202, "error": "Service Unavailable",
                    "message": "Feature not enabled", "retryAfter": 60,
                }))
        } else {
            Reply::new().json(json!({"ok": true}))
        }
    });
    assert_eq!(
        env.get("/profile/v1/email", "tok-client-a")
            .await
            .status_u16(),
        503
    );
    assert_eq!(env.forwarded(), 1);

    let a = env.get("/profile/v1/email", "tok-client-a").await;
    assert_eq!(a.status_u16(), 503, "{}", a.text());
    assert_eq!(a.json()["errno"], 202, "the upstream's errno is repeated");
    assert_eq!(a.header("x-fxa-gateway-error"), Some("backed-off"));
    assert_eq!(env.forwarded(), 1, "client A is answered by the gateway");

    let b = env.get("/profile/v1/email", "tok-client-b").await;
    assert_eq!(
        b.status_u16(),
        200,
        "another client still reaches the upstream: {}",
        b.text()
    );
    assert_eq!(env.forwarded(), 2);
}

#[tokio::test]
async fn a_quota_keyed_by_client_counts_each_oauth_client_separately() {
    let env = Env::start().await;
    env.grant("tok-x1", UID_A, "profile");
    env.grant("tok-x2", UID_B, "profile");
    let mut other = fxa_answer(UID_A, "profile", env.now_ms() + 3_600_000);
    other["client_id"] = json!("0000000000000002");
    env.answer("tok-y", Reply::new().json(other));
    // Two users of one client share its quota.
    assert_eq!(env.get("/metered/x", "tok-x1").await.status_u16(), 200);
    assert_eq!(env.get("/metered/x", "tok-x2").await.status_u16(), 200);
    let over = env.get("/metered/x", "tok-x1").await;
    assert_eq!(over.status_u16(), 429, "{}", over.text());
    assert_eq!(over.json()["errno"], 114);
    assert_eq!(over.header("x-fxa-gateway-error"), Some("quota-exceeded"));
    // Another client has its own.
    assert_eq!(env.get("/metered/x", "tok-y").await.status_u16(), 200);
    assert_eq!(env.forwarded(), 3);
}

// === logs ===

#[tokio::test]
async fn no_token_appears_in_any_log_line() {
    const VALID: &str = "SECRETTOKENvalid0123456789abcdef";
    const NARROW: &str = "SECRETTOKENnarrow0123456789abcdef";
    const UNKNOWN: &str = "SECRETTOKENunknown0123456789abcdef";
    const REFUSED: &str = "SECRETTOKENrefused0123456789abcdef";
    const SLOW: &str = "SECRETTOKENslow0123456789abcdef";

    let oauth = FakeUpstream::start().await;
    let api = FakeUpstream::start().await;
    let exp = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    oauth.on_fn(INTROSPECT, move |req| match token_of(req).as_str() {
        VALID => Reply::new().json(fxa_answer(UID_A, "profile", exp)),
        NARROW => Reply::new().json(fxa_answer(UID_B, "profile:uid", exp)),
        REFUSED => Reply::new().status(400).json(json!({
            "code": 400, "errno": 116, "error": "Bad Request", "message": "Not a public client",
        })),
        SLOW => Reply::new()
            .delay(Duration::from_secs(2))
            .json(json!({"active": false})),
        _ => Reply::new().json(json!({"active": false})),
    });
    let dir = tempfile::tempdir().unwrap();
    let log = r#"format = "json"
level = "trace""#;
    let mut gw = Process::spawn(dir.path(), &config(&oauth.url(), &api.url(), log));
    let addr = gw.listening("test").await;
    let url = |path: &str| format!("http://{addr}{path}");

    let cases: Vec<(String, &str, u16)> = vec![
        (format!("Bearer {VALID}"), "/profile/v1/email", 200),
        (format!("Bearer {VALID}"), "/profile/v1/email", 200),
        (format!("bearer {VALID}"), "/custom/v1/thing", 200),
        (format!("Bearer {NARROW}"), "/profile/v1/email", 403),
        (format!("Bearer {UNKNOWN}"), "/profile/v1/email", 401),
        (format!("Bearer {REFUSED}"), "/profile/v1/email", 401),
        (format!("Bearer {VALID} {VALID}"), "/profile/v1/email", 401),
        (format!("Token {VALID}"), "/profile/v1/email", 401),
        (format!("Bearer {VALID}"), "/profile/v1/unknown", 403),
        (format!("Bearer {VALID}"), "/profile/v2/email", 404),
        // Last: the timeout opens the breaker.
        (format!("Bearer {SLOW}"), "/profile/v1/email", 503),
    ];
    for (auth, path, status) in &cases {
        let resp = client::send("GET", &url(path), &[("authorization", auth)], "").await;
        assert_eq!(resp.status_u16(), *status, "{auth} {path}: {}", resp.text());
    }
    let (status, stderr) = gw.terminate().await;
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("request.summary")),
        "no access events:\n{stderr}"
    );
    for (n, line) in stderr.lines().enumerate() {
        assert!(
            !line.contains("SECRETTOKEN"),
            "line {n} logs a token:\n{line}"
        );
    }
}

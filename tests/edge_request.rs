//! Issue 14, sections 5 and 6: request validation (RFC 9112 / RFC 9113) and error answers that
//! keep what clients need, through real sockets: raw HTTP/1.1 bytes on a TCP socket, HTTP/2
//! through hyper's client connection, the fake FxA behind the gateway.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use support::TestGateway;
use support::client::{self, TestCerts, TestResponse, raw_exchange};
use support::fake::{FakeUpstream, Reply};
use support::raw::{self, RawResponse};
use tempfile::TempDir;
use tokio::net::TcpStream;

const READ: Duration = Duration::from_millis(1500);

/// One plain listener (`allow_underscore_headers` as given), routes `/api` (any host) and
/// `/hosted` (host `api.example`), both to `upstream_url`.
fn config(upstream_url: &str, listener_extra: &str) -> String {
    format!(
        r#"
[[listeners]]
name = "edge"
addr = "127.0.0.1:0"
{listener_extra}

[[upstreams]]
name = "api"
url = "{upstream_url}"
connect_timeout = "1s"
response_timeout = "2s"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"

[[routes]]
name = "hosted"
host = "api.example"
path_prefix = "/hosted"
upstream = "api"
"#
    )
}

async fn raw(gw: &TestGateway, request: &str) -> RawResponse {
    RawResponse::parse(&raw_exchange(gw.addr, request.as_bytes(), READ).await)
}

fn assert_raw_400(answer: &RawResponse, what: &str) {
    assert_eq!(answer.status, 400, "{what}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let v = answer.json();
    assert_eq!(
        (v["code"].clone(), v["errno"].clone()),
        (json!(400), json!(999)),
        "{what}: {v}"
    );
}

/// A gateway with one TLS listener (HTTP/2 needs ALPN) for `localhost` and the routes of
/// [`config`]. Keep the directory until the gateway stops.
async fn tls_gateway(upstream_url: &str) -> (TestGateway, TestCerts, TempDir) {
    let certs = TestCerts::new(&["localhost"]);
    let dir = TempDir::new().expect("temp dir");
    let paths = certs.write_to(dir.path());
    let tls = format!(
        "[listeners.tls]\n[[listeners.tls.certificates]]\ncert = {:?}\nkey = {{ file = {:?} }}\nserver_names = [\"localhost\"]\n",
        paths.cert.display().to_string(),
        paths.key.display().to_string(),
    );
    let gw = TestGateway::start_in(&config(upstream_url, &tls), dir.path()).await;
    (gw, certs, dir)
}

/// Sends `request` (its URI's authority is the `:authority`) on a fresh HTTP/2 connection
/// through hyper's client, over TLS to `localhost`.
async fn h2(
    gw: &TestGateway,
    certs: &TestCerts,
    request: Request<Full<Bytes>>,
) -> Result<TestResponse, String> {
    let tls = raw::tls_client_config(&certs.ca_cert_pem, b"h2");
    let stream = TcpStream::connect(gw.addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("server name");
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(TestResponse {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    };
    let result = tokio::time::timeout(READ * 4, result)
        .await
        .unwrap_or_else(|_| Err("h2 request timed out".into()));
    driver.abort();
    result
}

fn h2_get(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(uri).version(http::Version::HTTP_2);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).expect("request")
}

fn assert_errno(resp: &TestResponse, status: u16, errno: u64) -> Value {
    assert_eq!(resp.status_u16(), status, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{}",
        resp.text()
    );
    let v = resp.json();
    assert_eq!(v["code"], status, "{v}");
    assert_eq!(v["errno"], errno, "{v}");
    v
}

// === section 5: the host ===

#[tokio::test]
async fn two_host_headers_or_none_in_http11_are_400_errno_999() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&config(&fake.url(), "")).await;

    let two = raw(
        &gw,
        "GET /api/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_raw_400(&two, "two Host headers");
    let none = raw(&gw, "GET /api/x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_raw_400(&none, "no Host in HTTP/1.1");
    assert_eq!(
        fake.request_count(),
        0,
        "a refused request reached upstream"
    );

    // HTTP/1.0 needs no Host; one Host is fine.
    let old = raw(&gw, "GET /api/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(old.status, 200);
    let one = raw(
        &gw,
        "GET /api/x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(one.status, 200);
}

#[tokio::test]
async fn userinfo_in_an_http11_host_or_absolute_target_is_400() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&config(&fake.url(), "")).await;
    let host = raw(
        &gw,
        "GET /hosted/x HTTP/1.1\r\nHost: evil@api.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_raw_400(&host, "userinfo in Host");
    let target = raw(
        &gw,
        "GET http://evil@api.example/hosted/x HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_raw_400(&target, "userinfo in an absolute-form target");
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn h2_authority_and_host_that_disagree_are_400() {
    let fake = FakeUpstream::start().await;
    let (gw, certs, _dir) = tls_gateway(&fake.url()).await;
    let get = |headers: &[(&str, &str)]| h2_get("https://api.example/hosted/x", headers);

    let resp = h2(&gw, &certs, get(&[("host", "other.example")]))
        .await
        .expect("h2 answer");
    assert_errno(&resp, 400, 999);
    assert_eq!(
        fake.request_count(),
        0,
        "a refused request reached upstream"
    );

    // Agreeing (in any case), or `:authority` alone, is fine.
    let resp = h2(&gw, &certs, get(&[("host", "API.example")]))
        .await
        .expect("h2 answer");
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let resp = h2(&gw, &certs, get(&[])).await.expect("h2 answer");
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn userinfo_in_h2_authority_is_refused() {
    let fake = FakeUpstream::start().await;
    let (gw, certs, _dir) = tls_gateway(&fake.url()).await;
    let request = h2_get("https://evil@api.example/hosted/x", &[]);
    match h2(&gw, &certs, request).await {
        Ok(resp) => {
            assert_errno(&resp, 400, 999);
        }
        // A stream reset is acceptable too.
        Err(e) => assert!(!e.is_empty()),
    }
    assert_eq!(fake.request_count(), 0, "userinfo reached upstream");
}

#[tokio::test]
async fn an_absolute_form_target_is_the_host_for_routing_and_x_forwarded_host() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&config(&fake.url(), "")).await;
    let answer = raw(
        &gw,
        "GET http://api.example/hosted/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        answer.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let seen = fake.last_request().expect("forwarded");
    assert_eq!(seen.path(), "/x");
    assert_eq!(seen.header("x-forwarded-host"), Some("api.example"));
}

#[tokio::test]
async fn h2_cookie_fields_reach_an_http11_upstream_as_one_cookie() {
    let fake = FakeUpstream::start().await;
    let (gw, certs, _dir) = tls_gateway(&fake.url()).await;
    let cookies = [("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")];
    let request = h2_get("https://localhost/api/x", &cookies);
    let resp = h2(&gw, &certs, request).await.expect("h2 answer");
    assert_eq!(resp.version, http::Version::HTTP_2);
    assert_eq!(resp.status_u16(), 200);
    let seen = fake.last_request().expect("forwarded");
    assert_eq!(seen.header_all("cookie"), vec!["a=1; b=2; c=3"]);
}

// === section 5: underscores ===

const UNDERSCORED: [(&str, &str); 6] = [
    ("X_FxA_Uid", "spoofed-uid"),
    ("x_fxa_client_id", "spoofed-client"),
    ("X_Forwarded_For", "203.0.113.9"),
    ("X_Forwarded_Host", "evil.example"),
    ("X_Request_Id", "spoofed-id"),
    ("X_Custom_Thing", "kept-when-allowed"),
];

fn underscored_request() -> String {
    let mut request = String::from("GET /api/x HTTP/1.1\r\nHost: gw.example\r\n");
    for (name, value) in UNDERSCORED {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request
}

/// Header names the upstream saw with an underscore, lower-cased.
async fn underscored_names_upstream(listener_extra: &str) -> Vec<String> {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&config(&fake.url(), listener_extra)).await;
    let answer = raw(&gw, &underscored_request()).await;
    assert_eq!(answer.status, 200);
    let seen = fake.last_request().expect("forwarded");
    assert_eq!(seen.header("x-forwarded-host"), Some("gw.example"));
    let mut names: Vec<String> = seen
        .headers
        .keys()
        .map(|n| n.as_str().to_owned())
        .filter(|n| n.contains('_'))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_by_default() {
    assert_eq!(underscored_names_upstream("").await, Vec::<String>::new());
}

#[tokio::test]
async fn allow_underscore_headers_passes_them_but_never_the_gateways_own() {
    assert_eq!(
        underscored_names_upstream("allow_underscore_headers = true").await,
        vec!["x_custom_thing".to_owned()]
    );
}

// === section 6: CORS on rewritten errors ===

#[tokio::test]
async fn rewritten_upstream_errors_keep_cors_headers() {
    let fake = FakeUpstream::start().await;
    fake.set_default(
        Reply::new()
            .status(500)
            .header("content-type", "text/html")
            .header("access-control-allow-origin", "https://rp.example")
            .header("access-control-allow-credentials", "true")
            .header("access-control-expose-headers", "Retry-After")
            .header("vary", "Origin")
            .header("x-internal", "dropped")
            .body("<html><title>Oops</title></html>"),
    );
    let gw = TestGateway::start(&config(&fake.url(), "")).await;
    let resp = client::send(
        "GET",
        &gw.url("/api/x"),
        &[("origin", "https://rp.example")],
        Bytes::new(),
    )
    .await;
    let v = assert_errno(&resp, 500, 999);
    assert_eq!(v["message"], "Oops");
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://rp.example")
    );
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        resp.header("access-control-expose-headers"),
        Some("Retry-After")
    );
    assert_eq!(resp.header("vary"), Some("Origin"));
    assert_eq!(resp.header("x-internal"), None);
}

// === section 6: bearer routes ===

const TOKEN: &str = "a1b2c3d4e5f6";
const UID: &str = "0123456789abcdef0123456789abcdef";

fn now_ms(gw: &TestGateway) -> u64 {
    use fxa_gateway::clock::Clock as _;
    gw.clock
        .now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64
}

fn bearer_config(oauth_url: &str, api_url: &str, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
name = "edge"
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
breaker = "30s"

[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "api"
auth = {{ policy = "bearer", scopes = ["profile"] }}

{extra}
"#
    )
}

/// The fake OAuth server grants [`TOKEN`] the `profile` scope for an hour.
fn grant(oauth: &FakeUpstream, gw: &TestGateway) {
    let exp = now_ms(gw) + 3_600_000;
    oauth.on(
        "/v1/introspect",
        Reply::new().json(json!({
            "active": true, "scope": "profile", "client_id": "5882386c6d801776",
            "token_type": "access_token", "sub": UID,
            "iat": exp - 3_600_000, "exp": exp, "jti": "ab",
        })),
    );
}

#[tokio::test]
async fn a_non_errno_403_from_the_upstream_on_a_bearer_route_is_errno_100() {
    let oauth = FakeUpstream::start().await;
    let api = FakeUpstream::start().await;
    api.set_default(
        Reply::new()
            .status(403)
            .header("content-type", "text/plain")
            .body("forbidden by policy"),
    );
    let gw = TestGateway::start(&bearer_config(&oauth.url(), &api.url(), "")).await;
    grant(&oauth, &gw);
    let auth = format!("Bearer {TOKEN}");
    let resp = client::send(
        "GET",
        &gw.url("/profile/v1/profile"),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await;
    assert_errno(&resp, 403, 100);
    assert_eq!(api.request_count(), 1);
}

#[tokio::test]
async fn a_lower_case_bearer_scheme_is_forwarded_as_bearer() {
    let oauth = FakeUpstream::start().await;
    let api = FakeUpstream::start().await;
    let gw = TestGateway::start(&bearer_config(&oauth.url(), &api.url(), "")).await;
    grant(&oauth, &gw);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {TOKEN}");
        let resp = client::send(
            "GET",
            &gw.url("/profile/v1/profile"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
        assert_eq!(resp.status_u16(), 200, "{scheme}: {}", resp.text());
        let seen = api.last_request().expect("forwarded");
        let expected = format!("Bearer {TOKEN}");
        assert_eq!(
            seen.header_all("authorization"),
            vec![expected.as_str()],
            "{scheme}"
        );
    }
}

// === section 6: Retry-After during OAuth outages ===

fn retry_after(resp: &TestResponse) -> Option<u64> {
    resp.header("retry-after").and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_oauth_breaker_answers_503_errno_104_with_retry_after_from_the_first_answer() {
    let oauth = FakeUpstream::refusing();
    let api = FakeUpstream::start().await;
    let gw = TestGateway::start(&bearer_config(&format!("http://{oauth}"), &api.url(), "")).await;
    let url = gw.url("/profile/v1/profile");
    let headers = [("authorization", "Bearer a1b2c3d4e5f6")];
    let get = || client::send("GET", &url, &headers, Bytes::new());
    // The failed call opens the breaker for 30 s: the wait is known at once.
    let first = get().await;
    let v = assert_errno(&first, 503, 104);
    assert_eq!(retry_after(&first), Some(30), "{v}");
    assert_eq!(v["retryAfter"], 30);
    // While it is open, the rest of its time.
    gw.clock.advance(Duration::from_secs(10));
    let second = get().await;
    assert_errno(&second, 503, 104);
    assert_eq!(retry_after(&second), Some(20));
    assert_eq!(api.request_count(), 0);
}

#[tokio::test]
async fn an_oauth_back_off_window_without_retry_after_still_tells_the_wait() {
    let oauth = FakeUpstream::start().await;
    oauth.set_default(Reply::new().status(503).body("down"));
    let api = FakeUpstream::start().await;
    let extra = "[backoff]\ndefault_503_window = \"60s\"\n";
    let gw = TestGateway::start(&bearer_config(&oauth.url(), &api.url(), extra)).await;
    let auth = format!("Bearer {TOKEN}");
    let first = client::send(
        "GET",
        &gw.url("/profile/v1/profile"),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await;
    assert_errno(&first, 503, 104);
    assert_eq!(retry_after(&first), Some(60));
}

// === section 6: deprecated versions ===

/// 2020-01-01T00:00:00Z and 2100-01-01T00:00:00Z.
const DEPRECATED_AT: u64 = 1_577_836_800;
const SUNSET_AT: u64 = 4_102_444_800;
const SUNSET: &str = "Fri, 01 Jan 2100 00:00:00 GMT";

const DEPRECATED_V1: &str = r#"
[[routes.deprecated_versions]]
version = "v1"
deprecation = "2020-01-01"
sunset = "2100-01-01T00:00:00Z"
"#;

fn deprecated_config(oauth_url: &str, api_url: &str, down_url: &str) -> String {
    let routes = format!(
        r#"
[[upstreams]]
name = "down"
url = "{down_url}"
connect_timeout = "1s"
response_timeout = "300ms"

[limits]
max_body_bytes = "1KiB"

[[routes]]
name = "dep"
path_prefix = "/dep"
upstream = "api"
versions = ["v2"]
methods = ["GET", "POST"]
{DEPRECATED_V1}

[[routes]]
name = "dep-bearer"
path_prefix = "/depb"
upstream = "api"
versions = ["v2"]
auth = {{ policy = "bearer", scopes = ["profile"] }}
{DEPRECATED_V1}

[[routes]]
name = "dep-metered"
path_prefix = "/depm"
upstream = "api"
versions = ["v2"]
quota = {{ requests = 1, window = "60s", key = "peer" }}
{DEPRECATED_V1}

[[routes]]
name = "dep-down"
path_prefix = "/depd"
upstream = "down"
versions = ["v2"]
{DEPRECATED_V1}
"#
    );
    bearer_config(oauth_url, api_url, &routes)
}

fn assert_deprecated(resp: &TestResponse, what: &str) {
    let deprecation = format!("@{DEPRECATED_AT}");
    assert_eq!(
        resp.header("deprecation"),
        Some(deprecation.as_str()),
        "{what}: {}",
        resp.text()
    );
    assert_eq!(resp.header("sunset"), Some(SUNSET), "{what}");
}

#[tokio::test]
async fn a_deprecated_versions_headers_are_on_the_gateways_own_errors() {
    let oauth = FakeUpstream::start().await;
    let api = FakeUpstream::start().await;
    api.on(
        "/v1/busy",
        Reply::new().status(503).header("retry-after", "30"),
    );
    let down = FakeUpstream::refusing();
    let gw = TestGateway::start(&deprecated_config(
        &oauth.url(),
        &api.url(),
        &format!("http://{down}"),
    ))
    .await;
    let exp = now_ms(&gw) + 3_600_000;
    oauth.on(
        "/v1/introspect",
        Reply::new().json(json!({
            "active": true, "scope": "openid", "client_id": "5882386c6d801776",
            "token_type": "access_token", "sub": UID, "exp": exp,
        })),
    );
    let bearer = format!("Bearer {TOKEN}");

    let resp = client::get(&gw.url("/depb/v1/x")).await;
    assert_errno(&resp, 401, 110);
    assert_deprecated(&resp, "401");

    let resp = client::send(
        "GET",
        &gw.url("/depb/v1/x"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await;
    assert_errno(&resp, 403, 100);
    assert_deprecated(&resp, "403");

    let resp = client::send("DELETE", &gw.url("/dep/v1/x"), &[], Bytes::new()).await;
    assert_errno(&resp, 405, 999);
    assert_deprecated(&resp, "405");

    let resp = client::send("POST", &gw.url("/dep/v1/x"), &[], vec![b'x'; 4096]).await;
    assert_errno(&resp, 413, 113);
    assert_deprecated(&resp, "413");

    let resp = client::get(&gw.url("/depm/v1/x")).await;
    assert_eq!(resp.status_u16(), 200);
    let resp = client::get(&gw.url("/depm/v1/x")).await;
    assert_errno(&resp, 429, 114);
    assert_deprecated(&resp, "429");

    let resp = client::get(&gw.url("/depd/v1/x")).await;
    assert_errno(&resp, 502, 203);
    assert_deprecated(&resp, "502");

    // The upstream's own 503 opens a back-off window; the gateway answers the next one.
    let resp = client::get(&gw.url("/dep/v1/busy")).await;
    assert_errno(&resp, 503, 201);
    assert_deprecated(&resp, "upstream 503");
    let resp = client::get(&gw.url("/dep/v1/other")).await;
    assert_errno(&resp, 503, 201);
    assert_eq!(
        resp.header("x-fxa-gateway-error"),
        Some("backed-off"),
        "{}",
        resp.text()
    );
    assert_deprecated(&resp, "gateway 503");
}

#[tokio::test]
async fn a_deprecated_versions_504_carries_its_headers_and_the_410_after_the_sunset_its_sunset() {
    let api = FakeUpstream::start().await;
    let down = FakeUpstream::start().await;
    down.set_default(Reply::new().delay(Duration::from_secs(2)));
    let gw = TestGateway::start(&deprecated_config(&api.url(), &api.url(), &down.url())).await;

    let resp = client::get(&gw.url("/depd/v1/x")).await;
    assert_errno(&resp, 504, 203);
    assert_deprecated(&resp, "504");

    gw.clock
        .set(SystemTime::UNIX_EPOCH + Duration::from_secs(SUNSET_AT));
    let resp = client::get(&gw.url("/dep/v1/x")).await;
    assert_errno(&resp, 410, 116);
    assert_eq!(resp.header("sunset"), Some(SUNSET));

    // A current version carries neither.
    let resp = client::get(&gw.url("/dep/v2/x")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.header("deprecation"), None);
    assert_eq!(resp.header("sunset"), None);
}

#[tokio::test]
async fn a_refresh_answered_by_a_bare_503_that_opens_a_window_tells_the_wait() {
    let oauth = FakeUpstream::start().await;
    oauth.on("/v1/token", Reply::new().status(503).body("down"));
    let api = FakeUpstream::start().await;
    api.set_default(Reply::new().status(401));
    let extra = r#"
[refresh]
client_id = "5882386c6d801776"

[backoff]
default_503_window = "45s"

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "api"
refresh = true
"#;
    let gw = TestGateway::start(&bearer_config(&oauth.url(), &api.url(), extra)).await;
    let refresh = "2".repeat(64);
    let auth = format!("Bearer {}", "1".repeat(64));
    let resp = client::send(
        "GET",
        &gw.url("/open/v1/thing"),
        &[("authorization", &auth), ("x-fxa-refresh-token", &refresh)],
        Bytes::new(),
    )
    .await;
    assert_errno(&resp, 503, 104);
    assert_eq!(retry_after(&resp), Some(45));
    let refresh_calls = oauth
        .requests()
        .iter()
        .filter(|r| r.path() == "/v1/token")
        .count();
    assert_eq!(refresh_calls, 1, "one refresh call");
}

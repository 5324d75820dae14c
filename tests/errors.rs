//! The error contract through real sockets: every error leaving the gateway is errno JSON with
//! the documented number; gateway-made ones say so; upstream errors in the errno shape pass
//! byte for byte, foreign shapes are rewritten keeping their detail; successes are untouched.

mod support;

use std::io::Write;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde_json::{Value, json};
use support::client::{self, TestResponse};
use support::fake::{FakeUpstream, Reply};
use support::{TestGateway, config_with, simple_config};

// === helpers ===

/// Asserts what every error leaving the gateway carries: the status, `application/json`, a
/// request id, and `{code, errno, error, message}` with `code` equal to the status. Returns
/// the parsed body for further checks.
fn assert_errno(resp: &TestResponse, status: u16, errno: u16, message: &str) -> Value {
    assert_eq!(resp.status_u16(), status, "status; body: {}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "content-type; body: {}",
        resp.text()
    );
    assert!(
        resp.header("x-request-id").is_some_and(|id| !id.is_empty()),
        "x-request-id missing: {:?}",
        resp.headers
    );
    let v = resp.json();
    let reason = StatusCode::from_u16(status)
        .expect("valid status")
        .canonical_reason()
        .expect("status has a reason phrase");
    assert_eq!(v["code"], json!(status), "{v}");
    assert_eq!(v["errno"], json!(errno), "{v}");
    assert_eq!(v["error"], json!(reason), "{v}");
    assert_eq!(v["message"], json!(message), "{v}");
    v
}

/// An error the gateway made itself: errno contract plus `X-FxA-Gateway-Error: <reason>`.
fn assert_gateway_error(
    resp: &TestResponse,
    status: u16,
    errno: u16,
    message: &str,
    reason: &str,
) -> Value {
    let v = assert_errno(resp, status, errno, message);
    assert_eq!(resp.header("x-fxa-gateway-error"), Some(reason), "{v}");
    v
}

/// An error that came from upstream (passed or rewritten): never marked as the gateway's own.
fn assert_not_gateway_made(resp: &TestResponse) {
    assert_eq!(
        resp.header("x-fxa-gateway-error"),
        None,
        "upstream errors are not the gateway's own"
    );
}

const API_ROUTE: &str = r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1", "v2"]
"#;

/// A gateway config whose single upstream `api` takes the given settings (timeouts, cap);
/// `config_with` fixes them, these tests need others.
fn config_for_upstream(upstream_url: &str, upstream_settings: &str, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
name = "test"
addr = "127.0.0.1:0"

[[upstreams]]
name = "api"
url = "{upstream_url}"
{upstream_settings}

{extra}
"#
    )
}

/// The catch-all `/api` route with a short response timeout.
fn short_timeout_config(upstream_url: &str) -> String {
    config_for_upstream(
        upstream_url,
        "connect_timeout = \"1s\"\nresponse_timeout = \"300ms\"",
        API_ROUTE,
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip write");
    encoder.finish().expect("gzip finish")
}

async fn assert_still_serves(gw: &TestGateway, fake: &FakeUpstream) {
    fake.reset_script();
    let resp = client::get(&gw.url("/api/v1/still-alive")).await;
    assert_eq!(
        resp.status_u16(),
        200,
        "gateway stopped serving: {}",
        resp.text()
    );
}

// === routing errors ===

#[tokio::test]
async fn unknown_path_is_404_errno_999_made_by_the_gateway() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/nowhere/v1/x")).await;
    let v = assert_gateway_error(&resp, 404, 999, "Not Found", "route-not-found");
    assert!(v["info"].is_string(), "info link: {v}");
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn prefix_matches_only_on_a_segment_boundary() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/apix/v1/x")).await;
    assert_gateway_error(&resp, 404, 999, "Not Found", "route-not-found");
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn unsupported_api_version_is_404_errno_999_naming_the_version() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v9/profile")).await;
    let v = assert_gateway_error(
        &resp,
        404,
        999,
        "Not Found: unsupported API version",
        "version-not-supported",
    );
    assert_eq!(v["version"], "v9");
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn disallowed_method_is_405_errno_999_with_allow_header() {
    let fake = FakeUpstream::start().await;
    let route = r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1"]
methods = ["GET", "POST"]
"#;
    let gw = TestGateway::start(&config_with(&fake.url(), route)).await;
    let resp = client::send("DELETE", &gw.url("/api/v1/thing"), &[], "").await;
    assert_gateway_error(&resp, 405, 999, "Method Not Allowed", "method-not-allowed");
    assert_eq!(resp.header("allow"), Some("GET, POST"));
    assert_eq!(fake.request_count(), 0);
    // Allowed methods (and HEAD riding on GET) go through.
    for method in ["GET", "POST", "HEAD"] {
        let resp = client::send(method, &gw.url("/api/v1/thing"), &[], "").await;
        assert_eq!(resp.status_u16(), 200, "{method}");
    }
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn head_on_a_gateway_error_has_the_headers_and_no_body() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send("HEAD", &gw.url("/nowhere"), &[], "").await;
    assert_eq!(resp.status_u16(), 404);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("x-fxa-gateway-error"), Some("route-not-found"));
    assert!(resp.header("x-request-id").is_some());
    assert!(
        resp.body.is_empty(),
        "HEAD answered with a body: {:?}",
        resp.text()
    );
}

#[tokio::test]
async fn head_on_a_rewritten_upstream_error_has_the_headers_and_no_body() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().status(503).header("retry-after", "7"));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send("HEAD", &gw.url("/api/v1/x"), &[], "").await;
    assert_eq!(resp.status_u16(), 503);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("retry-after"), Some("7"));
    assert!(resp.header("x-request-id").is_some());
    assert!(
        resp.body.is_empty(),
        "HEAD answered with a body: {:?}",
        resp.text()
    );
}

// === deprecated versions ===

/// 2020-01-01T00:00:00Z and 2100-01-01T00:00:00Z in Unix seconds.
const DEPRECATED_AT: u64 = 1_577_836_800;
const SUNSET_AT: u64 = 4_102_444_800;

fn deprecated_v1_config(upstream_url: &str) -> String {
    config_with(
        upstream_url,
        r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v2"]

[[routes.deprecated_versions]]
version = "v1"
deprecation = "2020-01-01"
sunset = "2100-01-01T00:00:00Z"
"#,
    )
}

#[tokio::test]
async fn deprecated_version_works_with_deprecation_and_sunset_headers_until_its_sunset() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&deprecated_v1_config(&fake.url())).await;
    let sunset = SystemTime::UNIX_EPOCH + Duration::from_secs(SUNSET_AT);

    let resp = client::get(&gw.url("/api/v1/profile")).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let deprecation = format!("@{DEPRECATED_AT}");
    assert_eq!(resp.header("deprecation"), Some(deprecation.as_str()));
    assert_eq!(resp.header("sunset"), Some("Fri, 01 Jan 2100 00:00:00 GMT"));
    assert_eq!(
        resp.header("sunset")
            .map(httpdate::parse_http_date)
            .and_then(Result::ok),
        Some(sunset)
    );
    assert_eq!(fake.request_count(), 1);

    // A current version carries neither header.
    let resp = client::get(&gw.url("/api/v2/profile")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.header("deprecation"), None);
    assert_eq!(resp.header("sunset"), None);

    // One second before the sunset it still works.
    gw.clock.set(sunset - Duration::from_secs(1));
    let resp = client::get(&gw.url("/api/v1/profile")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(fake.request_count(), 3);

    // At and past the sunset: 410 errno 116, and upstream is not asked.
    gw.clock.advance(Duration::from_secs(1));
    let resp = client::get(&gw.url("/api/v1/profile")).await;
    let v = assert_gateway_error(
        &resp,
        410,
        116,
        "This endpoint is no longer supported",
        "version-gone",
    );
    assert_eq!(v["version"], "v1");
    gw.clock.advance(Duration::from_secs(86_400 * 365));
    let resp = client::send("POST", &gw.url("/api/v1/profile"), &[], "{}").await;
    assert_gateway_error(
        &resp,
        410,
        116,
        "This endpoint is no longer supported",
        "version-gone",
    );
    assert_eq!(fake.request_count(), 3, "a sunset version reached upstream");

    // The current version is unaffected by the clock.
    assert_eq!(
        client::get(&gw.url("/api/v2/profile")).await.status_u16(),
        200
    );
}

#[tokio::test]
async fn deprecated_version_error_answers_also_carry_the_deprecation_headers() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().status(404).body("nope"));
    let gw = TestGateway::start(&deprecated_v1_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/missing")).await;
    assert_errno(&resp, 404, 999, "nope");
    let deprecation = format!("@{DEPRECATED_AT}");
    assert_eq!(resp.header("deprecation"), Some(deprecation.as_str()));
    assert_eq!(resp.header("sunset"), Some("Fri, 01 Jan 2100 00:00:00 GMT"));
}

// === upstream failures ===

#[tokio::test]
async fn refused_upstream_connection_is_502_errno_203_naming_the_service() {
    let addr = FakeUpstream::refusing();
    let gw = TestGateway::start(&simple_config(&format!("http://{addr}"))).await;
    let resp = client::get(&gw.url("/api/v1/profile")).await;
    let v = assert_gateway_error(
        &resp,
        502,
        203,
        "System unavailable, try again soon",
        "upstream-unreachable",
    );
    assert_eq!(v["service"], "api");
    let text = resp.text();
    assert!(
        !text.contains(&addr.to_string()),
        "upstream address leaked: {text}"
    );
    // POST too, and the gateway keeps answering.
    let resp = client::send("POST", &gw.url("/api/v1/profile"), &[], "{}").await;
    assert_gateway_error(
        &resp,
        502,
        203,
        "System unavailable, try again soon",
        "upstream-unreachable",
    );
}

#[tokio::test]
async fn upstream_slower_than_the_response_timeout_is_504_errno_203() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().delay(Duration::from_secs(2)));
    let gw = TestGateway::start(&short_timeout_config(&fake.url())).await;
    let started = tokio::time::Instant::now();
    let resp = client::get(&gw.url("/api/v1/slow")).await;
    let elapsed = started.elapsed();
    let v = assert_gateway_error(
        &resp,
        504,
        203,
        "System unavailable, try again soon",
        "upstream-timeout",
    );
    assert_eq!(v["service"], "api");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1500),
        "timed out after {elapsed:?}, expected about 300ms"
    );
    assert_eq!(
        fake.request_count(),
        1,
        "a timed-out request must not be retried"
    );
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn garbage_upstream_reply_is_502_errno_203() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().raw("this is not HTTP at all\r\n\r\n\x00\x01\x02"));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_gateway_error(
        &resp,
        502,
        203,
        "System unavailable, try again soon",
        "upstream-bad-response",
    );
    assert_eq!(v["service"], "api");
    assert!(
        !resp.text().contains("not HTTP"),
        "upstream internals leaked: {v}"
    );
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn upstream_dropping_a_post_is_502_errno_203_and_not_retried() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().drop_connection());
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send(
        "POST",
        &gw.url("/api/v1/write"),
        &[("content-type", "application/json")],
        r#"{"a":1}"#,
    )
    .await;
    let v = assert_gateway_error(
        &resp,
        502,
        203,
        "System unavailable, try again soon",
        "upstream-bad-response",
    );
    assert_eq!(v["service"], "api");
    assert_eq!(fake.request_count(), 1, "a POST was sent twice");
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn upstream_at_its_connection_cap_is_503_errno_201_with_retry_after() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().delay(Duration::from_millis(900)).body("slow"));
    let cfg = config_for_upstream(
        &fake.url(),
        "connect_timeout = \"300ms\"\nresponse_timeout = \"5s\"\nmax_connections = 1",
        API_ROUTE,
    );
    let gw = TestGateway::start(&cfg).await;
    let slow_url = gw.url("/api/v1/slow");
    let slow = tokio::spawn(async move { client::get(&slow_url).await });
    assert!(fake.wait_for_requests(1, Duration::from_secs(5)).await);

    let started = tokio::time::Instant::now();
    let resp = client::get(&gw.url("/api/v1/second")).await;
    let waited = started.elapsed();
    let v = assert_gateway_error(&resp, 503, 201, "Service unavailable", "upstream-busy");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(v["retryAfter"], 1);
    assert_eq!(v["retryAfterLocalized"], "in 1 second");
    assert!(
        waited >= Duration::from_millis(250),
        "answered busy after {waited:?} without waiting for a slot"
    );
    assert_eq!(
        fake.request_count(),
        1,
        "the capped request reached upstream"
    );

    let slow = slow.await.expect("slow request task");
    assert_eq!(slow.status_u16(), 200);
    assert_eq!(slow.text(), "slow");
    // The slot is free again.
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn error_body_stalling_past_the_response_timeout_is_504_errno_203() {
    let fake = FakeUpstream::start().await;
    fake.push(
        Reply::new()
            .status(500)
            .header("content-type", "text/html")
            .body("</html>")
            .stall_mid_body("<html><body>half an error", Duration::from_secs(2)),
    );
    let gw = TestGateway::start(&short_timeout_config(&fake.url())).await;
    let started = tokio::time::Instant::now();
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_gateway_error(
        &resp,
        504,
        203,
        "System unavailable, try again soon",
        "upstream-timeout",
    );
    assert_eq!(v["service"], "api");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_still_serves(&gw, &fake).await;
}

// === upstream errors: pass-through ===

#[tokio::test]
async fn errno_shaped_upstream_error_passes_byte_for_byte() {
    let fake = FakeUpstream::start().await;
    let body = "{\n  \"code\" : 400,\"errno\":107 ,\n\t\"error\": \"Bad Request\", \
                \"message\": \"Invalid parameter in request body\",\
                \"validation\": {\"keys\": [\"email\"]}, \"someNewField\": [1, 2.50, null]  }\n";
    fake.set_default(
        Reply::new()
            .status(400)
            .header("content-type", "application/json")
            .header("x-upstream-extra", "kept")
            .body(body),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/account")).await;
    assert_errno(&resp, 400, 107, "Invalid parameter in request body");
    assert_not_gateway_made(&resp);
    assert_eq!(resp.text(), body, "errno body was re-serialised");
    assert_eq!(resp.header("x-upstream-extra"), Some("kept"));
}

#[tokio::test]
async fn errno_shaped_429_passes_with_its_retry_after() {
    let fake = FakeUpstream::start().await;
    let body = r#"{"code":429,"errno":114,"error":"Too Many Requests","message":"Client has sent too many requests","retryAfter":30,"retryAfterLocalized":"in 30 seconds","verificationMethod":"email-captcha"}"#;
    fake.set_default(
        Reply::new()
            .status(429)
            .header("content-type", "application/json")
            .header("retry-after", "30")
            .body(body),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/account")).await;
    assert_errno(&resp, 429, 114, "Client has sent too many requests");
    assert_eq!(resp.text(), body);
    assert_eq!(resp.header("retry-after"), Some("30"));
}

#[tokio::test]
async fn gzipped_errno_shaped_upstream_error_passes_unchanged_with_its_encoding() {
    let fake = FakeUpstream::start().await;
    let plain = br#"{"code": 401, "errno": 110, "error": "Unauthorized", "message": "Invalid authentication token in request signature", "unknownField": true}"#;
    let compressed = gzip(plain);
    fake.set_default(
        Reply::new()
            .status(401)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(compressed.clone()),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send(
        "GET",
        &gw.url("/api/v1/x"),
        &[("accept-encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(resp.status_u16(), 401);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert!(resp.header("x-request-id").is_some());
    assert_not_gateway_made(&resp);
    assert_eq!(
        &resp.body[..],
        &compressed[..],
        "compressed errno body changed"
    );
}

#[tokio::test]
async fn errno_shaped_body_without_a_json_content_type_still_leaves_as_json() {
    // The contract: every error leaving the gateway is `Content-Type: application/json`,
    // even when the upstream forgot the header on an otherwise errno-shaped body.
    let fake = FakeUpstream::start().await;
    let body = r#"{"code":400,"errno":108,"error":"Bad Request","message":"Invalid token"}"#;
    fake.set_default(Reply::new().status(400).body(body));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    assert_errno(&resp, 400, 108, "Invalid token");
    assert_eq!(resp.text(), body);
}

// === upstream errors: rewritten ===

#[tokio::test]
async fn token_server_cornice_401_becomes_errno_110_keeping_its_errors() {
    let fake = FakeUpstream::start().await;
    let errors = json!([{"location": "body", "name": "", "description": "Unauthorized"}]);
    fake.set_default(
        Reply::new()
            .status(401)
            .json(json!({"status": "invalid-credentials", "errors": errors})),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/1.0/sync/1.5")).await;
    let v = assert_errno(&resp, 401, 110, "Unauthorized");
    assert_not_gateway_made(&resp);
    assert_eq!(v["errors"], errors);
    assert_eq!(v["upstreamStatus"], "invalid-credentials");
    assert!(v["info"].is_string());
}

#[tokio::test]
async fn token_server_cornice_403_keeps_condition_urls() {
    let fake = FakeUpstream::start().await;
    let errors = json!([{
        "location": "header",
        "name": "X-Conditions-Accepted",
        "description": "Need to accept conditions",
        "condition_urls": {"tos": "https://example.com/tos", "pp": "https://example.com/pp"}
    }]);
    fake.set_default(
        Reply::new()
            .status(403)
            .json(json!({"status": "error", "errors": errors})),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/sync/1.5")).await;
    let v = assert_errno(&resp, 403, 999, "Need to accept conditions");
    assert_not_gateway_made(&resp);
    assert_eq!(v["errors"], errors, "Cornice errors not kept whole");
    assert_eq!(
        v["errors"][0]["condition_urls"]["tos"],
        "https://example.com/tos"
    );
}

#[tokio::test]
async fn gzipped_cornice_error_is_decoded_and_rewritten_without_its_encoding() {
    let fake = FakeUpstream::start().await;
    let plain = br#"{"status": "invalid-generation", "errors": [{"location": "body", "name": "", "description": "Unauthorized"}]}"#;
    fake.set_default(
        Reply::new()
            .status(401)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gzip(plain)),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send(
        "GET",
        &gw.url("/api/v1/x"),
        &[("accept-encoding", "gzip")],
        "",
    )
    .await;
    let v = assert_errno(&resp, 401, 110, "Unauthorized");
    assert_eq!(resp.header("content-encoding"), None);
    assert_eq!(v["upstreamStatus"], "invalid-generation");
}

#[tokio::test]
async fn amo_drf_401_detail_is_rewritten_keeping_www_authenticate() {
    let fake = FakeUpstream::start().await;
    let challenge = r#"JWT realm="Access to addons.mozilla.org external API""#;
    fake.set_default(
        Reply::new()
            .status(401)
            .header("www-authenticate", challenge)
            .json(json!({"detail": "Signature has expired.", "code": "ERROR_SIGNATURE_EXPIRED"})),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/addons/addon/x/")).await;
    let v = assert_errno(&resp, 401, 110, "Signature has expired.");
    assert_not_gateway_made(&resp);
    assert_eq!(v["detail"], "Signature has expired.");
    assert_eq!(v["upstreamCode"], "ERROR_SIGNATURE_EXPIRED");
    assert_eq!(resp.header("www-authenticate"), Some(challenge));
}

#[tokio::test]
async fn amo_drf_400_field_errors_are_rewritten_and_kept() {
    let fake = FakeUpstream::start().await;
    let fields = json!({
        "slug": ["This field must be unique."],
        "name": ["This field is required."]
    });
    fake.set_default(Reply::new().status(400).json(fields.clone()));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send("POST", &gw.url("/api/v1/addons/"), &[], "{}").await;
    assert_eq!(resp.status_u16(), 400);
    let v = resp.json();
    let message = v["message"].as_str().expect("message").to_owned();
    assert!(
        message == "slug: This field must be unique." || message == "name: This field is required.",
        "message names a field error: {message}"
    );
    assert_errno(&resp, 400, 999, &message);
    assert_eq!(v["fieldErrors"], fields);
}

#[tokio::test]
async fn load_balancer_html_503_becomes_errno_201_with_retry_after() {
    let fake = FakeUpstream::start().await;
    let html = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
                <body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n\
                <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    fake.set_default(
        Reply::new()
            .status(503)
            .header("content-type", "text/html")
            .header("retry-after", "30")
            .body(html),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_errno(&resp, 503, 201, "503 Service Temporarily Unavailable");
    assert_not_gateway_made(&resp);
    assert_eq!(v["retryAfter"], 30);
    assert_eq!(v["retryAfterLocalized"], "in 30 seconds");
    assert_eq!(resp.header("retry-after"), Some("30"));
    let detail = v["detail"].as_str().expect("html text kept as detail");
    assert!(
        detail.contains("nginx") && !detail.contains('<'),
        "{detail}"
    );
}

#[tokio::test]
async fn empty_502_from_upstream_becomes_errno_203() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().status(502));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_errno(&resp, 502, 203, "System unavailable, try again soon");
    assert_not_gateway_made(&resp);
    assert_eq!(v["service"], "api");
    assert!(v.get("detail").is_none(), "{v}");
}

#[tokio::test]
async fn waf_403_text_becomes_errno_999_with_its_text() {
    let fake = FakeUpstream::start().await;
    fake.set_default(
        Reply::new()
            .status(403)
            .header("content-type", "text/plain")
            .body("Request forbidden by administrative rules.\n"),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_errno(
        &resp,
        403,
        999,
        "Request forbidden by administrative rules.",
    );
    assert_not_gateway_made(&resp);
    assert_eq!(v["detail"], "Request forbidden by administrative rules.");
}

#[tokio::test]
async fn text_429_with_retry_after_becomes_errno_114() {
    let fake = FakeUpstream::start().await;
    fake.set_default(
        Reply::new()
            .status(429)
            .header("content-type", "text/plain")
            .header("retry-after", "120")
            .body("slow down"),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_errno(&resp, 429, 114, "slow down");
    assert_eq!(v["retryAfter"], 120);
    assert_eq!(v["retryAfterLocalized"], "in 2 minutes");
    assert_eq!(resp.header("retry-after"), Some("120"));
}

#[tokio::test]
async fn bare_json_error_value_is_rewritten_into_detail() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().status(400).json(json!(8)));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/storage/x")).await;
    let v = assert_errno(&resp, 400, 999, "Bad Request");
    assert_eq!(v["detail"], 8);
}

#[tokio::test]
async fn error_body_over_the_cap_is_rewritten_with_detail_truncated() {
    let fake = FakeUpstream::start().await;
    let big = format!("<html><body>{}</body></html>", "x".repeat(8 * 1024));
    fake.set_default(
        Reply::new()
            .status(500)
            .header("content-type", "text/html")
            .body(big),
    );
    let extra = format!("{API_ROUTE}\n[limits]\nmax_error_body_bytes = \"1KiB\"\n");
    let gw = TestGateway::start(&config_with(&fake.url(), &extra)).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_errno(&resp, 500, 999, "Internal Server Error");
    assert_eq!(v["detailTruncated"], true);
    assert!(v.get("detail").is_none(), "{v}");
    assert!(
        resp.body.len() < 1024,
        "oversized detail leaked into the answer"
    );
    assert_still_serves(&gw, &fake).await;
}

#[tokio::test]
async fn errno_shaped_body_over_the_cap_is_rewritten_not_buffered() {
    let fake = FakeUpstream::start().await;
    let padding = "p".repeat(4 * 1024);
    let body = format!(
        r#"{{"code":400,"errno":107,"error":"Bad Request","message":"x","pad":"{padding}"}}"#
    );
    fake.set_default(
        Reply::new()
            .status(400)
            .header("content-type", "application/json")
            .body(body),
    );
    let extra = format!("{API_ROUTE}\n[limits]\nmax_error_body_bytes = \"1KiB\"\n");
    let gw = TestGateway::start(&config_with(&fake.url(), &extra)).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    let v = assert_errno(&resp, 400, 999, "Bad Request");
    assert_eq!(v["detailTruncated"], true);
}

#[tokio::test]
async fn route_with_rewriting_off_passes_an_html_500_unchanged() {
    let fake = FakeUpstream::start().await;
    let html = "<!DOCTYPE html><html><body><h1>Our own error page</h1></body></html>";
    fake.set_default(
        Reply::new()
            .status(500)
            .header("content-type", "text/html; charset=utf-8")
            .body(html),
    );
    let route = r#"
[[routes]]
name = "site"
path_prefix = "/site"
upstream = "api"
rewrite_errors = false
"#;
    let gw = TestGateway::start(&config_with(&fake.url(), route)).await;
    let resp = client::get(&gw.url("/site/page")).await;
    assert_eq!(resp.status_u16(), 500);
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(resp.text(), html);
    assert_not_gateway_made(&resp);
    // Gateway-made errors on that route are still errno JSON.
    let addr = FakeUpstream::refusing();
    let cfg = config_with(&format!("http://{addr}"), route);
    let down = TestGateway::start(&cfg).await;
    let resp = client::get(&down.url("/site/page")).await;
    assert_gateway_error(
        &resp,
        502,
        203,
        "System unavailable, try again soon",
        "upstream-unreachable",
    );
}

#[tokio::test]
async fn success_and_redirect_answers_pass_untouched() {
    let fake = FakeUpstream::start().await;
    let odd_json = "{ \"errno\" : 110 ,\"code\":401, \"unknown\": [1,2] }";
    fake.on(
        "/v1/ok",
        Reply::new()
            .status(200)
            .header("content-type", "application/json")
            .body(odd_json),
    );
    fake.on(
        "/v1/created",
        Reply::new()
            .status(201)
            .header("content-type", "text/plain")
            .body("not json {"),
    );
    fake.on(
        "/v1/moved",
        Reply::new()
            .status(302)
            .header("location", "https://example.com/elsewhere")
            .header("content-type", "text/html")
            .body("<a href=\"https://example.com/elsewhere\">moved</a>"),
    );
    fake.on("/v1/empty", Reply::new().status(204));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;

    let resp = client::get(&gw.url("/api/v1/ok")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.text(), odd_json);
    assert_not_gateway_made(&resp);

    let resp = client::send("POST", &gw.url("/api/v1/created"), &[], "x").await;
    assert_eq!(resp.status_u16(), 201);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.text(), "not json {");

    let resp = client::get(&gw.url("/api/v1/moved")).await;
    assert_eq!(resp.status_u16(), 302);
    assert_eq!(
        resp.header("location"),
        Some("https://example.com/elsewhere")
    );
    assert_eq!(resp.header("content-type"), Some("text/html"));
    assert_eq!(
        resp.text(),
        "<a href=\"https://example.com/elsewhere\">moved</a>"
    );

    let resp = client::get(&gw.url("/api/v1/empty")).await;
    assert_eq!(resp.status_u16(), 204);
    assert!(resp.body.is_empty());
}

//! Forwarding through real sockets: paths, headers, bodies, pooling and the retry rule.

mod support;

use std::time::Duration;

use support::client::{self, TestClient};
use support::fake::{FakeUpstream, Reply};
use support::{TestGateway, simple_config};

#[tokio::test]
async fn get_is_forwarded_with_prefix_stripped_and_query_kept() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().echo());
    let gw = TestGateway::start(&simple_config(&format!("{}/base", fake.url()))).await;
    let resp = client::get(&gw.url("/api/v1/profile?a=1&b=two")).await;
    assert_eq!(resp.status_u16(), 200);
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.path_and_query(), "/base/v1/profile?a=1&b=two");
    assert_eq!(seen.header("host"), Some(fake.addr().to_string().as_str()));
}

#[tokio::test]
async fn success_body_passes_through_byte_for_byte() {
    let fake = FakeUpstream::start().await;
    let body = r#"{"uid":"abc",  "unknownField":[1,2,{"x":null}], "email":"a@b"}"#;
    fake.set_default(
        Reply::new()
            .header("content-type", "application/json")
            .body(body),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/profile")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.text(), body);
}

#[tokio::test]
async fn forwarding_headers_are_set_and_spoofs_replaced() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    client::send(
        "GET",
        &gw.url("/api/v1/x"),
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("host", "gw.example:8080"),
        ],
        "",
    )
    .await;
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    // RFC 7239's header says the same: a caller cannot forge it either.
    assert_eq!(seen.header("forwarded"), None);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gw.example:8080"));
    assert_eq!(seen.header("via"), Some("1.1 fxa-gateway"));
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_is_extended() {
    let fake = FakeUpstream::start().await;
    let cfg = format!(
        "trusted_proxies = [\"127.0.0.0/8\"]\n{}",
        simple_config(&fake.url())
    );
    let gw = TestGateway::start(&cfg).await;
    client::send(
        "GET",
        &gw.url("/api/v1/x"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ],
        "",
    )
    .await;
    let seen = fake.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("forwarded"), Some("for=203.0.113.9"));
}

#[tokio::test]
async fn gateway_namespace_and_hop_by_hop_headers_never_cross() {
    let fake = FakeUpstream::start().await;
    fake.set_default(
        Reply::new()
            .header("x-fxa-access-token", "leak")
            .header("connection", "x-internal")
            .header("x-internal", "hop")
            .header("x-kept", "yes")
            .body("ok"),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send(
        "GET",
        &gw.url("/api/v1/x"),
        &[
            ("x-fxa-uid", "spoofed"),
            ("x-fxa-refresh-token", "refresh-secret"),
            ("connection", "x-hop-named"),
            ("x-hop-named", "1"),
            ("proxy-authorization", "Basic abc"),
            ("authorization", "Bearer passes-on-none-routes"),
        ],
        "",
    )
    .await;
    let seen = fake.last_request().unwrap();
    for gone in [
        "x-fxa-uid",
        "x-fxa-refresh-token",
        "x-hop-named",
        "proxy-authorization",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} was forwarded");
    }
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer passes-on-none-routes")
    );
    assert_eq!(resp.header("x-fxa-access-token"), None);
    assert_eq!(resp.header("x-internal"), None);
    assert_eq!(resp.header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn request_id_is_kept_when_well_formed_else_generated() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send(
        "GET",
        &gw.url("/api/v1/x"),
        &[("x-request-id", "rp-123.abc")],
        "",
    )
    .await;
    assert_eq!(resp.header("x-request-id"), Some("rp-123.abc"));
    assert_eq!(
        fake.last_request().unwrap().header("x-request-id"),
        Some("rp-123.abc")
    );

    let resp = client::send(
        "GET",
        &gw.url("/api/v1/x"),
        &[("x-request-id", "bad id\"<script>")],
        "",
    )
    .await;
    let generated = resp.header("x-request-id").unwrap().to_owned();
    assert_ne!(generated, "bad id\"<script>");
    assert_eq!(
        fake.last_request().unwrap().header("x-request-id"),
        Some(generated.as_str())
    );
}

#[tokio::test]
async fn post_body_streams_to_upstream() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().echo());
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let body = "x".repeat(200_000);
    let resp = client::send(
        "POST",
        &gw.url("/api/v1/upload"),
        &[("content-type", "text/plain")],
        body.clone(),
    )
    .await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(fake.last_request().unwrap().body.len(), body.len());
}

#[tokio::test]
async fn keep_alive_connections_to_the_upstream_are_reused() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let c = TestClient::new();
    for _ in 0..10 {
        assert_eq!(c.get(&gw.url("/api/v1/x")).await.status_u16(), 200);
    }
    assert_eq!(fake.request_count(), 10);
    assert_eq!(
        fake.connection_count(),
        1,
        "upstream connections should be pooled"
    );
}

#[tokio::test]
async fn idempotent_request_is_retried_once_after_a_dropped_connection() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().drop_connection());
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(fake.request_count(), 2, "one dropped attempt, one retry");
    assert_eq!(
        fake.connection_count(),
        2,
        "the retry used a fresh connection"
    );
}

#[tokio::test]
async fn idempotent_request_is_retried_only_once() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().drop_connection());
    fake.push(Reply::new().drop_connection());
    fake.push(Reply::new().body("third"));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    assert_eq!(resp.status_u16(), 502);
    assert_eq!(resp.json()["errno"], 203);
    assert_eq!(fake.queued(), 1, "a third attempt was made");
}

#[tokio::test]
async fn non_idempotent_request_is_not_retried() {
    let fake = FakeUpstream::start().await;
    fake.push(Reply::new().drop_connection());
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::send(
        "POST",
        &gw.url("/api/v1/x"),
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(resp.status_u16(), 502);
    assert_eq!(resp.json()["errno"], 203);
    assert_eq!(fake.request_count(), 1, "a POST must not be sent twice");
}

#[tokio::test]
async fn h2c_is_not_spoken_on_plain_listeners_but_http1_is() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    assert_eq!(client::get(&gw.url("/api/v1/x")).await.status_u16(), 200);
    let h2 = TestClient::h2c()
        .try_send("GET", &gw.url("/api/v1/x"), &[], "")
        .await;
    assert!(h2.is_err() || h2.unwrap().status_u16() == 400);
    // The gateway still serves after the refused h2c attempt.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(client::get(&gw.url("/api/v1/x")).await.status_u16(), 200);
}

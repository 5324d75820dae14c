//! `/metrics` on the admin listener: the series exist, count what happened, and carry no
//! request-controlled label values.

mod support;

use support::client;
use support::fake::{FakeUpstream, Reply};
use support::{TestGateway, simple_config};

async fn scrape(gw: &TestGateway) -> String {
    let resp = client::get(&gw.admin_url("/metrics")).await;
    assert_eq!(resp.status_u16(), 200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    resp.text()
}

#[tokio::test]
async fn requests_are_counted_by_route_status_and_errno() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for _ in 0..3 {
        assert_eq!(client::get(&gw.url("/api/v1/ok")).await.status_u16(), 200);
    }
    assert_eq!(client::get(&gw.url("/nowhere")).await.status_u16(), 404);
    assert_eq!(client::get(&gw.url("/api/v9/x")).await.status_u16(), 404);
    let text = scrape(&gw).await;
    assert!(
        text.contains(r#"fxa_gateway_requests_total{route="api",status="200",errno="none"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"fxa_gateway_requests_total{route="-",status="404",errno="999"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"fxa_gateway_gateway_errors_total{route="api",reason="version-not-supported"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"fxa_gateway_request_duration_seconds_count{route="api"} 4"#),
        "{text}"
    );
    assert!(text.contains("fxa_gateway_open_connections"));
    assert!(text.contains("fxa_gateway_in_flight_requests"));
}

#[tokio::test]
async fn upstream_failures_are_counted_per_upstream() {
    let refusing = FakeUpstream::refusing();
    let gw = TestGateway::start(&simple_config(&format!("http://{refusing}"))).await;
    assert_eq!(client::get(&gw.url("/api/v1/x")).await.status_u16(), 502);
    let text = scrape(&gw).await;
    assert!(
        text.contains(
            r#"fxa_gateway_upstream_errors_total{upstream="api",kind="upstream-unreachable"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn backoff_state_and_header_are_exported() {
    let fake = FakeUpstream::start().await;
    fake.push(
        Reply::new()
            .status(503)
            .header("retry-after", "30")
            .body(""),
    );
    fake.push(Reply::new().header("x-backoff", "45").body("ok"));
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    assert_eq!(client::get(&gw.url("/api/v1/x")).await.status_u16(), 503);
    let text = scrape(&gw).await;
    assert!(
        text.contains(r#"fxa_gateway_backoff_window_seconds{upstream="api"} 30"#),
        "{text}"
    );
    gw.clock.advance(std::time::Duration::from_secs(31));
    assert_eq!(
        client::get(&gw.url("/api/v1/x")).await.status_u16(),
        200,
        "probe after the window"
    );
    let text = scrape(&gw).await;
    assert!(
        text.contains(r#"fxa_gateway_backoff_header_seconds{upstream="api"} 45"#),
        "{text}"
    );
}

#[tokio::test]
async fn label_values_never_come_from_the_request() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    client::send(
        "GET",
        &gw.url("/api/v1/SECRET-PATH?access_token=SECRET-QUERY"),
        &[
            ("authorization", "Bearer SECRET-TOKEN"),
            ("host", "SECRET-HOST"),
        ],
        "",
    )
    .await;
    client::get(&gw.url("/SECRET-UNROUTED")).await;
    let text = scrape(&gw).await;
    assert!(!text.contains("SECRET"), "{text}");
}

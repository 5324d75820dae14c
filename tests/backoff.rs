//! Back-off windows and quotas end to end (issue 7): one upstream 429/503 closes the window for
//! every client at once, the gateway answers locally until it ends, lets exactly one probe
//! through, then reopens gradually. Time only moves through the gateway's manual clock: no
//! test sleeps to get past a window.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fxa_gateway::clock::Clock;
use serde_json::json;
use support::client::{self, TestClient, TestResponse};
use support::fake::{FakeUpstream, Reply};
use support::{TestGateway, config_with};

/// One route `/api/v1/...` → upstream `api`, no authentication.
const API_ROUTE: &str = r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1"]
"#;

const PATH: &str = "/api/v1/profile";

const SECRET_A: &str = "amo-secret-a-0123456789abcdef0123456789abcdef";
const SECRET_B: &str = "amo-secret-b-0123456789abcdef0123456789abcdef";

/// A gateway with the `/api` route plus `extra` (a `[backoff]` table, more routes...).
async fn start(fake: &FakeUpstream, extra: &str) -> TestGateway {
    TestGateway::start(&config_with(&fake.url(), &format!("{API_ROUTE}\n{extra}"))).await
}

/// A gateway whose upstream table gets `upstream_keys` (e.g. `rate_limit = ...`), then `extra`.
async fn start_with_upstream_keys(
    fake: &FakeUpstream,
    upstream_keys: &str,
    extra: &str,
) -> TestGateway {
    TestGateway::start(&config_with(
        &fake.url(),
        &format!("{upstream_keys}\n{API_ROUTE}\n{extra}"),
    ))
    .await
}

/// A gateway with the `/api` route (no identity) and an AMO route `/amo/v5/...` whose caller
/// identity is the selected credential: `iss:user:1:1` by default, `iss:user:2:2` when the
/// caller sends `X-FxA-AMO-Credential: second`.
async fn start_amo(fake: &FakeUpstream, backoff_scope: &str) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.secret"), SECRET_A).unwrap();
    std::fs::write(dir.path().join("b.secret"), SECRET_B).unwrap();
    let extra = format!(
        r#"
{API_ROUTE}

[[amo_credentials]]
name = "main"
api_key = "user:1:1"
secret = {{ file = "a.secret" }}

[[amo_credentials]]
name = "second"
api_key = "user:2:2"
secret = {{ file = "b.secret" }}
selectable_from_listeners = ["test"]

[[routes]]
name = "amo"
path_prefix = "/amo"
upstream = "api"
versions = ["v5"]
auth = {{ policy = "amo-jwt", credential = "main", header_selection = true }}
backoff_scope = "{backoff_scope}"
"#
    );
    let gw = TestGateway::start_in(&config_with(&fake.url(), &extra), dir.path()).await;
    (gw, dir)
}

/// Identity A: the credential selected by header.
const AS_A: &[(&str, &str)] = &[("x-fxa-amo-credential", "second")];
/// Identity B: the route's default credential.
const AS_B: &[(&str, &str)] = &[];
const AMO_PATH: &str = "/amo/v5/addons/";

/// FxA's 503: `Retry-After` and a matching errno body.
fn fxa_503(retry_after: u64) -> Reply {
    Reply::new()
        .status(503)
        .header("retry-after", &retry_after.to_string())
        .json(json!({
            "code": 503, "errno": 201, "error": "Service Unavailable",
            "message": "Service unavailable", "retryAfter": retry_after,
        }))
}

/// FxA's (or AMO's) 429 with errno 114.
fn fxa_429(retry_after: u64) -> Reply {
    Reply::new()
        .status(429)
        .header("retry-after", &retry_after.to_string())
        .json(json!({
            "code": 429, "errno": 114, "error": "Too Many Requests",
            "message": "Client has sent too many requests", "retryAfter": retry_after,
        }))
}

fn ok_reply() -> Reply {
    Reply::new().json(json!({"ok": true}))
}

fn retry_after(resp: &TestResponse) -> u64 {
    resp.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}: {}", resp.status, resp.text()))
        .parse()
        .expect("Retry-After is delta-seconds")
}

/// A local back-off answer: `status`, `errno`, `Retry-After` = `secs` and the body fields.
#[track_caller]
fn assert_backed_off(resp: &TestResponse, status: u16, errno: u64, secs: u64) {
    assert_eq!(resp.status_u16(), status, "{}", resp.text());
    assert_eq!(
        resp.header("x-fxa-gateway-error"),
        Some("backed-off"),
        "{}",
        resp.text()
    );
    assert_eq!(retry_after(resp), secs, "Retry-After");
    let body = resp.json();
    assert_eq!(body["code"], status, "{body}");
    assert_eq!(body["errno"], errno, "{body}");
    assert_eq!(
        body["retryAfter"], secs,
        "retryAfter equals the header: {body}"
    );
    assert!(
        body["retryAfterLocalized"]
            .as_str()
            .is_some_and(|t| t.starts_with("in ")),
        "{body}"
    );
}

/// Opens a window: one request through the gateway that the upstream answers with `reply`.
async fn trigger(gw: &TestGateway, fake: &FakeUpstream, path: &str, reply: Reply) -> TestResponse {
    fake.push(reply);
    client::get(&gw.url(path)).await
}

/// Puts the gateway clock on a whole second so HTTP-dates (second resolution) are exact.
fn whole_second_clock(gw: &TestGateway) -> SystemTime {
    let now = gw.clock.now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs() + 1;
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    gw.clock.set(t);
    t
}

/// `clients` concurrent clients, `per_client` requests each; returns every response.
async fn flood(gw: &TestGateway, clients: usize, per_client: usize) -> Vec<TestResponse> {
    let url = gw.url(PATH);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = TestClient::new();
                let mut out = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    out.push(c.get(&url).await);
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(clients * per_client);
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

// === coalesced windows ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_503_retry_after_30_answers_1000_requests_from_50_clients_locally() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    let first = trigger(&gw, &fake, PATH, fxa_503(30)).await;
    assert_eq!(first.status_u16(), 503);
    assert_eq!(fake.request_count(), 1);

    let responses = flood(&gw, 50, 20).await;
    assert_eq!(responses.len(), 1000);
    for resp in &responses {
        assert_backed_off(resp, 503, 201, 30);
        assert_eq!(resp.json()["retryAfterLocalized"], "in 30 seconds");
    }
    assert_eq!(
        fake.request_count(),
        1,
        "only the request that opened the window reached the upstream"
    );
}

#[tokio::test]
async fn retry_after_counts_down_with_the_clock() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    trigger(&gw, &fake, PATH, fxa_503(30)).await;
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 30);
    gw.clock.advance(Duration::from_millis(10_400));
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 20);
    gw.clock.advance(Duration::from_millis(19_000));
    // 0.6 s left: rounded up, never down to 0.
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 1);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn http_date_retry_after_opens_a_window_until_that_date() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    let now = whole_second_clock(&gw);
    let date = httpdate::fmt_http_date(now + Duration::from_secs(45));
    let reply = Reply::new()
        .status(503)
        .header("retry-after", &date)
        .json(json!({"code": 503, "errno": 201, "error": "Service Unavailable"}));
    trigger(&gw, &fake, PATH, reply).await;
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 45);
    gw.clock.advance(Duration::from_secs(44));
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 1);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn body_only_retry_after_opens_a_window() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    let reply = Reply::new().status(503).json(json!({
        "code": 503, "errno": 201, "error": "Service Unavailable", "retryAfter": 15,
    }));
    trigger(&gw, &fake, PATH, reply).await;
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 15);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn huge_retry_after_is_clamped_to_the_default_max_window_of_300s() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    trigger(&gw, &fake, PATH, fxa_503(100_000)).await;
    let resp = client::get(&gw.url(PATH)).await;
    assert_backed_off(&resp, 503, 201, 300);
    // After the clamped window, one probe asks again.
    gw.clock.advance(Duration::from_secs(300));
    assert_eq!(client::get(&gw.url(PATH)).await.status_u16(), 200);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn huge_retry_after_is_clamped_to_the_configured_max_window() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "[backoff]\nmax_window = \"60s\"\n").await;
    trigger(&gw, &fake, PATH, fxa_503(100_000)).await;
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 60);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn zero_or_unparsable_retry_after_opens_no_window() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    for value in ["0", "soon", "-5"] {
        let reply = Reply::new()
            .status(503)
            .header("retry-after", value)
            .json(json!({"code": 503, "errno": 201, "error": "Service Unavailable"}));
        trigger(&gw, &fake, PATH, reply).await;
        let next = client::get(&gw.url(PATH)).await;
        assert_eq!(
            next.status_u16(),
            200,
            "Retry-After {value:?}: {}",
            next.text()
        );
    }
    assert_eq!(fake.request_count(), 6);
}

// === half-open probe and ramp ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn window_end_lets_exactly_one_probe_through_while_others_get_retry_after_1() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    trigger(&gw, &fake, PATH, fxa_503(30)).await;
    gw.clock.advance(Duration::from_secs(30));

    // The probe is held by the upstream while everyone else asks.
    fake.push(ok_reply().delay(Duration::from_millis(1000)));
    let probe_url = gw.url(PATH);
    let probe = tokio::spawn(async move { client::get(&probe_url).await });
    assert!(fake.wait_for_requests(2, Duration::from_secs(5)).await);

    let during = flood(&gw, 10, 3).await;
    for resp in &during {
        assert_backed_off(resp, 503, 201, 1);
    }
    assert_eq!(
        fake.request_count(),
        2,
        "only the probe reached the upstream"
    );

    let probe = probe.await.unwrap();
    assert_eq!(probe.status_u16(), 200, "{}", probe.text());
    // Probe succeeded: traffic is readmitted (the default ramp starts at 25 req/s).
    assert_eq!(client::get(&gw.url(PATH)).await.status_u16(), 200);
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn successful_probe_reopens_gradually_over_the_ramp_period() {
    let fake = FakeUpstream::start().await;
    let backoff = r#"
[backoff]
ramp_base_rate = 4
ramp_steps = 2
ramp_start_percent = 50
ramp_period = "2s"
"#;
    let gw = start(&fake, backoff).await;
    trigger(&gw, &fake, PATH, fxa_503(5)).await;
    gw.clock.advance(Duration::from_secs(5));
    assert_eq!(client::get(&gw.url(PATH)).await.status_u16(), 200, "probe");
    assert_eq!(fake.request_count(), 2);

    let c = TestClient::new();
    let mut admitted_per_second = Vec::new();
    for second in 0..3 {
        let before = fake.request_count();
        let mut admitted = 0;
        for _ in 0..10 {
            let resp = c.get(&gw.url(PATH)).await;
            if resp.status_u16() == 200 {
                admitted += 1;
            } else {
                assert_backed_off(&resp, 503, 201, 1);
            }
        }
        assert_eq!(fake.request_count() - before, admitted, "second {second}");
        admitted_per_second.push(admitted);
        gw.clock.advance(Duration::from_secs(1));
    }
    // 50 % of 4 req/s, then 100 % of 4 req/s, then the ramp is over.
    assert_eq!(admitted_per_second, [2, 4, 10]);
}

#[tokio::test]
async fn ramp_period_0s_reopens_at_once_after_the_probe() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "[backoff]\nramp_period = \"0s\"\n").await;
    trigger(&gw, &fake, PATH, fxa_503(5)).await;
    gw.clock.advance(Duration::from_secs(5));
    let c = TestClient::new();
    for _ in 0..50 {
        assert_eq!(c.get(&gw.url(PATH)).await.status_u16(), 200);
    }
    assert_eq!(fake.request_count(), 51);
}

#[tokio::test]
async fn failed_probe_reopens_a_window_from_its_answer() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    trigger(&gw, &fake, PATH, fxa_503(30)).await;
    gw.clock.advance(Duration::from_secs(30));

    let probe = trigger(&gw, &fake, PATH, fxa_503(60)).await;
    assert_eq!(probe.status_u16(), 503);
    assert_eq!(fake.request_count(), 2, "the probe reached the upstream");
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 60);
    gw.clock.advance(Duration::from_secs(59));
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 1);
    assert_eq!(fake.request_count(), 2);

    gw.clock.advance(Duration::from_secs(1));
    assert_eq!(client::get(&gw.url(PATH)).await.status_u16(), 200, "probe");
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn a_probe_that_gets_no_answer_frees_the_slot_for_the_next_caller() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    trigger(&gw, &fake, PATH, fxa_503(30)).await;
    gw.clock.advance(Duration::from_secs(30));
    // The probe's connection is dropped (a GET is retried once on a fresh connection).
    fake.push(Reply::new().drop_connection());
    fake.push(Reply::new().drop_connection());
    let probe = client::get(&gw.url(PATH)).await;
    assert_eq!(probe.status_u16(), 502, "{}", probe.text());
    let seen = fake.request_count();
    // No answer was recorded, so the next caller probes at once rather than after the lease.
    let next = client::get(&gw.url(PATH)).await;
    assert_eq!(next.status_u16(), 200, "{}", next.text());
    assert_eq!(fake.request_count(), seen + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_whose_client_went_away_frees_the_slot_for_the_next_caller() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    trigger(&gw, &fake, PATH, fxa_503(30)).await;
    gw.clock.advance(Duration::from_secs(30));
    fake.push(ok_reply().delay(Duration::from_millis(1500)));
    let addr = gw.addr;
    let abandoned = tokio::spawn(async move {
        let mut conn = client::TestConnection::http1(addr).await.unwrap();
        conn.get(PATH).await
    });
    assert!(fake.wait_for_requests(2, Duration::from_secs(5)).await);
    abandoned.abort();
    let _ = abandoned.await;
    // Give the gateway a moment to notice the closed connection (real time, not the window).
    let mut next = client::get(&gw.url(PATH)).await;
    for _ in 0..20 {
        if next.status_u16() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        next = client::get(&gw.url(PATH)).await;
    }
    assert_eq!(
        next.status_u16(),
        200,
        "the abandoned probe still holds the slot: {}",
        next.text()
    );
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_success_that_left_before_the_window_opened_does_not_close_it() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    // A slow request is in flight when another one's 503 opens the window.
    fake.push(ok_reply().delay(Duration::from_millis(500)));
    let url = gw.url(PATH);
    let straggler = tokio::spawn(async move { client::get(&url).await });
    assert!(fake.wait_for_requests(1, Duration::from_secs(5)).await);
    let opener = trigger(&gw, &fake, PATH, fxa_503(30)).await;
    assert_eq!(opener.status_u16(), 503);
    assert_eq!(straggler.await.unwrap().status_u16(), 200);
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 30);
    assert_eq!(fake.request_count(), 2);
}

// === which answers open which window ===

#[tokio::test]
async fn a_429_for_one_amo_identity_leaves_other_identities_untouched() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start_amo(&fake, "auto").await;
    fake.push(fxa_429(30));
    let first = client::send("GET", &gw.url(AMO_PATH), AS_A, "").await;
    assert_eq!(first.status_u16(), 429);

    let a = client::send("GET", &gw.url(AMO_PATH), AS_A, "").await;
    assert_backed_off(&a, 429, 114, 30);
    assert_eq!(fake.request_count(), 1, "A is answered locally");

    let b = client::send("GET", &gw.url(AMO_PATH), AS_B, "").await;
    assert_eq!(
        b.status_u16(),
        200,
        "B still reaches the upstream: {}",
        b.text()
    );
    assert_eq!(
        client::get(&gw.url(PATH)).await.status_u16(),
        200,
        "the upstream is not closed"
    );
    assert_eq!(fake.request_count(), 3);

    gw.clock.advance(Duration::from_secs(30));
    let a = client::send("GET", &gw.url(AMO_PATH), AS_A, "").await;
    assert_eq!(a.status_u16(), 200, "A's window ended: {}", a.text());
    assert_eq!(fake.request_count(), 4);
}

#[tokio::test]
async fn a_429_without_a_caller_identity_closes_the_whole_upstream() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start_amo(&fake, "auto").await;
    let first = trigger(&gw, &fake, PATH, fxa_429(30)).await;
    assert_eq!(first.status_u16(), 429);

    assert_backed_off(&client::get(&gw.url(PATH)).await, 429, 114, 30);
    for who in [AS_A, AS_B] {
        let resp = client::send("GET", &gw.url(AMO_PATH), who, "").await;
        assert_backed_off(&resp, 429, 114, 30);
    }
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn backoff_scope_upstream_makes_an_identity_429_close_everything() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start_amo(&fake, "upstream").await;
    fake.push(fxa_429(30));
    let first = client::send("GET", &gw.url(AMO_PATH), AS_A, "").await;
    assert_eq!(first.status_u16(), 429);

    for who in [AS_A, AS_B] {
        let resp = client::send("GET", &gw.url(AMO_PATH), who, "").await;
        assert_backed_off(&resp, 429, 114, 30);
    }
    assert_backed_off(&client::get(&gw.url(PATH)).await, 429, 114, 30);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_503_seen_on_an_identity_route_closes_the_whole_upstream() {
    let fake = FakeUpstream::start().await;
    let (gw, _dir) = start_amo(&fake, "auto").await;
    fake.push(fxa_503(30));
    let first = client::send("GET", &gw.url(AMO_PATH), AS_A, "").await;
    assert_eq!(first.status_u16(), 503);
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 30);
    let b = client::send("GET", &gw.url(AMO_PATH), AS_B, "").await;
    assert_backed_off(&b, 503, 201, 30);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_500_with_retry_after_opens_an_upstream_window_answered_503_errno_201() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    let reply = Reply::new()
        .status(500)
        .header("retry-after", "20")
        .json(json!({"code": 500, "errno": 999, "error": "Internal Server Error"}));
    let first = trigger(&gw, &fake, PATH, reply).await;
    assert_eq!(first.status_u16(), 500);
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 20);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_503_errno_is_repeated_in_the_local_answers() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    let reply = Reply::new()
        .status(503)
        .header("retry-after", "10")
        .json(json!({"code": 503, "errno": 203, "error": "Service Unavailable"}));
    trigger(&gw, &fake, PATH, reply).await;
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 203, 10);
}

#[tokio::test]
async fn a_503_without_any_wait_opens_no_window_by_default() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    let reply = Reply::new()
        .status(503)
        .json(json!({"code": 503, "errno": 201, "error": "Service Unavailable"}));
    trigger(&gw, &fake, PATH, reply).await;
    assert_eq!(client::get(&gw.url(PATH)).await.status_u16(), 200);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn a_503_without_any_wait_opens_the_configured_default_window() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "[backoff]\ndefault_503_window = \"10s\"\n").await;
    let reply = Reply::new().status(503).body("upstream connect error");
    trigger(&gw, &fake, PATH, reply).await;
    assert_backed_off(&client::get(&gw.url(PATH)).await, 503, 201, 10);
    assert_eq!(fake.request_count(), 1);
}

// === quotas and the upstream cap ===

#[tokio::test]
async fn quota_by_peer_answers_the_4th_request_429_with_retry_after_and_ratelimit_headers() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&config_with(
        &fake.url(),
        r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1"]
quota = { requests = 3, window = "60s", key = "peer", headers = true }
"#,
    ))
    .await;
    let c = TestClient::new();
    for remaining in [2, 1, 0] {
        let resp = c.get(&gw.url(PATH)).await;
        assert_eq!(resp.status_u16(), 200, "{}", resp.text());
        assert_eq!(
            resp.header("ratelimit-policy"),
            Some("\"default\";q=3;w=60")
        );
        let state = resp
            .header("ratelimit")
            .expect("RateLimit on admitted responses");
        assert!(
            state.starts_with(&format!("\"default\";r={remaining};t=")),
            "{state}"
        );
    }
    let over = c.get(&gw.url(PATH)).await;
    assert_eq!(over.status_u16(), 429, "{}", over.text());
    assert_eq!(over.header("x-fxa-gateway-error"), Some("quota-exceeded"));
    let secs = retry_after(&over);
    assert!(
        (19..=20).contains(&secs),
        "one request comes back every 20 s: {secs}"
    );
    let body = over.json();
    assert_eq!(body["errno"], 114);
    assert_eq!(body["retryAfter"], secs);
    assert_eq!(
        over.header("ratelimit-policy"),
        Some("\"default\";q=3;w=60")
    );
    assert_eq!(
        over.header("ratelimit"),
        Some(format!("\"default\";r=0;t={secs}").as_str())
    );
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn quota_keyed_by_an_api_key_header_counts_each_key_separately() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&config_with(
        &fake.url(),
        r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1"]
quota = { requests = 2, window = "60s", key = "header:X-Api-Key" }
"#,
    ))
    .await;
    let c = TestClient::new();
    for key in ["key-one", "key-two"] {
        for n in 1..=3 {
            let resp = c
                .send("GET", &gw.url(PATH), &[("x-api-key", key)], "")
                .await;
            let expected = if n <= 2 { 200 } else { 429 };
            assert_eq!(resp.status_u16(), expected, "{key} #{n}: {}", resp.text());
            assert_eq!(
                resp.header("ratelimit"),
                None,
                "headers are off unless configured"
            );
        }
    }
    assert_eq!(fake.request_count(), 4);
}

#[tokio::test]
async fn upstream_rate_limit_caps_all_callers_together_with_503_errno_201() {
    let fake = FakeUpstream::start().await;
    let gw = start_with_upstream_keys(&fake, "rate_limit = { requests = 2, window = \"60s\" }", "")
        .await;
    for _ in 0..2 {
        assert_eq!(client::get(&gw.url(PATH)).await.status_u16(), 200);
    }
    // A new client (new connection, same address) shares the cap.
    let over = TestClient::new().get(&gw.url(PATH)).await;
    assert_eq!(over.status_u16(), 503, "{}", over.text());
    assert_eq!(
        over.header("x-fxa-gateway-error"),
        Some("upstream-over-cap")
    );
    assert_eq!(over.json()["errno"], 201);
    assert!(retry_after(&over) >= 1);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn requests_refused_by_a_route_quota_do_not_use_up_the_upstream_cap() {
    let fake = FakeUpstream::start().await;
    let limited = r#"
[[routes]]
name = "limited"
path_prefix = "/limited"
upstream = "api"
versions = ["v1"]
quota = { requests = 1, window = "60s" }
"#;
    let gw = start_with_upstream_keys(
        &fake,
        "rate_limit = { requests = 3, window = \"60s\" }",
        limited,
    )
    .await;
    let c = TestClient::new();
    assert_eq!(c.get(&gw.url("/limited/v1/x")).await.status_u16(), 200);
    for _ in 0..2 {
        let refused = c.get(&gw.url("/limited/v1/x")).await;
        assert_eq!(
            refused.header("x-fxa-gateway-error"),
            Some("quota-exceeded")
        );
    }
    assert_eq!(fake.request_count(), 1);
    // One request of the cap's three reached the upstream: two more may.
    for n in 1..=2 {
        let resp = c.get(&gw.url(PATH)).await;
        assert_eq!(
            resp.status_u16(),
            200,
            "request {n} after the refusals: {}",
            resp.text()
        );
    }
    assert_eq!(fake.request_count(), 3);
}

// === heartbeat and the demonstration ===

#[tokio::test]
async fn heartbeat_reports_a_window_without_contacting_the_upstream() {
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    // Outside a window the heartbeat does ask the upstream.
    let hb = client::get(&gw.admin_url("/__heartbeat__")).await.json();
    assert_eq!(hb["upstreams"]["api"]["status"], "ok", "{hb}");
    assert_eq!(fake.request_count(), 1);

    trigger(&gw, &fake, PATH, fxa_503(30)).await;
    assert_eq!(fake.request_count(), 2);
    gw.clock.advance(Duration::from_secs(10));
    let resp = client::get(&gw.admin_url("/__heartbeat__")).await;
    let hb = resp.json();
    let api = &hb["upstreams"]["api"];
    assert_eq!(api["status"], "backoff", "{hb}");
    assert_eq!(api["httpStatus"], 503, "{hb}");
    assert_eq!(api["errno"], 201, "{hb}");
    assert_eq!(api["retryAfter"], 20, "{hb}");
    assert_eq!(fake.request_count(), 2, "the heartbeat did not probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demonstration_n_clients_against_an_upstream_in_backoff() {
    const CLIENTS: usize = 100;
    const PER_CLIENT: usize = 10;
    let fake = FakeUpstream::start().await;
    let gw = start(&fake, "").await;
    trigger(&gw, &fake, PATH, fxa_503(30)).await;

    let mut made = 1;
    let mut local = 0;
    // Three rounds inside the 30 s window, the clock moving 10 s between them.
    for _ in 0..3 {
        let responses = flood(&gw, CLIENTS, PER_CLIENT).await;
        made += responses.len();
        local += responses
            .iter()
            .filter(|r| r.header("x-fxa-gateway-error") == Some("backed-off"))
            .count();
        gw.clock.advance(Duration::from_millis(9_900));
    }
    let seen = fake.request_count();
    println!(
        "{CLIENTS} clients against an upstream in back-off: client requests made: {made}, \
         answered locally: {local}, upstream requests seen: {seen}"
    );
    assert_eq!(local, made - 1);
    assert_eq!(seen, 1);
}

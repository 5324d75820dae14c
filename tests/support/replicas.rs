//! What the shared-state tests read off a replica: its heartbeat, its view of Redis, and its
//! metrics.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestGateway;
use super::client;

/// The replica's `/__heartbeat__`: status code and body.
pub async fn heartbeat(gw: &TestGateway) -> (u16, Value) {
    let resp = client::get(&gw.admin_url("/__heartbeat__")).await;
    (resp.status_u16(), resp.json())
}

/// Waits (up to 10 s) until the replica reports Redis as `status` ("ok": reachable and
/// subscribed).
pub async fn wait_redis_status(gw: &TestGateway, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = heartbeat(gw).await;
        if body["redis"]["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The replica's `/metrics` text.
pub async fn metrics(gw: &TestGateway) -> String {
    client::get(&gw.admin_url("/metrics")).await.text()
}

/// The value of the first series in the metrics text whose line starts with `prefix`, 0 when
/// absent.
pub fn series(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

//! What a gateway process holds, read from outside: open file descriptors and RSS from /proc,
//! live tokio tasks and any counter from its `/metrics`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use super::client::raw_exchange;

/// One look at a gateway process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub fds: usize,
    pub rss_kib: u64,
    pub tasks: u64,
}

pub async fn sample(pid: u32, admin: SocketAddr) -> Sample {
    // The scrape first: its own connection is closed (and its fd gone) before /proc is read.
    let tasks = metric(admin, "fxa_gateway_tasks ").await.unwrap_or(-1.0) as u64;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Sample {
        fds: fds(pid),
        rss_kib: rss_kib(pid),
        tasks,
    }
}

pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The `/metrics` text (one connection, closed by us after the answer).
pub async fn metrics_text(admin: SocketAddr) -> String {
    let raw = raw_exchange(
        admin,
        b"GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// The sum of the values of every series whose line starts with `prefix`; `None` if none.
pub async fn metric(admin: SocketAddr, prefix: &str) -> Option<f64> {
    let text = metrics_text(admin).await;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

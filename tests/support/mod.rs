//! Test harness: the real gateway started in-process on 127.0.0.1:0 from a TOML string, with a
//! manual clock, next to the fake FxA of `fake.rs`.
#![allow(dead_code)]

pub mod client;
pub mod fake;
pub mod faulty;
pub mod fxa_jwt;
pub mod h2raw;
pub mod probe;
pub mod process;
pub mod raw;
pub mod redis;
pub mod reloading;
pub mod replicas;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fxa_gateway::clock::ManualClock;
use fxa_gateway::{Gateway, ShutdownHandle};
use tokio::task::JoinHandle;

/// A running gateway.
pub struct TestGateway {
    /// First client listener.
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub clock: Arc<ManualClock>,
    shutdown: ShutdownHandle,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestGateway {
    /// Starts a gateway from TOML text; relative paths resolve against `base_dir`.
    pub async fn start_in(toml: &str, base_dir: &Path) -> TestGateway {
        let config = fxa_gateway::config::parse_str(toml, Path::new("test.toml"), base_dir)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{toml}"));
        let clock = ManualClock::new(SystemTime::now());
        let gateway = Gateway::bind(&config, clock.clone())
            .await
            .expect("gateway binds");
        let addrs = gateway.listener_addrs();
        let admin = gateway.admin_addr();
        let shutdown = ShutdownHandle::new();
        let waiter = shutdown.clone();
        let task =
            tokio::spawn(async move { gateway.run(async move { waiter.wait().await }).await });
        TestGateway {
            addr: addrs[0],
            addrs,
            admin,
            clock,
            shutdown,
            task: Some(task),
        }
    }

    pub async fn start(toml: &str) -> TestGateway {
        Self::start_in(toml, Path::new(".")).await
    }

    /// `http://127.0.0.1:PORT<path>` on the first listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.admin.expect("admin listener configured"),
            path
        )
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.shutdown();
    }

    /// Shuts down and waits for the drain to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.shutdown();
        match self.task.take() {
            Some(t) => t.await.expect("gateway task panicked"),
            None => Ok(()),
        }
    }

    /// Waits for a shutdown begun with `begin_shutdown`.
    pub async fn join(mut self) -> anyhow::Result<()> {
        match self.task.take() {
            Some(t) => t.await.expect("gateway task panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A minimal config: one plain listener, an admin listener, one upstream `api` at
/// `upstream_url`, and the given extra TOML (routes, limits...).
pub fn config_with(upstream_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
drain_timeout = "5s"
[server.log]
access_log = true

[[listeners]]
name = "test"
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "api"
url = "{upstream_url}"
connect_timeout = "1s"
response_timeout = "2s"

{extra}
"#
    )
}

/// One catch-all route `/api` → upstream `api`, prefix stripped, versions v1 and v2.
pub fn simple_config(upstream_url: &str) -> String {
    config_with(
        upstream_url,
        r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1", "v2"]
"#,
    )
}

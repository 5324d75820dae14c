//! Starting and stopping the whole gateway: bind every listener, serve (reloading when asked),
//! and on shutdown fail the load-balancer heartbeat, stop accepting, drain in-flight requests
//! within the drain timeout, and return.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::admin::AdminServer;
use crate::clock::SharedClock;
use crate::config::{Config, Limits, Sources};
use crate::listener::{BoundListener, ConnectionSlots};
use crate::metrics::Metrics;
use crate::pipeline::{ConfigVersion, Snapshot, State};
use crate::reload::{self, ConfigFile, ListenerSet, ReloadHandle, Supervisor};
use crate::shared::Store;

/// A gateway with its sockets bound (so tests can bind port 0 and read the address).
pub struct Gateway {
    state: Arc<State>,
    listeners: Vec<BoundListener>,
    admin: Option<AdminServer>,
    limits: Limits,
    reload: ReloadHandle,
    requests: mpsc::Receiver<reload::Request>,
    file: Option<ConfigFile>,
}

/// Triggers a graceful shutdown of a running gateway.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<tokio::sync::Notify>);

impl ShutdownHandle {
    pub fn new() -> Self {
        ShutdownHandle(Arc::new(tokio::sync::Notify::new()))
    }
    pub fn shutdown(&self) {
        self.0.notify_one();
    }
    pub async fn wait(&self) {
        self.0.notified().await
    }
}

impl Default for ShutdownHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl Gateway {
    /// Builds the upstream clients and binds every listener. A gateway bound this way cannot
    /// reload (it knows no file); see [`Gateway::bind_file`].
    pub async fn bind(config: &Config, clock: SharedClock) -> anyhow::Result<Gateway> {
        Self::bind_with(config, clock, None).await
    }

    /// [`Gateway::bind`] for a configuration loaded from `file`: SIGHUP, `POST /__reload__`
    /// and the file watcher reload from it.
    pub async fn bind_file(
        config: &Config,
        clock: SharedClock,
        path: PathBuf,
        sources: Sources,
    ) -> anyhow::Result<Gateway> {
        Self::bind_with(config, clock, Some(ConfigFile { path, sources })).await
    }

    async fn bind_with(
        config: &Config,
        clock: SharedClock,
        file: Option<ConfigFile>,
    ) -> anyhow::Result<Gateway> {
        crate::install_crypto_provider();
        let version = ConfigVersion::now(file.as_ref().map(|f| f.sources.hash.as_str()));
        let store = config.redis.as_ref().map(Store::new).transpose()?;
        let snapshot = Snapshot::with_store(config, &clock, store.clone())?.with_version(version);
        let mut state = State::new(snapshot, clock);
        if let Some(store) = &store {
            let metrics = Metrics::with_redis().with_auth(state.snapshot.load().auth.metrics());
            if let Some(redis) = metrics.redis() {
                store.attach_metrics(redis);
            }
            state.metrics = Arc::new(metrics);
            store.start();
        }
        let state = Arc::new(state);
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            listeners.push(BoundListener::bind(l).await?);
        }
        let admin = match &config.admin {
            Some(a) => Some(AdminServer::bind(a.addr).await?),
            None => None,
        };
        let (reload, requests) = ReloadHandle::channel();
        Ok(Gateway {
            state,
            listeners,
            admin,
            limits: config.limits.clone(),
            reload,
            requests,
            file,
        })
    }

    /// Asks the running gateway to reload (SIGHUP calls this).
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// Addresses of the client listeners, in config order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let connections = Arc::new(ConnectionSlots::new(&self.limits));
        let listeners = ListenerSet::start(self.listeners, self.state.clone(), connections.clone());
        let mut supervisor = Supervisor::new(self.state.clone(), listeners, self.file.take());
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let admin = self.admin.map(|a| {
            let addr = a.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(listener = "admin", addr = %addr, "listening");
            tokio::spawn(a.serve(self.state.clone(), self.reload.clone(), admin_stop_rx))
        });
        let watcher = tokio::spawn(reload::watch::run(
            supervisor.watch_set(),
            self.reload.clone(),
        ));

        // Expired back-off windows and idle quota keys are dropped in the background.
        let housekeeping = {
            let state = self.state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    let snapshot = state.snapshot.load();
                    snapshot.gates.housekeeping(state.clock.now());
                    snapshot.auth.housekeeping(state.clock.now());
                }
            })
        };

        // Reloads are handled here, one at a time, until shutdown.
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(request) = self.requests.recv() => supervisor.handle(request).await,
            }
        }
        watcher.abort();
        housekeeping.abort();
        if let Some(store) = &self.state.snapshot.load().store {
            store.stop();
        }
        tracing::info!("shutting down: failing the load-balancer heartbeat and draining");
        self.state.draining.store(true, Ordering::SeqCst);
        supervisor.listeners().drain().await;
        // Every connection holds a slot: having them all back means every connection is done.
        let drain_timeout = self.state.snapshot.load().config.server.drain_timeout;
        match tokio::time::timeout(drain_timeout, connections.all_closed()).await {
            Ok(_) => tracing::info!("drained"),
            Err(_) => {
                tracing::warn!(timeout = ?drain_timeout, "drain timeout: closing remaining connections")
            }
        }
        supervisor.listeners().close();
        let _ = admin_stop_tx.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        Ok(())
    }
}

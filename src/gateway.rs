//! Starting and stopping the whole gateway: bind every listener, serve, and on shutdown fail
//! the load-balancer heartbeat, stop accepting, drain in-flight requests within the drain
//! timeout, and return.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::admin::AdminServer;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::config::Limits;
use crate::listener::{self, BoundListener, ConnectionSlots, Phase};
use crate::metrics::Metrics;
use crate::pipeline::{Snapshot, State};
use crate::shared::Store;

/// A gateway with its sockets bound (so tests can bind port 0 and read the address).
pub struct Gateway {
    state: Arc<State>,
    listeners: Vec<BoundListener>,
    admin: Option<AdminServer>,
    limits: Limits,
    drain_timeout: Duration,
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
    /// Builds the upstream clients and binds every listener.
    pub async fn bind(config: &Config, clock: SharedClock) -> anyhow::Result<Gateway> {
        crate::install_crypto_provider();
        let store = config.redis.as_ref().map(Store::new).transpose()?;
        let mut state = State::new(Snapshot::with_store(config, &clock, store.clone())?, clock);
        if let Some(store) = &store {
            let metrics = Metrics::with_redis();
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
        Ok(Gateway {
            state,
            listeners,
            admin,
            limits: config.limits.clone(),
            drain_timeout: config.server.drain_timeout,
        })
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
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(Phase::Serving);
        let connections = Arc::new(ConnectionSlots::new(&self.limits));
        let mut accept_loops = Vec::new();
        for l in self.listeners {
            let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(listener = %l.name, addr = %addr, tls = l.tls.is_some(), "listening");
            accept_loops.push(tokio::spawn(listener::serve(
                l,
                self.state.clone(),
                connections.clone(),
                stop_rx.clone(),
            )));
        }
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let admin = self.admin.map(|a| {
            let addr = a.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(listener = "admin", addr = %addr, "listening");
            tokio::spawn(a.serve(self.state.clone(), admin_stop_rx))
        });

        // Expired back-off windows and idle quota keys are dropped in the background.
        let housekeeping = {
            let state = self.state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    state.snapshot.load().gates.housekeeping(state.clock.now());
                }
            })
        };

        shutdown.await;
        housekeeping.abort();
        if let Some(store) = &self.state.snapshot.load().store {
            store.stop();
        }
        tracing::info!("shutting down: failing the load-balancer heartbeat and draining");
        self.state.draining.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(Phase::Draining);
        for task in accept_loops {
            let _ = task.await;
        }
        // Every connection holds a slot: having them all back means every connection is done.
        match tokio::time::timeout(self.drain_timeout, connections.all_closed()).await {
            Ok(_) => tracing::info!("drained"),
            Err(_) => {
                tracing::warn!(timeout = ?self.drain_timeout, "drain timeout: closing remaining connections")
            }
        }
        let _ = admin_stop_tx.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        Ok(())
    }
}

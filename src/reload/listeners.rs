//! The client listeners of a running gateway, as a reload changes them: a listener whose
//! configured address is unchanged keeps its socket (no connection is refused during a reload)
//! and gets its new settings and certificates; a new address is bound before anything else
//! changes; a listener no longer configured stops accepting and its connections drain (they
//! finish their requests, then close; whatever is left after the drain timeout is closed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ListenerConfig;
use crate::listener::{
    self, BoundListener, ConnectionSlots, ListenerRuntime, Phase, PreparedRuntime,
};
use crate::pipeline::State;

/// Every listener serving, and those draining after a reload removed them.
pub struct ListenerSet {
    state: Arc<State>,
    connections: Arc<ConnectionSlots>,
    running: Vec<Running>,
    /// Removed listeners' phase, kept so the process shutdown reaches their connections too.
    retired: Vec<Arc<watch::Sender<Phase>>>,
}

struct Running {
    configured: SocketAddr,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    /// This listener's life: its accept loop and connections follow it.
    phase: Arc<watch::Sender<Phase>>,
    task: JoinHandle<()>,
}

/// A reload's listener changes, prepared (sockets bound, certificates loaded) but not applied.
pub struct Plan {
    /// (index into `running`, its new settings).
    keep: Vec<(usize, PreparedRuntime)>,
    add: Vec<(TcpListener, SocketAddr, PreparedRuntime)>,
}

impl ListenerSet {
    /// Starts serving on `bound`.
    pub fn start(
        bound: Vec<BoundListener>,
        state: Arc<State>,
        connections: Arc<ConnectionSlots>,
    ) -> ListenerSet {
        let mut set = ListenerSet {
            state,
            connections,
            running: Vec::new(),
            retired: Vec::new(),
        };
        for l in bound {
            set.spawn(l);
        }
        set
    }

    fn spawn(&mut self, l: BoundListener) {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let runtime = l.runtime.load();
        tracing::info!(listener = %runtime.name, addr = %addr, tls = runtime.tls.is_some(), "listening");
        drop(runtime);
        let (phase, rx) = watch::channel(Phase::Serving);
        let configured = l.configured;
        let slot = l.runtime.clone();
        let task = tokio::spawn(listener::serve(
            l,
            self.state.clone(),
            self.connections.clone(),
            rx,
        ));
        self.running.push(Running {
            configured,
            runtime: slot,
            phase: Arc::new(phase),
            task,
        });
    }

    /// Matches `configs` to the listeners serving by configured address, binds the addresses
    /// that are new and loads every listener's certificates. Every problem is reported;
    /// sockets bound for a refused plan are closed when it is dropped.
    pub async fn prepare(&self, configs: &[ListenerConfig]) -> Result<Plan, Vec<String>> {
        let mut problems = Vec::new();
        let mut plan = Plan {
            keep: Vec::new(),
            add: Vec::new(),
        };
        let mut taken = vec![false; self.running.len()];
        for (i, config) in configs.iter().enumerate() {
            let same = (0..self.running.len())
                .find(|&r| !taken[r] && self.running[r].configured == config.addr);
            let previous = same.map(|r| self.running[r].runtime.load_full());
            let prepared = match ListenerRuntime::prepare(config, previous.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("listeners[{i}].tls: {e:#}"));
                    continue;
                }
            };
            match same {
                Some(r) => {
                    taken[r] = true;
                    plan.keep.push((r, prepared));
                }
                None => match listener::bind_socket(config).await {
                    Ok(tcp) => plan.add.push((tcp, config.addr, prepared)),
                    Err(e) => problems.push(format!("listeners[{i}].addr: {e:#}")),
                },
            }
        }
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems)
        }
    }

    /// Applies a plan: kept listeners get their new settings, new ones start, removed ones
    /// stop accepting and drain for up to `drain_timeout`. Cannot fail.
    pub fn commit(&mut self, plan: Plan, drain_timeout: Duration) {
        let keep: Vec<usize> = plan.keep.iter().map(|(r, _)| *r).collect();
        for (r, prepared) in plan.keep {
            prepared.commit(&self.running[r].runtime);
        }
        let mut kept = Vec::with_capacity(keep.len());
        for (r, running) in std::mem::take(&mut self.running).into_iter().enumerate() {
            if keep.contains(&r) {
                kept.push((r, running));
            } else {
                self.retire(running, drain_timeout);
            }
        }
        // Config order for the listeners kept (their order in the new file).
        kept.sort_by_key(|(r, _)| keep.iter().position(|k| k == r));
        self.running = kept.into_iter().map(|(_, running)| running).collect();
        for (tcp, configured, prepared) in plan.add {
            self.spawn(BoundListener {
                tcp,
                configured,
                runtime: prepared.into_slot(),
            });
        }
    }

    fn retire(&mut self, running: Running, drain_timeout: Duration) {
        let name = running.runtime.load().name.clone();
        tracing::info!(listener = %name, addr = %running.configured, "listener removed: no longer accepting, draining its connections");
        let _ = running.phase.send_replace(Phase::Draining);
        let phase = running.phase.clone();
        tokio::spawn(async move {
            let _ = running.task.await;
            tokio::time::sleep(drain_timeout).await;
            let _ = phase.send_replace(Phase::Closing);
        });
        self.retired.retain(|p| p.receiver_count() > 0);
        self.retired.push(running.phase);
    }

    /// Process shutdown: every listener stops accepting and every connection is asked to
    /// finish; returns once the accept loops are done.
    pub async fn drain(&mut self) {
        for phase in self.phases() {
            let _ = phase.send_replace(Phase::Draining);
        }
        for running in self.running.drain(..) {
            let _ = running.task.await;
            self.retired.push(running.phase);
        }
    }

    /// Closes whatever is still open (after the drain timeout).
    pub fn close(&self) {
        for phase in self.phases() {
            let _ = phase.send_replace(Phase::Closing);
        }
    }

    fn phases(&self) -> impl Iterator<Item = &Arc<watch::Sender<Phase>>> {
        self.running
            .iter()
            .map(|r| &r.phase)
            .chain(self.retired.iter())
    }
}

//! Reloading the configuration in a running process: SIGHUP, `POST /__reload__` on the admin
//! listener and the file watcher all ask the one [`Supervisor`], which handles one reload at a
//! time.
//!
//! A reload reads the config file and every file it names, validates them as `--check` does,
//! refuses changes to restart-only keys, binds new listener addresses and loads certificates;
//! only when all of that succeeded does it swap: the request snapshot (one atomic store), the
//! listeners' settings and certificates, new listeners started, removed ones drained. A refused
//! reload changes nothing: the configuration serving keeps serving. Never logs a secret.

mod listeners;
mod restart;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Sources};
use crate::pipeline::{ConfigVersion, Snapshot, State};

pub use listeners::ListenerSet;
pub use restart::keys as restart_only_keys;

/// What asked for a reload (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Admin,
    Watch,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Admin => "POST /__reload__",
            Trigger::Watch => "file change",
        }
    }
}

/// How a reload went.
#[derive(Debug, Clone)]
pub struct Report {
    pub applied: bool,
    /// Why it was refused, one problem a line (never a secret value).
    pub problems: Vec<String>,
    /// The configuration serving once the reload is over (the new one, or the old one kept).
    pub hash: Option<Arc<str>>,
    pub loaded_at: SystemTime,
}

/// Asks the supervisor for a reload.
#[derive(Clone)]
pub struct ReloadHandle(mpsc::Sender<Request>);

pub struct Request {
    trigger: Trigger,
    reply: Option<oneshot::Sender<Report>>,
}

impl ReloadHandle {
    pub fn channel() -> (ReloadHandle, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(8);
        (ReloadHandle(tx), rx)
    }

    /// Reloads and waits for the outcome (`None` when the gateway is shutting down).
    pub async fn reload(&self, trigger: Trigger) -> Option<Report> {
        let (reply, report) = oneshot::channel();
        let request = Request {
            trigger,
            reply: Some(reply),
        };
        self.0.send(request).await.ok()?;
        report.await.ok()
    }

    /// Asks for a reload without waiting. Requests already queued cover this one too, so a
    /// burst of signals does not queue a burst of reloads.
    pub fn request(&self, trigger: Trigger) {
        if self.0.capacity() < self.0.max_capacity() {
            return;
        }
        let _ = self.0.try_send(Request {
            trigger,
            reply: None,
        });
    }
}

/// Where the configuration comes from.
pub struct ConfigFile {
    pub path: PathBuf,
    /// What the serving configuration was loaded from.
    pub sources: Sources,
}

/// Owns the listeners and performs reloads, one at a time.
pub struct Supervisor {
    state: Arc<State>,
    listeners: ListenerSet,
    file: Option<ConfigFile>,
    watched: tokio::sync::watch::Sender<watch::WatchSet>,
    /// The watched files as they were when the reload under way started reading them.
    before: watch::Fingerprints,
}

impl Supervisor {
    pub fn new(state: Arc<State>, listeners: ListenerSet, file: Option<ConfigFile>) -> Supervisor {
        let snapshot = state.snapshot.load();
        let set = watch::WatchSet::of(&snapshot.config, file.as_ref().map(|f| &f.sources), None);
        state
            .metrics
            .config_loaded(snapshot.version.hash.as_deref(), snapshot.version.loaded_at);
        drop(snapshot);
        Supervisor {
            state,
            listeners,
            file,
            watched: tokio::sync::watch::channel(set).0,
            before: watch::Fingerprints::default(),
        }
    }

    /// What the file watcher is to look at (changes after every reload attempt).
    pub fn watch_set(&self) -> tokio::sync::watch::Receiver<watch::WatchSet> {
        self.watched.subscribe()
    }

    pub fn listeners(&mut self) -> &mut ListenerSet {
        &mut self.listeners
    }

    /// Performs one requested reload and answers whoever asked.
    pub async fn handle(&mut self, request: Request) {
        let report = self.reload(request.trigger).await;
        if let Some(reply) = request.reply {
            let _ = reply.send(report);
        }
    }

    /// One reload: everything is checked and prepared first; only then is anything swapped.
    pub async fn reload(&mut self, trigger: Trigger) -> Report {
        let Some(file) = &self.file else {
            let problems = vec!["this gateway was not started from a config file".to_owned()];
            return self.refused(trigger, problems);
        };
        let path = file.path.clone();
        // Looked at before reading: a file changed while the reload reads it is seen as
        // changed afterwards, and reloaded again.
        let watched = self.watched.borrow().files.clone();
        let before = watch::Fingerprints::take(&watched).await;
        let loaded = tokio::task::spawn_blocking(move || crate::config::load_with_sources(&path));
        let (result, sources) = match loaded.await {
            Ok(loaded) => loaded,
            Err(e) => return self.refused(trigger, vec![format!("loading failed: {e}")]),
        };
        self.before = before;
        let current = self.state.snapshot.load_full();
        let config = match result {
            Ok(config) => config,
            Err(errors) => {
                self.publish_watch_set(&current.config, Some(&sources));
                let problems = errors.to_string().lines().map(str::to_owned).collect();
                return self.refused(trigger, problems);
            }
        };
        match self.apply(&config, &current, &sources).await {
            Ok(report) => {
                if let Some(file) = &mut self.file {
                    file.sources = sources;
                }
                self.publish_watch_set(&config, None);
                self.state.metrics.config_reload("applied");
                tracing::info!(
                    trigger = trigger.label(),
                    config_hash = report.hash.as_deref().unwrap_or("none"),
                    "configuration reloaded"
                );
                report
            }
            Err(problems) => {
                self.publish_watch_set(&current.config, Some(&sources));
                self.refused(trigger, problems)
            }
        }
    }

    async fn apply(
        &mut self,
        config: &Config,
        current: &Snapshot,
        sources: &Sources,
    ) -> Result<Report, Vec<String>> {
        let problems = restart::changes(&current.config, config);
        if !problems.is_empty() {
            return Err(problems);
        }
        // New addresses are bound here, before anything is swapped: one that cannot be bound
        // refuses the reload and the sockets bound so far are closed again.
        let plan = self.listeners.prepare(&config.listeners).await?;
        let version = ConfigVersion::now(Some(&sources.hash));
        let snapshot = Snapshot::carry_over(config, &self.state.clock, current, version.clone())
            .map_err(|e| vec![format!("{e:#}")])?;
        self.state.snapshot.store(Arc::new(snapshot));
        self.listeners.commit(plan, config.server.drain_timeout);
        self.state
            .metrics
            .config_loaded(version.hash.as_deref(), version.loaded_at);
        Ok(Report {
            applied: true,
            problems: Vec::new(),
            hash: version.hash,
            loaded_at: version.loaded_at,
        })
    }

    fn refused(&self, trigger: Trigger, problems: Vec<String>) -> Report {
        self.state.metrics.config_reload("refused");
        tracing::error!(
            trigger = trigger.label(),
            problems = problems.len(),
            "configuration reload refused; the previous configuration keeps serving"
        );
        for problem in &problems {
            tracing::error!(trigger = trigger.label(), problem = %problem, "reload problem");
        }
        let snapshot = self.state.snapshot.load();
        Report {
            applied: false,
            problems,
            hash: snapshot.version.hash.clone(),
            loaded_at: snapshot.version.loaded_at,
        }
    }

    /// The watcher looks at the files of the serving configuration and, after a refused
    /// attempt, at the files that attempt read too (a file it missed may appear later).
    fn publish_watch_set(&self, serving: &Config, attempted: Option<&Sources>) {
        let live = self.file.as_ref().map(|f| &f.sources);
        let set = watch::WatchSet::of(serving, live, attempted).with_before(self.before.clone());
        self.watched.send_replace(set);
    }
}

//! State shared by every replica through Redis (`[redis]`, issue 17): one connection manager
//! (redis-rs; it reconnects on its own), the Lua scripts each kind of state needs, the keyed
//! hashes every key name is made of, and the AEAD that protects the access tokens a refresh
//! leaves for the other replicas.
//!
//! Never writes a raw token, refresh token, client secret, AMO secret, user id or header value
//! to Redis: key names are HMAC-SHA256 (the configured hashing key, the same on every replica)
//! and the only token stored is AES-256-GCM ciphertext. Never lets Redis take the gateway
//! down: every command has `command_timeout`; after a failure the store is "down", every call
//! answers `None` at once (the caller falls back to its in-process state or refuses, per
//! `on_redis_down`) and a background task pings until Redis answers again, then resumes.
//!
//! Deadlines that replicas share are computed on Redis's clock (`TIME` inside the scripts, PX
//! TTLs); a replica only measures how much of one is left with its own monotonic clock.
//!
//! Keys of one logical item share a hash tag (`{...}`), so a Redis Cluster could hold them;
//! this client is the single-node one (see docs/configuration.md).

mod crypto;
mod scripts;
mod tasks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio::task::JoinHandle;

pub use crypto::Sealed;
pub use scripts::{Gcra, RefreshClaim, RevocationEntry, SetClaim};

use crate::config::{DownPolicy, OnRedisDown, RedisSettings};
use crate::metrics::RedisMetrics;

/// Kinds of shared state, for `on_redis_down` and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Backoff,
    Quotas,
    Refresh,
    AmoReplay,
    /// Security-event revocations (always on local state while Redis is down).
    Revocations,
    /// Delivered security-event `jti`s (always on local state while Redis is down).
    SetLedger,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Backoff => "backoff",
            Kind::Quotas => "quotas",
            Kind::Refresh => "refresh",
            Kind::AmoReplay => "amo_replay",
            Kind::Revocations => "revocations",
            Kind::SetLedger => "set_jti",
        }
    }
}

/// Receives the back-off table's changes (pub/sub) and its whole content after every
/// (re)subscription. Each entry is one line of the table's format (`backoff::shared`).
pub trait TableListener: Send + Sync {
    /// `entry` as stored, `redis_now_ms` Redis's clock when it was read or published.
    fn apply(&self, entry: &str, redis_now_ms: u64);
}

/// Receives the security-event revocations other replicas recorded (pub/sub), and is told
/// after every (re)subscription so it can catch up on what it missed (`auth::revocation`).
pub trait RevocationListener: Send + Sync {
    /// One revocation another replica published.
    fn apply(&self, entry: RevocationEntry);
    /// The subscription is live (again): read what was recorded meanwhile.
    fn resubscribed(&self);
}

/// The connection to the fleet's Redis and everything built on it. One per process.
pub struct Store {
    conn: ConnectionManager,
    client: Client,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    health_interval: Duration,
    on_down: OnRedisDown,
    crypto: crypto::Keys,
    scripts: scripts::Scripts,
    /// False after a failed command until a ping succeeds: calls skip Redis meanwhile.
    up: AtomicBool,
    /// The pub/sub subscription is live (windows are pushed to this replica).
    subscribed: AtomicBool,
    /// Tells this replica's own messages apart (random, per process).
    origin: String,
    /// `now()` = `anchor_wall + anchor.elapsed()`: monotonic, and only used to measure what is
    /// left of a deadline that Redis's clock set.
    anchor: Instant,
    anchor_wall: SystemTime,
    metrics: OnceLock<RedisMetrics>,
    listener: Mutex<Option<Weak<dyn TableListener>>>,
    revocations: Mutex<Option<Weak<dyn RevocationListener>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

// === impl Store ===

impl Store {
    /// Builds the client; connects lazily (the first command, or the health task). Fails only
    /// on settings redis-rs refuses (a bad CA bundle).
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Arc<Store>> {
        crate::install_crypto_provider();
        let client = client(settings)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(settings.health_interval);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| anyhow::anyhow!("redis: {e}"))?;
        Ok(Arc::new(Store {
            conn,
            client,
            prefix: settings.key_prefix.clone(),
            connect_timeout: settings.connect_timeout,
            command_timeout: settings.command_timeout,
            health_interval: settings.health_interval,
            on_down: settings.on_down,
            crypto: crypto::Keys::new(&settings.hashing_key, &settings.encryption_key),
            scripts: scripts::Scripts::new(),
            // Optimistic: the first command finds out, and falls back at once if it must.
            up: AtomicBool::new(true),
            subscribed: AtomicBool::new(false),
            origin: crypto::random_hex(8),
            anchor: Instant::now(),
            anchor_wall: SystemTime::now(),
            metrics: OnceLock::new(),
            listener: Mutex::new(None),
            revocations: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Starts the health (ping, reconnect) and pub/sub tasks. Call once, inside the runtime.
    pub fn start(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if tasks.is_empty() {
            tasks.push(tokio::spawn(tasks::health(Arc::downgrade(self))));
            tasks.push(tokio::spawn(tasks::subscribe(Arc::downgrade(self))));
        }
    }

    /// Stops the background tasks (shutdown).
    pub fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }

    pub fn attach_metrics(&self, metrics: RedisMetrics) {
        metrics.up.set(i64::from(self.is_up()));
        let _ = self.metrics.set(metrics);
    }

    /// Where back-off table entries go (replaces the previous listener).
    pub fn set_table_listener(&self, listener: Weak<dyn TableListener>) {
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// Where published revocations go (replaces the previous listener).
    pub fn set_revocation_listener(&self, listener: Weak<dyn RevocationListener>) {
        *self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    pub fn on_down(&self) -> OnRedisDown {
        self.on_down
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// This replica's monotonic reading, as a `SystemTime` (see `anchor`).
    pub fn now(&self) -> SystemTime {
        self.anchor_wall + self.anchor.elapsed()
    }

    /// How long a replica waits before asking again after Redis failed (`Retry-After` of a
    /// refusal).
    pub fn retry_after_secs(&self) -> u64 {
        crate::backoff::whole_seconds_up(self.health_interval)
    }

    /// Hex of the first 16 bytes of HMAC-SHA256(hashing key, `domain` ‖ 0 ‖ `value`): the
    /// only form in which a token, id or jti reaches a key name.
    pub fn hash(&self, domain: &str, value: &[u8]) -> String {
        self.crypto.hash_hex(domain, value)
    }

    /// The first 8 bytes of the same HMAC, for in-memory maps keyed alike on every replica.
    pub fn hash_u64(&self, domain: &str, value: &[u8]) -> u64 {
        self.crypto.hash_u64(domain, value)
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Option<Sealed> {
        self.crypto.seal(aad, plaintext)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        self.crypto.open(aad, sealed)
    }

    /// `<prefix>{<tag>}<rest>`.
    pub fn key(&self, tag: &str, rest: &str) -> String {
        format!("{}{{{tag}}}{rest}", self.prefix)
    }

    /// A fallback (or a refusal) for `kind`, counted.
    pub fn note_fallback(&self, kind: Kind) {
        if let Some(m) = self.metrics.get() {
            let outcome = match self.policy(kind) {
                DownPolicy::Local => "local",
                DownPolicy::Refuse => "refused",
            };
            m.fallback(kind.label(), outcome);
        }
    }

    pub fn policy(&self, kind: Kind) -> DownPolicy {
        match kind {
            Kind::Backoff => self.on_down.backoff,
            Kind::Quotas => self.on_down.quotas,
            Kind::Refresh => self.on_down.refresh,
            Kind::AmoReplay => self.on_down.amo_replay,
            // A replica keeps honouring what it knows and delivering on its own ledger: refusing
            // would make FxA retry events it could take, and refuse nothing more.
            Kind::Revocations | Kind::SetLedger => DownPolicy::Local,
        }
    }

    /// Runs one command (or script) under the command timeout. `None` when Redis is down or
    /// the command failed: the caller falls back (counted here).
    pub async fn run<T, F>(
        &self,
        kind: Kind,
        command: impl FnOnce(ConnectionManager) -> F,
    ) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            self.note_fallback(kind);
            return None;
        }
        match tokio::time::timeout(self.command_timeout, command(self.conn.clone())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                self.note_fallback(kind);
                None
            }
            Err(_) => {
                self.mark_down("command timed out");
                self.note_fallback(kind);
                None
            }
        }
    }

    fn mark_down(&self, cause: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(%cause, "redis unavailable: falling back to in-process state");
            if let Some(m) = self.metrics.get() {
                m.up.set(0);
            }
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable again: sharing state");
            if let Some(m) = self.metrics.get() {
                m.up.set(1);
            }
        }
    }

    fn revocation_listener(&self) -> Option<Arc<dyn RevocationListener>> {
        self.revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Weak::upgrade)
    }

    fn listener(&self) -> Option<Arc<dyn TableListener>> {
        self.listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Weak::upgrade)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

fn client(settings: &RedisSettings) -> anyhow::Result<Client> {
    let addr = if settings.tls {
        ConnectionAddr::TcpTls {
            host: settings.host.clone(),
            port: settings.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(settings.host.clone(), settings.port)
    };
    let mut redis = RedisConnectionInfo::default().set_db(settings.db);
    if let Some(user) = &settings.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &settings.password {
        redis = redis.set_password(String::from_utf8_lossy(password.expose()));
    }
    let info: ConnectionInfo = addr
        .into_connection_info()
        .map_err(|e| anyhow::anyhow!("redis: {e}"))?
        .set_redis_settings(redis);
    let client = match (&settings.ca_pem, settings.tls) {
        (Some(ca), true) => Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        _ => Client::open(info),
    };
    client.map_err(|e| anyhow::anyhow!("redis: {e}"))
}

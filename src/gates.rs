//! Steps 3 and 5 of the pipeline as the request sees them: the upstream-wide back-off gate and
//! cap (before authentication), the per-identity back-off gate and quota (after it), and
//! recording each upstream answer so a 429/503 closes the window for every client at once.
//!
//! Never lets a request reach an upstream whose window is open, and never leaves a probe
//! slot taken by a request that did not reach the upstream (tickets release on drop).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use crate::backoff::{
    self, Admission, BackoffGate, BackoffPolicy, Caller, Gate, RampPolicy, Scope, UpstreamAnswer,
};
use crate::config::{BackoffScope, Config, DownPolicy, QuotaKey, RouteConfig};
use crate::errno::GatewayError;
use crate::headers::{BACKOFF, X_BACKOFF};
use crate::ratelimit::{
    self, Allowed, GlobalLimiter, KeyedLimiter, Limit, RateKey, RetryAfter, SecretKeyHasher,
};
use crate::shared::{Gcra, Kind, Store};

/// Most keys a route quota tracks at once.
const MAX_QUOTA_KEYS: usize = 100_000;
/// Name of our quota policy in `RateLimit` headers.
const POLICY_NAME: &str = "default";

/// Gate and limiter state for one configuration.
pub struct Gates {
    pub backoff: Arc<BackoffGate>,
    /// With `[redis]`: quotas and caps are counted fleet-wide (the local limiters are the
    /// fallback while Redis is down).
    store: Option<Arc<Store>>,
    upstream_names: Vec<String>,
    upstream_caps: Vec<Option<Arc<GlobalLimiter>>>,
    route_quotas: Vec<Option<RouteLimiter>>,
    hasher: Arc<SecretKeyHasher>,
    max_window: Duration,
}

struct RouteLimiter {
    /// The route's name: the fleet's counters are filed under it.
    name: String,
    /// Shared with the next configuration's route of the same name and quota.
    limiter: Arc<KeyedLimiter>,
    key: QuotaKey,
    headers: bool,
    policy_header: HeaderValue,
}

/// Holds a probe slot; releases it on drop unless the upstream's answer was recorded.
pub struct ProbeTicket<'g> {
    gate: &'g BackoffGate,
    upstream: usize,
    scope: TicketScope,
    now: SystemTime,
    armed: bool,
}

/// The scope a probe slot belongs to (owned, so the ticket outlives the request's borrows).
enum TicketScope {
    Upstream,
    Client(String),
    Identity(String),
}

impl ProbeTicket<'_> {
    /// The upstream answered and the answer was recorded: the slot is settled.
    fn answered(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeTicket<'_> {
    fn drop(&mut self) {
        if self.armed {
            let upstream = self.upstream;
            let scope = match &self.scope {
                TicketScope::Upstream => Scope::Upstream(upstream),
                TicketScope::Client(client_id) => Scope::Client {
                    upstream,
                    client_id,
                },
                TicketScope::Identity(identity) => Scope::Identity { upstream, identity },
            };
            self.gate.release_probe(scope, self.now);
        }
    }
}

/// Response headers a quota adds (`RateLimit-Policy`, `RateLimit`).
#[derive(Default)]
pub struct QuotaHeaders(Option<(HeaderValue, HeaderValue)>);

impl QuotaHeaders {
    pub fn apply(self, headers: &mut HeaderMap) {
        if let Some((policy, state)) = self.0 {
            headers.insert(ratelimit::RATELIMIT_POLICY, policy);
            headers.insert(ratelimit::RATELIMIT, state);
        }
    }
}

impl Gates {
    pub fn new(config: &Config) -> anyhow::Result<Gates> {
        Self::with_store(config, None)
    }

    /// With `store`, back-off windows, quotas and upstream caps are shared by the fleet.
    pub fn with_store(config: &Config, store: Option<Arc<Store>>) -> anyhow::Result<Gates> {
        let policy = backoff_policy(config);
        let upstream_caps = config
            .upstreams
            .iter()
            .map(|u| {
                u.rate_limit
                    .map(|q| {
                        Limit::new(q.requests, q.window).map(|l| Arc::new(GlobalLimiter::new(l)))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let route_quotas = config
            .routes
            .iter()
            .map(|r| route_limiter(r, None))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let upstream_names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
        let backoff = match &store {
            Some(store) => BackoffGate::shared(policy, store.clone(), upstream_names.clone()),
            None => Arc::new(BackoffGate::new(policy)),
        };
        Ok(Gates {
            backoff,
            store,
            upstream_names,
            upstream_caps,
            route_quotas,
            hasher: Arc::new(SecretKeyHasher::new()),
            max_window: config.backoff.max_window,
        })
    }

    /// The gates for `config` after a reload, keeping by name what still means the same thing
    /// in `old` (built from `old_config`): an upstream's back-off windows while its URL is the
    /// same, an upstream cap while its `rate_limit` is the same, a route's quota counters while
    /// its `requests`, `window` and `key` are the same.
    pub fn carry_over(config: &Config, old_config: &Config, old: &Gates) -> anyhow::Result<Gates> {
        let policy = backoff_policy(config);
        // remap[old index] = new index of the same upstream (by name, same URL).
        let remap: Vec<Option<usize>> = old_config
            .upstreams
            .iter()
            .map(|o| {
                config
                    .upstreams
                    .iter()
                    .position(|n| n.name == o.name && n.url == o.url)
            })
            .collect();
        let unmoved = remap.iter().enumerate().all(|(i, to)| *to == Some(i));
        // The same gate when nothing moved: answers still arriving for requests that started
        // before the reload land in the gate that serves after it.
        let upstream_names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
        let backoff = if unmoved && *old.backoff.policy() == policy {
            old.backoff.clone()
        } else if let Some(store) = &old.store {
            // With `[redis]` the windows are the fleet's, filed by upstream name: the new gate
            // takes them from there.
            BackoffGate::shared(policy, store.clone(), upstream_names.clone())
        } else {
            Arc::new(old.backoff.carry_over(policy, &remap))
        };
        let upstream_caps = config
            .upstreams
            .iter()
            .map(|u| {
                let kept = old_config
                    .upstreams
                    .iter()
                    .position(|o| o.name == u.name && o.rate_limit == u.rate_limit)
                    .and_then(|i| old.upstream_caps.get(i).cloned().flatten());
                match (kept, u.rate_limit) {
                    (Some(cap), _) => Ok(Some(cap)),
                    (None, Some(q)) => Limit::new(q.requests, q.window)
                        .map(|l| Some(Arc::new(GlobalLimiter::new(l)))),
                    (None, None) => Ok(None),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let route_quotas = config
            .routes
            .iter()
            .map(|r| {
                let kept = old_config
                    .routes
                    .iter()
                    .position(|o| o.name == r.name && same_quota(o, r))
                    .and_then(|i| old.route_quotas.get(i)?.as_ref())
                    .map(|q| q.limiter.clone());
                route_limiter(r, kept)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Gates {
            backoff,
            store: old.store.clone(),
            upstream_names,
            upstream_caps,
            route_quotas,
            // Header-keyed quota counters are keyed by this hasher's digests.
            hasher: old.hasher.clone(),
            max_window: config.backoff.max_window,
        })
    }

    /// Step 3: the whole upstream. Denied requests never reach authentication.
    pub async fn upstream_gate(
        &self,
        upstream: usize,
        now: SystemTime,
    ) -> Result<Option<ProbeTicket<'_>>, GatewayError> {
        if let Some(store) = &self.store
            && !store.is_up()
            && store.policy(Kind::Backoff) == DownPolicy::Refuse
        {
            store.note_fallback(Kind::Backoff);
            return Err(refused(store, Kind::Backoff));
        }
        let ticket = match self.backoff.admit(Scope::Upstream(upstream), now).await {
            Admission::Allow => None,
            Admission::Probe => Some(self.ticket(upstream, TicketScope::Upstream, now)),
            Admission::Deny(d) => return Err(backed_off(d)),
        };
        Ok(ticket)
    }

    /// The upstream-wide cap, taken last: requests the gateway refuses itself (bad credentials,
    /// over quota) must not use up the cap everyone shares.
    pub async fn upstream_cap(&self, upstream: usize) -> Result<(), GatewayError> {
        let Some(Some(cap)) = self.upstream_caps.get(upstream) else {
            return Ok(());
        };
        let checked = match (&self.store, self.upstream_names.get(upstream)) {
            (Some(store), Some(name)) => {
                let key = store.key(&format!("cap:{name}"), "");
                shared_check(store, &key, cap.limit(), || cap.check()).await?
            }
            _ => cap.check(),
        };
        match checked {
            Ok(_) => Ok(()),
            Err(denied) => Err(GatewayError::UpstreamOverCap {
                retry_after: denied.secs(),
            }),
        }
    }

    /// Step 5: the caller's own back-off window and quota, now that it is known.
    #[allow(clippy::too_many_arguments)]
    pub async fn caller_gates(
        &self,
        route: &RouteConfig,
        route_index: usize,
        identity: Option<&str>,
        client_id: Option<&str>,
        peer: IpAddr,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<([Option<ProbeTicket<'_>>; 2], QuotaHeaders), GatewayError> {
        let mut tickets = [None, None];
        if route.backoff_scope == BackoffScope::Auto {
            let upstream = route.upstream;
            if let Some(client_id) = client_id {
                let scope = Scope::Client {
                    upstream,
                    client_id,
                };
                tickets[0] = self
                    .scoped_check(
                        scope,
                        TicketScope::Client(client_id.to_owned()),
                        upstream,
                        now,
                    )
                    .await?;
            }
            if let Some(identity) = identity {
                let scope = Scope::Identity { upstream, identity };
                tickets[1] = self
                    .scoped_check(
                        scope,
                        TicketScope::Identity(identity.to_owned()),
                        upstream,
                        now,
                    )
                    .await?;
            }
        }
        let Some(Some(quota)) = self.route_quotas.get(route_index) else {
            return Ok((tickets, QuotaHeaders::default()));
        };
        let key = match &quota.key {
            QuotaKey::Identity => identity.map(RateKey::client),
            QuotaKey::Client => client_id.map(|c| RateKey::client(&format!("client:{c}"))),
            QuotaKey::Header(name) => headers.get(name).map(|v| self.hasher.key(v.as_bytes())),
            QuotaKey::Peer => None,
        };
        let checked = match &self.store {
            Some(store) => {
                let material = match (&quota.key, &key) {
                    (QuotaKey::Header(name), Some(_)) => headers.get(name).map(|v| v.as_bytes()),
                    (_, Some(RateKey::Client(id))) => Some(id.as_bytes()),
                    _ => None,
                };
                let peer_key;
                let material = match material {
                    Some(m) => m,
                    None => {
                        peer_key = format!("{:?}", RateKey::peer(peer));
                        peer_key.as_bytes()
                    }
                };
                let field = store.hash("quota", &[quota.name.as_bytes(), b"\0", material].concat());
                let redis_key = store.key(&format!("q:{field}"), "");
                let key = key.unwrap_or_else(|| RateKey::peer(peer));
                shared_check(store, &redis_key, quota.limiter.limit(), || {
                    quota.limiter.check(&key)
                })
                .await?
            }
            None => quota
                .limiter
                .check(&key.unwrap_or_else(|| RateKey::peer(peer))),
        };
        match checked {
            Ok(allowed) => {
                let headers = quota.headers.then(|| {
                    let state = ratelimit::ratelimit_allowed(POLICY_NAME, &allowed);
                    (
                        quota.policy_header.clone(),
                        HeaderValue::from_str(&state)
                            .unwrap_or_else(|_| HeaderValue::from_static("")),
                    )
                });
                Ok((tickets, QuotaHeaders(headers)))
            }
            Err(denied) => Err(GatewayError::QuotaExceeded {
                retry_after: denied.secs(),
                headers: quota.headers.then(|| {
                    let state = ratelimit::ratelimit_denied(POLICY_NAME, &denied);
                    (
                        quota.policy_header.clone(),
                        HeaderValue::from_str(&state)
                            .unwrap_or_else(|_| HeaderValue::from_static("")),
                    )
                }),
            }),
        }
    }

    /// Every real upstream answer: a 429/503 (or 500 with a wait) opens the window it calls for,
    /// anything else closes a half-open probe. Returns the `Backoff`/`X-Backoff` seconds the
    /// upstream sent, for metrics.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        route: &RouteConfig,
        identity: Option<&str>,
        client_id: Option<&str>,
        status: StatusCode,
        headers: &HeaderMap,
        errno: Option<u16>,
        body_retry_after: Option<f64>,
        tickets: [Option<ProbeTicket<'_>>; 3],
        now: SystemTime,
    ) -> Option<u64> {
        // One pass over the answer's fields (a handful) instead of three hashed lookups; the
        // first value of each name counts, as with `HeaderMap::get`.
        let mut hints: [Option<&HeaderValue>; 3] = [None; 3];
        for (name, value) in headers {
            let slot = if name == RETRY_AFTER {
                0
            } else if name == BACKOFF {
                1
            } else if name == X_BACKOFF {
                2
            } else {
                continue;
            };
            hints[slot].get_or_insert(value);
        }
        let [retry_after_field, backoff_field, x_backoff_field] = hints;
        let retry_after = backoff::parse_retry_after(
            retry_after_field.map(|v| v.as_bytes()),
            body_retry_after,
            now,
        );
        let backoff_header = backoff_field
            .or(x_backoff_field)
            .and_then(|v| backoff::parse_retry_after(Some(v.as_bytes()), None, now));
        let (identity, client_id) = match route.backoff_scope {
            BackoffScope::Auto => (identity, client_id),
            BackoffScope::Upstream => (None, None),
        };
        let caller = Caller {
            upstream: route.upstream,
            client_id,
            identity,
        };
        let answer = UpstreamAnswer {
            status,
            errno,
            retry_after,
            backoff: backoff_header,
        };
        self.backoff.record(&caller, &answer, now);
        tickets
            .into_iter()
            .flatten()
            .for_each(ProbeTicket::answered);
        backoff_header.map(|d| d.as_secs())
    }

    /// Drops expired windows and idle quota keys; run periodically.
    pub fn housekeeping(&self, now: SystemTime) {
        self.backoff.sweep(now);
        for q in self.route_quotas.iter().flatten() {
            q.limiter.housekeeping();
        }
    }

    pub fn max_window(&self) -> Duration {
        self.max_window
    }

    /// A client or identity window: denied, allowed, or this request is its probe.
    async fn scoped_check(
        &self,
        scope: Scope<'_>,
        owned: TicketScope,
        upstream: usize,
        now: SystemTime,
    ) -> Result<Option<ProbeTicket<'_>>, GatewayError> {
        match self.backoff.admit(scope, now).await {
            Admission::Allow => Ok(None),
            Admission::Probe => Ok(Some(self.ticket(upstream, owned, now))),
            Admission::Deny(d) => Err(backed_off(d)),
        }
    }

    fn ticket(&self, upstream: usize, scope: TicketScope, now: SystemTime) -> ProbeTicket<'_> {
        ProbeTicket {
            gate: &self.backoff,
            upstream,
            scope,
            now,
            armed: true,
        }
    }
}

fn backoff_policy(config: &Config) -> BackoffPolicy {
    let settings = &config.backoff;
    let probe_lease = config
        .upstreams
        .iter()
        .map(|u| u.response_timeout)
        .max()
        .unwrap_or(Duration::from_secs(30));
    BackoffPolicy {
        max_window: settings.max_window,
        default_503_window: settings.default_503_window,
        honour_backoff_header: settings.honour_backoff_header,
        probe_lease,
        ramp: settings.ramp.as_ref().map(|r| RampPolicy {
            period: r.period,
            steps: r.steps,
            start_percent: r.start_percent,
            base_rate_per_sec: r.base_rate_per_sec,
        }),
        max_scoped_windows: settings.max_scoped_windows,
    }
}

/// Quota counters mean the same thing while the quota's requests, window and key are equal
/// (`headers` only changes what is sent).
fn same_quota(a: &RouteConfig, b: &RouteConfig) -> bool {
    match (&a.quota, &b.quota) {
        (Some(a), Some(b)) => a.quota == b.quota && a.key == b.key,
        _ => false,
    }
}

/// One quota check in Redis (GCRA, one script call); while Redis is down, `local` decides
/// (`on_redis_down.quotas = "local"`) or the request is refused.
async fn shared_check(
    store: &Store,
    key: &str,
    limit: &Limit,
    local: impl FnOnce() -> Result<Allowed, RetryAfter>,
) -> Result<Result<Allowed, RetryAfter>, GatewayError> {
    let requests = limit.requests();
    let interval_us = u64::try_from(limit.window().as_micros() / u128::from(requests))
        .unwrap_or(u64::MAX)
        .max(1);
    match store.gcra(Kind::Quotas, key, interval_us, requests).await {
        Some(Gcra::Allowed {
            remaining,
            reset_us,
        }) => Ok(Ok(Allowed {
            remaining,
            reset: Duration::from_micros(reset_us),
        })),
        Some(Gcra::Denied { wait_us }) => Ok(Err(RetryAfter {
            wait: Duration::from_micros(wait_us),
            table_full: false,
        })),
        None if store.policy(Kind::Quotas) == DownPolicy::Refuse => {
            Err(refused(store, Kind::Quotas))
        }
        None => Ok(local()),
    }
}

/// The answer when Redis is down and the state's `on_redis_down` is `"refuse"`.
fn refused(store: &Store, kind: Kind) -> GatewayError {
    GatewayError::SharedStateUnavailable {
        state: kind.label(),
        retry_after: store.retry_after_secs(),
    }
}

/// The route's quota, counting on `kept` when the previous configuration's counters still
/// apply.
fn route_limiter(
    route: &RouteConfig,
    kept: Option<Arc<KeyedLimiter>>,
) -> anyhow::Result<Option<RouteLimiter>> {
    let Some(q) = &route.quota else {
        return Ok(None);
    };
    let limit = Limit::new(q.quota.requests, q.quota.window)?;
    let policy_header = HeaderValue::from_str(&ratelimit::policy_header(POLICY_NAME, &limit))?;
    Ok(Some(RouteLimiter {
        name: route.name.clone(),
        limiter: kept.unwrap_or_else(|| Arc::new(KeyedLimiter::new(limit, MAX_QUOTA_KEYS))),
        key: q.key.clone(),
        headers: q.headers,
        policy_header,
    }))
}

fn backed_off(d: backoff::Denial) -> GatewayError {
    GatewayError::BackedOff {
        status: d.status,
        errno: d.errno,
        retry_after: d.retry_after_secs,
    }
}
